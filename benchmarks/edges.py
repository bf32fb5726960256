"""The edges: what intake plausibility and signatures, the spool's conflict memory, nginx cost.

Returns three sections of tables, each with its baseline run in this same process:
(a) the bridge's intake CPU per 10,000 readings: `core.incoming.parse_reading` on
    schema-1 payloads of 20 meters (built as `bridge.py`'s `make_messages`
    does), with the configured meters' plausibility limits (`Config.intake_limits()`,
    as the bridge passes them), and with limits plus HMAC signatures (payloads signed
    by `core.signatures.signed`, key read by `signing.read_signing_key`), vs parsing
    without limits and without a key (what the previous release asked of it). For
    reference, the previous release's own `parse_reading`
    (`baselines/previous_intake.py`: `git show 570c459^:src/campus_energy/core/incoming.py`,
    when git has it). Process CPU, median of the repeats, variants interleaved;
(b) the spool's memory of (meter, seq): 20,000 readings of 20 meters recorded
    through `Spool.record` in batches of 500 (as the bridge does; synchronous=FULL,
    so a commit waits for the disk), vs `Spool.add` (the previous release's call: the
    same contributions, no conflict check, nothing remembered), and `Spool.record` on a
    spool that already remembers a day of readings (345,600 rows, as a running bridge's
    does). Then the spool's bytes per reading (file + -wal after a checkpoint), the
    `readings_seen` table's share of the file (SQLite's `dbstat`), and the file with
    vs without that table's rows (both VACUUMed);
(c) the HTTP front: sequential GETs of /api/summary, /api/series?step=5m, a static
    file and /api/health (the watchdog probe's request), each on a fresh connection
    (`http.client`, as `tests/attacks/test_http_front.py` does), straight to
    Gunicorn (`campus-energy api`, 1 worker × 4 threads, cache_s 30 as shipped, over a
    SQLite window store of 10 meters × 24 h) vs through nginx running the shipped
    `deploy/nginx` files (the test's own helpers, free ports). Requests alternate
    between the two and are paced to stay under the site's 20 requests/s limit.
    Then the watchdog probe's CPU: an idle API with systemd's watchdog on (a probe
    every second) vs the same API with no watchdog, over the same idle period.
Ratios are ours/baseline (the defence's cost: 1.00× is free). No assertions.
Timings are noisy on a small machine shared with other work (another test suite
may run beside it): compare the figures within one run.

Run: .venv/bin/python benchmarks/edges.py [--quick]
Quick mode: 3 intake repeats, 10,000 spool readings once, 50 requests per case,
a 20 s idle period.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import harness  # noqa: E402
import results as bench  # noqa: E402
from baselines.previous_intake import PREVIOUS_RELEASE, previous_parse_reading  # noqa: E402
from bridge import METERS, POLL_S, PREFIX, make_messages, past_start_ms  # noqa: E402
from campus_energy.backends.sqlite.sink import SqliteSink  # noqa: E402
from campus_energy.bridge.service import BATCH  # noqa: E402
from campus_energy.bridge.spool import Arrival, Spool  # noqa: E402
from campus_energy.config import Config, parse_config  # noqa: E402
from campus_energy.core.incoming import Limits, Malformed, parse_reading  # noqa: E402
from campus_energy.core.signatures import signed  # noqa: E402
from campus_energy.core.timestamps import epoch_ms  # noqa: E402
from campus_energy.core.windows import (  # noqa: E402
    Contribution,
    IncomingReading,
    WindowDelta,
    contributions,
)
from campus_energy.runtime.signing import read_signing_key  # noqa: E402
from measure import percentile  # noqa: E402
from results import Col, Table  # noqa: E402

TIER = "edges"
WINDOW_S = 300
WINDOW_MS = WINDOW_S * 1000
PROFILES = ("eastron-sdm120", "eastron-sdm630", "eastron-sdm230")  # 20, 150 and 40 kW


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def intake_config() -> Config:
    """The 20 meters of `make_messages`, 5 s polls, on three real profiles."""
    return parse_config(
        {
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {
                    "id": f"m{i:03d}",
                    "bus": "b",
                    "unit": i,
                    "profile": PROFILES[i % len(PROFILES)],
                    "interval_s": POLL_S,
                }
                for i in range(1, METERS + 1)
            ],
        }
    )


# -- (a) the intake ------------------------------------------------------------------------------

INTAKE_READINGS = 10_000
INTAKE_REPEATS = bench.sized(7, 3)

Parse = Callable[[str, bytes], object]


@dataclass
class Variant:
    name: str
    messages: list[tuple[str, bytes]]
    parse: Parse
    cpu_s: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def us_per_reading(self) -> float:
        return median(self.cpu_s) / len(self.messages) * 1e6


def intake_variants(folder: Path, config: Config) -> tuple[list[Variant], dict[str, float]]:
    raw = make_messages(INTAKE_READINGS, METERS, past_start_ms(INTAKE_READINGS // METERS))
    plain = [(m.topic, m.payload) for m in raw]
    key_file = folder / "signing.key"
    key_file.write_text(os.urandom(32).hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    key = read_signing_key(key_file)  # as the logger and the bridge read it
    cpu0 = time.process_time()
    signed_messages = [
        (t, json.dumps(signed(json.loads(p), key), separators=(",", ":")).encode())
        for t, p in plain
    ]
    sign_us = (time.process_time() - cpu0) / len(plain) * 1e6
    known = {m.id for m in config.meters}
    limits = config.intake_limits()
    fallback = Limits()  # the bridge's, with no bridge.max_interval_s
    now = epoch_ms(time.time())
    variants = [
        Variant(
            "baseline: no limits, no key",
            plain,
            lambda t, p: parse_reading(t, p, prefix=PREFIX, now_ms=now, meters=known),
        ),
        Variant(
            "ours: meters' limits",
            plain,
            lambda t, p: parse_reading(
                t, p, prefix=PREFIX, now_ms=now, meters=known, limits=limits, fallback=fallback
            ),
        ),
        Variant(
            "ours: limits + signature",
            signed_messages,
            lambda t, p: parse_reading(
                t,
                p,
                prefix=PREFIX,
                now_ms=now,
                meters=known,
                limits=limits,
                fallback=fallback,
                key=key,
            ),
        ),
    ]
    previous = previous_parse_reading(REPO)
    if previous is not None:
        variants.append(
            Variant(
                f"previous release's code ({PREVIOUS_RELEASE})",
                plain,
                lambda t, p: previous(t, p, prefix=PREFIX, now_ms=now, meters=known),
            )
        )
    sizes = {
        "unsigned": statistics.fmean(len(p) for _, p in plain),
        "signed": statistics.fmean(len(p) for _, p in signed_messages),
        "sign_us": sign_us,
    }
    return variants, sizes


def measure_intake(variants: Sequence[Variant]) -> None:
    for k in range(INTAKE_REPEATS):
        order = list(variants[k % len(variants) :]) + list(variants[: k % len(variants)])
        for v in order:  # interleaved, each starting first in turn
            parse = v.parse
            cpu0 = time.process_time()
            found = [parse(t, p) for t, p in v.messages]
            v.cpu_s.append(time.process_time() - cpu0)
            if k == 0:
                v.refused = Counter(r.kind for r in found if isinstance(r, Malformed))


def intake_table(variants: Sequence[Variant], sizes: dict[str, float]) -> Table:
    table = Table(
        f"(a) The bridge's intake: parse_reading CPU on {INTAKE_READINGS:,} schema-1 readings of "
        f"{METERS} meters (process CPU, median of {INTAKE_REPEATS}, interleaved)",
        (
            "variant",
            Col("µs/reading", ".1f"),
            Col("s/10,000", ".3f"),
            Col("× baseline", ".2f", "×"),
            Col("× previous", ".2f", "×"),
            "refused",
        ),
    )
    previous = variants[3].us_per_reading if len(variants) > 3 else None
    base = variants[0].us_per_reading
    for v in variants:
        table.row(
            v.name,
            v.us_per_reading,
            v.us_per_reading / 100,
            v.us_per_reading / base,
            None if previous is None else v.us_per_reading / previous,
            sum(v.refused.values()),
        )
    per_day = METERS * 86_400 // POLL_S
    ours = variants[2].us_per_reading
    table.note(
        f"payload: {sizes['unsigned']:.0f} bytes unsigned, {sizes['signed']:.0f} signed "
        f"(+{sizes['signed'] - sizes['unsigned']:.0f}: the 'sig'); signing one on the logger's "
        f"side (json.loads + signed + json.dumps here): {sizes['sign_us']:.1f} µs CPU",
        f"limits + signature at {METERS} meters every {POLL_S} s ({per_day:,} readings a day): "
        f"{ours * per_day / 1e6:.1f} CPU-s a day, {(ours - base) * per_day / 1e6:.1f} more than "
        "the baseline",
    )
    bench.record(
        TIER,
        "Intake CPU per reading: the meters' plausibility limits vs none",
        variants[1].us_per_reading,
        base,
        "µs",
        "parse_reading, 10,000 schema-1 readings of 20 meters; ratio as printed",
        ratio="ours/baseline",
    )
    bench.record(
        TIER,
        "Intake CPU per reading: limits + HMAC signature vs no limits, no key",
        ours,
        base,
        "µs",
        "signed payloads (+sig), key from signing.read_signing_key; ratio as printed",
        ratio="ours/baseline",
    )
    if previous is not None:
        bench.record(
            TIER,
            "Intake CPU per reading: today's code without limits vs the previous release's",
            base,
            previous,
            "µs",
            f"previous: parse_reading of {PREVIOUS_RELEASE} (from git); ratio as printed",
            ratio="ours/baseline",
        )
    return table


# -- (b) the spool's memory of (meter, seq) ------------------------------------------------------

SPOOL_READINGS = bench.sized(20_000, 10_000)
SPOOL_REPEATS = bench.sized(3, 1)
DAY_PER_METER = 86_400 // POLL_S
DAY_SEEN = METERS * DAY_PER_METER  # what a running bridge remembers (SEEN_FOR_S, a day)
SEEN_OBJECTS = ("readings_seen", "readings_seen_by_time")


@dataclass
class SpoolRun:
    name: str
    batch_s: list[float] = field(default_factory=list)  # wall, each batch
    batch_cpu_s: list[float] = field(default_factory=list)
    totals_s: list[float] = field(default_factory=list)  # wall, each run
    added: int = 0
    duplicates: int = 0
    conflicts: int = 0


@dataclass
class SpoolBytes:
    recorded: int = 0  # file + -wal after a checkpoint, as left by the spool
    tables: dict[str, int] = field(default_factory=dict)  # dbstat: pages of each table/index
    seen_rows: int = 0
    vacuumed: int = 0
    without_seen: int = 0  # readings_seen emptied, then VACUUM


def filesystem(path: Path) -> str:
    """The type of the file system holding `path` (ext4, tmpfs, ...)."""
    best = max(
        (p for p in psutil.disk_partitions(all=True) if path.is_relative_to(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
        default=None,
    )
    return best.fstype if best is not None else "?"


def spool_arrivals(seq_offset: int = 0) -> list[Arrival]:
    """SPOOL_READINGS readings as the bridge admits them, with their window contributions."""
    config = intake_config()
    known, limits = {m.id for m in config.meters}, config.intake_limits()
    now = epoch_ms(time.time())
    found = []
    for m in make_messages(SPOOL_READINGS, METERS, past_start_ms(SPOOL_READINGS // METERS)):
        r = parse_reading(
            m.topic, m.payload, prefix=PREFIX, now_ms=now, meters=known, limits=limits
        )
        assert isinstance(r, IncomingReading), r
        if seq_offset:
            r = replace(r, seq=r.seq + seq_offset)
        found.append(Arrival(r, contributions(r, WINDOW_MS), m.topic, m.payload))
    return found


def remember_a_day(path: Path, arrivals: Sequence[Arrival]) -> None:
    """readings_seen as a running bridge leaves it: a day of every meter's (meter, seq)."""
    now = epoch_ms(time.time())
    rng = random.Random(11)
    meters = sorted({a.reading.meter_id for a in arrivals})

    def row(meter: str, seq: int) -> tuple[str, int, bytes, int, int, int]:
        received = now - (DAY_PER_METER - seq) * POLL_S * 1000
        window = received - received % WINDOW_MS
        return meter, seq, rng.randbytes(16), window, window, received

    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO readings_seen VALUES (?, ?, ?, ?, ?, ?)",
                (row(m, seq) for m in meters for seq in range(1, DAY_PER_METER + 1)),
            )
    finally:
        conn.close()


