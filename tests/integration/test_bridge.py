"""The bridge end to end: simulator → logger → Mosquitto → bridge → SQLite, PostgreSQL, Firestore.

The books must balance: per meter, Σ window energy equals Σ energy_wh in the
logger's SQLite to 1e-6 Wh, Σ readings_in_batch equals the readings stored, and
there is exactly one document per meter and window.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
from collections import Counter
from hashlib import sha256
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.campus import INTERVAL, METERS, WINDOW_S, balance, bridged_campus
from tests.support.emulator import emulator_environment
from tests.support.net import TcpProxy
from tests.support.processes import campus_energy
from tests.support.readback import count
from tests.support.services import serving, spawn
from tests.support.sinks import SinkFor, docs_of, sqlite_sink
from tests.support.waiting import eventually

from campus_energy.bridge.service import Bridge
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


@pytest.mark.parametrize(
    "kind", ["sqlite", "postgres", "firestore-per-meter", "firestore-per-window"]
)
async def test_windows_balance_with_the_logger_in_every_sink(
    kind: str, tmp_path: Path, mosquitto: Any, sink_for: SinkFor
) -> None:
    config = bridged_campus(tmp_path, mosquitto.port, sink_for(kind))
    bridge = Bridge(config)
    async with Simulator(config), serving(bridge, "subscribed"):
        async with serving(MeterLogger(config)):
            await eventually(lambda: bridge.counters.window_writes >= 3 * len(METERS), timeout=30)
        await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    balance(config, docs_of(config))
    full = [d for d in docs_of(config) if d.readings_in_batch >= WINDOW_S / INTERVAL]
    assert full, "no complete window"
    assert max(d.coverage for d in full) > 0.99


@pytest.mark.long  # tests/faults/test_kill9.py kills both services in the short run
async def test_kill_9_of_the_bridge_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = bridged_campus(tmp_path, mosquitto.port, sqlite_sink(tmp_path))
    config_file = tmp_path / "bridge.toml"
    config_file.write_text(
        f"""
