"""Upgrading a logger store of schema 1 or 2, whose logger kept one signed energy per interval,
to schema 3: an exporting meter's negative energy becomes export, and both totals follow.

The store is written by this release's code with the readings a logger before directions
stored (a solar meter's signed trapezoid in `energy`, its signed running sum in
`energy_total`), then turned into a file of the older schema by hand.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from campus_energy.core.incoming import Admitted, admit
from campus_energy.core.readings import Reading
from campus_energy.logger.store import (
    ADDED_IN_3,
    SCHEMA,
    SPLIT_TABLE,
    SPLIT_UPDATE,
    MeterRecord,
    ReadingStore,
)
from campus_energy.runtime.sqlite import statements

PREFIX = "campus/energy"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 5_000
WH = 1_000_000  # µWh
SOLAR, PLAIN = "pv-roof", "lab"
# The solar meter's kept readings (retention deleted seq 1 and 2, which left a net 10 Wh):
# (seq, signed energy) in seq order, imports and exports
BASE_UWH = 10 * WH
SIGNED = [(3, 2 * WH), (4, -1_500_000), (5, -500_000), (6, 3 * WH)]
# after the upgrade, per reading: (import, import total, export, export total)
SPLIT = [
    (2 * WH, 12 * WH, 0, 0),
    (0, 12 * WH, 1_500_000, 1_500_000),
    (0, 12 * WH, 500_000, 2 * WH),
    (3 * WH, 15 * WH, 0, 2 * WH),
]
OLD_COLUMNS = (
    "meter, ts_ms, seq, voltage, current, power, pf, freq, import_energy, energy, "
    "energy_total, extra"
)
SCHEMA_2_VIEW = """
CREATE VIEW readings AS SELECT m.meter_id AS meter_id, s.ts_ms AS ts_ms,
    s.voltage / 100.0 AS voltage_v, s.current / 1000.0 AS current_a, s.power / 100.0 AS power_w,
    s.pf / 10000.0 AS power_factor, s.freq / 1000.0 AS frequency_hz,
    s.import_energy / 10.0 AS import_energy_wh,
    CAST(s.energy / 1000000.0 AS REAL) AS energy_wh,
    CAST(s.energy_total / 1000000.0 AS REAL) AS energy_total_wh, s.seq AS seq, s.extra AS extra
    FROM meters m JOIN samples s ON s.meter = m.id
"""


def signed_readings() -> list[Reading]:
    """What a logger before directions stored: the solar meter's signed energy and running
    sum, and a meter that only ever drew from the grid."""
    found, total = [], BASE_UWH
    for seq, energy in SIGNED:
        total += energy
        power = 1_440.0 if energy > 0 else -720.0
        values = {"power_w": power, "voltage_v": 231.5}
        found.append(Reading(SOLAR, T0 + seq * STEP_MS, seq, energy, total, values))
    total = 0
    for seq in range(1, 6):
        total += 400_000 * seq
        values = {"power_w": 288.0 * seq, "voltage_v": 229.0, "import_energy_wh": 1234.5}
        found.append(Reading(PLAIN, T0 + seq * STEP_MS + 7, seq, 400_000 * seq, total, values))
    return found


async def write_store(path: Path) -> None:
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord(SOLAR, "Sports", "R"), MeterRecord(PLAIN, "ECE", "1")])
        await store.insert_many(signed_readings())
        # the solar meter's first kept reading was acknowledged; the rest wait for the broker
        await store.mark_published([signed_readings()[0]])
    finally:
        await store.close()


def sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def to_schema_2(path: Path) -> None:
    """Without what schema 3 added: the columns, the estimates' index, `meter_events`; the
    view of schema 2."""
    sql(
        path,
        "DROP VIEW latest_readings",
        "DROP VIEW readings",
        "DROP INDEX samples_estimated",
        "DROP TABLE meter_events",
        *(f"ALTER TABLE samples DROP COLUMN {column}" for column in ADDED_IN_3),
        SCHEMA_2_VIEW,
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    )


def to_schema_1(path: Path) -> None:
    """Schema 2, and then readings kept by meter and no spans (schema 1)."""
    to_schema_2(path)
    sql(
        path,
        "DROP VIEW readings",
        "DROP TRIGGER samples_span_insert",
        "DROP TRIGGER samples_span_update",
        "CREATE TABLE by_meter (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, voltage INTEGER, current INTEGER, power INTEGER, pf INTEGER, "
        "freq INTEGER, import_energy INTEGER, energy INTEGER NOT NULL, "
        "energy_total INTEGER NOT NULL, extra TEXT, PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID",
        f"INSERT INTO by_meter ({OLD_COLUMNS}) SELECT {OLD_COLUMNS} FROM samples",
        "DROP TABLE samples",
        "ALTER TABLE by_meter RENAME TO samples",
        "ALTER TABLE meters DROP COLUMN first_ts_ms",
        "ALTER TABLE meters DROP COLUMN last_ts_ms",
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
    )


def exact(path: Path, meter: int) -> list[tuple[str, ...]]:
    """A meter's readings as stored, each value with its type (quote()), in seq order."""
    quoted = ", ".join(f"quote({c.strip()})" for c in OLD_COLUMNS.split(","))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT {quoted} FROM samples WHERE meter = ? ORDER BY seq", (meter,)
        ).fetchall()
        return [tuple(row) for row in rows]
    finally:
        conn.close()