async def spool_run(path: Path, arrivals: Sequence[Arrival], how: str, run: SpoolRun) -> None:
    spool = Spool(path)
    try:
        await spool.pending()  # opened: schema, quick_check (not timed)
        batches = [arrivals[i : i + BATCH] for i in range(0, len(arrivals), BATCH)]
        started = time.perf_counter()
        for batch in batches:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if how == "add":  # the previous release's call: contributions as they are
                run.added += await spool.add(
                    [a.reading for a in batch], [c for a in batch for c in a.items]
                )
            else:
                recorded = await spool.record(batch, [], epoch_ms(time.time()))
                run.added += recorded.added
                run.duplicates += recorded.duplicates
                run.conflicts += len(recorded.conflicts)
            run.batch_s.append(time.perf_counter() - wall0)
            run.batch_cpu_s.append(time.process_time() - cpu0)
        run.totals_s.append(time.perf_counter() - started)
    finally:
        await spool.close()


def file_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def spool_bytes(path: Path) -> SpoolBytes:
    found = SpoolBytes()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found.recorded = file_bytes(path)
        found.tables = {
            name: int(size)
            for name, size in conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            )
        }
        found.seen_rows = conn.execute("SELECT count(*) FROM readings_seen").fetchone()[0]
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found.vacuumed = file_bytes(path)
        conn.execute("DELETE FROM readings_seen")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found.without_seen = file_bytes(path)
    finally:
        conn.close()
    return found