[mqtt]
port = {mosquitto.port}
[bridge]
window_s = {WINDOW_S}
grace_s = 0.5
spool_path = "{tmp_path / "spool.db"}"
client_id = "bridge-a"
sink = "sqlite"
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
"""
    )
    log = tmp_path / "bridge.log"

    def start() -> subprocess.Popen[bytes]:
        return spawn(campus_energy("bridge", "-c", config_file), log, with_stdout=False)

    process = start()
    # The broker keeps readings only for a session that exists: subscribe before logging.
    await eventually(lambda: "subscribed to" in log.read_text(), timeout=20)
    try:
        async with Simulator(config), serving(MeterLogger(config)):
            for _ in range(3):
                seen = len(docs_of(config))
                await eventually(lambda seen=seen: len(docs_of(config)) > seen, timeout=20)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                process = start()
            await eventually(lambda: count(config.storage.path) >= 40, timeout=30)
        # the logger has stopped: let the bridge catch up, then stop it cleanly
        total = count(config.storage.path)
        await eventually(
            lambda: sum(d.readings_in_batch for d in docs_of(config)) >= total, timeout=30
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    balance(config, docs_of(config))
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    "kind", ["postgres", pytest.param("firestore-per-meter", marks=pytest.mark.long)]
)
async def test_an_unreachable_sink_loses_nothing(
    kind: str,
    tmp_path: Path,
    mosquitto: Any,
    sink_for: SinkFor,
) -> None:
    settings = sink_for(kind)
    direct = bridged_campus(tmp_path, mosquitto.port, settings)  # to read the books afterwards
    if kind == "postgres":
        proxy = TcpProxy("127.0.0.1", 5432)
        settings = {
            **settings,
            "postgres": {
                **settings["postgres"],
                "dsn": settings["postgres"]["dsn"].replace(
                    "127.0.0.1:5432", f"127.0.0.1:{proxy.port}"
                ),
            },
        }
        through_proxy: Any = contextlib.nullcontext()
    else:
        host, port = os.environ["FIRESTORE_EMULATOR_HOST"].split(":")
        proxy = TcpProxy(host, int(port))
        through_proxy = emulator_environment(f"127.0.0.1:{proxy.port}")
    await proxy.start()
    config = bridged_campus(tmp_path, mosquitto.port, settings)
    bridge = Bridge(config)
    try:
        with through_proxy:
            async with Simulator(config), serving(bridge):
                async with serving(MeterLogger(config)):
                    await eventually(
                        lambda: bridge.counters.window_writes >= len(METERS), timeout=30
                    )
                    await proxy.cut()
                    await eventually(lambda: bridge.sink_outage.down, timeout=30)
                    written = bridge.counters.window_writes
                    await eventually(lambda: count(config.storage.path) >= 30)
                    assert await bridge.spool.pending() > 0  # windows wait in the spool
                    await proxy.restore()
                    await eventually(
                        lambda: bridge.counters.window_writes > written + 3, timeout=60
                    )
                await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    finally:
        await proxy.close()
    balance(direct, docs_of(direct))


MALFORMED = [
    b"not json at all",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    json.dumps({"schema": 2, "meter_id": "lib-f1"}).encode(),
    json.dumps(
        {
            "schema": 1,
            "meter_id": "lib-f1",
            "seq": True,
            "ts": "2026-01-01T00:00:00Z",
            "power_w": 1,
            "energy_wh": 0,
        }
    ).encode(),
    b'{"schema": 1, "meter_id": "lib-f1", "seq": 1, "ts": "2026-01-01T00:00:00Z", '
    b'"power_w": NaN, "energy_wh": 0}',
    json.dumps(
        {
            "schema": 1,
            "meter_id": "lib-f1",
            "seq": 1,
            "ts": "1999-01-01T00:00:00Z",
            "power_w": 1,
            "energy_wh": 0,
        }
    ).encode(),
    b"x" * 70_000,
]


async def test_malformed_payloads_are_dead_lettered_while_good_ones_flow(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = bridged_campus(tmp_path, mosquitto.port, sqlite_sink(tmp_path))
    bridge = Bridge(config)
    with caplog.at_level(logging.WARNING, logger="campus_energy.bridge"):
        async with Simulator(config), serving(bridge, "subscribed"):
            async with (
                serving(MeterLogger(config)),
                aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="vandal") as vandal,
            ):
                for i in range(1000):
                    meter = "lib-f1" if i % 7 else "ghost-meter"
                    topic = f"campus/energy/{meter}/reading"
                    await vandal.publish(topic, MALFORMED[i % len(MALFORMED)], qos=1)
                await eventually(
                    lambda: sum(bridge.counters.dead_letters.values()) >= 1000, timeout=30
                )
                await eventually(lambda: bridge.counters.window_writes >= 2 * len(METERS))
            await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    assert sum(bridge.counters.dead_letters.values()) == 1000
    spool = sqlite3.connect(tmp_path / "spool.db")
    try:
        kept = spool.execute("SELECT count(*), count(DISTINCT kind) FROM dead_letters").fetchone()
        raw = spool.execute(
            "SELECT payload, size, sha256 FROM dead_letters WHERE kind = 'oversized'"
        ).fetchone()
    finally:
        spool.close()
    assert kept[0] == 1000
    oversized = MALFORMED[-1]  # its first 4 KiB are kept, with its size and hash
    assert (raw[0], raw[1], raw[2]) == (oversized[:4096], 70_000, sha256(oversized).hexdigest())
    refused = [r for r in caplog.records if "refused a message" in r.getMessage()]
    assert len(refused) == kept[1]  # logged once per kind
    balance(config, docs_of(config))


async def test_two_bridges_on_a_shared_subscription_write_each_window_once(
    tmp_path: Path, mosquitto: Any, sink_for: SinkFor
) -> None:
    settings = sink_for("postgres")
    first = bridged_campus(tmp_path, mosquitto.port, settings, shared_group="bridges")
    second = bridged_campus(
        tmp_path / "b",
        mosquitto.port,
        settings,
        shared_group="bridges",
        client_id="bridge-b",
        spool_path=str(tmp_path / "spool-b.db"),
    )
    a, b = Bridge(first), Bridge(second)
    async with Simulator(first), serving(a, "subscribed"), serving(b, "subscribed"):
        async with serving(MeterLogger(first)):
            await eventually(lambda: count(first.storage.path) >= 60, timeout=30)
        total = count(first.storage.path)
        await eventually(lambda: a.counters.readings + b.counters.readings >= total)
    assert a.counters.readings > 0 and b.counters.readings > 0, "the load was not shared"
    docs = docs_of(first)
    per_window = Counter((d.meter_id, d.window_start_ms) for d in docs)
    assert set(per_window.values()) == {1}
    balance(first, docs)
