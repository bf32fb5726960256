"""The PostgreSQL window store's schema: the windows table, its rollups, and their creation.

Table `<schema>.window_aggregates`, primary key (meter_id, window_start): one row
per meter per window, the contract's fields and the `accumulator` the sink merges
into. The rollup tables hold sums by local hour and local day of the site's zone
(which is recorded in `sink_meta` with their layout: a change drops and rebuilds
them), an hour's row also with the energy of each of its quarter hours
(`q0_wh`..`q3_wh`), a day's row with the day's highest 15-, 30- and 60-minute interval
of its meter (`peak15_wh`, `peak15_start` its start, the earliest of equals; NULL only
within a merge's transaction, before its hours are read); `window_meters` each meter's
latest window. The sink creates
and writes them; the source reads the same tables.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

COLUMNS = (
    "meter_id",
    "window_start",
    "id",
    "building",
    "floor",
    "window_end",
    "timestamp",
    "total_energy_wh",
    "avg_power_w",
    "min_power_w",
    "max_power_w",
    "avg_voltage_v",
    "avg_current_a",
    "avg_power_factor",
    "avg_frequency_hz",
    "readings_in_batch",
    "coverage",
    "updated_at",
    "accumulator",
)

TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
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


ROLLUPS = """
CREATE TABLE IF NOT EXISTS {hourly} (
    hour_start TIMESTAMPTZ NOT NULL,
    meter_id TEXT NOT NULL,
    energy_wh DOUBLE PRECISION NOT NULL,
    covered_s DOUBLE PRECISION NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    q0_wh DOUBLE PRECISION NOT NULL,
    q1_wh DOUBLE PRECISION NOT NULL,
    q2_wh DOUBLE PRECISION NOT NULL,
    q3_wh DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hour_start, meter_id)
);
CREATE INDEX IF NOT EXISTS rollup_hourly_by_meter ON {hourly} (meter_id, hour_start);
CREATE TABLE IF NOT EXISTS {daily} (
    day DATE NOT NULL,
    meter_id TEXT NOT NULL,
    energy_wh DOUBLE PRECISION NOT NULL,
    covered_s DOUBLE PRECISION NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    last_window TIMESTAMPTZ NOT NULL,
    peak15_wh DOUBLE PRECISION,
    peak15_start TIMESTAMPTZ,
    peak30_wh DOUBLE PRECISION,
    peak30_start TIMESTAMPTZ,
    peak60_wh DOUBLE PRECISION,
    peak60_start TIMESTAMPTZ,
    PRIMARY KEY (day, meter_id)
);
CREATE INDEX IF NOT EXISTS rollup_daily_by_meter ON {daily} (meter_id, day);
CREATE TABLE IF NOT EXISTS {campus} (
    day DATE PRIMARY KEY,
    energy_wh DOUBLE PRECISION NOT NULL,
    covered_s DOUBLE PRECISION NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    last_window TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {meters} (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    last_window TIMESTAMPTZ NOT NULL,
    last_avg_power_w DOUBLE PRECISION,
    last_coverage DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
# What the rollup tables were (any older layout) goes: CREATE … IF NOT EXISTS would keep it.
DROP_ROLLUPS = "DROP TABLE IF EXISTS {hourly}, {daily}, {campus}"
# Every rollup counted from the windows, into rollup tables just created. A window's local
# hour starts `into_hour` before it: the local time's distance to its hour, so the hour
# repeated when clocks go back is two hours here too.
REBUILD = """
DELETE FROM {meters};
INSERT INTO {meters} (meter_id, building, floor, last_window, last_avg_power_w, last_coverage,
                      updated_at)
SELECT DISTINCT ON (meter_id) meter_id, building, floor, window_start, avg_power_w, coverage,
       updated_at
FROM {windows} ORDER BY meter_id, window_start DESC;
INSERT INTO {hourly} (hour_start, meter_id, energy_wh, covered_s, readings, windows,
                      q0_wh, q1_wh, q2_wh, q3_wh)
SELECT window_start - into_hour, meter_id, sum(total_energy_wh),
       sum((accumulator->>'covered_s')::float8), sum(readings_in_batch), count(*),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour < interval '15 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '15 minutes'
                                             AND into_hour < interval '30 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '30 minutes'
                                             AND into_hour < interval '45 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '45 minutes'), 0)
FROM {windows},
     LATERAL (SELECT (window_start AT TIME ZONE %(zone)s)
                     - date_trunc('hour', window_start AT TIME ZONE %(zone)s) AS into_hour) h
GROUP BY 1, 2;
INSERT INTO {daily} (day, meter_id, energy_wh, covered_s, readings, windows, last_window)
SELECT (window_start AT TIME ZONE %(zone)s)::date, meter_id, sum(total_energy_wh),
       sum((accumulator->>'covered_s')::float8), sum(readings_in_batch), count(*),
       max(window_start)
FROM {windows} GROUP BY 1, 2;
UPDATE {daily} d SET peak15_wh = p15.e, peak15_start = p15.s, peak30_wh = p30.e,
       peak30_start = p30.s, peak60_wh = p60.e, peak60_start = p60.s
FROM (SELECT DISTINCT ON (day, meter_id) day, meter_id, e, s
      FROM {hourly} r, LATERAL (SELECT (r.hour_start AT TIME ZONE %(zone)s)::date AS day) l,
           LATERAL (VALUES (r.q0_wh, r.hour_start),
                           (r.q1_wh, r.hour_start + interval '15 minutes'),
                           (r.q2_wh, r.hour_start + interval '30 minutes'),
                           (r.q3_wh, r.hour_start + interval '45 minutes')) AS v(e, s)
      ORDER BY day, meter_id, e DESC, s) p15,
     (SELECT DISTINCT ON (day, meter_id) day, meter_id, e, s
      FROM {hourly} r, LATERAL (SELECT (r.hour_start AT TIME ZONE %(zone)s)::date AS day) l,
           LATERAL (VALUES (r.q0_wh + r.q1_wh, r.hour_start),
                           (r.q2_wh + r.q3_wh, r.hour_start + interval '30 minutes')) AS v(e, s)
      ORDER BY day, meter_id, e DESC, s) p30,
     (SELECT DISTINCT ON (day, meter_id) day, meter_id,
             r.q0_wh + r.q1_wh + r.q2_wh + r.q3_wh AS e, r.hour_start AS s
      FROM {hourly} r, LATERAL (SELECT (r.hour_start AT TIME ZONE %(zone)s)::date AS day) l
      ORDER BY day, meter_id, e DESC, s) p60
WHERE p15.day = d.day AND p15.meter_id = d.meter_id AND p30.day = d.day
  AND p30.meter_id = d.meter_id AND p60.day = d.day AND p60.meter_id = d.meter_id;
INSERT INTO {campus} (day, energy_wh, covered_s, readings, windows, last_window)
SELECT day, sum(energy_wh), sum(covered_s), sum(readings), sum(windows), max(last_window)
FROM {daily} GROUP BY day
"""

ROLLUP_LAYOUT = 5  # bump when the rollup tables change: existing schemas drop and rebuild them


TABLES = {
    "windows": "window_aggregates",
    "hourly": "rollup_hourly",
    "daily": "rollup_daily",
    "meters": "window_meters",
    "meta": "sink_meta",
    "campus": "rollup_daily_campus",
}


def table_names(schema: str) -> dict[str, sql.Identifier]:
    """The sink's tables in `schema`, by role; the API's source reads the same ones."""
    return {role: sql.Identifier(schema, name) for role, name in TABLES.items()}


async def create_schema(
    conn: psycopg.AsyncConnection[Any], schema_name: str, zone: ZoneInfo
) -> None:
    """Create what is missing of the schema; rebuild the rollups when the site's zone or their
    layout changed (they are sums by local hour and day). Concurrent callers take turns; a
    rebuild holds off every writer of the windows until it commits, as `replace` does."""
    names = table_names(schema_name)
    async with conn.transaction():
        # Bridges starting together would race on CREATE … IF NOT EXISTS: take turns.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('campus_energy.schema'))")
        # CREATE SCHEMA needs the CREATE right on the database even when the schema exists:
        # only ask for it when the schema is really missing.
        found = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema_name,))
        if await found.fetchone() is None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name))
            )
        await conn.execute(sql.SQL(TABLE).format(table=names["windows"]))
        for statement in ROLLUPS.split(";\n"):
            await conn.execute(sql.SQL(statement).format(**names))
        recorded = await (
            await conn.execute(
                sql.SQL("SELECT value FROM {} WHERE key = 'rollup_zone'").format(names["meta"])
            )
        ).fetchone()
        wanted = f"{zone.key}|{ROLLUP_LAYOUT}"
        if recorded is None or recorded[0] != wanted:
            await conn.execute(
                sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(names["windows"])
            )
            await conn.execute(sql.SQL(DROP_ROLLUPS).format(**names))
            for statement in ROLLUPS.split(";\n"):
                await conn.execute(sql.SQL(statement).format(**names))
            for statement in REBUILD.split(";\n"):
                await conn.execute(sql.SQL(statement).format(**names), {"zone": zone.key})
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key, value) VALUES ('rollup_zone', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ).format(names["meta"]),
                (wanted,),
            )
        timescale = await (
            await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        ).fetchone()
        if timescale:
            await conn.execute(
                "SELECT create_hypertable(%s, 'window_start', if_not_exists => TRUE, "
                "migrate_data => TRUE)",
                (f"{schema_name}.window_aggregates",),
            )
