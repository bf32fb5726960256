"""The two clocks every service reads: wall (UTC epoch seconds) and monotonic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