async def measure_spool(folder: Path) -> tuple[dict[str, SpoolRun], dict[str, SpoolBytes]]:
    arrivals = spool_arrivals()
    later = spool_arrivals(seq_offset=DAY_PER_METER)  # the readings after the day remembered
    runs = {
        "add": SpoolRun(f"baseline: Spool.add (batches of {BATCH})"),
        "record": SpoolRun(f"ours: Spool.record (batches of {BATCH})"),
        "day": SpoolRun(f"ours: Spool.record, {DAY_SEEN:,} remembered"),
    }
    sizes: dict[str, SpoolBytes] = {}
    for k in range(SPOOL_REPEATS):
        names = list(runs)
        for name in names[k % 3 :] + names[: k % 3]:  # fresh files; each goes first in turn
            path = folder / f"spool-{name}-{k}.db"
            if name == "day":
                seed = Spool(path)
                await seed.pending()  # the schema
                await seed.close()
                remember_a_day(path, later)
            how = "add" if name == "add" else "record"
            await spool_run(path, later if name == "day" else arrivals, how, runs[name])
            if k == 0:
                sizes[name] = spool_bytes(path)
            path.unlink()
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    return runs, sizes


def seen_bytes(b: SpoolBytes) -> int:
    return sum(b.tables.get(name, 0) for name in SEEN_OBJECTS)


