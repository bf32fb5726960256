"""A plan carried out on the readings: their new stamps, energy and cumulative totals.

`retime_rows` gives the changes of a run that moves reading by reading (what
the adapter writes, a run at a time); `apply_plan` gives the whole store as it
is after the repair.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from campus_energy.core.repair.plan import EnergyFix, MeterPlan, RunPlan, interval_fix
from campus_energy.core.repair.stamps import Raw, Rules, read_stamp
from campus_energy.core.repair.survey import Row


@dataclass(frozen=True)
class Change:
    """One reading of a run that moves by its own amount."""

    seq: int
    old_ts: Raw
    new_ts: int
    fix: EnergyFix | None


def retime_rows(
    plan: RunPlan, before: tuple[int, int, float | None] | None, rows: Iterable[Row], rules: Rules
) -> Iterator[Change]:
    """Every reading of a run that moves reading by reading, in seq order, with its energy
    recomputed where its interval changed. `before`: (stored ms, new ms, power) of the reading
    before the run."""
    previous = before
    for row in rows:
        stamp = read_stamp(row.ts)
        if stamp is None:
            raise ValueError(f"unreadable timestamp {row.ts!r} in a run")
        ms = stamp[1]
        new = plan.retime.apply(ms)
        fix = None
        if previous is not None:
            old_ms, new_ms, power = previous
            if new - new_ms != ms - old_ms:
                fix = interval_fix(row, new_ms, new, power, rules)
        yield Change(row.seq, row.ts, new, fix)
        previous = (ms, new, row.power_w)


def edge_before(plans: Sequence[RunPlan], index: int) -> tuple[int, int, float | None] | None:
    """(stored ms, new ms, power) of the reading just before run `index`."""
    if index == 0:
        return None
    plan = plans[index - 1]
    return plan.run.last.ms, plan.new_last, plan.run.last.power_w


def apply_plan(rows: Sequence[Row], plan: MeterPlan, rules: Rules) -> list[Row]:
    """The readings as they are after the repair, in seq order (what the adapter writes)."""
    if plan.refused is not None:
        raise ValueError(f"the plan was refused: {plan.refused}")
    dropped = set(plan.duplicates)
    kept = sorted((r for r in rows if r.ts not in dropped), key=lambda r: (r.seq, str(r.ts)))
    fixes = {f.seq: f for f in plan.fixes}
    new_ts: dict[int, int] = {}
    for index, run_plan in enumerate(plan.runs):
        inside = [r for r in kept if run_plan.run.first.seq <= r.seq <= run_plan.run.last.seq]
        if run_plan.retime.per_row:
            before = edge_before(plan.runs, index)
            for change in retime_rows(run_plan, before, inside, rules):
                new_ts[change.seq] = change.new_ts
                if change.fix is not None:
                    fixes[change.seq] = change.fix
        else:
            for r in inside:
                stamp = read_stamp(r.ts)
                assert stamp is not None
                new_ts[r.seq] = run_plan.retime.apply(stamp[1])
    result: list[Row] = []
    delta = export_delta = 0
    for r in kept:
        fix = fixes.get(r.seq)
        energy, export = r.energy_uwh, r.export_uwh
        if fix is not None:
            delta += fix.new_uwh - fix.old_uwh
            export_delta += fix.new_export_uwh - fix.old_export_uwh
            energy, export = fix.new_uwh, fix.new_export_uwh
        ts: Raw = new_ts.get(r.seq, r.ts)
        result.append(
            replace(
                r,
                ts=ts,
                energy_uwh=energy,
                total_uwh=r.total_uwh + delta,
                export_uwh=export,
                export_total_uwh=r.export_total_uwh + export_delta,
            )
        )
    return result
