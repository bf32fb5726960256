"""Asking the API, over the socket Gunicorn listens on, whether it answers.

Gunicorn's arbiter knows only that its workers' main loops turn. A worker whose
threads are all held (slow clients sending a request that never ends, a source
that hangs) still looks alive to it, and an arbiter that pinged systemd's
watchdog from its loop kept a service that answered nobody running for ever.

`HealthProbe` sends a real `GET /api/live` to the bound socket, from the
arbiter's own loop and without ever blocking it: a non-blocking socket, moved
one step each time round the loop. `/api/live` is answered by a worker thread
without touching the window store, so a slow store (Firestore loading its
index, a heavy catch-up) or one that is down never gets a healthy service
restarted; held threads do. The service is *answering* while its latest probe
got a 200 back and the probe in flight, if any, is not older than `timeout_s`.
The arbiter pings the watchdog only while it is, so a wedged worker pool stops
the pings and systemd restarts the service.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from campus_energy.runtime.outages import Outage

log = logging.getLogger("campus_energy.api")

USER_AGENT = "campus-energy-watchdog"  # the access log leaves these requests out
PATH = "/api/live"  # answered by the app without reading the window store
REQUEST = (
    f"GET {PATH} HTTP/1.1\r\n"
    "Host: localhost\r\n"
    f"User-Agent: {USER_AGENT}\r\n"
    "Connection: close\r\n\r\n"
).encode()
ANSWERS = frozenset({200})
TIMEOUT_S = 10.0  # /api/live answers in milliseconds; Gunicorn's worker timeout is 30 s
MAX_STATUS_LINE = 1024

Address = tuple[int, Any]  # (socket family, address to connect to)


def probe_address(bound: socket.socket) -> Address:
    """Where to reach a listening socket from the same host (a wildcard becomes loopback)."""
    family = bound.family
    where = bound.getsockname()
    if family == socket.AF_UNIX:
        return family, where
    host, port = where[0], where[1]
    if ipaddress.ip_address(host).is_unspecified:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return family, (host, port)


def _describe(address: Address) -> str:
    family, where = address
    if family == socket.AF_UNIX:
        return f"unix:{where}"
    host, port = where[0], where[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


class HealthProbe:
    """A `GET /api/live` every `every_s`, stepped without blocking; see `answering`."""

    def __init__(
        self,
        address: Address,
        *,
        every_s: float,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.where = _describe(address)
        self._outage = Outage(f"api: GET {PATH} on {self.where}", log)
        self._sock: socket.socket | None = None
        self._started = 0.0
        self._next = clock()  # the first probe at the first step
        self._unsent = b""
        self._received = b""
        self._answered = True  # until a probe says otherwise: a starting service gets its chance

    @property
    def answering(self) -> bool:
        """The last probe got an answer, and the one in flight is not overdue."""
        return self._answered and not self._overdue(self.clock())

    @property
    def in_flight(self) -> bool:
        return self._sock is not None

    def _overdue(self, now: float) -> bool:
        return self._sock is not None and now - self._started > self.timeout_s

    def step(self) -> None:
        """Move the probe on as far as it goes without waiting; start one when it is time."""
        now = self.clock()
        if self._sock is None and now >= self._next:
            self._start(now)
        if self._sock is None:
            return
        try:
            self._exchange()
        except OSError as exc:
            self._failed(exc.strerror or type(exc).__name__)
            return
        if self._sock is not None and self._overdue(now):
            self._failed(f"no answer within {self.timeout_s:g} s")

    def _start(self, now: float) -> None:
        family, where = self.address
        try:  # out of file descriptors, say: the probe fails, the arbiter goes on
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            self._failed(f"cannot open a socket: {exc.strerror or exc}")
            return
        sock.setblocking(False)
        self._sock, self._started, self._next = sock, now, now + self.every_s
        self._unsent, self._received = REQUEST, b""
        code = sock.connect_ex(where)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._failed(f"cannot connect: {errno.errorcode.get(code, code)}")

    def _exchange(self) -> None:
        sock = self._sock
        assert sock is not None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"cannot connect: {errno.errorcode.get(code, code)}")
        while self._unsent:
            try:
                sent = sock.send(self._unsent)
            except (BlockingIOError, InterruptedError):
                return  # still connecting, or the buffer is full: next time round
            self._unsent = self._unsent[sent:]
        while b"\r\n" not in self._received:
            try:
                data = sock.recv(MAX_STATUS_LINE)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self._failed("the connection closed without an answer")
                return
            self._received += data
            if len(self._received) > MAX_STATUS_LINE:
                break
        self._finish(self._received.split(b"\r\n", 1)[0])

    def _finish(self, status_line: bytes) -> None:
        parts = status_line.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        if not status_line.startswith(b"HTTP/") or status not in ANSWERS:
            self._failed(f"answered {status_line[:80].decode('latin-1')!r}")
            return
        self._close()
        self._answered = True
        self._outage.recovered(self.clock(), f"HTTP {status}")

    def _failed(self, reason: str) -> None:
        self._close()
        self._next = self.clock()  # try again at the next step
        self._answered = False
        self._outage.failed(f"{reason}; systemd's watchdog is no longer pinged", self.clock())

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._close()
