"""The PostgreSQL sink at estate scale: monthly partitions, the move of an unpartitioned table
into them, retention by whole months, the `site` column, and several bridges merging at once.

Every test runs against the local PostgreSQL in a throw-away schema; "now" is an argument.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from campus_energy.backends.postgres.partitions import retention_cutoff
from campus_energy.backends.postgres.sink import PostgresSink
from campus_energy.backends.postgres.source import PostgresSource
from campus_energy.config import PostgresSinkConfig
from campus_energy.core.days import local_date
from campus_energy.core.windows import Contribution, WindowDelta

WINDOW_S = 300
KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")

# The windows table and the latest-window table as the sink created them before monthly
# partitions and sites (schema.py as of commit 17048b3).
OLD_WINDOWS = """
CREATE TABLE {schema}.window_aggregates (
    meter_id TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    id TEXT NOT NULL,
    building TEXT NOT NULL DEFAULT '',
    floor TEXT NOT NULL DEFAULT '',
    window_end TIMESTAMPTZ NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    total_energy_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_power_w DOUBLE PRECISION,
    min_power_w DOUBLE PRECISION,
    max_power_w DOUBLE PRECISION,
    avg_voltage_v DOUBLE PRECISION,
    avg_current_a DOUBLE PRECISION,
    avg_power_factor DOUBLE PRECISION,
    avg_frequency_hz DOUBLE PRECISION,
    readings_in_batch INTEGER NOT NULL DEFAULT 0,
    coverage DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    accumulator JSONB NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (meter_id, window_start)
)
"""
OLD_METERS = """
CREATE TABLE {schema}.window_meters (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    last_window TIMESTAMPTZ NOT NULL,
    last_avg_power_w DOUBLE PRECISION,
    last_coverage DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
)
"""
OLD_WINDOW_COLUMNS = (
    'meter_id, window_start, id, building, floor, window_end, "timestamp", total_energy_wh, '
    "avg_power_w, min_power_w, max_power_w, avg_voltage_v, avg_current_a, avg_power_factor, "
    "avg_frequency_hz, readings_in_batch, coverage, updated_at, accumulator"
)
OLD_METER_COLUMNS = (
    "meter_id, building, floor, last_window, last_avg_power_w, last_coverage, updated_at"
)
# each table's rows in one order, for before/after comparisons
ROWS = {
    "windows": f"SELECT {OLD_WINDOW_COLUMNS} FROM {{s}}.window_aggregates ORDER BY 1, 2",
    "meters": f"SELECT {OLD_METER_COLUMNS} FROM {{s}}.window_meters ORDER BY 1",
    "hourly": "SELECT * FROM {s}.rollup_hourly ORDER BY hour_start, meter_id",
    "daily": "SELECT * FROM {s}.rollup_daily ORDER BY day, meter_id",
    "campus": "SELECT * FROM {s}.rollup_daily_campus ORDER BY day",
}


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def utc(*parts: int) -> int:
    return ms(datetime(*parts, tzinfo=UTC))  # type: ignore[misc]


def delta(meter_id: str, start_ms: int, seq: int, energy_wh: float, site: str = "") -> WindowDelta:
    """One reading's worth of a window: `energy_wh` over the whole window, sequence `seq`."""
    power = energy_wh * 3600 / WINDOW_S
    item = Contribution(meter_id, start_ms, seq, energy_wh, WINDOW_S, True, power, 230.0)
    return WindowDelta(meter_id, start_ms, WINDOW_S, (item,), "ECE", "1", site)


def sink(dsn: str, schema: str, zone: ZoneInfo, retention: int | None = None) -> PostgresSink:
    config = PostgresSinkConfig(dsn=dsn, schema=schema, retention_months=retention)
    return PostgresSink(config, zone)


async def merged(
    dsn: str, schema: str, zone: ZoneInfo, deltas: list[WindowDelta], now_ms: int
) -> None:
    writer = sink(dsn, schema, zone)
    try:
        for i in range(0, len(deltas), 200):
            await writer.merge(deltas[i : i + 200], now_ms)
    finally:
        await writer.close()


