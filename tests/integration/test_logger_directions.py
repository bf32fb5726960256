"""The logger against the simulator over Modbus TCP, in both directions and with its second
witness: export split at the zero crossing, outages bridged by the meters' registers, meters
replaced (a meter event, logged once, no estimate across it), the witness across a restart,
and a person's confirmed new start."""

from __future__ import annotations

import itertools
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import make_config, meter_at, tcp_bus
from tests.support.mqtt import Collector
from tests.support.readback import count, query
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy.config import Config
from campus_energy.core.energy import split_trapezoid_uwh
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.witness import RegisterSpec
from campus_energy.logger.service import MeterLogger
from campus_energy.logger.store import ReadingStore
from campus_energy.meters.simulator.server import Simulator
from campus_energy.runtime.clock import SystemClock

pytestmark = pytest.mark.slow  # each runs a logger against the simulator for a few seconds

INTERVAL = 0.5
LIMIT_W = 20_000.0  # the SDM120's largest plausible power
KWH_FLOAT = RegisterSpec("float32", 1000.0)  # its registers


def config_of(folder: Path, broker_port: int, *meters: dict[str, Any], zone: str = "UTC") -> Config:
    return make_config(
        [tcp_bus(timeout_s=0.15, retries=0)],
        [dict(m, interval_s=INTERVAL) for m in meters],
        site={"timezone": zone},
        storage={"path": str(folder / "store.db")},
        mqtt={"host": "127.0.0.1", "port": broker_port, "topic_prefix": "campus/energy"},
        logger={"id": "test-logger"},
    )


def sdm120(meter_id: str, unit: int, **simulate: Any) -> dict[str, Any]:
    return meter_at(meter_id, "plant", unit, "eastron-sdm120", simulate=simulate)


class MillisecondClock(SystemClock):
    """The host's wall clock on the middle of its millisecond, as both clocks: an interval the
    logger integrates is exactly the difference of the readings' timestamps."""

    def wall(self) -> float:
        return (math.floor(time.time() * 1000) + 0.5) / 1000

    def mono(self) -> float:
        return self.wall()


class AheadClock(SystemClock):
    """The host's clocks a minute ahead: a logger started with it finds its last reading a
    minute back (a restart after a minute's stop, without waiting a minute)."""

    def wall(self) -> float:
        return time.time() + 60

    def mono(self) -> float:
        return time.monotonic() + 60


class Swing:
    """A load whose net power swings between importing and exporting every second."""

    seed = 7
    rated_w = 5_000.0

    def power_w(self, t: float) -> float:
        return 500.0 + 3_000.0 * math.sin(math.pi * t)

    def energy_since_epoch_wh(self, t: float) -> float:
        return 0.0


def rows(db: Path, meter_id: str) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT ts_ms, seq, power_w, energy_wh, energy_total_wh, energy_export_wh, "
        "energy_export_total_wh, estimated_energy_wh, estimated_export_wh, import_energy_wh, "
        "export_energy_wh FROM readings WHERE meter_id = ? ORDER BY ts_ms",
        (meter_id,),
    )


def gaps(db: Path, meter_id: str) -> list[tuple[int, int]]:
    found = query(
        db,
        "SELECT start_ts_ms, end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter "
        "WHERE m.meter_id = ? ORDER BY start_ts_ms",
        (meter_id,),
    )
    return [(a, b) for a, b in found]


def uwh(wh: float) -> int:
    return round(wh * 1_000_000)


def counter(logger: MeterLogger, name: str, **labels: str) -> float | None:
    registry = logger.metrics.exporter.registry
    return registry.get_sample_value(f"campus_energy_logger_{name}_total", labels)


