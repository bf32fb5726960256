"""The plan for one meter: where each run goes and why, the duplicates to delete, and the
energy of each reading whose interval changes; or why it cannot be done automatically.

Energy is recomputed with the project's integrator (trapezoid split at the zero
crossing into import and export, nothing across a gap) over each changed
interval; every later cumulative total (import and export) then moves by the
difference. An interval whose reading carries an estimate (what the meter's
registers counted across the gap before it) stays a gap however short the
repair makes it: the estimate covers it, and measured energy over the same
time would count it twice (bills count estimates by default).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.repair.anchoring import place_runs
from campus_energy.core.repair.local_time import convert_runs, local_runs, offset_notices
from campus_energy.core.repair.stamps import Era, Fmt, Raw, Retime, Rules, read_stamp
from campus_energy.core.repair.survey import Edge, Row, Run, Survey

LOCAL = "local time stored as UTC"
OUT_OF_ORDER = "out of order"


def interval_energies_uwh(
    power_a_w: float | None, power_b_w: float | None, step_ms: int, max_gap_s: float
) -> tuple[int, int]:
    """Energy of one interval by the project's integrator (trapezoid, split at the zero
    crossing, nothing across a gap): (imported, exported)."""
    state = MeterState(last_ts_ms=0, last_power_w=power_a_w or 0.0, last_mono_s=0.0)
    seconds = step_ms / 1000
    step, _ = advance(
        state, power_w=power_b_w or 0.0, wall_s=seconds, mono_s=seconds, max_gap_s=max_gap_s
    )
    return step.energy_uwh, step.export_uwh


def interval_energy_uwh(
    power_a_w: float | None, power_b_w: float | None, step_ms: int, max_gap_s: float
) -> int:
    """Imported energy of one interval by the project's integrator (`interval_energies_uwh`)."""
    return interval_energies_uwh(power_a_w, power_b_w, step_ms, max_gap_s)[0]


def is_gap(step_ms: int, max_gap_s: float) -> bool:
    """Whether an interval is too long (or not positive) to integrate."""
    return not 0 < step_ms / 1000 <= max_gap_s


@dataclass(frozen=True)
class RunPlan:
    run: Run
    retime: Retime
    kinds: tuple[str, ...]  # why it moves (empty: it stays)
    anchor_seq: int | None  # the reading it was re-anchored to
    zone_shift_ms: int | None  # local time: the UTC offset taken off (at its first reading)

    @property
    def new_first(self) -> int:
        return self.retime.apply(self.run.first.ms)

    @property
    def new_last(self) -> int:
        return self.retime.apply(self.run.last.ms)


@dataclass(frozen=True)
class EnergyFix:
    """A reading whose interval changed: its energy recomputed over the new interval, in
    each direction (an estimate of a gap is the registers' difference: it stays)."""

    seq: int
    ts_ms: int  # its new timestamp
    start_ms: int  # the new timestamp of the reading before it
    old_uwh: int  # import
    new_uwh: int
    gap: bool  # the new interval is not integrated: too long (or not positive), or estimated
    old_export_uwh: int = 0
    new_export_uwh: int = 0
    # short enough to integrate, but the reading's estimate covers it: a gap all the same
    estimated: bool = False


def interval_fix(
    reading: Row | Edge, start_ms: int, ts_ms: int, power_before_w: float | None, rules: Rules
) -> EnergyFix:
    """`reading`'s energy over its new interval (start_ms, ts_ms], after a reading of power
    `power_before_w`: integrated, unless the interval is a gap (too long, or covered by the
    reading's estimate)."""
    step = ts_ms - start_ms
    too_long = is_gap(step, rules.max_gap_s)
    estimated = reading.estimated and not too_long
    energy, export = (
        (0, 0)
        if estimated
        else interval_energies_uwh(power_before_w, reading.power_w, step, rules.max_gap_s)
    )
    return EnergyFix(
        reading.seq,
        ts_ms,
        start_ms,
        reading.energy_uwh,
        energy,
        too_long or estimated,
        reading.export_uwh,
        export,
        estimated,
    )


