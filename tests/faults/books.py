"""The books of a fault-injection run: what the meters answered, stored, delivered, and the energy.

Inputs are what the run left behind, read from outside the services:
- the simulator's answers (`campus-energy simulate --answers`): every request a
  virtual meter answered intact, with the time its values were taken and the
  power it served;
- the ledger: every reading ever seen in the logger's SQLite store (watched
  while the run went on, so readings the logger deleted later still count);
- the window documents in the sink, with their accumulators (which reading
  sequence numbers each window holds).

Each stored reading is matched, in order, to the answer that carried its power
value. The checks: every answer is stored (unless it was in flight when the
logger was killed or its cable pulled), every stored reading is in its window
exactly once, each window's energy and reading count equal what the store
says, Σ window energy equals Σ stored energy per meter — in each direction
(import, export) and of each kind (measured, estimated) — and the logger's
trapezoid energy is within the integration error of the exact integral of the
simulated load between the answers' times, per direction. An estimate (a gap
the meter's registers bridged, such as a logger's restart) is within the
register's resolution of the exact energy over the gap.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from campus_energy.config import Config, MeterConfig
from campus_energy.core.resolution import to_steps
from campus_energy.core.witness import RegisterSpec
from campus_energy.meters.simulator import load as campus_load
from campus_energy.meters.simulator import solar
from campus_energy.meters.simulator.meter import VirtualMeter
from campus_energy.meters.simulator.solar import SolarBuilding

ENERGY_TOLERANCE_WH = 1e-6
# Longest time from the simulator taking a meter's values to the logger reading its
# monotonic clock after the answer arrived (network, event loops, a busy CPU).
LATENCY_S = 0.1
# An answer this long before a logger kill (or a cable pull) may not have been committed.
IN_FLIGHT_S = 1.0
POWER_STEP_W = 0.01  # the store keeps power in steps of 0.01 W
REGISTER_STEP_WH = 0.1  # the store keeps a register in steps of 0.1 Wh
KWH_REGISTER = RegisterSpec("float32", 1000.0)  # the Eastron registers the campus's meters have
DIRECTIONS = ("import", "export")


@dataclass(frozen=True)
class Answered:
    """A request the simulator answered that carried the meter's power."""

    meter_id: str
    t: float
    power_w: float


@dataclass(frozen=True)
class Stored:
    """A reading as the logger's store holds it."""

    meter_id: str
    seq: int
    ts_ms: int
    power_w: float
    energy_wh: float  # measured import
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import: the gap before it, bridged by the registers
    estimated_export_wh: float = 0.0
    estimated: bool = False  # whether the gap before it was estimated

    def amount(self, kind: str) -> float:
        return float(getattr(self, kind))


# What each reading and window carries: measured import, measured export, the two estimates
AMOUNTS = ("energy_wh", "export_wh", "estimated_wh", "estimated_export_wh")


@dataclass(frozen=True)
class Window:
    """A window document as the sink holds it."""

    meter_id: str
    start_ms: int
    energy_wh: float
    readings: int
    seqs: frozenset[int]
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0

    def amount(self, kind: str) -> float:
        return float(getattr(self, kind))


@dataclass(frozen=True)
class Interruption:
    """A moment when answered readings may legitimately not reach the store."""

    t: float
    meters: frozenset[str]
    what: str


