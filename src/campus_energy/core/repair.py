"""Timestamp repair of a meter's stored readings: what is wrong, and where each reading belongs.

The logger numbers a meter's readings (`seq`) one after the other, whatever its
clock says. Read in `seq` order, timestamps normally move forward by at least
about one poll interval per step. Where they do not, something stamped them
wrongly:

- **before clock sync**: a boot without a real-time clock stamps 1970 (or
  2000) until NTP sets the clock; **ahead of the clock**: later than now;
- **local time stored as UTC**: the jumps into and out of such a span equal the
  site zone's UTC offset;
- **seconds, fractions or text** where integer milliseconds belong;
- **out of order**: a span that jumps backwards for any other reason;
- **duplicates**: one reading (same `seq`, same values) stored twice.

The readings are cut into *runs* wherever a step is implausible, the format or
the era changes, or an outage interrupts them; only each run's two edge
readings are kept, so a store of any size is surveyed in little memory.
Local-time runs are recognised by the zone offset at their edges (a backward
jump is proof, a forward one only together with its counterpart) and converted
exactly. The other wrong runs are re-anchored to a trusted neighbour run at the
distance their sequence numbers imply (seq distance × poll interval), keeping
their own spacing; of the possible anchors, the one that leaves the least time
unexplained (then moves the fewest readings) wins. Energy is recomputed with the
project's integrator for every reading whose interval changed, and every later
cumulative total moves by the difference.

Pure: rows come in (in `seq` order), a plan goes out.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from functools import cached_property

from campus_energy.core.energy import MeterState, advance

Raw = int | float | str  # a `ts_ms` value as the store holds it

NOT_BEFORE_MS = 1_262_304_000_000  # 2010-01-01Z: earlier stamps come from a clock never set
SECONDS_FROM = 946_684_800  # 2000-01-01Z in epoch seconds ...
SECONDS_BELOW = 100_000_000_000  # ... up to here (1973 as ms), a stored value is seconds
MIN_TOLERANCE_MS = 30_000
LOCAL_PRIOR = 0.5  # the cost of calling a span local time: half an unexplained jump
UNIFORM_ZONE_SPAN_MS = 60 * 86_400_000  # shorter local runs with one offset at both ends shift
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Fmt(Enum):
    """How a timestamp is written in the store."""

    MS = "integer milliseconds"
    REAL = "fractional milliseconds"
    SECONDS = "seconds instead of milliseconds"
    TEXT = "text timestamps"


class Era(Enum):
    OK = "ok"
    EARLY = "before clock sync"
    LATE = "ahead of the clock"


LOCAL = "local time stored as UTC"
OUT_OF_ORDER = "out of order"


def parse_text(text: str) -> int | None:
    """UTC epoch ms of an ISO 8601 text; without a zone it is read as UTC (local time shows later
    by its jumps). None when it is not a time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH_UTC) // _MS


def read_stamp(raw: object) -> tuple[Fmt, int] | None:
    """How a stored `ts_ms` is written and the UTC epoch ms it stands for (None: unreadable)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        if SECONDS_FROM <= raw < SECONDS_BELOW:
            return Fmt.SECONDS, raw * 1000
        return Fmt.MS, raw
    if isinstance(raw, float):
        if not math.isfinite(raw) or abs(raw) >= 2.0**61:
            return None
        if SECONDS_FROM <= raw < SECONDS_BELOW:
            return Fmt.SECONDS, math.floor(raw * 1000)
        return Fmt.REAL, math.floor(raw)
    if isinstance(raw, str):
        ms = parse_text(raw)
        return None if ms is None else (Fmt.TEXT, ms)
    return None


def local_to_utc_ms(ms: int, zone: tzinfo, fold: int = 0) -> int:
    """The UTC epoch ms of a local wall time that was stored as if it were UTC."""
    naive = _EPOCH + ms * _MS
    offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
    return ms if offset is None else ms - offset // _MS


def interval_energy_uwh(
    power_a_w: float | None, power_b_w: float | None, step_ms: int, max_gap_s: float
) -> int:
    """Energy of one interval by the project's integrator (trapezoid, nothing across a gap)."""
    state = MeterState(last_ts_ms=0, last_power_w=power_a_w or 0.0, last_mono_s=0.0)
    seconds = step_ms / 1000
    step, _ = advance(
        state, power_w=power_b_w or 0.0, wall_s=seconds, mono_s=seconds, max_gap_s=max_gap_s
    )
    return step.energy_uwh


