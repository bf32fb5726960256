"""Scenario 7: the logger's disk full — its store cannot grow — for a while, then room again.

The store's file is capped with `ReadingStore.limit_growth` (SQLite's max_page_count):
writes beyond it fail with SQLITE_FULL, the error a full file system gives.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.faults.books import Books
from tests.faults.harness import PLAN, campus, record
from tests.support.readback import query
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_a_full_disk_keeps_the_newest_readings_and_the_file_sound(
    tmp_path: Path, mosquitto: Any, report: list[Books]
) -> None:
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus("store full", tmp_path, mosquitto.port, sink) as c:
        c.in_process("logger")
        c.start()
        c.advance(3)
        store = c.logger.service.store
        full = "ERROR campus_energy.logger: store"
        room = "INFO campus_energy.logger: store"  # "... (disk full): recovered after ..."
        for n in range(1, PLAN.full_rounds + 1):
            c.run(store.limit_growth(0))  # the disk is full from now on
            wait_for(
                lambda n=n: c.records.text().count(full) >= n, 30, "the logger says it is full"
            )
            c.advance(PLAN.outage_windows)  # ... and keeps storing the newest readings
            c.run(store.limit_growth(None))  # room again
            wait_for(
                lambda n=n: c.records.text().count(room) >= n, 60, "the logger says it recovered"
            )
            c.advance(2)
        c.settle()
        books = c.books(evictions=True)
        log = c.records.text()
    evicted = len(c.ledger.readings) - int(query(c.db, "SELECT count(*) FROM readings")[0][0])
    books.notes.append(f"{evicted} oldest published readings deleted to make room")
    record(report, books)
    assert evicted > 0
    assert log.count(full) == PLAN.full_rounds, log  # once per episode, then quiet
    assert log.count(room) == PLAN.full_rounds, log
    assert log.count("(disk full): deleted the") == PLAN.full_rounds
    assert log.count("(disk full): recovered after") == PLAN.full_rounds
    conn = sqlite3.connect(c.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
