"""`campus-energy reconcile`: windows rebuilt from the logger's store against every sink.

The windows are written by the real pipeline (the store's outbox → the
publisher → Mosquitto → the bridge → the sink). Then the sink is damaged the
ways a sink gets damaged — a window deleted, a window's energy changed, a
window holding a reading that is not in the store, a window with no readings
behind it — and reconcile must report exactly those, rewrite the first three
with --apply (leaving the last alone: it is older than the store's readings),
report nothing the second time, and leave the rollups equal to the sum of the
windows. A forged day of windows in a time the store covers, with no reading
behind them, is deleted by --apply, and only that.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support.config import make_config, meter_at
from tests.support.processes import run_cli
from tests.support.services import serving
from tests.support.sinks import Doc, SinkFor, docs_of, rollup_totals, sqlite_sink
from tests.support.waiting import eventually

from campus_energy.backends import open_sink
from campus_energy.backends.base import WindowSink
from campus_energy.bridge.service import Bridge
from campus_energy.config import Config
from campus_energy.core.energy import split_trapezoid_uwh
from campus_energy.core.readings import Reading
from campus_energy.core.reconciliation import Finding
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.windows import Contribution, WindowDelta, document_id, window_stamp
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.ops.reconcile import Report, as_json, as_text, reconcile

ZONE = ZoneInfo("Asia/Kolkata")
WINDOW_S = 300
WINDOW_MS = WINDOW_S * 1000


def utc_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# 40 minutes of readings every 5 s across the local midnight (18:30 UTC in Asia/Kolkata):
# two local days, and the day-long chunks reconcile works in meet in the middle of the data.
T0 = utc_ms("2026-01-14T18:10:00")
COUNT = 480
# meter -> (building, timestamp offset in ms: readings off, and exactly on, window boundaries)
METERS = {"lib-main": ("LIB", 1300), "lib-f1": ("LIB", 2700), "admin-old": ("ADM", 0)}
FIRST_DAY, LAST_DAY = "2026-01-14", "2026-01-15"
RANGE = (utc_ms("2026-01-13T18:30:00"), utc_ms("2026-01-15T18:30:00"))  # the two local days

DELETED = ("lib-f1", utc_ms("2026-01-14T18:30:00"))  # the first window of the second day
CHANGED = ("lib-main", utc_ms("2026-01-14T18:25:00"))
ADDED_TO = ("admin-old", utc_ms("2026-01-14T18:40:00"))
EXTRA = ("lib-main", utc_ms("2026-01-14T10:00:00"))  # no reading anywhere near


def meter_readings(meter_id: str, offset_ms: int, hole: range | None = None) -> list[Reading]:
    """Trapezoidal energy from a varying power, as the logger stores it; `hole`: a gap
    (the first reading after it integrates nothing)."""
    found: list[Reading] = []
    total = 0
    previous: tuple[int, float] | None = None
    for i in range(COUNT):
        if hole is not None and i in hole:
            previous = None
            continue
        ts = T0 + offset_ms + i * 5000
        power = round(1200 + 500 * math.sin(i / 9) + 40 * math.cos(i * 1.7), 2)
        energy = 0
        if previous is not None:
            energy = round((previous[1] + power) / 2 * (ts - previous[0]) / 3600 * 1000)
        total += energy
        values = {
            "power_w": power,
            "voltage_v": round(230 + math.sin(i / 5), 2),
            "current_a": round(power / 230, 3),
            "power_factor": 0.95,
            "frequency_hz": 50.0,
        }
        found.append(Reading(meter_id, ts, i + 1, energy, total, values))
        previous = (ts, power)
    return found


def all_readings() -> list[Reading]:
    holes = {"lib-f1": range(200, 212)}  # a minute without readings
    return [
        r
        for meter, (_, offset) in METERS.items()
        for r in meter_readings(meter, offset, holes.get(meter))
    ]


def configure(tmp_path: Path, broker_port: int, sink: dict[str, Any]) -> Config:
    return make_config(
        [{"name": "plant", "transport": "tcp", "host": "127.0.0.1", "port": 1502}],
        [
            meter_at(meter, "plant", unit, "eastron-sdm120", building=building, floor="1")
            for unit, (meter, (building, _)) in enumerate(METERS.items(), start=1)
        ],
        site={"timezone": ZONE.key},
        storage={"path": str(tmp_path / "store.db")},
        mqtt={"port": broker_port},
        logger={"id": "reconcile-test"},
        bridge={
            "window_s": WINDOW_S,
            "grace_s": 0,
            "spool_path": str(tmp_path / "spool.db"),
            "client_id": "bridge-reconcile",
            **sink,
        },
    )


async def fill_store(config: Config, readings: Iterable[Reading]) -> ReadingStore:
    store = ReadingStore(config.storage.path)
    await store.register(MeterRecord(m.id, m.building, m.floor, m.profile) for m in config.meters)
    await store.insert_many(readings)
    return store


async def through_the_pipeline(config: Config) -> None:
    """Every stored reading: published from the outbox, received by the bridge, written."""
    store = await fill_store(config, all_readings())
    bridge = Bridge(config)
    try:
        async with serving(bridge, "subscribed"):
            drained = asyncio.Event()
            drained.set()  # publish until the outbox is empty, then return
            await asyncio.wait_for(Publisher(config, store, StatusBoard()).run(drained), 60)
            await eventually(lambda: bridge.counters.readings >= len(METERS) * COUNT - 12)
    finally:
        await store.close()


def stored(config: Config, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def by_status(report: Report) -> dict[str, str]:
    return {f.document_id: f.status for f in report.findings}


# --- damaging a sink, the same way in each -----------------------------------------------------


def damage(config: Config, kind: str) -> None:
    """Delete DELETED and add 12.5 Wh to CHANGED, behind the sink's back."""
    deleted, changed = document_id(*DELETED), document_id(*CHANGED)
    if kind == "sqlite":
        conn = sqlite3.connect(config.bridge.sqlite.path)
        with conn:
            conn.execute("DELETE FROM window_aggregates WHERE id = ?", (deleted,))
            conn.execute(
                "UPDATE window_aggregates SET total_energy_wh = total_energy_wh + 12.5 "
                "WHERE id = ?",
                (changed,),
            )
        conn.close()
    elif kind == "postgres":
        import psycopg

        pg = config.bridge.postgres
        assert pg.dsn is not None
        table = f"{pg.schema_name}.window_aggregates"
        with psycopg.connect(pg.dsn) as conn:
            conn.execute(f"DELETE FROM {table} WHERE id = %s", (deleted,))
            conn.execute(
                f"UPDATE {table} SET total_energy_wh = total_energy_wh + 12.5 WHERE id = %s",
                (changed,),
            )
    else:
        from google.cloud import firestore

        fs = config.bridge.firestore
        client = firestore.Client(project=fs.project)
        try:
            collection = client.collection(fs.collection)
            if fs.layout == "per-meter":
                collection.document(deleted).delete()
                ref = collection.document(changed)
                ref.update({"total_energy_wh": ref.get().to_dict()["total_energy_wh"] + 12.5})
            else:
                for (meter, start), change in ((DELETED, "delete"), (CHANGED, "energy")):
                    ref = collection.document(window_stamp(start))
                    data = ref.get().to_dict()
                    if change == "delete":
                        del data["meters"][meter]
                    else:
                        data["meters"][meter]["total_energy_wh"] += 12.5
                    ref.set(data)
        finally:
            client.close()


