"""The logger's SQLite store: the `readings` contract, the outbox, transactions, failures, size."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.core.resolution import quantize
from campus_energy.core.witness import Witness, Witnesses
from campus_energy.errors import StoreError
from campus_energy.logger.store import (
    OUTBOX_SQL_BY_TIME,
    Cycle,
    MeterRecord,
    ReadingStore,
    Restored,
)

CONTRACT = {
    "meter_id": "text",
    "ts_ms": "integer",
    "voltage_v": "real",
    "current_a": "real",
    "power_w": "real",
    "power_factor": "real",
    "frequency_hz": "real",
    "energy_wh": "real",
    "energy_total_wh": "real",
    "seq": "integer",
}
# The view's columns in order: the contract's and the profile's register, then those added
# since (only ever added, at the end)
VIEW_COLUMNS = [
    "meter_id",
    "ts_ms",
    "voltage_v",
    "current_a",
    "power_w",
    "power_factor",
    "frequency_hz",
    "import_energy_wh",
    "energy_wh",
    "energy_total_wh",
    "seq",
    "extra",
    "energy_export_wh",
    "energy_export_total_wh",
    "estimated_energy_wh",
    "estimated_export_wh",
    "export_energy_wh",
]
METERS = [
    MeterRecord("m-1", building="ECE", floor="1", profile="eastron-sdm120"),
    MeterRecord("m-2", building="MECH", floor="2", profile="eastron-sdm630"),
]


def reading(
    meter_id: str, ts_ms: int, seq: int, energy_uwh: int = 0, total_uwh: int = 0, **values: float
) -> Reading:
    return Reading(meter_id, ts_ms, seq, energy_uwh, total_uwh, values or {"power_w": 100.0})


def series(meter_id: str, count: int, start_ms: int = 1_000, step_ms: int = 1_000) -> list[Reading]:
    return [reading(meter_id, start_ms + i * step_ms, i + 1) for i in range(count)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReadingStore]:
    s = ReadingStore(tmp_path / "var" / "store.db")
    try:
        await s.register(METERS)
        yield s
    finally:
        await s.close()


async def count(store: ReadingStore, table: str = "readings") -> int:
    return int((await store.query(f"SELECT count(*) FROM {table}"))[0][0])


# -- the `readings` contract ----------------------------------------------------------------


async def test_readings_view_has_the_contract_columns_and_the_file_is_wal(
    store: ReadingStore,
) -> None:
    rows = await store.query("SELECT name FROM pragma_table_info('readings')")
    assert [r[0] for r in rows] == VIEW_COLUMNS
    assert await store.query("PRAGMA journal_mode") == [("wal",)]

    full = dict(voltage_v=230.0, current_a=1.0, power_factor=1.0, frequency_hz=50.0)
    await store.commit(Cycle(readings=[reading("m-1", 1_000, 1, 0, 0, power_w=230.0, **full)]))
    (row,) = await store.query(
        f"SELECT {', '.join(f'typeof({c})' for c in CONTRACT)} FROM readings"
    )
    assert dict(zip(CONTRACT, row, strict=True)) == CONTRACT


async def test_same_meter_and_ts_twice_raises_and_keeps_the_first_row(store: ReadingStore) -> None:
    await store.commit(Cycle(readings=[reading("m-1", 5_000, 1, power_w=10.0)]))
    with pytest.raises(StoreError, match="UNIQUE"):
        await store.commit(Cycle(readings=[reading("m-1", 5_000, 2, power_w=99.0)]))
    assert await store.query("SELECT seq, power_w FROM readings") == [(1, 10.0)]
    # the same ts_ms on another meter is fine
    await store.commit(Cycle(readings=[reading("m-2", 5_000, 1)]))
    assert await count(store) == 2


async def test_reading_reads_back_equal_at_stored_resolution(store: ReadingStore) -> None:
    raw = dict(voltage_v=230.1234, current_a=5.36789, power_w=1234.5678, power_factor=0.987654)
    raw |= dict(frequency_hz=50.01234, import_energy_wh=12345.678)
    extra = {"power_l1_w": 400.5, "power_l2_w": -3.25}
    ts, energy, total = 1_700_000_000_123, 1_234_567, 98_765_432_101
    await store.commit(Cycle(readings=[Reading("m-1", ts, 7, energy, total, raw | extra)]))

    stored = {name: quantize(name, value) for name, value in raw.items()} | extra
    assert stored["power_w"] == 1234.57
    assert await store.unpublished() == [Reading("m-1", ts, 7, energy, total, stored)]
    (row,) = await store.query("SELECT extra FROM readings")
    assert json.loads(row[0]) == extra


async def test_values_through_the_view_are_in_contract_units(store: ReadingStore) -> None:
    r = reading("m-1", 2_000, 3, 1_500_000, 2_500_001, power_w=1234.56, voltage_v=230.1)
    await store.commit(Cycle(readings=[r]))
    rows = await store.query(
        "SELECT meter_id, ts_ms, seq, power_w, voltage_v, current_a, energy_wh, energy_total_wh,"
        " extra FROM readings"
    )
    assert rows == [("m-1", 2_000, 3, 1234.56, 230.1, None, 1.5, 2.500001, None)]


# -- the outbox -----------------------------------------------------------------------------


async def test_unpublished_is_in_time_order_across_meters(store: ReadingStore) -> None:
    await store.commit(Cycle(readings=[reading("m-2", 2_000, 1), reading("m-2", 4_000, 2)]))
    await store.commit(Cycle(readings=[reading("m-1", 5_000, 3), reading("m-1", 1_000, 1)]))
    await store.commit(Cycle(readings=[reading("m-1", 3_000, 2)]))

    order = [(r.meter_id, r.ts_ms) for r in await store.unpublished()]
    assert order == [("m-1", 1_000), ("m-2", 2_000), ("m-1", 3_000), ("m-2", 4_000), ("m-1", 5_000)]
    assert [(r.meter_id, r.seq) for r in await store.unpublished(limit=3)] == [
        ("m-1", 1),
        ("m-2", 1),
        ("m-1", 2),
    ]


async def test_mark_published_moves_each_cursor_only_forward(store: ReadingStore) -> None:
    first, second = series("m-1", 4), series("m-2", 2)
    await store.commit(Cycle(readings=first + second))
    assert await store.outbox_depth() == {"m-1": 4, "m-2": 2}

    await store.mark_published(first[:3])
    assert await store.unpublished() == [second[0], second[1], first[3]]
    assert await store.outbox_depth() == {"m-1": 1, "m-2": 2}

    await store.mark_published(first[:2])  # a late acknowledgement of an older batch
    assert await store.unpublished() == [second[0], second[1], first[3]]
    assert await store.outbox_depth() == {"m-1": 1, "m-2": 2}

    await store.mark_published(second + first[3:])
    assert await store.unpublished() == []
    assert await store.outbox_depth() == {"m-1": 0, "m-2": 0}


async def test_outbox_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = ReadingStore(path)
    try:
        await first.register(METERS)
        await first.commit(Cycle(readings=series("m-1", 5) + series("m-2", 3)))
        await first.mark_published(series("m-1", 2))
        depth, pending = await first.outbox_depth(), await first.unpublished()
    finally:
        await first.close()
    assert depth == {"m-1": 3, "m-2": 3}

    again = ReadingStore(path)
    try:
        await again.register(METERS)
        assert await again.outbox_depth() == depth
        assert await again.unpublished() == pending
    finally:
        await again.close()


# -- meters and restart ---------------------------------------------------------------------


async def test_restore_returns_each_meters_last_reading_and_continuity(
    store: ReadingStore,
) -> None:
    await store.register([MeterRecord("m-3")])
    await store.commit(
        Cycle(
            readings=[
                reading("m-1", 1_000, 1, 0, 500, power_w=10.0),
                reading("m-1", 6_000, 2, 700, 1_200, power_w=-42.42),
            ],
            continuity=[("m-1", "boot-a", 123_456)],
        )
    )
    await store.commit(Cycle(readings=[reading("m-2", 2_000, 9, 0, 77, power_w=5.0)]))

    assert await store.restore() == {
        "m-1": Restored(
            seq=2, ts_ms=6_000, total_uwh=1_200, power_w=-42.42, boot_id="boot-a", mono_ms=123_456
        ),
        "m-2": Restored(seq=9, ts_ms=2_000, total_uwh=77, power_w=5.0, boot_id=None, mono_ms=None),
    }


async def test_restore_gives_the_export_total_and_the_registers_of_the_last_reading(
    store: ReadingStore,
) -> None:
    registers = {"power_w": -300.0, "import_energy_wh": 1_234.5, "export_energy_wh": 77.7}
    await store.commit(
        Cycle(
            readings=[
                reading("m-1", 1_000, 1, power_w=100.0, import_energy_wh=1_000.0),
                Reading("m-1", 6_000, 2, 10, 510, registers, export_uwh=5, export_total_uwh=900),
                Reading("m-2", 6_000, 4, 0, 0, {"power_w": 1.0, "import_energy_wh": 50.0}),
            ],
            # m-2's register went back at its last reading: still settling after a restart
            events=[MeterEvent("m-2", 6_000, "reset", "detected", before_wh=9e6, after_wh=50.0)],
        )
    )
    restored = await store.restore()
    assert restored["m-1"].export_total_uwh == 900
    assert restored["m-1"].registers == Witnesses(
        Witness(1_234.5, 6_000, trusted=True), Witness(77.7, 6_000, trusted=True)
    )
    assert restored["m-2"].registers == Witnesses(Witness(50.0, 6_000, trusted=False), Witness())


async def test_register_updates_metadata_and_keeps_readings(store: ReadingStore) -> None:
    await store.commit(Cycle(readings=series("m-1", 3)))
    await store.register([MeterRecord("m-1", building="LIB", floor="G", profile="eastron-sdm72d")])
    rows = await store.query(
        "SELECT meter_id, building, floor, profile FROM meters ORDER BY meter_id"
    )
    assert rows == [("m-1", "LIB", "G", "eastron-sdm72d"), ("m-2", "MECH", "2", "eastron-sdm630")]
    assert await store.unpublished() == series("m-1", 3)


async def test_commit_for_an_unregistered_meter_raises(store: ReadingStore) -> None:
    with pytest.raises(StoreError, match="'m-9' is not registered"):
        await store.commit(Cycle(readings=[reading("m-1", 1_000, 1), reading("m-9", 1_000, 1)]))
    assert await count(store) == 0


# -- transactions, gaps, rejects ------------------------------------------------------------


async def test_one_commit_is_one_transaction(store: ReadingStore) -> None:
    await store.commit(Cycle(readings=[reading("m-1", 1_000, 1)]))
    failing = Cycle(
        readings=[reading("m-2", 1_000, 1), reading("m-1", 1_000, 2)],  # the second is a duplicate
        gaps=[("m-2", 0, 1_000)],
        rejects=[("m-1", 1_500, "power is NaN", None)],
        continuity=[("m-1", "boot-x", 5)],
    )
    with pytest.raises(StoreError):
        await store.commit(failing)

    assert await store.query("SELECT meter_id, seq FROM readings") == [("m-1", 1)]
    assert await count(store, "gaps") == 0
    assert await count(store, "rejects") == 0
    assert (await store.restore())["m-1"].boot_id is None
    # the failed transaction was rolled back: the store accepts the next cycle
    await store.commit(Cycle(readings=[reading("m-2", 1_000, 1)]))
    assert await count(store) == 2


async def test_gaps_and_rejects_are_stored(store: ReadingStore) -> None:
    gaps = [("m-1", 1_000, 61_000), ("m-2", 5_000, 9_000)]
    rejects = [("m-1", 70_000, "power 1e+09 W beyond ±1e+06 W", 1e9), ("m-2", 8, "NaN", None)]
    await store.commit(Cycle(gaps=gaps, rejects=rejects))
    join = "JOIN meters m ON m.id = t.meter ORDER BY m.meter_id"
    q_gaps = f"SELECT m.meter_id, t.start_ts_ms, t.end_ts_ms FROM gaps t {join}"
    assert await store.query(q_gaps) == gaps
    q_rejects = f"SELECT m.meter_id, t.ts_ms, t.reason, t.power_w FROM rejects t {join}"
    assert await store.query(q_rejects) == rejects


# -- retention ------------------------------------------------------------------------------


async def test_retention_deletes_only_published_readings_before_the_cutoff(
    store: ReadingStore,
) -> None:
    m1, m2 = series("m-1", 5), series("m-2", 3)  # ts 1000, 2000, ...
    await store.commit(Cycle(readings=m1 + m2))
    await store.mark_published(m1[:3])  # m-1 published up to ts 3000; m-2 not at all

    assert await store.apply_retention(3_000) == 2  # m-1 at 1000 and 2000 (the cutoff is strict)
    # m-1 at 3000 is the last published reading: kept, it starts the next one's interval;
    # 4000 and 5000 are unpublished
    assert await store.apply_retention(10_000) == 0
    remaining = await store.query("SELECT meter_id, ts_ms FROM readings ORDER BY meter_id, ts_ms")
    assert remaining == [
        ("m-1", 3_000),
        ("m-1", 4_000),
        ("m-1", 5_000),
        ("m-2", 1_000),
        ("m-2", 2_000),
        ("m-2", 3_000),
    ]
    assert await store.apply_retention(10_000) == 0
    assert await store.outbox_depth() == {"m-1": 2, "m-2": 3}


async def test_retention_keeps_each_meters_newest_reading_and_its_totals(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = ReadingStore(path)
    try:
        await store.register(METERS[:1])
        old = [reading("m-1", t, t // 1000, 10, t * 10) for t in (1_000, 2_000, 3_000)]
        await store.commit(Cycle(readings=old))
        await store.mark_published(old)
        assert await store.apply_retention(10_000) == 2  # an idle meter keeps its last row
        restored = (await store.restore())["m-1"]
        assert (restored.seq, restored.total_uwh) == (3, 30_000)
        newer = reading("m-1", 20_000, 4, 0, 30_000)
        await store.commit(Cycle(readings=[newer]))
        assert await store.outbox_depth() == {"m-1": 1}
        await store.mark_published([newer])
        assert await store.unpublished() == []
        assert await store.outbox_depth() == {"m-1": 0}
    finally:
        await store.close()


async def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = ReadingStore(tmp_path / "store.db")
    await store.register(METERS)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.outbox_depth()
    await store.close()  # closing twice is harmless


# -- query plans ----------------------------------------------------------------------------


async def plan(store: ReadingStore, sql: str, params: tuple[object, ...] = ()) -> list[str]:
    return [row[3] for row in await store.query(f"EXPLAIN QUERY PLAN {sql}", params)]


def scans_samples(details: list[str]) -> bool:
    """A step reads samples without seeking its key: a SCAN, or a SEARCH with no bound on the
    key's first column (`meter=` where samples are clustered by meter, `ts_ms` in time)."""
    steps = [d for d in details if re.match(r"(SCAN|SEARCH) (s|samples)\b", d)]
    return not steps or any("(meter=" not in d and "(ts_ms" not in d for d in steps)


