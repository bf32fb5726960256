"""UTC timestamps as integer epoch milliseconds and ISO 8601 text ("2026-01-02T03:04:05.678Z")."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def iso_utc(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a 'Z'."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def epoch_ms(epoch_s: float) -> int:
    """Epoch seconds (e.g. from time.time()) to integer milliseconds, rounding down."""
    return math.floor(epoch_s * 1000)


def next_grid_time(now_s: float, interval_s: float) -> float:
    """The first multiple of `interval_s` (on the epoch grid) strictly after `now_s`."""
    return (math.floor(now_s / interval_s) + 1) * interval_s
