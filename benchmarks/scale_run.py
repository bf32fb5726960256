"""One measured run of an estate (`estate.Estate`): start it, let it settle, measure a stretch
of wall-clock time, stop it cleanly, then balance the books.

The stretch: every process's CPU seconds and RSS (`probes.Usage`, sampled every `SAMPLE_S`,
PostgreSQL's processes serving the bridges included), the machine's own busy time (other
users' work shows as the difference), the services' counters at its start and its end (only
then: scraping a logger of 1,000 meters costs both sides CPU): readings stored and delivered
by the loggers, their outboxes, skipped slots, failed polls and poll durations; readings
accepted, windows written, spool depth, message lag and sink writes of the bridges;
Mosquitto's stored messages.

The clean stop: the loggers first (SIGTERM; each commits its cycle and drains its outbox for
a few seconds), then, once the bridges have accepted every reading the loggers delivered,
the bridges (SIGTERM; each writes what its spool holds), then the simulator and the broker.
The books: Σ windows (and what a spool still holds) against Σ the loggers' stores, per meter.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from estate import Estate, Shape, Store
from probes import (
    Backends,
    Books,
    SysTopics,
    Usage,
    Window,
    balance,
    buckets,
    firestore_windows,
    logger_books,
    postgres_windows,
    quantile,
    reading_latencies,
    scrape,
    spool_books,
    total,
)

SAMPLE_S = 2.0
CATCH_UP_S = 180.0  # the bridges get this long to accept what the loggers delivered
ROLES = ("simulator", "logger", "broker", "bridge", "database", "emulator")
LOGGER = "campus_energy_logger_"
BRIDGE = "campus_energy_bridge_"


@dataclass
class Counts:
    """The services' counters at one moment, summed over the loggers and over the bridges."""

    at: float  # wall clock
    stored: float
    published: float
    outbox: float
    skipped: float
    failed: float
    accepted: float
    duplicates: float
    windows: float
    spool: float
    broker_stored: float
    dead_letters: float
    lag: dict[float, float] = field(default_factory=dict)  # the bridges' message lag histogram
    lateness: dict[float, float] = field(default_factory=dict)  # the loggers' slot lateness
    merge: dict[float, float] = field(default_factory=dict)  # the bridges' sink writes
    poll: dict[float, float] = field(default_factory=dict)  # the loggers' successful polls


def counts(estate: Estate, broker: SysTopics) -> Counts:
    loggers = [scrape(s.metrics_port) for s in estate.of("logger") if s.metrics_port]
    bridges = [scrape(s.metrics_port) for s in estate.of("bridge") if s.metrics_port]

    def over(found: list[list[Any] | None], name: str, **labels: str) -> float:
        return sum(total(f, name, **labels) for f in found)

    def histogram(found: list[list[Any] | None], name: str) -> dict[float, float]:
        summed: dict[float, float] = {}
        for f in found:
            for bound, count in buckets(f, name).items():
                summed[bound] = summed.get(bound, 0.0) + count
        return summed

    return Counts(
        at=time.time(),
        stored=over(loggers, LOGGER + "readings_stored_total"),
        published=over(loggers, LOGGER + "readings_published_total"),
        outbox=over(loggers, LOGGER + "outbox_depth"),
        skipped=over(loggers, LOGGER + "skipped_slots_total"),
        failed=over(loggers, LOGGER + "polls_total", outcome="failed"),
        accepted=over(bridges, BRIDGE + "readings_accepted_total"),
        duplicates=over(bridges, BRIDGE + "duplicates_total"),
        windows=over(bridges, BRIDGE + "windows_written_total"),
        spool=over(bridges, BRIDGE + "spool_depth"),
        broker_stored=broker.number("store/messages/count")
        - broker.number("retained messages/count"),
        dead_letters=over(bridges, BRIDGE + "dead_letters_total"),
        lag=histogram(bridges, BRIDGE + "message_lag_seconds"),
        lateness=histogram(loggers, LOGGER + "slot_lateness_seconds"),
        merge=histogram(bridges, BRIDGE + "sink_write_duration_seconds"),
        poll=histogram(loggers, LOGGER + "poll_duration_seconds"),
    )


