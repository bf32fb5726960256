"""The SQLite window sink (`bridge.sqlite.path`): the embedded default, read by the API."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from campus_energy.adapters.sqlite import SqliteFile, transaction
from campus_energy.core.windows import Accumulator, WindowDelta, window_document
from campus_energy.errors import SinkError

SCHEMA = """
CREATE TABLE IF NOT EXISTS window_aggregates (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    total_energy_wh REAL NOT NULL,
    avg_power_w REAL,
    min_power_w REAL,
    max_power_w REAL,
    avg_voltage_v REAL,
    avg_current_a REAL,
    avg_power_factor REAL,
    avg_frequency_hz REAL,
    readings_in_batch INTEGER NOT NULL,
    coverage REAL NOT NULL,
    updated_at TEXT NOT NULL,
    accumulator TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS window_aggregates_meter_start
    ON window_aggregates (meter_id, window_start_ms);
CREATE INDEX IF NOT EXISTS window_aggregates_start ON window_aggregates (window_start_ms)
"""


def iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SqliteSink(SqliteFile):
    name = "sqlite"
    label = "window sink"
    error = SinkError
    schema = SCHEMA

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                for delta in deltas:
                    row = conn.execute(
                        "SELECT accumulator FROM window_aggregates WHERE id = ?",
                        (delta.document_id,),
                    ).fetchone()
                    existing = Accumulator.from_dict(json.loads(row[0])) if row else None
                    doc = window_document(delta, existing, now_ms)
                    fields = doc.fields(iso_seconds)
                    fields["updated_at"] = iso_seconds(now_ms)
                    columns = ["id", *fields, "window_start_ms", "accumulator"]
                    values = [
                        doc.document_id,
                        *fields.values(),
                        doc.window_start_ms,
                        json.dumps(doc.accumulator.to_dict()),
                    ]
                    conn.execute(
                        f"INSERT OR REPLACE INTO window_aggregates ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' for _ in columns)})",
                        values,
                    )
            return len(deltas)

        return await self._call(work)
