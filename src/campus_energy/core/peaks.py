"""A scope's peak per range of hours: the demand intervals a local hour holds, and the highest.

What `WindowSource.scope_peaks` answers. A demand interval of 15, 30 or 60 minutes is
one quarter of a local clock hour, its first or second half, or the whole hour; its
energy is the sum of those quarters' energies (`INTERVALS`, first quarter first). The
SQL sources build their queries from `INTERVALS` and compute the peaks in the store;
the Firestore source's index computes them here (`peaks_of`) from its hours. Pure.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from campus_energy.core.answers import QUARTER_MS, ScopeHour, ScopePeak

Quarters = tuple[int, ...]  # the quarters (0..3) of an hour an interval sums, in order

# demand interval (minutes) -> its intervals in an hour, earliest first
INTERVALS: dict[int, tuple[Quarters, ...]] = {
    15: ((0,), (1,), (2,), (3,)),
    30: ((0, 1), (2, 3)),
    60: ((0, 1, 2, 3),),
}


def intervals_of(bounds: Sequence[int], interval_min: int) -> tuple[Quarters, ...]:
    """The intervals of an hour for `interval_min`; ValueError for another length, or for
    bounds that descend somewhere."""
    found = INTERVALS.get(interval_min)
    if found is None:
        raise ValueError(f"demand interval must be 15, 30 or 60 minutes, got {interval_min}")
    if any(later < earlier for earlier, later in pairwise(bounds)):
        raise ValueError("the bounds of a scope's peaks must ascend")
    return found


def interval_energy(quarters_wh: Sequence[float], quarters: Quarters) -> float:
    """An interval's energy: its quarters' added left to right, as the stores add them."""
    energy = quarters_wh[quarters[0]]
    for quarter in quarters[1:]:
        energy += quarters_wh[quarter]
    return energy


def peaks_of(
    hours: Iterable[ScopeHour], bounds: Sequence[int], interval_min: int, min_members: int
) -> list[ScopePeak]:
    """For each range [bounds[i], bounds[i + 1]) holding an hour of `hours` (in any order)
    with at least `min_members` members, the interval with the highest energy, the earliest
    of equals; in range order."""
    intervals = intervals_of(bounds, interval_min)
    best: dict[int, tuple[float, int]] = {}
    last = len(bounds) - 1
    for hour in hours:
        i = bisect.bisect_right(bounds, hour.hour_ms) - 1
        if hour.members < min_members or not 0 <= i < last:
            continue
        for quarters in intervals:
            energy = interval_energy(hour.quarters_wh, quarters)
            start = hour.hour_ms + quarters[0] * QUARTER_MS
            found = best.get(i)
            if found is None or energy > found[0] or (energy == found[0] and start < found[1]):
                best[i] = (energy, start)
    return [ScopePeak(i, energy, start) for i, (energy, start) in sorted(best.items())]


# A day's peak of each interval length, as a meter's daily rollup keeps it: interval
# (minutes) -> (energy, start ms), the highest of the day's intervals, the earliest of equals.
Peak = tuple[float, int]
DayPeaks = dict[int, Peak]


def _above(candidate: Peak, held: Peak) -> bool:
    """`candidate` beats `held`: more energy, or as much and earlier."""
    return candidate[0] > held[0] or (candidate[0] == held[0] and candidate[1] < held[1])


def hour_peaks(hour_ms: int, quarters_wh: Sequence[float]) -> DayPeaks:
    """An hour's highest interval of each length, from its quarters' energies (summed left to
    right, as the stores add them), the earliest of equals."""
    found: DayPeaks = {}
    for minutes, intervals in INTERVALS.items():
        for quarters in intervals:
            peak = (interval_energy(quarters_wh, quarters), hour_ms + quarters[0] * QUARTER_MS)
            held = found.get(minutes)
            if held is None or _above(peak, held):
                found[minutes] = peak
    return found


def day_peaks(hours: Iterable[tuple[int, Sequence[float]]]) -> DayPeaks:
    """A day's highest interval of each length over its hours (hour start, quarters), in any
    order; empty without hours."""
    found: DayPeaks = {}
    for hour_ms, quarters_wh in hours:
        for minutes, peak in hour_peaks(hour_ms, quarters_wh).items():
            held = found.get(minutes)
            if held is None or _above(peak, held):
                found[minutes] = peak
    return found


def raised(held: DayPeaks, hour_ms: int, quarters_wh: Sequence[float]) -> DayPeaks | None:
    """A day's peaks once one of its hours has these quarters (`held`: the day's peaks before,
    an interval missing when the day had none), every other hour unchanged; None when they
    can only be counted afresh from the day's hours: the hour held a peak that went down."""
    found = dict(held)
    for minutes, peak in hour_peaks(hour_ms, quarters_wh).items():
        before = held.get(minutes)
        if before is None or _above(peak, before):
            found[minutes] = peak
        elif hour_ms <= before[1] < hour_ms + 4 * QUARTER_MS and peak != before:
            if peak[0] < before[0]:
                return None  # the hour held the day's peak and lost it
            found[minutes] = peak  # as much, later in the same hour: still the earliest
    return found


def peak_values(peaks: DayPeaks) -> tuple[float | int, ...]:
    """The peaks as a daily rollup's columns: energy and start of 15, 30, then 60 minutes."""
    return tuple(value for minutes in INTERVALS for value in peaks[minutes])


def peaks_from(values: Sequence[float | int | None]) -> DayPeaks:
    """The peaks from a daily rollup's columns (`peak_values`'s order); None: no peak yet."""
    found: DayPeaks = {}
    for k, minutes in enumerate(INTERVALS):
        energy, start = values[2 * k], values[2 * k + 1]
        if energy is not None and start is not None:
            found[minutes] = (float(energy), int(start))
    return found


def daily_scope(terms: Mapping[str, float], min_members: int) -> tuple[str, float] | None:
    """The meter and weight of a scope whose peaks its daily rollups' peaks give exactly: one
    meter, any hour of it counted (`min_members` at most 1), a weight that is a positive
    power of two (scaling by it is exact, so it keeps every sum and every order); else None."""
    if len(terms) != 1 or min_members > 1:
        return None
    ((meter, weight),) = terms.items()
    w = float(weight)
    if not (0.0 < w < math.inf) or math.frexp(w)[0] != 0.5:
        return None
    return meter, w


def day_range(bounds: Sequence[int]) -> tuple[str, str]:
    """The first and last calendar day ('YYYY-MM-DD') a local day between the first and the
    last bound may be, in any zone (a UTC day either side)."""
    first = datetime.fromtimestamp(bounds[0] / 1000, UTC).date() - timedelta(days=1)
    last = datetime.fromtimestamp(bounds[-1] / 1000, UTC).date() + timedelta(days=1)
    return first.isoformat(), last.isoformat()