def snapshot(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(q.format(s=schema)).fetchall() for name, q in ROWS.items()}


def partitions_of(dsn: str, schema: str) -> list[str]:
    """The tables attached to the windows table (pg_inherits), by name."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY 1",
            (f"{schema}.window_aggregates",),
        ).fetchall()
    return [name for (name,) in rows]


def kind_of(dsn: str, schema: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = %s::regclass",
            (f"{schema}.window_aggregates",),
        ).fetchone()
    assert row is not None
    return str(row[0])


def months_of_windows(rng: random.Random) -> list[WindowDelta]:
    """Three meters, a few windows on each of several days from January to June 2026 (June
    lies ahead of the tests' now), around UTC and Kolkata midnights; 'old-1' only in January."""
    found = []
    seq = 0
    days = [(1, 3), (1, 31), (2, 14), (2, 28), (3, 1), (3, 2), (3, 31), (4, 1), (4, 20), (5, 10)]
    days += [(5, 31), (6, 1)]
    for month, day in days:
        for hour, minute in ((0, 0), (0, 25), (5, 30), (12, 5), (18, 25), (18, 30), (23, 55)):
            start = utc(2026, month, day, hour, minute)
            for meter in ("ece-1", "ece-2", "lib-1"):
                seq += 1
                found.append(delta(meter, start, seq, round(rng.uniform(1, 50), 3)))
    found.append(delta("old-1", utc(2026, 1, 3, 10, 0), seq + 1, 7.0))
    return found


# --- months ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "keep", "first_kept"),
    [
        (datetime(2026, 6, 15, tzinfo=UTC), 2, date(2026, 4, 1)),
        # March ended exactly two months before: not *more* than two, so it stays
        (datetime(2026, 6, 1, tzinfo=UTC), 2, date(2026, 3, 1)),
        (datetime(2026, 6, 1, 0, 0, 0, 1000, tzinfo=UTC), 2, date(2026, 4, 1)),
        (datetime(2026, 1, 20, tzinfo=UTC), 1, date(2025, 12, 1)),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), 14, date(2025, 1, 1)),
    ],
)
def test_retention_keeps_the_current_month_and_the_months_that_ended_recently(
    now: datetime, keep: int, first_kept: date
) -> None:
    assert retention_cutoff(ms(now), keep) == first_kept


# --- layout and site --------------------------------------------------------------------------


async def test_windows_land_in_the_partition_of_their_month_with_their_site(
    postgres_dsn: tuple[str, str],
) -> None:
    dsn, schema = postgres_dsn
    now = utc(2026, 2, 1, 0, 10)
    deltas = [
        delta("ece-1", utc(2026, 1, 31, 23, 55), 1, 10.0, "north"),
        delta("ece-1", utc(2026, 2, 1, 0, 0), 2, 20.0, "north"),
        delta("lib-1", utc(2026, 2, 1, 0, 0), 3, 5.0),
    ]
    await merged(dsn, schema, KOLKATA, deltas, now)
    assert kind_of(dsn, schema) == "p"
    # January for its window, February for its windows and as this month, March ahead
    assert partitions_of(dsn, schema) == [
        "window_aggregates_p2026_01",
        "window_aggregates_p2026_02",
        "window_aggregates_p2026_03",
    ]
    with psycopg.connect(dsn) as conn:
        placed = conn.execute(
            f"SELECT tableoid::regclass::text, meter_id, site, total_energy_wh "
            f"FROM {schema}.window_aggregates ORDER BY window_start, meter_id"
        ).fetchall()
    assert placed == [
        (f"{schema}.window_aggregates_p2026_01", "ece-1", "north", 10.0),
        (f"{schema}.window_aggregates_p2026_02", "ece-1", "north", 20.0),
        (f"{schema}.window_aggregates_p2026_02", "lib-1", "", 5.0),
    ]
    # a second bridge finds the partitions there and writes on
    await merged(
        dsn, schema, KOLKATA, [delta("ece-1", utc(2026, 2, 1, 0, 0), 4, 1.0, "north")], now
    )
    source = PostgresSource(PostgresSinkConfig(dsn=dsn, schema=schema))
    try:
        assert {(m.meter_id, m.site) for m in source.meters()} == {
            ("ece-1", "north"),
            ("lib-1", ""),
        }
    finally:
        source.close()
    reader = sink(dsn, schema, KOLKATA)
    try:
        docs = await reader.windows(utc(2026, 1, 1), utc(2026, 3, 1), None)
    finally:
        await reader.close()
    assert [(d.meter_id, d.site, d.total_energy_wh) for d in docs] == [
        ("ece-1", "north", 10.0),
        ("ece-1", "north", 21.0),
        ("lib-1", "", 5.0),
    ]