@dataclass
class Books:
    scenario: str
    produced: int = 0
    stored: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    in_flight: int = 0
    books_error_wh: float = 0.0
    integration_error: float = 0.0  # relative
    integration_bound: float = 0.0  # relative
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)  # Σ stored per kind (AMOUNTS)
    estimates: int = 0  # gaps bridged by the registers

    def line(self) -> str:
        extra = f"  in flight at a kill {self.in_flight}" if self.in_flight else ""
        if self.totals.get("export_wh") or self.estimates:
            extra += (
                f"  exported {self.totals.get('export_wh', 0.0):.3f} Wh, "
                f"{self.estimates} gaps estimated "
                f"({self.totals.get('estimated_wh', 0.0):.3f} Wh)"
            )
        notes = f"  [{'; '.join(self.notes)}]" if self.notes else ""
        return (
            f"{self.scenario:<28} produced {self.produced:>6}  stored {self.stored:>6}  "
            f"delivered {self.delivered:>6}  lost {self.lost}  duplicated {self.duplicated}  "
            f"energy: books Δ {self.books_error_wh:.1e} Wh, integration Δ "
            f"{self.integration_error:.3%} (bound {self.integration_bound:.2%})"
            f"{extra}  {self.seconds:.0f} s{notes}"
        )


def match(
    answers: Sequence[Answered], stored: Sequence[Stored]
) -> tuple[dict[int, Answered], list[Answered], list[Stored]]:
    """Pair each stored reading (in seq order) with the answer that carried its power.

    Returns (seq -> answer, answers without a reading, readings without an answer).
    """
    paired: dict[int, Answered] = {}
    unanswered: list[Stored] = []
    spare: list[Answered] = []
    i = 0
    for reading in sorted(stored, key=lambda r: r.seq):
        want = to_steps("power_w", reading.power_w)
        j = i
        while j < len(answers) and to_steps("power_w", answers[j].power_w) != want:
            j += 1
        if j == len(answers):
            unanswered.append(reading)
            continue
        spare.extend(answers[i:j])
        paired[reading.seq] = answers[j]
        i = j + 1
    spare.extend(answers[i:])
    return paired, spare, unanswered


def _spread(
    into: dict[str, Counter[int]],
    seqs: dict[int, set[int]],
    seq: int,
    start: int,
    end: int,
    window_ms: int,
    amounts: Mapping[str, float],
) -> None:
    """Share `amounts` over the windows (start, end] overlaps, in proportion to time."""
    span = end - start
    shared = dict.fromkeys(amounts, 0.0)
    window = start - start % window_ms
    while window < end:
        overlap = min(end, window + window_ms) - max(start, window)
        last = window + window_ms >= end
        for kind, amount in amounts.items():
            share = amount - shared[kind] if last else amount * overlap / span
            shared[kind] += share
            into[kind][window] += share
        seqs.setdefault(window, set()).add(seq)
        window += window_ms


def expected_windows(
    rows: Sequence[Stored], window_ms: int, longest_ms: int | None = None
) -> dict[int, Window]:
    """Each window of one meter as the store says it must be: energy shared by overlap.

    An interval longer than `longest_ms` (the meter's longest, as the bridge bounds it)
    is its last `longest_ms` before the reading. An estimate covers the time since the
    meter's previous reading.
    """
    amounts: dict[str, Counter[int]] = {kind: Counter() for kind in AMOUNTS}
    readings: Counter[int] = Counter()
    seqs: dict[int, set[int]] = {}
    by_seq = {r.seq: r for r in rows}
    for r in sorted(rows, key=lambda r: r.seq):
        own = r.ts_ms - r.ts_ms % window_ms
        readings[own] += 1
        seqs.setdefault(own, set()).add(r.seq)
        previous = by_seq.get(r.seq - 1)
        measured = {"energy_wh": r.energy_wh, "export_wh": r.export_wh}
        if r.energy_wh or r.export_wh:
            if previous is None:
                for kind, amount in measured.items():
                    amounts[kind][own] += amount
            else:
                start = previous.ts_ms
                if longest_ms is not None:
                    start = max(start, r.ts_ms - longest_ms)
                _spread(amounts, seqs, r.seq, start, r.ts_ms, window_ms, measured)
        guessed = {"estimated_wh": r.estimated_wh, "estimated_export_wh": r.estimated_export_wh}
        if r.estimated_wh or r.estimated_export_wh:
            if previous is None:
                for kind, amount in guessed.items():
                    amounts[kind][own] += amount
            else:
                _spread(amounts, seqs, r.seq, previous.ts_ms, r.ts_ms, window_ms, guessed)
    meter_id = rows[0].meter_id if rows else ""
    return {
        w: Window(
            meter_id,
            w,
            amounts["energy_wh"][w],
            readings[w],
            frozenset(seqs[w]),
            export_wh=amounts["export_wh"][w],
            estimated_wh=amounts["estimated_wh"][w],
            estimated_export_wh=amounts["estimated_export_wh"][w],
        )
        for w in sorted(set(seqs))
    }


