"""Outage logging: once at ERROR when it fails, quiet while it stays down, once at INFO back."""

from __future__ import annotations

import logging


class Outage:
    """The up/down state of one thing (a meter, a bus, the broker, the store) for the log."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, detail: str, now: float) -> None:
        self.failures += 1
        detail = detail.removeprefix(f"{self.what}: ")  # errors that already name the thing
        if self.down_since is None:
            self.down_since = now
            self.log.error("%s: %s", self.what, detail)
        else:
            self.log.debug("%s: still failing: %s", self.what, detail)

    def recovered(self, now: float, detail: str = "") -> None:
        if self.down_since is not None:
            self.log.info(
                "%s: recovered after %.0f s and %d failed attempts%s",
                self.what,
                now - self.down_since,
                self.failures,
                f" ({detail})" if detail else "",
            )
        self.down_since = None
        self.failures = 0
