"""HMAC signatures of reading payloads: `"sig": "hmac-sha256:<hex>"` over the canonical JSON.

The canonical form of a payload is its JSON object without `sig`, written with
sorted keys, no spaces, non-ASCII characters as they are (UTF-8) and numbers as
Python writes them (`json.dumps(body, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`). A receiver parses the message, drops `sig` and writes
the rest the same way, so the signature does not depend on how the sender
spaced or ordered its JSON; any change to a key or a value breaks it.

Pure: the key comes in as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIG_KEY = "sig"
SCHEME = "hmac-sha256:"
MIN_KEY_BYTES = 32


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the object without `sig`, in canonical JSON."""
    unsigned = {k: v for k, v in body.items() if k != SIG_KEY}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def signature(body: Mapping[str, Any], key: bytes) -> str:
    """`hmac-sha256:<64 hex digits>` of the payload's canonical form."""
    return SCHEME + hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def signed(body: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of the payload with its `sig`."""
    return {**body, SIG_KEY: signature(body, key)}


def signature_problem(body: Mapping[str, Any], key: bytes) -> str | None:
    """Why the payload's `sig` does not prove it was made with `key` (None: it does)."""
    given = body.get(SIG_KEY)
    if given is None:
        return "unsigned (a signing key is configured)"
    if not isinstance(given, str) or not given.startswith(SCHEME):
        return f"'sig' must be a string '{SCHEME}<hex>'"
    if not hmac.compare_digest(given.encode("utf-8"), signature(body, key).encode("utf-8")):
        return "wrong signature"
    return None