async def write_through_the_sink(config: Config) -> None:
    """A reading the store never had, into ADDED_TO; a window of EXTRA with no readings."""
    sink = open_sink(config)
    try:
        stray = Contribution(ADDED_TO[0], ADDED_TO[1], 10**9, 0.0, 0.0, True, power_w=9000.0)
        ghost = Contribution(EXTRA[0], EXTRA[1], 10**9, 3.0, 30.0, True, power_w=360.0)
        await sink.merge(
            [
                WindowDelta(ADDED_TO[0], ADDED_TO[1], WINDOW_S, (stray,), "ADM", "1"),
                WindowDelta(EXTRA[0], EXTRA[1], WINDOW_S, (ghost,), "LIB", "1"),
            ],
            epoch_ms(time.time()),
        )
    finally:
        await sink.close()


def balanced(config: Config, docs: list[Doc]) -> None:
    """The windows hold the store's energy and readings once each (the extra window aside), and
    the sink's rollups hold exactly its windows."""
    extra = document_id(*EXTRA)
    assert len({d.id for d in docs}) == len(docs)
    for meter in METERS:
        mine = [d for d in docs if d.meter_id == meter and d.id != extra]
        energy, count = stored(
            config, "SELECT sum(energy_wh), count(*) FROM readings WHERE meter_id = ?", (meter,)
        )[0]
        assert sum(d.total_energy_wh for d in mine) == pytest.approx(energy, abs=1e-6)
        assert sum(d.readings_in_batch for d in mine) == count
    sums = rollup_totals(config)
    if sums is None:
        return
    for meter in METERS:
        mine = [d for d in docs if d.meter_id == meter]
        daily, hourly, readings, windows = sums[meter]
        assert daily == pytest.approx(sum(d.total_energy_wh for d in mine), abs=1e-6)
        assert hourly == pytest.approx(daily, abs=1e-6)
        assert (readings, windows) == (sum(d.readings_in_batch for d in mine), len(mine))
    assert sums[""][0] == pytest.approx(sum(d.total_energy_wh for d in docs), abs=1e-6)


