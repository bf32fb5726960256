"""The legacy logger's storage: a `meter_readings` row per reading, a connection and commit each."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meter_readings (meter_id TEXT, "
    "timestamp TEXT DEFAULT (datetime('now','localtime')), voltage REAL, current REAL, "
    "power REAL, energy_wh_interval REAL, pf REAL)"
)
INSERT = (
    "INSERT INTO meter_readings (meter_id, voltage, current, power, energy_wh_interval, pf) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_STAMPED = (
    "INSERT INTO meter_readings (meter_id, timestamp, voltage, current, power, "
    "energy_wh_interval, pf) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# a row: (meter_id, voltage, current, power, energy_wh_interval, pf, ts_ms)
Row = tuple[Any, ...]


def create(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(SCHEMA)
    finally:
        conn.close()


def write(path: Path, row: Row) -> None:
    """One reading as the legacy logger wrote it: connect, INSERT, commit, close."""
    conn = sqlite3.connect(path)
    conn.execute(INSERT, row[:6])
    conn.commit()
    conn.close()


def timestamp(ts_ms: int, zone: ZoneInfo) -> str:
    """The legacy `timestamp` column: local time to the second, as text."""
    return datetime.fromtimestamp(ts_ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")


def bulk(path: Path, rows: Iterable[Row], zone: ZoneInfo) -> None:
    """The same rows in one transaction (to measure the table's size, not its speed)."""
    create(path)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(INSERT_STAMPED, ((r[0], timestamp(r[6], zone), *r[1:6]) for r in rows))
    finally:
        conn.close()
