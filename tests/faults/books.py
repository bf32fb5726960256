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
says, Σ window energy equals Σ stored energy per meter, and the logger's
trapezoid energy is within the integration error of the exact integral of the
simulated load between the answers' times.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from campus_energy.config import Config, MeterConfig
from campus_energy.core.resolution import to_steps
from campus_energy.meters.simulator.load import KNOT_S, CampusLoad
from campus_energy.meters.simulator.meter import VirtualMeter

ENERGY_TOLERANCE_WH = 1e-6
# Longest time from the simulator taking a meter's values to the logger reading its
# monotonic clock after the answer arrived (network, event loops, a busy CPU).
LATENCY_S = 0.1
# An answer this long before a logger kill (or a cable pull) may not have been committed.
IN_FLIGHT_S = 1.0
POWER_STEP_W = 0.01  # the store keeps power in steps of 0.01 W


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
    energy_wh: float


@dataclass(frozen=True)
class Window:
    """A window document as the sink holds it."""

    meter_id: str
    start_ms: int
    energy_wh: float
    readings: int
    seqs: frozenset[int]


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

    def line(self) -> str:
        extra = f"  in flight at a kill {self.in_flight}" if self.in_flight else ""
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


def expected_windows(
    rows: Sequence[Stored], window_ms: int, longest_ms: int | None = None
) -> dict[int, Window]:
    """Each window of one meter as the store says it must be: energy shared by overlap.

    An interval longer than `longest_ms` (the meter's longest, as the bridge bounds it)
    is its last `longest_ms` before the reading.
    """
    energy: Counter[int] = Counter()
    readings: Counter[int] = Counter()
    seqs: dict[int, set[int]] = {}
    by_seq = {r.seq: r for r in rows}
    for r in sorted(rows, key=lambda r: r.seq):
        own = r.ts_ms - r.ts_ms % window_ms
        readings[own] += 1
        seqs.setdefault(own, set()).add(r.seq)
        previous = by_seq.get(r.seq - 1)
        if r.energy_wh == 0:
            continue
        if previous is None:
            energy[own] += r.energy_wh
            continue
        start = previous.ts_ms if longest_ms is None else max(previous.ts_ms, r.ts_ms - longest_ms)
        span, shared = r.ts_ms - start, 0.0
        window = start - start % window_ms
        while window < r.ts_ms:
            overlap = min(r.ts_ms, window + window_ms) - max(start, window)
            last = window + window_ms >= r.ts_ms
            share = r.energy_wh - shared if last else r.energy_wh * overlap / span
            shared += share
            energy[window] += share
            seqs.setdefault(window, set()).add(r.seq)
            window += window_ms
    meter_id = rows[0].meter_id if rows else ""
    return {
        w: Window(meter_id, w, energy[w], readings[w], frozenset(seqs[w]))
        for w in sorted(set(seqs))
    }


def _curvature_wh(load: CampusLoad, a: float, b: float, knots: dict[int, float]) -> float:
    """|trapezoid − exact| of the load sampled at a and b: the kinks at the knots between."""

    def w(k: int) -> float:
        if k not in knots:
            knots[k] = load.knot_w(k)
        return knots[k]

    total = 0.0
    k = math.floor(a / KNOT_S) + 1
    while k * KNOT_S < b:
        kink = (w(k + 1) - w(k)) - (w(k) - w(k - 1))  # change of slope, W per knot
        total += kink / KNOT_S * (b - k * KNOT_S) * (k * KNOT_S - a) / 2
        k += 1
    return abs(total) / 3600


@dataclass
class Integration:
    logger_wh: float = 0.0
    exact_wh: float = 0.0
    bound_wh: float = 0.0
    across_gaps: int = 0


def integration(
    meter: MeterConfig, load: CampusLoad, rows: Sequence[Stored], paired: Mapping[int, Answered]
) -> Integration:
    """The logger's energy against the exact integral between the answers' times.

    Only intervals the logger integrated count (a reading with energy after its
    predecessor). The bound adds, per run of integrated intervals, the timing
    error LATENCY_S × (largest power + the power's total variation), and per
    interval the trapezoid's error on the load's kinks, the 0.01 W steps of the
    stored power and the µWh rounding.
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
        integrated = after.seq == before.seq + 1 and after.energy_wh > 0
        if not integrated or a is None or b is None:
            close_run()
            continue
        if b.t - a.t > meter.gap_limit_s + LATENCY_S:
            found.across_gaps += 1
        if not run_powers:
            run_powers.append(before.power_w)
        run_powers.append(after.power_w)
        found.logger_wh += after.energy_wh
        found.exact_wh += load.energy_wh(a.t, b.t)
        found.bound_wh += _curvature_wh(load, a.t, b.t, knots)
        found.bound_wh += POWER_STEP_W / 2 * (b.t - a.t) / 3600 + 0.5e-6
    close_run()
    return found


def load_of(config: Config, meter: MeterConfig) -> CampusLoad:
    """The simulated load of a meter: a pure function of its configuration and of time."""
    return VirtualMeter(meter, config.profile_of(meter), config.site.zone, started_at=0.0).load


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
            if abs(got.energy_wh - want.energy_wh) > ENERGY_TOLERANCE_WH:
                problems.append(
                    f"{meter.id}: window {start} holds {got.energy_wh!r} Wh, "
                    f"the store {want.energy_wh!r} Wh"
                )
        extra = [w for (m, s), w in held.items() if m == meter.id and s not in expected]
        if extra:
            problems.append(f"{meter.id}: {len(extra)} windows in the sink without stored readings")
        sink_wh = sum(w.energy_wh for (m, _), w in held.items() if m == meter.id)
        store_wh = math.fsum(r.energy_wh for r in rows)
        books.books_error_wh = max(books.books_error_wh, abs(sink_wh - store_wh))
        if abs(sink_wh - store_wh) > ENERGY_TOLERANCE_WH:
            problems.append(f"{meter.id}: Σ windows {sink_wh!r} Wh, Σ store {store_wh!r} Wh")

        found = integration(meter, load_of(config, meter), rows, paired)
        if found.across_gaps:
            problems.append(f"{meter.id}: {found.across_gaps} intervals integrated across a gap")
        if abs(found.logger_wh - found.exact_wh) > found.bound_wh:
            problems.append(
                f"{meter.id}: integrated {found.logger_wh:.6f} Wh, exactly {found.exact_wh:.6f} Wh "
                f"(more than the bound {found.bound_wh:.6f} Wh apart)"
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