@dataclass
class Outcome:
    """What one run measured."""

    shape: Shape
    store: str
    measured_s: float = 0.0
    load_before: float = 0.0  # 1-minute load average when the run started
    cpu_s: dict[str, float] = field(default_factory=dict)  # by role, over the stretch
    busiest_s: dict[str, float] = field(default_factory=dict)  # the busiest process of a role
    processes: dict[str, int] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  # the largest process of a role
    sum_rss_mib: dict[str, float] = field(default_factory=dict)  # all processes of a role
    machine_busy: float = math.nan  # the share of the machine's CPU time busy, anyone's work
    harness_cpu_s: float = 0.0  # this process (sampling, scraping)
    start: Counts | None = None
    end: Counts | None = None
    books: Books = field(default_factory=Books)
    latencies_s: list[float] = field(default_factory=list)  # reading ts -> its window's write
    after_end_s: list[float] = field(default_factory=list)  # window end -> its row's write
    windows: list[Window] = field(default_factory=list)
    live_from_ms: int = 0
    live_until_ms: int = 0  # the loggers were stopped then: later writes are the final flush
    exits: dict[str, list[int | None]] = field(default_factory=dict)
    caught_up: bool = True
    logged: list[str] = field(default_factory=list)  # the services' warnings and errors

    def per_s(self, name: str) -> float:
        """The increase of a counter over the stretch, per second."""
        if self.start is None or self.end is None or not self.measured_s:
            return math.nan
        return float(getattr(self.end, name) - getattr(self.start, name)) / self.measured_s

    def grew(self, name: str) -> float:
        if self.start is None or self.end is None:
            return math.nan
        return float(getattr(self.end, name) - getattr(self.start, name))

    def quantile(self, name: str, q: float) -> float:
        if self.start is None or self.end is None:
            return math.nan
        return quantile(getattr(self.start, name), getattr(self.end, name), q)

    @property
    def stored_per_s(self) -> float:
        return self.per_s("stored")

    def cores(self, role: str) -> float:
        """CPU of a role over the stretch, in cores (1.0: one core busy all the time)."""
        return self.cpu_s.get(role, 0.0) / self.measured_s if self.measured_s else math.nan


def _sleep_sampling(seconds: float, sample: Callable[[], None]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_S, left))
        sample()


def cpu_clock() -> tuple[float, float]:
    """(busy, all) seconds of every CPU of the machine so far, anyone's (guest time is already
    in user and nice)."""
    t = psutil.cpu_times()._asdict()
    spent = sum(v for k, v in t.items() if k not in ("guest", "guest_nice"))
    return spent - t.get("idle", 0.0) - t.get("iowait", 0.0), spent


