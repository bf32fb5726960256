"""Monthly partitions of `window_aggregates` (PostgreSQL's own `PARTITION BY RANGE`).

A partition holds one UTC calendar month of window starts and is named for it:
`window_aggregates_p2026_03` holds [2026-03-01T00:00Z, 2026-04-01T00:00Z). The sink
creates a month's partition before it writes a window of it; retention detaches and
drops the partitions of months that ended long enough ago. Creating and dropping
take the schema's advisory lock (the one `create_schema` takes), so bridges doing
either at once take turns and a partition is created once. Partitions named
otherwise (made by hand) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

from campus_energy.core.timestamps import utc_datetime

TABLE_NAME = "window_aggregates"
# Every change to the tables' layout (schema creation, partitions) takes this lock, in a
# transaction: bridges starting or rolling over a month together take turns.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('campus_energy.schema'))"
NAMED = re.compile(rf"^{TABLE_NAME}_p(\d{{4}})_(\d{{2}})$")
PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
    "WHERE n.nspname = %s AND p.relname = %s"
)


def month_of(ms: int) -> date:
    """The UTC calendar month (its first day) holding the instant `ms`."""
    moment = utc_datetime(ms)
    return date(moment.year, moment.month, 1)


def add_months(month: date, count: int) -> date:
    """The month `count` months after `month` (before it when negative)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{TABLE_NAME}_p{month.year:04d}_{month.month:02d}"


def month_named(name: str) -> date | None:
    """The month a partition of ours holds, from its name; None for any other table."""
    found = NAMED.match(name)
    return None if found is None else date(int(found[1]), int(found[2]), 1)


def month_start(month: date) -> datetime:
    """The first instant of a month, in UTC."""
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def retention_cutoff(now_ms: int, keep_months: int) -> date:
    """The first month retention keeps: every month before it ended more than `keep_months`
    months before `now_ms`. The current month (and any later one) is always kept."""
    if keep_months < 1:
        raise ValueError(f"keep_months must be at least 1, got {keep_months}")
    # A month ending exactly keep_months before now has not ended *more* than that ago.
    return add_months(month_of(now_ms - 1), -keep_months)


async def existing(cur: psycopg.AsyncCursor[Any], schema: str) -> set[date]:
    """The months whose partitions exist (ours, by name)."""
    await cur.execute(PARTITIONS_SQL, (schema, TABLE_NAME))
    months = {month_named(name) for (name,) in await cur.fetchall()}
    return {m for m in months if m is not None}


async def create(cur: psycopg.AsyncCursor[Any], schema: str, months: Collection[date]) -> None:
    """Create the partitions of `months` that are missing. The caller holds SCHEMA_LOCK, so no
    other bridge creates one meanwhile."""
    have = await existing(cur, schema)
    for month in sorted(set(months) - have):
        await cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(schema, partition_name(month)),
                sql.Identifier(schema, TABLE_NAME),
                sql.Literal(month_start(month).isoformat()),
                sql.Literal(month_start(add_months(month, 1)).isoformat()),
            )
        )


async def drop_before(cur: psycopg.AsyncCursor[Any], schema: str, cutoff: date) -> list[date]:
    """Detach and drop the partitions of the months before `cutoff`; the months dropped. The
    caller holds SCHEMA_LOCK and the table's ACCESS EXCLUSIVE lock (taken once, for all)."""
    gone = sorted(m for m in await existing(cur, schema) if add_months(m, 1) <= cutoff)
    for month in gone:
        name = sql.Identifier(schema, partition_name(month))
        await cur.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                sql.Identifier(schema, TABLE_NAME), name
            )
        )
        await cur.execute(sql.SQL("DROP TABLE {}").format(name))
    return gone
