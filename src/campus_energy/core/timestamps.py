"""UTC timestamps as integer epoch milliseconds, aware datetimes and ISO 8601 text
("2026-01-02T03:04:05.678Z"). Local days and hours of the site's zone: `core.days`."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


def iso_utc(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a 'Z'."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def iso_seconds(ms: int) -> str:
    """ISO 8601 UTC to the second, fraction dropped: '2026-01-02T03:04:05Z'."""
    return utc_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(epoch_s: float) -> int:
    """Epoch seconds (e.g. from time.time()) to integer milliseconds, rounding down."""
    return math.floor(epoch_s * 1000)


def utc_datetime(ms: int) -> datetime:
    """Epoch ms as an aware datetime in UTC (to the microsecond a float carries)."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def datetime_ms(moment: datetime) -> int:
    """An aware datetime as epoch ms, to the nearest millisecond (by way of a float)."""
    return round(moment.timestamp() * 1000)


def floor_ms(moment: datetime) -> int:
    """An aware datetime as epoch ms, exactly (no float, whatever the year), rounding down."""
    return (moment - EPOCH) // ONE_MS


def next_grid_time(now_s: float, interval_s: float) -> float:
    """The first multiple of `interval_s` (on the epoch grid) strictly after `now_s`."""
    return (math.floor(now_s / interval_s) + 1) * interval_s
