"""Hourly and daily rollups of windows, kept up to date as windows are written.

A query over a year must cost about as much as over a day, so sinks keep, next
to the windows, per-meter sums by local clock hour and by local calendar day (in the
site's time zone, where days are cut for people). Writing a window adds the
difference it makes — a rewrite adds only what changed — so rollups never
double-count. A window replaced outright (by `campus-energy reconcile`) has the
hours and the day of its meter counted afresh from the windows (`recount`).
Pure: the time zone comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from campus_energy.core.days import hour_of, local_day
from campus_energy.core.windows import Accumulator, WindowDoc


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


@dataclass(frozen=True)
class Sums:
    """A meter's sums over one local hour or day, counted afresh from its windows."""

    energy_wh: float
    covered_s: float
    readings: int
    windows: int
    last_window_ms: int


def recount(
    windows: Iterable[tuple[int, Accumulator]], day: str, zone: ZoneInfo
) -> tuple[dict[int, Sums], Sums | None]:
    """One meter's hourly sums and its sum for the local `day`, from its windows
    (window start, accumulator). Windows of other days are left out, so a caller may
    pass every window of `core.days.day_span(day)`. What a sink rebuilds its rollups from."""
    hours: dict[int, list[tuple[int, Accumulator]]] = {}
    for start, acc in windows:
        if local_day(start, zone) == day:
            hours.setdefault(hour_of(start, zone), []).append((start, acc))
    hourly = {hour: _sums(found) for hour, found in hours.items()}
    every = [item for found in hours.values() for item in found]
    return hourly, (_sums(every) if every else None)


def _sums(windows: list[tuple[int, Accumulator]]) -> Sums:
    return Sums(
        energy_wh=sum(acc.energy_wh for _, acc in windows),
        covered_s=sum(acc.covered_s for _, acc in windows),
        readings=sum(acc.readings for _, acc in windows),
        windows=len(windows),
        last_window_ms=max(start for start, _ in windows),
    )
