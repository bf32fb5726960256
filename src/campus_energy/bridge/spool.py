"""The bridge's spool: received readings, as window contributions, until their window is written.

A message is acknowledged to the broker only after its contributions are
committed here, so a bridge killed at any moment loses nothing: on restart
the spool is still there, and the broker redelivers what was not acknowledged.
Each reading's (meter, seq) is remembered with a fingerprint of its values
and the windows it touches: in its own contribution rows while its windows
wait, then in `readings_seen` (the bridge prunes it after a day). The same
reading again (QoS 1 redelivery, a logger's outbox replay)
adds nothing. A *different* reading with the same (meter, seq) whose windows
overlap the first one's would silently take or lose its place: it is kept in
`dead_letters` as a "conflict" instead (once, however often it is delivered;
the first one counts; `reconcile` against the logger's store decides).

The layout is for a disk that lasts. Contributions are appended in arrival
order (a rowid table, indexed by window only), so a batch of many meters'
readings dirties one or two pages at the end of the table instead of one page
per meter; the (meter, seq) a batch has to look up are found by reading the
rows of the windows it touches. `readings_seen` is keyed by meter, so it is
written only when a window leaves the spool, a window's readings at once, in
the same transaction that deletes them. A spool of the first layout
(contributions keyed by meter, every reading in `readings_seen` on arrival)
is converted when it is opened, its pending contributions and seen readings
kept as they are.

Refused messages are kept in `dead_letters` with the reason, the first
`DEAD_LETTER_PREFIX_BYTES` of the payload, its size and SHA-256; the table is
capped at `max_dead_letter_bytes`, the oldest dropped first.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from campus_energy.core.incoming import fingerprint
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import Contribution, IncomingReading
from campus_energy.errors import SpoolError
from campus_energy.runtime.sqlite import INTEGRITY_BUDGET_S, SqliteFile, statements, transaction

DEAD_LETTER_PREFIX_BYTES = 4096  # of a refused payload, kept (with its size and SHA-256)
DEAD_LETTER_TOPIC_CHARS = 512
DEAD_LETTER_REASON_CHARS = 500
DEAD_LETTER_ROW_BYTES = 128  # counted per row on top of payload, topic and reason
DEFAULT_DEAD_LETTER_BYTES = 16 * 1024 * 1024
_DEAD_COST = f"length(payload) + length(topic) + length(reason) + {DEAD_LETTER_ROW_BYTES}"

CONTRIBUTIONS = """
CREATE TABLE IF NOT EXISTS contributions (
    window_start_ms INTEGER NOT NULL,
    meter_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    in_window INTEGER NOT NULL,
    power_w REAL,
    voltage_v REAL,
    current_a REAL,
    power_factor REAL,
    frequency_hz REAL,
    fingerprint BLOB,
    received_ms INTEGER,
    export_wh REAL NOT NULL DEFAULT 0,
    estimated_wh REAL NOT NULL DEFAULT 0,
    estimated_export_wh REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS contributions_by_window ON contributions (window_start_ms)
"""
SCHEMA = (
    CONTRIBUTIONS
    + """;
CREATE TABLE IF NOT EXISTS meters (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL DEFAULT '',
    floor TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_kind ON dead_letters (kind);
CREATE TABLE IF NOT EXISTS readings_seen (
    meter_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    first_window_ms INTEGER NOT NULL,
    last_window_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (meter_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_seen_by_time ON readings_seen (received_ms)
"""
)
SCHEMA_VERSION = 2  # 1: contributions keyed by (meter_id, window_start_ms, seq), WITHOUT ROWID
# Columns added after the first release, for spools made before them: (table, column, type).
_ADDED_COLUMNS = (
    ("dead_letters", "size", "INTEGER"),
    ("dead_letters", "sha256", "TEXT"),
    ("meters", "site", "TEXT NOT NULL DEFAULT ''"),
    # a contribution's export and estimate (core.windows): 0 in a spool made before them
    ("contributions", "export_wh", "REAL NOT NULL DEFAULT 0"),
    ("contributions", "estimated_wh", "REAL NOT NULL DEFAULT 0"),
    ("contributions", "estimated_export_wh", "REAL NOT NULL DEFAULT 0"),
)

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
    "export_wh",
    "estimated_wh",
    "estimated_export_wh",
)


@dataclass(frozen=True)
class DeadLetter:
    """A refused message as received (the spool keeps a bounded part of it)."""

    received_ms: int
    topic: str
    payload: bytes
    kind: str
    reason: str

    def row(self) -> tuple[int, str, bytes, str, str, int, str]:
        """The row kept: topic, payload and reason cut to their bounds, plus size and SHA-256."""
        return (
            self.received_ms,
            self.topic[:DEAD_LETTER_TOPIC_CHARS],
            self.payload[:DEAD_LETTER_PREFIX_BYTES],
            self.kind,
            self.reason[:DEAD_LETTER_REASON_CHARS],
            len(self.payload),
            hashlib.sha256(self.payload).hexdigest(),
        )


def _cost(row: tuple[int, str, bytes, str, str, int, str]) -> int:
    """A kept row as counted against the cap (the same sum as `_DEAD_COST` in SQL)."""
    return len(row[2]) + len(row[1]) + len(row[4]) + DEAD_LETTER_ROW_BYTES


@dataclass(frozen=True)
class Arrival:
    """A valid reading, the window contributions cut from it, and the message it came in."""

    reading: IncomingReading
    items: Sequence[Contribution]
    topic: str
    payload: bytes


@dataclass
class Recorded:
    """What a batch did to the spool."""

    added: int = 0  # new window contributions
    duplicates: int = 0  # contributions of readings already received (redeliveries)
    conflicts: list[DeadLetter] = field(default_factory=list)  # kept as dead letters
    evicted: int = 0  # old dead letters dropped to keep the table under its cap
    kept: list[IncomingReading] = field(default_factory=list)  # readings new to the spool


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
        c.export_wh,
        c.estimated_wh,
        c.estimated_export_wh,
    )


_INSERT = (
    f"INSERT INTO contributions ({', '.join(_COLUMNS)}, fingerprint, received_ms) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?, ?)"
)


@dataclass
class _Known:
    """A reading the spool holds, as a batch looks it up: fingerprint (None: stored by `add`),
    the windows it touches and when it was received."""

    mark: bytes | None
    first_ms: int
    last_ms: int
    received_ms: int

    def overlaps(self, first_ms: int, last_ms: int) -> bool:
        return first_ms <= self.last_ms and self.first_ms <= last_ms


def _pending(conn: sqlite3.Connection, windows: Iterable[int]) -> dict[tuple[str, int], _Known]:
    """The readings with contributions waiting in these windows, by (meter, seq)."""
    known: dict[tuple[str, int], _Known] = {}
    for window in sorted(set(windows)):
        for meter_id, seq, mark, received_ms in conn.execute(
            "SELECT meter_id, seq, fingerprint, received_ms FROM contributions "
            "WHERE window_start_ms = ?",
            (window,),
        ):
            found = known.get((meter_id, seq))
            if found is None:
                known[meter_id, seq] = _Known(mark, window, window, received_ms or 0)
            else:
                found.first_ms = min(found.first_ms, window)
                found.last_ms = max(found.last_ms, window)
    return known


def _seen(conn: sqlite3.Connection, meter_id: str, seq: int) -> _Known | None:
    """The reading with this (meter, seq) whose windows have left the spool, if remembered."""
    row = conn.execute(
        "SELECT fingerprint, first_window_ms, last_window_ms, received_ms "
        "FROM readings_seen WHERE meter_id = ? AND seq = ?",
        (meter_id, seq),
    ).fetchone()
    return None if row is None else _Known(row[0], row[1], row[2], row[3])


def _insert(conn: sqlite3.Connection, items: Iterable[Contribution]) -> int:
    """Append the contributions whose (meter, window, seq) the spool does not hold yet."""
    items = list(items)
    held = {
        (c.meter_id, c.window_start_ms, c.seq)
        for window in {c.window_start_ms for c in items}
        for c in _rows_of(conn, window)
    }
    fresh: list[tuple[object, ...]] = []
    for c in items:
        key = (c.meter_id, c.window_start_ms, c.seq)
        if key not in held:
            held.add(key)
            fresh.append((*_row(c), None, None))
    conn.executemany(_INSERT, fresh)
    return len(fresh)


def _rows_of(conn: sqlite3.Connection, window: int) -> list[Contribution]:
    return [
        Contribution(row[0], row[1], row[2], row[3], row[4], bool(row[5]), *row[6:])
        for row in conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM contributions WHERE window_start_ms = ?",
            (window,),
        )
    ]


def _forget(conn: sqlite3.Connection, items: Iterable[Contribution]) -> None:
    """Delete these contributions, their readings remembered in `readings_seen` instead.

    A reading touching two windows is remembered when the first is written and
    its windows widened when the second is; a different reading with the same
    (meter, seq) (a logger that counts again from 1) leaves the first one's row.
    """
    wanted: dict[int, set[tuple[str, int]]] = {}
    for c in items:
        wanted.setdefault(c.window_start_ms, set()).add((c.meter_id, c.seq))
    gone: list[tuple[int]] = []
    seen: list[tuple[object, ...]] = []
    for window, keys in sorted(wanted.items()):
        for rowid, meter_id, seq, mark, received_ms in conn.execute(
            "SELECT rowid, meter_id, seq, fingerprint, received_ms FROM contributions "
            "WHERE window_start_ms = ?",
            (window,),
        ):
            if (meter_id, seq) in keys:
                gone.append((rowid,))
                if mark is not None:
                    seen.append((meter_id, seq, mark, window, window, received_ms))
    conn.executemany(
        "INSERT INTO readings_seen VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, seq) "
        "DO UPDATE SET first_window_ms = min(first_window_ms, excluded.first_window_ms), "
        "last_window_ms = max(last_window_ms, excluded.last_window_ms) "
        "WHERE fingerprint = excluded.fingerprint",
        seen,
    )
    conn.executemany("DELETE FROM contributions WHERE rowid = ?", gone)


def _migrate(conn: sqlite3.Connection) -> None:
    """Rewrite the contributions of a first-layout spool in arrival-ordered form, in place.

    Each row keeps its values; its reading's fingerprint and time come from
    `readings_seen` (which keeps its rows: a reading found there and pending
    counts once either way).
    """
    conn.execute("ALTER TABLE contributions RENAME TO contributions_v1")
    conn.execute("DROP INDEX IF EXISTS contributions_by_window")
    for statement in statements(CONTRIBUTIONS):
        conn.execute(statement)
    conn.execute(
        f"INSERT INTO contributions ({', '.join(_COLUMNS)}, fingerprint, received_ms) "
        f"SELECT {', '.join('c.' + name for name in _COLUMNS)}, s.fingerprint, s.received_ms "
        "FROM contributions_v1 AS c LEFT JOIN readings_seen AS s ON s.meter_id = c.meter_id "
        "AND s.seq = c.seq AND c.window_start_ms BETWEEN s.first_window_ms AND s.last_window_ms "
        "ORDER BY c.window_start_ms, c.meter_id, c.seq"
    )
    conn.execute("DROP TABLE contributions_v1")


def _place(conn: sqlite3.Connection, readings: Iterable[IncomingReading]) -> None:
    conn.executemany(
        "INSERT INTO meters (meter_id, building, floor, site) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (meter_id) DO UPDATE SET building = excluded.building, "
        "floor = excluded.floor, site = excluded.site",
        {(r.meter_id, r.building, r.floor, r.site) for r in readings},
    )


def _dead_bytes(conn: sqlite3.Connection) -> int:
    found = conn.execute(f"SELECT coalesce(sum({_DEAD_COST}), 0) FROM dead_letters")
    return int(found.fetchone()[0])


def _kept_already(
    conn: sqlite3.Connection, letter: DeadLetter, batch: Sequence[DeadLetter]
) -> bool:
    """Whether the same message is already a dead letter of the same kind (or in this batch)."""
    if any(d.payload == letter.payload and d.kind == letter.kind for d in batch):
        return True
    found = conn.execute(
        "SELECT 1 FROM dead_letters WHERE kind = ? AND sha256 = ? LIMIT 1",
        (letter.kind, hashlib.sha256(letter.payload).hexdigest()),
    )
    return found.fetchone() is not None


def _conflict(arrival: Arrival, seen: tuple[bytes, int], received_ms: int) -> DeadLetter:
    first, first_ms = seen
    r = arrival.reading
    reason = (
        f"seq {r.seq} of meter {r.meter_id} was received at {iso_utc(first_ms)} with other "
        f"values (fingerprint {first.hex()}); the first one counts, this one is kept here"
    )
    return DeadLetter(received_ms, arrival.topic, arrival.payload, "conflict", reason)


class Spool(SqliteFile):
    label = "spool"
    integrity_budget_s = INTEGRITY_BUDGET_S  # a damaged spool is refused before a batch is acked
    page_size = 1024  # a commit writes each page it touches whole: small pages, fewer bytes
    error = SpoolError
    schema = SCHEMA
    schema_version = SCHEMA_VERSION
    synchronous = "FULL"  # an acknowledged message must survive power loss

    def __init__(self, path: Path, *, max_dead_letter_bytes: int = DEFAULT_DEAD_LETTER_BYTES):
        super().__init__(path)
        self.max_dead_letter_bytes = max_dead_letter_bytes
        self._dead_bytes: int | None = None  # what dead_letters holds (counted once, then kept)
        self.commits = (
            0  # transactions that wrote to the file (a disk's wear, for tests and metrics)
        )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        super()._prepare(conn)
        conn.execute("PRAGMA temp_store=MEMORY")  # sorts for DISTINCT and ORDER BY stay off disk
        with transaction(conn):
            for table, column, kind in _ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            if int(version.fetchone()[0]) < SCHEMA_VERSION:
                have = {row[1] for row in conn.execute("PRAGMA table_info(contributions)")}
                if "fingerprint" not in have:
                    _migrate(conn)
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )

    async def add(
        self,
        readings: Sequence[IncomingReading],
        items: Sequence[Contribution],
        dead: Sequence[DeadLetter] = (),
    ) -> int:
        """Store contributions as they are (no conflict check); returns how many were new."""

        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                added = _insert(conn, items)
                _place(conn, readings)
                _, total = self._bury(conn, dead)
            self.commits += 1
            self._dead_bytes = total
            return added

        return await self._call(work)

    async def record(
        self, arrivals: Sequence[Arrival], dead: Sequence[DeadLetter], received_ms: int
    ) -> Recorded:
        """Record a batch of received messages in one transaction.

        A reading already received adds nothing; a different reading with the same
        (meter, seq) and overlapping windows becomes a "conflict" dead letter.
        """

        def work(conn: sqlite3.Connection) -> Recorded:
            done = Recorded()
            kept = done.kept
            with transaction(conn):
                known = _pending(conn, (c.window_start_ms for a in arrivals for c in a.items))
                fresh: list[tuple[object, ...]] = []
                for arrival in arrivals:
                    r = arrival.reading
                    windows = [c.window_start_ms for c in arrival.items]
                    first, last = min(windows), max(windows)
                    mark = fingerprint(r)
                    seen = known.get((r.meter_id, r.seq))
                    if seen is None or not seen.overlaps(first, last):
                        seen = _seen(conn, r.meter_id, r.seq)
                    if seen is None or not seen.overlaps(first, last):
                        known[r.meter_id, r.seq] = _Known(mark, first, last, received_ms)
                        fresh.extend((*_row(c), mark, received_ms) for c in arrival.items)
                        done.added += len(arrival.items)
                        kept.append(r)
                    elif seen.mark is None or seen.mark == mark:
                        done.duplicates += len(arrival.items)
                    else:
                        letter = _conflict(arrival, (seen.mark, seen.received_ms), received_ms)
                        if _kept_already(conn, letter, done.conflicts):  # a redelivery of it
                            done.duplicates += len(arrival.items)
                        else:
                            done.conflicts.append(letter)
                conn.executemany(_INSERT, fresh)
                _place(conn, kept)
                done.evicted, total = self._bury(conn, [*dead, *done.conflicts])
            self.commits += 1
            self._dead_bytes = total
            return done

        return await self._call(work)

    def _bury(self, conn: sqlite3.Connection, dead: Sequence[DeadLetter]) -> tuple[int, int | None]:
        """Insert dead letters, then drop the oldest beyond the cap.

        Runs inside the caller's transaction; returns how many were dropped and the bytes
        the table then holds, for the caller to keep once the transaction has committed.
        """
        if not dead:
            return 0, self._dead_bytes
        total = _dead_bytes(conn) if self._dead_bytes is None else self._dead_bytes
        self._dead_bytes = None  # unknown until the transaction commits
        rows = [d.row() for d in dead]
        conn.executemany(
            "INSERT INTO dead_letters (received_ms, topic, payload, kind, reason, size, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        total += sum(_cost(row) for row in rows)
        evicted = 0
        while total > self.max_dead_letter_bytes:
            oldest = conn.execute(
                f"SELECT id, {_DEAD_COST} FROM dead_letters ORDER BY id LIMIT 1000"
            ).fetchall()
            upto = None
            for row_id, cost in oldest:
                total -= cost
                evicted += 1
                upto = row_id
                if total <= self.max_dead_letter_bytes:
                    break
            if upto is None:
                break
            conn.execute("DELETE FROM dead_letters WHERE id <= ?", (upto,))
        return evicted, total

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
    ) -> tuple[list[Contribution], dict[str, tuple[str, str, str]]]:
        """The contributions of these windows, and (building, floor, site) of their meters."""
        wanted = list(keys)

        def work(
            conn: sqlite3.Connection,
        ) -> tuple[list[Contribution], dict[str, tuple[str, str, str]]]:
            meters: dict[int, set[str]] = {}
            for meter_id, start in wanted:
                meters.setdefault(start, set()).add(meter_id)
            found = [
                c
                for start, ids in meters.items()
                for c in _rows_of(conn, start)
                if c.meter_id in ids
            ]
            found.sort(key=lambda c: (c.meter_id, c.window_start_ms, c.seq))
            meta = {
                m: (b, f, site)
                for m, b, f, site in conn.execute(
                    "SELECT meter_id, building, floor, site FROM meters"
                )
            }
            return found, meta

        return await self._call(work)

    async def remove(self, items: Iterable[Contribution]) -> None:
        """Forget contributions that the sink has durably merged (their readings stay in
        `readings_seen`)."""
        done = list(items)

        def work(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                _forget(conn, done)
            self.commits += 1

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
                gone: int = conn.execute(
                    "DELETE FROM dead_letters WHERE received_ms < ?", (before_ms,)
                ).rowcount
            if gone:
                self._dead_bytes = None
            return gone

        return await self._call(work)

    async def prune_seen(self, before_ms: int) -> int:
        """Forget the (meter, seq) of readings received before `before_ms`; returns how many."""

        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                gone: int = conn.execute(
                    "DELETE FROM readings_seen WHERE received_ms < ?", (before_ms,)
                ).rowcount
                return gone

        return await self._call(work)

    async def dead_letter_bytes(self) -> int:
        """What the dead_letters table holds, as counted against its cap."""

        return await self._call(_dead_bytes)

    async def dead_letter_counts(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT kind, count(*) FROM dead_letters GROUP BY kind"))

        return await self._call(work)
