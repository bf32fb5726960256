"""Telling systemd how a service is doing: readiness, status, stopping, and the watchdog.

A `Notifier` sends sd_notify(3) datagrams to the socket named by
`$NOTIFY_SOCKET` (a file system path, or `@name` in the abstract namespace).
Without that variable it does nothing, so the services run the same way by
hand. It never raises: a service must not fail because its supervisor cannot
be told something; a failed send is logged once, then quietly until it works.

A `Watchdog` sends `WATCHDOG=1` every half of `$WATCHDOG_USEC` while no piece
of work the service has in progress has overrun its time limit. A loop that
waits (for its next poll slot, for messages) is healthy; a loop stuck inside a
piece of work (a Modbus cycle, a spool write, a sink write) for longer than
that work can take is hung. Then the pings stop and systemd restarts the
service (`WatchdogSec=`). A blocked event loop stops the pings by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from campus_energy.runtime.clock import sleep_or_stop
from campus_energy.runtime.outages import Outage

log = logging.getLogger("campus_energy.notify")


def _socket_address(value: str | None) -> str | None:
    """The address to send to: a path, or an abstract name ('@' becomes a leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET %r is not a path or an @name: systemd will not be notified", value)
    return None


def _watchdog_s(environ: Mapping[str, str], pid: int) -> float | None:
    """systemd's watchdog timeout for process `pid` (None: no watchdog for it)."""
    usec, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    try:
        timeout_us = int(usec)
        if owner and int(owner) != pid:
            return None
    except ValueError:
        return None
    return timeout_us / 1e6 if timeout_us > 0 else None


class Notifier:
    """Sends sd_notify messages; a no-op when the service manager gave no socket."""

    def __init__(self, address: str | None = None, *, watchdog_s: float | None = None) -> None:
        self.address = _socket_address(address)
        self.watchdog_s = watchdog_s if self.address is not None else None
        self._outage = Outage(f"systemd notification socket {address}", log)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int) -> Notifier:
        """The notifier systemd set up for process `pid` ($NOTIFY_SOCKET, $WATCHDOG_USEC/_PID)."""
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_s=_watchdog_s(environ, pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """How often to ping the watchdog: half its timeout (None: no watchdog)."""
        return None if self.watchdog_s is None else self.watchdog_s / 2

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments in one datagram; True when it was sent."""
        if self.address is None:
            return False
        data = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue at the receiver must not stall the service
                sock.sendto(data, self.address)
        except OSError as exc:
            self._outage.failed(exc.strerror or str(exc), time.monotonic())
            return False
        self._outage.recovered(time.monotonic())
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


@dataclass(frozen=True)
class _Work:
    name: str
    limit_s: float
    since: float


class Watchdog:
    """Pings systemd's watchdog while no piece of work in progress has overrun its limit."""

    def __init__(self, notifier: Notifier, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.clock = clock
        self._work: dict[int, _Work] = {}
        self._tokens = itertools.count()
        self._withholding = False

    @contextmanager
    def working(self, name: str, limit_s: float) -> Iterator[None]:
        """A piece of work that must end, or report `progress`, within `limit_s` seconds."""
        token = next(self._tokens)
        self._work[token] = _Work(name, limit_s, self.clock())
        try:
            yield
        finally:
            del self._work[token]

    def progress(self, name: str) -> None:
        """The work called `name` is moving: its time limit starts again (no-op when idle)."""
        now = self.clock()
        for token, work in list(self._work.items()):
            if work.name == name:
                self._work[token] = _Work(work.name, work.limit_s, now)

    def overdue(self) -> list[str]:
        """The pieces of work past their limit, described for people."""
        now = self.clock()
        return [
            f"{w.name} (busy {now - w.since:.0f} s, limit {w.limit_s:g} s)"
            for w in self._work.values()
            if now - w.since > w.limit_s
        ]

    def check(self) -> bool:
        """Ping the watchdog unless some work is overdue; True when it pinged."""
        overdue = self.overdue()
        if overdue:
            if not self._withholding:
                text = "hung: " + ", ".join(overdue)
                log.error("%s; withholding watchdog pings so that systemd restarts us", text)
                self.notifier.status(text)
                self._withholding = True
            return False
        if self._withholding:
            log.info("no work is overdue any more: watchdog pings resume")
            self.notifier.status("running")
            self._withholding = False
        return self.notifier.watchdog()

    async def run(self, stop: asyncio.Event) -> None:
        """Check and ping every half of the watchdog timeout until `stop` (at once without one)."""
        interval = self.notifier.ping_interval_s
        if interval is None:
            return
        while True:
            self.check()
            if await sleep_or_stop(interval, stop):
                return
