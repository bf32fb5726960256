"""Scenario 1: the MQTT broker stopped for several windows, then started again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.faults.books import Books
from tests.faults.harness import PLAN, campus, record
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_a_stopped_broker_loses_nothing(
    tmp_path: Path, mosquitto: Any, report: list[Books]
) -> None:
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus("broker stopped", tmp_path, mosquitto.port, sink) as c:
        c.start()
        c.advance(2)
        for _ in range(PLAN.rounds):
            mosquitto.stop()
            c.advance(PLAN.outage_windows)
            # the logger kept storing and holds what the broker could not take
            wait_for(lambda: c.outbox_depth() > 0, 10, "readings wait in the outbox")
            held = c.outbox_depth()
            mosquitto.start()
            wait_for(lambda h=held: c.outbox_depth() < h, 60, "the outbox drains after the restart")
            c.advance(2)
        c.settle()
        books = c.books()
    record(report, books)
