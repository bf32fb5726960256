"""A scope's hours from the logger's store: the `HoursOf` that `accounts` prices and peaks.

Per local clock hour of the site's zone, each quarter hour's energy is the store's own
rule (`store_queries`): the energy of a meter's readings with ts in [quarter start,
quarter end), the difference of the cumulative `energy_total` of its last reading
before either end. So a quarter costs one index seek per meter at its end boundary —
inside the meter's span of readings; past it, one seek serves every boundary — and
never a read of the readings in between: a month of a dozen meters is about 36,000
seeks, whatever the polling interval.

For each hour: the signed sum (the scope's weights, so "a - b" is a remainder) of each
quarter; `members`, the scope's meters with a reading in the hour; and `min_covered_s`,
the least among them of the time their readings in the hour integrated — the store's
rule again: from the last reading before the hour to the last one in it, less the gaps
recorded as ending in it (the first reading a meter ever made integrated nothing). An
hour in which no member has a reading is left out, as the window sources leave out an
hour without rollups. Its `estimated_wh` is the signed sum of the members' parts of
their estimates (what their registers counted across a gap) that fall in the hour, in
proportion to time over each gap — from the meter's reading before it to the reading
that carries it (`store_queries.estimates`) — apart from the measured quarters, as the
window sources give it: so a gap's estimate is priced at the rates of the hours it spans.
A meter whose only share of an hour is such a part is one of its members, covering none
of it (as a window source has a rollup row of that meter that covered nothing).
"""

from __future__ import annotations

import bisect
import itertools
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from campus_energy.core.answers import QUARTER_MS, ScopeHour
from campus_energy.core.days import hour_of
from campus_energy.dashboard import store_queries as q

HOUR_MS = 3_600_000


def local_hours(start_ms: int, end_ms: int, zone: tzinfo) -> list[int]:
    """The starts of the site's clock hours that begin in [start_ms, end_ms), and the start
    of the hour after the last of them (where it ends)."""
    found: list[int] = []
    t = -(-start_ms // QUARTER_MS) * QUARTER_MS  # every clock hour starts on a UTC quarter
    while True:
        if hour_of(t, zone) != t:
            t += QUARTER_MS
            continue
        found.append(t)
        if t >= end_ms:
            return found
        t += HOUR_MS if hour_of(t + HOUR_MS, zone) == t + HOUR_MS else QUARTER_MS


@dataclass(frozen=True)
class MeterHour:
    """One meter's share of one hour: its quarters' energy (µWh) and covered time (ms)."""

    hour_ms: int
    quarters_uwh: tuple[int, int, int, int]
    covered_ms: int


def meter_hours(
    conn: sqlite3.Connection, key: int, hours: Sequence[int], bounds: Sequence[int]
) -> list[MeterHour]:
    """The hours (starts `hours[:-1]`, ends at the next) in which the meter `key` has a
    reading; `bounds` are the quarter marks from hours[0] to hours[-1]."""
    found = q.edges(conn, key, bounds)
    if found[-1][0] is None or found[-1][0] < bounds[0]:
        return []  # no reading in the range
    base = found[0] if found[0][0] is not None else q.first_edge(conn, key, bounds[0])
    # where a boundary has no reading before it, the meter has not begun: its first reading
    at = [edge if edge[0] is not None else base for edge in found]
    gaps_ms = [0] * (len(bounds) - 1)
    for a, b in q.gaps_ending(conn, key, bounds[0], bounds[-1]):
        gaps_ms[bisect.bisect_right(bounds, b) - 1] += b - a
    shares: list[MeterHour] = []
    for start, end in itertools.pairwise(hours):
        i, j = bisect.bisect_left(bounds, start), bisect.bisect_left(bounds, end)
        if found[j][0] is None or found[j][0] < start:
            continue  # no reading in the hour
        quarters = [0, 0, 0, 0]
        for k in range(i, j):
            # a quarter past the fourth: only in a zone whose clocks move by half an hour
            quarters[min(k - i, 3)] += _uwh(at[k + 1]) - _uwh(at[k])
        covered = at[j][0] - at[i][0] - sum(gaps_ms[i:j])
        shares.append(
            MeterHour(start, (quarters[0], quarters[1], quarters[2], quarters[3]), covered)
        )
    return shares


def _uwh(edge: tuple[Any, Any]) -> int:
    return int(edge[1])


def scope_hours(
    conn: sqlite3.Connection,
    zone: tzinfo,
    start_ms: int,
    end_ms: int,
    terms: Mapping[str, float],
) -> list[ScopeHour]:
    """The scope's (`terms`: meter id -> weight) hours that start in [start_ms, end_ms), in
    time order. A meter the store does not know has no readings."""
    keys = {m.meter_id: m.key for m in q.meters(conn) if m.meter_id in terms}
    if not keys:
        return []
    hours = local_hours(start_ms, end_ms, zone)
    if len(hours) < 2:
        return []
    bounds = list(range(hours[0], hours[-1] + 1, QUARTER_MS))
    sums: dict[int, list[float]] = {}
    members: dict[int, int] = {}
    least_ms: dict[int, int] = {}
    estimated: dict[int, float] = {}
    weights = {key: terms[meter_id] for meter_id, key in keys.items()}
    guessed: dict[int, set[int]] = {}  # meter key -> the hours with a part of its estimates
    for found in q.estimates(conn, list(weights), hours[0], hours[-1]):
        for index, (uwh, _) in found.within(hours).items():
            hour = hours[index]
            estimated[hour] = estimated.get(hour, 0.0) + weights[found.key] * uwh
            guessed.setdefault(found.key, set()).add(hour)
    for meter_id, key in keys.items():
        weight = terms[meter_id]
        measured = meter_hours(conn, key, hours, bounds)
        have = {share.hour_ms for share in measured}
        only_estimated = sorted(guessed.get(key, set()) - have)
        for share in measured + [MeterHour(h, (0, 0, 0, 0), 0) for h in only_estimated]:
            hour = share.hour_ms
            quarters = sums.setdefault(hour, [0.0, 0.0, 0.0, 0.0])
            for index, uwh in enumerate(share.quarters_uwh):
                quarters[index] += weight * uwh
            members[hour] = members.get(hour, 0) + 1
            least_ms[hour] = min(least_ms.get(hour, share.covered_ms), share.covered_ms)
    return [
        ScopeHour(
            hour,
            (v[0] / q.UWH, v[1] / q.UWH, v[2] / q.UWH, v[3] / q.UWH),
            least_ms[hour] / 1000,
            members[hour],
            estimated.get(hour, 0.0) / q.UWH,
        )
        for hour, v in sorted(sums.items())
    ]
