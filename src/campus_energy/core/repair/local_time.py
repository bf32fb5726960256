"""Local time stored as UTC: which runs hold it, and how their stamps convert.

The jumps into and out of such a span equal the site zone's UTC offset. Each
chain of right-era runs is labelled at the least cost: a step that fits its
labels costs nothing, one that does not costs 1, and entering local time costs
`LOCAL_PRIOR`, so a backward jump by the offset is proof enough, a forward one
only together with its counterpart. A jump by the offset that nothing proves
either way is left as it is, with a notice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

from campus_energy.core.repair.stamps import Era, Retime, Rules
from campus_energy.core.repair.survey import Edge, Run

LOCAL_PRIOR = 0.5  # the cost of calling a span local time: half an unexplained jump
UNIFORM_ZONE_SPAN_MS = 60 * 86_400_000  # shorter local runs with one offset at both ends shift


def _can_be_local(run: Run, rules: Rules) -> bool:
    return rules.utc(run.first.ms) != run.first.ms or rules.utc(run.last.ms) != run.last.ms


def _fits(a: Edge, b: Edge, a_local: bool, b_local: bool, rules: Rules) -> bool:
    """Whether the step from run edge a to b is plausible if a and b are (not) local time
    (either pass through a repeated local hour)."""
    xs = {rules.utc(a.ms, 0), rules.utc(a.ms, 1)} if a_local else {a.ms}
    ys = {rules.utc(b.ms, 0), rules.utc(b.ms, 1)} if b_local else {b.ms}
    span = rules.span(a.seq, b.seq)
    for x, y in itertools.product(xs, ys):
        if a_local == b_local:
            if rules.follows(x, a.seq, y, b.seq):
                return True
        elif abs(y - x - span) <= rules.tolerance_ms:
            return True
    return False


def local_runs(runs: Sequence[Run], rules: Rules) -> list[bool]:
    """Which runs hold local time: the cheapest labelling of each chain of right-era runs.

    A step that fits its labels costs nothing, one that does not costs 1, and entering local
    time costs LOCAL_PRIOR: a backward jump by the UTC offset is explained as local time, a
    forward one only when its counterpart comes too.
    """
    local = [False] * len(runs)
    chain: list[int] = []
    for i, run in enumerate([*runs, None]):
        if run is not None and run.era is Era.OK:
            chain.append(i)
            continue
        if chain:
            labels = _label_chain([runs[i] for i in chain], rules)
            for i_run, label in zip(chain, labels, strict=True):
                local[i_run] = label
        chain = []
    return local


def _label_chain(chain: Sequence[Run], rules: Rules) -> list[bool]:
    can = [_can_be_local(run, rules) for run in chain]
    cost = {False: 0.0, True: LOCAL_PRIOR if can[0] else math.inf}
    back: list[dict[bool, bool]] = []
    for k in range(1, len(chain)):
        a, b = chain[k - 1].last, chain[k].first
        new_cost: dict[bool, float] = {}
        pointer: dict[bool, bool] = {}
        for b_local in (False, True):
            best = (math.inf, False)
            if b_local and not can[k]:
                new_cost[b_local], pointer[b_local] = best
                continue
            for a_local in (False, True):
                c = cost[a_local] + (0.0 if _fits(a, b, a_local, b_local, rules) else 1.0)
                c += LOCAL_PRIOR if b_local and not a_local else 0.0
                if c < best[0]:
                    best = (c, a_local)
            new_cost[b_local], pointer[b_local] = best
        cost = new_cost
        back.append(pointer)
    state = cost[True] < cost[False]
    labels = [state]
    for pointer in reversed(back):
        state = pointer[state]
        labels.append(state)
    return labels[::-1]


def convert_runs(
    runs: Sequence[Run], local: Sequence[bool], rules: Rules
) -> list[tuple[Retime, int | None]]:
    """Each run's reading of its stored values (format, local time), before any shift."""
    found: list[tuple[Retime, int | None]] = []
    previous: int | None = None
    for run, is_local in zip(runs, local, strict=True):
        retime, zone_shift = Retime(run.fmt), None
        if is_local:
            fold = 0
            first = run.first.ms
            if previous is not None and rules.utc(first, 0) <= previous < rules.utc(first, 1):
                fold = 1  # the second pass through a repeated hour
            off_first = rules.utc(first, fold) - first
            off_last = rules.utc(run.last.ms, fold) - run.last.ms
            zone_shift = off_first
            uniform = off_first == off_last and run.last.ms - first < UNIFORM_ZONE_SPAN_MS
            if uniform:
                retime = Retime(run.fmt, shift_ms=off_first)
            else:
                retime = Retime(run.fmt, rules.zone, fold)
        found.append((retime, zone_shift))
        previous = retime.apply(run.last.ms)
    return found


def offset_notices(runs: Sequence[Run], local: Sequence[bool], rules: Rules) -> Iterator[str]:
    """A notice for each jump between two UTC runs that equals the zone's UTC offset."""
    for k in range(1, len(runs)):
        a, b = runs[k - 1], runs[k]
        if local[k - 1] or local[k] or a.era is not Era.OK or b.era is not Era.OK:
            continue
        if _fits(a.last, b.first, False, True, rules) or _fits(a.last, b.first, True, False, rules):
            yield (
                f"the jump before seq {b.first.seq} equals the site's UTC offset: if the readings "
                "on one side of it are local time, nothing here proves which; left as they are"
            )