async def test_a_new_store_keeps_its_readings_in_time_order(store: ReadingStore) -> None:
    await store.insert_many(series("m-1", 3))
    assert store.time_ordered
    keys = await store.query("SELECT name, pk FROM pragma_table_info('samples') WHERE pk > 0")
    assert sorted(keys, key=lambda k: k[1]) == [("ts_ms", 1), ("meter", 2)]


async def test_range_query_on_readings_seeks_the_samples_primary_key(store: ReadingStore) -> None:
    await store.insert_many(series("m-1", 100) + series("m-2", 100))
    details = await plan(
        store, "SELECT * FROM readings WHERE meter_id = ? AND ts_ms BETWEEN ? AND ?", ("m-1", 0, 9)
    )
    assert any(
        re.match(r"SEARCH s USING PRIMARY KEY \(ts_ms>\? AND ts_ms<\?\)", d) for d in details
    ), details
    assert not scans_samples(details), details


async def test_latest_readings_does_not_scan_samples(store: ReadingStore) -> None:
    await store.insert_many(series("m-1", 100) + series("m-2", 100))
    details = await plan(store, "SELECT * FROM latest_readings")
    assert not scans_samples(details), details
    rows = await store.query("SELECT meter_id, ts_ms, seq FROM latest_readings ORDER BY meter_id")
    assert rows == [("m-1", 100_000, 100), ("m-2", 100_000, 100)]


