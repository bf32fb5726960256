"""The bridge's spool: received readings, as window contributions, until their window is written.

A message is acknowledged to the broker only after its contributions are
committed here, so a bridge killed at any moment loses nothing: on restart
the spool is still there, and the broker redelivers what was not acknowledged.
Duplicates (QoS 1 redelivery, a logger's outbox replay) land on the same
primary key and are ignored. Malformed messages are kept in `dead_letters`
with their raw bytes and the reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from campus_energy.adapters.sqlite import SqliteFile, transaction
from campus_energy.core.windows import Contribution, IncomingReading
from campus_energy.errors import SpoolError

SCHEMA = """
CREATE TABLE IF NOT EXISTS contributions (
    meter_id TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    in_window INTEGER NOT NULL,
    power_w REAL,
    voltage_v REAL,
    current_a REAL,
    power_factor REAL,
    frequency_hz REAL,
    PRIMARY KEY (meter_id, window_start_ms, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contributions_by_window ON contributions (window_start_ms);
CREATE TABLE IF NOT EXISTS meters (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL DEFAULT '',
    floor TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_kind ON dead_letters (kind)
"""

_COLUMNS = (
    "meter_id",
    "window_start_ms",
    "seq",
    "energy_wh",
    "covered_s",
    "in_window",
    "power_w",
    "voltage_v",
    "current_a",
    "power_factor",
    "frequency_hz",
)


@dataclass(frozen=True)
class DeadLetter:
    received_ms: int
    topic: str
    payload: bytes
    kind: str
    reason: str


def _row(c: Contribution) -> tuple[object, ...]:
    return (
        c.meter_id,
        c.window_start_ms,
        c.seq,
        c.energy_wh,
        c.covered_s,
        int(c.in_window),
        c.power_w,
        c.voltage_v,
        c.current_a,
        c.power_factor,
        c.frequency_hz,
    )


class Spool(SqliteFile):
    label = "spool"
    error = SpoolError
    schema = SCHEMA
    synchronous = "FULL"  # an acknowledged message must survive power loss

    async def add(
        self,
        readings: Sequence[IncomingReading],
        items: Sequence[Contribution],
        dead: Sequence[DeadLetter] = (),
    ) -> int:
        """Record a batch in one transaction; returns how many contributions were new."""

        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                before = conn.total_changes
                conn.executemany(
                    f"INSERT OR IGNORE INTO contributions ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
                    [_row(c) for c in items],
                )
                added = conn.total_changes - before
                conn.executemany(
                    "INSERT INTO meters (meter_id, building, floor) VALUES (?, ?, ?) "
                    "ON CONFLICT (meter_id) DO UPDATE SET building = excluded.building, "
                    "floor = excluded.floor",
                    {(r.meter_id, r.building, r.floor) for r in readings},
                )
                conn.executemany(
                    "INSERT INTO dead_letters (received_ms, topic, payload, kind, reason) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(d.received_ms, d.topic, d.payload, d.kind, d.reason) for d in dead],
                )
                return added

        return await self._call(work)

    async def due(self, before_ms: int | None, window_ms: int, limit: int) -> list[tuple[str, int]]:
        """(meter_id, window_start_ms) of windows ending at or before `before_ms` (None: all)."""

        def work(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            horizon = (before_ms - window_ms) if before_ms is not None else 2**62
            return [
                (m, w)
                for m, w in conn.execute(
                    "SELECT DISTINCT meter_id, window_start_ms FROM contributions "
                    "WHERE window_start_ms <= ? ORDER BY window_start_ms, meter_id LIMIT ?",
                    (horizon, limit),
                )
            ]

        return await self._call(work)

    async def load(
        self, keys: Iterable[tuple[str, int]]
    ) -> tuple[list[Contribution], dict[str, tuple[str, str]]]:
        """The contributions of these windows, and (building, floor) of their meters."""
        wanted = list(keys)

        def work(conn: sqlite3.Connection) -> tuple[list[Contribution], dict[str, tuple[str, str]]]:
            found: list[Contribution] = []
            for meter_id, start in wanted:
                for row in conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM contributions "
                    "WHERE meter_id = ? AND window_start_ms = ?",
                    (meter_id, start),
                ):
                    found.append(
                        Contribution(row[0], row[1], row[2], row[3], row[4], bool(row[5]), *row[6:])
                    )
            meta = {
                m: (b, f)
                for m, b, f in conn.execute("SELECT meter_id, building, floor FROM meters")
            }
            return found, meta

        return await self._call(work)

    async def remove(self, items: Iterable[Contribution]) -> None:
        """Forget contributions that the sink has durably merged."""
        keys = [(c.meter_id, c.window_start_ms, c.seq) for c in items]

        def work(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(
                    "DELETE FROM contributions WHERE meter_id = ? AND window_start_ms = ? "
                    "AND seq = ?",
                    keys,
                )

        await self._call(work)

    async def pending(self) -> int:
        return int(
            (
                await self._call(
                    lambda c: c.execute("SELECT count(*) FROM contributions").fetchone()
                )
            )[0]
        )

    async def prune_dead_letters(self, before_ms: int) -> int:
        """Forget dead letters received before `before_ms`; returns how many."""

        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return conn.execute(
                    "DELETE FROM dead_letters WHERE received_ms < ?", (before_ms,)
                ).rowcount

        return await self._call(work)

    async def dead_letter_counts(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT kind, count(*) FROM dead_letters GROUP BY kind"))

        return await self._call(work)
