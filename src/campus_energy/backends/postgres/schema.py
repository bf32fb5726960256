"""The PostgreSQL window store's schema: the windows table, its rollups, and their creation.

Table `<schema>.window_aggregates`, primary key (meter_id, window_start): one row
per meter per window, the contract's fields, its `site` and the `accumulator` the
sink merges into. It is partitioned by UTC month of `window_start` (`partitions`),
or a TimescaleDB hypertable where the server offers the extension (`hypertable`);
a table of the older, unpartitioned layout is moved into partitions when a sink
first opens the schema. The rollup tables hold sums by local hour and local day of
the site's zone (which is recorded in `sink_meta` with their layout: a change drops
and rebuilds them), an hour's row also with the energy of each of its quarter hours
(`q0_wh`..`q3_wh`), a day's row with the day's highest 15-, 30- and 60-minute interval
of its meter (`peak15_wh`, `peak15_start` its start, the earliest of equals; NULL only
within a merge's transaction, before its hours are read); `window_meters` each meter's
latest window (and its site). Windows carry their measured import (`total_energy_wh`,
again as `import_energy_wh`), export and net, and the estimates of gaps the meters'
registers bridged; every rollup the export (`export_wh`) and the estimates
(`estimated_wh`, `estimated_export_wh`) beside the import (`energy_wh`). The sink creates
and writes them; the source reads the same tables.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from campus_energy.backends.postgres import hypertable, partitions

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
    "site",
    "import_energy_wh",
    "export_energy_wh",
    "net_energy_wh",
    "estimated_energy_wh",
    "estimated_export_wh",
    "accumulator",
)

# The windows table, unpartitioned: what a hypertable starts from (and what `doctor` writes
# to, rolled back). The primary key holds the partition key, as a partitioned table needs.
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
    site TEXT NOT NULL DEFAULT '',
    import_energy_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    export_energy_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    net_energy_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_energy_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    accumulator JSONB NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (meter_id, window_start)
)
"""
PARTITIONED_TABLE = TABLE.rstrip() + " PARTITION BY RANGE (window_start)"
# What a table of the older layout lacks (added in place: `ADD COLUMN … DEFAULT ''` rewrites
# nothing). A window written before directions has no export and no estimate (0 is right).
ADDED_COLUMNS = {
    "windows": {
        "site": "TEXT NOT NULL DEFAULT ''",
        "import_energy_wh": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "export_energy_wh": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "net_energy_wh": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "estimated_energy_wh": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "estimated_export_wh": "DOUBLE PRECISION NOT NULL DEFAULT 0",
    },
    "meters": {"site": "TEXT NOT NULL DEFAULT ''"},
}
# Columns an older table's rows are given when they are added: its import and net are its
# measured energy (every window so far an import). The one update rewrites the table's
# rows once, at the upgrade (docs/deployment.md).
FILLED_ON_ADD = {"import_energy_wh": "total_energy_wh", "net_energy_wh": "total_energy_wh"}

Layout = Literal["partitions", "hypertable"]

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
    export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
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
    export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (day, meter_id)
);
CREATE INDEX IF NOT EXISTS rollup_daily_by_meter ON {daily} (meter_id, day);
CREATE TABLE IF NOT EXISTS {campus} (
    day DATE PRIMARY KEY,
    energy_wh DOUBLE PRECISION NOT NULL,
    covered_s DOUBLE PRECISION NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    last_window TIMESTAMPTZ NOT NULL,
    export_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_export_wh DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {meters} (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    last_window TIMESTAMPTZ NOT NULL,
    last_avg_power_w DOUBLE PRECISION,
    last_coverage DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    site TEXT NOT NULL DEFAULT ''
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
                      updated_at, site)
SELECT DISTINCT ON (meter_id) meter_id, building, floor, window_start, avg_power_w, coverage,
       updated_at, site
FROM {windows} ORDER BY meter_id, window_start DESC;
INSERT INTO {hourly} (hour_start, meter_id, energy_wh, covered_s, readings, windows,
                      q0_wh, q1_wh, q2_wh, q3_wh, export_wh, estimated_wh, estimated_export_wh)
SELECT window_start - into_hour, meter_id, sum(total_energy_wh),
       sum((accumulator->>'covered_s')::float8), sum(readings_in_batch), count(*),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour < interval '15 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '15 minutes'
                                             AND into_hour < interval '30 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '30 minutes'
                                             AND into_hour < interval '45 minutes'), 0),
       coalesce(sum(total_energy_wh) FILTER (WHERE into_hour >= interval '45 minutes'), 0),
       sum(export_energy_wh), sum(estimated_energy_wh), sum(estimated_export_wh)
FROM {windows},
     LATERAL (SELECT (window_start AT TIME ZONE %(zone)s)
                     - date_trunc('hour', window_start AT TIME ZONE %(zone)s) AS into_hour) h
GROUP BY 1, 2;
INSERT INTO {daily} (day, meter_id, energy_wh, covered_s, readings, windows, last_window,
                     export_wh, estimated_wh, estimated_export_wh)
SELECT (window_start AT TIME ZONE %(zone)s)::date, meter_id, sum(total_energy_wh),
       sum((accumulator->>'covered_s')::float8), sum(readings_in_batch), count(*),
       max(window_start), sum(export_energy_wh), sum(estimated_energy_wh),
       sum(estimated_export_wh)
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
INSERT INTO {campus} (day, energy_wh, covered_s, readings, windows, last_window, export_wh,
                      estimated_wh, estimated_export_wh)
SELECT day, sum(energy_wh), sum(covered_s), sum(readings), sum(windows), max(last_window),
       sum(export_wh), sum(estimated_wh), sum(estimated_export_wh)