@dataclass(frozen=True)
class MeterPlan:
    runs: tuple[RunPlan, ...]
    duplicates: tuple[Raw, ...]
    fixes: tuple[EnergyFix, ...]  # at the first reading of runs that shift as a whole
    refused: str | None = None
    notices: tuple[str, ...] = ()

    @property
    def moving(self) -> tuple[RunPlan, ...]:
        return tuple(p for p in self.runs if p.retime.changes)

    @property
    def empty(self) -> bool:
        return self.refused is None and not self.duplicates and not self.moving

    @cached_property
    def _starts(self) -> list[int]:
        return [plan.run.first.seq for plan in self.runs]

    def run_of(self, seq: int) -> RunPlan | None:
        index = bisect.bisect_right(self._starts, seq) - 1
        if index >= 0 and seq <= self.runs[index].run.last.seq:
            return self.runs[index]
        return None

    def new_ts(self, seq: int, raw: Raw) -> int | None:
        """Where the reading (seq, stored ts_ms) goes; None when it is not part of a run."""
        plan, stamp = self.run_of(seq), read_stamp(raw)
        return None if plan is None or stamp is None else plan.retime.apply(stamp[1])


def plan_meter(survey: Survey, rules: Rules) -> MeterPlan:
    """What to change in one meter's readings, or why it cannot be done automatically."""
    runs = survey.runs
    if survey.conflicts:
        seqs = ", ".join(str(s) for s in survey.conflicts[:5])
        return _refused(f"seq numbers stored twice with different values ({seqs} …)")
    if survey.unreadable:
        sample = ", ".join(repr(v) for v in survey.unreadable[:3])
        return _refused(f"{len(survey.unreadable)} unreadable timestamps ({sample})")
    if not runs:
        return MeterPlan((), survey.duplicates, ())
    local = local_runs(runs, rules)
    conversions = convert_runs(runs, local, rules)
    placed = place_runs(runs, conversions, rules)
    if placed is None:
        return _refused("no reading has a trustworthy timestamp to anchor the others to")
    plans: list[RunPlan] = []
    for run, (retime, zone_shift), (shift, anchor) in zip(runs, conversions, placed, strict=True):
        kinds = [run.fmt.value] if run.fmt is not Fmt.MS else []
        if run.era is not Era.OK:
            kinds.append(run.era.value)
        if zone_shift is not None:
            kinds.append(LOCAL)
        if shift and run.era is Era.OK:
            kinds.append(OUT_OF_ORDER)
        final = Retime(retime.fmt, retime.zone, retime.fold, retime.shift_ms + shift)
        plans.append(RunPlan(run, final, tuple(kinds), anchor if shift else None, zone_shift))
    for before, after in itertools.pairwise(plans):
        if after.new_first <= before.new_last:
            return _refused(f"the readings around seq {after.run.first.seq} cannot be put in order")
    return MeterPlan(
        tuple(plans),
        survey.duplicates,
        tuple(_boundary_fixes(plans, rules)),
        notices=tuple(offset_notices(runs, local, rules)),
    )


def _refused(reason: str) -> MeterPlan:
    return MeterPlan((), (), (), refused=reason)


def _boundary_fixes(plans: Sequence[RunPlan], rules: Rules) -> Iterator[EnergyFix]:
    """Energy of each first reading of a run that shifts as a whole, where its interval changed."""
    for before, after in itertools.pairwise(plans):
        if after.retime.per_row:
            continue  # retime_rows recomputes it with the rest of its run
        p, r = before.run.last, after.run.first
        if after.new_first - before.new_last != r.ms - p.ms:
            yield interval_fix(r, before.new_last, after.new_first, p.power_w, rules)