def is_gap(step_ms: int, max_gap_s: float) -> bool:
    return not 0 < step_ms / 1000 <= max_gap_s


def typical_interval_ms(points: Iterable[tuple[int, int]]) -> int | None:
    """The usual step between readings one seq apart, from `(seq, ts_ms)` points (any order)."""
    ordered = sorted(points)
    steps = [
        b_ts - a_ts
        for (a_seq, a_ts), (b_seq, b_ts) in itertools.pairwise(ordered)
        if b_seq - a_seq == 1 and b_ts > a_ts
    ]
    if not steps:
        return None
    median = statistics.median_low(steps)
    return round(median / 1000) * 1000 if median >= 1000 else median


@dataclass(frozen=True)
class Rules:
    """What a meter's timestamps are judged by."""

    interval_ms: int
    max_gap_s: float
    zone: tzinfo
    not_before_ms: int = NOT_BEFORE_MS
    not_after_ms: int | None = None  # later stamps come from a clock set ahead (e.g. now + 1 day)

    @property
    def tolerance_ms(self) -> int:
        return max(2 * self.interval_ms, MIN_TOLERANCE_MS)

    def era(self, ms: int) -> Era:
        if ms < self.not_before_ms:
            return Era.EARLY
        if self.not_after_ms is not None and ms > self.not_after_ms:
            return Era.LATE
        return Era.OK

    def span(self, seq_a: int, seq_b: int) -> int:
        """The time `seq_b - seq_a` readings take at the meter's poll interval."""
        return (seq_b - seq_a) * self.interval_ms

    def follows(self, a_ms: int, a_seq: int, b_ms: int, b_seq: int) -> bool:
        """Whether a reading at b_ms can come after one at a_ms, seq distance considered."""
        step = b_ms - a_ms
        return step > 0 and step >= self.span(a_seq, b_seq) - self.tolerance_ms

    def utc(self, ms: int, fold: int = 0) -> int:
        return local_to_utc_ms(ms, self.zone, fold)


@dataclass(frozen=True)
class Row:
    """One stored reading, as the survey needs it."""

    seq: int
    ts: Raw
    power_w: float | None
    energy_uwh: int
    total_uwh: int
    values: tuple[object, ...] = ()  # the measured values: two copies of a reading match


@dataclass(frozen=True)
class Edge:
    """A reading at either end of a run."""

    seq: int
    raw: Raw
    ms: int  # as read (seconds and text turned into ms), before any repair
    power_w: float | None
    energy_uwh: int


@dataclass(frozen=True)
class Run:
    """Readings in a row whose timestamps agree with each other and with their seq numbers."""

    fmt: Fmt
    era: Era
    first: Edge
    last: Edge
    count: int


@dataclass(frozen=True)
class Survey:
    """One meter's readings summarised: runs, and what cannot be placed in one."""

    runs: tuple[Run, ...]
    duplicates: tuple[Raw, ...]  # stored ts_ms of copies to delete
    conflicts: tuple[int, ...]  # seq numbers stored twice with different values
    unreadable: tuple[Raw, ...]
    rows: int


_Copy = tuple[Row, Fmt, int]  # a stored row, how its stamp is written, the ms it reads as


