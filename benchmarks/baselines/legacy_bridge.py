"""The legacy bridge: readings buffered by arrival, one averaged document per batch.

Minimal but faithful: every `batch` arrivals (what "300 s of uptime" brought at
the real-time rate) become one `readings_5min_avg` row whatever meters they came
from, labelled with the first message's meter and building, stamped with the
flush time, powers averaged by sample count, a uuid4 id (so a retry writes a
second document), a commit per document. It stores no energy.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campus_energy.core.timestamps import epoch_ms, iso_utc

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS readings_5min_avg (id TEXT PRIMARY KEY, meter_id TEXT, "
    "building TEXT, timestamp TEXT, avg_power_w REAL, avg_voltage_v REAL, avg_current_a REAL, "
    "avg_power_factor REAL, readings_in_batch INTEGER)"
)
INSERT = "INSERT INTO readings_5min_avg VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# what was written: documents, distinct meter ids, and two estimates of the energy (Wh)
# a reader could make of them: Σ avg power × 300 s, and Σ avg power × n × 5 s
SUMMARY = (
    "SELECT count(*), count(DISTINCT meter_id), sum(avg_power_w * 300 / 3600.0), "
    "sum(avg_power_w * readings_in_batch * 5 / 3600.0) FROM readings_5min_avg"
)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute(SCHEMA)
    conn.commit()
    return conn


def average(batch: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    """The batch document: first message's meter and building, means by sample count."""
    n = len(batch)

    def mean(key: str) -> float:
        return sum(float(m.get(key) or 0.0) for m in batch) / n

    first = batch[0]
    return (
        str(uuid.uuid4()),  # a retry writes a second document
        first.get("meter_id"),
        first.get("building"),
        iso_utc(epoch_ms(time.time())),  # flush time: the bridge's uptime, not the readings'
        mean("power_w"),
        mean("voltage_v"),
        mean("current_a"),
        mean("power_factor"),
        n,
    )


def write(conn: sqlite3.Connection, doc: tuple[Any, ...]) -> None:
    conn.execute(INSERT, doc)
    conn.commit()


@dataclass
class BatchInfo:
    meters: int  # distinct meters mixed into the document
    labelled: str  # the meter_id it was written under


class LegacyBridge:
    """The legacy bridge's receiving side: `receive` each payload, `flush` what is left."""

    def __init__(self, path: Path, batch: int) -> None:
        self.conn = connect(path)
        self.batch = batch
        self.buffer: list[dict[str, Any]] = []
        self.batches: list[BatchInfo] = []
        self.received = 0

    def receive(self, payload: bytes) -> None:
        self.buffer.append(json.loads(payload))
        self.received += 1
        if len(self.buffer) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        write(self.conn, average(self.buffer))
        meters = {m.get("meter_id") for m in self.buffer}
        self.batches.append(BatchInfo(len(meters), self.buffer[0]["meter_id"]))
        self.buffer.clear()

    def summary(self) -> tuple[Any, ...]:
        """(documents, meter ids, Σ avg power × 300 s, Σ avg power × n × 5 s)."""
        found: tuple[Any, ...] = self.conn.execute(SUMMARY).fetchone()
        return found

    def close(self) -> None:
        self.conn.close()
