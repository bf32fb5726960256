"""doctor's line on the meters' registers: detected meter events no person has confirmed, and
the share of each meter's last day that was estimated across gaps."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from campus_energy import cli
from campus_energy.core.readings import Reading
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.ops.doctor.checks.registers import Detected, unconfirmed

DAY_MS = 86_400_000


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "campus-energy.toml"
    path.write_text(
        f"""
[site]
timezone = "UTC"
[storage]
path = "{tmp_path / "var" / "store.db"}"
[bridge]
spool_path = "{tmp_path / "var" / "spool.db"}"
[bridge.sqlite]
path = "{tmp_path / "var" / "windows.db"}"
""",
        encoding="utf-8",
    )
    return path


def doctor_json(capsys: pytest.CaptureFixture[str], config: Path) -> dict[str, Any]:
    cli.main(["doctor", "--json", "-c", str(config), "--skip-meters"])
    return {entry["title"]: entry for entry in json.loads(capsys.readouterr().out)}


async def make_store(path: Path, *, estimated_share: dict[str, float], now_ms: int) -> None:
    """An hour of readings per meter (1 Wh each), the last one after a gap whose estimate makes
    `estimated_share` of the meter's import."""
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord(m) for m in estimated_share])
        readings = []
        for meter, share in estimated_share.items():
            start = now_ms - 3_600_000
            measured = 60 * 1_000_000  # 60 readings of 1 Wh, in µWh
            guessed = round(measured * share / (1 - share))
            for i in range(60):
                readings.append(
                    Reading(meter, start + i * 60_000, i + 1, 1_000_000, (i + 1) * 1_000_000)
                )
            readings.append(
                Reading(
                    meter,
                    start + 59 * 60_000 + 125_000,
                    61,
                    0,
                    measured,
                    interval_start_ms=None,
                    estimated_uwh=guessed,
                    estimated_export_uwh=0,
                    estimated_start_ms=start + 59 * 60_000,
                )
            )
        await store.insert_many(readings)
    finally:
        await store.close()


def add_event(path: Path, meter: str, ts_ms: int, source: str, kind: str = "replaced") -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO meter_events (meter_id, ts_ms, kind, source, register, before_wh, "
            "after_wh, note, recorded_ms) VALUES (?, ?, ?, ?, 'import_energy_wh', ?, ?, '', ?)",
            (meter, ts_ms, kind, source, 98_765_400.0, 200.0, ts_ms),
        )
    conn.close()


async def test_an_unconfirmed_event_and_a_large_estimate_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    store = tmp_path / "var" / "store.db"
    now_ms = int(time.time() * 1000)
    await make_store(store, estimated_share={"lab": 0.2, "hall": 0.01}, now_ms=now_ms)
    results = await asyncio.to_thread(doctor_json, capsys, config)
    events, estimated = results["meter events"], results["estimated energy"]
    assert events["status"] == "ok"
    assert events["detail"].startswith("no register replaced")
    assert estimated["status"] == "warn"
    # lab: 60 Wh measured + 15 Wh estimated (20 %); hall: 60 Wh + 0.606 Wh (1 %)
    assert "last 24 h: 0.000 kWh estimated" not in estimated["detail"]
    assert "0.016 kWh estimated beside 0.120 kWh measured" in estimated["detail"]
    assert "lab 20%" in estimated["detail"]
    assert "hall" not in estimated["detail"]

    add_event(store, "lab", now_ms - DAY_MS * 2, "detected")
    results = await asyncio.to_thread(doctor_json, capsys, config)
    events = results["meter events"]
    assert events["status"] == "warn"
    assert "1 event not confirmed: lab: import_energy_wh replaced at" in events["detail"]
    assert "98,765.4 kWh → 0.2 kWh" in events["detail"]
    assert "campus-energy meter-event add lab --kind replaced" in events["fix"]

    add_event(store, "lab", now_ms - DAY_MS * 2 + 600_000, "confirmed")  # ten minutes later
    results = await asyncio.to_thread(doctor_json, capsys, config)
    assert results["meter events"]["status"] == "ok"
    assert results["meter events"]["detail"] == (
        "1 detected event in the last 90 days, each confirmed"
    )


def test_a_confirmation_must_be_of_the_same_meter_and_register_within_a_day() -> None:
    event = Detected("lab", 10 * DAY_MS, "reset", "import_energy_wh", 5.0, 0.0)
    assert unconfirmed([event], [("lab", "import_energy_wh", 11 * DAY_MS)]) == []
    assert unconfirmed([event], [("lab", "import_energy_wh", 11 * DAY_MS + 1)]) == [event]
    assert unconfirmed([event], [("hall", "import_energy_wh", 10 * DAY_MS)]) == [event]
    assert unconfirmed([event], [("lab", "export_energy_wh", 10 * DAY_MS)]) == [event]


async def test_a_store_without_the_tables_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    results = await asyncio.to_thread(doctor_json, capsys, config)
    assert results["meter events"]["status"] == "skip"
    assert results["estimated energy"]["status"] == "skip"
