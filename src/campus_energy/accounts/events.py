"""The meter events on record in the logger's store, for bills and the local dashboard.

The logger keeps `meter_events` (a register replaced, reset, rolled over or jumping:
detected by it, or confirmed by a person) in its SQLite store. They are read here
read-only; a store made before the table existed has no record to read (None, never an
empty list, which says "no event"), and a column it lacks reads as empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from campus_energy.accounts.statements import EventsOf
from campus_energy.core.meter_events import MeterEvent
from campus_energy.runtime.sqlite import ReadOnly

# column -> its default where a store lacks it
OPTIONAL = {
    "source": "detected",
    "register": "import_energy_wh",
    "before_wh": None,
    "after_wh": None,
    "old_final_wh": None,
    "new_start_wh": None,
    "note": "",
    "recorded_ms": None,
}


def _columns(conn: sqlite3.Connection) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(meter_events)")}


def read_events(
    conn: sqlite3.Connection, start_ms: int, end_ms: int, meter_ids: Collection[str]
) -> list[MeterEvent] | None:
    """The events of `meter_ids` (all meters when empty) with ts in [start_ms, end_ms), in
    time order; None when the store has no `meter_events` table. Raises sqlite3.Error."""
    have = _columns(conn)
    if not have:
        return None
    if "meter_id" in have:
        meter = "e.meter_id"
        source = "meter_events e"
    elif "meter" in have:  # keyed by the store's meter key
        meter = "m.meter_id"
        source = "meter_events e JOIN meters m ON m.id = e.meter"
    else:
        return None
    optional = [c for c in OPTIONAL if c in have]
    ident = "e.id" if "id" in have else "NULL"
    selected = ", ".join([meter, "e.ts_ms", "e.kind", ident, *(f"e.{c}" for c in optional)])
    where = "e.ts_ms >= ? AND e.ts_ms < ?"
    params: list[Any] = [start_ms, end_ms]
    if meter_ids:
        where += f" AND {meter} IN ({', '.join('?' for _ in meter_ids)})"
        params += sorted(meter_ids)
    rows = conn.execute(
        f"SELECT {selected} FROM {source} WHERE {where} ORDER BY e.ts_ms, {meter}", params
    ).fetchall()
    found = []
    for row in rows:
        meter_id, ts_ms, kind, key, *rest = row
        values = {**OPTIONAL, **dict(zip(optional, rest, strict=True))}
        found.append(
            MeterEvent(
                meter_id=str(meter_id),
                ts_ms=int(ts_ms),
                kind=str(kind),
                source=str(values["source"] or "detected"),
                register=str(values["register"] or "import_energy_wh"),
                before_wh=_number(values["before_wh"]),
                after_wh=_number(values["after_wh"]),
                old_final_wh=_number(values["old_final_wh"]),
                new_start_wh=_number(values["new_start_wh"]),
                note=str(values["note"] or ""),
                recorded_ms=None if values["recorded_ms"] is None else int(values["recorded_ms"]),
                id=None if key is None else int(key),
            )
        )
    return found


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def events_of_store(path: Path) -> EventsOf:
    """An `EventsOf` reading the logger's store at `path`: each call opens it read-only and
    closes it again; a store that is missing or cannot be read has no record (None)."""

    def events(
        start_ms: int, end_ms: int, meter_ids: Collection[str]
    ) -> Sequence[MeterEvent] | None:
        if not path.exists():
            return None
        store = ReadOnly(path, timeout_s=2)
        try:
            return read_events(store.connection(), start_ms, end_ms, meter_ids)
        except sqlite3.Error:
            return None
        finally:
            store.close()

    return events
