"""`campus-energy demo --backfill-days N`: simulated history through the logger's and bridge's code.

The books balance per meter (Σ window energy = Σ readings energy), readings are
monotonic, a second run adds nothing, a later run only appends, and the live
logger integrates on from the last backfilled reading.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support.config import make_config

from campus_energy.config import Config
from campus_energy.demo.backfill import backfill, history_start, poll_times
from campus_energy.logger.service import restored_state
from campus_energy.logger.store import ReadingStore, Restored
from campus_energy.runtime.clock import boot_id

KOLKATA = ZoneInfo("Asia/Kolkata")
# Tuesday 1 December 2026, 14:07:23.4 in Kolkata
NOW = datetime(2026, 12, 1, 14, 7, 23, 400_000, tzinfo=KOLKATA).timestamp()


def campus(folder: Path, window_s: int = 30) -> Config:
    return make_config(
        [{"name": "b", "transport": "tcp", "host": "127.0.0.1", "port": 1}],
        [
            {"id": "lib-1", "bus": "b", "unit": 1, "profile": "eastron-sdm120", "interval_s": 5},
            {"id": "lib-3", "bus": "b", "unit": 2, "profile": "eastron-sdm630", "interval_s": 5},
        ],
        storage={"path": str(folder / "smart_meter.db")},
        bridge={
            "window_s": window_s,
            "grace_s": 5,
            "spool_path": str(folder / "spool.db"),
            "sink": "sqlite",
            "sqlite": {"path": str(folder / "windows.db")},
        },
    )


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def readings_wh(config: Config) -> dict[str, float]:
    rows = query(
        config.storage.path, "SELECT meter_id, sum(energy_wh) FROM readings GROUP BY meter_id"
    )
    return dict(rows)


def windows_wh(config: Config) -> dict[str, float]:
    rows = query(
        config.bridge.sqlite.path,
        "SELECT meter_id, sum(total_energy_wh) FROM window_aggregates GROUP BY meter_id",
    )
    return dict(rows)


def test_poll_times_are_on_the_grid_and_after_the_last_reading() -> None:
    assert poll_times(None, 100.0, 300.0, 60.0) == [120.0, 180.0, 240.0]
    assert poll_times(None, 120.0, 300.0, 60.0) == [120.0, 180.0, 240.0]
    assert poll_times(180.0, 100.0, 300.0, 60.0) == [240.0]
    assert poll_times(185.0, 100.0, 300.0, 60.0) == [240.0]
    assert poll_times(299.0, 100.0, 300.0, 60.0) == []


def test_history_starts_at_local_midnight() -> None:
    config = campus(Path("/nonexistent"))
    start = history_start(config, 2, NOW)
    assert datetime.fromtimestamp(start, KOLKATA) == datetime(2026, 11, 29, tzinfo=KOLKATA)


def test_two_days_of_history_balance_the_books_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    config = campus(tmp_path)
    done = asyncio.run(backfill(config, 2, now=NOW))
    # two whole days and today until 14:07 at one reading a minute, per meter
    minutes = 2 * 1440 + 14 * 60 + 7
    # 00:00 to 14:07 on the minute, then 14:07:20 (the last 5 s grid time) for the live logger
    assert done.per_meter == {"lib-1": minutes + 2, "lib-3": minutes + 2}
    assert done.readings == 2 * (minutes + 2) and done.windows > 0

    stored, windowed = readings_wh(config), windows_wh(config)
    assert set(stored) == {"lib-1", "lib-3"}
    for meter_id, energy in stored.items():
        assert energy > 1000  # a day of an office floor is kWh
        assert windowed[meter_id] == pytest.approx(energy, abs=1e-6), meter_id

    for meter_id in stored:
        rows = query(
            config.storage.path,
            "SELECT ts_ms, seq, energy_total_wh, import_energy_wh FROM readings "
            f"WHERE meter_id = '{meter_id}' ORDER BY ts_ms",
        )
        first_ms = round(history_start(config, 2, NOW) * 1000)
        assert rows[0][0] == first_ms and rows[-1][0] == round((NOW - 3.4) * 1000)
        for (t0, s0, e0, r0), (t1, s1, e1, r1) in pairwise(rows):
            assert t1 > t0 and s1 == s0 + 1 and e1 >= e0 and r1 >= r0
        # the integrated energy follows the meter's own register (60 s trapezoids)
        integrated = rows[-1][2] - rows[0][2]
        register = rows[-1][3] - rows[0][3]
        assert integrated == pytest.approx(register, rel=2e-3)

    # nothing of the history waits in the MQTT outbox
    (unpublished,) = query(
        config.storage.path,
        "SELECT count(*) FROM samples s JOIN meters m ON m.id = s.meter "
        "WHERE s.ts_ms > m.published_ts_ms",
    )[0]
    assert unpublished == 0

    again = asyncio.run(backfill(config, 2, now=NOW))
    assert (again.readings, again.windows) == (0, 0)
    assert readings_wh(config) == stored and windows_wh(config) == windowed


def test_a_later_run_only_appends_and_keeps_the_books_balanced(tmp_path: Path) -> None:
    config = campus(tmp_path)
    asyncio.run(backfill(config, 1, now=NOW))
    count_before = query(config.storage.path, "SELECT count(*) FROM readings")[0][0]
    later = asyncio.run(backfill(config, 1, now=NOW + 3600))
    assert later.per_meter == {"lib-1": 61, "lib-3": 61}  # 14:08 … 15:07, then 15:07:20
    count_after = query(config.storage.path, "SELECT count(*) FROM readings")[0][0]
    assert count_after == count_before + 122
    for meter_id, energy in readings_wh(config).items():
        assert windows_wh(config)[meter_id] == pytest.approx(energy, abs=1e-6), meter_id
    # continuous: the first appended reading integrates from the last one of the first run
    (gaps,) = query(config.storage.path, "SELECT count(*) FROM gaps")[0]
    assert gaps == 0


def test_a_run_stopped_between_windows_and_readings_is_made_whole_without_double_counting(
    tmp_path: Path,
) -> None:
    config = campus(tmp_path)
    asyncio.run(backfill(config, 1, now=NOW))
    windowed = windows_wh(config)
    # as if stopped after the last day's windows were merged but before its readings were stored
    cut_ms = round(NOW * 1000) - 3 * 3600 * 1000
    with sqlite3.connect(config.storage.path) as conn:
        conn.execute("DELETE FROM samples WHERE ts_ms > ?", (cut_ms,))
    resumed = asyncio.run(backfill(config, 1, now=NOW))
    assert resumed.readings == 2 * (3 * 60 + 1)  # 11:08 … 14:07 and 14:07:20, per meter
    assert windows_wh(config) == pytest.approx(windowed, abs=1e-9)
    for meter_id, energy in readings_wh(config).items():
        assert windows_wh(config)[meter_id] == pytest.approx(energy, abs=1e-6), meter_id


def test_the_live_logger_integrates_on_from_the_last_backfilled_reading(tmp_path: Path) -> None:
    config = campus(tmp_path)
    now = time.time()
    asyncio.run(backfill(config, 1, now=now))
    restored = asyncio.run(restored_meters(config))
    last = restored["lib-1"]
    state = restored_state(last, boot_id())
    assert state.last_mono_s is not None  # same boot: the logger integrates on, no gap
    age_s = time.time() - last.ts_ms / 1000
    assert state.last_mono_s == pytest.approx(time.monotonic() - age_s, abs=0.5)
    assert last.ts_ms == math.floor(now / 5) * 5000  # on the meter's own 5 s grid


async def restored_meters(config: Config) -> dict[str, Restored]:
    store = ReadingStore(config.storage.path)
    try:
        return await store.restore()
    finally:
        await store.close()
