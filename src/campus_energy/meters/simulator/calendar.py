"""The calendar of the simulated load, and its sums in closed form.

Occupancy is piecewise linear in the local second of the day, times a weekday
factor; the HVAC's on-runs repeat every UTC day. Sums of either over any run
of whole seconds are arithmetic series and table look-ups, which is what makes
a register's integral since a fixed epoch cheap. Pure: no clock is read.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

DAY_S = 86_400
WEEK_S = 7 * DAY_S
QUARTER_S = 900

# The occupancy of a weekday: (second of the local day, share), linear in between. Working
# hours ramp up 07:30-08:30, a lunch dip to 0.8 from 12:15 to 13:30, the day ends 17:30-18:30
# into an evening of 0.15 that fades out 21:30-22:30.
_SHAPE = (
    (0, 0.0),
    (27_000, 0.0),
    (30_600, 1.0),
    (44_100, 1.0),
    (45_000, 0.8),
    (47_700, 0.8),
    (48_600, 1.0),
    (63_000, 1.0),
    (66_600, 0.15),
    (77_400, 0.15),
    (81_000, 0.0),
    (DAY_S, 0.0),
)
_BREAKS = tuple(s for s, _ in _SHAPE)
_SLOPES = tuple((v1 - v0) / (s1 - s0) for (s0, v0), (s1, v1) in pairwise(_SHAPE))
WEEKEND_FACTOR = 0.25


def shape(second: int) -> float:
    """Occupancy of a weekday at a whole second of the local day (0 <= second < DAY_S)."""
    i = bisect_right(_BREAKS, second) - 1
    return _SHAPE[i][1] + _SLOPES[i] * (second - _BREAKS[i])


def _piece_sum(i: int, n: int) -> float:
    """Σ shape(s) over the first n seconds of piece i: an arithmetic series."""
    return n * _SHAPE[i][1] + _SLOPES[i] * n * (n - 1) / 2


_SHAPE_BEFORE = (
    0.0,
    *(
        sum(_piece_sum(j, _BREAKS[j + 1] - _BREAKS[j]) for j in range(i + 1))
        for i in range(len(_SLOPES))
    ),
)


def shape_sum(end: int) -> float:
    """Σ shape(s) for 0 <= s < end (0 <= end <= DAY_S)."""
    if end >= DAY_S:
        return _SHAPE_BEFORE[-1]
    i = bisect_right(_BREAKS, end) - 1
    return _SHAPE_BEFORE[i] + _piece_sum(i, end - _BREAKS[i])


SHAPE_DAY = shape_sum(DAY_S)


def weekday_factor(local_day: int) -> float:
    """1 on Monday to Friday, `WEEKEND_FACTOR` at the weekend (local day 0 was a Thursday)."""
    return 1.0 if (local_day + 3) % 7 < 5 else WEEKEND_FACTOR


_WEEK_BEFORE = tuple(sum(weekday_factor(d) for d in range(n)) for n in range(8))


def weekday_factor_sum(local_day: int) -> float:
    """Σ weekday_factor(d) for 0 <= d < local_day (negative below 0)."""
    weeks, rest = divmod(local_day, 7)
    return weeks * _WEEK_BEFORE[7] + _WEEK_BEFORE[rest]


def occupancy(local: datetime) -> float:
    """Share of the daytime load in use: weekday working hours, a lunch dip, quiet weekends."""
    second = local.hour * 3600 + local.minute * 60 + local.second
    factor = 1.0 if local.weekday() < 5 else WEEKEND_FACTOR
    return shape(second) * factor


@functools.lru_cache(maxsize=1 << 16)
def _quarter_offset_s(zone: ZoneInfo, quarter: int) -> int:
    offset = datetime.fromtimestamp(quarter * QUARTER_S, zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def utc_offset_s(zone: ZoneInfo, t: int) -> int:
    """The zone's offset from UTC at UTC epoch second `t`, in whole seconds.

    Taken at the start of t's quarter hour (UTC), where every time zone changes
    its offset, so that it can be remembered per quarter hour.
    """
    return _quarter_offset_s(zone, t // QUARTER_S)


def offset_runs(zone: ZoneInfo, a: int, b: int) -> list[tuple[int, int, int]]:
    """[a, b) cut where the zone's offset changes: (start, end, offset) runs.

    The offset is probed weekly and each change is located by bisection, so
    changes closer together than a week (which no time zone has) are missed.
    """
    if b <= a:
        return []
    runs: list[tuple[int, int, int]] = []
    start, offset = a, utc_offset_s(zone, a)
    probe = a
    while probe < b - 1:
        nxt = min(probe + WEEK_S, b - 1)
        changed = utc_offset_s(zone, nxt)
        if changed != offset:
            lo, hi = probe, nxt  # offset(lo) == offset, offset(hi) != offset
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if utc_offset_s(zone, mid) == offset:
                    lo = mid
                else:
                    hi = mid
            runs.append((start, hi, offset))
            start, offset = hi, changed
        probe = nxt
    runs.append((start, b, offset))
    return runs


@dataclass(frozen=True)
class HvacDay:
    """The HVAC's on-runs [start, end) over a local day, sorted, with prefix sums."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    on_before: tuple[int, ...]  # on-seconds in the runs before run i
    shape_before: tuple[float, ...]  # Σ shape over the runs before run i
    on_total: int
    shape_total: float

    @classmethod
    def of(cls, runs: Sequence[tuple[int, int]]) -> HvacDay:
        ordered = sorted(runs)
        on, weight = [0], [0.0]
        for start, end in ordered:
            on.append(on[-1] + end - start)
            weight.append(weight[-1] + shape_sum(end) - shape_sum(start))
        return cls(
            tuple(s for s, _ in ordered),
            tuple(e for _, e in ordered),
            tuple(on[:-1]),
            tuple(weight[:-1]),
            on[-1],
            weight[-1],
        )

    def _run(self, end: int) -> int:
        return bisect_right(self.starts, end - 1) - 1

    def on_count(self, end: int) -> int:
        """On-seconds s < end of the local day."""
        i = self._run(end)
        return 0 if i < 0 else self.on_before[i] + min(end, self.ends[i]) - self.starts[i]

    def shape_sum(self, end: int) -> float:
        """Σ shape(s) over the on-seconds s < end of the local day."""
        i = self._run(end)
        if i < 0:
            return 0.0
        stop = min(end, self.ends[i])
        return self.shape_before[i] + shape_sum(stop) - shape_sum(self.starts[i])
