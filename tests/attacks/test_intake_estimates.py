"""Attacks on the bridge's intake through the fields added for estimates and export: what anyone
who may publish on a reading topic can claim the meter's registers counted across a gap.

A real Mosquitto, the bridge in this process on SQLite at 60 s windows, one configured
meter (eastron-sdm120: 20 kW; it estimates across gaps of at most an hour). What must hold:

- an estimate no meter can have counted (1e300 Wh; 20 kW over more than the gap), a
  negative one and one over a longer gap than the meter's `max_estimate_gap_s` are
  dropped from their readings (counted in `estimates_refused` by kind, logged once per
  kind), whose measured part still counts: one message touches at most
  `max_estimate_gap_s / window_s` windows with an estimate (60 here);
- a plausible forged estimate is counted as estimated energy only: the windows' measured
  energy and coverage are what the real readings made.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.attacks.test_intake import dead_letters, running, vandal
from tests.support.config import make_config, meter_at
from tests.support.waiting import eventually

from campus_energy.backends import open_sink
from campus_energy.config import Config
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import iso_utc

METER = "m1"
TOPIC = f"campus/energy/{METER}/reading"


def estimates_config(tmp_path: Path, port: int) -> Config:
    return make_config(
        [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        [meter_at(METER, "b", 1, "eastron-sdm120", interval_s=5, max_estimate_gap_s=3600)],
        site={"timezone": "UTC"},
        mqtt={"port": port},
        bridge={
            "window_s": 60,
            "grace_s": 0.5,
            "spool_path": str(tmp_path / "spool.db"),
            "client_id": "estimates-bridge",
            "sqlite": {"path": str(tmp_path / "windows.db")},
        },
    )


def reading(seq: int, ts_ms: int, start_ms: int | None, energy_wh: float, **extra: Any) -> bytes:
    values = {"voltage_v": 230.0, "current_a": 4.35, "power_w": 1000.0}
    body = Reading(METER, ts_ms, seq, round(energy_wh * 1e6), 10**9, values, start_ms)
    return json.dumps(body.payload("B", "1") | extra).encode()


async def test_forged_estimates_are_dead_lettered_or_kept_apart(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = estimates_config(tmp_path, mosquitto.port)
    t = (int(time.time()) // 60 - 3) * 60_000  # three minutes ago, on a window boundary
    real = [reading(1, t + 5_000, None, 0.0), reading(2, t + 10_000, t + 5_000, 1.389)]
    gap = {"estimated_start": iso_utc(t + 10_000)}
    forged = [
        reading(3, t + 70_000, None, 0.0, estimated_energy_wh=1e300, **gap),
        # 60 s at 20 kW is 333.3 Wh (and 1 %): 400 Wh cannot be
        reading(4, t + 70_000, None, 0.0, estimated_energy_wh=400.0, **gap),
        reading(5, t + 70_000, None, 0.0, estimated_energy_wh=-5.0, **gap),
        # a day-long gap from a meter that estimates across an hour at most
        reading(
            6,
            t + 70_000,
            None,
            0.0,
            estimated_energy_wh=1.0,
            estimated_start=iso_utc(t + 70_000 - 86_400_000),
        ),
    ]
    plausible = reading(7, t + 70_000, None, 0.0, estimated_energy_wh=100.0, **gap)
    async with running(config) as bridge, vandal(mosquitto.port) as client:
        for payload in [*real, *forged, plausible]:
            await client.publish(TOPIC, payload, qos=1)
        await eventually(lambda: bridge.counters.received == len(real) + len(forged) + 1)
    assert bridge.counters.dead_letters == {}  # the readings stand, their estimates do not
    assert dead_letters(config) == []
    assert bridge.counters.estimates_refused == {"implausible": 3, "types": 1}
    sink = open_sink(config)
    try:
        docs = {
            d.window_start_ms: d for d in await sink.windows(t - 86_400_000, t + 3_600_000, None)
        }
    finally:
        await sink.close()
    assert sorted(docs) == [t, t + 60_000]
    first, second = docs[t], docs[t + 60_000]
    # measured energy and coverage are the real readings' only
    assert first.total_energy_wh == pytest.approx(1.389)
    assert first.coverage == pytest.approx(5 / 60)
    assert second.total_energy_wh == 0.0 and second.coverage == 0.0
    # the plausible forged estimate is kept apart, spread over its 60 s: 50 s here, 10 s
    # there; of the others nothing is in the windows
    assert first.estimated_energy_wh == pytest.approx(100.0 * 50 / 60)
    assert second.estimated_energy_wh == pytest.approx(100.0 * 10 / 60)
    assert second.readings_in_batch == 5  # the five readings after the gap, kept
