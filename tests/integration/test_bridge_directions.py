"""The bridge takes energy in both directions and the registers' estimates, through Mosquitto.

An older logger sent its signed trapezoid as `energy_wh`: an exporting interval came as a
negative number, which the bridge dead-lettered. Now it is read as export; a current
logger's `energy_export_wh` and an estimate over a gap are taken as they are; a redelivery
adds nothing. The windows hold each direction and kind apart, and the bridge counts the Wh
it accepted by direction and kind (Prometheus).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
from prometheus_client import generate_latest
from tests.support.campus import bridged_campus
from tests.support.services import serving
from tests.support.sinks import sqlite_sink
from tests.support.waiting import eventually

from campus_energy.backends import open_sink
from campus_energy.bridge.service import Bridge
from campus_energy.config import Config
from campus_energy.core.readings import Reading
from campus_energy.runtime.mqtt import encode

METER = "lib-main"
TOPIC = f"campus/energy/{METER}/reading"


def payloads(base_ms: int) -> list[bytes]:
    # an older logger's exporting interval: its signed trapezoid, no export field
    older = Reading(METER, base_ms + 1000, 1, 0, 0, {"power_w": -720.0}, base_ms + 500)
    body = older.payload("LIB", "1")
    for name in ("energy_export_wh", "energy_export_total_wh"):
        del body[name]
    body["energy_wh"] = -0.1
    # a current logger's: import 0, export in its own field
    current = Reading(
        METER,
        base_ms + 1500,
        2,
        0,
        0,
        {"power_w": -720.0},
        base_ms + 1000,
        export_uwh=100_000,
        export_total_uwh=100_000,
    )
    # after 7.5 s of lost polls, the registers' estimate of the gap (nothing integrated)
    bridged = Reading(
        METER,
        base_ms + 9000,
        3,
        0,
        0,
        {"power_w": -500.0},
        None,
        export_total_uwh=100_000,
        estimated_uwh=200_000,
        estimated_export_uwh=1_000_000,
        estimated_start_ms=base_ms + 1500,
    )
    again = encode(current.payload("LIB", "1"))  # a redelivery
    return [
        json.dumps(body).encode(),
        encode(current.payload("LIB", "1")),
        encode(bridged.payload("LIB", "1")),
        again,
    ]


async def held(config: Config) -> list[float]:
    """The sink's windows of the meter: Σ import, export, estimated import, estimated export."""
    sink = open_sink(config)
    try:
        docs = await sink.windows(0, 2**42, [METER])
    finally:
        await sink.close()
    return [
        sum(d.total_energy_wh for d in docs),
        sum(d.export_energy_wh for d in docs),
        sum(d.estimated_energy_wh for d in docs),
        sum(d.estimated_export_wh for d in docs),
    ]


async def test_exporting_intervals_and_estimates_are_taken_and_counted(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = bridged_campus(tmp_path, mosquitto.port, sqlite_sink(tmp_path))
    bridge = Bridge(config)
    base = (int(time.time() * 1000) - 60_000) // 2000 * 2000
    async with serving(bridge, "subscribed"):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="logger") as client:
            for payload in payloads(base):
                await client.publish(TOPIC, payload, qos=1)
        await eventually(lambda: bridge.counters.received >= 4)
        wanted = [0.0, 0.2, 0.2, 1.0]

        async def written() -> bool:  # the windows are flushed once their grace has passed
            found = await held(config)
            return all(abs(a - b) <= 1e-9 for a, b in zip(found, wanted, strict=True))

        await eventually(written, what="the windows with both directions and the estimate")
    assert dict(bridge.counters.dead_letters) == {}  # before, the first was refused
    assert bridge.counters.duplicates >= 1  # the redelivery's contributions
    counted = bridge.counters.energy_wh
    assert counted[("import", "measured")] == 0.0
    assert abs(counted[("export", "measured")] - 0.2) <= 1e-12
    assert (counted[("import", "estimated")], counted[("export", "estimated")]) == (0.2, 1.0)
    text = generate_latest(bridge.metrics.exporter.registry).decode()
    line = 'campus_energy_bridge_energy_accepted_wh_total{direction="export",kind="estimated"}'
    assert f"{line} 1.0" in text
    # coverage: the measured intervals only (1 s of the meter's windows), never the gap
    sink = open_sink(config)
    try:
        docs = await sink.windows(0, 2**42, [METER])
    finally:
        await sink.close()
    assert sum(d.accumulator.covered_s for d in docs) == 1.0
    assert [d.coverage for d in docs if d.readings_in_batch == 0] == [0.0] * 3
