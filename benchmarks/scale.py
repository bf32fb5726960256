"""Scale: an estate of 1,000 meters end to end, then more meters until something saturates.

Every part runs as its own process, as in production (`benchmarks/estate.py`): one
`campus-energy simulate` serving every meter (Modbus TCP gateways of 100 units), a
`campus-energy logger` per site (10 sites, `logger.site`), one Mosquitto (production's
settings, queues sized generously), two `campus-energy bridge` on a shared subscription
(`bridge.shared_group`), and PostgreSQL. Each run is measured over a stretch of wall-clock
time after a warm-up, then stopped cleanly and its books balanced (`benchmarks/scale_run.py`).

(a) 1,000 meters at 5 s (200 readings/s offered), 5-minute windows (grace 60 s), for
    MAIN_S: readings/s sustained; reading → window latency (a reading's ts to the
    `updated_at` of its window's row, the merge that last wrote it: by design about
    window_s/2 + grace_s, so also the part after the window ended and after it was due);
    CPU seconds per 1,000 meters per hour and RSS of every component (loggers summed over
    10 processes, bridges over 2, the database over the PostgreSQL processes serving the
    bridges); the books: Σ window energy = Σ energy the loggers stored and delivered, per
    meter to 1e-6 Wh, readings counted once.
(b) Baseline: the same 1,000 meters with one bridge, against two (1-minute windows,
    STEP_S each): what the second bridge, run for availability, costs.
(c) Steps of STEPS meters (1-minute windows, STEP_S each) until something saturates:
    achieved vs offered readings/s, each component's CPU, backlogs (skipped poll slots,
    outboxes, the broker's queue, the bridges' message lag); from the CPU per reading of
    each component, the readings/s one core sustains for it.
(d) The same 1,000 meters into the Firestore emulator, `bridge.firestore.layout =
    "per-window"` (a document per site and window), the two bridges sharing the subscription
    as in (a) (1-minute windows, STEP_S), then split by site with `bridge.topic_filters`
    (5-minute windows, MAIN_S): document writes (counted in the emulator,
    `benchmarks/firestore_counting.js`) per window and per day against the goal of
    288 × sites a day, window-write latency, the books; and whether the emulator isolates
    transactions (two clients incrementing one counter at once).

This machine has 2 cores that every process shares (and other users' work): the figures
say what the estate costs, and the saturation is the machine's unless one process reaches
its own single-threaded ceiling first. Each run notes the load average it started under.

Run: .venv/bin/python benchmarks/scale.py [--quick]
Quick mode: 2-minute runs with 1-minute windows, steps of 1,000 and 4,000 meters for 60 s.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import harness
import results as bench
from estate import Shape, firestore_store, postgres_store
from measure import percentile
from probes import DocumentWrite, document_writes, lost_updates
from results import Col, Table
from scale_run import Outcome, measure

TIER = "scale"
QUICK = bench.quick()
METERS = 1000
MAIN_S = bench.sized(600.0, 120.0)
STEP_S = bench.sized(180.0, 60.0)
WARM_UP_S = bench.sized(30.0, 20.0)
STEPS = bench.sized((1000, 2000, 4000, 6000, 10000), (1000, 4000))
MAIN_WINDOW = bench.sized((300, 60.0), (60, 15.0))  # (window_s, grace_s)
STEP_WINDOW = (60, 15.0)
SATURATED = 0.9  # a step that achieves less of what is offered has saturated
COMPONENTS = ("simulator", "logger", "broker", "bridge", "database", "emulator")
NAMES = {
    "simulator": "simulator (meters)",
    "logger": "loggers",
    "broker": "Mosquitto",
    "bridge": "bridges",
    "database": "PostgreSQL (bridges' backends)",
    "emulator": "Firestore emulator (node)",
}
FIRESTORE_GOAL_PER_WINDOW = 1  # per site: 288 × sites writes a day at 5-minute windows


def log(message: str) -> None:
    print(f"  [{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def shape(meters: int, window: tuple[int, float], bridges: int = 2) -> Shape:
    return Shape(meters, window_s=window[0], grace_s=window[1], bridges=bridges)


# -- (a) 1,000 meters --------------------------------------------------------------------------


def latency_table(o: Outcome, title: str) -> Table:
    s = o.shape
    table = Table(
        title,
        (Col("figure", align="left"), Col("value", align="right"), Col("note", align="left")),
    )
    lat, after = o.latencies_s, o.after_end_s
    rows: list[tuple[str, str, str]] = [
        (
            "readings/s offered",
            f"{s.offered_per_s:,.1f}",
            f"{s.meters:,} meters / {s.interval_s:g} s",
        ),
        (
            "readings/s stored (loggers)",
            f"{o.stored_per_s:,.1f}",
            f"Σ readings_stored, {s.sites} loggers",
        ),
        ("readings/s accepted (bridges)", f"{o.per_s('accepted'):,.1f}", "Σ readings_accepted"),
        (
            "window rows written/s",
            f"{o.per_s('windows'):,.2f}",
            "Σ windows_written (a rewrite counts)",
        ),
        (
            "reading ts → its window written, p50 / p99",
            f"{percentile(lat, 50):.1f} / {percentile(lat, 99):.1f} s",
            f"{len(lat):,} readings; by design ≈ window_s/2 + grace_s = "
            f"{s.window_s / 2 + s.grace_s:g} s (≤ {s.window_s + s.grace_s:g} s)",
        ),
        (
            "window end → written, p50 / p99 / max",
            f"{percentile(after, 50):.2f} / {percentile(after, 99):.2f} / "
            f"{max(after, default=math.nan):.2f} s",
            f"{len(after):,} rows; grace_s = {s.grace_s:g} s of it by design",
        ),
        (
            "due (end + grace) → written, p50 / p99",
            f"{percentile(after, 50) - s.grace_s:.2f} / {percentile(after, 99) - s.grace_s:.2f} s",
            "the bridges' own delay: flush tick (1 s), spool, merge",
        ),
        (
            "rows written > 5 s after due",
            f"{sum(a - s.grace_s > 5 for a in after) / max(1, len(after)) * 100:.0f} %",
            "a bridge whose batches come full (500 messages) holds window writes as if "
            "draining a backlog, up to 60 s (MAX_HOLD_S)",
        ),
        (
            "sink merge duration p50 / p99",
            f"{o.quantile('merge', 0.5):.2f} / {o.quantile('merge', 0.99):.2f} s",
            "a merge writes ≤ 500 window rows in one transaction",
        ),
        (
            "bridge message lag p50 / p99",
            f"{o.quantile('lag', 0.5):.2f} / {o.quantile('lag', 0.99):.2f} s",
            "receipt − reading ts (a bus's cycle is published once committed)",
        ),
        (
            "poll duration p50 / p99",
            f"{o.quantile('poll', 0.5) * 1000:.1f} / {o.quantile('poll', 0.99) * 1000:.1f} ms",
            "one meter's poll over Modbus TCP, successful polls",
        ),
        (
            "skipped poll slots / failed polls",
            f"{o.grew('skipped'):,.0f} / {o.grew('failed'):,.0f}",
            "during the stretch",
        ),
    ]
    rows += books_rows(o)
    for row in rows:
        table.row(*row)
    table.note(run_note(o))
    return table


def books_rows(o: Outcome) -> list[tuple[str, str, str]]:
    b = o.books
    return [
        (
            "books: Σ window energy vs Σ delivered",
            f"{b.window_wh + b.spooled_wh:,.6f} / {b.delivered_wh:,.6f} Wh",
            f"worst meter off by {b.worst_meter_diff_wh:.1e} Wh (tolerance 1e-6); "
            f"{b.spooled_wh:,.6f} Wh still in the spools",
        ),
        (
            "books: readings in windows vs delivered",
            f"{b.window_readings + b.spooled_readings:,} / {b.delivered_readings:,}",
            f"{b.meters:,} meters, {b.meters_off} off, {b.duplicate_rows} duplicate rows; "
            f"{b.undelivered:,} readings still in the loggers' outboxes",
        ),
        (
            "books balance",
            "yes" if b.balanced else "NO",
            f"after a clean stop (loggers, then bridges); bridges caught up: "
            f"{'yes' if o.caught_up else 'NO'}; exits {dict(o.exits)}",
        ),
    ]


def run_note(o: Outcome) -> str:
    ours = sum(o.cpu_s.values())
    cores = os.cpu_count() or 1
    busy = o.machine_busy * 100
    others = o.machine_busy * cores - (ours + o.harness_cpu_s) / o.measured_s
    return (
        f"{o.shape.label()}, {o.store}; measured {o.measured_s:.0f} s after a warm-up; "
        f"load average {o.load_before:.2f} when the run started; the machine's {cores} CPUs "
        f"{busy:.0f} % busy over the stretch, of which the estate {ours / o.measured_s:.2f} "
        f"cores, this benchmark's sampling {o.harness_cpu_s / o.measured_s:.2f}, everything "
        f"else on the machine {max(0.0, others):.2f}"
    )


def cpu_table(o: Outcome, title: str) -> Table:
    per_khour = 3600 / o.measured_s / (o.shape.meters / 1000)
    readings = o.grew("stored")
    table = Table(
        title,
        (
            Col("component", align="left"),
            Col("processes", ",.0f"),
            Col("CPU", ",.1f", "s"),
            Col("cores", ".3f"),
            Col("per 1,000 meters per hour", ",.0f", "CPU-s"),
            Col("per 1,000 readings", ",.0f", "CPU-ms"),
            Col("readings/s a core", ",.0f"),
            Col("RSS, largest", ",.0f", "MiB"),
            Col("RSS, all", ",.0f", "MiB"),
        ),
    )
    total_cpu = 0.0
    for role in COMPONENTS:
        if role not in o.processes:
            continue
        cpu = o.cpu_s.get(role, 0.0)
        total_cpu += cpu
        per_k = cpu / readings * 1e6 if readings else math.nan
        table.row(
            NAMES[role],
            o.processes[role],
            cpu,
            cpu / o.measured_s,
            cpu * per_khour,
            per_k,
            1e6 / per_k if per_k else None,
            o.peak_rss_mib.get(role),
            o.sum_rss_mib.get(role),
        )
    per_k = total_cpu / readings * 1e6 if readings else math.nan
    table.row(
        "all",
        sum(o.processes.values()),
        total_cpu,
        total_cpu / o.measured_s,
        total_cpu * per_khour,
        per_k,
        1e6 / per_k if per_k else None,
        None,
        sum(o.sum_rss_mib.values()),
    )
    table.note(
        "CPU: user + system seconds of each process over the stretch (/proc via psutil); "
        "PostgreSQL: the server processes of the bridges' connections (pg_stat_activity), not "
        "its shared WAL writer and checkpointer. readings/s a core = 1,000 / CPU-ms per "
        "1,000 readings: what one core sustains for that component alone. RSS: peak over the "
        "stretch.",
    )
    return table


def main_run(folder: Path) -> Outcome:
    with postgres_store() as store:
        return measure(
            shape(METERS, MAIN_WINDOW),
            folder / "main",
            store,
            warm_up_s=WARM_UP_S,
            measure_s=MAIN_S,
            progress=log,
        )


def record_main(o: Outcome) -> None:
    s = o.shape
    bench.record(
        TIER,
        f"readings/s sustained end to end, {s.meters:,} meters at {s.interval_s:g} s "
        "(10 loggers, 2 bridges, PostgreSQL), vs offered",
        o.stored_per_s,
        s.offered_per_s,
        "readings/s",
        f"bridges accepted {o.per_s('accepted'):,.1f}/s; books balance: "
        f"{'yes' if o.books.balanced else 'NO'}",
        better="higher",
    )
    bench.record(
        TIER,
        f"reading ts → window written, p99, {s.window_s} s windows, vs window_s + grace_s",
        percentile(o.latencies_s, 99),
        s.window_s + s.grace_s,
        "s",
        f"p50 {percentile(o.latencies_s, 50):.1f} s; after the window was due (end + grace): "
        f"p99 {percentile(o.after_end_s, 99) - s.grace_s:.2f} s",
    )
    total_cpu = sum(o.cpu_s.values())
    bench.record(
        TIER,
        f"CPU-s per 1,000 meters per hour, whole estate ({s.meters:,} meters)",
        total_cpu * 3600 / o.measured_s / (s.meters / 1000),
        None,
        "CPU-s",
        "; ".join(
            f"{NAMES[r].split(' (')[0]} {cpu * 3600 / o.measured_s / (s.meters / 1000):,.0f}"
            for r, cpu in o.cpu_s.items()
        ),
    )


# -- (b) one bridge against two, (c) the steps -------------------------------------------------


def step_run(folder: Path, meters: int, bridges: int = 2) -> Outcome:
    with postgres_store() as store:
        return measure(
            shape(meters, STEP_WINDOW, bridges),
            folder / f"step-{meters}-{bridges}",
            store,
            warm_up_s=WARM_UP_S,
            measure_s=STEP_S,
            progress=log,
        )


def bridges_table(one: Outcome, two: Outcome) -> Table:
    table = Table(
        f"(b) The same {METERS:,} meters with one bridge and with two on a shared subscription "
        f"({STEP_WINDOW[0]} s windows, {STEP_S:g} s each)",
        (
            Col("figure", align="left"),
            Col("1 bridge", align="right"),
            Col("2 bridges", align="right"),
            Col("2 / 1", ".2f", "×"),
        ),
    )

    def per_hour(o: Outcome, role: str) -> float:
        return o.cpu_s.get(role, 0.0) * 3600 / o.measured_s / (o.shape.meters / 1000)

    rows = [
        ("readings/s accepted", one.per_s("accepted"), two.per_s("accepted"), "{:,.1f}"),
        (
            "bridges CPU-s per 1,000 meters per hour",
            per_hour(one, "bridge"),
            per_hour(two, "bridge"),
            "{:,.0f}",
        ),
        (
            "PostgreSQL CPU-s per 1,000 meters per hour",
            per_hour(one, "database"),
            per_hour(two, "database"),
            "{:,.0f}",
        ),
        (
            "busiest bridge, cores",
            one.busiest_s.get("bridge", 0) / one.measured_s,
            two.busiest_s.get("bridge", 0) / two.measured_s,
            "{:.3f}",
        ),
        ("window rows written/s", one.per_s("windows"), two.per_s("windows"), "{:,.2f}"),
        ("sink merge p99, s", one.quantile("merge", 0.99), two.quantile("merge", 0.99), "{:.2f}"),
        (
            "window end → written p99, s",
            percentile(one.after_end_s, 99),
            percentile(two.after_end_s, 99),
            "{:.2f}",
        ),
        (
            "bridges RSS, all, MiB",
            one.sum_rss_mib.get("bridge", 0),
            two.sum_rss_mib.get("bridge", 0),
            "{:,.0f}",
        ),
    ]
    for name, a, b, fmt in rows:
        table.row(name, fmt.format(a), fmt.format(b), b / a if a else None)
    table.row(
        "books balance",
        "yes" if one.books.balanced else "NO",
        "yes" if two.books.balanced else "NO",
        None,
    )
    table.note(
        "Two bridges split the messages (each reading goes to one of them), so each window row "
        "is merged by both: twice the merges, each of half the readings. " + run_note(one),
        run_note(two),
    )
    bench.record(
        TIER,
        "bridges' CPU per 1,000 meters per hour: 2 bridges (shared subscription) vs 1",
        per_hour(two, "bridge"),
        per_hour(one, "bridge"),
        "CPU-s",
        "ratio as printed (2 bridges / 1): what running a second bridge for availability costs",
        ratio="ours/baseline",
    )
    bench.record(
        TIER,
        "PostgreSQL CPU per 1,000 meters per hour: 2 bridges vs 1",
        per_hour(two, "database"),
        per_hour(one, "database"),
        "CPU-s",
        "ratio as printed (2 bridges / 1): each window row is merged once per bridge",
        ratio="ours/baseline",
    )
    return table


def backlogs(o: Outcome) -> list[str]:
    """The signs that a run did not keep up: slots skipped, polls failed, queues grown."""
    found = []
    if o.grew("skipped") > 0:
        found.append(f"loggers skipped {o.grew('skipped'):,.0f} slots")
    if o.grew("failed") > 0:
        found.append(f"{o.grew('failed'):,.0f} polls failed")
    if o.grew("outbox") > o.shape.offered_per_s * 5:
        found.append(f"outboxes grew by {o.grew('outbox'):,.0f}")
    if o.grew("broker_stored") > o.shape.offered_per_s * 5:
        found.append(f"broker queue grew by {o.grew('broker_stored'):,.0f}")
    behind = o.grew("stored") - o.grew("accepted")
    if behind > o.shape.offered_per_s * 5:
        found.append(f"bridges fell {behind:,.0f} readings behind")
    if not math.isnan(lag := o.quantile("lag", 0.99)) and lag > 10:
        found.append(f"message lag p99 {lag:.0f} s")
    return found


def keeps_up(o: Outcome) -> bool:
    return o.stored_per_s >= SATURATED * o.shape.offered_per_s and not backlogs(o)


def verdict(o: Outcome) -> str:
    """What saturated in a run, if anything, from its CPU and its backlogs."""
    achieved = o.stored_per_s / o.shape.offered_per_s
    single = {r: o.busiest_s.get(r, 0.0) / o.measured_s for r in o.busiest_s}
    busiest = max(single, key=lambda r: single[r], default="")
    parts = [
        f"{'keeps up' if keeps_up(o) else 'saturated'}: {achieved * 100:.0f} % of offered; "
        f"machine {o.machine_busy * 100:.0f} % busy; busiest process: {busiest} "
        f"{single.get(busiest, 0.0):.2f} core"
    ]
    return "; ".join(parts + backlogs(o))


def steps_table(steps: Sequence[Outcome]) -> Table:
    table = Table(
        f"(c) Raising the load: {STEP_WINDOW[0]} s windows, 2 bridges, {STEP_S:g} s per step "
        "(cores: CPU seconds / wall seconds; the machine has "
        f"{os.cpu_count()})",
        (
            Col("meters", ",.0f"),
            Col("offered", ",.0f", "/s"),
            Col("stored", ",.0f", "/s"),
            Col("accepted", ",.0f", "/s"),
            Col("simulator", ".2f"),
            Col("loggers", ".2f"),
            Col("broker", ".2f"),
            Col("bridges", ".2f"),
            Col("database", ".2f"),
            Col("machine busy", ".0f", "%"),
            Col("poll p99", ",.0f", "ms"),
            Col("skipped slots", ",.0f"),
            Col("outbox Δ", ",.0f"),
            Col("broker queue Δ", ",.0f"),
            Col("lag p99", ".1f", "s"),
            Col("spool at end", ",.0f"),
            Col("load avg", ".1f"),
            Col("books", align="center"),
        ),
    )
    for o in steps:
        table.row(
            o.shape.meters,
            o.shape.offered_per_s,
            o.stored_per_s,
            o.per_s("accepted"),
            o.cores("simulator"),
            o.cores("logger"),
            o.cores("broker"),
            o.cores("bridge"),
            o.cores("database"),
            o.machine_busy * 100,
            o.quantile("poll", 0.99) * 1000,
            o.grew("skipped"),
            o.grew("outbox"),
            o.grew("broker_stored"),
            o.quantile("lag", 0.99),
            o.end.spool if o.end is not None else None,
            o.load_before,
            o.books.balanced,
        )
    for o in steps:
        costs = ", ".join(
            f"{role} {cpu_ms_per_k(o, role):,.0f}" for role in ("simulator", "logger", "bridge")
        )
        table.note(f"{o.shape.meters:,} meters: {verdict(o)}; CPU-ms per 1,000 readings: {costs}.")
    table.note(
        "A logger polls a gateway's 100 units one request at a time (as on an RS-485 line), "
        "so a bus cycle overruns its 5 s slot (a skipped slot) once a poll takes 50 ms on "
        "average; with the CPU near 100 %, each Modbus round trip waits for CPU on both sides, "
        "the simulator's and the logger's."
    )
    return table


def capacity_table(main: Outcome, steps: Sequence[Outcome]) -> Table:
    """Readings/s one core sustains for each component, from the CPU per reading measured."""
    top = max([o for o in steps if keeps_up(o)] or steps, key=lambda o: o.stored_per_s)
    best = max(steps, key=lambda o: o.stored_per_s)
    table = Table(
        "Capacity per core: CPU-ms per 1,000 readings of each component in (a) and at the "
        f"largest step that kept up ({top.shape.meters:,} meters), and what one core sustains "
        "for that component alone at the step's cost",
        (
            Col("component", align="left"),
            Col(f"(a) {main.shape.meters:,} m, CPU-ms / 1,000", ",.0f"),
            Col(f"step {top.shape.meters:,} m, CPU-ms / 1,000", ",.0f"),
            Col("readings/s a core", ",.0f"),
            Col("meters a core", ",.0f"),
            Col("scales by", align="left"),
        ),
    )
    scaling = {
        "simulator": "test equipment: real meters bring their own CPU",
        "logger": "a logger per site/host: add hosts (or cores), one process each",
        "broker": "one Mosquitto (single-threaded)",
        "bridge": "more bridges in the shared group, one process each",
        "database": "the PostgreSQL server (its own host)",
    }
    whole_main = whole_top = 0.0
    for role in ("simulator", "logger", "broker", "bridge", "database"):
        a = cpu_ms_per_k(main, role)
        b = cpu_ms_per_k(top, role)
        whole_main += a
        whole_top += b
        per_core = 1e6 / b if b else math.nan
        table.row(NAMES[role], a, b, per_core, per_core * main.shape.interval_s, scaling[role])
    estate = whole_top - cpu_ms_per_k(top, "simulator")
    table.row(
        "whole estate (all but the simulator)",
        whole_main - cpu_ms_per_k(main, "simulator"),
        estate,
        1e6 / estate,
        1e6 / estate * main.shape.interval_s,
        "",
    )
    table.row(
        "everything, simulator included",
        whole_main,
        whole_top,
        1e6 / whole_top,
        1e6 / whole_top * main.shape.interval_s,
        "",
    )
    cores = os.cpu_count() or 1
    table.note(
        f"Measured best on this machine: {best.stored_per_s:,.0f} readings/s stored "
        f"({best.shape.meters:,} meters offered {best.shape.offered_per_s:,.0f}/s). "
        f"{cores} cores at the CPU per reading of the {top.shape.meters:,}-meter step would "
        f"carry {cores * 1e6 / whole_top:,.0f} readings/s with the simulator on the same "
        f"cores, {cores * 1e6 / estate:,.0f} without it.",
    )
    bench.record(
        TIER,
        f"capacity of this {cores}-core machine (best readings/s stored over the steps) vs the "
        f"{METERS:,}-meter load",
        best.stored_per_s,
        main.shape.offered_per_s,
        "readings/s",
        f"at {best.shape.meters:,} meters offered; every component shares the cores",
        better="higher",
    )
    return table


def cpu_ms_per_k(o: Outcome, role: str) -> float:
    readings = o.grew("stored")
    return o.cpu_s.get(role, 0.0) / readings * 1e6 if readings else math.nan


# -- (d) Firestore -----------------------------------------------------------------------------

STAMP = re.compile(r"(\d{8}T\d{6}Z)")


@dataclass
class FirestoreRun:
    """One estate into the counting emulator: what it measured and every document write."""

    name: str
    outcome: Outcome
    writes: list[DocumentWrite]
    isolation: tuple[int, int] | None = None  # (increments committed, counted): `lost_updates`


def firestore_plans() -> list[tuple[str, Shape, float]]:
    """The estate of (a) into the emulator's per-window layout: its two bridges sharing the
    subscription as in (a) (1-minute windows, STEP_S), then split by site (MAIN_S)."""
    return [
        ("2 bridges sharing the subscription", shape(METERS, STEP_WINDOW), STEP_S),
        (
            "2 bridges split by site (bridge.topic_filters)",
            Shape(METERS, window_s=MAIN_WINDOW[0], grace_s=MAIN_WINDOW[1], split="sites"),
            MAIN_S,
        ),
    ]


def firestore_runs(
    folder: Path, plans: Sequence[tuple[str, Shape, float]] | None = None
) -> list[FirestoreRun]:
    """Each plan (name, shape, measured seconds) into a fresh counting emulator; the first
    emulator is also probed for lost updates (`probes.lost_updates`)."""
    found = []
    for k, (name, planned, measure_s) in enumerate(plans or firestore_plans()):
        folder_k = folder / f"firestore-{k}"
        folder_k.mkdir(parents=True)
        with firestore_store(folder_k, "per-window") as store:
            outcome = measure(
                planned,
                folder_k / "estate",
                store,
                warm_up_s=WARM_UP_S,
                measure_s=measure_s,
                progress=log,
            )
            assert store.write_log is not None
            isolation = lost_updates(store.env["FIRESTORE_EMULATOR_HOST"]) if k == 0 else None
            found.append(FirestoreRun(name, outcome, document_writes(store.write_log), isolation))
    return found


@dataclass
class WriteFigures:
    layout: str = ""
    windows: int = 0  # windows written wholly while the estate ran
    per_window: float = math.nan  # document writes
    per_document: float = math.nan  # writes of one document per window
    least: int = 0
    most: int = 0
    total: int = 0
    first_s: list[float] = field(default_factory=list)  # window end -> its first write
    last_s: list[float] = field(default_factory=list)  # window end -> its last write
    largest: int = 0  # bytes of the largest write

    @property
    def at_5min_a_day(self) -> float:
        return self.per_window * 288


def write_figures(o: Outcome, writes: Sequence[DocumentWrite]) -> WriteFigures:
    s = o.shape
    window_ms = s.window_s * 1000
    by_window: dict[int, list[DocumentWrite]] = defaultdict(list)
    for w in writes:
        found = STAMP.search(w.document_id)
        if found:
            stamp = datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            by_window[round(stamp.timestamp() * 1000)].append(w)
    # the windows written wholly while the estate ran (not by the bridges' final flush)
    live = {
        start: found
        for start, found in by_window.items()
        if all(w.at_ms <= o.live_until_ms for w in found)
    }
    counts = [len(found) for found in live.values()]
    docs = max((len({w.document_id for w in found}) for found in live.values()), default=0)
    layouts = {1: "one document per window", s.meters: "one document per meter and window"}
    layouts[s.sites] = f"one document per site and window ({s.sites} sites)"
    per_window = statistics.mean(counts) if counts else math.nan
    return WriteFigures(
        layout=layouts.get(docs, f"{docs} documents per window"),
        windows=len(live),
        per_window=per_window,
        per_document=per_window / docs if docs else math.nan,
        least=min(counts, default=0),
        most=max(counts, default=0),
        total=len(writes),
        first_s=[(min(w.at_ms for w in f) - t - window_ms) / 1000 for t, f in live.items()],
        last_s=[(max(w.at_ms for w in f) - t - window_ms) / 1000 for t, f in live.items()],
        largest=max((w.size for w in writes if w.kind == "set"), default=0),
    )


def firestore_table(runs: Sequence[FirestoreRun]) -> Table:
    table = Table(
        f'(d) Firestore emulator, bridge.firestore.layout = "per-window" as on main at this '
        f"commit, {runs[0].outcome.shape.meters:,} meters in {runs[0].outcome.shape.sites} sites",
        (Col("figure", align="left"), *(Col(r.name, align="right") for r in runs)),
    )
    figures = [write_figures(r.outcome, r.writes) for r in runs]
    outcomes = [r.outcome for r in runs]
    sites = outcomes[0].shape.sites
    goal = FIRESTORE_GOAL_PER_WINDOW * sites * 288

    def row(name: str, *cells: str) -> None:
        table.row(name, *cells)

    row("windows", *(f"{o.shape.window_s} s, grace {o.shape.grace_s:g} s" for o in outcomes))
    row("layout measured", *(f.layout for f in figures))
    row("windows written while it ran", *(str(f.windows) for f in figures))
    row(
        "document writes per window",
        *(f"{f.per_window:,.1f} ({f.least}–{f.most})" for f in figures),
    )
    row("writes of one document per window", *(f"{f.per_document:.2f}" for f in figures))
    row("document writes a day at 5-minute windows", *(f"{f.at_5min_a_day:,.0f}" for f in figures))
    row(
        f"goal ≤ 288 × {sites} sites = {goal:,} a day",
        *("met" if f.at_5min_a_day <= goal else "NOT met" for f in figures),
    )
    row("per-meter layout (computed)", *(f"{288 * o.shape.meters:,}" for o in outcomes))
    row(
        "window end → first / last write, p50",
        *(f"{percentile(f.first_s, 50):.1f} / {percentile(f.last_s, 50):.1f} s" for f in figures),
    )
    row(
        "window end → last write, max",
        *(f"{max(f.last_s, default=math.nan):.1f} s" for f in figures),
    )
    row(
        "reading ts → its window written, p50 / p99",
        *(
            f"{percentile(o.latencies_s, 50):.1f} / {percentile(o.latencies_s, 99):.1f} s"
            for o in outcomes
        ),
    )
    row("largest document write", *(f"{f.largest:,} B" for f in figures))
    row(
        "readings in windows / delivered",
        *(
            f"{o.books.window_readings + o.books.spooled_readings:,} / "
            f"{o.books.delivered_readings:,}"
            for o in outcomes
        ),
    )
    row(
        "Σ window energy / Σ delivered, Wh",
        *(
            f"{o.books.window_wh + o.books.spooled_wh:,.3f} / {o.books.delivered_wh:,.3f}"
            for o in outcomes
        ),
    )
    row("books balance", *("yes" if o.books.balanced else "NO" for o in outcomes))
    table.note(
        "Writes counted in the emulator: every set or delete a commit makes "
        "(benchmarks/firestore_counting.js). A bridge writes a window's document once per "
        "merge holding any of its meters; sharing the subscription, every bridge receives "
        "readings of every site, so each writes every site's document; split by site, each "
        "writes only its own sites'. Firestore's limit is 1 MiB a document.",
    )
    probe = next((r.isolation for r in runs if r.isolation is not None), None)
    if probe is not None:
        committed, counted = probe
        table.note(
            f"The emulator does not isolate transactions: two clients at once each adding 1 "
            f"to one counter {committed // 2} times in a transaction (read, write the value "
            f"read + 1) left it at {counted} of {committed}. So two bridges merging the same "
            "document at the same moment overwrite each other's meters here (the books of the "
            "shared subscription do not balance on the emulator); Firestore itself takes the "
            "transaction's reads as locks or aborts and retries it, which the sink's "
            "transactions rely on. The split by site never has two bridges on one document."
        )
    for r in runs:
        table.note(f"{r.name}: {run_note(r.outcome)}")
    split = next((f for f, r in zip(figures, runs, strict=True) if "site" in r.name), figures[-1])
    shared = figures[0]
    bench.record(
        TIER,
        f"Firestore document writes a day at 5-minute windows, {METERS:,} meters in {sites} "
        "sites, per-window layout, 2 bridges split by site, vs the per-meter layout (computed)",
        split.at_5min_a_day,
        288 * METERS,
        "writes",
        f"goal ≤ {goal:,}; sharing the subscription: {shared.at_5min_a_day:,.0f} "
        f"({shared.per_document:.1f} writes per document per window)",
    )
    return table


# -- the smallest estate ----------------------------------------------------------------------

SMOKE = Shape(20, sites=2, units_per_bus=10, interval_s=1.0, window_s=10, grace_s=2.0)


def smoke(folder: Path, measure_s: float = 15.0) -> tuple[Outcome, list[Table]]:
    """The smallest estate, end to end as in (a): 20 meters at 1 s, 2 sites, 2 gateways,
    2 bridges, PostgreSQL, 10 s windows; what it measured, and its tables."""
    with postgres_store() as store:
        outcome = measure(SMOKE, folder, store, warm_up_s=2.0, measure_s=measure_s)
    return outcome, [
        latency_table(outcome, f"{SMOKE.label()}, PostgreSQL"),
        cpu_table(outcome, "CPU and memory by component"),
    ]


# -- main --------------------------------------------------------------------------------------


def problems_table(outcomes: Sequence[tuple[str, Outcome]]) -> Table | None:
    lines = [f"{name}: {line}" for name, o in outcomes for line in o.logged]
    if not lines:
        return None
    table = Table("The services' log lines at WARNING or above (the first of each service)")
    table.note(*lines[:60])
    return table


def run(folder: Path) -> Iterator[Table]:
    log(f"load average {os.getloadavg()[0]:.2f} at the start")
    main = main_run(folder)
    yield latency_table(
        main,
        f"(a) {main.shape.label()}, PostgreSQL: throughput, latency, books",
    )
    yield cpu_table(main, f"(a) CPU and memory by component, {main.shape.meters:,} meters")
    record_main(main)
    one = step_run(folder, METERS, bridges=1)
    steps: list[Outcome] = []
    for meters in STEPS:
        steps.append(step_run(folder, meters))
        o = steps[-1]
        log(f"{meters:,} meters: {verdict(o)}")
        if o.stored_per_s < SATURATED * o.shape.offered_per_s * 0.6:
            log("far past saturation: the larger steps are left out")
            break
    yield bridges_table(one, steps[0])
    yield steps_table(steps)
    yield cpu_table(
        steps[-1],
        f"(c) CPU and memory by component at the last step, {steps[-1].shape.meters:,} meters",
    )
    yield capacity_table(main, steps)
    outcomes = [("main", main), ("1 bridge", one)] + [(f"{o.shape.meters} m", o) for o in steps]
    try:
        fired = firestore_runs(folder / "firestore")
    except harness.EmulatorError as exc:
        yield Table("(d) Firestore: not measured", notes=[str(exc)])
    else:
        yield firestore_table(fired)
        last = fired[-1].outcome
        yield cpu_table(last, f"(d) CPU and memory by component, Firestore, {last.shape.label()}")
        outcomes += [(f"firestore, {r.name}", r.outcome) for r in fired]
    found = problems_table(outcomes)
    if found is not None:
        yield found


if __name__ == "__main__":
    harness.main(run, __doc__)