class Surveyor:
    """Cuts one meter's rows, fed in (seq, ts) order, into runs, keeping only their edges."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._runs: list[Run] = []
        self._open: Run | None = None
        self._group: list[Row] = []
        self._leading: list[list[_Copy]] = []  # copies before any reading to judge them by
        self._duplicates: list[Raw] = []
        self._conflicts: list[int] = []
        self._unreadable: list[Raw] = []
        self._rows = 0

    def add(self, row: Row) -> None:
        if self._group and row.seq != self._group[0].seq:
            if row.seq < self._group[0].seq:
                raise ValueError(f"rows out of seq order: {row.seq} after {self._group[0].seq}")
            self._settle()
        self._group.append(row)
        self._rows += 1

    def finish(self) -> Survey:
        if self._group:
            self._settle()
        self._settle_leading(None)
        if self._open is not None:
            self._runs.append(self._open)
            self._open = None
        return Survey(
            tuple(self._runs),
            tuple(self._duplicates),
            tuple(self._conflicts),
            tuple(self._unreadable),
            self._rows,
        )

    def _settle(self) -> None:
        group, self._group = self._group, []
        copies: list[_Copy] = []
        for row in group:
            stamp = read_stamp(row.ts)
            if stamp is None:
                self._unreadable.append(row.ts)
            else:
                copies.append((row, *stamp))
        if not copies:
            return
        if len({row.values for row, _, _ in copies}) > 1:
            self._conflicts.append(group[0].seq)
        if self._open is None and (self._leading or len(copies) > 1):
            if len(copies) > 1:
                self._leading.append(copies)
                return
            self._settle_leading(copies[0])
        last = self._open.last if self._open is not None else None
        self._keep(copies, None if last is None else (last.seq, last.ms))

    def _settle_leading(self, after: _Copy | None) -> None:
        """Choose among the first copies backwards from the first reading stored once."""
        leading, self._leading = self._leading, []
        anchor = None if after is None else (after[0].seq, after[2])
        chosen: list[_Copy] = []
        for copies in reversed(leading):
            keep = min(copies, key=lambda c: self._preference(c, anchor, after=False))
            chosen.append(keep)
            self._duplicates.extend(row.ts for row, _, _ in copies if row is not keep[0])
            anchor = (keep[0].seq, keep[2])
        for keep in reversed(chosen):
            self._extend(*keep)

    def _keep(self, copies: list[_Copy], neighbour: tuple[int, int] | None) -> None:
        keep = min(copies, key=lambda c: self._preference(c, neighbour, after=True))
        self._duplicates.extend(row.ts for row, _, _ in copies if row is not keep[0])
        self._extend(*keep)

    def _preference(
        self, copy: _Copy, neighbour: tuple[int, int] | None, *, after: bool
    ) -> tuple[bool, bool, bool, int, int]:
        """Of several copies, keep a well-written one that follows on from its neighbour (seq,
        ms; the copy comes after it or before it), nearest to where the neighbour says."""
        row, fmt, ms = copy
        fits, distance = True, 0
        if neighbour is not None:
            seq, at = neighbour
            a, b = ((seq, at), (row.seq, ms)) if after else ((row.seq, ms), (seq, at))
            fits = self.rules.follows(a[1], a[0], b[1], b[0])
            distance = abs(b[1] - a[1] - self.rules.span(a[0], b[0]))
        return fmt is not Fmt.MS, self.rules.era(ms) is not Era.OK, not fits, distance, ms

    def _extend(self, row: Row, fmt: Fmt, ms: int) -> None:
        edge = Edge(row.seq, row.ts, ms, row.power_w, row.energy_uwh)
        era = self.rules.era(ms)
        run = self._open
        if run is not None and run.fmt is fmt and run.era is era and self._continues(run, edge):
            self._open = Run(fmt, era, run.first, edge, run.count + 1)
            return
        if run is not None:
            self._runs.append(run)
        self._open = Run(fmt, era, edge, edge, 1)

    def _continues(self, run: Run, edge: Edge) -> bool:
        a, rules = run.last, self.rules
        if not rules.follows(a.ms, a.seq, edge.ms, edge.seq):
            return False
        # an outage ends a run (a later run may have to move without it); a wrong era keeps
        # its runs whole, outages included, since they move as one anyway
        return run.era is not Era.OK or edge.ms - a.ms <= rules.span(a.seq, edge.seq) + (
            rules.tolerance_ms
        )


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retime:
    """Where a run's readings go: read the stored value, convert local time, then shift."""

    fmt: Fmt = Fmt.MS
    zone: tzinfo | None = None  # per reading (the offset changes within the run)
    fold: int = 0  # which of a repeated local hour (0: the first)
    shift_ms: int = 0

    @property
    def per_row(self) -> bool:
        """Whether readings move by different amounts (else: one shift for the whole run)."""
        return self.fmt is not Fmt.MS or self.zone is not None

    @property
    def changes(self) -> bool:
        return self.per_row or self.shift_ms != 0

    def apply(self, ms: int) -> int:
        """The new ts_ms of a reading whose stored value reads as `ms`."""
        if self.zone is not None:
            ms = local_to_utc_ms(ms, self.zone, self.fold)
        return ms + self.shift_ms


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
    """A reading whose interval changed: its energy recomputed over the new interval."""

    seq: int
    ts_ms: int  # its new timestamp
    start_ms: int  # the new timestamp of the reading before it
    old_uwh: int
    new_uwh: int
    gap: bool  # the new interval is too long (or not positive) to integrate


