"""The logger service against the simulator (TCP and an RS-485 pty pair) and a real Mosquitto."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import INTERVAL, campus
from tests.support.mqtt import Collector
from tests.support.readback import count, query
from tests.support.serial import SocatPair
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy.core.models import CORE_FIELDS
from campus_energy.core.timestamps import iso_utc
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator


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
        "site",  # added to the contract's fields: the meter's site
        "energy_export_wh",  # added: the export over the interval, and cumulative
        "energy_export_total_wh",
    }
    return base | set(profile_fields)


# added after a gap the meter's registers bridged (one can happen on a busy machine)
ESTIMATE_KEYS = {"estimated_energy_wh", "estimated_export_wh", "estimated_start"}


async def test_readings_land_in_sqlite_and_on_mqtt_with_the_contract_payload(
    tmp_path: Path, mosquitto: Any, socat_pair: SocatPair
) -> None:
    config, sim_config = campus(tmp_path, mosquitto.port, rtu=socat_pair)
    db = config.storage.path
    async with Simulator(sim_config), Collector(mosquitto.port) as collector:
        logger = MeterLogger(config)
        async with serving(logger, "ready"):
            await eventually(lambda: all(count(db, m.id) >= 8 for m in config.meters), timeout=30)
        # after a clean stop the outbox is drained
        stored = query(
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
            keys = payload_keys(profile_fields)
            assert keys <= set(payload) <= keys | ESTIMATE_KEYS
            assert payload["schema"] == 1
            assert (payload["building"], payload["floor"]) == (meter.building, meter.floor)
            assert payload["site"] == config.site.id
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


@pytest.mark.slow
async def test_energy_matches_the_simulators_exact_integral(tmp_path: Path, mosquitto: Any) -> None:
    flaky = {"simulate": {"timeout_rate": 0.3, "seed": 11}}
    config, sim_config = campus(tmp_path, mosquitto.port, **{"lib-f1": flaky})
    db = config.storage.path
    simulator = Simulator(sim_config)
    async with simulator, serving(MeterLogger(config), "ready"):
        await eventually(lambda: all(count(db, m.id) >= 20 for m in config.meters), timeout=40)
    for meter in config.meters:
        load = simulator.meters[meter.id].load
        mine = query(
            db,
            "SELECT ts_ms, energy_wh FROM readings WHERE meter_id = ? ORDER BY ts_ms",
            (meter.id,),
        )
        gaps = set(
            query(
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
        async with serving(logger, "ready"):
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
        total = query(db, "SELECT meter_id, seq FROM readings")
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


@pytest.mark.slow
async def test_a_silent_meter_goes_offline_and_back_without_delaying_the_others(
    tmp_path: Path, mosquitto: Any
) -> None:
    outage = {"simulate": {"disconnect_after_s": 2.0, "reconnect_after_s": 5.0}}
    config, sim_config = campus(tmp_path, mosquitto.port, **{"lib-f1": outage})
    db = config.storage.path
    async with (
        Simulator(sim_config),
        Collector(mosquitto.port) as collector,
        serving(MeterLogger(config), "ready"),
    ):
        await eventually(lambda: "offline" in collector.statuses("lib-f1/status"), timeout=15)
        await eventually(lambda: collector.statuses("lib-f1/status")[-1:] == ["online"], timeout=15)
    # a status message per change, not per failed poll: online, error, offline, online
    assert collector.statuses("lib-f1/status") == ["online", "error", "offline", "online"]
    neighbour = [
        ts
        for (ts,) in query(
            db, "SELECT ts_ms FROM readings WHERE meter_id = 'admin-old' ORDER BY ts_ms"
        )
    ]
    steps = [b - a for a, b in itertools.pairwise(neighbour)]
    # the neighbour on the same bus (polled after the silent meter) kept every 0.5 s slot
    assert steps and max(steps) < INTERVAL * 1000 * 1.5, steps
    gaps = query(
        db,
        "SELECT start_ts_ms, end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter "
        "WHERE m.meter_id = 'lib-f1'",
    )
    assert len(gaps) == 1 and 2500 <= gaps[0][1] - gaps[0][0] <= 4500
