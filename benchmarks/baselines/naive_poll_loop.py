"""The legacy logger's loop, per bus: poll every meter, then sleep the interval.

With the very pollers the logger uses (`meters.polling`), so that only the
timing differs: each poll's time is `time.time()` when its answer came, and the
loop drifts by the time the polls themselves take.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from campus_energy.config import Config
from campus_energy.errors import ModbusError
from campus_energy.meters.polling import open_buses, pollers


@dataclass
class Answers:
    start_at: float  # the wall-clock grid point the loops started at
    by_meter: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # (k, time)
    failed: int = 0


async def poll_then_sleep(config: Config, polls: int, interval_s: float) -> Answers:
    """`polls` rounds of every meter, each bus in a loop of its own."""
    buses = open_buses(config)
    by_bus: dict[str, list[Any]] = {}
    for poller in pollers(config, buses, config.meters):
        by_bus.setdefault(poller.meter.bus, []).append(poller)
    answers = Answers((math.floor(time.time() / interval_s) + 2) * interval_s)
    answers.by_meter = {m.id: [] for m in config.meters}

    async def loop(bus_pollers: list[Any]) -> None:
        await asyncio.sleep(answers.start_at - time.time())
        for k in range(polls):
            for poller in bus_pollers:
                try:
                    await poller.poll()
                except ModbusError:
                    answers.failed += 1
                    continue
                answers.by_meter[poller.meter.id].append((k, time.time()))
            await asyncio.sleep(interval_s)

    try:
        await asyncio.gather(*(loop(p) for p in by_bus.values()))
    finally:
        for bus in buses.values():
            await bus.close()
    return answers
