"""Disk writes: the bytes the logger and the bridge make the kernel write, per reading and second.

An SD card wears by the bytes written to it, and SQLite writes far more than it
stores: every commit appends whole pages to the WAL, a checkpoint copies them
again, and a table clustered by meter touches one page per meter. Measured here
from the outside, as the card would see it: `write_bytes` of /proc/<pid>/io
(bytes the process caused to be sent to the block device, counted per 4 KiB
page dirtied: WAL, checkpoints and database alike) of real `campus-energy
logger` and `campus-energy bridge` processes, polling simulated Eastron meters
every 5 s over Modbus TCP through a Mosquitto of the benchmark's own, all
setups at once for the same stretch of wall-clock time:

- the logger with 20 and with 100 meters, committing every cycle (the default,
  fully durable mode), and with 20 meters in the low-write mode
  (`storage.commit_interval_s = 60`, its bridge `bridge.commit_interval_s = 60`);
- the bridge of each setup (its spool; windows written to a SQLite sink);
- baseline: the legacy logger's way, a connection, an INSERT and a commit per
  reading into `meter_readings` (`baselines/legacy_meter_readings.py`), in a
  child process, per reading (its cost does not depend on the pace);
- the floor of any fully durable design: 20 readings appended to a bare rowid
  table in one fsync'd WAL commit per 5 s cycle.

Each store starts with three hours of history, so that, as after a day of logging,
each meter's newest readings sit on a page of their own. Per reading: bytes
written ÷ readings taken in the measured stretch; "× stored" relates that to
the bytes a reading occupies in the store. Goals (issue 15): ≤ 1 kB/s for 20
meters at 5 s, and ≤ 20× the stored size per reading.

Run: .venv/bin/python benchmarks/disk.py [--quick]  (quick: a 2-minute stretch, else 5)
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import results as bench
from campus_energy.core.readings import Reading
from campus_energy.demo.mosquitto import Mosquitto
from campus_energy.logger.store import MeterRecord, ReadingStore
from measure import free_port
from results import Col, Table

TIER = "disk"
INTERVAL_S = 5.0
WARM_UP_S = 20.0
HISTORY_H = 3.0  # each store starts with this much history: a steady state, one page per meter
STRETCH_S = bench.sized(300.0, 120.0)
LOW_WRITE_S = 60.0
LEGACY_READINGS = bench.sized(2000, 500)
FLOOR_CYCLES = bench.sized(600, 200)
GOAL_BYTES_PER_S = 1000.0
GOAL_TIMES_STORED = 20.0


def write_bytes(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, value = line.split(":")
        if key == "write_bytes":
            return int(value)
    raise RuntimeError(f"/proc/{pid}/io has no write_bytes")


@dataclass
class Setup:
    name: str
    meters: int
    commit_interval_s: float
    folder: Path = Path()
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    start_io: dict[str, int] = field(default_factory=dict)
    end_io: dict[str, int] = field(default_factory=dict)
    t0_ms: int = 0
    t1_ms: int = 0
    sink: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.folder / "store.db"

    def meter_ids(self) -> list[str]:
        return [f"{self.folder.name}-m{unit:03d}" for unit in range(1, self.meters + 1)]

    def config(self, broker_port: int, bus_port: int) -> str:
        from tests.support.config import toml_text  # the repository's root: on sys.path by harness

        meters = [
            {
                "id": meter_id,
                "bus": "plant",
                "unit": unit,
                "profile": "eastron-sdm120",
                "interval_s": INTERVAL_S,
            }
            for unit, meter_id in enumerate(self.meter_ids(), start=1)
        ]
        return toml_text(
            {
                "site": {"timezone": "UTC"},
                "storage": {
                    "path": str(self.store),
                    "commit_interval_s": self.commit_interval_s,
                },
                "mqtt": {"port": broker_port, "topic_prefix": f"disk/{self.folder.name}"},
                "logger": {"id": self.folder.name},
                "bridge": {
                    "client_id": f"disk-{self.folder.name}",
                    "spool_path": str(self.folder / "spool.db"),
                    "commit_interval_s": self.commit_interval_s,
                    **self.sink,
                },
                "buses": [
                    {"name": "plant", "transport": "tcp", "host": "127.0.0.1", "port": bus_port}
                ],
                "meters": meters,
            }
        )


async def prefill(setup: Setup) -> None:
    """HISTORY_H hours of 5 s readings up to now, delivered already (a store in its steady state:
    each meter's newest readings on a page of their own, as after a day of logging)."""
    store = ReadingStore(setup.store)
    ids = setup.meter_ids()
    now_ms = round(time.time() * 1000)
    steps = round(HISTORY_H * 3600 / INTERVAL_S)
    values = {
        "voltage_v": 231.52,
        "current_a": 4.187,
        "power_w": 951.24,
        "power_factor": 0.9513,
        "frequency_hz": 49.987,
        "import_energy_wh": 5_188_123.0,
    }
    energy_uwh = round(951.24 * INTERVAL_S / 3600 * 1e6)
    readings = [
        Reading(
            meter_id,
            now_ms - (steps - k) * round(INTERVAL_S * 1000),
            k + 1,
            energy_uwh,
            energy_uwh * (k + 1),
            values,
        )
        for k in range(steps)
        for meter_id in ids
    ]
    try:
        await store.register(MeterRecord(m) for m in ids)
        await store.insert_history(readings)
    finally:
        await store.close()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "campus_energy", *args]


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def store_size(path: Path) -> int:
    """Bytes the store's pages hold (the file without its free pages)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "freelist_count", "page_size")
        )
    return int((pages - free) * size)


def readings_between(path: Path, t0_ms: int, t1_ms: int) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings WHERE ts_ms >= ? AND ts_ms < ?", (t0_ms, t1_ms)
        ).fetchone()
    return int(row[0])


def total_readings(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])


@contextlib.contextmanager
def sinks(folder: Path, count: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A PostgreSQL schema per setup (the bridge writes nothing locally but its spool, as with
    a cloud sink), or SQLite files when PostgreSQL is not reachable (their writes count)."""
    from tests.support.stores import postgres_schema  # the repository's root: by harness

    with contextlib.ExitStack() as stack:
        try:
            schemas = [stack.enter_context(postgres_schema()) for _ in range(count)]
        except BaseException:  # PostgreSQL unreachable (the helper ends with a test skip)
            files = [
                {"sink": "sqlite", "sqlite": {"path": str(folder / f"windows-{k}.db")}}
                for k in range(count)
            ]
            yield "SQLite files (their writes count in the bridge's)", files
            return
        yield (
            "PostgreSQL (the bridge's own writes are its spool's)",
            [
                {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
                for dsn, schema in schemas
            ],
        )


def measure_services(folder: Path, setups: list[Setup]) -> None:
    broker = Mosquitto(folder / "mosquitto", free_port())
    broker.start()
    try:
        for setup in setups:
            setup.folder = folder / f"s{setups.index(setup)}"
            setup.folder.mkdir()
            config = setup.folder / "config.toml"
            config.write_text(setup.config(broker.port, free_port()))
            asyncio.run(prefill(setup))
            log = setup.folder / "services.log"
            setup.processes["simulator"] = spawn(cli("simulate", "-c", str(config)), log)
            setup.processes["bridge"] = spawn(cli("bridge", "-c", str(config)), log)
            setup.processes["logger"] = spawn(cli("logger", "-c", str(config)), log)
        time.sleep(WARM_UP_S)  # the stretch's start: a moment, not a synchronisation
        for setup in setups:
            for role in ("logger", "bridge"):
                setup.start_io[role] = write_bytes(setup.processes[role].pid)
            setup.t0_ms = round(time.time() * 1000)
        time.sleep(STRETCH_S)  # the measured stretch of wall-clock time
        for setup in setups:
            setup.t1_ms = round(time.time() * 1000)
            for role in ("logger", "bridge"):
                setup.end_io[role] = write_bytes(setup.processes[role].pid)
    finally:
        for setup in setups:
            for role in ("logger", "bridge", "simulator"):
                if role in setup.processes:
                    stop(setup.processes[role])
        broker.stop()


LEGACY_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from baselines import legacy_meter_readings as legacy
path = Path(sys.argv[2]); n = int(sys.argv[3])
def wb():
    for line in open("/proc/self/io"):
        k, v = line.split(":")
        if k == "write_bytes":
            return int(v)
legacy.create(path)
for i in range(20):
    legacy.write(path, (f"m{i:02d}", 231.5, 4.2, 950.1, 1.32, 0.95))
before = wb()
for i in range(n):
    legacy.write(path, (f"m{i % 20:02d}", 231.5, 4.2, 950.1, 1.32, 0.95))
print(wb() - before)
"""


def legacy_bytes_per_reading(folder: Path) -> tuple[float, float]:
    """(bytes written, bytes stored) per reading of the legacy logger's way."""
    path = folder / "legacy.db"
    count = [str(LEGACY_READINGS)]
    out = subprocess.run(
        [sys.executable, "-c", LEGACY_CHILD, str(Path(__file__).parent), str(path), *count],
        capture_output=True,
        text=True,
        check=True,
    )
    written = int(out.stdout.strip()) / LEGACY_READINGS
    stored = path.stat().st_size / (LEGACY_READINGS + 20)
    return written, stored


FLOOR_CHILD = """
import sqlite3, sys
path, cycles = sys.argv[1], int(sys.argv[2])
def wb():
    for line in open("/proc/self/io"):
        k, v = line.split(":")
        if k == "write_bytes":
            return int(v)
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
c.execute("CREATE TABLE r (k INTEGER PRIMARY KEY, meter INT, ts_ms INT, seq INT, v INT, i INT, "
          "p INT, pf INT, f INT, e INT, et INT, ie INT)")
def cycle(k):
    c.execute("BEGIN")
    c.executemany("INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                  [((k * 20 + m), m, k * 5000, k, 231500, 4200, 950100, 950, 50000, 1300000,
                    1300000 * k, 5188000000 + k) for m in range(20)])
    c.execute("COMMIT")
for k in range(200):
    cycle(k)
before = wb()
for k in range(200, 200 + cycles):
    cycle(k)
print(wb() - before)
"""


def floor_bytes_per_cycle(folder: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", FLOOR_CHILD, str(folder / "floor.db"), str(FLOOR_CYCLES)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip()) / FLOOR_CYCLES


def run(folder: Path) -> Iterator[Table]:
    setups = [
        Setup("20 meters, a commit every cycle", 20, 0.0),
        Setup("100 meters, a commit every cycle", 100, 0.0),
        Setup(f"20 meters, low-write ({LOW_WRITE_S:g} s)", 20, LOW_WRITE_S),
    ]
    legacy_written, legacy_stored = legacy_bytes_per_reading(folder)
    floor_cycle = floor_bytes_per_cycle(folder)
    with sinks(folder, len(setups)) as (sink_kind, sink_configs):
        for setup, sink in zip(setups, sink_configs, strict=True):
            setup.sink = sink
        measure_services(folder, setups)

    rows: list[list[bench.Cell]] = []
    stretch_s = STRETCH_S
    for setup in setups:
        readings = readings_between(setup.store, setup.t0_ms, setup.t1_ms)
        stored_per = store_size(setup.store) / max(1, total_readings(setup.store))
        for role in ("logger", "bridge"):
            written = setup.end_io[role] - setup.start_io[role]
            per_reading = written / max(1, readings)
            per_s = written / stretch_s
            rows.append(
                [
                    role,
                    setup.name,
                    readings,
                    per_reading,
                    per_s,
                    per_reading / stored_per if stored_per > 0 else None,
                ]
            )
            if setup.meters == 20:
                bench.record(
                    TIER,
                    f"{role}: bytes written per second, {setup.name}",
                    per_s,
                    legacy_written * setup.meters / INTERVAL_S,
                    "B/s",
                    f"goal ≤ {GOAL_BYTES_PER_S:,.0f} B/s; baseline: the legacy logger's way",
                )
    readings_per_s = 20 / INTERVAL_S
    rows.append(
        [
            "legacy logger",
            "20 meters, a connection and commit per reading",
            LEGACY_READINGS,
            legacy_written,
            legacy_written * readings_per_s,
            legacy_written / legacy_stored,
        ]
    )
    rows.append(
        [
            "floor",
            "20 readings appended per fsync'd WAL commit",
            FLOOR_CYCLES * 20,
            floor_cycle / 20,
            floor_cycle / INTERVAL_S,
            None,
        ]
    )
    yield Table(
        f"Bytes written to the device (/proc/<pid>/io write_bytes) over {stretch_s:g} s, "
        f"meters polled every {INTERVAL_S:g} s",
        [
            Col("process"),
            Col("setup"),
            Col("readings", ",.0f"),
            Col("per reading", ",.0f", "B"),
            Col("per second", ",.0f", "B/s"),
            Col("× stored", ".1f", "×"),
        ],
        rows,
        notes=[
            f"Goals: ≤ {GOAL_BYTES_PER_S:,.0f} B/s for 20 meters at 5 s (logger and bridge "
            f"each), ≤ {GOAL_TIMES_STORED:g}× the bytes a reading occupies in the store. "
            "'× stored' divides the bytes written per reading by the bytes a reading occupies "
            "in the store (its pages over its readings; the legacy row: its file's bytes per "
            "row).",
            "The floor row is what one fsync'd SQLite commit costs however little it holds "
            "(a WAL frame per page it touches, the file's last 4 KiB page dirtied again after "
            "every fsync, the checkpoint's copy): a design that commits every 5 s cycle "
            "cannot go below it; only fewer commits (the low-write mode) can.",
            f"Window sink: {sink_kind}.",
        ],
    )


if __name__ == "__main__":
    harness.main(run, __doc__)