def firestore_source(config: Config) -> Any:
    """The API's Firestore source, refreshed on every call."""
    from campus_energy.backends.firestore.source import FirestoreSource

    return FirestoreSource(config.bridge.firestore, ZONE, cache_s=0)


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["sqlite", "postgres", "firestore-per-meter", "firestore-per-window"]
)
async def test_reconcile_reports_exactly_the_damage_and_apply_repairs_it(
    kind: str, tmp_path: Path, mosquitto: Any, sink_for: SinkFor
) -> None:
    config = configure(tmp_path, mosquitto.port, sink_for(kind))
    await through_the_pipeline(config)
    windows = len(docs_of(config))
    assert windows == 3 * 8

    # What the bridge wrote is what reconcile rebuilds, over any range: the edges of a
    # range (readings whose interval starts before it or ends after it) included.
    clean = await reconcile(config, *RANGE)
    assert clean.findings == []
    assert clean.summary.counts()["equal"] == windows
    stored_energy = stored(config, "SELECT sum(energy_wh) FROM readings")[0][0]
    assert clean.summary.local_energy_wh == pytest.approx(stored_energy, abs=1e-6)
    assert clean.summary.sink_energy_wh == pytest.approx(stored_energy, abs=1e-6)
    middle = await reconcile(config, utc_ms("2026-01-14T18:15:00"), utc_ms("2026-01-14T18:40:00"))
    assert (middle.findings, middle.summary.counts()["equal"]) == ([], 3 * 5)

    deleted = next(d for d in docs_of(config) if d.id == document_id(*DELETED))
    damage(config, kind.split("-")[0])
    await write_through_the_sink(config)
    source = firestore_source(config) if kind.startswith("firestore") else None
    try:
        if source is not None:  # the API has read the damaged windows
            damaged = source.total(FIRST_DAY, LAST_DAY, None).energy_wh
            expected = stored_energy - deleted.total_energy_wh + 12.5 + 3.0
            assert damaged == pytest.approx(expected, abs=1e-6)
        await damage_is_reported_and_repaired(config, windows, stored_energy)
        if source is not None:  # the API's index takes each rewrite in place of the old one
            total = source.total(FIRST_DAY, LAST_DAY, None)
            assert total.energy_wh == pytest.approx(stored_energy + 3.0, abs=1e-6)
    finally:
        if source is not None:
            source.close()


async def damage_is_reported_and_repaired(
    config: Config, windows: int, stored_energy: float
) -> None:
    report = await reconcile(config, *RANGE)
    assert by_status(report) == {
        document_id(*DELETED): "missing",
        document_id(*CHANGED): "differs",
        document_id(*ADDED_TO): "differs",
        document_id(*EXTRA): "extra",
    }
    found: dict[str, Finding] = {f.document_id: f for f in report.findings}
    changed = found[document_id(*CHANGED)]
    assert [(d.name, d.by) for d in changed.differences] == [("total_energy_wh", -12.5)]
    assert changed.energy_difference_wh == pytest.approx(-12.5, abs=1e-9)
    added = {d.name: d for d in found[document_id(*ADDED_TO)].differences}
    assert added["readings_in_batch"].by == -1
    assert added["max_power_w"].sink == 9000.0
    assert "total_energy_wh" not in added
    missing = found[document_id(*DELETED)]
    assert missing.sink_energy_wh is None
    assert missing.local_energy_wh is not None and missing.local_energy_wh > 0
    assert found[document_id(*EXTRA)].energy_difference_wh == -3.0
    assert report.summary.counts() == {
        "checked": windows + 1,
        "equal": windows - 3,
        "differing": 2,
        "missing": 1,
        "extra": 1,
        "partial": 0,
        "orphan": 0,
    }
    assert report.summary.rewritten == 0
    assert len(docs_of(config)) == windows  # a report changes nothing

    applied = await reconcile(config, *RANGE, apply=True)
    assert by_status(applied) == by_status(report)
    assert applied.summary.rewritten == 3

    again = await reconcile(config, *RANGE, apply=True)
    assert by_status(again) == {document_id(*EXTRA): "extra"}  # reported, never deleted
    assert again.summary.rewritten == 0
    assert again.summary.local_energy_wh == pytest.approx(stored_energy, abs=1e-6)
    assert again.summary.sink_energy_wh == pytest.approx(stored_energy + 3.0, abs=1e-6)

    docs = docs_of(config)
    assert len(docs) == windows + 1
    balanced(config, docs)