@dataclass(frozen=True)
class Change:
    """One reading of a run that moves by its own amount."""

    seq: int
    old_ts: Raw
    new_ts: int
    fix: EnergyFix | None


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
    local = _local_runs(runs, rules)
    conversions = _convert(runs, local, rules)
    placed = _place(runs, conversions, rules)
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
        notices=tuple(_notices(runs, local, rules)),
    )


def _refused(reason: str) -> MeterPlan:
    return MeterPlan((), (), (), refused=reason)


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


def _local_runs(runs: Sequence[Run], rules: Rules) -> list[bool]:
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


def _convert(
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


def _place(
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


def _boundary_fixes(plans: Sequence[RunPlan], rules: Rules) -> Iterator[EnergyFix]:
    """Energy of each first reading of a run that shifts as a whole, where its interval changed."""
    for before, after in itertools.pairwise(plans):
        if after.retime.per_row:
            continue  # retime_rows recomputes it with the rest of its run
        p, r = before.run.last, after.run.first
        step = after.new_first - before.new_last
        if step != r.ms - p.ms:
            energy = interval_energy_uwh(p.power_w, r.power_w, step, rules.max_gap_s)
            gap = is_gap(step, rules.max_gap_s)
            yield EnergyFix(r.seq, after.new_first, before.new_last, r.energy_uwh, energy, gap)


def _notices(runs: Sequence[Run], local: Sequence[bool], rules: Rules) -> Iterator[str]:
    for k in range(1, len(runs)):
        a, b = runs[k - 1], runs[k]
        if local[k - 1] or local[k] or a.era is not Era.OK or b.era is not Era.OK:
            continue
        if _fits(a.last, b.first, False, True, rules) or _fits(a.last, b.first, True, False, rules):
            yield (
                f"the jump before seq {b.first.seq} equals the site's UTC offset: if the readings "
                "on one side of it are local time, nothing here proves which; left as they are"
            )


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
                energy = interval_energy_uwh(power, row.power_w, new - new_ms, rules.max_gap_s)
                gap = is_gap(new - new_ms, rules.max_gap_s)
                fix = EnergyFix(row.seq, new, new_ms, row.energy_uwh, energy, gap)
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
    delta = 0
    for r in kept:
        fix = fixes.get(r.seq)
        energy = r.energy_uwh
        if fix is not None:
            delta += fix.new_uwh - fix.old_uwh
            energy = fix.new_uwh
        ts: Raw = new_ts.get(r.seq, r.ts)
        result.append(Row(r.seq, ts, r.power_w, energy, r.total_uwh + delta, r.values))
    return result
