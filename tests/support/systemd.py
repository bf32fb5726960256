"""A notification socket standing in for systemd's: what a service sent, as it arrives.

Read it from plain code (`next`, `until`, `silent`) or from a coroutine
(`arrival`, `pings`); every message received is kept in `messages`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

WATCHDOG_S = 2  # WATCHDOG_USEC in the environment: the services must ping at least this often

Message = dict[str, str]


def _parse(data: bytes) -> Message:
    return dict(line.split("=", 1) for line in data.decode().split("\n"))


class NotifySocket:
    """A datagram socket a service finds in $NOTIFY_SOCKET.

    By default in the abstract namespace under a fresh name; `path`: a file instead.
    """

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            name = f"campus-energy-test-{uuid.uuid4().hex}"
            self.address, bind_to = f"@{name}", f"\0{name}"
        else:
            self.address = bind_to = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.messages: list[tuple[float, Message]] = []  # (monotonic time, message)

    def environ(self) -> dict[str, str]:
        """This process's environment, with the socket and a WATCHDOG_S watchdog."""
        return {
            **os.environ,
            "NOTIFY_SOCKET": self.address,
            "WATCHDOG_USEC": str(WATCHDOG_S * 1_000_000),
        }

    def _kept(self, data: bytes) -> Message:
        message = _parse(data)
        self.messages.append((time.monotonic(), message))
        return message

    # -- from plain code -------------------------------------------------------------------------

    def next(self, timeout: float) -> Message | None:
        """The next message, or None when none comes within `timeout` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        return self._kept(data)

    def until(self, want: Message, timeout: float) -> float:
        """Receive until a message holding `want` arrives; when it did (monotonic)."""
        deadline = time.monotonic() + timeout
        seen = []
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.next(remaining)
            if message is not None:
                seen.append(message)
                if all(message.get(k, "").startswith(v) for k, v in want.items()):
                    return time.monotonic()
        raise AssertionError(f"no {want} within {timeout} s; got {seen[-10:]}")

    def silent(self, key: str, seconds: float) -> list[Message]:
        """Everything received for `seconds`; fails if a message with `key` comes."""
        deadline = time.monotonic() + seconds
        seen = []
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.next(remaining)
            if message is not None:
                assert key not in message, f"{key} during the silence: {[*seen, message]}"
                seen.append(message)
        return seen

    # -- from a coroutine ------------------------------------------------------------------------

    async def arrival(self, key: str, timeout: float) -> Message:
        """Receive until a message with `key` arrives (fail after `timeout` seconds)."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} within {timeout} s; got {self.messages}")
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), remaining)
            except TimeoutError:
                continue
            message = self._kept(data)
            if key in message:
                return message

    async def pings(self, count: int) -> None:
        """`count` watchdog pings in a row, none later than the watchdog timeout after the last."""
        last = time.monotonic()
        for _ in range(count):
            await self.arrival("WATCHDOG", WATCHDOG_S)
            now = time.monotonic()
            assert now - last < WATCHDOG_S
            last = now

    def close(self) -> None:
        self.sock.close()
