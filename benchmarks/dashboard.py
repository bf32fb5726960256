"""The local dashboard: its queries on a month of 5-second readings vs the unbucketed ways.

Builds a store of 30 days of 5 s readings of 20 meters (10,368,000 readings) in a
temporary folder with the store's own bulk insert (`ReadingStore.insert_many`,
or rows written straight into `samples` when an estimate on 200,000 readings
says that would take too long), then times each query the local dashboard
(`dashboard/app.py`) runs, as app.py calls it, against the same answer got:
- by a scan in SQL: `sum(energy)` / `GROUP BY` over every row in the range
  (`baselines/sql_scan.py`), and
- the legacy dashboard's way: `pd.read_sql` of the raw rows, then sum / resample
  (`baselines/pandas_dashboard.py`).
Returns tables of (a) the build, (b) the Overview's KPIs (`queries.spans` from local
midnight / Monday / the 1st to now), (c) the History tab's energy per day and
per hour (one `queries.spans` over the range's local hour marks; the days summed
from those hours by `history.span_table` and `daily_energy`), (d) the Day
detail tab's mean power per meter and minute of a day (`queries.mean_power`:
energy ÷ covered time; against pandas only), (e) the other tabs' queries (no
baseline), (f) resident memory of a month's charts, ours vs the raw month in
pandas.
Times: median of up to 5 runs after one warm-up (at least 2; fewer than 5 when
runs are slow, and a warm-up of ≥ 5 s counts as a run; n = runs), all in this
process against one read-only connection (`queries.connect`) to the file in
the OS page cache. Ratios are baseline / ours; Δ compares each baseline's
answer with ours. No assertions.

Run: .venv/bin/python benchmarks/dashboard.py [--quick]
Quick mode: 4 days, a 50,000-reading estimate, up to 3 runs per query.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

import harness
import results as bench
from baselines import pandas_dashboard, sql_scan
from baselines.pandas_dashboard import LEGACY_COLUMNS
from campus_energy.core.readings import Reading
from campus_energy.core.resolution import STEPS_PER_UNIT
from campus_energy.dashboard import history as h
from campus_energy.dashboard import store_queries as q
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.meters.simulator.load import unit_random
from measure import rss_mib
from results import Col, Table

TIER = "dashboard"
ZONE = ZoneInfo("Asia/Kolkata")  # no DST: every local day is 86,400,000 ms
FIRST_DAY = date(2026, 2, 28)  # the month ends on Sunday 29 March: a full week, a month to date
DAYS = bench.sized(30, 4)
METERS = 20
POLL_MS = 5_000
PER_DAY = 86_400_000 // POLL_MS  # 17,280 readings per meter and day
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MINUTE_MS = 60_000  # app.py's Day detail bucket
ESTIMATE_READINGS = bench.sized(200_000, 50_000)
BUILD_TARGET_S = 180.0  # insert_many when its estimate fits, else rows straight into samples
CHUNK_CYCLES = 4_320  # 6 h of cycles: 86,400 readings per insert_many call (one transaction)
MIN_FREE_BYTES = 6 * 2**30
RUNS = bench.sized(5, 3)
RUN_BUDGET_S = bench.sized(20.0, 5.0)  # after 2 runs, stop repeating once the runs add up to this
SLOW_S = 5.0  # a warm-up this slow counts as the first run (the file is in the page cache)
SAMPLE_S = 0.005  # RSS sampling period
# the columns of `samples` in the order MeterSeries.next() gives them
SAMPLE_COLUMNS = (
    "ts_ms",
    "seq",
    "voltage",
    "current",
    "power",
    "pf",
    "freq",
    "import_energy",
    "energy",
    "energy_total",
)
FIELDS = {  # samples column -> Reading field
    "voltage": "voltage_v",
    "current": "current_a",
    "power": "power_w",
    "pf": "power_factor",
    "freq": "frequency_hz",
    "import_energy": "import_energy_wh",
}
INSERT = (
    f"INSERT INTO samples (meter, {', '.join(SAMPLE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in range(len(SAMPLE_COLUMNS) + 1))})"
)


def midnight_ms(day: date) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp() * 1000)


# -- (a) the month -------------------------------------------------------------------------


def ramp(x: np.ndarray, start: float, end: float) -> np.ndarray:
    return np.clip((x - start) / (end - start), 0.0, 1.0)


class MeterSeries:
    """One meter's readings, chunk after chunk, as the logger would have stored them.

    Power follows `simulator.load.occupancy` (vectorised: working hours, a lunch
    dip, quiet weekends in the site's local time) plus HVAC cycling and noise;
    every stored value is an integer at `core.resolution`; energy is the
    trapezoid of the stored power over the measured interval, rounded to µWh as
    `core.energy.trapezoid_uwh` does, and energy_total its running sum.
    """

    def __init__(self, index: int, start_ms: int) -> None:
        self.index = index
        self.rng = np.random.default_rng(1000 + index)
        self.base = 300 + 1200 * unit_random(index, 21)
        self.peak = self.base * (3 + 3 * unit_random(index, 22))
        self.hvac_period_s = 600 + 600 * unit_random(index, 1)
        self.start_ms = start_ms
        self.offset_s = datetime.fromtimestamp(start_ms / 1000, ZONE).utcoffset().total_seconds()
        self.k = 0  # readings made so far
        self.last_ts = 0
        self.last_w = 0.0  # stored power of the last reading, W
        self.total = 10**9 * (1 + 7 * index)  # µWh: the meter has been logged before
        self.import_wh = 1e6 * (1 + unit_random(index, 23))

    def next(self, n: int) -> dict[str, np.ndarray]:
        rng, span = self.rng, self.peak - self.base
        k = np.arange(self.k, self.k + n, dtype=np.int64)
        ts = self.start_ms + k * POLL_MS + 3 * self.index + rng.integers(5, 60, n)
        local_s = ts / 1000 + self.offset_s
        hour = (local_s % 86_400) / 3_600
        weekday = ((local_s // 86_400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        day = ramp(hour, 7.5, 8.5) * (1 - ramp(hour, 17.5, 18.5))
        lunch = 1 - 0.2 * ramp(hour, 12.25, 12.5) * (1 - ramp(hour, 13.25, 13.5))
        evening = 0.15 * ramp(hour, 17.5, 18.5) * (1 - ramp(hour, 21.5, 22.5))
        occupancy = (day * lunch + evening) * np.where(weekday < 5, 1.0, 0.25)
        hvac_on = (ts / 1000 % self.hvac_period_s) < 0.5 * self.hvac_period_s
        level = self.base + 0.6 * span * occupancy + 0.25 * span * (0.4 + 0.6 * occupancy) * hvac_on
        power = np.maximum(level * (1 + rng.uniform(-0.03, 0.03, n)), 0.0)
        volts = 230.0 + rng.uniform(-3, 3, n)
        pf = np.minimum(0.99, 0.82 + 0.15 * power / self.peak + 0.01 * rng.random(n))
        steps = STEPS_PER_UNIT
        power_steps = np.rint(power * steps["power_w"]).astype(np.int64)
        stored_w = power_steps / steps["power_w"]
        previous_w = np.concatenate(([self.last_w], stored_w[:-1]))
        previous_ts = np.concatenate(([self.last_ts], ts[:-1]))
        interval_s = (ts - previous_ts) / 1000
        energy = np.rint((previous_w + stored_w) / 2 * interval_s / 3600 * 1_000_000)
        energy = energy.astype(np.int64)
        if self.k == 0:
            energy[0] = 0  # the first reading integrates nothing
        total = self.total + np.cumsum(energy)
        imported = self.import_wh + np.cumsum(energy) / 1_000_000
        self.k += n
        self.last_ts, self.last_w = int(ts[-1]), float(stored_w[-1])
        self.total, self.import_wh = int(total[-1]), float(imported[-1])
        return {
            "ts_ms": ts,
            "seq": k + 1,
            "voltage": np.rint(volts * steps["voltage_v"]).astype(np.int64),
            "current": np.rint(power / (volts * pf) * steps["current_a"]).astype(np.int64),
            "power": power_steps,
            "pf": np.rint(pf * steps["power_factor"]).astype(np.int64),
            "freq": np.rint((50 + rng.uniform(-0.03, 0.03, n)) * steps["frequency_hz"]).astype(
                np.int64
            ),
            "import_energy": np.rint(imported * steps["import_energy_wh"]).astype(np.int64),
            "energy": energy,
            "energy_total": total,
        }


METER_RECORDS = [
    MeterRecord(f"meter-{i:02d}", f"block-{chr(65 + i // 5)}", str(i % 5), "eastron-sdm120")
    for i in range(METERS)
]


def cycles(start_ms: int, total_cycles: int) -> Iterator[list[dict[str, list[int]]]]:
    """Chunks of CHUNK_CYCLES poll cycles: per meter, its columns as Python lists."""
    series = [MeterSeries(i, start_ms) for i in range(METERS)]
    done = 0
    while done < total_cycles:
        n = min(CHUNK_CYCLES, total_cycles - done)
        yield [{c: v.tolist() for c, v in s.next(n).items()} for s in series]
        done += n


def readings_of(chunk: list[dict[str, list[int]]]) -> list[Reading]:
    """The chunk as the logger's Readings, in the logger's order: cycle by cycle."""
    found = []
    names = [m.meter_id for m in METER_RECORDS]
    scales = {column: STEPS_PER_UNIT[name] for column, name in FIELDS.items()}
    for j in range(len(chunk[0]["ts_ms"])):
        for meter_id, cols in zip(names, chunk, strict=True):
            found.append(
                Reading(
                    meter_id,
                    cols["ts_ms"][j],
                    cols["seq"][j],
                    cols["energy"][j],
                    cols["energy_total"][j],
                    {name: cols[column][j] / scales[column] for column, name in FIELDS.items()},
                )
            )
    return found


def rows_of(chunk: list[dict[str, list[int]]], keys: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """The chunk as rows of `samples`, cycle by cycle."""
    columns = [list(zip(*(cols[c] for c in SAMPLE_COLUMNS), strict=True)) for cols in chunk]
    for j in range(len(columns[0])):
        for key, rows in zip(keys, columns, strict=True):
            yield (key, *rows[j])


@dataclass
class Build:
    path: Path
    days: int
    readings: int = 0
    estimate_rate: float = 0.0  # readings/s of insert_many, making the Readings included
    way: str = ""
    seconds: float = 0.0
    size: int = 0
    free_gib: float = 0.0
    note: str = ""


async def estimate(folder: Path, start_ms: int) -> float:
    store = ReadingStore(folder / "estimate.db")
    try:
        await store.register(METER_RECORDS)
        started = time.perf_counter()
        made = 0
        for chunk in cycles(start_ms, ESTIMATE_READINGS // METERS):
            readings = readings_of(chunk)
            await store.insert_many(readings, batch=len(readings))
            made += len(readings)
        return made / (time.perf_counter() - started)
    finally:
        await store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{folder / 'estimate.db'}{suffix}").unlink(missing_ok=True)


async def build(folder: Path) -> Build:
    free = shutil.disk_usage(folder).free
    days = DAYS if free >= MIN_FREE_BYTES else max(3, int(DAYS * free / MIN_FREE_BYTES))
    result = Build(folder / "store.db", days, free_gib=free / 2**30)
    if days < DAYS:
        result.note = f"SCALED DOWN to {days} days: only {result.free_gib:.1f} GiB free"
    start_ms = midnight_ms(FIRST_DAY)
    total_cycles = days * PER_DAY
    result.estimate_rate = await estimate(folder, start_ms)
    bulk = total_cycles * METERS / result.estimate_rate <= BUILD_TARGET_S
    store = ReadingStore(result.path)
    try:
        await store.register(METER_RECORDS)
        started = time.perf_counter()
        if bulk:
            result.way = "ReadingStore.insert_many, one transaction per 6 h of cycles"
            for chunk in cycles(start_ms, total_cycles):
                readings = readings_of(chunk)
                await store.insert_many(readings, batch=len(readings))
                del readings
        else:
            result.way = "executemany into samples (synchronous=OFF), 6 h per transaction"
            ids = dict(await store.query("SELECT meter_id, id FROM meters"))
            keys = [ids[m.meter_id] for m in METER_RECORDS]
            conn = sqlite3.connect(result.path, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous=OFF")
                for chunk in cycles(start_ms, total_cycles):
                    conn.execute("BEGIN")
                    conn.executemany(INSERT, rows_of(chunk, keys))
                    conn.execute("COMMIT")
            finally:
                conn.close()
        await store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        result.seconds = time.perf_counter() - started
        result.readings = (await store.query("SELECT count(*) FROM samples"))[0][0]
    finally:
        await store.close()
    result.size = result.path.stat().st_size
    return result


def build_table(b: Build) -> Table:
    table = Table(
        f"(a) The store: {b.days} days × {METERS} meters × 5 s in {ZONE.key}, "
        f"{midnight_ms(FIRST_DAY)} ms = {FIRST_DAY} 00:00 local onwards",
        (
            "way",
            "readings",
            Col("time", ".1f", "s"),
            Col("readings/s", ",.0f"),
            Col("file", ".0f", "MiB"),
            Col("B/reading", ".1f"),
        ),
    )
    table.row(
        b.way, b.readings, b.seconds, b.readings / b.seconds, b.size / 2**20, b.size / b.readings
    )
    full = b.days * PER_DAY * METERS
    table.note(
        f"estimate first: insert_many of {ESTIMATE_READINGS:,} readings (making the Readings "
        f"included) ran at {b.estimate_rate:,.0f}/s → {full / b.estimate_rate:.0f} s for "
        f"{full:,} (target ≤ {BUILD_TARGET_S:.0f} s)",
        f"file size after PRAGMA wal_checkpoint(TRUNCATE); no gaps or rejects; "
        f"{b.free_gib:.0f} GiB free on the temp disk. {b.note}".rstrip(),
    )
    return table


# -- timing --------------------------------------------------------------------------------


@dataclass
class Timed:
    median_s: float
    runs: int
    result: Any = None


def timed(fn: Callable[[], Any]) -> Timed:
    started = time.perf_counter()
    result = fn()  # the warm-up
    warm_up_s = time.perf_counter() - started
    times: list[float] = [warm_up_s] if warm_up_s >= SLOW_S else []
    while len(times) < RUNS and (len(times) < 2 or sum(times) < RUN_BUDGET_S):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return Timed(statistics.median(times), len(times), result)


@dataclass
class Peak:
    before_mib: float = 0.0
    peak_mib: float = 0.0
    seconds: float = 0.0

    @property
    def delta_mib(self) -> float:
        return self.peak_mib - self.before_mib


@contextmanager
def peak_rss() -> Iterator[Peak]:
    """The highest RSS while the block runs, sampled every SAMPLE_S by a thread."""
    gc.collect()
    peak = Peak(before_mib=rss_mib())
    peak.peak_mib = peak.before_mib
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.peak_mib = max(peak.peak_mib, rss_mib())
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, name="rss-sampler")
    sampler.start()
    started = time.perf_counter()
    try:
        yield peak
    finally:
        peak.seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        peak.peak_mib = max(peak.peak_mib, rss_mib())


class Month:
    """The dashboard's view of the store: meters, 'now' and the ranges app.py asks for."""

    def __init__(self, conn: sqlite3.Connection, days: int) -> None:
        self.conn = conn
        self.meters = q.meters(conn)
        self.keys = tuple(m.key for m in self.meters)
        self.ids = [m.meter_id for m in self.meters]
        self.key_of = {m.meter_id: m.key for m in self.meters}
        self.first = FIRST_DAY
        self.last = FIRST_DAY + timedelta(days=days - 1)
        self.now_ms = midnight_ms(self.last + timedelta(days=1)) - 1  # 23:59:59.999, last day
        self.end = self.now_ms + 1  # app.py: now_ms + 1
        today = self.last
        self.kpis = {
            "today": midnight_ms(today),
            "this week": midnight_ms(today - timedelta(days=today.weekday())),
            "this month": midnight_ms(today.replace(day=1)),
        }
        days_list = [self.first + timedelta(days=i) for i in range(days)]
        self.day_bounds = [midnight_ms(d) for d in [*days_list, self.last + timedelta(days=1)]]
        self.start = self.day_bounds[0]
        # app.py's History: local hour marks from the first midnight to min(last + 1 day, now + 1)
        # (whole hours here: no DST in the zone, so scan_grouped's equal steps cut the same)
        self.hour_bounds = h.hour_marks(self.start, min(self.day_bounds[-1], self.end), ZONE)

    def count(self, start: int, end: int, keys: Sequence[int] | None = None) -> int:
        keys = keys or self.keys
        marks = ", ".join("?" for _ in keys)
        return int(
            self.conn.execute(
                f"SELECT count(*) FROM samples WHERE meter IN ({marks}) AND ts_ms >= ? "
                "AND ts_ms < ?",
                (*keys, start, end),
            ).fetchone()[0]
        )

    # -- the baselines, over this store -------------------------------------------------------

    def scan_sum(self, start: int, end: int) -> float:
        return sql_scan.energy_sum(self.conn, self.keys, start, end)

    def scan_grouped(self, bounds: Sequence[int], step_ms: int) -> dict[int, list[float]]:
        return sql_scan.energy_grouped(self.conn, self.keys, bounds, step_ms)

    def raw(self, columns: Sequence[str], start: int, end: int) -> pd.DataFrame:
        return pandas_dashboard.raw(self.conn, columns, start, end, ZONE)

    def pandas_sum(self, start: int, end: int) -> float:
        return pandas_dashboard.energy_sum(self.conn, start, end, ZONE)

    def pandas_grouped(self, bounds: Sequence[int], freq: str) -> dict[int, list[float]]:
        return pandas_dashboard.energy_grouped(self.conn, self.key_of, bounds, freq, ZONE)

    def pandas_mean_power(
        self, start: int, end: int, bucket_ms: int, freq: str, meter_ids: Sequence[str] = ()
    ) -> list[tuple[str, int, float]]:
        return pandas_dashboard.mean_power(self.conn, start, end, bucket_ms, freq, ZONE, meter_ids)

    def daily_wh(self, daily: pd.DataFrame) -> dict[int, list[float]]:
        """history.daily_energy's frame (meter, day, kWh) as Wh per meter and local day."""
        index = {
            datetime.fromtimestamp(b / 1000, ZONE).date(): i for i, b in enumerate(self.day_bounds)
        }
        found = {k: [0.0] * (len(self.day_bounds) - 1) for k in self.keys}
        for meter, day, kwh in daily[["meter", "day", "energy (kWh)"]].itertuples(index=False):
            found[meter][index[day]] = kwh * 1000
        return found


def wh_of(spans: dict[int, list[q.Span]]) -> dict[int, list[float]]:
    return {k: [s.wh for s in series] for k, series in spans.items()}


def grid_delta(ours: dict[int, list[float]], other: dict[int, list[float]]) -> float:
    return max(abs(a - b) for k in ours for a, b in zip(ours[k], other[k], strict=True))


@dataclass
class Row:
    label: str
    rows: int
    ours: Timed
    scan: Timed | None = None
    scan_delta: float | None = None
    legacy: Timed | None = None
    legacy_delta: float | None = None
    legacy_note: str = ""


DELTA = Col("Δ Wh", ".1e")


def ms(t: Timed | None) -> float | None:
    return None if t is None else t.median_s * 1000


def times(t: Timed | None, ours: Timed) -> float | None:
    return None if t is None else t.median_s / ours.median_s


def rows_table(title: str, rows: Sequence[Row], scan_name: str) -> Table:
    """Each row's median time, ours vs the SQL baseline and vs pandas, and their answers' Δ."""
    table = Table(
        title,
        (
            "query",
            "rows in range",
            Col("ours", unit="ms"),
            Col(scan_name, unit="ms"),
            Col("×", unit="×"),
            DELTA,
            Col("pandas", unit="ms"),
            Col("×", unit="×"),
            DELTA,
            "n",
        ),
    )
    for r in rows:
        table.row(
            r.label,
            r.rows,
            ms(r.ours),
            ms(r.scan),
            times(r.scan, r.ours),
            r.scan_delta,
            ms(r.legacy) if r.legacy else r.legacy_note or None,
            times(r.legacy, r.ours),
            r.legacy_delta,
            "/".join(str(t.runs) for t in (r.ours, r.scan, r.legacy) if t is not None),
        )
    return table


def record_rows(section: str, rows: Sequence[Row], scan_name: str) -> None:
    """Each row's median time, ours vs the SQL baseline and vs pandas (where run)."""
    for r in rows:
        for name, other, diff in (
            (scan_name, r.scan, r.scan_delta),
            ("pandas", r.legacy, r.legacy_delta),
        ):
            if other is not None:
                bench.record(
                    TIER,
                    f"{section}, {r.label}, vs {name}",
                    r.ours.median_s * 1000,
                    other.median_s * 1000,
                    "ms",
                    f"{r.rows:,} rows in range; Δ {bench.cell_text(diff, DELTA)}; "
                    f"n {r.ours.runs}/{other.runs}",
                )


# -- (b) KPIs ------------------------------------------------------------------------------


def kpi_table(m: Month, month_load: Peak) -> Table:
    rows = []
    for label, start in m.kpis.items():
        ours = timed(lambda start=start: q.spans(m.conn, m.keys, (start, m.end)))
        ours_wh = sum(series[0].wh for series in ours.result.values())
        scan = timed(lambda start=start: m.scan_sum(start, m.end))
        row = Row(f"{label} ({span_label(m.end - start)})", m.count(start, m.end), ours)
        row.scan, row.scan_delta = scan, abs(scan.result - ours_wh)
        if label != "this month":
            legacy = timed(lambda start=start: m.pandas_sum(start, m.end))
            row.legacy, row.legacy_delta = legacy, abs(legacy.result - ours_wh)
        else:
            row.legacy_note = f"~{month_load.seconds:.0f} s *"
        rows.append(row)
    table = rows_table(
        f"(b) Overview KPIs: energy of all {METERS} meters from local midnight / Monday / the 1st "
        "to now; ours = queries.spans(keys, (start, now + 1)) as app.py calls it (energy_total "
        "and ts_ms by index seeks)",
        rows,
        "SQL scan",
    )
    record_rows("Overview KPI", rows, "SQL scan")
    table.note(
        "SQL scan = SELECT sum(energy) FROM samples WHERE meter IN (…) AND ts_ms BETWEEN a AND "
        "b − 1; pandas = pd.read_sql of the legacy columns "
        f"({', '.join(LEGACY_COLUMNS)}) from the readings view, then .sum(); "
        "Δ = |baseline − ours| over the 20 meters, Wh; n = timed runs ours/scan/pandas",
        f"* one run of the month's raw load alone, from (f) (not repeated: "
        f"~{month_load.seconds:.0f} s a run); 'now' = 23:59:59.999 local on the last day; "
        "the Overview's 'Today by building and meter' reuses the today call (st.cache_data)",
    )
    return table


def span_label(ms: int) -> str:
    days = ms / DAY_MS
    return f"{days:.0f} day" if round(days) == 1 else f"{days:.0f} days"


# -- (c) history ---------------------------------------------------------------------------


def history_spans(m: Month) -> dict[int, list[q.Span]]:
    """app.py's History query: one spans call over the range's local hour marks."""
    return q.spans(m.conn, m.keys, tuple(m.hour_bounds))


def history_days(m: Month) -> pd.DataFrame:
    """What app.py's History draws its day bars from: the hours' spans summed per local day."""
    return h.daily_energy(h.span_table(history_spans(m), m.hour_bounds, ZONE))


def history_table(m: Month) -> Table:
    days = len(m.day_bounds) - 1
    per_day = Row(
        f"per day, {days} days, from the hours",
        m.count(m.start, m.end),
        timed(lambda: history_days(m)),
    )
    ours_days = m.daily_wh(per_day.ours.result)
    per_day.scan = timed(lambda: m.scan_grouped(m.day_bounds, DAY_MS))
    per_day.scan_delta = grid_delta(ours_days, per_day.scan.result)
    per_day.legacy = timed(lambda: m.pandas_grouped(m.day_bounds, "1D"))
    per_day.legacy_delta = grid_delta(ours_days, per_day.legacy.result)
    per_hour = Row(
        f"per hour, {len(m.hour_bounds)} boundaries",
        m.count(m.start, m.end),
        timed(lambda: history_spans(m)),
    )
    ours_hours = wh_of(per_hour.ours.result)
    per_hour.scan = timed(lambda: m.scan_grouped(m.hour_bounds, HOUR_MS))
    per_hour.scan_delta = grid_delta(ours_hours, per_hour.scan.result)
    per_hour.legacy = timed(lambda: m.pandas_grouped(m.hour_bounds, "1h"))
    per_hour.legacy_delta = grid_delta(ours_hours, per_hour.legacy.result)
    rows = [per_day, per_hour]
    table = rows_table(
        f"(c) History tab over {days} days, all {METERS} meters: Wh per meter and local day / "
        "hour; ours = one queries.spans over the local hour marks (seeks per mark), as app.py "
        "calls it; per day = that call + history.span_table + daily_energy (app.py's day bars); "
        "per hour = the call alone",
        rows,
        "GROUP BY",
    )
    record_rows("History, energy", rows, "GROUP BY")
    table.note(
        "GROUP BY = SELECT meter, (ts_ms − first) / interval, sum(energy) … GROUP BY 1, 2 "
        "(every row); pandas = read_sql of meter_id, ts_ms, energy_wh, then resampled per meter: "
        "groupby(meter_id, pd.Grouper(local time, '1D' / '1h')).sum(); Δ = the largest "
        "|baseline − ours| of one meter's interval, Wh",
        f"ours per day is kWh to {h.KWH} decimals, as the tab keeps it: a Δ up to 5e-04 Wh there "
        "is that rounding",
    )
    return table


# -- (d) day detail ------------------------------------------------------------------------


@dataclass
class MeanPower:
    label: str
    rows: int
    ours: Timed
    legacy: Timed

    def compare(self) -> tuple[str, int, float | None, str]:
        """(buckets ours/pandas, buckets in both, the largest Δ W of those, ours' first start)."""
        ours = {(r[0], r[1]): r[2] for r in self.ours.result}
        theirs = {(r[0], r[1]): r[2] for r in self.legacy.result}
        common = ours.keys() & theirs.keys()
        worst = max((abs(ours[k] - theirs[k]) for k in common), default=None)
        first = min(t for _, t in ours) if ours else 0
        local = datetime.fromtimestamp(first / 1000, ZONE).strftime("%d %H:%M")
        return f"{len(ours):,}/{len(theirs):,}", len(common), worst, local


def day_detail_table(m: Month) -> Table:
    day_start = midnight_ms(m.last)  # app.py: the day's local midnight to the next one
    found = []
    for label, keys, ids in (
        ("Day detail, 1 meter, 60 s", m.keys[:1], m.ids[:1]),
        (f"Day detail, {METERS} meters, 60 s", m.keys, ()),
    ):
        ours = timed(lambda keys=keys: q.mean_power(m.conn, keys, day_start, m.end, MINUTE_MS))
        legacy = timed(
            lambda ids=ids: m.pandas_mean_power(day_start, m.end, MINUTE_MS, "1min", ids)
        )
        found.append(MeanPower(label, m.count(day_start, m.end, keys), ours, legacy))
    delta_w = Col("Δ W", ".1e")
    table = Table(
        "(d) Day detail: mean power (Σ energy ÷ Σ covered time) per meter and minute of the "
        "last day; ours = queries.mean_power (bucketed in SQL from local midnight)",
        (
            "query",
            "rows in range",
            Col("ours", unit="ms"),
            Col("pandas", unit="ms"),
            Col("×", unit="×"),
            Col("buckets ours/pandas", align="right"),
            "same",
            delta_w,
            Col("ours 1st", align="right"),
            Col("n", align="right"),
        ),
    )
    for p in found:
        buckets, common, worst, first = p.compare()
        table.row(
            p.label,
            p.rows,
            ms(p.ours),
            ms(p.legacy),
            times(p.legacy, p.ours),
            buckets,
            common,
            worst,
            first,
            f"{p.ours.runs}/{p.legacy.runs}",
        )
        bench.record(
            TIER,
            f"mean power, {p.label}, vs pandas",
            p.ours.median_s * 1000,
            p.legacy.median_s * 1000,
            "ms",
            f"{p.rows:,} rows in range; buckets ours/pandas {buckets}; "
            f"Δ {bench.cell_text(worst, delta_w)}",
        )
    table.note(
        "pandas = read_sql of meter_id, ts_ms, energy_wh from the readings view (from a minute "
        "before the day: each reading's predecessor), dt = ts_ms.diff() per meter, then "
        "groupby(meter_id, pd.Grouper(local time, '1min'))[energy_wh, dt].sum(), W = Wh × "
        "3,600,000 / dt (this store has no gaps to leave out)",
        "same = buckets with the same (meter, start) in both; Δ W over those; ours 1st = the "
        "local start (day hh:mm) of ours' first bucket; app.py's Day detail passes every "
        "selected meter (row 2); the Live tab reads raw_readings, timed in (e)",
    )
    return table


# -- (e) the other tabs --------------------------------------------------------------------


def other_table(m: Month) -> Table:
    week = m.kpis["this week"]
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("Overview: latest, all meters", lambda: q.latest(m.conn, m.keys)),
        (
            "Live: raw_readings, last 15 min",
            lambda: q.raw_readings(m.conn, m.ids, m.now_ms - 15 * 60_000, m.end, 50_000),
        ),
        (
            "Raw data: newest 1,000 of 7 days",
            lambda: q.raw_readings(m.conn, m.ids, week, m.end, 1_000),
        ),
        ("Data quality, 7 days: gaps", lambda: q.gaps(m.conn, m.keys, week, m.end)),
        ("Data quality, 7 days: rejects", lambda: q.rejects(m.conn, m.keys, week, m.end)),
        (
            "Data quality, 7 days: register_drift",
            lambda: q.register_drift(m.conn, m.keys, week, m.end),
        ),
        (
            f"Data quality, {len(m.day_bounds) - 1} days: register_drift",
            lambda: q.register_drift(m.conn, m.keys, m.start, m.end),
        ),
    ]
    table = Table(
        "(e) The other tabs' queries, as app.py calls them for all meters (no baseline: "
        "the time and the rows returned)",
        ("query", Col("time", unit="ms"), "rows returned", "n"),
    )
    for label, fn in cases:
        t = timed(fn)
        table.row(label, ms(t), len(t.result), t.runs)
    table.note(
        "Live reads the view `readings` (ORDER BY ts_ms DESC LIMIT); register_drift reads "
        "min/max(ts_ms) of rows with import_energy per meter"
    )
    return table