FROM {daily} GROUP BY day
"""

# bump when the rollup tables change: existing schemas drop and rebuild them from the windows
# (6: export, estimated import and estimated export beside the measured import)
ROLLUP_LAYOUT = 6


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
) -> Layout:
    """Create what is missing of the schema, move an unpartitioned windows table into monthly
    partitions, add the columns an older layout lacks, and rebuild the rollups when the
    site's zone or their layout changed (they are sums by local hour and day). Concurrent
    callers take turns; a rebuild or a move holds off every writer of the windows until it
    commits, as `replace` does. Returns how the windows table is split."""
    names = table_names(schema_name)
    async with conn.transaction():
        # Bridges starting together would race on CREATE … IF NOT EXISTS: take turns.
        await conn.execute(partitions.SCHEMA_LOCK)
        # CREATE SCHEMA needs the CREATE right on the database even when the schema exists:
        # only ask for it when the schema is really missing.
        found = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema_name,))
        if await found.fetchone() is None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name))
            )
        layout = await _windows_table(conn, schema_name, names["windows"])
        for statement in ROLLUPS.split(";\n"):
            await conn.execute(sql.SQL(statement).format(**names))
        for role, columns in ADDED_COLUMNS.items():
            await _add_columns(conn, schema_name, TABLES[role], columns)
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
    return layout


async def _kind(conn: psycopg.AsyncConnection[Any], schema: str, name: str) -> str | None:
    """The relation's pg_class.relkind ('r' a plain table, 'p' a partitioned one), or None."""
    found = await conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    row = await found.fetchone()
    return None if row is None else str(row[0])


async def _windows_table(
    conn: psycopg.AsyncConnection[Any], schema: str, table: sql.Identifier
) -> Layout:
    """The windows table as it should be: partitioned by month (made so, when it is a plain
    table), or a hypertable where TimescaleDB is offered and the table is not partitioned."""
    kind = await _kind(conn, schema, partitions.TABLE_NAME)
    if kind != "p" and await hypertable.wanted(conn):
        await _add_columns(conn, schema, partitions.TABLE_NAME, ADDED_COLUMNS["windows"])
        await conn.execute(sql.SQL(TABLE).format(table=table))
        await hypertable.convert(conn, schema)
        return "hypertable"
    if kind is None:
        await conn.execute(sql.SQL(PARTITIONED_TABLE).format(table=table))
    elif kind == "r":
        await _partition(conn, schema, table)
    return "partitions"


async def _partition(
    conn: psycopg.AsyncConnection[Any], schema: str, table: sql.Identifier
) -> None:
    """Move the plain windows table into monthly partitions, in the caller's transaction:
    rename it, create the partitioned table (with the old one's grants to other roles) and
    the partitions its windows need, copy the windows (the columns both layouts have), drop
    the old table. Writers wait meanwhile."""
    old_name = f"{partitions.TABLE_NAME}_unpartitioned"
    old = sql.Identifier(schema, old_name)
    await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
    await conn.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(table, sql.Identifier(old_name))
    )
    # Its primary key's index keeps its name, which the new table's wants.
    keys = await conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (f"{schema}.{old_name}",),
    )
    for (key,) in await keys.fetchall():
        await conn.execute(
            sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                old, sql.Identifier(key), sql.Identifier(f"{old_name}_pkey")
            )
        )
    # Who else may read or write it (Grafana's reader, the API's role): granted again below.
    acl = await conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
        "a.privilege_type, a.is_grantable FROM pg_class c CROSS JOIN LATERAL "
        "aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
        (f"{schema}.{old_name}",),
    )
    grants = await acl.fetchall()
    await conn.execute(sql.SQL(PARTITIONED_TABLE).format(table=table))
    for grantee, privilege, grantable in grants:  # names from the catalogue, quoted there
        option = " WITH GRANT OPTION" if grantable else ""
        await conn.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege), table, sql.SQL(grantee), sql.SQL(option)
            )
        )
    months = await conn.execute(
        sql.SQL(
            "SELECT DISTINCT date_trunc('month', window_start AT TIME ZONE 'UTC')::date FROM {}"
        ).format(old)
    )
    async with conn.cursor() as cur:
        await partitions.create(cur, schema, [m for (m,) in await months.fetchall()])
    have = await _columns(conn, schema, old_name)
    # what the old table lacks and is filled on an upgrade (FILLED_ON_ADD): computed here
    copied = [c for c in COLUMNS if c in have or c in FILLED_ON_ADD]
    values = [sql.Identifier(c) if c in have else sql.SQL(FILLED_ON_ADD[c]) for c in copied]
    await conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            table,
            sql.SQL(", ").join(sql.Identifier(c) for c in copied),
            sql.SQL(", ").join(values),
            old,
        )
    )
    await conn.execute(sql.SQL("DROP TABLE {}").format(old))


async def _columns(conn: psycopg.AsyncConnection[Any], schema: str, table: str) -> set[str]:
    found = await conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    )
    return {str(name) for (name,) in await found.fetchall()}


async def _add_columns(
    conn: psycopg.AsyncConnection[Any], schema: str, table: str, columns: dict[str, str]
) -> None:
    """Add the columns an existing table lacks (asking first: ALTER TABLE would lock it even
    when nothing is missing)."""
    have = await _columns(conn, schema, table)
    if not have:
        return  # no such table (yet)
    added = [name for name in columns if name not in have]
    for name in added:
        await conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(schema, table), sql.Identifier(name), sql.SQL(columns[name])
            )
        )
    filled = [name for name in added if name in FILLED_ON_ADD]
    if filled:
        await conn.execute(
            sql.SQL("UPDATE {} SET {}").format(
                sql.Identifier(schema, table),
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(n), sql.SQL(FILLED_ON_ADD[n]))
                    for n in filled
                ),
            )
        )
