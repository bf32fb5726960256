"""Peak demand: the mean power of each demand interval, and the highest per billing month.

A demand interval is a local clock quarter hour, half hour or hour (15, 30 or 60
minutes); its demand is its energy divided by its duration. Intervals are built
from a scope's quarter-hour energies (`ScopeHour`), so a local half hour is the
first or second half of a local clock hour, also in zones whose hours start at
:30 or :45 UTC. Billing months are local calendar months of the site's zone.

A scope with a negative term (a remainder: main − sub-meters) would overstate its
demand in an hour in which a member has no data, so such hours count for its peaks
only when every member has data; a sum of meters only understates, and counts.
Pure: the zone comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from campus_energy.core.answers import QUARTER_MS, ScopeHour
from campus_energy.core.timestamps import utc_datetime

Month = tuple[int, int]  # (year, month) of the site's local calendar
KW = Decimal("0.001")


@dataclass(frozen=True)
class DemandPoint:
    start_ms: int
    kw: float
    counts: bool  # for peaks: every member had data in its hour, or the scope has no negative term


@dataclass(frozen=True)
class Peak:
    """The highest demand of a billing month and when its interval started."""

    month: Month
    kw: Decimal  # rounded to 0.001 kW
    start_ms: int


def series(
    hours: Iterable[ScopeHour], interval_min: int, terms: Mapping[str, float]
) -> list[DemandPoint]:
    """The demand of every interval of `hours` (kW), in time order."""
    per_hour = {15: 4, 30: 2, 60: 1}.get(interval_min)
    if per_hour is None:
        raise ValueError(f"demand interval must be 15, 30 or 60 minutes, got {interval_min}")
    size = 4 // per_hour
    hours_long = interval_min / 60
    signed = any(w < 0 for w in terms.values())
    points: list[DemandPoint] = []
    for hour in sorted(hours, key=lambda h: h.hour_ms):
        complete = hour.members >= len(terms)
        for part in range(per_hour):
            wh = sum(hour.quarters_wh[part * size : (part + 1) * size])
            start = hour.hour_ms + part * size * QUARTER_MS
            points.append(DemandPoint(start, wh / 1000 / hours_long, complete or not signed))
    return points


def month_of(ms: int, zone: tzinfo) -> Month:
    local = utc_datetime(ms).astimezone(zone)
    return (local.year, local.month)


def monthly_peaks(points: Sequence[DemandPoint], zone: tzinfo) -> dict[Month, Peak]:
    """Per local month, its highest demand among the intervals that count (`counts`).
    The earliest interval wins a tie."""
    peaks: dict[Month, Peak] = {}
    for point in points:
        if not point.counts:
            continue
        month = month_of(point.start_ms, zone)
        kw = Decimal(point.kw).quantize(KW, ROUND_HALF_UP)
        best = peaks.get(month)
        if best is None or kw > best.kw:
            peaks[month] = Peak(month, kw, point.start_ms)
    return peaks


def previous_months(month: Month, count: int) -> list[Month]:
    """The `count` months before `month`, the nearest first."""
    year, number = month
    found: list[Month] = []
    for _ in range(count):
        number -= 1
        if number == 0:
            year, number = year - 1, 12
        found.append((year, number))
    return found


def month_start(month: Month) -> date:
    return date(month[0], month[1], 1)


def month_after(month: Month) -> Month:
    return (month[0] + 1, 1) if month[1] == 12 else (month[0], month[1] + 1)


def ratchet_floor(
    peaks: Mapping[Month, Peak], month: Month, share: Decimal, months: int
) -> Decimal:
    """share × the highest peak of the `months` billing months before `month` (0 if none)."""
    earlier = [peaks[m].kw for m in previous_months(month, months) if m in peaks]
    return (share * max(earlier)).quantize(KW, ROUND_HALF_UP) if earlier else Decimal(0)
