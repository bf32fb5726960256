"""Billing: a month's bills and a year of monthly peaks from a year of windows, vs a naive pass.

(a) a year of 5-minute windows for 100 meters in 10 buildings (each a main meter and 9
    sub-meters; one virtual remainder "main - subs" per building), built as
    `benchmarks/api.py` builds its file (bulk insert, rollups with their quarter hours
    filled in SQL), and the same windows copied into PostgreSQL, whose sink rebuilds
    its rollups from them;
(b) per store, the month's campus bill (every building's account: energy by
    time-of-use period, standing, a 30-minute demand charge with an 11-month ratchet,
    CO2, each meter's share; and the campus's coincident peak) for the last whole month,
    p50/p95 over repeated runs, against a naive pass that reads every window of the same
    ranges and sums them into quarter hours in Python before the same pricing; the two
    bills are compared line by line;
(c) per store, a year of monthly peaks for every meter and virtual meter (110 scopes),
    p50/p95 per scope and in all, against the naive pass on a sample of scopes.
Ratios are naive/ours. The goal printed beside (b): p95 <= 100 ms for the campus bill.

Run: .venv/bin/python benchmarks/billing.py [--quick]
Quick mode: 60 days, 10 buildings of 2 meters, fewer runs.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import api
import harness
import results as bench
from campus_energy.accounts.command import energy_from
from campus_energy.accounts.documents import campus_bill_document
from campus_energy.accounts.scopes import resolve
from campus_energy.accounts.statements import EnergyOf, HoursOf, PeaksOf, campus_bill, demand
from campus_energy.backends.postgres.sink import PostgresSink
from campus_energy.backends.postgres.source import PostgresSource
from campus_energy.backends.sqlite.source import SqliteSource
from campus_energy.config import Config, parse_config
from campus_energy.core.answers import QUARTER_MS, ScopeHour
from campus_energy.core.days import hour_of, local_date, midnight_ms
from measure import percentile
from results import Col, Table

TIER = "Billing"
ZONE = api.ZONE
DAYS = bench.sized(365, 60)
PER_BUILDING = bench.sized(10, 2)
RUNS = bench.sized(30, 8)
NAIVE_RUNS = bench.sized(3, 2)
NAIVE_SCOPES = bench.sized(6, 4)
GOAL_MS = 100.0
DSN = os.environ.get("CAMPUS_ENERGY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = f"bench_billing_{os.getpid()}"


def campus_meters() -> list[api.Meter]:
    found = []
    for building in api.BUILDINGS:
        code = building.lower()
        found.append(api.Meter(f"{code}-main", building, "G", 6000.0))
        for j in range(1, PER_BUILDING):
            found.append(api.Meter(f"{code}-s{j:02d}", building, str(j), 300.0 + 40.0 * j))
    return found


def config_of(meters: Sequence[api.Meter], sink: dict[str, Any]) -> Config:
    version = {
        "default_rate": "7.45",
        "standing_per_month": "25000",
        "periods": [
            {"name": "peak", "days": ["weekdays"], "start": "18:00", "end": "22:00",
             "rate": "9.65"},
            {"name": "off-peak", "days": ["all"], "start": "22:00", "end": "06:00",
             "rate": "6.20"},
        ],
        "demand": {"interval_min": 30, "price_per_kw": "475", "ratchet_share": "0.75",
                   "minimum_kw": "5"},
    }  # fmt: skip
    first = date.today() - timedelta(days=DAYS + 40)
    later = date.today() - timedelta(days=DAYS // 2)
    return parse_config(
        {
            "site": {
                "timezone": ZONE.key,
                "tariff": "tou",
                "buildings": [
                    {"name": b, "floor_area_m2": 1000.0 + 500 * i}
                    for i, b in enumerate(api.BUILDINGS)
                ],
            },
            "buses": [{"name": "bus", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {
                    "id": m.meter_id,
                    "bus": "bus",
                    "unit": i + 1,
                    "profile": "eastron-sdm630",
                    "building": m.building,
                    "floor": m.floor,
                    **(
                        {"role": "main"}
                        if m.meter_id.endswith("-main")
                        else {"parent": f"{m.building.lower()}-main"}
                    ),
                }
                for i, m in enumerate(meters)
            ],
            "virtual_meters": [
                {
                    "id": f"{b.lower()}-rest",
                    "building": b,
                    "terms": " - ".join(m.meter_id for m in meters if m.building == b),
                }
                for b in api.BUILDINGS
            ],
            "tariffs": [
                {
                    "id": "tou",
                    "currency": "INR",
                    "versions": [
                        {"valid_from": first, **version},
                        {"valid_from": later, **version, "default_rate": "7.80"},
                    ],
                }
            ],
            "emissions": {"factors": [{"valid_from": first, "kg_per_kwh": "0.71"}]},
            "bridge": {"window_s": api.WINDOW_S, **sink},
        }
    )


# -- the naive pass: every window of the range, summed into quarter hours in Python ----------


def hours_from_windows(
    rows: Iterator[tuple[str, int, float, float]], terms: Mapping[str, float]
) -> list[ScopeHour]:
    hours: dict[int, list[Any]] = {}
    covered: dict[tuple[int, str], float] = {}
    for meter, start, energy, covered_s in rows:
        hour = hour_of(start, ZONE)
        sums = hours.setdefault(hour, [0.0, 0.0, 0.0, 0.0])
        sums[(start - hour) // QUARTER_MS] += terms[meter] * energy
        covered[(hour, meter)] = covered.get((hour, meter), 0.0) + covered_s
    per_hour: dict[int, list[float]] = {}
    for (hour, _), seconds in covered.items():
        per_hour.setdefault(hour, []).append(seconds)
    return [
        ScopeHour(hour, (q[0], q[1], q[2], q[3]), min(per_hour[hour]), len(per_hour[hour]))
        for hour, q in sorted(hours.items())
    ]


def naive_sqlite(path: Path) -> tuple[HoursOf, EnergyOf, PeaksOf | None]:
    conn = sqlite3.connect(path)

    def windows(start: int, end: int, meters: Collection[str]) -> Iterator[Any]:
        marks = ", ".join("?" for _ in meters)
        return conn.execute(
            "SELECT meter_id, window_start_ms, total_energy_wh, "
            "json_extract(accumulator, '$.covered_s') FROM window_aggregates "
            f"WHERE meter_id IN ({marks}) AND window_start_ms >= ? AND window_start_ms < ?",
            [*meters, start, end],
        )

    return _naive(windows)


def naive_postgres(schema: str) -> tuple[HoursOf, EnergyOf, PeaksOf | None]:
    conn = psycopg.connect(DSN, autocommit=True)
    query = sql.SQL(
        "SELECT meter_id, (extract(epoch FROM window_start) * 1000)::bigint, total_energy_wh, "
        "(accumulator->>'covered_s')::float8 FROM {}.window_aggregates WHERE meter_id = ANY(%s) "
        "AND window_start >= %s AND window_start < %s"
    ).format(sql.Identifier(schema))

    def windows(start: int, end: int, meters: Collection[str]) -> Iterator[Any]:
        return iter(conn.execute(query, [list(meters), _moment(start), _moment(end)]).fetchall())

    return _naive(windows)


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _naive(
    windows: Callable[[int, int, Collection[str]], Iterator[Any]],
) -> tuple[HoursOf, EnergyOf]:
    def hours_of(start: int, end: int, terms: Mapping[str, float]) -> list[ScopeHour]:
        return hours_from_windows(windows(start, end, list(terms)), terms)

    def energy_of(first: date, last: date, meters: Collection[str]) -> Mapping[str, float]:
        start = midnight_ms(first, ZONE)
        end = midnight_ms(last + timedelta(days=1), ZONE)
        sums: dict[str, float] = {}
        for meter, _, energy, _ in windows(start, end, meters):
            sums[meter] = sums.get(meter, 0.0) + energy
        return sums

    return hours_of, energy_of, None  # peaks from every window's hours, in Python


# -- the stores -----------------------------------------------------------------------------


def copy_to_postgres(path: Path, config: Config) -> float:
    """The SQLite file's windows into a new PostgreSQL schema; the sink rebuilds the rollups."""
    started = time.perf_counter()

    async def open_sink() -> None:
        sink = PostgresSink(config.bridge.postgres, ZONE)
        try:
            await sink.windows(0, 1, None)  # connects: the schema is created or upgraded
        finally:
            await sink.close()

    asyncio.run(open_sink())  # the schema
    columns = (
        "id", "meter_id", "building", "floor", "window_start", "window_end", "timestamp",
        "total_energy_wh", "readings_in_batch", "coverage", "accumulator",
    )  # fmt: skip
    source = sqlite3.connect(path)
    with psycopg.connect(DSN, autocommit=True) as conn:
        table = sql.Identifier(SCHEMA, "window_aggregates")
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN").format(
                    table, sql.SQL(", ").join(map(sql.Identifier, columns))
                )
            ) as copy,
        ):
            for row in source.execute(
                "SELECT id, meter_id, building, floor, window_start_ms, total_energy_wh, "
                "readings_in_batch, coverage, accumulator FROM window_aggregates"
            ):
                start = _moment(row[4])
                end = start + timedelta(seconds=api.WINDOW_S)
                copy.write_row((row[0], row[1], row[2], row[3], start, end, start, row[5],
                                row[6], row[7], row[8]))  # fmt: skip
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(SCHEMA, "sink_meta")))
    source.close()
    asyncio.run(open_sink())  # the layout is unknown: the rollups are rebuilt from the windows
    return time.perf_counter() - started


