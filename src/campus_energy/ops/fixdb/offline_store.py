"""The logger's store opened for offline maintenance (`campus-energy fix-db`).

Reading needs no lock: a WAL reader holds up no writer. Rewriting timestamps
does: `OfflineStore.open(path, exclusive=True)` takes SQLite's exclusive lock
(`locking_mode=EXCLUSIVE` and `BEGIN EXCLUSIVE` on the WAL file). SQLite refuses
it at once while any other process has the file open — a running logger, the
dashboard, an `sqlite3` shell — and, once held, it keeps every other process
out until `close()`. Every sqlite3 failure becomes a StoreError
(StoreBusyError when the file is in use); `check_integrity` refuses a damaged
file, whose pages fix-db cannot mend, with the way to rebuild it.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campus_energy.core.repair.apply import Change
from campus_energy.core.repair.plan import EnergyFix, MeterPlan
from campus_energy.core.repair.stamps import Raw
from campus_energy.core.repair.survey import Row
from campus_energy.core.resolution import from_steps
from campus_energy.errors import StoreBusyError, StoreError
from campus_energy.logger.store import reorder, respan, time_ordered
from campus_energy.runtime.sqlite import (
    damage_summary,
    is_damage,
    quick_check,
    recovery_hint,
    transaction,
)

TEMP_RUN = 1 << 62  # while they move, a run's readings wait at ts_ms - TEMP_RUN ...
TEMP_ROW = -(1 << 63) + 1  # ... single readings at TEMP_ROW + seq
LOWEST_MS = -(1 << 61)  # real timestamps lie above both waiting areas
FETCH = 5_000
KNOWN_SCHEMAS = frozenset({"1", "2", "3"})  # 2: meters carry the span of their readings
_ROW_COLUMNS = (
    "seq, ts_ms, power, energy, energy_total, voltage, current, pf, freq, import_energy, extra"
)
# export over the interval and cumulative, and whether the reading carries an estimate of
# the gap before it (schema 3); a store made before has none
_EXPORT_COLUMNS = ("energy_export", "energy_export_total")
_ESTIMATED = "(estimated IS NOT NULL OR estimated_export IS NOT NULL)"


@dataclass(frozen=True)
class StoredMeter:
    key: int  # samples.meter
    meter_id: str
    published_seq: int
    published_ts: Raw  # the outbox cursor: readings up to it were acknowledged by the broker


@dataclass(frozen=True)
class Repair:
    """Everything to write for one meter."""

    meter: StoredMeter
    plan: MeterPlan
    changes: tuple[Change, ...]  # readings of the runs that move reading by reading

    @property
    def fixes(self) -> list[EnergyFix]:
        found = [*self.plan.fixes, *(c.fix for c in self.changes if c.fix is not None)]
        return sorted(found, key=lambda f: f.seq)


def _row(values: Sequence[Any]) -> Row:
    seq, ts, power, energy, total, *measured, export, export_total, estimated = values
    return Row(
        seq,
        ts,
        from_steps("power_w", power),
        energy,
        total,
        (power, *measured),
        export,
        export_total,
        bool(estimated),
    )


class OfflineStore:
    """The store file, read (and with `exclusive`, rewritten) by this process alone."""

    def __init__(self, path: Path, conn: sqlite3.Connection, exclusive: bool) -> None:
        self.path = path
        self.exclusive = exclusive
        self._conn = conn
        self.directions = True  # the readings carry their export (schema 3; else signed energy)
        self._columns = f"{_ROW_COLUMNS}, {', '.join(_EXPORT_COLUMNS)}, {_ESTIMATED}"

    @classmethod
    def open(cls, path: Path, *, exclusive: bool) -> OfflineStore:
        if path.is_dir():
            raise StoreError(f"store {path} is a folder: name the store file itself")
        if not path.is_file():
            raise StoreError(f"store {path} does not exist")
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as exc:
            raise StoreError(f"store {path}: {exc}") from None
        store = cls(path, conn, exclusive)
        try:
            if exclusive:
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                conn.execute("BEGIN EXCLUSIVE")
                conn.execute("COMMIT")  # the lock stays until the connection closes
            else:
                conn.execute("PRAGMA query_only=ON")
                conn.execute("BEGIN")  # one snapshot for the whole survey
            store._check_schema()
        except sqlite3.Error as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StoreBusyError(_busy_message(path)) from None
            raise failure(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return store

    @staticmethod
    def in_use(path: Path) -> bool:
        """Whether another process has the file open (the exclusive lock is refused)."""
        try:
            OfflineStore.open(path, exclusive=True).close()
        except StoreBusyError:
            return True
        return False

    def close(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()

    def check_integrity(self) -> None:
        """`PRAGMA quick_check` of the whole file; a StoreError naming the rebuild when damaged."""
        try:
            problems = quick_check(self._conn, None)
        except sqlite3.Error as exc:
            raise failure(self.path, exc) from None
        if problems:
            raise StoreError(
                f"store {self.path} is damaged (PRAGMA quick_check: {damage_summary(problems)}); "
                "fix-db mends timestamps, not damaged pages, and changed nothing: "
                f"{recovery_hint(self.path)}"
            )

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        missing = {"meters", "samples", "gaps", "rejects", "meta"} - tables
        if missing:
            raise StoreError(
                f"{self.path} is not a campus-energy store (no table {', '.join(sorted(missing))})"
            )
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] not in KNOWN_SCHEMAS:
            raise StoreError(
                f"store {self.path} has schema {row and row[0]}; fix-db knows "
                f"{' and '.join(sorted(KNOWN_SCHEMAS))}"
            )
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(samples)")}
        self.directions = set(_EXPORT_COLUMNS) <= have
        if not self.directions:
            self._columns = f"{_ROW_COLUMNS}, 0, 0, 0"

    def _guard(self, what: str) -> StoreError:
        return StoreError(f"store {self.path}: {what}")

    # -- reading ----------------------------------------------------------------------------

    def meters(self) -> list[StoredMeter]:
        return [
            StoredMeter(*row)
            for row in self._conn.execute(
                "SELECT id, meter_id, published_seq, published_ts_ms FROM meters ORDER BY meter_id"
            )
        ]

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM samples").fetchone()[0])

    def rows(self, meter: int) -> Iterator[Row]:
        """A meter's readings in (seq, ts_ms) order, fetched a few thousand at a time."""
        cursor = self._conn.execute(
            f"SELECT {self._columns} FROM samples WHERE meter = ? ORDER BY seq, ts_ms", (meter,)
        )
        try:
            while batch := cursor.fetchmany(FETCH):
                yield from (_row(values) for values in batch)
        finally:
            cursor.close()

    def rows_between(
        self, meter: int, first_seq: int, last_seq: int, skip: frozenset[Raw]
    ) -> list[Row]:
        """A meter's readings from seq first_seq to last_seq, without the copies in `skip`."""
        found = self._conn.execute(
            f"SELECT {self._columns} FROM samples WHERE meter = ? AND seq BETWEEN ? AND ? "
            "ORDER BY seq, ts_ms",
            (meter, first_seq, last_seq),
        ).fetchall()
        return [row for row in map(_row, found) if row.ts not in skip]

    def recent_points(self, meter: int, limit: int = 2_000) -> list[tuple[int, int]]:
        """(seq, ts_ms) of a meter's newest integer-stamped readings (to estimate its interval)."""
        return self._conn.execute(
            "SELECT seq, ts_ms FROM samples WHERE meter = ? AND typeof(ts_ms) = 'integer' "
            "ORDER BY ts_ms DESC LIMIT ?",
            (meter, limit),
        ).fetchall()

    def rejects_outside(self, meter: int, low_ms: int, high_ms: int) -> int:
        return int(
            self._conn.execute(
                "SELECT count(*) FROM rejects WHERE meter = ? AND (ts_ms < ? OR ts_ms > ?)",
                (meter, low_ms, high_ms),
            ).fetchone()[0]
        )

    # -- writing ----------------------------------------------------------------------------

    def backup(self, target: Path) -> None:
        """Copy the store with SQLite's online backup; check the copy reads back whole."""
        if not self.exclusive:
            raise StoreError("a backup before repairs needs the store opened exclusively")
        if target.exists():
            raise StoreError(f"backup {target} exists already: choose another --backup")
        try:
            copy = sqlite3.connect(target)
            try:
                self._conn.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                copy.close()
            check = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
            try:
                ok = check.execute("PRAGMA quick_check").fetchone()[0]
                copied = check.execute("SELECT count(*) FROM samples").fetchone()[0]
            finally:
                check.close()
        except sqlite3.Error as exc:
            raise StoreError(f"backup {target}: {exc}") from None
        if ok != "ok" or copied != self.count():
            raise StoreError(f"backup {target} does not read back whole ({ok}, {copied} rows)")

    def apply(self, repairs: Sequence[Repair], note: str) -> None:
        """Make every change of every repair in one transaction (all or nothing)."""
        if not self.exclusive:
            raise StoreError("repairs need the store opened exclusively")
        conn = self._conn
        try:
            low = conn.execute(
                "SELECT count(*) FROM samples WHERE typeof(ts_ms) = 'integer' AND ts_ms < ?",
                (LOWEST_MS,),
            ).fetchone()[0]
            if low:
                raise self._guard(
                    f"{low} readings are stamped below {LOWEST_MS} ms: fix them by hand"
                )
            with transaction(conn):
                for repair in repairs:
                    self._apply(repair)
                self._respan(repairs)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('fix_db', ?)", (note,)
                )
        except sqlite3.Error as exc:
            raise self._guard(f"nothing was changed: {exc}") from None

    def time_ordered(self) -> bool:
        """Whether the store keeps its readings in time order (a file made since schema 2)."""
        return time_ordered(self._conn)

    def reorder(self) -> int:
        """Rewrite the readings in time order, in one transaction; how many were copied."""
        if not self.exclusive:
            raise StoreError("reordering needs the store opened exclusively")
        try:
            with transaction(self._conn):
                copied = reorder(self._conn)
        except sqlite3.Error as exc:
            raise self._guard(f"nothing was changed: {exc}") from None
        return copied

    def _respan(self, repairs: Sequence[Repair]) -> None:
        """The span of each repaired meter's readings as they now are (schema 2): the moves
        through the waiting areas widened it to them."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(meters)")}
        if "last_ts_ms" not in have:
            return
        respan(self._conn, (repair.meter.key for repair in repairs))

    def _apply(self, repair: Repair) -> None:
        conn, key, plan = self._conn, repair.meter.key, repair.plan
        # what the gaps and the outbox cursor point at, found before anything moves
        gaps = self._moved_gaps(key, plan)
        cursor = self._new_ts(key, plan, repair.meter.published_ts)
        conn.executemany(
            "DELETE FROM samples WHERE meter = ? AND ts_ms = ?", [(key, d) for d in plan.duplicates]
        )
        # in two steps, so that no reading lands on one that has not moved yet
        runs = [p for p in plan.moving if not p.retime.per_row]
        ranges = [(key, p.run.first.seq, p.run.last.seq) for p in runs]
        conn.executemany(
            f"UPDATE samples SET ts_ms = ts_ms - {TEMP_RUN} WHERE meter = ? "
            "AND seq BETWEEN ? AND ? AND typeof(ts_ms) = 'integer'",
            ranges,
        )
        conn.executemany(
            "UPDATE samples SET ts_ms = ? WHERE meter = ? AND ts_ms = ?",
            [(TEMP_ROW + c.seq, key, c.old_ts) for c in repair.changes],
        )
        conn.executemany(
            f"UPDATE samples SET ts_ms = ts_ms + {TEMP_RUN} + ? WHERE meter = ? "
            f"AND seq BETWEEN ? AND ? AND ts_ms < {LOWEST_MS}",
            [(p.retime.shift_ms, *r) for p, r in zip(runs, ranges, strict=True)],
        )
        conn.executemany(
            "UPDATE samples SET ts_ms = ? WHERE meter = ? AND ts_ms = ?",
            [(c.new_ts, key, TEMP_ROW + c.seq) for c in repair.changes],
        )
        self._fix_energy(key, repair.fixes)
        conn.executemany(
            "DELETE FROM gaps WHERE meter = ? AND start_ts_ms = ?", [(key, g[0]) for g in gaps]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?)", [(key, g[2], g[3]) for g in gaps]
        )
        for fix in repair.fixes:
            conn.execute(
                "DELETE FROM gaps WHERE meter = ? AND start_ts_ms = ?", (key, fix.start_ms)
            )
            if fix.gap:
                conn.execute(
                    "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?)", (key, fix.start_ms, fix.ts_ms)
                )
        if cursor != repair.meter.published_ts:
            conn.execute("UPDATE meters SET published_ts_ms = ? WHERE id = ?", (cursor, key))

    def _fix_energy(self, key: int, fixes: Sequence[EnergyFix]) -> None:
        """New energies in each direction, and every later cumulative total moved by the
        difference so far. A store made before schema 3 keeps one signed energy per interval
        (import − export, as the logger then integrated): it gets the net."""
        delta = export_delta = 0
        for fix, following in itertools.zip_longest(fixes, fixes[1:]):
            assert fix is not None
            if self.directions:
                delta += fix.new_uwh - fix.old_uwh
                export_delta += fix.new_export_uwh - fix.old_export_uwh
                self._conn.execute(
                    "UPDATE samples SET energy = ?, energy_export = ? "
                    "WHERE meter = ? AND ts_ms = ?",
                    (fix.new_uwh, fix.new_export_uwh, key, fix.ts_ms),
                )
            else:
                net = fix.new_uwh - fix.new_export_uwh
                delta += net - fix.old_uwh
                self._conn.execute(
                    "UPDATE samples SET energy = ? WHERE meter = ? AND ts_ms = ?",
                    (net, key, fix.ts_ms),
                )
            if not delta and not export_delta:
                continue
            totals = "energy_total = energy_total + ?"
            moves: tuple[int, ...] = (delta,)
            if export_delta:
                totals += ", energy_export_total = energy_export_total + ?"
                moves = (delta, export_delta)
            if following is None:
                self._conn.execute(
                    f"UPDATE samples SET {totals} WHERE meter = ? AND ts_ms >= ?",
                    (*moves, key, fix.ts_ms),
                )
            else:
                self._conn.execute(
                    f"UPDATE samples SET {totals} WHERE meter = ? AND ts_ms >= ? AND ts_ms < ?",
                    (*moves, key, fix.ts_ms, following.ts_ms),
                )

    def _new_ts(self, key: int, plan: MeterPlan, ts: Raw) -> Raw:
        found = self._conn.execute(
            "SELECT seq FROM samples WHERE meter = ? AND ts_ms = ?", (key, ts)
        ).fetchone()
        new = None if found is None else plan.new_ts(found[0], ts)
        return ts if new is None else new

    def _moved_gaps(self, key: int, plan: MeterPlan) -> list[tuple[Raw, Raw, Raw, Raw]]:
        """(old start, old end, new start, new end) of the gaps whose readings move."""
        moved = []
        for start, end in self._conn.execute(
            "SELECT start_ts_ms, end_ts_ms FROM gaps WHERE meter = ?", (key,)
        ).fetchall():
            new = (self._new_ts(key, plan, start), self._new_ts(key, plan, end))
            if new != (start, end):
                moved.append((start, end, *new))
        return moved


def failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """An sqlite3 failure on the store for people (a damaged file with the way to rebuild it)."""
    if is_damage(exc):
        return StoreError(f"store {path} is damaged ({exc}): {recovery_hint(path)}")
    return StoreError(f"store {path}: {exc}")


def _busy_message(path: Path) -> str:
    return (
        f"store {path} is open in another process (a running logger, the dashboard, an sqlite3 "
        "shell?): stop it first (`systemctl stop campus-energy-logger campus-energy-dashboard`)"
    )