def _kinks_wh(
    meter: VirtualMeter, a: float, b: float, knots: dict[int, float]
) -> tuple[float, float]:
    """How far the trapezoid of the load sampled at a and b can be from its exact integral:
    (|Σ| of the kinks at the knots between, Σ |each kink|). The first bounds the net energy's
    error; the second each direction's, whose split at the chord's zero crossing is off by at
    most ∫ |load − chord|."""
    load = meter.load
    knot_s = solar.KNOT_S if isinstance(load, SolarBuilding) else campus_load.KNOT_S

    def w(k: int) -> float:
        if k not in knots:
            knots[k] = load.knot_w(k)
        return knots[k]

    signed = every = 0.0
    k = math.floor(a / knot_s) + 1
    while k * knot_s < b:
        kink = (w(k + 1) - w(k)) - (w(k) - w(k - 1))  # change of slope, W per knot
        area = kink / knot_s * (b - k * knot_s) * (k * knot_s - a) / 2
        signed += area
        every += abs(area)
        k += 1
    return abs(signed) / 3600, every / 3600


@dataclass
class Integration:
    logger_wh: float = 0.0  # measured import
    exact_wh: float = 0.0
    bound_wh: float = 0.0
    logger_export_wh: float = 0.0
    exact_export_wh: float = 0.0
    across_gaps: int = 0
    estimates: int = 0
    estimate_problems: list[str] = field(default_factory=list)


def integration(
    meter: MeterConfig,
    simulated: VirtualMeter,
    rows: Sequence[Stored],
    paired: Mapping[int, Answered],
) -> Integration:
    """The logger's energy against the exact integral between the answers' times, per direction.

    Only intervals the logger integrated count (a reading with energy after its
    predecessor). The bound adds, per run of integrated intervals, the timing
    error LATENCY_S × (largest power + the power's total variation), and per
    interval the trapezoid's error on the load's kinks, the 0.01 W steps of the
    stored power and the µWh rounding. An estimate (the registers across a gap) is held
    to the exact energy over the gap within two steps of the register and of the store.
    """
    found = Integration()
    knots: dict[int, float] = {}
    ordered = sorted(rows, key=lambda r: r.seq)
    run_powers: list[float] = []

    def close_run() -> None:
        if len(run_powers) > 1:
            variation = sum(abs(b - a) for a, b in itertools.pairwise(run_powers))
            found.bound_wh += LATENCY_S * (max(map(abs, run_powers)) + variation) / 3600
        run_powers.clear()

    for before, after in itertools.pairwise(ordered):
        a, b = paired.get(before.seq), paired.get(after.seq)
        consecutive = after.seq == before.seq + 1
        if consecutive and after.estimated and a is not None and b is not None:
            _estimate(found, simulated, after, a, b)
        integrated = consecutive and (after.energy_wh > 0 or after.export_wh > 0)
        if not integrated or a is None or b is None:
            close_run()
            continue
        if b.t - a.t > meter.gap_limit_s + LATENCY_S:
            found.across_gaps += 1
        if not run_powers:
            run_powers.append(before.power_w)
        run_powers.append(after.power_w)
        exact = simulated.energy(a.t, b.t)
        found.logger_wh += after.energy_wh
        found.exact_wh += exact.import_wh
        found.logger_export_wh += after.export_wh
        found.exact_export_wh += exact.export_wh
        _, every = _kinks_wh(simulated, a.t, b.t, knots)
        found.bound_wh += every
        found.bound_wh += POWER_STEP_W / 2 * (b.t - a.t) / 3600 + 0.5e-6
    close_run()
    return found


