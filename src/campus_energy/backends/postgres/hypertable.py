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
    """The server offers TimescaleDB and it is (or could now be) created in this database. A
    refusal (not preloaded, no right to create it) leaves native partitions."""
    found = await conn.execute(
        "SELECT installed_version IS NOT NULL FROM pg_available_extensions "
        "WHERE name = 'timescaledb'"
    )
    row = await found.fetchone()
    if row is None:
        return False
    if row[0]:
        return True
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the caller's transaction
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error:
        return False
    return True


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