# -- (f) memory ----------------------------------------------------------------------------


@dataclass
class Memory:
    ours: Peak = field(default_factory=Peak)
    legacy: Peak = field(default_factory=Peak)
    frame_mib: float = 0.0
    frame_rows: int = 0


def measure_memory(m: Month) -> Memory:
    """Ours first, before any big frame was made, then the raw month into pandas."""
    memory = Memory()

    def ours() -> None:
        q.spans(m.conn, m.keys, (m.kpis["this month"], m.end))
        table = h.span_table(history_spans(m), m.hour_bounds, ZONE)
        h.daily_energy(table)
        h.weekday_energy(table, ZONE)
        h.hourly_power(table)
        q.mean_power(m.conn, m.keys, midnight_ms(m.last), m.end, MINUTE_MS)

    ours()  # the warm-up
    with peak_rss() as memory.ours:
        ours()
    with peak_rss() as memory.legacy:
        frame = m.raw(LEGACY_COLUMNS, m.start, m.end)
        memory.frame_rows = len(frame)
        memory.frame_mib = frame.memory_usage(deep=True).sum() / 2**20
    del frame
    gc.collect()
    return memory


def memory_table(memory: Memory, days: int) -> Table:
    table = Table(
        f"(f) Resident memory (psutil RSS, sampled every {SAMPLE_S * 1000:.0f} ms) of the "
        f"month's charts: ours vs the raw {days} days in pandas",
        (
            "way",
            Col("time", unit="ms"),
            Col("before", ".0f", "MiB"),
            Col("peak", ".0f", "MiB"),
            Col("peak − before", "+.0f", "MiB"),
        ),
    )
    for label, p in (
        ("ours: KPI month + History (hourly spans, its tables) + Day detail", memory.ours),
        (
            f"pandas: read_sql of {memory.frame_rows:,} rows, legacy columns, + local time",
            memory.legacy,
        ),
    ):
        table.row(label, p.seconds * 1000, p.before_mib, p.peak_mib, p.delta_mib)
    table.note(
        f"the DataFrame itself: {memory.frame_mib:,.0f} MiB (memory_usage(deep=True)); "
        f"× ours (peak − before): {memory.legacy.delta_mib / max(memory.ours.delta_mib, 1):,.0f}× "
        "(ours floored at 1 MiB); measured before (b)–(e), one run each (ours after a warm-up)"
    )
    bench.record(
        TIER,
        f"peak RSS growth of the month's charts ({days} days), vs the raw range in pandas",
        max(memory.ours.delta_mib, 1),
        memory.legacy.delta_mib,
        "MiB",
        f"ours floored at 1 MiB, as printed (measured {memory.ours.delta_mib:+.0f} MiB); "
        f"the DataFrame itself {memory.frame_mib:,.0f} MiB",
    )
    return table


# -- main ----------------------------------------------------------------------------------


def run(folder: Path) -> Iterator[Table]:
    built = asyncio.run(build(folder))
    yield build_table(built)
    conn = q.connect(built.path)
    try:
        month = Month(conn, built.days)
        memory = measure_memory(month)
        yield kpi_table(month, memory.legacy)
        yield history_table(month)
        yield day_detail_table(month)
        yield other_table(month)
        yield memory_table(memory, built.days)
    finally:
        conn.close()


if __name__ == "__main__":
    harness.main(run, __doc__)
