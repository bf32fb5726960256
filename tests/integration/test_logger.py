"""The logger service against the simulator (TCP and an RS-485 pty pair) and a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Collector, SocatPair, eventually, free_port

from campus_energy.config import Config, parse_config
from campus_energy.core.models import CORE_FIELDS
from campus_energy.core.timestamps import iso_utc
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

INTERVAL = 0.5


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the logger's store from outside, as the dashboard would (WAL allows it)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


def count(db: Path, meter_id: str | None = None) -> int:
    """Readings in the store (0 while it does not exist yet)."""
    if meter_id is None:
        found = rows(db, "SELECT count(*) FROM readings")
    else:
        found = rows(db, "SELECT count(*) FROM readings WHERE meter_id = ?", (meter_id,))
    return int(found[0][0]) if found else 0


def campus(
    tmp_path: Path, broker_port: int, *, rtu: SocatPair | None = None, **meter_extra: Any
) -> tuple[Config, Config]:
    """(logger config, simulator config): the same meters; RTU on opposite ends of the pty pair."""
    tcp_port = free_port()
    buses: list[dict[str, Any]] = [
        {
            "name": "plant",
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": tcp_port,
            "timeout_s": 0.15,
            "retries": 0,
        },
    ]
    meters: list[dict[str, Any]] = [
        {
            "id": "lib-main",
            "bus": "plant",
            "unit": 1,
            "profile": "eastron-sdm630",
            "building": "Library",
            "floor": "G",
            "interval_s": INTERVAL,
        },
        {
            "id": "lib-f1",
            "bus": "plant",
            "unit": 2,
            "profile": "eastron-sdm120",
            "building": "Library",
            "floor": "1",
            "interval_s": INTERVAL,
        },
        {
            "id": "admin-old",
            "bus": "plant",
            "unit": 3,
            "profile": "campus-legacy",
            "building": "Admin",
            "floor": "G",
            "interval_s": INTERVAL,
        },
    ]
    if rtu is not None:
        buses.append(
            {"name": "rs485", "transport": "rtu", "device": rtu.client_end, "timeout_s": 0.2}
        )
        meters.append(
            {
                "id": "ece-f2",
                "bus": "rs485",
                "unit": 5,
                "profile": "eastron-sdm230",
                "building": "ECE",
                "floor": "2",
                "interval_s": INTERVAL,
            }
        )
    for meter in meters:
        meter.update(meter_extra.get(meter["id"], {}))
    base = {
        "site": {"timezone": "Asia/Kolkata"},
        "storage": {"path": str(tmp_path / "store.db")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_prefix": "campus/energy"},
        "logger": {"id": "test-logger"},
        "meters": meters,
    }
    logger = parse_config({**base, "buses": buses})
    server_buses = [
        dict(b, device=rtu.server_end) if b["transport"] == "rtu" and rtu else b for b in buses
    ]
    simulator = parse_config({**base, "buses": server_buses})
    return logger, simulator


@contextlib.asynccontextmanager
async def running(logger: MeterLogger) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(logger.run(stop))
    try:
        await asyncio.wait_for(logger.ready.wait(), 10)
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def payload_keys(profile_fields: list[str]) -> set[str]:
    base = {
        "schema",
        "meter_id",
        "building",
        "floor",
        "ts",
        "seq",
        *CORE_FIELDS,
        "energy_wh",
        "energy_total_wh",
        "interval_start",
    }
    return base | set(profile_fields)


async def test_readings_land_in_sqlite_and_on_mqtt_with_the_contract_payload(
    tmp_path: Path, mosquitto: Any, socat_pair: SocatPair
) -> None:
    config, sim_config = campus(tmp_path, mosquitto.port, rtu=socat_pair)
    db = config.storage.path
    async with Simulator(sim_config), Collector(mosquitto.port) as collector:
        logger = MeterLogger(config)
        async with running(logger):
            await eventually(lambda: all(count(db, m.id) >= 8 for m in config.meters), timeout=30)
        # after a clean stop the outbox is drained
        stored = rows(
            db,
            "SELECT meter_id, ts_ms, seq, voltage_v, current_a, power_w, power_factor, "
            "frequency_hz, energy_wh, energy_total_wh, import_energy_wh, extra "
            "FROM readings ORDER BY meter_id, seq",
        )
        await eventually(lambda: len(collector.readings()) >= len(stored), timeout=10)
        await eventually(lambda: "offline" in collector.statuses("logger/test-logger/status"))

    by_key = {(p["meter_id"], p["seq"]): p for p in collector.readings()}
    for meter in config.meters:
        mine = [r for r in stored if r[0] == meter.id]
        assert [r[2] for r in mine] == list(range(1, len(mine) + 1)), "seq is contiguous from 1"
        assert all(b[1] > a[1] for a, b in itertools.pairwise(mine))
        # on the grid: one poll per 0.5 s slot, never two in one (a late answer stays in its slot
        # or, under load, its slot is skipped; how late is the scheduler's, not a test's, business)
        slots = [ts // int(INTERVAL * 1000) for _, ts, *_ in mine]
        assert all(b > a for a, b in itertools.pairwise(slots)), slots
        profile_fields = [f.name for f in config.profile_of(meter).fields]
        for row in mine:
            payload = by_key[(meter.id, row[2])]
            assert set(payload) == payload_keys(profile_fields)
            assert payload["schema"] == 1
            assert (payload["building"], payload["floor"]) == (meter.building, meter.floor)
            assert payload["ts"] == iso_utc(row[1])
            previous = [r for r in mine if r[2] == row[2] - 1]
            if row[8] > 0:  # energy covers (previous reading, this one]
                assert payload["interval_start"] == iso_utc(previous[0][1])
            else:
                assert payload["interval_start"] is None
            core = dict(
                zip(
                    [
                        "voltage_v",
                        "current_a",
                        "power_w",
                        "power_factor",
                        "frequency_hz",
                        "energy_wh",
                        "energy_total_wh",
                    ],
                    row[3:10],
                    strict=True,
                )
            )
            for name, value in core.items():
                assert payload[name] == value, (name, payload[name], value)
    # the running total is the sum of the energies, and the first reading adds nothing
    for meter in config.meters:
        mine = [r for r in stored if r[0] == meter.id]
        assert mine[0][8] == 0.0
        assert mine[-1][9] == pytest.approx(sum(r[8] for r in mine), abs=1e-6)
    statuses = collector.statuses("lib-main/status")
    assert statuses and statuses[-1] == "online"
    assert collector.statuses("logger/test-logger/status")[:1] == ["online"]


async def test_energy_matches_the_simulators_exact_integral(tmp_path: Path, mosquitto: Any) -> None:
    flaky = {"simulate": {"timeout_rate": 0.3, "seed": 11}}
    config, sim_config = campus(tmp_path, mosquitto.port, **{"lib-f1": flaky})
    db = config.storage.path
    simulator = Simulator(sim_config)
    async with simulator, running(MeterLogger(config)):
        await eventually(lambda: all(count(db, m.id) >= 20 for m in config.meters), timeout=40)
    for meter in config.meters:
        load = simulator.meters[meter.id].load
        mine = rows(
            db,
            "SELECT ts_ms, energy_wh FROM readings WHERE meter_id = ? ORDER BY ts_ms",
            (meter.id,),
        )
        gaps = set(
            rows(
                db,
                "SELECT start_ts_ms, end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter "
                "WHERE m.meter_id = ?",
                (meter.id,),
            )
        )
        limit_ms = meter.gap_limit_s * 1000
        logged = exact = 0.0
        for (t0, _), (t1, energy) in itertools.pairwise(mine):
            if (t0, t1) in gaps:
                assert energy == 0.0 and t1 - t0 > limit_ms - 50
                continue
            assert energy > 0 and t1 - t0 < limit_ms + 50
            logged += energy
            exact += load.energy_wh(t0 / 1000, t1 / 1000)
        # the trapezoid over 0.5-1.5 s polls of a load with 1 s knots, and ms timestamps
        assert logged == pytest.approx(exact, rel=5e-3), meter.id


async def test_a_broker_outage_loses_nothing(tmp_path: Path, mosquitto: Any) -> None:
    config, sim_config = campus(tmp_path, mosquitto.port)
    db = config.storage.path
    async with Simulator(sim_config), Collector(mosquitto.port) as collector:
        logger = MeterLogger(config)
        async with running(logger):
            await eventually(lambda: len(collector.readings()) >= 6)
            mosquitto.stop()
            during = count(db)
            await eventually(lambda: count(db) >= during + 12)  # the logger keeps storing
            depth = sum((await logger.store.outbox_depth()).values())
            assert depth >= 12
            mosquitto.start()
            await eventually(
                lambda: sum(1 for _ in collector.readings()) >= count(db) - 6, timeout=30
            )
        total = rows(db, "SELECT meter_id, seq FROM readings")
        await eventually(
            lambda: {(p["meter_id"], p["seq"]) for p in collector.readings()} >= set(total),
            timeout=20,
        )
    received = [(p["meter_id"], p["seq"]) for p in collector.readings()]
    assert set(received) == set(total)  # none missing, nothing invented
    for meter in config.meters:
        seqs = [s for m, s in received if m == meter.id]
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), "replayed in order"
    duplicates = len(received) - len(set(received))
    assert duplicates <= 3 * 500  # at most the in-flight batch per reconnect (QoS 1)


async def test_a_silent_meter_goes_offline_and_back_without_delaying_the_others(
    tmp_path: Path, mosquitto: Any
) -> None:
    outage = {"simulate": {"disconnect_after_s": 2.0, "reconnect_after_s": 5.0}}
    config, sim_config = campus(tmp_path, mosquitto.port, **{"lib-f1": outage})
    db = config.storage.path
    async with (
        Simulator(sim_config),
        Collector(mosquitto.port) as collector,
        running(MeterLogger(config)),
    ):
        await eventually(lambda: "offline" in collector.statuses("lib-f1/status"), timeout=15)
        await eventually(lambda: collector.statuses("lib-f1/status")[-1:] == ["online"], timeout=15)
    # a status message per change, not per failed poll: online, error, offline, online
    assert collector.statuses("lib-f1/status") == ["online", "error", "offline", "online"]
    neighbour = [
        ts
        for (ts,) in rows(
            db, "SELECT ts_ms FROM readings WHERE meter_id = 'admin-old' ORDER BY ts_ms"
        )
    ]
    steps = [b - a for a, b in itertools.pairwise(neighbour)]
    # the neighbour on the same bus (polled after the silent meter) kept every 0.5 s slot
    assert steps and max(steps) < INTERVAL * 1000 * 1.5, steps
    gaps = rows(
        db,
        "SELECT start_ts_ms, end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter "
        "WHERE m.meter_id = 'lib-f1'",
    )
    assert len(gaps) == 1 and 2500 <= gaps[0][1] - gaps[0][0] <= 4500