async def test_each_meters_span_bounds_its_readings_whoever_writes_them(
    store: ReadingStore,
) -> None:
    await store.commit(Cycle(readings=series("m-1", 5, start_ms=10_000)))

    def raw(sql: str, params: tuple[object, ...]) -> None:  # a person with sqlite3
        with sqlite3.connect(store.path) as conn:
            conn.execute(sql, params)

    raw(
        "INSERT INTO samples (meter, ts_ms, seq, energy, energy_total) VALUES (1, ?, 0, 0, 0)",
        (500,),
    )
    raw("UPDATE samples SET ts_ms = ? WHERE meter = 1 AND ts_ms = ?", (99_000, 14_000))
    spans = await store.query("SELECT meter_id, first_ts_ms, last_ts_ms FROM meters ORDER BY 1")
    assert spans == [("m-1", 500, 99_000), ("m-2", None, None)]
    raw("DELETE FROM samples WHERE meter = 1 AND ts_ms = ?", (99_000,))
    # a deletion leaves the span wide (a bound, not the exact ends): nothing is missed
    assert (await store.restore())["m-1"].ts_ms == 13_000
    rows = await store.query("SELECT meter_id, ts_ms FROM latest_readings")
    assert rows == [("m-1", 13_000)]


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE meters (id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL UNIQUE,
    building TEXT NOT NULL DEFAULT '', floor TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '', published_seq INTEGER NOT NULL DEFAULT 0,
    published_ts_ms INTEGER NOT NULL DEFAULT 0, boot_id TEXT, mono_ms INTEGER);
