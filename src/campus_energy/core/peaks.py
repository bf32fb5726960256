"""A scope's peak per range of hours: the demand intervals a local hour holds, and the highest.

What `WindowSource.scope_peaks` answers. A demand interval of 15, 30 or 60 minutes is
one quarter of a local clock hour, its first or second half, or the whole hour; its
energy is the sum of those quarters' energies (`INTERVALS`, first quarter first). The
SQL sources build their queries from `INTERVALS` and compute the peaks in the store;
the Firestore source's index computes them here (`peaks_of`) from its hours. Pure.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
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
            energy = hour.quarters_wh[quarters[0]]
            for quarter in quarters[1:]:
                energy += hour.quarters_wh[quarter]  # as the stores add: left to right
            start = hour.hour_ms + quarters[0] * QUARTER_MS
            found = best.get(i)
            if found is None or energy > found[0] or (energy == found[0] and start < found[1]):
                best[i] = (energy, start)
    return [ScopePeak(i, energy, start) for i, (energy, start) in sorted(best.items())]