@pytest.mark.parametrize("older", [to_schema_2, to_schema_1], ids=["schema-2", "schema-1"])
async def test_an_exporting_meters_signed_energy_becomes_export_on_upgrade(
    tmp_path: Path, older: Callable[[Path], None]
) -> None:
    path = tmp_path / "store.db"
    await write_store(path)
    older(path)
    plain_before, solar_before = exact(path, 2), exact(path, 1)
    assert [int(row[9]) for row in solar_before] == [e for _, e in SIGNED]  # signed, as it was

    store = ReadingStore(path)
    try:
        await store.register([MeterRecord(SOLAR, "Sports", "R"), MeterRecord(PLAIN, "ECE", "1")])
        version = await store.query("SELECT value FROM meta WHERE key = 'schema_version'")
        assert version == [("3",)]
        rows = await store.query(
            "SELECT seq, energy, energy_total, energy_export, energy_export_total, estimated, "
            "estimated_export FROM samples WHERE meter = 1 ORDER BY seq"
        )
        assert rows == [
            (seq, *split, None, None) for (seq, _), split in zip(SIGNED, SPLIT, strict=True)
        ]
        # each total is its base and the sum of the readings' own, direction by direction
        imported = [BASE_UWH + sum(r[1] for r in rows[: i + 1]) for i in range(len(rows))]
        exported = [sum(r[3] for r in rows[: i + 1]) for i in range(len(rows))]
        assert [r[2] for r in rows] == imported and [r[4] for r in rows] == exported
        # the outbox state as it was: the first reading acknowledged, the others waiting
        cursors = await store.query(
            "SELECT meter_id, published_seq, published_ts_ms FROM meters ORDER BY id"
        )
        assert cursors == [(SOLAR, 3, T0 + 3 * STEP_MS), (PLAIN, 0, 0)]
        restored = await store.restore()
        assert (restored[SOLAR].total_uwh, restored[SOLAR].export_total_uwh) == (15 * WH, 2 * WH)
        assert (restored[PLAIN].total_uwh, restored[PLAIN].export_total_uwh) == (6 * WH, 0)
        assert await store.query("SELECT name FROM temp.sqlite_master") == []  # nothing left

        # what the logger publishes now passes the bridge's check: no dead letter
        waiting = [r for r in await store.unpublished() if r.meter_id == SOLAR]
        assert [r.seq for r in waiting] == [4, 5, 6]
        for reading, (_, total, export, export_total) in zip(waiting, SPLIT[1:], strict=True):
            body = reading.payload("Sports", "R")
            assert (body["energy_export_wh"], body["energy_export_total_wh"]) == (
                export / WH,
                export_total / WH,
            )
            assert body["energy_total_wh"] == total / WH
            verdict = admit(
                f"{PREFIX}/{SOLAR}/reading",
                json.dumps(body).encode(),
                prefix=PREFIX,
                now_ms=T0 + 60_000,
            )
            assert isinstance(verdict, Admitted), verdict
            assert verdict.reading.export_wh == export / WH
            assert verdict.reading.energy_wh == body["energy_wh"] >= 0
            assert verdict.reading.interval_start_ms == reading.ts_ms - STEP_MS
    finally:
        await store.close()

    # the meter that never exported: every value as it was, to the byte; the other's stamps,
    # seq and measured values too
    assert exact(path, 2) == plain_before
    keep = [0, 1, 2, 3, 4, 5, 6, 7, 8, 11]
    assert [[row[i] for i in keep] for row in exact(path, 1)] == [
        [row[i] for i in keep] for row in solar_before
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_each_readings_new_totals_are_found_by_a_seek() -> None:
    """A meter's totals are read back by the key of each reading, not by a pass over the
    meter's readings each: a year of 5 s readings upgrades in seconds, not in days."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in statements(SCHEMA):
            conn.execute(statement)
        conn.execute(SPLIT_TABLE)
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {SPLIT_UPDATE}", (1,))]
    finally:
        conn.close()
    assert "SEARCH t USING PRIMARY KEY (meter=? AND ts_ms=?)" in plan, plan