def spool_tables(
    runs: dict[str, SpoolRun], sizes: dict[str, SpoolBytes], folder: Path
) -> Iterator[Table]:
    n = SPOOL_READINGS
    timing = Table(
        f"(b) The spool's memory of (meter, seq): {n:,} readings of {METERS} meters in batches of "
        f"{BATCH} (synchronous=FULL on {filesystem(folder)}; {SPOOL_REPEATS} run(s) each, "
        "interleaved, fresh files)",
        (
            "how",
            Col("ms/batch p50", ".1f"),
            Col("p95", ".1f"),
            Col("max", ".1f"),
            Col("CPU ms/batch", ".1f"),
            Col("s/run", ".2f"),
            Col("× add", ".2f", "×"),
        ),
    )
    base = median(runs["add"].batch_s)
    for run in runs.values():
        p50 = median(run.batch_s)
        timing.row(
            run.name,
            p50 * 1e3,
            percentile(run.batch_s, 95) * 1e3,
            max(run.batch_s) * 1e3,
            median(run.batch_cpu_s) * 1e3,
            median(run.totals_s),
            p50 / base,
        )
    per_run = {name: run.added // SPOOL_REPEATS for name, run in runs.items()}
    timing.note(
        f"contributions added per run: {', '.join(f'{k} {v:,}' for k, v in per_run.items())}; "
        f"duplicates {runs['record'].duplicates + runs['day'].duplicates}, conflicts "
        f"{runs['record'].conflicts + runs['day'].conflicts} (both should be 0)"
    )
    yield timing

    rec, add, day = sizes["record"], sizes["add"], sizes["day"]
    seen = seen_bytes(rec)
    size = Table(
        f"Spool bytes after {n:,} readings (file + -wal after a checkpoint; nothing flushed yet)",
        ("spool", "bytes", Col("B/reading", ".1f"), Col("× without", ".2f", "×")),
    )
    for label, value in (
        ("ours: Spool.record, as left", rec.recorded),
        ("ours: Spool.record, VACUUMed", rec.vacuumed),
        ("ours: Spool.record, readings_seen emptied, VACUUMed", rec.without_seen),
        ("baseline: Spool.add, as left (readings_seen empty)", add.recorded),
    ):
        size.row(label, value, value / n, value / rec.without_seen)
    yield size

    total = sum(rec.tables.values())
    pages = Table(
        "dbstat of ours (pages by table and index, before the VACUUM)",
        ("table or index", Col("bytes", ",d"), Col("share", ".1f", "%")),
    )
    for name, size_bytes in rec.tables.items():
        pages.row(name, size_bytes, size_bytes / total * 100)
    day_seen = seen_bytes(day)
    per_row = day_seen / max(1, day.seen_rows)
    pages.note(
        f"readings_seen (table + index): {seen:,} bytes for {rec.seen_rows:,} rows, "
        f"{seen / max(1, rec.seen_rows):.1f} bytes a reading, {seen / total * 100:.1f}% of the "
        "file",
        f"a day remembered ({day.seen_rows:,} rows: {DAY_SEEN:,} + the {n:,} recorded): "
        f"readings_seen {day_seen / 1e6:.1f} MB, {per_row:.1f} bytes a reading; the spool "
        f"{day.recorded / 1e6:.1f} MB. README says about 85 bytes a reading (17 MB for 12 meters "
        "at 5 s)",
        "In a running bridge the contributions leave the spool once their window is written "
        "(minutes), while readings_seen keeps a day: in steady state it is most of the file.",
    )
    yield pages
    bench.record(
        TIER,
        f"Spool: wall time per batch of {BATCH}, Spool.record (conflict memory) vs Spool.add",
        median(runs["record"].batch_s) * 1e3,
        base * 1e3,
        "ms",
        f"{n:,} readings of {METERS} meters, synchronous=FULL, fresh spool; ratio as printed",
        ratio="ours/baseline",
    )
    bench.record(
        TIER,
        f"Spool: wall time per batch of {BATCH} with a day ({DAY_SEEN:,}) already remembered",
        median(runs["day"].batch_s) * 1e3,
        base * 1e3,
        "ms",
        "vs Spool.add on a fresh spool; ratio as printed",
        ratio="ours/baseline",
    )
    bench.record(
        TIER,
        "Spool bytes per reading: with readings_seen vs its rows deleted (both VACUUMed)",
        rec.vacuumed / n,
        rec.without_seen / n,
        "B",
        f"{n:,} readings, nothing flushed; readings_seen is {seen / total * 100:.0f}% of the "
        "file (dbstat); ratio as printed",
        ratio="ours/baseline",
    )
    bench.record(
        TIER,
        "readings_seen bytes per remembered reading (a day of 20 meters at 5 s)",
        per_row,
        None,
        "B",
        f"dbstat, table + index; {day_seen / 1e6:.1f} MB for the day; README says about 85",
    )


# -- (c) the HTTP front --------------------------------------------------------------------------

REQUESTS = bench.sized(200, 50)
WARMUP = 5
PACE_S = 0.03  # between request starts: nginx sees < 17 API requests/s (its limit: 20/s)
IDLE_S = bench.sized(60.0, 20.0)
STORE_METERS = 10
ZONE = ZoneInfo("Asia/Kolkata")  # as the test's API configuration
PATHS = {
    "summary": "/api/summary",
    "series 5m": "/api/series?step=5m",
    "static": "/static/app.js",
    "health": "/api/health",
}
FRONTS = ("straight", "nginx")
SHIPPED_PROBE_EVERY_S = 15  # WatchdogSec=30 in deploy/systemd/campus-energy-api.service


@dataclass
class Case:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


@dataclass
class Front:
    cases: dict[tuple[str, str], Case] = field(default_factory=dict)
    skipped: str = ""
    windows: int = 0
    probe: dict[str, float] = field(default_factory=dict)
    probe_skipped: str = ""


def write_store(path: Path) -> int:
    """STORE_METERS meters' 300 s windows over the last 24 h, through the real SQLite sink."""
    now = epoch_ms(time.time())
    last = now - now % WINDOW_MS - WINDOW_MS
    rng = random.Random(5)
    deltas = []
    for k in range(STORE_METERS):
        meter = f"m{k + 1:03d}"
        base = 500.0 + 3000.0 * rng.random()
        for start in range(last - 86_400_000 + WINDOW_MS, last + 1, WINDOW_MS):
            power = base * (0.7 + 0.6 * rng.random())
            energy = power * WINDOW_S / 3600
            item = Contribution(meter, start, 1, energy, WINDOW_S, True, power, 230.0)
            deltas.append(WindowDelta(meter, start, WINDOW_S, (item,), f"B{k % 3}", str(k % 2)))

    async def go() -> None:
        sink = SqliteSink(path, ZONE)
        try:
            await sink.merge(deltas, now)
        finally:
            await sink.close()

    asyncio.run(go())
    return len(deltas)


def on_cpu_s(process: psutil.Process) -> float:
    """The time a process's threads have run: /proc's schedstat (ns), else psutil's ticks."""
    tasks = Path(f"/proc/{process.pid}/task")
    if not Path("/proc/self/schedstat").exists():  # not Linux
        times = process.cpu_times()
        return float(times.user + times.system)
    total = 0
    for task in tasks.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e9


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (Gunicorn's arbiter and its workers)."""
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += on_cpu_s(p)
        except psutil.NoSuchProcess:
            continue
    return total


def measure_front(folder: Path) -> Front:
    result = Front()
    nginx_path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx_path is None or not Path("/etc/nginx/mime.types").is_file():
        result.skipped = "nginx (with /etc/nginx/mime.types) is not installed"
        return result
    from tests.attacks import test_http_front as front  # pytest is a dev dependency

    store = folder / "windows.db"
    result.windows = write_store(store)
    (folder / "api").mkdir()
    api = front.start_api(folder / "api", store)
    nginx = None
    try:
        front.until_answering(api)
        conf, port = front.front_for(folder / "nginx", api.port)
        nginx = front.run_nginx(folder / "nginx", conf, port)
        ports = {"straight": api.port, "nginx": nginx.port}
        for name in PATHS:
            for where in FRONTS:
                result.cases[name, where] = Case()
        last_start = 0.0

        def one(where: str, path: str) -> tuple[int | None, float]:
            nonlocal last_start
            wait = last_start + PACE_S - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            last_start = started = time.perf_counter()
            try:
                status: int | None = front.get(ports[where], path, timeout=30).status
            except (OSError, http.client.HTTPException):
                status = None
            return status, (time.perf_counter() - started) * 1000

        for _ in range(WARMUP):
            for path in PATHS.values():
                for where in FRONTS:
                    one(where, path)
        for i in range(REQUESTS):
            for name, path in PATHS.items():
                for where in FRONTS if i % 2 == 0 else FRONTS[::-1]:
                    status, ms = one(where, path)
                    case = result.cases[name, where]
                    if status is None:
                        case.errors += 1
                        continue
                    case.statuses[status] += 1
                    case.latencies_ms.append(ms)
        result.probe, result.probe_skipped = measure_probe(folder, store, api, front)
    except AssertionError as exc:  # the test helpers' way of saying a server did not start
        result.skipped = f"{exc}"[:400]
        if nginx is None and (folder / "nginx" / "stderr.log").exists():
            result.skipped += " — " + (folder / "nginx" / "stderr.log").read_text()[-400:]
    finally:
        if nginx is not None:
            front.stop_nginx(nginx)
        api.stop()
    return result


def measure_probe(
    folder: Path, store: Path, plain: Any, front: Any
) -> tuple[dict[str, float], str]:
    """Idle CPU of an API whose arbiter probes /api/health every second vs `plain`'s (none)."""
    manager = front.NotifySocket()
    (folder / "watched").mkdir()
    watched = front.start_api(folder / "watched", store, manager.environ())
    try:
        manager.until({"READY": "1"}, 60)
        front.until_answering(watched)
        manager.until({"WATCHDOG": "1"}, 10)
        time.sleep(1.0)  # past start-up's own work
        pings = 0
        cpu0 = {"watched": tree_cpu_s(watched.process.pid), "plain": tree_cpu_s(plain.process.pid)}
        started = time.monotonic()
        while (left := started + IDLE_S - time.monotonic()) > 0:
            message = manager.next(left)  # drained, so the arbiter's datagrams never back up
            if message is not None and message.get("WATCHDOG") == "1":
                pings += 1
        idle = time.monotonic() - started
        cpu = {
            "watched": tree_cpu_s(watched.process.pid) - cpu0["watched"],
            "plain": tree_cpu_s(plain.process.pid) - cpu0["plain"],
        }
    except AssertionError as exc:
        return {}, str(exc)[:400]
    finally:
        watched.stop()
        manager.close()
    every_s = front.WATCHDOG_S / 2
    return {
        "idle_s": idle,
        "pings": pings,
        "probes": idle / every_s,
        "every_s": every_s,
        "watched_cpu_s": cpu["watched"],
        "plain_cpu_s": cpu["plain"],
    }, ""


def front_tables(result: Front) -> Iterator[Table]:
    title = (
        f"(c) The HTTP front: {REQUESTS} sequential GETs per case, a fresh connection each, "
        f"straight to Gunicorn (1 worker × 4 threads, cache_s 30) vs through nginx with the "
        f"shipped deploy/nginx files; the two alternate, a request every {PACE_S * 1000:.0f} ms "
        "at most"
    )
    if result.skipped:
        yield Table(title, notes=[f"skipped: {result.skipped}"])
        return
    latency = Table(
        title,
        (
            "request",
            "front",
            Col("p50 ms", ".2f"),
            Col("p95 ms", ".2f"),
            Col("max ms", ".2f"),
            "statuses",
            Col("× straight p50", ".2f", "×"),
            Col("p95", ".2f", "×"),
        ),
    )
    for name, path in PATHS.items():
        straight = result.cases[name, "straight"]
        for where in FRONTS:
            case = result.cases[name, where]
            statuses = ", ".join(f"{s}×{n}" for s, n in sorted(case.statuses.items()))
            if case.errors:
                statuses += f", errors×{case.errors}"
            nginx = where != "straight"
            latency.row(
                path,
                where,
                case.p(50),
                case.p(95),
                max(case.latencies_ms, default=float("nan")),
                statuses,
                case.p(50) / straight.p(50) if nginx else "",
                case.p(95) / straight.p(95) if nginx else "",
            )
        through = result.cases[name, "nginx"]
        bench.record(
            TIER,
            f"GET {path}: median latency through nginx vs straight to Gunicorn",
            through.p(50),
            straight.p(50),
            "ms",
            f"p95 {through.p(95):.2f} vs {straight.p(95):.2f} ms; {REQUESTS} sequential, fresh "
            "connections; ratio as printed",
            ratio="ours/baseline",
        )
    latency.note(
        f"store: {result.windows:,} windows ({STORE_METERS} meters × 24 h of 300 s)",
        "through nginx, /static/ is served from disk by nginx (Gunicorn never sees it); "
        "/api/summary and /api/series come from the API's response cache for up to 30 s",
    )
    yield latency

    if result.probe_skipped or not result.probe:
        skipped = result.probe_skipped or "not measured"
        yield Table("The watchdog's probe", notes=[f"skipped: {skipped}"])
        return
    p = result.probe
    extra = p["watched_cpu_s"] - p["plain_cpu_s"]
    per_probe_ms = extra / p["probes"] * 1000
    per_day = 86_400 / SHIPPED_PROBE_EVERY_S
    probe = Table(
        f"The watchdog's probe: both APIs idle for {p['idle_s']:.0f} s side by side "
        "(time on CPU of arbiter + worker, from /proc/<pid>/task/*/schedstat)",
        ("API", Col("CPU s", ".3f"), Col("probes", ".0f"), Col("pings", ".0f")),
    )
    probe.row(
        "watchdog on (WatchdogSec=2: a probe every 1 s)",
        p["watched_cpu_s"],
        p["probes"],
        p["pings"],
    )
    probe.row("no watchdog", p["plain_cpu_s"], 0, 0)
    probe.note(
        f"≈ {per_probe_ms:.2f} ms CPU a probe (the difference over the probes); at the shipped "
        f"WatchdogSec=30 (a probe every {SHIPPED_PROBE_EVERY_S} s, {per_day:,.0f} a day): "
        f"{per_probe_ms * per_day / 1000:.1f} CPU-s a day"
    )
    bench.record(
        TIER,
        "Idle API CPU with the watchdog's health probe (every 1 s) vs no watchdog",
        p["watched_cpu_s"],
        p["plain_cpu_s"],
        "CPU-s",
        f"over {p['idle_s']:.0f} s idle, side by side; ≈ {per_probe_ms:.2f} ms a probe; "
        "ratio as printed",
        ratio="ours/baseline",
    )
    yield probe


# -- main ----------------------------------------------------------------------------------------


def run(folder: Path) -> Iterator[Table]:
    variants, sizes = intake_variants(folder, intake_config())
    measure_intake(variants)
    yield intake_table(variants, sizes)
    runs, spool_sizes = asyncio.run(measure_spool(folder))
    yield from spool_tables(runs, spool_sizes, folder)
    yield from front_tables(measure_front(folder))


if __name__ == "__main__":
    harness.main(run, __doc__)
