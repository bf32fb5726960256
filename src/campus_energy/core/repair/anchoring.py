"""Anchoring: the shift of every run, from a trusted run outwards.

Runs of a wrong era, and right-era runs that do not follow on from their
neighbours, are put next to a trusted neighbour run at the distance their seq
numbers imply (seq distance × poll interval), keeping their own spacing. Of
the possible anchors, the one that leaves the least time unexplained (then
moves the fewest readings) wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from campus_energy.core.repair.stamps import Era, Retime, Rules
from campus_energy.core.repair.survey import Run


def place_runs(
    runs: Sequence[Run], conversions: Sequence[tuple[Retime, int | None]], rules: Rules
) -> list[tuple[int, int | None]] | None:
    """The shift of every run and the seq it was anchored to; None when no run can be trusted."""
    first = [c.apply(r.first.ms) for r, (c, _) in zip(runs, conversions, strict=True)]
    last = [c.apply(r.last.ms) for r, (c, _) in zip(runs, conversions, strict=True)]
    good = [i for i, run in enumerate(runs) if run.era is Era.OK]
    if not good:
        return None

    def follows(i: int, j: int, si: int, sj: int) -> bool:
        return rules.follows(last[i] + si, runs[i].last.seq, first[j] + sj, runs[j].first.seq)

    broken = [k for k in range(len(good) - 1) if not follows(good[k], good[k + 1], 0, 0)]
    if not broken and len(good) == len(runs):
        return [(0, None)] * len(runs)
    candidates = {good[-1]} | {good[k] for k in broken} | {good[k + 1] for k in broken}
    best: tuple[tuple[int, int, int], list[tuple[int, int | None]]] | None = None
    for anchor in sorted(candidates):
        placed = _walk(anchor, good, runs, first, last, rules)
        key = (*_cost(placed, runs, first, last, rules), -anchor)
        if best is None or key < best[0]:
            best = (key, placed)
    assert best is not None
    return best[1]


def _walk(
    anchor: int,
    good: Sequence[int],
    runs: Sequence[Run],
    first: Sequence[int],
    last: Sequence[int],
    rules: Rules,
) -> list[tuple[int, int | None]]:
    """Keep the anchor, then go out from it run by run: keep a run that follows on where it
    is; move one that followed its moved neighbour before together with it (an outage stays
    an outage); put any other right next to its neighbour (seq distance × interval)."""
    shift: list[int | None] = [None] * len(runs)
    anchor_of: list[int | None] = [None] * len(runs)
    shift[anchor] = 0
    at = good.index(anchor)

    def place(near: int, far: int) -> None:  # `far` next to the placed run `near`
        a, b = (near, far) if near < far else (far, near)
        moved = shift[near] or 0
        sa, sb = (moved, 0) if near < far else (0, moved)
        span = rules.span(runs[a].last.seq, runs[b].first.seq)
        right_era = runs[a].era is Era.OK and runs[b].era is Era.OK
        if right_era and rules.follows(
            last[a] + sa, runs[a].last.seq, first[b] + sb, runs[b].first.seq
        ):
            shift[far] = 0
        elif right_era and rules.follows(last[a], runs[a].last.seq, first[b], runs[b].first.seq):
            shift[far] = moved
        else:
            snug = (
                last[a] + moved + span - first[b]
                if near < far
                else first[b] + moved - span - last[a]
            )
            shift[far] = snug
            anchor_of[far] = runs[near].last.seq if near < far else runs[near].first.seq

    for k in range(at + 1, len(good)):
        place(good[k - 1], good[k])
    for k in range(at - 1, -1, -1):
        place(good[k + 1], good[k])
    # runs of a wrong era go just before the run after them (the clock was set right then),
    # or after the run before them when nothing follows
    for i in range(len(runs) - 1, -1, -1):
        if shift[i] is None and i + 1 < len(runs) and shift[i + 1] is not None:
            place(i + 1, i)
    for i in range(1, len(runs)):
        if shift[i] is None:
            place(i - 1, i)
    return [(s or 0, a) for s, a in zip(shift, anchor_of, strict=True)]


def _cost(
    placed: Sequence[tuple[int, int | None]],
    runs: Sequence[Run],
    first: Sequence[int],
    last: Sequence[int],
    rules: Rules,
) -> tuple[int, int]:
    """(time left unexplained between runs, in tolerance units; readings moved)."""
    unexplained = 0
    for i in range(len(runs) - 1):
        step = (first[i + 1] + placed[i + 1][0]) - (last[i] + placed[i][0])
        unexplained += max(0, step - rules.span(runs[i].last.seq, runs[i + 1].first.seq))
    moved = sum(run.count for run, (shift, _) in zip(runs, placed, strict=True) if shift)
    return unexplained // rules.tolerance_ms, moved
