"""A logger's store as the logger writes it, for the tools that repair one (fix-db) and the
tests that damage one: two meters on one bus, COUNT readings each every 5 s from T0 made
by the logger's own integrator and store, the first PUBLISHED of them acknowledged.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.config import config_data, meter_at, tcp_bus, write_toml
from tests.support.net import free_port

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.readings import Reading
from campus_energy.logger.store import MeterRecord, ReadingStore

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
METERS = ("ece-f1-001", "mech-f2-001")
COUNT = 300
PUBLISHED = 200  # readings up to this seq were acknowledged by the broker


def write_config(folder: Path, bus_port: int = 5020, interval_s: float = 5) -> Path:
    return write_toml(
        folder / "campus-energy.toml",
        config_data(
            [tcp_bus(port=bus_port, timeout_s=0.2)],
            [
                meter_at(meter, "plant", unit, "eastron-sdm120", interval_s=interval_s)
                for unit, meter in enumerate(METERS, start=1)
            ],
            storage={"path": "var/smart_meter.db"},
            mqtt={"port": free_port()},
        ),
    )


def power(k: int) -> float:
    return 1200.0 + 25.0 * (k % 13)


async def write_store(path: Path) -> None:
    """COUNT readings per meter every 5 s from T0, by the logger's integrator and store."""
    store = ReadingStore(path)
    try:
        await store.register(MeterRecord(m, "ECE", "1") for m in METERS)
        for meter in METERS:
            state, readings = MeterState(), []
            for k in range(COUNT):
                ts = T0 + k * 5_000
                step, state = advance(
                    state, power_w=power(k), wall_s=ts / 1000, mono_s=ts / 1000, max_gap_s=17.5
                )
                values = {"power_w": power(k), "voltage_v": 230.0}
                readings.append(
                    Reading(meter, step.ts_ms, step.seq, step.energy_uwh, step.total_uwh, values)
                )
            await store.insert_many(readings)
            await store.mark_published([readings[PUBLISHED - 1]])
    finally:
        await store.close()
