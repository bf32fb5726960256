"""Scenario 4: a meter that times out 30 % of the time, a meter that stops answering and
returns, and a serial adapter that disappears and reappears — while the rest keeps going."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.faults.books import Books, Interruption
from tests.faults.harness import PLAN, WINDOW_S, campus, meter, plant_bus, record
from tests.support.readback import query
from tests.support.serial import SocatPair
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while

SILENT_AFTER_S = 8.0  # the returning meter stops answering this long after the simulator starts
SILENT_FOR_S = PLAN.outage_windows * WINDOW_S


def went_silent_and_returned(path: Path, meter_id: str) -> bool:
    """The simulator's answers to `meter_id` pause for the silent spell, then go on."""
    lines = path.read_text().splitlines() if path.exists() else []
    times = sorted(a["t"] for a in map(json.loads, lines) if a["meter_id"] == meter_id)
    pauses = [b - a for a, b in itertools.pairwise(times)]
    return any(p > SILENT_FOR_S - 1 for p in pauses[:-2])


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_unreliable_silent_and_unplugged_meters_lose_nothing(
    tmp_path: Path, mosquitto: Any, socat_pair: SocatPair, report: list[Books]
) -> None:
    # Timeouts stay long (1 s): an answer that arrives after the logger gave up on it
    # would count as answered but never stored.
    buses = [
        plant_bus("plant"),
        plant_bus("annex", retries=2),
        plant_bus("wing", retries=0),
        {"name": "line", "transport": "rtu", "timeout_s": 1.0, "retries": 1},
    ]
    meters = [
        meter("steady", "plant", 1, "eastron-sdm120"),
        meter("flaky", "annex", 1, "eastron-sdm120", simulate={"timeout_rate": 0.3}),
        meter(
            "returning",
            "wing",
            1,
            "eastron-sdm630",
            simulate={
                "disconnect_after_s": SILENT_AFTER_S,
                "reconnect_after_s": SILENT_AFTER_S + SILENT_FOR_S,
            },
        ),
        meter("serial", "line", 1, "eastron-sdm120"),
    ]
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus(
        "meter faults",
        tmp_path,
        mosquitto.port,
        sink,
        buses=buses,
        meters=meters,
        serial=socat_pair,
    ) as c:
        c.start({"simulator": ["steady", "flaky", "returning"], "serial": ["serial"]})
        c.advance(2)
        for _ in range(PLAN.rounds):
            # unplug the serial adapter: the device node disappears under both ends
            c.interruptions.append(Interruption(time.time(), frozenset({"serial"}), "unplugged"))
            c.simulators["serial"].stop()
            socat_pair.unplug()
            c.advance(PLAN.outage_windows, meters=["steady"])
            socat_pair.plug()
            c.simulators["serial"].start()
            c.advance(2, meters=["serial"])
        # the returning meter goes silent meanwhile, and comes back
        answers = c.answers("simulator")
        wait_for(
            lambda: went_silent_and_returned(answers, "returning"),
            SILENT_AFTER_S + SILENT_FOR_S + 30,
            "the silent meter answers again",
        )
        c.advance(2)
        c.settle()
        books = c.books()
    gaps = dict(
        query(
            c.db,
            "SELECT m.meter_id, count(*) FROM gaps g JOIN meters m ON g.meter = m.id GROUP BY 1",
        )
    )
    stored = dict(query(c.db, "SELECT meter_id, count(*) FROM readings GROUP BY 1"))
    books.notes.append(f"gaps {gaps}, readings {stored}")
    record(report, books)
    assert gaps.get("returning", 0) >= 1 and gaps.get("serial", 0) >= PLAN.rounds
    assert stored["flaky"] < 0.9 * stored["steady"], "the flaky meter never missed a slot"
    # the silent and the unplugged meters' gaps were bridged by their registers (the books
    # hold each estimate to the exact energy of its gap within the register's resolution)
    assert books.estimates >= 1 + PLAN.rounds