async def test_an_interval_changing_sign_is_split_exactly_at_its_zero_crossing(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = config_of(tmp_path, mosquitto.port, sdm120("roof", 1))
    db = config.storage.path
    simulator = Simulator(config)
    simulator.meters["roof"].load = Swing()  # type: ignore[assignment]
    async with simulator, Collector(mosquitto.port) as collector:
        logger = MeterLogger(config, clock=MillisecondClock())
        async with serving(logger, "ready"):
            await eventually(lambda: count(db, "roof") >= 16, timeout=30)
        await eventually(lambda: len(collector.readings()) >= count(db, "roof"), timeout=10)
    mine = rows(db, "roof")
    held = set(gaps(db, "roof"))
    both = 0
    imported = exported = 0
    for before, after in itertools.pairwise(mine):
        ts, _, power, energy, total, export, export_total, estimated, *_ = after
        if (before[0], ts) in held:
            assert energy == export == 0.0
            continue
        expected = split_trapezoid_uwh(before[2], power, (ts - before[0]) / 1000)
        assert abs(uwh(energy) - expected[0]) <= 1 and abs(uwh(export) - expected[1]) <= 1
        both += energy > 0 and export > 0
        imported += uwh(energy)
        exported += uwh(export)
        assert (uwh(total), uwh(export_total)) == (imported, exported)
        assert estimated is None  # the register never moved: nothing was estimated
    assert both >= 2, "intervals that import, then export (or the other way round)"
    assert exported > 0 and imported > 0
    # the payload: energy_wh stays import, the export beside it, and where they both start
    published = {p["seq"]: p for p in collector.readings()}
    for before, after in itertools.pairwise(mine):
        payload = published[after[1]]
        assert (payload["energy_wh"], payload["energy_total_wh"]) == (after[3], after[4])
        assert (payload["energy_export_wh"], payload["energy_export_total_wh"]) == after[5:7]
        integrated = after[3] > 0 or after[5] > 0
        assert payload["interval_start"] == (iso_utc(before[0]) if integrated else None)


def zone_at_noon() -> str:
    """A zone where it is about noon now, so that a PV array gives more than a building draws."""
    hour = datetime.now(UTC).hour
    offset = 12 - hour  # local = UTC + offset; Etc/GMT's sign is the other way round
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


async def test_a_building_exporting_at_noon_stores_its_export_as_the_simulator_counts_it(
    tmp_path: Path, mosquitto: Any
) -> None:
    pv = {"base_w": 200.0, "peak_w": 300.0, "pv_peak_w": 12_000.0, "cloudiness": 0.0}
    config = config_of(tmp_path, mosquitto.port, sdm120("solar", 1, **pv), zone=zone_at_noon())
    db = config.storage.path
    simulator = Simulator(config)
    async with simulator, serving(MeterLogger(config), "ready"):
        await eventually(lambda: count(db, "solar") >= 12, timeout=30)
    truth = simulator.meters["solar"]
    mine = rows(db, "solar")
    held = set(gaps(db, "solar"))
    logged = exact = 0.0
    for before, after in itertools.pairwise(mine):
        assert after[2] < 0  # exporting all along
        assert after[3] == 0.0  # no import
        if (before[0], after[0]) in held:
            continue
        logged += after[5]
        exact += truth.energy(before[0] / 1000, after[0] / 1000).export_wh
    assert logged > 0 and logged == pytest.approx(exact, rel=5e-3)
    # the export register counts up with it
    assert mine[-1][10] > mine[0][10]


async def test_an_outage_is_bridged_by_the_registers_as_estimated_energy(
    tmp_path: Path, mosquitto: Any
) -> None:
    outage = {"base_w": 10_000.0, "peak_w": 10_000.0, "disconnect_after_s": 2.0}
    config = config_of(
        tmp_path,
        mosquitto.port,
        sdm120("out", 1, **outage, reconnect_after_s=5.5),
        dict(sdm120("out-off", 2, **outage, reconnect_after_s=5.5), estimate_gaps=False),
    )
    db = config.storage.path
    simulator = Simulator(config)
    async with simulator, Collector(mosquitto.port) as collector:
        logger = MeterLogger(config)
        async with serving(logger, "ready"):

            def bridged() -> bool:
                return all(
                    len(gaps(db, m)) == 1
                    and len([r for r in rows(db, m) if r[0] > gaps(db, m)[0][1]]) >= 3
                    for m in ("out", "out-off")
                )

            await eventually(bridged, timeout=30)
            estimated_import = counter(
                logger, "estimated_energy_wh", meter="out", direction="import"
            )
        await eventually(lambda: len(collector.readings()) >= count(db), timeout=10)
    ((start, end),) = gaps(db, "out")
    mine = {r[0]: r for r in rows(db, "out")}
    after, before = mine[end], mine[start]
    # the estimate is the difference of the registers as they were stored ...
    assert uwh(after[7]) == uwh(after[9]) - uwh(before[9])
    assert after[8] == 0.0  # a meter that never exports: its export register stood still
    # ... within the register's resolution of what the meter counted over the gap
    truth = simulator.meters["out"].energy(start / 1000, end / 1000).import_wh
    slack = KWH_FLOAT.resolution_wh(after[9]) + 0.1 + 10_000 * 0.05 / 3600  # ms of latency
    assert truth > 8.0 and abs(after[7] - truth) <= slack, (after[7], truth, slack)
    # apart from the measured energy, which has nothing for the gap
    assert (after[3], after[5]) == (0.0, 0.0)
    assert [t for t, r in mine.items() if r[7] is not None] == [end]
    assert estimated_import == pytest.approx(after[7])
    # in the payload: the estimate and where it starts; no interval was integrated
    (payload,) = [
        p for p in collector.readings() if p["meter_id"] == "out" and p["seq"] == after[1]
    ]
    assert payload["estimated_energy_wh"] == after[7] and payload["estimated_export_wh"] == 0.0
    assert payload["estimated_start"] == iso_utc(start)
    assert payload["interval_start"] is None and payload["energy_wh"] == 0.0
    others = [p for p in collector.readings() if p["seq"] != after[1] or p["meter_id"] != "out"]
    assert not any("estimated_energy_wh" in p for p in others)
    # a meter whose gaps are not to be estimated has its gap, and no estimate
    assert len(gaps(db, "out-off")) == 1
    assert all(r[7] is None and r[8] is None for r in rows(db, "out-off"))


async def test_a_meter_replaced_is_one_event_logged_once_and_no_estimate_across_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = {"base_w": 3_000.0, "peak_w": 3_000.0}
    config = config_of(
        tmp_path,
        1,  # no broker: the logger stores, its outbox waits
        sdm120("swap", 1, **base, replace_at_s=2.0),
        sdm120("swap-gap", 2, **base, disconnect_after_s=2.0, replace_at_s=3.0,
               reconnect_after_s=5.0),
    )  # fmt: skip
    db = config.storage.path
    caplog.set_level(logging.WARNING, logger="campus_energy.logger")
    simulator = Simulator(config)
    async with simulator:
        logger = MeterLogger(config)
        async with serving(logger, "ready"):

            def settled() -> bool:
                replaced = {m: simulator.meters[m].replaced_at for m in ("swap", "swap-gap")}
                return all(
                    at is not None and len([r for r in rows(db, m) if r[0] > at * 1000 + 2000]) >= 2
                    for m, at in replaced.items()
                )

            await eventually(settled, timeout=30)
            events = await logger.store.meter_events()
            resets = {
                m: counter(logger, "meter_events", meter=m, kind=e.kind)
                for m, e in ((e.meter_id, e) for e in events)
            }
    assert [
        (e.meter_id, e.source, e.register) for e in sorted(events, key=lambda e: e.meter_id)
    ] == [
        ("swap", "detected", "import_energy_wh"),
        ("swap-gap", "detected", "import_energy_wh"),
    ]
    for event in events:
        assert event.kind in {"reset", "replaced"}
        assert event.before_wh is not None and event.after_wh is not None
        assert event.after_wh < event.before_wh
    assert resets == {"swap": 1.0, "swap-gap": 1.0}
    for meter_id in ("swap", "swap-gap"):
        said = [
            r for r in caplog.records if r.getMessage().startswith(f"meter {meter_id}: meter event")
        ]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
        mine = rows(db, meter_id)
        # no negative or giant energy anywhere, and nothing estimated across the replacement
        for before, after in itertools.pairwise(mine):
            most = LIMIT_W * (after[0] - before[0]) / 3_600_000
            assert 0.0 <= after[3] <= most and after[5] == 0.0
            assert after[7] is None and after[8] is None
    assert len(gaps(db, "swap-gap")) == 1


async def test_the_witness_survives_a_restart_and_bridges_it(tmp_path: Path) -> None:
    config = config_of(tmp_path, 1, sdm120("lab", 1, base_w=2_000.0, peak_w=2_000.0))
    db = config.storage.path
    async with Simulator(config):
        async with serving(MeterLogger(config), "ready"):
            await eventually(lambda: count(db, "lab") >= 3)
        stopped = rows(db, "lab")[-1]
        async with serving(MeterLogger(config, clock=AheadClock()), "ready"):
            await eventually(lambda: count(db, "lab") >= len(stopped) + 3)
    mine = rows(db, "lab")
    index = next(i for i, r in enumerate(mine) if r[0] == stopped[0])
    before, after = mine[index], mine[index + 1]
    assert gaps(db, "lab") == [(before[0], after[0])]
    assert after[1] == before[1] + 1
    # restored, the registers bear witness across the stop: an estimate, though the float32
    # registers of a meter that counted for a second may not have moved a step (0 Wh)
    assert after[7] is not None and after[8] == 0.0
    assert uwh(after[7]) == uwh(after[9]) - uwh(before[9])
    assert (after[3], after[5]) == (0.0, 0.0)


async def test_a_confirmed_new_start_is_the_registers_baseline_after_a_replacement(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_of(tmp_path, 1, sdm120("lab", 1, base_w=2_000.0, peak_w=2_000.0))
    db = config.storage.path
    caplog.set_level(logging.INFO, logger="campus_energy.logger")
    simulator = Simulator(config)
    async with simulator:
        async with serving(MeterLogger(config), "ready"):
            await eventually(lambda: count(db, "lab") >= 3)
        # while the logger is stopped the meter is replaced, and a person says so
        replaced_at = time.time()
        simulator.meters["lab"].replace(replaced_at)
        store = ReadingStore(db)
        try:
            confirmed = MeterEvent("lab", math.floor(replaced_at * 1000), "replaced", "confirmed",
                                   old_final_wh=1e6, new_start_wh=0.0)  # fmt: skip
            await store.record_events([confirmed])
        finally:
            await store.close()
        stopped = count(db, "lab")
        logger = MeterLogger(config)
        async with serving(logger, "ready"):
            await eventually(lambda: count(db, "lab") >= stopped + 3)
            events = await logger.store.meter_events("lab")
    assert [e.source for e in events] == ["confirmed"]  # nothing detected: the baseline was set
    assert any(
        "lab: import_energy_wh starts again from 0.0 Wh" in r.getMessage() for r in caplog.records
    )
    mine = rows(db, "lab")
    assert all(r[7] is None for r in mine)
    assert mine[-1][9] < 1_000.0  # the new meter's register
