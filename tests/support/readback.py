"""Reading a service's SQLite files from outside while it runs, as the dashboard would (WAL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the file `db`, read-only; none while the file or table is missing."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # not created yet
        raise
    finally:
        conn.close()


def count(db: Path, meter_id: str | None = None) -> int:
    """Readings in the logger's store (0 while it does not exist yet)."""
    if meter_id is None:
        found = query(db, "SELECT count(*) FROM readings")
    else:
        found = query(db, "SELECT count(*) FROM readings WHERE meter_id = ?", (meter_id,))
    return int(found[0][0]) if found else 0
