"""The payload signing key (`mqtt.signing_key_file`), read at start-up by the logger and the bridge.

The file holds one secret of at least 32 bytes (e.g. `openssl rand -hex 32`),
surrounding whitespace ignored. It must be readable by its owner only: a key
that the group or others may read (or write) is refused, as ssh refuses such a
private key. The key itself is never printed or logged.
"""

from __future__ import annotations

import stat
from pathlib import Path

from campus_energy.core.signatures import MIN_KEY_BYTES
from campus_energy.errors import ConfigError

KEY = "mqtt.signing_key_file"


def read_signing_key(path: Path) -> bytes:
    """The key in `path`; ConfigError (naming the key, never its content) when unusable."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError.single(KEY, f"{path} is not a file")
        if mode & 0o077:
            raise ConfigError.single(
                KEY,
                f"{path} may be read or written by others than its owner "
                f"(mode {stat.filemode(mode)}): chmod 600 {path}",
            )
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError.single(KEY, f"cannot read {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError.single(
            KEY,
            f"{path} holds {len(key)} bytes, at least {MIN_KEY_BYTES} are needed "
            "(e.g. openssl rand -hex 32)",
        )
    return key