def measure(
    shape: Shape,
    folder: Path,
    store: Store,
    *,
    warm_up_s: float,
    measure_s: float,
    progress: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Run an estate of `shape` writing to `store`: see the module's docstring."""
    outcome = Outcome(shape, store.label, load_before=os.getloadavg()[0])
    estate = Estate(shape, folder, store)
    usage = Usage()
    me = psutil.Process()
    broker: SysTopics | None = None
    backends: dict[int, str] = {}
    database = Backends() if store.kind == "postgres" else None

    def sample() -> None:
        if database is not None:
            backends.update(database.pids())
        usage.sample({**estate.pids(), **backends})

    try:
        progress(f"starting {shape.label()} → {store.label}")
        estate.start()
        broker = SysTopics(estate.broker.port)
        progress(f"all serving; warming up {warm_up_s:g} s")
        _sleep_sampling(warm_up_s, sample)
        sample()
        before, clock0, harness0 = usage.snapshot(), cpu_clock(), sum(me.cpu_times()[:2])
        usage.mark_peak()
        outcome.start = counts(estate, broker)
        outcome.live_from_ms = round(outcome.start.at * 1000)
        progress(f"measuring {measure_s:g} s")
        started = time.monotonic()
        _sleep_sampling(measure_s, sample)
        sample()
        outcome.measured_s = time.monotonic() - started
        after, clock1, harness1 = usage.snapshot(), cpu_clock(), sum(me.cpu_times()[:2])
        outcome.end = counts(estate, broker)
        outcome.cpu_s = usage.cpu_between(before, after)
        for pid, cpu in after.items():
            role = usage.roles[pid]
            spent = cpu - before.get(pid, 0.0)
            outcome.busiest_s[role] = max(outcome.busiest_s.get(role, 0.0), spent)
        busy, spent = clock1[0] - clock0[0], clock1[1] - clock0[1]
        outcome.machine_busy = busy / spent if spent > 0 else math.nan
        outcome.harness_cpu_s = harness1 - harness0
        for role in ROLES:
            pids = usage.processes(role)
            if pids:
                outcome.processes[role] = len(pids)
                outcome.peak_rss_mib[role] = max(usage.peak_rss[p] for p in pids) / 2**20
                outcome.sum_rss_mib[role] = sum(usage.peak_rss[p] for p in pids) / 2**20
        progress("stopping cleanly")
        stop_cleanly(estate, outcome, progress)
        collect_books(estate, store, outcome)
    finally:
        if broker is not None:
            broker.close()
        if database is not None:
            database.close()
        estate.close()
        outcome.logged = problems(estate)
    return outcome


def stop_cleanly(estate: Estate, outcome: Outcome, progress: Callable[[str], None]) -> None:
    outcome.live_until_ms = round(time.time() * 1000)
    outcome.exits["logger"] = estate.stop("logger")
    logged = logger_books(s.store for s in estate.of("logger") if s.store)
    delivered = logged.readings - logged.undelivered
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        found = [scrape(s.metrics_port) for s in estate.of("bridge") if s.metrics_port]
        accepted = sum(total(f, BRIDGE + "readings_accepted_total") for f in found)
        if accepted >= delivered:
            break
        if time.monotonic() > deadline:
            outcome.caught_up = False
            progress(f"the bridges accepted {accepted:,.0f} of {delivered:,} readings")
            break
        time.sleep(1.0)
    outcome.exits["bridge"] = estate.stop("bridge", timeout_s=120)
    outcome.exits["simulator"] = estate.stop("simulator")


def collect_books(estate: Estate, store: Store, outcome: Outcome) -> None:
    logged = logger_books(s.store for s in estate.of("logger") if s.store)
    spooled = spool_books(s.spool for s in estate.of("bridge") if s.spool)
    if store.kind == "postgres":
        windows = postgres_windows(store.schema)
    else:
        firestore = store.settings["firestore"]
        windows, _ = firestore_windows(
            store.env["FIRESTORE_EMULATOR_HOST"], firestore["project"], "readings_5min_avg"
        )
    outcome.windows = windows
    outcome.books = balance(logged, windows, spooled)
    window_ms = estate.shape.window_s * 1000
    outcome.latencies_s = reading_latencies(
        logged.stamps, windows, window_ms, outcome.live_from_ms, outcome.live_until_ms
    )
    outcome.after_end_s = [
        (w.updated_ms - w.start_ms - window_ms) / 1000
        for w in windows
        if outcome.live_from_ms <= w.updated_ms <= outcome.live_until_ms
    ]


LOGGED = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def problems(estate: Estate, limit: int = 12) -> list[str]:
    """The services' log lines at WARNING or above (the first few of each service)."""
    found = []
    for service in estate.services:
        lines = (
            [
                line.strip()
                for line in service.log.read_text(encoding="utf-8", errors="replace").splitlines()
                if LOGGED.search(line)
            ]
            if service.log.exists()
            else []
        )
        found += [f"{service.name}: {line}" for line in lines[:limit]]
        if len(lines) > limit:
            found.append(f"{service.name}: … {len(lines) - limit} more")
    return found
