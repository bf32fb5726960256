"""Peak demand: the mean power of each demand interval, and the highest per billing month.

A demand interval is a local clock quarter hour, half hour or hour (15, 30 or 60
minutes); its demand is its energy divided by its duration. Intervals are built
from a scope's quarter-hour energies (`ScopeHour`), so a local half hour is the
first or second half of a local clock hour, also in zones whose hours start at
:30 or :45 UTC. Billing months are local calendar months of the site's zone.

A scope with a negative term (a remainder: main − sub-meters) would overstate its
demand in an hour in which a member has no data, so such hours count for its peaks
only when every member has data covering nearly all the hour (98 %: a gap longer than
72 s in a sub-meter leaves the hour out); a sum of meters only understates, and counts.
Pure: the zone comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from campus_energy.core.answers import QUARTER_MS, ScopeHour
from campus_energy.core.days import midnight_ms
from campus_energy.core.peaks import interval_energy, intervals_of
from campus_energy.core.timestamps import utc_datetime

Month = tuple[int, int]  # (year, month) of the site's local calendar
KW = Decimal("0.001")
FULL_HOUR_S = 0.98 * 3600  # covered seconds of an hour that count as all of it


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
    intervals = intervals_of((), interval_min)  # ValueError for a length not 15, 30 or 60
    hours_long = interval_min / 60
    signed = any(w < 0 for w in terms.values())
    points: list[DemandPoint] = []
    for hour in sorted(hours, key=lambda h: h.hour_ms):
        complete = counts(hour, len(terms))
        for quarters in intervals:
            wh = interval_energy(hour.quarters_wh, quarters)
            start = hour.hour_ms + quarters[0] * QUARTER_MS
            points.append(DemandPoint(start, wh / 1000 / hours_long, complete or not signed))
    return points


def counts(hour: ScopeHour, members: int) -> bool:
    """Whether an hour of a scope with a negative term counts for its peaks: every member
    reported, each covering nearly all the hour (a gap in a sub-meter would show as a
    remainder's peak)."""
    return hour.members >= members and hour.min_covered_s >= FULL_HOUR_S


def month_of(ms: int, zone: tzinfo) -> Month:
    local = utc_datetime(ms).astimezone(zone)
    return (local.year, local.month)


class _Months:
    """The local month of instants met in time order, without a zone lookup for each."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.month: Month = (0, 0)
        self.start_ms = self.end_ms = 0

    def of(self, ms: int) -> Month:
        if not self.start_ms <= ms < self.end_ms:
            self.month = month_of(ms, self.zone)
            self.start_ms = midnight_ms(month_start(self.month), self.zone)
            self.end_ms = midnight_ms(month_start(month_after(self.month)), self.zone)
        return self.month


def peak(month: Month, energy_wh: float, start_ms: int, interval_min: int) -> Peak:
    """A month's peak from its interval's energy."""
    kw = Decimal(energy_wh) / 1000 * 60 / interval_min
    return Peak(month, kw.quantize(KW, ROUND_HALF_UP), start_ms)


def monthly_peaks(points: Sequence[DemandPoint], zone: tzinfo) -> dict[Month, Peak]:
    """Per local month, its highest demand among the intervals that count (`counts`).
    The earliest interval wins a tie."""
    best: dict[Month, DemandPoint] = {}
    months = _Months(zone)
    for point in sorted(points, key=lambda p: p.start_ms):
        if not point.counts:
            continue
        month = months.of(point.start_ms)
        found = best.get(month)
        if found is None or point.kw > found.kw:
            best[month] = point
    return {
        m: Peak(m, Decimal(p.kw).quantize(KW, ROUND_HALF_UP), p.start_ms) for m, p in best.items()
    }


def peaks_of_hours(
    hours: Iterable[ScopeHour],
    interval_min: int,
    terms: Mapping[str, float],
    zone: tzinfo,
    end_ms: int | None = None,
) -> dict[Month, Peak]:
    """`monthly_peaks(series(hours, ...))` without building the series: per local month the
    interval with the highest energy among the hours that count, those before `end_ms`."""
    intervals = intervals_of((), interval_min)
    signed = any(w < 0 for w in terms.values())
    best: dict[Month, tuple[float, int]] = {}
    months = _Months(zone)
    for hour in sorted(hours, key=lambda h: h.hour_ms):
        if (signed and not counts(hour, len(terms))) or (
            end_ms is not None and hour.hour_ms >= end_ms
        ):
            continue
        month = months.of(hour.hour_ms)
        for quarters in intervals:
            wh = interval_energy(hour.quarters_wh, quarters)
            found = best.get(month)
            if found is None or wh > found[0]:
                best[month] = (wh, hour.hour_ms + quarters[0] * QUARTER_MS)
    return {m: peak(m, wh, start, interval_min) for m, (wh, start) in best.items()}


def month_bounds(first: Month, last: Month, zone: tzinfo) -> list[int]:
    """The local midnights starting the months first..last, and the one after `last`."""
    bounds, month = [], first
    while month <= last:
        bounds.append(midnight_ms(month_start(month), zone))
        month = month_after(month)
    bounds.append(midnight_ms(month_start(month), zone))
    return bounds


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
