"""The TimescaleDB variant of the windows table: a hypertable on `window_start` with
one-month chunks, used instead of native partitions when the server offers the extension.

Untested here (the test server has no TimescaleDB): it is kept to these few
statements. Retention drops whole chunks and then deletes what is left before the
cutoff (chunks of "1 month" are 30 days, not calendar months), so the windows
kept start exactly at the cutoff, as with native partitions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql


async def wanted(conn: psycopg.AsyncConnection[Any]) -> bool:
    """TimescaleDB is created in this database (by its administrator: the sink never creates
    an extension itself). Otherwise: native partitions."""
    found = await conn.execute(
        "SELECT installed_version IS NOT NULL FROM pg_available_extensions "
        "WHERE name = 'timescaledb'"
    )
    row = await found.fetchone()
    return row is not None and bool(row[0])


async def convert(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    """Make the (plain) windows table a hypertable, moving any rows it holds into chunks."""
    await conn.execute(
        "SELECT create_hypertable(%s, 'window_start', chunk_time_interval => INTERVAL '1 month', "
        "if_not_exists => TRUE, migrate_data => TRUE)",
        (f"{schema}.window_aggregates",),
    )


async def drop_before(
    cur: psycopg.AsyncCursor[Any], schema: str, cutoff: datetime
) -> tuple[int, int]:
    """Drop the chunks wholly before `cutoff`, then the windows left before it; how many chunks
    and how many rows (of chunks the cutoff cuts) went."""
    await cur.execute(
        "SELECT drop_chunks(%s, older_than => %s)", (f"{schema}.window_aggregates", cutoff)
    )
    chunks = len(await cur.fetchall())
    await cur.execute(
        sql.SQL("DELETE FROM {} WHERE window_start < %s").format(
            sql.Identifier(schema, "window_aggregates")
        ),
        (cutoff,),
    )
    return chunks, max(cur.rowcount, 0)