def _estimate(
    found: Integration, simulated: VirtualMeter, reading: Stored, a: Answered, b: Answered
) -> None:
    """An estimate against the exact energy between the answers around its gap: the registers
    were read in those answers, so only their resolution (and the store's) stands between."""
    found.estimates += 1
    exact = simulated.energy(a.t, b.t)
    registers = simulated.registers(b.t)
    for got, want, value in (
        (reading.estimated_wh, exact.import_wh, registers.import_wh),
        (reading.estimated_export_wh, exact.export_wh, registers.export_wh),
    ):
        step = KWH_REGISTER.resolution_wh(value) if value else 0.0
        bound = 2 * step + 2 * REGISTER_STEP_WH + 1e-6
        if abs(got - want) > bound:
            found.estimate_problems.append(
                f"{reading.meter_id}: seq {reading.seq} estimated {got:.6f} Wh over "
                f"{b.t - a.t:.3f} s, exactly {want:.6f} Wh (more than {bound:.3f} Wh apart)"
            )


def simulated_meter(config: Config, meter: MeterConfig) -> VirtualMeter:
    """The simulated meter: its load and registers are pure functions of its configuration and
    of time."""
    # as the simulator makes it: in the default site's zone
    return VirtualMeter(meter, config.profile_of(meter), config.site.zone, started_at=0.0)


