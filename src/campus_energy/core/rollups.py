"""Hourly and daily rollups of windows, kept up to date as windows are written.

A query over a year must cost about as much as over a day, so sinks keep, next
to the windows, per-meter sums by local clock hour and by local calendar day (in the
site's time zone, where days are cut for people). Writing a window adds the
difference it makes — a rewrite adds only what changed — so rollups never
double-count. A window replaced outright (by `campus-energy reconcile`) has the
hours and the day of its meter counted afresh from the windows (`recount`).
An hour also keeps the energy of each of its four quarter hours (`quarter_of`):
what bills on 15-minute boundaries and demand intervals are summed from.
Pure: the time zone comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from campus_energy.core.answers import QUARTER_MS
from campus_energy.core.days import hour_of, local_day
from campus_energy.core.windows import Accumulator, WindowDoc


def quarter_of(window_start_ms: int, hour_ms: int) -> int:
    """The quarter hour (0..3) of its local clock hour `hour_ms` a window starting at
    `window_start_ms` lies in: windows last a divisor of 15 minutes, and every zone's hour
    starts on a UTC quarter hour, so a window never straddles two quarters."""
    return (window_start_ms - hour_ms) // QUARTER_MS


@dataclass(frozen=True)
class RollupChange:
    """What one window write adds to its meter's hour (and to the quarter of it the window
    lies in) and day."""

    meter_id: str
    day: str
    hour_ms: int
    window_start_ms: int
    energy_wh: float
    covered_s: float
    readings: int
    windows: int  # 1 when the window is new, else 0
    quarter: int  # 0..3: the quarter hour of `hour_ms` the window lies in
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0

    def quarters_wh(self) -> tuple[float, float, float, float]:
        """The change's energy, in its quarter of the hour (0 in the other three)."""
        q = self.quarter
        e = self.energy_wh
        return (
            e if q == 0 else 0.0,
            e if q == 1 else 0.0,
            e if q == 2 else 0.0,
            e if q == 3 else 0.0,
        )


def change(before: Accumulator | None, doc: WindowDoc, zone: ZoneInfo) -> RollupChange:
    old = before or Accumulator()
    acc = doc.accumulator
    return added(
        doc.meter_id,
        doc.window_start_ms,
        acc.energy_wh - old.energy_wh,
        acc.covered_s - old.covered_s,
        acc.readings - old.readings,
        0 if before is not None else 1,
        zone,
        export_wh=acc.export_wh - old.export_wh,
        estimated_wh=acc.estimated_wh - old.estimated_wh,
        estimated_export_wh=acc.estimated_export_wh - old.estimated_export_wh,
    )


def added(
    meter_id: str,
    window_start_ms: int,
    energy_wh: float,
    covered_s: float,
    readings: int,
    windows: int,
    zone: ZoneInfo,
    *,
    export_wh: float = 0.0,
    estimated_wh: float = 0.0,
    estimated_export_wh: float = 0.0,
) -> RollupChange:
    """What adding these sums of a meter's window to its hour and day changes."""
    hour = hour_of(window_start_ms, zone)
    return RollupChange(
        meter_id=meter_id,
        day=local_day(window_start_ms, zone),
        hour_ms=hour,
        window_start_ms=window_start_ms,
        energy_wh=energy_wh,
        covered_s=covered_s,
        readings=readings,
        windows=windows,
        quarter=quarter_of(window_start_ms, hour),
        export_wh=export_wh,
        estimated_wh=estimated_wh,
        estimated_export_wh=estimated_export_wh,
    )


def added_window(
    meter_id: str, window_start_ms: int, acc: Accumulator, zone: ZoneInfo
) -> RollupChange:
    """What a whole window (its accumulator, every direction and kind) adds to rollups that
    did not count it yet: a store's rollups built again from its windows."""
    return added(
        meter_id,
        window_start_ms,
        acc.energy_wh,
        acc.covered_s,
        acc.readings,
        1,
        zone,
        export_wh=acc.export_wh,
        estimated_wh=acc.estimated_wh,
        estimated_export_wh=acc.estimated_export_wh,
    )


@dataclass(frozen=True)
class Sums:
    """A meter's sums over one local hour or day, counted afresh from its windows; for an hour,
    `quarters_wh` holds the energy of its windows in each quarter hour."""

    energy_wh: float
    covered_s: float
    readings: int
    windows: int
    last_window_ms: int
    quarters_wh: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0


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
    hourly = {hour: _sums(found, hour) for hour, found in hours.items()}
    every = [item for found in hours.values() for item in found]
    return hourly, (_sums(every, None) if every else None)


def _sums(windows: list[tuple[int, Accumulator]], hour_ms: int | None) -> Sums:
    quarters = [0.0, 0.0, 0.0, 0.0]
    if hour_ms is not None:
        for start, acc in windows:
            quarters[quarter_of(start, hour_ms)] += acc.energy_wh
    return Sums(
        energy_wh=sum(acc.energy_wh for _, acc in windows),
        covered_s=sum(acc.covered_s for _, acc in windows),
        readings=sum(acc.readings for _, acc in windows),
        windows=len(windows),
        last_window_ms=max(start for start, _ in windows),
        quarters_wh=(quarters[0], quarters[1], quarters[2], quarters[3]),
        export_wh=sum(acc.export_wh for _, acc in windows),
        estimated_wh=sum(acc.estimated_wh for _, acc in windows),
        estimated_export_wh=sum(acc.estimated_export_wh for _, acc in windows),
    )
