"""The bridge: throughput, what it writes, cloud writes per day and CPU, ours vs the legacy bridge.

Returns three sections of tables, each with its baseline run in this same process:
(a) end-to-end throughput through a private Mosquitto: 20,000 pre-built
    schema-1 readings of 20 meters (5 s apart) published at QoS 1 as fast as
    possible by a child publisher process (so that its CPU is not ours), into
    the real `Bridge` (spool + SQLite sink, 300 s windows, grace 0) vs a
    minimal, faithful legacy bridge (`baselines/legacy_bridge.py`: buffers by
    arrival, one batch per "300 s of uptime", power averaged by sample count,
    meter_id from the first message, a uuid4 document id, a commit per
    document). "live": subscribed
    while the publisher runs; "drain": everything queued at the broker while
    the subscriber's persistent session was away. Then what each design wrote
    against the energy that was published;
(b) sink writes per day for 10 and 100 meters under the cost model (legacy,
    per-meter and per-window Firestore layouts, the 20,000-writes free tier),
    with the 10-meter day also run through `Bridge.flush` into a counting sink
    that groups documents the way `FirestoreSink` does;
(c) CPU seconds per 10,000 readings of each stage of the bridge's own work
    (no MQTT), vs the legacy bridge's per-message work.
Ratios are against the legacy bridge. No assertions: each number is printed
next to what it should be.

Run: .venv/bin/python benchmarks/bridge.py [--quick]
Quick mode: 10,000 messages, one round, one CPU repeat.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

import harness
import results as bench
from baselines import legacy_bridge
from baselines.legacy_bridge import BatchInfo, LegacyBridge
from campus_energy.backends.firestore.sink import PER_TRANSACTION, transactions
from campus_energy.bridge.service import BATCH, Bridge
from campus_energy.config import Config, parse_config
from campus_energy.core.energy import trapezoid_uwh
from campus_energy.core.incoming import parse_reading
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.topics import reading_topic
from campus_energy.core.windows import (
    Contribution,
    IncomingReading,
    WindowDelta,
    contributions,
    group,
)
from campus_energy.demo.mosquitto import Mosquitto
from measure import free_port
from results import Col, Table

TIER = "bridge"
PREFIX = "campus/energy"
METERS = 20
POLL_S = 5
WINDOW_S = 300
MESSAGES = bench.sized(20_000, 10_000)
LEGACY_BATCH = METERS * WINDOW_S // POLL_S  # arrivals in "300 s of uptime" at the real-time rate
FREE_TIER_WRITES = 20_000
IDLE_TIMEOUT_S = 15.0  # no progress for this long: report what arrived and stop waiting
PUBLISHERS = 100  # concurrent QoS 1 publishes (the client's in-flight window)


# -- the readings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    energy_wh: float
    meter_id: str
    ts_ms: int
    interval_start_ms: int


def meter_ids(count: int) -> list[str]:
    return [f"m{i:03d}" for i in range(1, count + 1)]


def make_messages(total: int, meters: int, start_ms: int, seed: int = 7) -> list[Message]:
    """`total` readings of `meters` meters, poll cycle by poll cycle, 5 s apart, as published.

    Every reading integrates the 5 s since the meter's previous reading
    (interval_start = previous ts; for the first one, the reading before the run).
    """
    rng = random.Random(seed)
    ids = meter_ids(meters)
    power = {m: 300.0 + 1500.0 * rng.random() for m in ids}
    total_uwh = {m: rng.randrange(10**9, 10**10) for m in ids}
    found: list[Message] = []
    cycle = 0
    while len(found) < total:
        for i, meter_id in enumerate(ids):
            if len(found) == total:
                break
            previous = power[meter_id]
            now_w = min(4000.0, max(50.0, previous + rng.gauss(0, 40.0)))
            voltage = 230.0 + rng.uniform(-3, 3)
            pf = 0.85 + 0.1 * rng.random()
            energy = trapezoid_uwh(previous, now_w, POLL_S)
            total_uwh[meter_id] += energy
            power[meter_id] = now_w
            ts_ms = start_ms + cycle * POLL_S * 1000 + 3 * i
            reading = Reading(
                meter_id,
                ts_ms,
                cycle + 1,
                energy,
                total_uwh[meter_id],
                {
                    "voltage_v": voltage,
                    "current_a": now_w / (voltage * pf),
                    "power_w": now_w,
                    "power_factor": pf,
                    "frequency_hz": 50.0 + rng.uniform(-0.03, 0.03),
                },
                ts_ms - POLL_S * 1000,
            )
            body = reading.payload(f"B{i % 4 + 1}", f"F{i % 3}")
            found.append(
                Message(
                    reading_topic(PREFIX, meter_id),
                    json.dumps(body, separators=(",", ":")).encode(),
                    reading.energy_wh,
                    meter_id,
                    ts_ms,
                    ts_ms - POLL_S * 1000,
                )
            )
        cycle += 1
    return found


def expected_windows(messages: Sequence[Message], window_ms: int) -> set[tuple[str, int]]:
    """(meter, window index) of every window a reading's interval overlaps or its ts lies in."""
    found: set[tuple[str, int]] = set()
    for m in messages:
        first = m.interval_start_ms // window_ms
        last = (m.ts_ms - 1) // window_ms  # (start, ts] ends in the window holding ts − 1 ms
        found.update((m.meter_id, w) for w in range(first, last + 1))
        found.add((m.meter_id, m.ts_ms // window_ms))
    return found


def past_start_ms(messages_per_meter: int) -> int:
    """A start such that the whole run lies in the last ~2 h, off the window grid by 137 s."""
    span_s = messages_per_meter * POLL_S
    start_s = (math.floor((time.time() - span_s - 600) / WINDOW_S)) * WINDOW_S + 137
    return start_s * 1000


# -- (a) throughput through Mosquitto -------------------------------------------------------


@dataclass
class RunResult:
    name: str
    received: int = 0
    seconds: float = 0.0  # go (live) or (re)connect (drain) → last message recorded
    publish_seconds: float = 0.0
    cpu_s: float = 0.0  # this process, same span
    broker_cpu_s: float = 0.0
    publisher_cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


PUBLISHER = """
import asyncio, sys, time
import aiomqtt

async def main(port, path, inflight):
    with open(path, "rb") as f:
        lines = f.read().split(b"\\n")
    messages = [(t.decode(), p) for t, p in (line.split(b"\\t", 1) for line in lines if line)]
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-publisher", max_inflight_messages=inflight
    ) as client:
        client.pending_calls_threshold = 10 * inflight
        print("ready", flush=True)
        sys.stdin.readline()
        cpu0, started = time.process_time(), time.perf_counter()
        queue = iter(messages)

        async def worker():
            for topic, payload in queue:  # one shared iterator: messages leave in order
                await client.publish(topic, payload, qos=1)

        await asyncio.gather(*(worker() for _ in range(inflight)))
        print(time.perf_counter() - started, time.process_time() - cpu0, flush=True)

asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
"""


def write_messages(path: Path, messages: Sequence[Message]) -> None:
    path.write_bytes(b"".join(m.topic.encode() + b"\t" + m.payload + b"\n" for m in messages))


class Publisher:
    """A child process with its own aiomqtt client: connects, then publishes the file on go()."""

    def __init__(self, port: int, path: Path) -> None:
        self.args = (str(port), str(path), str(PUBLISHERS))
        self.process: asyncio.subprocess.Process | None = None
        self.finished = False

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUBLISHER,
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        if await self._line() != "ready":
            raise RuntimeError("the publisher process did not connect")

    async def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().strip()

    async def go(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def finish(self) -> tuple[float, float]:
        """(seconds until the last PUBACK, the publisher's CPU seconds)."""
        seconds, cpu = (float(x) for x in (await self._line()).split())
        self.finished = True
        return seconds, cpu

    async def close(self) -> None:
        if self.process is None:
            return
        if not self.finished and self.process.returncode is None:
            self.process.kill()  # something failed before it was done: no point waiting
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None


def broker_cpu(broker: Mosquitto) -> float:
    assert broker.process is not None
    times = psutil.Process(broker.process.pid).cpu_times()
    return float(times.user + times.system)


async def wait_until(count: Callable[[], int], target: int) -> None:
    """Until count() reaches target, or it stops moving for IDLE_TIMEOUT_S."""
    last, last_change = count(), time.perf_counter()
    while count() < target:
        await asyncio.sleep(0.002)
        now = count()
        if now != last:
            last, last_change = now, time.perf_counter()
        elif time.perf_counter() - last_change > IDLE_TIMEOUT_S:
            return


async def run_legacy(
    broker: Mosquitto, folder: Path, messages: Sequence[Message], source: Path, drain: bool
) -> RunResult:
    """Live: subscribed, then the publisher goes. Drain: the session's queue already holds all."""
    result = RunResult("legacy bridge")
    legacy = LegacyBridge(folder / "legacy.db", LEGACY_BATCH)
    topic = reading_topic(PREFIX, "+")

    def client() -> aiomqtt.Client:
        # a persistent session only where the drain needs the broker to queue the backlog
        return aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="legacy-bridge", clean_session=not drain
        )

    async def receive(subscriber: aiomqtt.Client) -> None:
        async for message in subscriber.messages:
            assert isinstance(message.payload, bytes)
            legacy.receive(message.payload)
            if legacy.received == len(messages):
                return

    publisher = Publisher(broker.port, source)
    try:
        await publisher.start()
        if drain:
            async with client() as subscriber:
                await subscriber.subscribe(topic, qos=1)
            await publisher.go()
            result.publish_seconds, result.publisher_cpu_s = await publisher.finish()
        cpu0, broker0 = time.process_time(), broker_cpu(broker)
        started = time.perf_counter()
        async with client() as subscriber:
            receiving = asyncio.create_task(receive(subscriber))
            if not drain:  # drain: timed from the reconnection, as ours from Bridge.run
                await subscriber.subscribe(topic, qos=1)
                cpu0, broker0 = time.process_time(), broker_cpu(broker)
                started = time.perf_counter()
                await publisher.go()
            await wait_until(lambda: legacy.received, len(messages))
            if not receiving.done():
                receiving.cancel()
            legacy.flush()  # the next "300 s of uptime" would have written the rest
            result.seconds = time.perf_counter() - started
            result.cpu_s = time.process_time() - cpu0
            result.broker_cpu_s = broker_cpu(broker) - broker0
            if not drain:
                result.publish_seconds, result.publisher_cpu_s = await publisher.finish()
            await asyncio.gather(receiving, return_exceptions=True)
    finally:
        await publisher.close()
        docs = legacy.summary()
        legacy.close()
    result.received = legacy.received
    result.extra = {"docs": docs, "batches": legacy.batches}
    return result


def bridge_config(folder: Path, port: int, grace_s: float = 0) -> Config:
    return parse_config(
        {
            "mqtt": {"port": port, "topic_prefix": PREFIX},
            "bridge": {
                "window_s": WINDOW_S,
                "grace_s": grace_s,
                "spool_path": str(folder / "spool.db"),
                "client_id": "bench-bridge",
                "sink": "sqlite",
                "sqlite": {"path": str(folder / "windows.db")},
            },
        }
    )


async def run_ours(
    broker: Mosquitto, folder: Path, messages: Sequence[Message], source: Path, drain: bool
) -> RunResult:
    """Live: subscribed, then the publisher goes. Drain: the session's queue already holds all."""
    result = RunResult("ours: Bridge")
    config = bridge_config(folder, broker.port)
    publisher = Publisher(broker.port, source)
    try:
        await publisher.start()
        if drain:  # the bridge's persistent session exists, then it is away while all arrive
            first = Bridge(config)
            stop_first = asyncio.Event()
            first_run = asyncio.create_task(first.run(stop_first))
            await asyncio.wait_for(first.subscribed.wait(), 10)
            stop_first.set()
            await asyncio.wait_for(first_run, 60)
            await publisher.go()
            result.publish_seconds, result.publisher_cpu_s = await publisher.finish()

        bridge = Bridge(config)
        final: dict[str, float] = {}
        original_final_flush = bridge._final_flush

        async def timed_final_flush() -> None:  # the bridge's own final flush, timed
            before = bridge.counters.window_writes
            started = time.perf_counter()
            await original_final_flush()
            final["seconds"] = time.perf_counter() - started
            final["windows"] = bridge.counters.window_writes - before

        bridge._final_flush = timed_final_flush  # type: ignore[method-assign]
        stop = asyncio.Event()
        cpu0, broker0 = time.process_time(), broker_cpu(broker)
        started = time.perf_counter()
        running = asyncio.create_task(bridge.run(stop))
        try:
            if not drain:
                await asyncio.wait_for(bridge.subscribed.wait(), 10)
                cpu0, broker0 = time.process_time(), broker_cpu(broker)
                started = time.perf_counter()
                await publisher.go()
            flushes = bridge.counters.flushes
            await wait_until(lambda: bridge.counters.readings, len(messages))
            result.seconds = time.perf_counter() - started
            result.cpu_s = time.process_time() - cpu0
            result.broker_cpu_s = broker_cpu(broker) - broker0
            during = bridge.counters.window_writes
            flushes = bridge.counters.flushes - flushes
            if not drain:
                result.publish_seconds, result.publisher_cpu_s = await publisher.finish()
        finally:
            stop.set()
            stopping = time.perf_counter()
            await asyncio.wait_for(running, 60)
            stop_s = time.perf_counter() - stopping
    finally:
        await publisher.close()
    result.received = bridge.counters.readings
    conn = sqlite3.connect(config.bridge.sqlite.path)
    try:
        docs = conn.execute(
            "SELECT count(*), count(DISTINCT meter_id), count(DISTINCT window_start_ms), "
            "count(DISTINCT meter_id || '/' || window_start_ms), sum(total_energy_wh), "
            "sum(readings_in_batch), min(coverage), max(coverage) FROM window_aggregates"
        ).fetchone()
        per_meter = dict(
            conn.execute(
                "SELECT meter_id, sum(total_energy_wh) FROM window_aggregates GROUP BY meter_id"
            )
        )
    finally:
        conn.close()
    conn = sqlite3.connect(config.bridge.spool_path)
    try:
        left = conn.execute("SELECT count(*) FROM contributions").fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        conn.close()
    result.extra = {
        "docs": docs,
        "docs_count": docs[0],
        "per_meter": per_meter,
        "during": during,
        "flushes": flushes,
        "final_s": final.get("seconds", math.nan),
        "final_windows": final.get("windows", 0),
        "stop_s": stop_s,
        "left": left,
        "dead": dead,
        "duplicates": bridge.counters.duplicates,
    }
    return result


ROUNDS = bench.sized(3, 1)
MODES = ("live", "drain")


async def throughput(folder: Path, messages: Sequence[Message]) -> dict[str, list[RunResult]]:
    """ROUNDS rounds of each (mode, design), legacy first, each on a fresh broker and files."""
    source = folder / "messages.tsv"
    write_messages(source, messages)
    results: dict[str, list[RunResult]] = {}
    for k in range(ROUNDS):
        for mode in MODES:
            for name, run in (("legacy", run_legacy), ("ours", run_ours)):
                run_folder = folder / f"{mode}-{name}-{k}"
                run_folder.mkdir()
                broker = Mosquitto(run_folder / "mosquitto", free_port())
                broker.start()
                try:
                    result = await run(broker, run_folder, messages, source, mode == "drain")
                finally:
                    broker.stop()
                results.setdefault(f"{mode} {name}", []).append(result)
    return results


def median_of(results: Sequence[RunResult], value: Callable[[RunResult], float]) -> float:
    return statistics.median(value(r) for r in results)


def throughput_tables(
    results: dict[str, list[RunResult]], messages: Sequence[Message]
) -> Iterator[Table]:
    table = Table(
        f"(a) End to end through Mosquitto: {len(messages):,} readings of {METERS} meters "
        f"({len(messages) // METERS} each, 5 s apart, data in the past), QoS 1 from a publisher "
        f"process ({PUBLISHERS} in flight); median of {ROUNDS} rounds",
        (
            "mode",
            "design",
            "received",
            Col("publish", ".2f", "s"),
            Col("all in", ".2f", "s"),
            Col("msgs/s", ",.0f"),
            Col("(min…max)", align="right"),
            Col("× legacy", ".2f", "×"),
            Col("CPU here", ".2f", "s"),
            Col("broker", ".2f", "s"),
            Col("publisher", ".2f", "s"),
        ),
    )

    def rate(r: RunResult) -> float:
        return r.received / r.seconds

    for mode in MODES:
        base_rate = median_of(results[f"{mode} legacy"], rate)
        for name, label in (
            ("ours", "ours: Bridge → spool → SQLite sink"),
            ("legacy", "legacy: list by arrival, 1 doc per batch"),
        ):
            runs = results[f"{mode} {name}"]
            rates = [rate(r) for r in runs]
            table.row(
                mode,
                label,
                min(r.received for r in runs),
                median_of(runs, lambda r: r.publish_seconds),
                median_of(runs, lambda r: r.seconds),
                statistics.median(rates),
                f"({min(rates):,.0f}…{max(rates):,.0f})",
                statistics.median(rates) / base_rate,
                median_of(runs, lambda r: r.cpu_s),
                median_of(runs, lambda r: r.broker_cpu_s),
                median_of(runs, lambda r: r.publisher_cpu_s),
            )
            if name == "ours":
                bench.record(
                    TIER,
                    f"end-to-end throughput through Mosquitto, {mode}, vs the legacy bridge",
                    statistics.median(rates),
                    base_rate,
                    "msgs/s",
                    f"{len(messages):,} QoS 1 readings of {METERS} meters; median of {ROUNDS}",
                    better="higher",
                )

    def per_10k(key: str) -> float:
        return median_of(results[key], lambda r: r.cpu_s / r.received * 10_000)

    table.note(
        "live: subscribed, then the publisher goes; all in = go → the last message recorded "
        "(ours: bridge.counters.readings == N; legacy: buffered and its batch committed). "
        "drain: all N published while the subscriber's persistent session was away; all in = "
        "(re)start → the last recorded",
        "CPU here = this process, the subscriber side only (MQTT client included), per 10,000 "
        f"messages: live ours {per_10k('live ours'):.2f} s, legacy {per_10k('live legacy'):.2f} s; "
        f"drain ours {per_10k('drain ours'):.2f} s, legacy {per_10k('drain legacy'):.2f} s",
    )
    yield table

    ours, legacy = results["live ours"][-1], results["live legacy"][-1]
    x = ours.extra
    merges = Table(
        "ours: where the window merges happened (median of the rounds; grace_s 0 and data in the "
        "past, so every window is due at once)",
        (
            "mode",
            Col("merges while receiving", ",.0f"),
            Col("flush passes", ",.0f"),
            Col("final flush merges", ",.0f"),
            Col("final flush", ".0f", "ms"),
            Col("stop → stopped", ".0f", "ms"),
            Col("documents", ",.0f"),
            Col("merges/doc", ".2f"),
        ),
    )
    for mode in MODES:
        runs = results[f"{mode} ours"]

        def med(key: str, runs: list[RunResult] = runs) -> float:
            return float(statistics.median(r.extra[key] for r in runs))

        merges.row(
            mode,
            med("during"),
            med("flushes"),
            med("final_windows"),
            med("final_s") * 1000,
            med("stop_s") * 1000,
            med("docs_count"),
            statistics.median(
                (r.extra["during"] + r.extra["final_windows"]) / r.extra["docs"][0] for r in runs
            ),
        )
    merges.note(
        "the flush loop (every 1 s) writes each window as soon as it is due, so what the final "
        "flush finds depends on timing; merges/doc > 1: a window written before all its readings "
        "were spooled is merged again (idempotent). The cost of flushing everything at once is "
        "in (c).",
        f"ours: acknowledged only after the spool commit (synchronous=FULL, ≤{BATCH} a batch); "
        f"left in the spool {x['left']} contributions, dead letters {x['dead']}, "
        f"duplicates {x['duplicates']}",
        f"legacy: auto-acknowledged on arrival, in RAM until its batch of {LEGACY_BATCH:,} "
        f"arrivals (= {WINDOW_S} s of uptime at {METERS} meters every {POLL_S} s) is written",
    )
    yield merges

    true_wh = sum(m.energy_wh for m in messages)
    windows_expected = len(expected_windows(messages, WINDOW_S * 1000))
    docs, meters, windows, pairs, energy, readings, low, high = x["docs"]
    l_docs, l_meters, l_est300, l_est5 = legacy.extra["docs"]
    batches: list[BatchInfo] = legacy.extra["batches"]
    mixed = statistics.median(b.meters for b in batches) if batches else 0
    same = all(
        r.extra["docs"][:4] == x["docs"][:4] for mode in MODES for r in results[f"{mode} ours"]
    ) and all(
        r.extra["docs"][:2] == legacy.extra["docs"][:2]
        for mode in MODES
        for r in results[f"{mode} legacy"]
    )
    wrote = Table(
        f"What each design wrote (last live round; counts identical in every round and mode: "
        f"{'yes' if same else 'NO'}); true Σ energy_wh published = {true_wh:,.6f} Wh",
        (
            "design",
            "documents",
            "meter ids",
            Col("meters/doc", "g"),
            Col("energy Wh", ",.6f"),
            Col("error", "+.1e", "Wh"),
            Col("est. error", "+.2f", "%"),
        ),
    )
    wrote.row(
        "ours: Σ total_energy_wh of the windows", docs, meters, 1, energy, energy - true_wh, ""
    )
    wrote.row("legacy: stored energy", l_docs, l_meters, mixed, "n/a (none)", None, None)
    for label, estimate in (
        ("legacy, est.: Σ avg power × 300 s per document", l_est300),
        ("legacy, est.: Σ avg power × n × 5 s (logger rule)", l_est5),
    ):
        wrote.row(label, "", "", "", estimate, "", (estimate / true_wh - 1) * 100)
    published: dict[str, float] = {}
    for m in messages:
        published[m.meter_id] = published.get(m.meter_id, 0.0) + m.energy_wh
    worst = max(abs(x["per_meter"].get(k, 0.0) - v) for k, v in published.items())
    labels = sorted({b.labelled for b in batches})
    wrote.note(
        f"ours: per meter, the largest |Σ window energy − Σ published energy_wh| is {worst:.1e} Wh",
        f"ours: {pairs:,} distinct (meter, window) in {docs:,} documents = {windows} windows × "
        f"{meters} meters (expected {windows_expected:,}); Σ readings_in_batch {readings:,}; "
        f"coverage {low:.3f}…{high:.3f}",
        f"legacy: {len(batches)} batch documents, each mixing {mixed:g} meters (median) under the "
        f"first message's meter_id ({', '.join(labels)}); {METERS - len(labels)} of {METERS} "
        "meters have no document",
    )
    bench.record(
        TIER,
        f"meters with documents of their own (of {METERS}), vs the legacy bridge",
        meters,
        len(labels),
        "meters",
        f"legacy documents mix {mixed:g} meters (median) under the first message's meter_id",
        better="higher",
    )
    bench.record(
        TIER,
        "|energy error| of what was written, vs the published energy",
        abs(energy / true_wh - 1) * 100,
        abs(l_est5 / true_wh - 1) * 100,
        "%",
        "legacy stores no energy: its closest estimate, Σ avg power × n × 5 s (the logger's "
        f"rule); Σ avg power × 300 s per document: {(l_est300 / true_wh - 1) * 100:+.2f} %",
    )
    yield wrote


# -- (b) sink writes per day ----------------------------------------------------------------

DAY_START_MS = 1_772_582_400_000  # 2026-03-04T00:00:00Z
DAY_METERS = 10
DEFAULT_GRACE_S = 60


class CountingSink:
    """A WindowSink that writes nothing and counts the documents `FirestoreSink` would write.

    Through `FirestoreSink`'s own `transactions()` cut: per-meter writes one document
    per delta, per-window one document per distinct window start in a transaction.
    """

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.deltas = 0
        self.per_meter = 0
        self.per_window = 0
        self.per_meter_ids: set[str] = set()
        self.per_window_ids: set[int] = set()

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        self.calls += 1
        self.deltas += len(deltas)
        for chunk in transactions(deltas, "per-meter"):
            self.per_meter += len(chunk)
            self.per_meter_ids.update(d.document_id for d in chunk)
        for chunk in transactions(deltas, "per-window"):
            windows = {d.window_start_ms for d in chunk}
            self.per_window += len(windows)
            self.per_window_ids.update(windows)
        return len(deltas)

    async def close(self) -> None:
        pass


def day_readings(meters: int, seed: int = 3) -> list[IncomingReading]:
    """One UTC day of validated readings, 5 s apart; the first of each meter integrates nothing."""
    rng = random.Random(seed)
    ids = meter_ids(meters)
    power = {m: 300.0 + 1500.0 * rng.random() for m in ids}
    found = []
    for k in range(86_400 // POLL_S):
        for i, meter_id in enumerate(ids):
            previous = power[meter_id]
            now_w = min(4000.0, max(50.0, previous + rng.gauss(0, 40.0)))
            power[meter_id] = now_w
            ts_ms = DAY_START_MS + k * POLL_S * 1000 + 3 * i
            found.append(
                IncomingReading(
                    meter_id,
                    ts_ms,
                    k + 1,
                    trapezoid_uwh(previous, now_w, POLL_S) / 1e6 if k else 0.0,
                    ts_ms - POLL_S * 1000 if k else None,
                    now_w,
                    230.0,
                    now_w / 230.0,
                    0.95,
                    50.0,
                    f"B{i % 4 + 1}",
                    "F0",
                )
            )
    return found


async def add_in_batches(bridge: Bridge, readings: Sequence[IncomingReading]) -> None:
    for start in range(0, len(readings), BATCH):
        batch = readings[start : start + BATCH]
        items = [c for r in batch for c in contributions(r, bridge.window_ms)]
        await bridge.spool.add(batch, items)


async def day_through_flush(
    folder: Path, readings: Sequence[IncomingReading], grace_s: float | None
) -> CountingSink:
    """grace_s None: a day of backlog, then one flush(None); else the flush loop in real time."""
    sink = CountingSink()
    bridge = Bridge(bridge_config(folder, 1883, grace_s or 0), sink=sink)
    try:
        if grace_s is None:
            await add_in_batches(bridge, readings)
        else:
            # at each window end E + grace, what has arrived (ts ≤ E + grace) is in the
            # spool and the flush loop writes every window ending by E
            window_ms = bridge.window_ms
            grace_ms = round(grace_s * 1000)
            i = 0
            for end in range(DAY_START_MS + window_ms, DAY_START_MS + 86_400_000 + 1, window_ms):
                j = i
                while j < len(readings) and readings[j].ts_ms <= end + grace_ms:
                    j += 1
                await add_in_batches(bridge, readings[i:j])
                i = j
                await bridge.flush(end)
            await add_in_batches(bridge, readings[i:])
        await bridge.flush(None)
    finally:
        await bridge.spool.close()
        await sink.close()
    return sink


async def measure_day(folder: Path) -> list[tuple[str, CountingSink]]:
    readings = day_readings(DAY_METERS)
    found: list[tuple[str, CountingSink]] = []
    for label, grace in (
        (f"real time, grace_s {DEFAULT_GRACE_S} (default)", DEFAULT_GRACE_S),
        ("real time, grace_s 0", 0),
        ("a day of backlog, one flush(None)", None),
    ):
        run_folder = folder / f"day-{len(found)}"
        found.append((label, await day_through_flush(run_folder, readings, grace)))
    return found


def writes_tables(day: list[tuple[str, CountingSink]]) -> Iterator[Table]:
    per_day = 86_400 // WINDOW_S
    threshold = FREE_TIER_WRITES // per_day + 1
    computed = Table(
        f"(b) Sink document writes per day (computed): {per_day} windows a day "
        f"(86,400 / {WINDOW_S} s); free tier {FREE_TIER_WRITES:,} writes a day",
        (
            "meters",
            "legacy, box/meter",
            "legacy, 1 bridge",
            "ours per-meter",
            Col("fits", align="right"),
            "ours per-window",
            Col("fits", align="right"),
        ),
    )
    for meters in (10, threshold - 1, threshold, 100):
        per_meter = per_day * meters
        computed.row(
            meters,
            per_day * meters,
            per_day,
            per_meter,
            per_meter <= FREE_TIER_WRITES,
            per_day,
            per_day <= FREE_TIER_WRITES,
        )
    computed.note(
        f"per-meter exceeds the free tier from {threshold} meters ({per_day} × {threshold} = "
        f"{per_day * threshold:,}); per-window stays at {per_day} for any campus",
        "legacy: one box per meter as deployed, each bridge one batch document per 300 s of "
        "uptime; one legacy bridge for all meters writes 288, but mixes the meters",
    )
    bench.record(
        TIER,
        "sink document writes a day, 100 meters: per-window layout vs legacy (a box per meter)",
        per_day,
        per_day * 100,
        "writes",
        f"computed; free tier {FREE_TIER_WRITES:,} a day",
    )
    yield computed

    measured = Table(
        f"Measured: one UTC day of {DAY_METERS} meters (5 s readings) through Bridge.flush into "
        "a counting sink with FirestoreSink's grouping",
        (
            "how the windows were flushed",
            "merges",
            "deltas",
            "per-meter writes",
            "docs",
            "per-window writes",
            "docs",
            "computed",
        ),
    )
    for label, sink in day:
        measured.row(
            label,
            sink.calls,
            sink.deltas,
            sink.per_meter,
            len(sink.per_meter_ids),
            sink.per_window,
            len(sink.per_window_ids),
            per_day,
        )
    label, sink = day[0]
    bench.record(
        TIER,
        f"per-window writes of a measured day, {DAY_METERS} meters, vs legacy (computed)",
        sink.per_window,
        per_day * DAY_METERS,
        "writes",
        f"Bridge.flush into a counting sink, {label}",
    )
    measured.note(
        "writes = documents written (a rewrite of a window counts again); docs = distinct ids. "
        "With grace_s 0 the reading that straddles each window end arrives after its window was "
        "written, so the window is written twice (idempotent, but billed).",
        f"Backlog: FirestoreSink cuts a flush into transactions of at most {PER_TRANSACTION} "
        "documents, every meter of a window in the same one, so each per-window document is "
        "written once",
    )
    yield measured


# -- (c) CPU per 10,000 readings ------------------------------------------------------------

CPU_READINGS = 10_000
CPU_REPEATS = bench.sized(3, 1)


@dataclass
class Stage:
    cpu_s: float = 0.0
    wall_s: float = 0.0


class Stages:
    def __init__(self) -> None:
        self.stages: dict[str, Stage] = {}

    def add(self, name: str, cpu_s: float, wall_s: float) -> None:
        stage = self.stages.setdefault(name, Stage())
        stage.cpu_s += cpu_s
        stage.wall_s += wall_s

    async def timed(self, name: str, work: Awaitable[Any]) -> Any:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        value = await work
        self.add(name, time.process_time() - cpu0, time.perf_counter() - wall0)
        return value

    def run(self, name: str, work: Callable[..., Any], *args: Any) -> Any:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        value = work(*args)
        self.add(name, time.process_time() - cpu0, time.perf_counter() - wall0)
        return value


async def ours_pipeline(folder: Path, messages: Sequence[Message]) -> Stages:
    """The bridge's work: validate, cut, spool, then the steps of Bridge.flush(None)."""
    stages = Stages()
    bridge = Bridge(bridge_config(folder, 1883))
    now = epoch_ms(time.time())
    try:
        parsed = stages.run(
            "parse_reading",
            lambda: [
                parse_reading(m.topic, m.payload, prefix=PREFIX, now_ms=now) for m in messages
            ],
        )
        readings: list[IncomingReading] = [r for r in parsed if isinstance(r, IncomingReading)]
        batches = [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)]
        items: list[list[Contribution]] = stages.run(
            "contributions",
            lambda: [[c for r in b for c in contributions(r, bridge.window_ms)] for b in batches],
        )
        for batch, batch_items in zip(batches, items, strict=True):
            await stages.timed(
                f"Spool.add (batches of {BATCH})", bridge.spool.add(batch, batch_items)
            )
        while True:  # Bridge.flush(None), step by step
            keys = await stages.timed(
                "spool.due + spool.load", bridge.spool.due(None, bridge.window_ms, BATCH)
            )
            if not keys:
                break
            loaded, meta = await stages.timed("spool.due + spool.load", bridge.spool.load(keys))
            deltas = stages.run("group", group, loaded, bridge.window_s, meta)
            await stages.timed("SqliteSink.merge", bridge.sink.merge(deltas, epoch_ms(time.time())))
            await stages.timed("spool.remove", bridge.spool.remove(loaded))
    finally:
        await bridge.spool.close()
        await bridge.sink.close()
    return stages


def legacy_pipeline(folder: Path, messages: Sequence[Message]) -> Stages:
    stages = Stages()
    conn = legacy_bridge.connect(folder / "legacy.db")
    try:
        buffer: list[dict[str, Any]] = []

        def receive_all() -> None:
            for m in messages:
                buffer.append(json.loads(m.payload))

        stages.run("json.loads + list append", receive_all)
        batches = [buffer[i : i + LEGACY_BATCH] for i in range(0, len(buffer), LEGACY_BATCH)]
        docs = stages.run(
            "average by sample count", lambda: [legacy_bridge.average(b) for b in batches]
        )

        def write_all() -> None:
            for doc in docs:
                legacy_bridge.write(conn, doc)

        stages.run(f"INSERT + commit per document ({len(docs)})", write_all)
    finally:
        conn.close()
    return stages


async def measure_cpu(folder: Path, messages: Sequence[Message]) -> tuple[Stages, Stages]:
    ours_runs, legacy_runs = [], []
    for k in range(CPU_REPEATS):  # interleaved, fresh files each time
        run_folder = folder / f"cpu-{k}"
        run_folder.mkdir()
        legacy_runs.append(legacy_pipeline(run_folder, messages))
        ours_runs.append(await ours_pipeline(run_folder, messages))
    return median_stages(ours_runs), median_stages(legacy_runs)


def median_stages(runs: Sequence[Stages]) -> Stages:
    found = Stages()
    for name in runs[0].stages:
        found.add(
            name,
            statistics.median(r.stages[name].cpu_s for r in runs),
            statistics.median(r.stages[name].wall_s for r in runs),
        )
    return found


def cpu_table(ours: Stages, legacy: Stages, count: int) -> Table:
    scale = 10_000 / count
    table = Table(
        f"(c) CPU of the bridge's own work per 10,000 readings (no MQTT; process CPU incl. the "
        f"SQLite threads; median of {CPU_REPEATS})",
        (
            "design",
            "stage",
            Col("CPU s", ".3f"),
            Col("wall s", ".3f"),
            Col("share", ".0f", "%"),
            Col("× legacy", ".1f", "×"),
        ),
    )
    legacy_total = sum(s.cpu_s for s in legacy.stages.values()) * scale
    for name, stages in (("ours", ours), ("legacy", legacy)):
        total_cpu = sum(s.cpu_s for s in stages.stages.values()) * scale
        total_wall = sum(s.wall_s for s in stages.stages.values()) * scale
        for stage, s in stages.stages.items():
            table.row(
                name,
                stage,
                s.cpu_s * scale,
                s.wall_s * scale,
                s.cpu_s * scale / total_cpu * 100,
                "",
            )
        table.row(name, "total", total_cpu, total_wall, 100, total_cpu / legacy_total)
    ours_total = sum(s.cpu_s for s in ours.stages.values()) * scale
    per_day = METERS * 86_400 // POLL_S
    bench.record(
        TIER,
        "CPU of the bridge's own work per 10,000 readings (no MQTT), vs the legacy bridge",
        ours_total,
        legacy_total,
        "CPU-s",
        "ratio as printed (ours/legacy); ours validates, cuts windows and spools durably",
        ratio="ours/baseline",
    )
    table.note(
        f"ours: {ours_total / 10_000 * 1e6:.0f} µs CPU per reading; {METERS} meters at {POLL_S} s "
        f"({per_day:,} readings a day) ≈ {ours_total * per_day / 10_000:.0f} CPU-s a day",
        "legacy: no validation, no window cutting, nothing durable before the acknowledgement, "
        "one document per batch",
    )
    return table


# -- main ------------------------------------------------------------------------------------


def run(folder: Path) -> Iterator[Table]:
    messages = make_messages(MESSAGES, METERS, past_start_ms(MESSAGES // METERS))
    yield from throughput_tables(asyncio.run(throughput(folder, messages)), messages)
    yield from writes_tables(asyncio.run(measure_day(folder)))
    cpu_messages = messages[:CPU_READINGS]
    ours_cpu, legacy_cpu = asyncio.run(measure_cpu(folder, cpu_messages))
    yield cpu_table(ours_cpu, legacy_cpu, len(cpu_messages))


if __name__ == "__main__":
    harness.main(run, __doc__)