def balance(
    scenario: str,
    config: Config,
    *,
    answers: Iterable[Answered],
    ledger: Mapping[tuple[str, int], Stored],
    final: Mapping[tuple[str, int], Stored],
    windows: Sequence[Window],
    documents: Sequence[tuple[str, int]],
    interruptions: Sequence[Interruption] = (),
    evictions: bool = False,
) -> Books:
    """Draw up the books of a run. `documents`: (meter, window start) of every document."""
    books = Books(scenario)
    problems = books.problems
    window_ms = config.bridge.window_s * 1000
    by_meter: dict[str, list[Answered]] = {}
    for a in sorted(answers, key=lambda a: a.t):
        by_meter.setdefault(a.meter_id, []).append(a)

    vanished = [key for key in ledger if key not in final]
    if vanished and not evictions:
        problems.append(
            f"{len(vanished)} stored readings vanished from the store, e.g. {vanished[0]}"
        )
    stray = [key for key in final if key not in ledger]
    if stray:
        problems.append(f"{len(stray)} readings in the store were never seen by the ledger")

    duplicates = sum(n - 1 for n in Counter(documents).values() if n > 1)
    if duplicates:
        problems.append(f"{duplicates} window documents written twice")
    books.duplicated += duplicates
    held: dict[tuple[str, int], Window] = {(w.meter_id, w.start_ms): w for w in windows}

    total_logger = total_exact = total_bound = 0.0
    for meter in config.meters:
        rows = [r for (m, _), r in ledger.items() if m == meter.id]
        answered = by_meter.get(meter.id, [])
        books.produced += len(answered)
        seqs = sorted(r.seq for r in rows)
        holes = (seqs[-1] - len(seqs)) if seqs else 0
        if holes:
            problems.append(f"{meter.id}: {holes} sequence numbers missing from the store")
        paired, spare, unanswered = match(answered, rows)
        books.stored += len(paired)
        if unanswered:
            problems.append(
                f"{meter.id}: {len(unanswered)} stored readings match no answer "
                f"(seq {unanswered[0].seq})"
            )
        at_cut: Counter[int] = Counter()
        for a in spare:
            cut = next(
                (
                    n
                    for n, i in enumerate(interruptions)
                    if meter.id in i.meters and 0 <= i.t - a.t <= IN_FLIGHT_S
                ),
                None,
            )
            if cut is not None:
                books.in_flight += 1
                at_cut[cut] += 1
                continue
            books.lost += 1
            if books.lost <= 3:
                problems.append(f"{meter.id}: answered at {a.t:.3f} but never stored")
        if any(n > 1 for n in at_cut.values()):
            problems.append(f"{meter.id}: more than one reading in flight at one interruption")

        longest_s = config.intake_limits()[meter.id].max_interval_s
        expected = expected_windows(rows, window_ms, math.floor(longest_s * 1000))
        own: dict[int, set[int]] = {}
        for r in rows:
            own.setdefault(r.ts_ms - r.ts_ms % window_ms, set()).add(r.seq)
        for start, want in expected.items():
            got = held.get((meter.id, start))
            if got is None:
                problems.append(f"{meter.id}: window {start} is missing from the sink")
                continue
            books.delivered += len(own.get(start, set()) & got.seqs)
            if got.readings > want.readings:
                books.duplicated += got.readings - want.readings
            if got.readings != want.readings or got.seqs != want.seqs:
                problems.append(
                    f"{meter.id}: window {start} holds {got.readings} readings "
                    f"(seqs {sorted(got.seqs ^ want.seqs)[:5]} differ), the store {want.readings}"
                )
            for kind in AMOUNTS:
                if abs(got.amount(kind) - want.amount(kind)) > ENERGY_TOLERANCE_WH:
                    problems.append(
                        f"{meter.id}: window {start} holds {got.amount(kind)!r} Wh of {kind}, "
                        f"the store {want.amount(kind)!r} Wh"
                    )
        extra = [w for (m, s), w in held.items() if m == meter.id and s not in expected]
        if extra:
            problems.append(f"{meter.id}: {len(extra)} windows in the sink without stored readings")
        for kind in AMOUNTS:
            sink_wh = sum(w.amount(kind) for (m, _), w in held.items() if m == meter.id)
            store_wh = math.fsum(r.amount(kind) for r in rows)
            books.books_error_wh = max(books.books_error_wh, abs(sink_wh - store_wh))
            books.totals[kind] = books.totals.get(kind, 0.0) + store_wh
            if abs(sink_wh - store_wh) > ENERGY_TOLERANCE_WH:
                problems.append(
                    f"{meter.id}: Σ windows {sink_wh!r} Wh of {kind}, Σ store {store_wh!r} Wh"
                )
        if any(r.energy_wh < 0 or r.export_wh < 0 or r.estimated_wh < 0 for r in rows):
            problems.append(f"{meter.id}: a stored reading with negative energy")

        found = integration(meter, simulated_meter(config, meter), rows, paired)
        books.estimates += found.estimates
        problems.extend(found.estimate_problems[:3])
        if found.across_gaps:
            problems.append(f"{meter.id}: {found.across_gaps} intervals integrated across a gap")
        for direction, logged, exact in (
            ("import", found.logger_wh, found.exact_wh),
            ("export", found.logger_export_wh, found.exact_export_wh),
        ):
            if abs(logged - exact) > found.bound_wh:
                problems.append(
                    f"{meter.id}: integrated {logged:.6f} Wh of {direction}, exactly "
                    f"{exact:.6f} Wh (more than the bound {found.bound_wh:.6f} Wh apart)"
                )
        total_logger += found.logger_wh
        total_exact += found.exact_wh
        total_bound += found.bound_wh
        books.integration_error = max(
            books.integration_error,
            abs(found.logger_wh - found.exact_wh) / found.exact_wh if found.exact_wh else 0.0,
        )
        books.integration_bound = max(
            books.integration_bound, found.bound_wh / found.exact_wh if found.exact_wh else 0.0
        )
    undelivered = len(ledger) - books.delivered
    books.lost += max(0, undelivered)
    if undelivered > 0:
        problems.append(f"{undelivered} stored readings never reached the sink")
    return books
