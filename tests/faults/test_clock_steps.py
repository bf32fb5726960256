"""Scenario 5: the wall clock stepped forward and back by minutes while the services run.

The logger and the bridge run in-process with one `OffsetClock` (as on one host),
whose offset the test steps; the simulator, on the true clock, is the ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.faults.books import Books
from tests.faults.harness import PLAN, campus, record
from tests.faults.readback import stored_readings

from campus_energy.runtime.clock import OffsetClock

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_wall_clock_steps_lose_nothing_and_invent_no_energy(
    tmp_path: Path, mosquitto: Any, report: list[Books]
) -> None:
    clock = OffsetClock()
    step = PLAN.clock_step_s
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus("clock stepped", tmp_path, mosquitto.port, sink) as c:
        c.in_process("logger", "bridge", clock=clock)
        c.start()
        c.advance(2)
        for _ in range(PLAN.rounds):
            for offset in (step, -step, 0.0):  # ahead, behind, right
                clock.offset_s = offset
                c.advance(PLAN.outage_windows)
        c.settle()
        books = c.books()
        log = c.records.text()
    books.notes.append(f"steps of ±{step:g} s")
    record(report, books)
    assert "the wall clock is" in log and "behind its last reading" in log  # noticed the step back
    for meter in c.config.meters:
        stamps = [
            r.ts_ms
            for r in sorted(stored_readings(c.db), key=lambda r: r.seq)
            if r.meter_id == meter.id
        ]
        assert stamps == sorted(set(stamps)), f"{meter.id}: timestamps out of order"