def drop_postgres() -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


# -- measuring ------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def last_whole_month(now_ms: int) -> tuple[int, int]:
    today = local_date(now_ms, ZONE)
    first = today.replace(day=1) - timedelta(days=1)
    return first.year, first.month


def comparable(document: dict[str, Any]) -> list[Any]:
    """What two bills must agree on: every line and total of every account, and the peaks."""
    found = []
    for one in document["bills"]:
        found.append((one["account"], one["total"], one["energy_kwh"], one["peak"]))
        found += [(x["description"], x["quantity"], x["amount"]) for x in one["lines"]]
    found.append(document["campus"]["peak"])
    return found


def measure(
    name: str,
    config: Config,
    ours: tuple[HoursOf, EnergyOf, PeaksOf | None],
    naive: tuple[HoursOf, EnergyOf, PeaksOf | None],
) -> tuple[list[Any], list[Any], str]:
    month = last_whole_month(api.now_ms())

    def bill(parts: tuple[HoursOf, EnergyOf, PeaksOf | None]) -> Any:
        return campus_bill(config, parts[0], parts[1], month, peaks_of=parts[2])

    bill(ours)  # warm the connection and the tariff tables
    our_times, our_bill = timed(lambda: bill(ours), RUNS)
    naive_times, naive_bill = timed(lambda: bill(naive), NAIVE_RUNS)
    same = comparable(campus_bill_document(our_bill, ZONE)) == comparable(
        campus_bill_document(naive_bill, ZONE)
    )
    totals = ", ".join(f"{v} {c}" for c, v in our_bill.totals.items())
    bill_row = [
        f"{name}: campus bill {month[0]}-{month[1]:02d} ({len(our_bill.bills)} accounts)",
        statistics.median(our_times),
        percentile(our_times, 95),
        statistics.median(naive_times),
        statistics.median(naive_times) / statistics.median(our_times),
        "yes" if percentile(our_times, 95) <= GOAL_MS else "NO",
    ]
    today = local_date(api.now_ms(), ZONE)
    first = today - timedelta(days=DAYS - 1)
    scopes = [resolve(config, "meter", m.id) for m in config.meters] + [
        resolve(config, "virtual", v.id) for v in config.virtual_meters
    ]

    def peaks(parts: tuple[HoursOf, EnergyOf, PeaksOf | None], scope: Any) -> Any:
        found = demand(config, parts[0], scope, first, today, peaks_of=parts[2])
        return [p.kw for p in found.peaks]

    per_scope, ours_peaks = [], {}
    started = time.perf_counter()
    for scope in scopes:
        times, ours_peaks[scope.name] = timed(lambda s=scope: peaks(ours, s), 1)
        per_scope += times
    all_s = time.perf_counter() - started
    sample = scopes[:: max(1, len(scopes) // NAIVE_SCOPES)][:NAIVE_SCOPES]
    naive_per_scope, agree = [], True
    for scope in sample:
        times, found = timed(lambda s=scope: peaks(naive, s), 1)
        naive_per_scope += times
        agree = agree and found == ours_peaks[scope.name]
    bench.record(
        TIER,
        f"{name}: campus bill p95",
        percentile(our_times, 95),
        percentile(naive_times, 95),
        "ms",
        f"goal ≤ {GOAL_MS:.0f} ms; naive: every window of the same ranges",
    )
    peak_row = [
        f"{name}: a year of monthly peaks, per scope ({len(scopes)} scopes)",
        statistics.median(per_scope),
        percentile(per_scope, 95),
        statistics.median(naive_per_scope),
        statistics.median(naive_per_scope) / statistics.median(per_scope),
        "",
    ]
    bench.record(
        TIER,
        f"{name}: a year of monthly peaks, p95 per scope",
        percentile(per_scope, 95),
        percentile(naive_per_scope, 95),
        "ms",
        f"{len(scopes)} scopes; naive on {len(sample)} of them",
    )
    note = (
        f"{name}: the naive bill equals ours line by line: {'yes' if same else 'NO'}; campus "
        f"total {totals}; peaks of {len(sample)} sampled scopes equal: {'yes' if agree else 'NO'}; "
        f"all {len(scopes)} scopes' year of peaks in {all_s:.2f} s"
    )
    return bill_row, peak_row, note


def run(folder: Path) -> Iterator[Table]:
    meters = campus_meters()
    path = folder / "windows.db"
    last_ms = (api.now_ms() // api.WINDOW_MS - 1) * api.WINDOW_MS
    build = api.build_file(path, meters, DAYS, last_ms)
    sqlite_config = config_of(meters, {"sink": "sqlite", "sqlite": {"path": str(path)}})
    pg_config = config_of(meters, {"sink": "postgres", "postgres": {"dsn": DSN, "schema": SCHEMA}})
    copy_s = copy_to_postgres(path, pg_config)
    table = Table(
        f"(a) The books: {DAYS} days of {api.WINDOW_S // 60}-minute windows, {len(meters)} "
        f"meters in {len(api.BUILDINGS)} buildings, {len(sqlite_config.virtual_meters)} "
        f"virtual meters ({ZONE.key})",
        ("store", "windows", Col("build", ".1f", "s")),
    )
    table.row("SQLite (bulk insert, rollups in SQL)", build.rows, build.insert_s + build.rollup_s)
    table.row("PostgreSQL (COPY, the sink's rebuild)", build.rows, copy_s)
    yield table
    latency = Table(
        "(b, c) Bills and peaks: ours (rollups with quarter hours, one query per scope) vs "
        "naive (every window of the range, summed in Python)",
        (
            "what",
            Col("p50", ".1f", "ms"),
            Col("p95", ".1f", "ms"),
            Col("naive p50", ".1f", "ms"),
            Col("ratio", ".1f", "×"),
            f"p95 ≤ {GOAL_MS:.0f} ms",
        ),
    )
    notes = []
    sqlite_source = SqliteSource(path)
    pg_source = PostgresSource(pg_config.bridge.postgres)
    try:
        for name, config, source, naive in (
            ("SQLite", sqlite_config, sqlite_source, naive_sqlite(path)),
            ("PostgreSQL", pg_config, pg_source, naive_postgres(SCHEMA)),
        ):
            bill_row, peak_row, note = measure(
                name, config, (source.scope_hours, energy_from(source), source.scope_peaks), naive
            )
            latency.row(*bill_row)
            latency.row(*peak_row)
            notes.append(note)
    finally:
        sqlite_source.close()
        pg_source.close()
        drop_postgres()
    latency.note(
        *notes,
        f"runs: {RUNS} per campus bill (ours), {NAIVE_RUNS} (naive); a bill reads the month, the "
        "11 months its ratchet looks back to, and each meter's month from the daily rollups",
    )
    yield latency


if __name__ == "__main__":
    harness.main(run, __doc__)
