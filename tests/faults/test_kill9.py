"""Scenario 3: kill -9 of the logger, then of the bridge, at random moments."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from tests.faults.books import Books
from tests.faults.harness import INTERVAL_S, PLAN, SEED, WINDOW_S, campus, record

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


def at_random(rng: random.Random, longest_s: float) -> None:
    """Let the service run on for a random moment: the fault's timing, not a synchronisation."""
    time.sleep(rng.uniform(0, longest_s))


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_kill_9_of_the_logger_and_of_the_bridge_loses_nothing(
    tmp_path: Path, mosquitto: Any, report: list[Books]
) -> None:
    rng = random.Random(SEED)
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus("kill -9", tmp_path, mosquitto.port, sink) as c:
        c.start()
        for _ in range(PLAN.kills):
            c.advance(rng.uniform(0.3, 1.5))  # stored readings since the last (re)start
            at_random(rng, INTERVAL_S)
            c.kill_logger()
            c.logger.start()
        for _ in range(PLAN.kills):
            c.advance(rng.uniform(0.3, 1.5))
            at_random(rng, WINDOW_S)
            c.bridge.kill()
            c.bridge.start()  # returns once it has subscribed again
        c.advance(2)
        c.settle()
        books = c.books()
        books.notes.append(f"{PLAN.kills} + {PLAN.kills} kills")
    record(report, books)
    # both directions were exercised: the rooftop PV meter exports at the campus's midday
    assert books.totals["export_wh"] > 0
