"""A database of the original deployment, read-only: `meter_readings` and `meter_hierarchy`.

Rows are streamed in (meter, local stamp, row id) order a few thousand at a
time, so a file of any size is read in little memory (SQLite sorts on disk).
Every sqlite3 failure becomes a LegacyDataError naming the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from campus_energy.errors import LegacyDataError
from campus_energy.ops.legacy_import.convert import LegacyRow

READINGS = "meter_readings"
HIERARCHY = "meter_hierarchy"
COLUMNS = ("meter_id", "timestamp", "voltage", "current", "power", "energy_wh_interval", "pf")
HIERARCHY_COLUMNS = ("meter_id", "block_name", "lab_name")
FETCH = 5_000
SAMPLE = 5_000


class LegacyDatabase:
    """The old SQLite file, opened read-only and checked to hold `meter_readings`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise LegacyDataError(f"{path}: no such file")
        try:
            self._conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
            self._tables = {
                name: [c[1] for c in self._conn.execute(f"PRAGMA table_info('{name}')")]
                for (name,) in self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                ).fetchall()
            }
        except sqlite3.Error as exc:
            raise LegacyDataError(f"{path} is not a readable SQLite database ({exc})") from None
        if READINGS not in self._tables:
            self.close()
            raise LegacyDataError(
                f"{path} has no table {READINGS}: not a database of the original deployment"
            )
        missing = [c for c in COLUMNS if c not in self._tables[READINGS]]
        if missing:
            self.close()
            raise LegacyDataError(f"{path}: table {READINGS} lacks {', '.join(missing)}")
        self._rowid = self._has_rowid()

    def close(self) -> None:
        self._conn.close()

    def _has_rowid(self) -> bool:
        try:
            self._conn.execute(f"SELECT rowid FROM {READINGS} LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def _fail(self, exc: sqlite3.Error) -> LegacyDataError:
        return LegacyDataError(f"{self.path}: {exc}")

    def hierarchy(self) -> dict[str, tuple[str, str]] | None:
        """legacy meter id → (block_name, lab_name); None when the file has no usable table."""
        columns = self._tables.get(HIERARCHY)
        if columns is None or any(c not in columns for c in HIERARCHY_COLUMNS):
            return None
        found: dict[str, tuple[str, str]] = {}
        try:
            for meter, block, lab in self._conn.execute(
                f"SELECT {', '.join(HIERARCHY_COLUMNS)} FROM {HIERARCHY}"
            ):
                found.setdefault(_text(meter), (_text(block), _text(lab)))
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        return found

    def meters(self) -> dict[str, int]:
        """legacy meter id → number of rows."""
        try:
            return {
                _text(meter): count
                for meter, count in self._conn.execute(
                    f"SELECT meter_id, count(*) FROM {READINGS} GROUP BY meter_id ORDER BY meter_id"
                )
            }
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def power_sample(self) -> list[tuple[object, object, object]]:
        """(voltage, current, power) of up to SAMPLE rows spread over the file."""
        try:
            if self._rowid:
                (top,) = self._conn.execute(f"SELECT max(rowid) FROM {READINGS}").fetchone()
                step = max(1, (top or 0) // SAMPLE)
                query = (
                    f"SELECT voltage, current, power FROM {READINGS} "
                    f"WHERE rowid % {step} = 0 LIMIT {SAMPLE}"
                )
            else:
                query = f"SELECT voltage, current, power FROM {READINGS} LIMIT {SAMPLE}"
            return self._conn.execute(query).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def rows(self) -> Iterator[LegacyRow]:
        """Every row, by meter, then local stamp, then the order it was written in."""
        order = "rowid" if self._rowid else "0"
        try:
            cursor = self._conn.execute(
                f"SELECT {order}, {', '.join(COLUMNS)} FROM {READINGS} "
                f"ORDER BY CAST(meter_id AS TEXT), timestamp, {order}"
            )
            try:
                while batch := cursor.fetchmany(FETCH):
                    for order_value, meter, *rest in batch:
                        yield LegacyRow(order_value, _text(meter), *rest)
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None


def _text(value: object) -> str:
    return "" if value is None else str(value)
