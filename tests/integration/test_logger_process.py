"""The logger as a process: kill -9 and restart, bad configuration, a missing serial device."""

from __future__ import annotations

import itertools
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import two_meters
from tests.support.config import meter_at, write_toml
from tests.support.mqtt import Collector
from tests.support.net import free_port
from tests.support.processes import campus_energy, run_cli
from tests.support.readback import count, query
from tests.support.services import spawn
from tests.support.waiting import eventually

from campus_energy.config import load_config
from campus_energy.meters.simulator.server import Simulator


def logger_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return spawn(campus_energy("logger", "-c", config), log, with_stdout=False)


def zone_at_noon() -> str:
    """A zone where it is about noon now (a PV array behind a meter then exports)."""
    offset = 12 - datetime.now(UTC).hour  # local = UTC + offset; Etc/GMT's sign is reversed
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.mark.slow
async def test_kill_9_then_restart_loses_nothing_and_continues_the_totals(
    tmp_path: Path, mosquitto: Any
) -> None:
    bus_port = free_port()
    data = two_meters(tmp_path, mosquitto.port, bus_port)
    # m1 has rooftop PV and exports at noon: the books balance in both directions
    data["site"]["timezone"] = zone_at_noon()
    data["meters"][0]["simulate"] = {"base_w": 200.0, "peak_w": 300.0, "pv_peak_w": 12_000.0}
    config_file = write_toml(tmp_path / "c.toml", data)
    config = load_config(config_file, {})
    db = config.storage.path
    log = tmp_path / "logger.log"
    async with Simulator(config), Collector(mosquitto.port) as collector:
        process = logger_process(config_file, log)
        try:
            await eventually(lambda: count(db) >= 10)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            before = query(db, "SELECT meter_id, seq, ts_ms, energy_total_wh FROM readings")
            process = logger_process(config_file, log)
            await eventually(lambda: count(db) >= len(before) + 10)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        after = query(
            db,
            "SELECT meter_id, seq, ts_ms, energy_wh, energy_total_wh, energy_export_wh, "
            "energy_export_total_wh, estimated_energy_wh, estimated_export_wh, "
            "import_energy_wh, export_energy_wh FROM readings ORDER BY meter_id, seq",
        )
        # every committed reading survived
        assert {(m, s, t) for m, s, t, _ in before} <= {(m, s, t) for m, s, t, *_ in after}
        gaps = set(
            query(db, "SELECT m.meter_id, g.end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter")
        )
        for meter_id in ("m1", "m2"):
            mine = [r for r in after if r[0] == meter_id]
            assert [r[1] for r in mine] == list(range(1, len(mine) + 1))
            # each direction's total is the running sum of its energies, across the kill
            imported = exported = 0.0
            for _, _, _, energy, total, export, export_total, *_ in mine:
                imported += energy
                exported += export
                assert abs(total - imported) < 1e-6 and abs(export_total - exported) < 1e-6
            # an estimate only after a gap, as the registers counted it
            for previous, row in itertools.pairwise(mine):
                if row[7] is not None:
                    assert (meter_id, row[2]) in gaps
                    assert abs(row[7] - (row[9] - previous[9])) < 1e-6
                    assert abs(row[8] - (row[10] - previous[10])) < 1e-6
        m1 = [r for r in after if r[0] == "m1"]
        assert m1[-1][6] > 0 and m1[-1][4] == 0.0  # m1 exported, and imported nothing
        # the outbox drained to the broker: every stored reading was delivered
        expected = {(m, s) for m, s, *_ in after}
        await eventually(
            lambda: {(p["meter_id"], p["seq"]) for p in collector.readings()} >= expected,
            timeout=15,
        )
        published = query(db, "SELECT meter_id, published_seq FROM meters ORDER BY meter_id")
        last = query(db, "SELECT meter_id, max(seq) FROM readings GROUP BY meter_id ORDER BY 1")
        assert published == last
    assert "Traceback" not in log.read_text()


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    data = two_meters(tmp_path, 1883, 502)
    data["meters"][0]["interval_s"] = -1
    config = write_toml(tmp_path / "c.toml", data)
    result = run_cli("logger", "-c", config, timeout=30)
    assert result.returncode == 2
    assert 'meters[0] (id "m1").interval_s: must be greater than 0, got -1' in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_missing_serial_device_is_a_logged_outage_not_a_crash(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB9"
    config = write_toml(
        tmp_path / "c.toml",
        {
            "storage": {"path": str(tmp_path / "store.db")},
            "mqtt": {"port": free_port()},
            "buses": [{"name": "rs485", "transport": "rtu", "device": device, "timeout_s": 0.2}],
            "meters": [meter_at("m1", "rs485", 1, "eastron-sdm120", interval_s=0.5)],
        },
    )
    log = tmp_path / "logger.log"
    process = logger_process(config, log)
    try:
        await eventually(
            lambda: (
                "cannot open" in log.read_text() and "MQTT: broker 127.0.0.1" in log.read_text()
            ),
            timeout=15,
        )
        await eventually(lambda: log.read_text().count("\n") >= 3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "Traceback" not in text
    # logged once at ERROR, then quiet
    assert text.count("ERROR campus_energy.logger: meter m1 (bus rs485 unit 1)") == 1
    assert str(device) in text