# --- migration --------------------------------------------------------------------------------


def to_old_layout(dsn: str, schema: str) -> None:
    """Put the schema's windows and latest windows back into the tables the sink made before
    partitions and sites (the rollups are the same in both layouts)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f"CREATE TEMP TABLE w AS SELECT {OLD_WINDOW_COLUMNS} FROM {schema}.window_aggregates"
        )
        conn.execute(
            f"CREATE TEMP TABLE m AS SELECT {OLD_METER_COLUMNS} FROM {schema}.window_meters"
        )
        conn.execute(f"DROP TABLE {schema}.window_aggregates, {schema}.window_meters")
        conn.execute(OLD_WINDOWS.format(schema=schema))
        conn.execute(OLD_METERS.format(schema=schema))
        conn.execute(f"INSERT INTO {schema}.window_aggregates SELECT * FROM w")
        conn.execute(f"INSERT INTO {schema}.window_meters SELECT * FROM m")


async def test_an_unpartitioned_table_moves_into_monthly_partitions_unchanged(
    postgres_dsn: tuple[str, str],
) -> None:
    dsn, schema = postgres_dsn
    deltas = months_of_windows(random.Random(18))
    now = utc(2026, 5, 31, 20, 0)
    await merged(dsn, schema, KOLKATA, deltas, now)
    to_old_layout(dsn, schema)
    assert kind_of(dsn, schema) == "r" and partitions_of(dsn, schema) == []
    before = snapshot(dsn, schema)
    assert len(before["windows"]) == len(deltas) and before["daily"] and before["campus"]

    # the bridges start again (two at once): the first moves the table, the other finds it moved
    async def started() -> int:
        reader = sink(dsn, schema, KOLKATA)
        try:
            return len(await reader.windows(0, utc(2027, 1, 1), None))
        finally:
            await reader.close()

    assert await asyncio.gather(started(), started()) == [len(deltas)] * 2

    assert kind_of(dsn, schema) == "p"
    assert partitions_of(dsn, schema) == [
        f"window_aggregates_p2026_{month:02d}" for month in range(1, 7)
    ]
    assert snapshot(dsn, schema) == before
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name LIKE '%%unpartitioned%%'",
            (schema,),
        ).fetchall()
        sites = conn.execute(
            f"SELECT DISTINCT site FROM {schema}.window_aggregates UNION "
            f"SELECT DISTINCT site FROM {schema}.window_meters"
        ).fetchall()
        # the directions, which the old table had not: every window so far an import
        directions = conn.execute(
            "SELECT count(*) FROM "
            f"{schema}.window_aggregates WHERE import_energy_wh = total_energy_wh "
            "AND net_energy_wh = total_energy_wh AND export_energy_wh = 0 "
            "AND estimated_energy_wh = 0 AND estimated_export_wh = 0"
        ).fetchone()
    assert tables == [] and sites == [("",)]
    assert directions == (len(deltas),)

    # and merges go on into the moved windows: the later reading adds to them
    later = delta("ece-1", utc(2026, 3, 1, 0, 0), 10_000, 2.5, "north")
    await merged(dsn, schema, KOLKATA, [later], now)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT total_energy_wh, readings_in_batch, site FROM {schema}.window_aggregates "
            "WHERE meter_id = 'ece-1' AND window_start = %s",
            (datetime(2026, 3, 1, tzinfo=UTC),),
        ).fetchone()
    first = next(
        d for d in deltas if d.meter_id == "ece-1" and d.window_start_ms == later.window_start_ms
    )
    assert row == (pytest.approx(first.items[0].energy_wh + 2.5), 2, "north")


# --- retention --------------------------------------------------------------------------------


async def test_retention_drops_whole_months_and_their_rollups_and_keeps_the_rest(
    postgres_dsn: tuple[str, str],
) -> None:
    dsn, schema = postgres_dsn
    deltas = months_of_windows(random.Random(3))
    now = utc(2026, 5, 15, 9, 0)  # two months kept before May: March and April
    await merged(dsn, schema, KOLKATA, deltas, now)
    before = snapshot(dsn, schema)
    assert partitions_of(dsn, schema) == [
        f"window_aggregates_p2026_{month:02d}" for month in range(1, 7)
    ]

    # The first merge of the day does the upkeep. A late window of January is not written
    # (its month is gone); a redelivered window of June changes no figure.
    writer = sink(dsn, schema, KOLKATA, retention=2)
    try:
        assert await writer.merge([deltas[-1], deltas[-2]], now) == 1
        assert await writer.upkeep(now) == 0  # nothing left to drop
    finally:
        await writer.close()

    # January and February are gone; March (whose end is not yet two months ago), April,
    # the current month May and June ahead stay
    assert partitions_of(dsn, schema) == [
        f"window_aggregates_p2026_{month:02d}" for month in range(3, 7)
    ]
    cutoff = datetime(2026, 3, 1, tzinfo=UTC)
    cut_day = local_date(ms(cutoff), KOLKATA)  # 1 March 05:30 local: this day loses its start
    after = snapshot(dsn, schema)

    def kept(rows: list[tuple[Any, ...]], at: int) -> list[tuple[Any, ...]]:
        return [r for r in rows if r[at] >= cutoff]

    def moved(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*row[:17], row[18])  # all but updated_at, which the redelivery refreshed

    assert [moved(r) for r in after["windows"]] == [moved(r) for r in kept(before["windows"], 1)]
    assert {r[0] for r in after["meters"]} == {"ece-1", "ece-2", "lib-1"}  # not old-1
    # the days after the cut are as they were; the day of the cut counts what is left of it
    for name, at in (("hourly", 0), ("daily", 0), ("campus", 0)):
        untouched = [r for r in before[name] if _day(r[at]) > cut_day]
        assert [r for r in after[name] if _day(r[at]) > cut_day] == untouched, name
        assert all(_day(r[at]) >= cut_day for r in after[name]), name
    left = {
        m: sum(
            d.items[0].energy_wh
            for d in deltas
            if d.meter_id == m
            and d.window_start_ms >= ms(cutoff)
            and local_date(d.window_start_ms, KOLKATA) == cut_day
        )
        for m in ("ece-1", "ece-2", "lib-1")
    }
    with psycopg.connect(dsn) as conn:
        daily = dict(
            conn.execute(
                f"SELECT meter_id, energy_wh FROM {schema}.rollup_daily WHERE day = %s", (cut_day,)
            ).fetchall()
        )
        campus = conn.execute(
            f"SELECT energy_wh FROM {schema}.rollup_daily_campus WHERE day = %s", (cut_day,)
        ).fetchone()
        hourly = conn.execute(
            f"SELECT sum(energy_wh) FROM {schema}.rollup_hourly WHERE hour_start < %s",
            (datetime(2026, 3, 1, 18, 30, tzinfo=UTC),),
        ).fetchone()
    assert daily == pytest.approx(left) and min(left.values()) > 0
    assert campus == pytest.approx((sum(left.values()),))
    assert hourly == pytest.approx((sum(left.values()),))


def _day(value: Any) -> date:
    """The local day of a rollup row's key (a day, or an hour's start)."""
    return value if not isinstance(value, datetime) else local_date(ms(value), KOLKATA)


# --- several bridges --------------------------------------------------------------------------


async def test_bridges_merging_the_same_windows_at_once_across_a_month_stay_exact(
    postgres_dsn: tuple[str, str],
) -> None:
    dsn, schema = postgres_dsn
    rng = random.Random(5)
    bridges, meters = 4, ("ece-1", "ece-2", "lib-1")
    # 22:00Z on 31 January to 02:00Z on 1 February: a UTC month and a Berlin midnight inside
    starts = [utc(2026, 1, 31, 22, 0) + k * WINDOW_S * 1000 for k in range(48)]
    now = utc(2026, 2, 1, 2, 5)
    # each bridge holds one reading of every window (its own seqs): all of them overlap
    shares = [
        [
            delta(meter, start, 1_000_000 * b + k, rng.uniform(0.1, 40.0))
            for k, (meter, start) in enumerate((m, s) for m in meters for s in starts)
        ]
        for b in range(bridges)
    ]

    async def bridge(own: list[WindowDelta]) -> None:
        order = rng.sample(own, len(own))
        again = rng.sample(own, len(own) // 5)  # redelivered after a reconnect
        writer = sink(dsn, schema, BERLIN)
        try:
            at = 0
            while at < len(order):
                size = rng.randint(1, 25)
                await writer.merge(order[at : at + size], now)
                at += size
            await writer.merge(again, now)
        finally:
            await writer.close()

    await asyncio.gather(*(bridge(own) for own in shares))

    expected = sum(d.items[0].energy_wh for own in shares for d in own)
    with psycopg.connect(dsn) as conn:
        windows = conn.execute(
            f"SELECT count(*), count(DISTINCT (meter_id, window_start)), sum(total_energy_wh), "
            f"min(readings_in_batch), max(readings_in_batch) FROM {schema}.window_aggregates"
        ).fetchone()
        rollups = [
            conn.execute(f"SELECT sum(energy_wh) FROM {schema}.{table}").fetchone()
            for table in ("rollup_hourly", "rollup_daily", "rollup_daily_campus")
        ]
        counted = conn.execute(
            f"SELECT sum(readings), sum(windows) FROM {schema}.rollup_daily"
        ).fetchone()
    assert windows is not None
    count, distinct, energy, fewest, most = windows
    assert count == distinct == len(meters) * len(starts)
    assert energy == pytest.approx(expected, abs=1e-6)
    assert fewest == most == bridges
    assert all(r is not None and r[0] == pytest.approx(expected, abs=1e-6) for r in rollups)
    assert counted == (bridges * len(meters) * len(starts), len(meters) * len(starts))
    assert partitions_of(dsn, schema) == [
        "window_aggregates_p2026_01",
        "window_aggregates_p2026_02",
        "window_aggregates_p2026_03",
    ]


async def test_a_store_of_the_old_layout_is_read_and_keeps_its_grants_when_moved(
    postgres_dsn: tuple[str, str],
) -> None:
    """Before an upgraded bridge opens it, the API reads a store without sites (its meters
    are the default site's); once moved into partitions, the roles granted the old windows
    table (Grafana's reader) may still read it."""
    dsn, schema = postgres_dsn
    deltas = months_of_windows(random.Random(7))
    await merged(dsn, schema, KOLKATA, deltas, utc(2026, 5, 31, 20, 0))
    to_old_layout(dsn, schema)
    reader = f"reader_{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {reader}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
        conn.execute(f"GRANT SELECT ON {schema}.window_aggregates TO {reader}")
    try:
        source = PostgresSource(PostgresSinkConfig(dsn=dsn, schema=schema))
        try:
            found = source.meters()
            assert found and {m.site for m in found} == {""}
        finally:
            source.close()
        opened = sink(dsn, schema, KOLKATA)  # an upgraded bridge opens it: the move
        try:
            assert len(await opened.windows(0, utc(2027, 1, 1), None)) == len(deltas)
        finally:
            await opened.close()
        assert kind_of(dsn, schema) == "p"
        with psycopg.connect(dsn, autocommit=True) as conn:
            allowed = conn.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT')",
                (reader, f"{schema}.window_aggregates"),
            ).fetchone()
            assert allowed == (True,)
            conn.execute(f"SET ROLE {reader}")
            count = conn.execute(f"SELECT count(*) FROM {schema}.window_aggregates").fetchone()
            conn.execute("RESET ROLE")
        assert count == (len(deltas),)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {reader}")
            conn.execute(f"DROP ROLE {reader}")
