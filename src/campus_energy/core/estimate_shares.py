"""An estimate's share of any range of time: in proportion to time, in whole µWh.

An estimate (what a meter's own registers counted across a gap the logger could not
integrate) covers (start, end]: from the meter's reading before the gap to the reading
that carries it. The part of it in a range [a, b) is the estimate × the time the range
shares with the gap ÷ the gap's length — the rule by which the bridge's windows share it
(`core.windows._shares`), so a dashboard's hours, days and ranges hold what the windows,
rollups and bills hold, whatever the range's bounds (a local midnight, a clock hour, a
moment).

In whole µWh, the unit of the logger's store: the part before a moment t is rounded down,
and the share of [a, b) is the part before b less the part before a. So the shares of
ranges that cover the gap add up to the estimate exactly, and a range's share is the sum
of the shares of the ranges it is cut into (a day is its hours), each within a µWh of
the exact proportion.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """(start_ms, end_ms]: the time an estimate covers. `start_ms` None (or not before the
    end): not known — the whole estimate counts at `end_ms`, as a window counts it when the
    reading names no start."""

    start_ms: int | None
    end_ms: int

    @property
    def known(self) -> bool:
        return self.start_ms is not None and self.start_ms < self.end_ms

    def part_before(self, amount: int, t_ms: int) -> int:
        """The part of `amount` (µWh) over the gap that lies before `t_ms`, rounded down."""
        if self.start_ms is None or self.start_ms >= self.end_ms:
            return amount if t_ms > self.end_ms else 0
        span = self.end_ms - self.start_ms
        elapsed = min(max(t_ms - self.start_ms, 0), span)
        return amount * elapsed // span

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        """Whether any of the gap's time (or, not known, its end) lies in [start_ms, end_ms)."""
        if self.start_ms is None or self.start_ms >= self.end_ms:
            return start_ms <= self.end_ms < end_ms
        return self.start_ms < end_ms and self.end_ms > start_ms


def shares(gap: Gap, amount: int, bounds: Sequence[int]) -> dict[int, int]:
    """i -> the part of `amount` (µWh) in [bounds[i], bounds[i + 1]) (ascending bounds), for
    each range the gap reaches that gets a part; what lies outside the bounds, none."""
    if len(bounds) < 2 or not amount:
        return {}
    if gap.known:
        assert gap.start_ms is not None
        first = max(bisect.bisect_right(bounds, gap.start_ms) - 1, 0)
    else:
        first = max(bisect.bisect_right(bounds, gap.end_ms) - 1, 0)
    last = min(bisect.bisect_right(bounds, gap.end_ms) - 1, len(bounds) - 2)
    found: dict[int, int] = {}
    before = gap.part_before(amount, bounds[first])
    for i in range(first, last + 1):
        upto = gap.part_before(amount, bounds[i + 1])
        if upto != before:
            found[i] = upto - before
        before = upto
    return found
