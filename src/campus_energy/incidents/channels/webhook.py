"""The webhook channel: a notice POSTed as signed JSON (stdlib `urllib` in a worker thread).

The body is compact JSON (`payload`). Headers: `X-Campus-Energy-Delivery` (the notice's key:
the receiver's idempotency key, the same on every retry), `X-Campus-Energy-Timestamp` (unix
seconds of this attempt) and, when the channel has a secret,
`X-Campus-Energy-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, so a
receiver can check both who sent it and that it is fresh (refusing replays).

A 2xx answer delivers it. 408, 429, 5xx, connection failures and timeouts raise
`DeliveryError` (try again later); any other answer — other 4xx, and redirects, which are
never followed (a POST would not survive one, and the body must not go to another host) —
raises `DeliveryRefused`. Errors name the channel and the URL's scheme, host and port only,
and an answer's status by its code and standard phrase, never its body or its reason: the path
or query of a webhook URL often holds a token, and a server's error page often echoes them.
Whatever else an error quotes has the URL's path and query masked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from campus_energy import __version__
from campus_energy.core.timestamps import iso_utc
from campus_energy.incidents.values import DeliveryError, DeliveryRefused, Notice

SCHEMA = 1
ANSWER_LIMIT = 4096  # bytes of an answer read (and dropped)
RETRY_STATUSES = frozenset({408, 425, 429})  # besides every 5xx
USER_AGENT = f"campus-energy/{__version__}"


def payload(notice: Notice) -> dict[str, Any]:
    """The JSON document of a notice (schema 1)."""
    t = notice.transition
    return {
        "schema": SCHEMA,
        "key": notice.key,
        "event": t.event,
        "rule": t.rule,
        "kind": notice.kind,
        "scope": notice.scope,
        "subject": t.subject,
        "severity": t.severity,
        "at": iso_utc(t.at_ms),
        "value": t.value,
        "detail": t.detail,
        "site": notice.site,
    }


def body_of(notice: Notice) -> bytes:
    return json.dumps(payload(notice), separators=(",", ":"), allow_nan=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body)."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


class WebhookChannel:
    """POSTs notices to one URL; see the module's docstring."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: str | None = None,
        timeout_s: float = 30.0,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self.clock = clock
        self._made: urllib.request.OpenerDirector | None = None
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.endpoint = f"{parts.scheme}://{parts.hostname}:{port}"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        # what an error must never quote, longest first: each may hold a token
        hidden = (url, target, parts.query, parts.path if len(parts.path) > 1 else "", secret)
        self._hidden = tuple(sorted({h for h in hidden if h}, key=len, reverse=True))

    def __repr__(self) -> str:  # never the secret, nor the URL's path
        return f"WebhookChannel({self.name!r}, {self.endpoint})"

    async def send(self, notice: Notice) -> None:
        """POST the notice; raises DeliveryError (retry) or DeliveryRefused."""
        body = body_of(notice)
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Campus-Energy-Delivery": notice.key,
            "X-Campus-Energy-Timestamp": timestamp,
        }
        if self._secret:
            headers["X-Campus-Energy-Signature"] = signature(self._secret, timestamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        await asyncio.to_thread(self._post, request)

    async def close(self) -> None:
        """Nothing held open: each notice has its own connection."""

    def _opener(self) -> urllib.request.OpenerDirector:
        """Made once, on the first notice: the TLS context (its CA file read) and the handlers
        serve every notice after it."""
        if self._made is None:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
            self._made = urllib.request.build_opener(
                _NoRedirects, urllib.request.HTTPSHandler(context=context)
            )
        return self._made

    def _post(self, request: urllib.request.Request) -> None:
        try:  # (a CA file that cannot be read is an outage like the others, said once)
            with self._opener().open(request, timeout=self.timeout_s) as response:
                response.read(ANSWER_LIMIT)
        except urllib.error.HTTPError as exc:
            with exc:  # the body (an error page may echo the URL) is read, never quoted
                exc.read(ANSWER_LIMIT)
            code = exc.code
            kind = DeliveryError if code >= 500 or code in RETRY_STATUSES else DeliveryRefused
            raise kind(self._say(_status(code))) from None
        except urllib.error.URLError as exc:  # refused, unresolvable, TLS, a timeout
            raise DeliveryError(self._say(f"{_reason(exc.reason)}")) from None
        except (OSError, http.client.HTTPException) as exc:  # timeout or cut while answering
            raise DeliveryError(self._say(f"{type(exc).__name__}: {exc}")) from None

    def _say(self, what: str) -> str:
        for hidden in self._hidden:
            what = what.replace(hidden, "***")
        return f"webhook channel {self.name} ({self.endpoint}): {what}"


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


def _status(code: int) -> str:
    """`HTTP 404 Not Found`: the standard phrase, not the server's."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"