async def test_only_the_chosen_meters_are_checked_and_rewritten(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = configure(tmp_path, mosquitto.port, sqlite_sink(tmp_path))
    await through_the_pipeline(config)
    damage(config, "sqlite")
    report = await reconcile(config, *RANGE, meters=["lib-main"], apply=True)
    assert by_status(report) == {document_id(*CHANGED): "differs"}
    assert report.summary.counts()["checked"] == 8
    after = await reconcile(config, *RANGE)
    assert by_status(after) == {document_id(*DELETED): "missing"}  # lib-f1 was left alone


async def test_windows_older_than_the_stored_readings_are_never_rewritten(
    tmp_path: Path,
) -> None:
    """After retention, the first stored reading integrated from one that is gone: the windows
    before it are extra, its own is partial, and --apply touches neither."""
    config = configure(tmp_path, 1883, sqlite_sink(tmp_path))
    readings = [r for r in all_readings() if r.meter_id == "lib-main"]
    everything = await reconcile_into_an_empty_sink(config, readings)
    assert everything.summary.rewritten == 8
    cutoff = utc_ms("2026-01-14T18:22:00")
    conn = sqlite3.connect(config.storage.path)
    with conn:
        conn.execute("DELETE FROM samples WHERE ts_ms < ?", (cutoff,))
    conn.close()
    report = await reconcile(config, *RANGE, apply=True)
    assert by_status(report) == {
        document_id("lib-main", utc_ms(f"2026-01-14T18:{m}:00")): "extra" for m in (10, 15)
    } | {document_id("lib-main", utc_ms("2026-01-14T18:20:00")): "partial"}
    assert report.summary.rewritten == 0
    assert len(docs_of(config)) == 8


async def reconcile_into_an_empty_sink(config: Config, readings: list[Reading]) -> Report:
    store = await fill_store(config, readings)
    await store.close()
    report = await reconcile(config, *RANGE, apply=True)
    assert {f.status for f in report.findings} == {"missing"}
    return report


# --- orphans: windows no reading stands behind ------------------------------------------------

DAY_MS = 86_400_000
LATER_MS = 3 * DAY_MS  # the logger's second visit: three days after the first
FORGED_DAY = "2026-01-16"  # local; 2026-01-15T18:30Z to 2026-01-16T18:30Z, between the visits
FORGED = (utc_ms("2026-01-15T18:30:00"), utc_ms("2026-01-16T18:30:00"))
BEFORE_FIRST = (utc_ms("2026-01-13T12:00:00"), utc_ms("2026-01-13T13:00:00"))
WHOLE = (utc_ms("2026-01-13T00:00:00"), utc_ms("2026-01-18T00:00:00"))
FORGED_WH = 100.0  # a forged window: 1.2 kW for 5 minutes


def two_visits() -> list[Reading]:
    """lib-main's readings of 40 minutes, and of 40 more three days later (the first of
    those integrates nothing: the meter was away)."""
    first = meter_readings("lib-main", METERS["lib-main"][1])
    total = first[-1].total_uwh
    second = [
        replace(r, ts_ms=r.ts_ms + LATER_MS, seq=r.seq + COUNT, total_uwh=r.total_uwh + total)
        for r in first
    ]
    return first + second


async def forge(config: Config, meter: str, start_ms: int, end_ms: int) -> int:
    """Windows of a meter at 1.2 kW with full coverage (60 readings each), straight into the
    sink: what a forged day of readings leaves behind."""
    deltas = [
        WindowDelta(
            meter,
            start,
            WINDOW_S,
            tuple(
                Contribution(meter, start, 10**6 + i, FORGED_WH / 60, 5.0, True, power_w=1200.0)
                for i in range(60)
            ),
            "LIB",
            "1",
        )
        for start in range(start_ms, end_ms, WINDOW_MS)
    ]
    sink = open_sink(config)
    try:
        await sink.merge(deltas, epoch_ms(time.time()))
    finally:
        await sink.close()
    return len(deltas)


def daily_energy(config: Config, day: str) -> float | None:
    """The campus's energy of a local day in the sink's own rollups (None: sink without)."""
    bridge = config.bridge
    if bridge.sink == "sqlite":
        conn = sqlite3.connect(f"file:{bridge.sqlite.path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT energy_wh FROM rollup_daily_campus WHERE day = ?", (day,)
            ).fetchone()
        finally:
            conn.close()
    elif bridge.sink == "postgres":
        import psycopg

        assert bridge.postgres.dsn is not None
        with psycopg.connect(bridge.postgres.dsn) as pg:
            row = pg.execute(
                f"SELECT energy_wh FROM {bridge.postgres.schema_name}.rollup_daily_campus "
                "WHERE day = %s",
                (day,),
            ).fetchone()
    else:
        return None
    return 0.0 if row is None else float(row[0])


@pytest.mark.parametrize(
    "kind", ["sqlite", "postgres", "firestore-per-meter", "firestore-per-window"]
)
async def test_a_forged_day_with_no_readings_behind_it_is_deleted_and_nothing_else(
    kind: str, tmp_path: Path, sink_for: SinkFor
) -> None:
    config = configure(tmp_path, 1883, sink_for(kind))
    store = await fill_store(config, two_visits())
    await store.close()
    written = await reconcile(config, *WHOLE, apply=True)
    assert written.summary.rewritten == 2 * 8
    real = {d.id: d for d in docs_of(config)}
    assert len(real) == 2 * 8
    forged = await forge(config, "lib-main", *FORGED)
    assert forged == 288
    kept = await forge(config, "lib-main", *BEFORE_FIRST)  # older than the first reading
    kept += await forge(config, "ghost-1", FORGED[0], FORGED[0] + 12 * WINDOW_MS)  # no store
    forged_docs = [d for d in docs_of(config) if d.id not in real]
    assert len(forged_docs) == forged + kept
    if daily_energy(config, FORGED_DAY) is not None:  # the books showed a day of 1.2 kW
        assert daily_energy(config, FORGED_DAY) == pytest.approx(
            288 * FORGED_WH + 12 * FORGED_WH, abs=1e-6
        )

    report = await reconcile(config, *WHOLE)  # a dry run only reports
    assert report.summary.counts() == {
        "checked": 16 + forged + kept,
        "equal": 16,
        "differing": 0,
        "missing": 0,
        "extra": kept,
        "partial": 0,
        "orphan": forged,
    }
    orphans = {f.window_start_ms for f in report.findings if f.status == "orphan"}
    assert orphans == set(range(*FORGED, WINDOW_MS))
    assert {(f.meter_id, f.status) for f in report.findings} == {
        ("lib-main", "orphan"),
        ("lib-main", "extra"),
        ("ghost-1", "extra"),
    }
    assert report.summary.sink_energy_wh - report.summary.local_energy_wh == pytest.approx(
        (forged + kept) * FORGED_WH, abs=1e-6
    )
    assert "run with --apply to delete the 288 orphan windows" in as_text(report)
    assert len(docs_of(config)) == 16 + forged + kept

    applied = await reconcile(config, *WHOLE, apply=True)
    assert (applied.summary.deleted, applied.summary.rewritten) == (forged, 0)
    assert as_json(applied)["summary"]["deleted"] == forged

    again = await reconcile(config, *WHOLE, apply=True)
    assert again.summary.counts()["orphan"] == again.summary.deleted == 0
    assert {f.status for f in again.findings} == {"extra"}
    assert len(again.findings) == kept

    docs = docs_of(config)
    assert {d.id: d for d in docs if d.id in real} == real  # the real windows, untouched
    assert {d.id for d in docs} - set(real) == {
        document_id("lib-main", start) for start in range(*BEFORE_FIRST, WINDOW_MS)
    } | {document_id("ghost-1", FORGED[0] + i * WINDOW_MS) for i in range(12)}
    energy, count = stored(
        config, "SELECT sum(energy_wh), count(*) FROM readings WHERE meter_id = 'lib-main'"
    )[0]
    mine = [d for d in docs if d.id in real]
    assert sum(d.total_energy_wh for d in mine) == pytest.approx(energy, abs=1e-6)
    assert sum(d.readings_in_batch for d in mine) == count == 2 * COUNT
    if daily_energy(config, FORGED_DAY) is not None:
        assert daily_energy(config, FORGED_DAY) == pytest.approx(
            12 * FORGED_WH, abs=1e-6
        )  # ghost-1
        sums = rollup_totals(config)
        assert sums is not None
        for meter in ("lib-main", "ghost-1"):
            theirs = [d for d in docs if d.meter_id == meter]
            daily, hourly, readings, windows = sums[meter]
            assert daily == pytest.approx(sum(d.total_energy_wh for d in theirs), abs=1e-6)
            assert hourly == pytest.approx(daily, abs=1e-6)
            assert (readings, windows) == (sum(d.readings_in_batch for d in theirs), len(theirs))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_deleting_a_meters_latest_windows_names_the_one_before_and_then_none(
    kind: str, tmp_path: Path, sink_for: SinkFor
) -> None:
    config = configure(tmp_path, 1883, sink_for(kind))
    start = FORGED[0]
    await forge(config, "ghost-1", start, start + 3 * WINDOW_MS)
    sink = open_sink(config)
    try:
        assert isinstance(sink, WindowSink)
        now = epoch_ms(time.time())
        assert await sink.delete([("ghost-1", start + 2 * WINDOW_MS)], now) == 1
        assert latest_window(config, "ghost-1") == start + WINDOW_MS
        assert await sink.delete([("ghost-1", start + 2 * WINDOW_MS)], now) == 0  # gone
        assert await sink.delete([("ghost-1", start), ("ghost-1", start + WINDOW_MS)], now) == 2
        assert latest_window(config, "ghost-1") is None
    finally:
        await sink.close()
    assert docs_of(config) == []
    assert rollup_totals(config) == {"": (None, None, 0, 0)}  # no rollup row left


def latest_window(config: Config, meter: str) -> int | None:
    """The sink's note of a meter's latest window (what /api/meters shows), in ms."""
    bridge = config.bridge
    if bridge.sink == "sqlite":
        conn = sqlite3.connect(f"file:{bridge.sqlite.path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT last_window_ms FROM window_meters WHERE meter_id = ?", (meter,)
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else int(row[0])
    import psycopg

    assert bridge.postgres.dsn is not None
    with psycopg.connect(bridge.postgres.dsn) as pg:
        found = pg.execute(
            f"SELECT last_window FROM {bridge.postgres.schema_name}.window_meters "
            "WHERE meter_id = %s",
            (meter,),
        ).fetchone()
    return None if found is None else round(found[0].timestamp() * 1000)


# --- the command line --------------------------------------------------------------------------


def reconcile_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    config = str(cwd / "campus-energy.toml")
    return run_cli("reconcile", *args, cwd=cwd, env={"CAMPUS_ENERGY_CONFIG": config})


def test_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "campus-energy.toml").write_text(
        f"""
[site]
timezone = "{ZONE.key}"
[storage]
path = "{tmp_path / "store.db"}"
[bridge]
window_s = {WINDOW_S}
sink = "sqlite"
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
"""
    )
    days = ("--start", FIRST_DAY, "--end", LAST_DAY)

    result = reconcile_cli(*days, cwd=tmp_path)
    assert result.returncode == 1
    assert "store.db" in result.stderr and "does not exist" in result.stderr

    async def fill() -> None:
        store = ReadingStore(tmp_path / "store.db")
        await store.register(MeterRecord(m, b, "1") for m, (b, _) in METERS.items())
        await store.insert_many(all_readings())
        await store.close()

    asyncio.run(fill())

    for args, named in [
        (("--end", LAST_DAY), "--start"),
        (("--start", "yesterday", "--end", LAST_DAY), "--start"),
        (("--start", FIRST_DAY, "--end", "2026-13-01"), "--end"),
        (("--start", LAST_DAY, "--end", FIRST_DAY), "--end"),
        (("--start", "1999-01-01", "--end", FIRST_DAY), "--start"),
        ((*days, "--meter", "lib-main", "nowhere"), "--meter"),
    ]:
        result = reconcile_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert named in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr

    result = reconcile_cli(*days, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["missing"] == report["summary"]["checked"] == 24
    assert report["summary"]["sink_energy_wh"] == 0
    assert report["start"] == "2026-01-13T18:30:00.000Z"
    assert report["end"] == "2026-01-15T18:30:00.000Z"
    assert {w["status"] for w in report["windows"]} == {"missing"}

    result = reconcile_cli(*days, "--apply", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rewrote 24 windows" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "lib-main_20260114T181000Z" in line)
    assert row.split()[1:3] == ["missing", "-"]

    # a time without a zone is local; the end of a range is widened to a whole window
    result = reconcile_cli(
        "--start", "2026-01-15T00:00", "--end", "2026-01-14T18:41:00Z", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["start"], report["end"]) == (
        "2026-01-14T18:30:00.000Z",
        "2026-01-14T18:45:00.000Z",
    )
    assert report["windows"] == []
    assert report["summary"]["equal"] == report["summary"]["checked"] == 9

    result = reconcile_cli(*days, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].startswith(
        "checked 24 windows: 24 equal, 0 differing, 0 missing, 0 extra; energy local"
    )


# --- both directions and the estimate -----------------------------------------------------------

# 405 s of lost polls, 18:24:06.3 to 18:30:51.3 (a window without a reading in it), bridged by
# the meter's registers: what its import and export registers moved meanwhile (the power
# turned from exporting to importing)
SOLAR_HOLE = range(170, 250)
SOLAR_GUESS_UWH = (39_000_000, 5_000_000)


def solar_readings() -> list[Reading]:
    """lib-main as a building with solar on its roof: it imports, then exports (the power
    changes sign inside intervals), and the first reading after a minute of lost polls carries
    the registers' estimate of the gap."""
    found: list[Reading] = []
    total = exported = 0
    previous: tuple[int, float] | None = None
    for i in range(COUNT):
        if i in SOLAR_HOLE:
            continue
        ts = T0 + 1300 + i * 5000
        power = round(900 * math.cos(i / 40), 2)  # below zero from i = 63 to 188
        energy = export = 0
        guess: dict[str, Any] = {}
        if previous is not None and i - 1 in SOLAR_HOLE:  # nothing integrated: an estimate
            guess = {
                "estimated_uwh": SOLAR_GUESS_UWH[0],
                "estimated_export_uwh": SOLAR_GUESS_UWH[1],
            }
        elif previous is not None:
            energy, export = split_trapezoid_uwh(previous[1], power, (ts - previous[0]) / 1000)
        total += energy
        exported += export
        values = {"power_w": power, "voltage_v": 230.0, "current_a": abs(power) / 230}
        found.append(
            Reading(
                "lib-main",
                ts,
                i + 1,
                energy,
                total,
                values,
                export_uwh=export,
                export_total_uwh=exported,
                **guess,
            )
        )
        previous = (ts, power)
    return found


async def directed(config: Config) -> dict[str, tuple[float, float, float, float]]:
    """document id -> (import, export, estimated import, estimated export), as the sink holds."""
    docs = await _sink_windows(config)
    return {
        d.document_id: (
            d.total_energy_wh,
            d.export_energy_wh,
            d.estimated_energy_wh,
            d.estimated_export_wh,
        )
        for d in docs
    }


async def _sink_windows(config: Config) -> list[Any]:
    sink = open_sink(config)
    try:
        return await sink.windows(*RANGE, None)
    finally:
        await sink.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_export_and_estimates_are_rebuilt_and_a_wrong_one_is_repaired(
    tmp_path: Path, sink_for: SinkFor, kind: str
) -> None:
    config = configure(tmp_path, 1883, sink_for(kind))
    readings = solar_readings()
    report = await reconcile_into_an_empty_sink(config, readings)
    assert report.summary.rewritten == 8
    held = await directed(config)
    # every direction and kind as the readings hold it (to rounding: µWh summed as Wh)
    sums = [sum(v[k] for v in held.values()) for k in range(4)]
    stored_sums = [
        sum(r.energy_uwh for r in readings) / 1e6,
        sum(r.export_uwh for r in readings) / 1e6,
        SOLAR_GUESS_UWH[0] / 1e6,
        SOLAR_GUESS_UWH[1] / 1e6,
    ]
    assert sums == pytest.approx(stored_sums, abs=1e-9)
    assert stored_sums[1] > 100  # it did export
    gap = [k for k, v in held.items() if v[2] > 0]
    assert len(gap) == 3  # each window of the hole holds its share, in proportion to time
    assert [held[k][2] for k in gap] == pytest.approx(
        [39 * 53.7 / 405, 39 * 300 / 405, 39 * 51.3 / 405], abs=1e-9
    )

    # a window's export and another's estimate damaged: both reported by field and repaired
    sink = open_sink(config)
    try:
        docs = {d.document_id: d for d in await sink.windows(*RANGE, None)}
        exporting = next(d for d in docs.values() if d.export_energy_wh > 10)
        guessed = docs[gap[0]]
        damaged = [
            replace(
                exporting,
                export_energy_wh=1.0,
                accumulator=replace(exporting.accumulator, export_wh=1.0),
            ),
            replace(
                guessed,
                estimated_energy_wh=0.0,
                accumulator=replace(guessed.accumulator, estimated_wh=0.0),
            ),
        ]
        await sink.replace(damaged, epoch_ms(time.time()))
    finally:
        await sink.close()
    report = await reconcile(config, *RANGE)
    assert by_status(report) == {exporting.document_id: "differs", guessed.document_id: "differs"}
    named = {f.document_id: [d.name for d in f.differences] for f in report.findings}
    assert named[exporting.document_id] == ["export_energy_wh"]
    assert named[guessed.document_id] == ["estimated_energy_wh"]
    await reconcile(config, *RANGE, apply=True)
    assert await directed(config) == held
    again = await reconcile(config, *RANGE)
    assert by_status(again) == {}


async def test_the_summary_sets_store_against_sink_by_direction_and_kind(
    tmp_path: Path, sink_for: SinkFor
) -> None:
    config = configure(tmp_path, 1883, sink_for("sqlite"))
    readings = solar_readings()
    stored = {
        "import": sum(r.energy_uwh for r in readings) / 1e6,
        "export": sum(r.export_uwh for r in readings) / 1e6,
        "estimated_import": SOLAR_GUESS_UWH[0] / 1e6,
        "estimated_export": SOLAR_GUESS_UWH[1] / 1e6,
    }
    first = (await reconcile_into_an_empty_sink(config, readings)).summary.energies()
    assert {k: b.local_wh for k, b in first.items()} == pytest.approx(stored, abs=1e-9)
    assert {k: b.sink_wh for k, b in first.items()} == dict.fromkeys(stored, 0.0)

    # a window's export and another's estimate damaged behind the sink's back
    sink = open_sink(config)
    try:
        docs = await sink.windows(*RANGE, None)
        exporting = next(d for d in docs if d.export_energy_wh > 10)
        guessed = next(d for d in docs if d.estimated_energy_wh > 10)
        await sink.replace(
            [
                replace(
                    exporting,
                    export_energy_wh=1.0,
                    accumulator=replace(exporting.accumulator, export_wh=1.0),
                ),
                replace(
                    guessed,
                    estimated_energy_wh=0.0,
                    accumulator=replace(guessed.accumulator, estimated_wh=0.0),
                ),
            ],
            epoch_ms(time.time()),
        )
    finally:
        await sink.close()
    lost = {
        "import": 0.0,
        "export": exporting.export_energy_wh - 1.0,
        "estimated_import": guessed.estimated_energy_wh,
        "estimated_export": 0.0,
    }
    report = await reconcile(config, *RANGE)
    balances = report.summary.energies()
    assert {k: b.local_wh for k, b in balances.items()} == pytest.approx(stored, abs=1e-9)
    assert {k: b.difference_wh for k, b in balances.items()} == pytest.approx(lost, abs=1e-9)
    assert {k: b.sink_wh for k, b in balances.items()} == pytest.approx(
        {k: stored[k] - lost[k] for k in stored}, abs=1e-9
    )

    # the summary line as it was, then each direction and kind
    text = as_text(report).splitlines()
    at = next(i for i, line in enumerate(text) if line.startswith("checked 8 windows:"))
    assert text[at] == (
        "checked 8 windows: 6 equal, 2 differing, 0 missing, 0 extra; energy local "
        f"{report.summary.local_energy_wh:.6f} Wh, sink {report.summary.sink_energy_wh:.6f} Wh"
    )
    s = {
        k: f"{b.local_wh:.6f} / {b.sink_wh:.6f} / {b.difference_wh:+.6f}"
        for k, b in balances.items()
    }
    assert text[at + 1] == (
        f"energy local / sink / difference, Wh: measured import {s['import']}; "
        f"measured export {s['export']}; estimated import {s['estimated_import']}; "
        f"estimated export {s['estimated_export']}"
    )
    assert f"measured export {stored['export']:.6f} / " in text[at + 1]
    assert f"/ {lost['estimated_import']:+.6f}; estimated export" in text[at + 1]

    # --json: the totals it had, and each direction and kind
    summary = json.loads(json.dumps(as_json(report)))["summary"]
    assert summary["local_energy_wh"] == report.summary.local_energy_wh
    assert summary["sink_energy_wh"] == report.summary.sink_energy_wh
    assert summary["energy"] == {
        k: {"local_wh": b.local_wh, "sink_wh": b.sink_wh, "difference_wh": b.difference_wh}
        for k, b in balances.items()
    }

    await reconcile(config, *RANGE, apply=True)
    again = (await reconcile(config, *RANGE)).summary.energies()
    assert {k: b.difference_wh for k, b in again.items()} == pytest.approx(
        dict.fromkeys(stored, 0.0), abs=1e-9
    )
