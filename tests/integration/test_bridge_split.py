"""Two bridges splitting the meters by `bridge.topic_filters`, as they must on a broker
without shared subscriptions (RabbitMQ 3.10, NATS 2.9: docs/brokers.md), here on Mosquitto:
each receives its own meters only, and together they write every window once, the books
exact. tests/faults/test_broker_restarts.py runs the same split through kills and broker
restarts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import balance, bridged_campus
from tests.support.readback import count, query
from tests.support.services import serving
from tests.support.sinks import docs_of, sqlite_sink
from tests.support.waiting import eventually

from campus_energy.bridge.service import Bridge
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

pytestmark = pytest.mark.slow  # a whole campus runs for a while

SPLIT = (("lib-main", "lib-f1"), ("admin-old",))


def filters(meters: tuple[str, ...]) -> list[str]:
    return [f"campus/energy/{m}/reading" for m in meters]


def received(spool: Path) -> set[str]:
    return {m for (m,) in query(spool, "SELECT DISTINCT meter_id FROM readings_seen")}


async def test_two_bridges_with_disjoint_topic_filters_write_each_window_once(
    tmp_path: Path, mosquitto: Any
) -> None:
    settings = sqlite_sink(tmp_path)  # one sink file, written by both
    first = bridged_campus(tmp_path, mosquitto.port, settings, topic_filters=filters(SPLIT[0]))
    second = bridged_campus(
        tmp_path / "b",
        mosquitto.port,
        settings,
        topic_filters=filters(SPLIT[1]),
        client_id="bridge-b",
        spool_path=str(tmp_path / "spool-b.db"),
    )
    a, b = Bridge(first), Bridge(second)
    async with Simulator(first), serving(a, "subscribed"), serving(b, "subscribed"):
        async with serving(MeterLogger(first)):
            await eventually(lambda: count(first.storage.path) >= 60, timeout=30)
        total = count(first.storage.path)
        await eventually(lambda: a.counters.readings + b.counters.readings >= total)
    assert [received(c.bridge.spool_path) for c in (first, second)] == [set(p) for p in SPLIT]
    docs = docs_of(first)
    assert set(Counter((d.meter_id, d.window_start_ms) for d in docs).values()) == {1}
    assert {d.meter_id for d in docs} == {m for part in SPLIT for m in part}
    balance(first, docs)