CREATE TABLE samples (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    voltage INTEGER, current INTEGER, power INTEGER, pf INTEGER, freq INTEGER,
    import_energy INTEGER, energy INTEGER NOT NULL, energy_total INTEGER NOT NULL, extra TEXT,
    PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID;
CREATE VIEW latest_readings AS SELECT 1 AS stale;
INSERT INTO meters (id, meter_id) VALUES (1, 'm-1'), (2, 'm-2'), (3, 'm-3');
"""


async def test_a_store_of_schema_1_keeps_its_order_and_gains_the_spans(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1)
        conn.executemany(
            "INSERT INTO samples (meter, ts_ms, seq, power, energy, energy_total) "
            "VALUES (?, ?, ?, 10000, 1000, ?)",
            [(m, 1_000 * k, k, 1_000 * k) for m in (1, 2) for k in range(1, 11)],
        )
    store = ReadingStore(path)
    try:
        await store.register(METERS)
        assert not store.time_ordered
        spans = await store.query("SELECT meter_id, first_ts_ms, last_ts_ms FROM meters ORDER BY 1")
        assert spans == [("m-1", 1_000, 10_000), ("m-2", 1_000, 10_000), ("m-3", None, None)]
        assert {m: r.seq for m, r in (await store.restore()).items()} == {"m-1": 10, "m-2": 10}
        await store.commit(Cycle(readings=[reading("m-1", 11_000, 11, 1000, 11_000)]))
        rows = await store.query("SELECT meter_id, seq FROM latest_readings ORDER BY 1")
        assert rows == [("m-1", 11), ("m-2", 10)]
        assert [r.seq for r in await store.unpublished()][:2] == [1, 1]
        assert await store.outbox_depth() == {"m-1": 11, "m-2": 10, "m-3": 0}
        assert (await store.query("SELECT value FROM meta WHERE key = 'schema_version'")) == [
            ("3",)
        ]
    finally:
        await store.close()


SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE meters (id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL UNIQUE,
    building TEXT NOT NULL DEFAULT '', floor TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '', published_seq INTEGER NOT NULL DEFAULT 0,
    published_ts_ms INTEGER NOT NULL DEFAULT 0, boot_id TEXT, mono_ms INTEGER,
    first_ts_ms INTEGER, last_ts_ms INTEGER);
CREATE TABLE samples (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    voltage INTEGER, current INTEGER, power INTEGER, pf INTEGER, freq INTEGER,
    import_energy INTEGER, energy INTEGER NOT NULL, energy_total INTEGER NOT NULL, extra TEXT,
    PRIMARY KEY (ts_ms, meter)) WITHOUT ROWID;
CREATE TABLE gaps (meter INTEGER NOT NULL, start_ts_ms INTEGER NOT NULL,
    end_ts_ms INTEGER NOT NULL, PRIMARY KEY (meter, start_ts_ms)) WITHOUT ROWID;
CREATE TABLE rejects (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, reason TEXT NOT NULL,
    power_w REAL, PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID;
CREATE VIEW readings AS SELECT m.meter_id AS meter_id, s.ts_ms AS ts_ms,
    s.voltage / 100.0 AS voltage_v, s.current / 1000.0 AS current_a, s.power / 100.0 AS power_w,
    s.pf / 10000.0 AS power_factor, s.freq / 1000.0 AS frequency_hz,
    s.import_energy / 10.0 AS import_energy_wh,
    CAST(s.energy / 1000000.0 AS REAL) AS energy_wh,
    CAST(s.energy_total / 1000000.0 AS REAL) AS energy_total_wh, s.seq AS seq, s.extra AS extra
    FROM meters m JOIN samples s ON s.meter = m.id;
CREATE VIEW latest_readings AS SELECT r.* FROM meters m JOIN readings r
    ON r.meter_id = m.meter_id WHERE r.ts_ms = (SELECT ts_ms FROM samples WHERE meter = m.id
    AND ts_ms <= m.last_ts_ms ORDER BY ts_ms DESC LIMIT 1);
INSERT INTO meters (id, meter_id, published_seq, published_ts_ms, first_ts_ms, last_ts_ms)
    VALUES (1, 'm-1', 10, 10000, 1000, 10000), (2, 'm-2', 0, 0, 1000, 10000);
"""


async def test_a_store_of_schema_2_keeps_every_reading_and_gains_the_new_columns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    old = [
        (m, 1_000 * k, k, 23_000, 10_000 * k, 1_000, 1_000 * k, 12_345 + k)
        for m in (1, 2)
        for k in range(1, 11)
    ]
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_2)
        conn.executemany(
            "INSERT INTO samples (meter, ts_ms, seq, voltage, power, energy, energy_total, "
            "import_energy) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            old,
        )
        before = conn.execute("SELECT * FROM readings ORDER BY meter_id, ts_ms").fetchall()
    store = ReadingStore(path)
    try:
        await store.register(METERS)
        assert store.time_ordered
        version = await store.query("SELECT value FROM meta WHERE key = 'schema_version'")
        assert version == [("3",)]
        columns = [
            r[0] for r in await store.query("SELECT name FROM pragma_table_info('readings')")
        ]
        assert columns == VIEW_COLUMNS
        # every reading is there with the values it had, and exported nothing, estimated none
        after = await store.query(
            f"SELECT {', '.join(VIEW_COLUMNS)} FROM readings ORDER BY meter_id, ts_ms"
        )
        assert [row[:12] for row in after] == before
        assert {row[12:] for row in after} == {(0.0, 0.0, None, None, None)}
        assert [r.seq for r in await store.unpublished()] == list(range(1, 11))
        assert (await store.restore())["m-1"].registers.import_ == Witness(1_235.5, 10_000, True)
        # it takes the new values and events
        new = Reading("m-1", 11_000, 11, 0, 10_000, {"power_w": -5.0}, export_uwh=3,
                      export_total_uwh=3)  # fmt: skip
        event = MeterEvent("m-2", 11_000, "jump", "confirmed")
        await store.commit(Cycle(readings=[new], events=[event]))
        assert (await store.unpublished())[-1] == replace(new, interval_start_ms=10_000)
        assert [e.kind for e in await store.meter_events()] == ["jump"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:  # the file checks whole
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# -- failures -------------------------------------------------------------------------------


async def test_folder_that_cannot_be_created_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = blocker / "var" / "store.db"
    store = ReadingStore(path)
    try:
        with pytest.raises(StoreError, match=re.escape(str(path))):
            await store.register(METERS)
    finally:
        await store.close()


@pytest.mark.parametrize("damage", ["garbage", "directory"])
async def test_corrupt_or_unopenable_file_raises_store_error(tmp_path: Path, damage: str) -> None:
    # A directory stands in for an unwritable file: as root, chmod has no effect.
    path = tmp_path / "store.db"
    if damage == "garbage":
        path.write_bytes(b"\xde\xad\xbe\xef not an sqlite file " * 256)
    else:
        path.mkdir()
    store = ReadingStore(path)
    try:
        with pytest.raises(StoreError, match=re.escape(str(path))) as raised:
            await store.register(METERS)
        assert not isinstance(raised.value, sqlite3.Error)
    finally:
        await store.close()


# -- size -----------------------------------------------------------------------------------


async def test_bulk_insert_stays_compact_on_disk(store: ReadingStore) -> None:
    readings, start_ms = [], 1_700_000_000_000
    for meter_id in ("m-1", "m-2"):
        total = 0
        for i in range(5_000):
            power = 1500.0 + 700.0 * math.sin(i / 50) + (i % 7) * 0.37
            energy = round(power * 5 / 3600 * 1_000_000)
            total += energy
            values = dict(voltage_v=230.0 + 3.0 * math.sin(i / 30), current_a=power / 230.0)
            values |= dict(power_w=power, power_factor=0.95 + 0.04 * math.cos(i / 40))
            values |= dict(frequency_hz=50.0 + 0.05 * math.sin(i / 20))
            values |= dict(import_energy_wh=1_000_000.0 + total / 1_000_000)
            readings.append(Reading(meter_id, start_ms + i * 5_000, i + 1, energy, total, values))
    await store.insert_many(readings)

    assert await count(store) == 10_000
    await store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = store.path.with_name(store.path.name + "-wal")
    size = store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    per_reading = size / 10_000
    print(f"store: {size} bytes for 10000 readings = {per_reading:.1f} bytes per reading")
    assert per_reading < 80


async def test_values_beyond_the_integer_range_are_stored_as_missing(store: ReadingStore) -> None:
    garbage = reading("m-1", 1_000, 1, voltage_v=3.4e38, power_w=100.0, frequency_hz=-1e300)
    await store.commit(Cycle(readings=[garbage]))
    assert await store.query("SELECT voltage_v, power_w, frequency_hz FROM readings") == [
        (None, 100.0, None)
    ]


async def test_retention_in_small_chunks_deletes_the_same(store: ReadingStore) -> None:
    m1 = series("m-1", 25)
    await store.commit(Cycle(readings=m1))
    await store.mark_published(m1)
    assert await store.apply_retention(20_500, chunk=4) == 20  # ts 1000 … 20000
    assert await count(store) == 5


async def test_unpublished_readings_know_where_their_interval_starts(store: ReadingStore) -> None:
    first = reading("m-1", 1_000, 1, 0, 0)  # integrates nothing
    more = [reading("m-1", 1_000 * k, k, 500, 500 * (k - 1)) for k in (2, 3, 4)]
    after_gap = reading("m-1", 60_000, 5, 0, 1_500)
    await store.commit(Cycle(readings=[first, *more, after_gap]))
    starts = [(r.seq, r.interval_start_ms) for r in await store.unpublished()]
    assert starts == [(1, None), (2, 1_000), (3, 2_000), (4, 3_000), (5, None)]
    await store.mark_published([first, more[0]])  # the cursor is now at ts 2000
    starts = [(r.seq, r.interval_start_ms) for r in await store.unpublished()]
    assert starts == [(3, 2_000), (4, 3_000), (5, None)]


async def test_export_and_estimates_read_back_with_where_they_start(store: ReadingStore) -> None:
    first = reading("m-1", 1_000, 1)
    exporting = Reading("m-1", 2_000, 2, 0, 0, {"power_w": -50.0}, export_uwh=7, export_total_uwh=7)
    after_gap = Reading(
        "m-1",
        60_000,
        3,
        0,
        0,
        {"power_w": -50.0, "import_energy_wh": 10.0, "export_energy_wh": 20.5},
        export_total_uwh=7,
        estimated_uwh=0,
        estimated_export_uwh=800_000,
    )
    await store.commit(Cycle(readings=[first, exporting, after_gap]))
    found = await store.unpublished()
    # an all-export interval is integrated: it starts at the reading before
    assert [(r.seq, r.interval_start_ms, r.estimated_start_ms) for r in found] == [
        (1, None, None),
        (2, 1_000, None),
        (3, None, 2_000),
    ]
    assert found[1].export_uwh == 7 and found[1].export_total_uwh == 7
    assert (found[2].estimated_uwh, found[2].estimated_export_uwh) == (0, 800_000)
    assert found[2].values["export_energy_wh"] == 20.5
    assert found[2].payload("B", "1")["estimated_start"] == "1970-01-01T00:00:02.000Z"
    around = await store.readings_around("m-1", 1_500, 70_000)
    assert [(r.seq, r.interval_start_ms, r.estimated_start_ms) for r in around] == [
        (1, None, None),
        (2, 1_000, None),
        (3, None, 2_000),
    ]
    rows = await store.query(
        "SELECT seq, energy_export_wh, energy_export_total_wh, estimated_energy_wh, "
        "estimated_export_wh, export_energy_wh FROM readings ORDER BY seq"
    )
    assert rows == [
        (1, 0.0, 0.0, None, None, None),
        (2, 7e-6, 7e-6, None, None, None),
        (3, 0.0, 7e-6, 0.0, 0.8, 20.5),
    ]


# -- meter events ---------------------------------------------------------------------------


async def test_meter_events_are_recorded_with_the_cycle_and_listed(store: ReadingStore) -> None:
    detected = MeterEvent(
        "m-1", 5_000, "replaced", "detected", before_wh=9e6, after_wh=3e6, recorded_ms=5_010
    )
    await store.commit(Cycle(readings=[reading("m-1", 5_000, 1)], events=[detected]))
    (confirmed,) = await store.record_events(
        [
            MeterEvent(
                "m-1",
                4_000,
                "replaced",
                "confirmed",
                old_final_wh=9_000_500.0,
                new_start_wh=0.0,
                note="new meter, serial 42",
                recorded_ms=9_000,
            )
        ]
    )
    other = MeterEvent("m-9", 1_000, "jump", "confirmed", register="export_energy_wh")
    (other,) = await store.record_events([other])
    assert other.recorded_ms == 1_000  # none given: recorded at its time
    everything = await store.meter_events()
    assert [e.id for e in everything] == [other.id, confirmed.id, 1]
    assert (await store.meter_events("m-1"))[1] == replace(detected, id=1)
    assert await store.meter_events("m-1", source="confirmed") == [confirmed]
    assert await store.meter_events("m-1", since_ms=4_500) == [replace(detected, id=1)]
    assert await store.meter_events(after_id=1) == [other, confirmed]


async def test_a_failed_cycle_records_none_of_its_events(store: ReadingStore) -> None:
    event = MeterEvent("m-1", 5_000, "reset", "detected")
    await store.commit(Cycle(readings=[reading("m-1", 5_000, 1)]))
    with pytest.raises(StoreError, match="UNIQUE"):
        await store.commit(Cycle(readings=[reading("m-1", 5_000, 2)], events=[event]))
    assert await store.meter_events() == []


# -- searches in time order stay inside what they look for ------------------------------------


T = TypeVar("T")


def vm_steps(path: Path, work: Callable[[sqlite3.Connection], T]) -> tuple[int, T]:
    """(SQLite virtual-machine steps, result) of `work` on a read-only connection: a measure
    of the rows it reads."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    steps = 0

    def count_steps() -> int:
        nonlocal steps
        steps += 100
        return 0

    try:
        conn.set_progress_handler(count_steps, 100)
        result = work(conn)
    finally:
        conn.close()
    return steps, result


HISTORY = 20_000  # readings of each old meter, all acknowledged


@pytest.fixture
async def old_and_dead(tmp_path: Path) -> AsyncIterator[ReadingStore]:
    """Two meters with a long acknowledged history, one of them dead since its middle, a meter
    that never answered, and a few fresh readings of the live one."""
    store = ReadingStore(tmp_path / "store.db")
    await store.register([*METERS, MeterRecord("m-3")])
    live = series("m-1", HISTORY, start_ms=1_000_000)
    dead = series("m-2", HISTORY // 2, start_ms=1_000_000)
    await store.insert_many(live + dead)
    await store.mark_published([live[-1], dead[-1]])
    await store.commit(Cycle(readings=series("m-1", 3, start_ms=1_000_000 + HISTORY * 1_000)))
    try:
        yield store
    finally:
        await store.close()


async def test_the_outbox_is_counted_from_the_cursors_of_meters_with_readings_to_send(
    old_and_dead: ReadingStore,
) -> None:
    """A meter that never answered (cursor 0) or died long ago must not make the count read
    the whole table (before: every reading since the oldest cursor of any meter)."""
    await old_and_dead.close()
    steps, rows = vm_steps(old_and_dead.path, lambda c: c.execute(OUTBOX_SQL_BY_TIME).fetchall())
    assert rows == [("m-1", 3, 1_000_000 + HISTORY * 1_000), ("m-2", 0, None), ("m-3", 0, None)]
    assert steps < HISTORY // 4, steps


async def test_a_dead_meters_edges_are_found_without_reading_the_others_history(
    old_and_dead: ReadingStore,
) -> None:
    from campus_energy.dashboard import store_queries as q

    await old_and_dead.close()
    end = 1_000_000 + HISTORY * 1_000  # long after m-2 died

    def edges(conn: sqlite3.Connection) -> tuple[Any, ...]:
        return (
            q.spans(conn, [2], [end - 60_000, end]),
            q.mean_power(conn, [2], end - 60_000, end, 60_000),
            q.register_drift(conn, [2], end - 60_000, end),
        )

    steps, (spans, power, drift) = vm_steps(old_and_dead.path, edges)
    assert spans == {2: [q.Span(0.0, 0)]} and power == [] and drift == []
    assert steps < HISTORY // 4, steps


async def test_a_full_disk_makes_room_from_the_oldest_acknowledged_readings_by_time(
    old_and_dead: ReadingStore,
) -> None:
    before = {
        m: n
        for m, n in await old_and_dead.query(
            "SELECT meter_id, count(*) FROM readings GROUP BY meter_id"
        )
    }
    await old_and_dead.limit_growth(0)
    first = HISTORY + 4
    fresh = series("m-1", 400, start_ms=1_000_000 + (HISTORY + 3) * 1_000)
    fresh = [replace(r, seq=first + k) for k, r in enumerate(fresh)]
    evicted = await old_and_dead.commit_making_room(Cycle(readings=fresh))
    await old_and_dead.limit_growth(None)
    after = {
        m: n
        for m, n in await old_and_dead.query(
            "SELECT meter_id, count(*) FROM readings GROUP BY meter_id"
        )
    }
    assert evicted > 0 and sum(before.values()) - evicted + len(fresh) == sum(after.values())
    oldest = await old_and_dead.query("SELECT min(ts_ms) FROM readings")
    assert oldest[0][0] > 1_000_000  # the oldest went first, of both meters alike
    # each meter's acknowledged last reading and everything after it stay
    kept = await old_and_dead.query(
        "SELECT meter_id, max(seq) FROM readings GROUP BY meter_id ORDER BY 1"
    )
    assert kept == [("m-1", first + len(fresh) - 1), ("m-2", HISTORY // 2)]
    # nothing waiting for the broker went
    assert await old_and_dead.outbox_depth() == {"m-1": 3 + len(fresh), "m-2": 0, "m-3": 0}


async def test_a_register_still_settling_after_an_event_is_not_trusted_after_a_restart(
    store: ReadingStore,
) -> None:
    """The event showed at one reading and the register was still implausible at the next
    (no second event): a restart must not take that last read for a trusted baseline."""
    await store.commit(
        Cycle(
            readings=[Reading("m-1", 1_000, 1, 0, 0, {"power_w": 1.0, "import_energy_wh": 50.0})],
            events=[MeterEvent("m-1", 1_000, "reset", "detected", before_wh=9e6, after_wh=50.0)],
            settling=[("m-1", "import_energy_wh")],
        )
    )
    await store.commit(
        Cycle(
            readings=[Reading("m-1", 2_000, 2, 0, 0, {"power_w": 1.0, "import_energy_wh": 7e6})],
            settling=[("m-1", "import_energy_wh")],
        )
    )
    restored = (await store.restore())["m-1"]
    assert restored.registers.import_ == Witness(7e6, 2_000, trusted=False)
    # settled at the next reading: trusted again
    await store.commit(
        Cycle(
            readings=[Reading("m-1", 3_000, 3, 0, 0, {"power_w": 1.0, "import_energy_wh": 7e6})],
            settling=[("m-1", "")],
        )
    )
    assert (await store.restore())["m-1"].registers.import_ == Witness(7e6, 3_000, trusted=True)
