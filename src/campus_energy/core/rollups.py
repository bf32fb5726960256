"""Hourly and daily rollups of windows, kept up to date as windows are written.

A query over a year must cost about as much as over a day, so sinks keep, next
to the windows, per-meter sums by local clock hour and by local calendar day (in the
site's time zone, where days are cut for people). Writing a window adds the
difference it makes — a rewrite adds only what changed — so rollups never
double-count. Pure: the time zone comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from campus_energy.core.windows import Accumulator, WindowDoc

HOUR_MS = 3_600_000


def local_day(ms: int, zone: ZoneInfo) -> str:
    """The site-local calendar day ('YYYY-MM-DD') of a UTC instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).strftime("%Y-%m-%d")


def hour_of(ms: int, zone: ZoneInfo) -> int:
    """The start (UTC epoch ms) of the site-local clock hour containing `ms`.

    Local hours, not UTC hours: in a zone such as Asia/Kolkata (+05:30) local
    hours start at :30 UTC, and only local hours add up to local days.
    """
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    start = local.replace(minute=0, second=0, microsecond=0)
    return round(start.timestamp() * 1000)


@dataclass(frozen=True)
class RollupChange:
    """What one window write adds to its meter's hour and day."""

    meter_id: str
    day: str
    hour_ms: int
    window_start_ms: int
    energy_wh: float
    covered_s: float
    readings: int
    windows: int  # 1 when the window is new, else 0


def change(before: Accumulator | None, doc: WindowDoc, zone: ZoneInfo) -> RollupChange:
    old = before or Accumulator()
    acc = doc.accumulator
    return RollupChange(
        meter_id=doc.meter_id,
        day=local_day(doc.window_start_ms, zone),
        hour_ms=hour_of(doc.window_start_ms, zone),
        window_start_ms=doc.window_start_ms,
        energy_wh=acc.energy_wh - old.energy_wh,
        covered_s=acc.covered_s - old.covered_s,
        readings=acc.readings - old.readings,
        windows=0 if before is not None else 1,
    )
