"""The PostgreSQL window sink (psycopg 3): the self-hosted path; Grafana can read it directly.

Table `<schema>.window_aggregates`, primary key (meter_id, window_start). A
merge runs in one transaction: missing rows are created empty
(`ON CONFLICT DO NOTHING`), every row is then locked with `SELECT … FOR
UPDATE`, so two bridges merging the same window take turns and neither
overwrites the other. With the TimescaleDB extension the table becomes a
hypertable on `window_start`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from campus_energy.config import PostgresSinkConfig
from campus_energy.core.windows import Accumulator, WindowDelta, window_document
from campus_energy.errors import SinkError

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


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def endpoint(dsn: str) -> str:
    """host:port/dbname of a DSN, without user or password (for messages)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgres (unparsable DSN)"
    host, port = parts.get("host", "localhost"), parts.get("port", 5432)
    return f"postgres {host}:{port}/{parts.get('dbname', '')}"


class PostgresSink:
    name = "postgres"

    def __init__(self, config: PostgresSinkConfig) -> None:
        if not config.dsn:
            raise SinkError("postgres sink: bridge.postgres.dsn is not set")
        self.config = config
        self.where = endpoint(config.dsn)
        self.table = sql.Identifier(config.schema_name, "window_aggregates")
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        assert self.config.dsn is not None
        conn = await psycopg.AsyncConnection.connect(self.config.dsn, connect_timeout=10)
        try:
            await self._create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _create_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            # Bridges starting together would race on CREATE … IF NOT EXISTS: take turns.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('campus_energy.schema'))")
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.config.schema_name)
                )
            )
            await conn.execute(sql.SQL(TABLE).format(table=self.table))
            timescale = await (
                await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            ).fetchone()
            if timescale:
                await conn.execute(
                    "SELECT create_hypertable(%s, 'window_start', if_not_exists => TRUE, "
                    "migrate_data => TRUE)",
                    (f"{self.config.schema_name}.window_aggregates",),
                )

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        if not deltas:
            return 0
        try:
            conn = await self._connection()
            async with conn.transaction():
                await self._merge(conn, deltas, now_ms)
        except psycopg.Error as exc:
            await self._drop()
            raise SinkError(f"{self.where}: {type(exc).__name__}: {exc}".strip()) from None
        except OSError as exc:
            await self._drop()
            raise SinkError(f"{self.where}: {exc}") from None
        return len(deltas)

    async def _merge(
        self, conn: psycopg.AsyncConnection[Any], deltas: Sequence[WindowDelta], now_ms: int
    ) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                sql.SQL(
                    'INSERT INTO {} (meter_id, window_start, id, window_end, "timestamp") '
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(self.table),
                [
                    (
                        d.meter_id,
                        _when(d.window_start_ms),
                        d.document_id,
                        _when(d.window_start_ms + d.window_s * 1000),
                        _when(d.window_start_ms),
                    )
                    for d in deltas
                ],
            )
            keys = [(d.meter_id, _when(d.window_start_ms)) for d in deltas]
            await cur.execute(
                sql.SQL(
                    "SELECT meter_id, window_start, accumulator FROM {} "
                    "WHERE (meter_id, window_start) IN (SELECT * FROM unnest(%s::text[], "
                    "%s::timestamptz[])) ORDER BY meter_id, window_start FOR UPDATE"
                ).format(self.table),
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
            held = {(m, w): acc for m, w, acc in await cur.fetchall()}
            rows = []
            for d in deltas:
                existing = Accumulator.from_dict(held.get((d.meter_id, _when(d.window_start_ms))))
                doc = window_document(d, existing, now_ms)
                fields = doc.fields(_when)
                rows.append(
                    (
                        *(fields[c] for c in COLUMNS[3:-1] if c in fields),
                        json.dumps(doc.accumulator.to_dict()),
                        d.meter_id,
                        _when(d.window_start_ms),
                    )
                )
            updated = list(COLUMNS[3:-1])
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in [*updated, "accumulator"]
            )
            await cur.executemany(
                sql.SQL("UPDATE {} SET {} WHERE meter_id = %s AND window_start = %s").format(
                    self.table, assignments
                ),
                rows,
            )

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._drop()
