"""The two clocks every service reads (wall: UTC epoch seconds; monotonic), and waiting on them.

Every loop that retries waits through `Backoff` and `sleep_or_stop`, and every wait
for something that must end when the service stops goes through `first_or_stop`,
so a stop request is never held up by a sleep or a pending read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


class SystemClock:
    """The host's clocks."""

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


class OffsetClock(SystemClock):
    """The host's clocks with a wall-clock offset that can be stepped (fault injection)."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s

    def wall(self) -> float:
        return time.time() + self.offset_s


def boot_id() -> str | None:
    """This boot's identity: monotonic times are comparable only within one boot."""
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


async def sleep_or_stop(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep for `seconds` unless `stop` is set first; True when stopped."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


async def first_or_stop(
    awaitable: Awaitable[T], stop: asyncio.Event, timeout_s: float | None = None
) -> T | None:
    """Await `awaitable` unless `stop` is set (or `timeout_s` passes) first: its result, or None
    when it was given up on, and then it is cancelled."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not work.done():
            work.cancel()
    return work.result() if work.done() and not work.cancelled() else None


class Backoff:
    """Exponential back-off between attempts: after each failure wait `failed()` seconds, from
    `first_s` doubling up to `max_s`; a success (`succeeded()`) starts again at `first_s`."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next_s = first_s

    def failed(self) -> float:
        """The wait after this failure (the next one waits twice as long, up to `max_s`)."""
        wait_s = self._next_s
        self._next_s = min(wait_s * 2, self.max_s)
        return wait_s

    def succeeded(self) -> None:
        self._next_s = self.first_s
