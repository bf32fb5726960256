"""The bridge end to end: simulator → logger → Mosquitto → bridge → SQLite, PostgreSQL, Firestore.

The books must balance: per meter, Σ window energy equals Σ energy_wh in the
logger's SQLite to 1e-6 Wh, Σ readings_in_batch equals the readings stored, and
there is exactly one document per meter and window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.conftest import TcpProxy, eventually, free_port
from tests.integration.sinks import Doc, docs_of, rollup_totals
from tests.integration.test_logger import count, rows

from campus_energy.bridge.service import Bridge
from campus_energy.config import Config, parse_config
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

WINDOW_S = 2
INTERVAL = 0.5
METERS = ("lib-main", "lib-f1", "admin-old")


def configure(tmp_path: Path, broker_port: int, sink: dict[str, Any], **bridge: Any) -> Config:
    bus_port = free_port()
    profiles = ("eastron-sdm630", "eastron-sdm120", "campus-legacy")
    data: dict[str, Any] = {
        "site": {"timezone": "Asia/Kolkata"},
        "storage": {"path": str(tmp_path / "store.db")},
        "mqtt": {"port": broker_port},
        "logger": {"id": "bridge-test"},
        "bridge": {
            "window_s": WINDOW_S,
            "grace_s": 0.5,
            "spool_path": str(tmp_path / "spool.db"),
            "client_id": "bridge-a",
            **sink,
            **bridge,
        },
        "buses": [
            {
                "name": "plant",
                "transport": "tcp",
                "host": "127.0.0.1",
                "port": bus_port,
                "timeout_s": 0.2,
                "retries": 0,
            }
        ],
        "meters": [
            {
                "id": meter,
                "bus": "plant",
                "unit": unit,
                "profile": profile,
                "building": "B" + str(unit),
                "interval_s": INTERVAL,
            }
            for unit, (meter, profile) in enumerate(zip(METERS, profiles, strict=True), start=1)
        ],
    }
    return parse_config(data)


def sink_settings(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "sqlite":
        return {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    if kind == "postgres":
        dsn, schema = request.getfixturevalue("postgres_dsn")
        return {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
    request.getfixturevalue("firestore_emulator")
    layout = kind.removeprefix("firestore-")
    return {
        "sink": "firestore",
        "firestore": {"project": "demo-campus", "collection": "windows", "layout": layout},
    }


def balance(config: Config, docs: list[Doc], rollups: bool = True) -> None:
    """The books: the windows hold exactly the logger's energy and readings, once each,
    and the sink's hourly and daily rollups hold exactly the windows."""
    db = config.storage.path
    sums = rollup_totals(config) if rollups else None
    assert len({d.id for d in docs}) == len(docs), "a document was written twice"
    assert len({(d.meter_id, d.window_start_ms) for d in docs}) == len(docs)
    for meter in config.meters:
        mine = [d for d in docs if d.meter_id == meter.id]
        stored = rows(
            db, "SELECT sum(energy_wh), count(*) FROM readings WHERE meter_id = ?", (meter.id,)
        )[0]
        assert stored[1] > 0
        assert sum(d.total_energy_wh for d in mine) == pytest.approx(stored[0], abs=1e-6)
        assert sum(d.readings_in_batch for d in mine) == stored[1]
        assert all(d.window_start_ms % (WINDOW_S * 1000) == 0 for d in mine)
        assert all(0 <= d.coverage <= 1 for d in mine)
        if sums is not None:
            daily, hourly, readings, windows = sums[meter.id]
            assert daily == pytest.approx(stored[0], abs=1e-6)
            assert hourly == pytest.approx(stored[0], abs=1e-6)
            assert (readings, windows) == (stored[1], len(mine))
    if sums is not None:
        everything = rows(db, "SELECT sum(energy_wh) FROM readings")[0][0]
        assert sums[""][0] == pytest.approx(everything, abs=1e-6)  # the campus rollup


@contextlib.asynccontextmanager
async def service(runner: Any) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def drained(bridge_counters: Any, config: Config) -> bool:
    return bridge_counters.readings >= count(config.storage.path)


@pytest.mark.parametrize(
    "kind", ["sqlite", "postgres", "firestore-per-meter", "firestore-per-window"]
)
async def test_windows_balance_with_the_logger_in_every_sink(
    kind: str, tmp_path: Path, mosquitto: Any, request: pytest.FixtureRequest
) -> None:
    config = configure(tmp_path, mosquitto.port, sink_settings(kind, tmp_path, request))
    bridge = Bridge(config)
    async with Simulator(config), service(bridge):
        await asyncio.wait_for(bridge.subscribed.wait(), 10)
        async with service(MeterLogger(config)):
            await eventually(lambda: bridge.counters.window_writes >= 3 * len(METERS), timeout=30)
        await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    balance(config, docs_of(config))
    full = [d for d in docs_of(config) if d.readings_in_batch >= WINDOW_S / INTERVAL]
    assert full, "no complete window"
    assert max(d.coverage for d in full) > 0.99


async def test_kill_9_of_the_bridge_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = configure(tmp_path, mosquitto.port, sink_settings("sqlite", tmp_path, None))  # type: ignore[arg-type]
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
        with log.open("ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "campus_energy", "bridge", "-c", str(config_file)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    process = start()
    # The broker keeps readings only for a session that exists: subscribe before logging.
    await eventually(lambda: "subscribed to" in log.read_text(), timeout=20)
    try:
        async with Simulator(config), service(MeterLogger(config)):
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


@pytest.mark.parametrize("kind", ["postgres", "firestore-per-meter"])
async def test_an_unreachable_sink_loses_nothing(
    kind: str,
    tmp_path: Path,
    mosquitto: Any,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = sink_settings(kind, tmp_path, request)
    direct = configure(tmp_path, mosquitto.port, settings)  # to read the books afterwards
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
    else:
        host, port = request.getfixturevalue("firestore_emulator").split(":")
        proxy = TcpProxy(host, int(port))
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{proxy.port}")
    await proxy.start()
    config = configure(tmp_path, mosquitto.port, settings)
    bridge = Bridge(config)
    try:
        async with Simulator(config), service(bridge):
            async with service(MeterLogger(config)):
                await eventually(lambda: bridge.counters.window_writes >= len(METERS), timeout=30)
                await proxy.cut()
                await eventually(lambda: bridge.sink_outage.down, timeout=30)
                written = bridge.counters.window_writes
                await eventually(lambda: count(config.storage.path) >= 30)
                assert await bridge.spool.pending() > 0  # windows wait in the spool
                await proxy.restore()
                await eventually(lambda: bridge.counters.window_writes > written + 3, timeout=60)
            await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    finally:
        await proxy.close()
    if kind != "postgres":
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"{host}:{port}")
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
    config = configure(tmp_path, mosquitto.port, sink_settings("sqlite", tmp_path, None))  # type: ignore[arg-type]
    bridge = Bridge(config)
    with caplog.at_level(logging.WARNING, logger="campus_energy.bridge"):
        async with Simulator(config), service(bridge):
            await asyncio.wait_for(bridge.subscribed.wait(), 10)
            async with (
                service(MeterLogger(config)),
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
    tmp_path: Path, mosquitto: Any, request: pytest.FixtureRequest
) -> None:
    settings = sink_settings("postgres", tmp_path, request)
    first = configure(tmp_path, mosquitto.port, settings, shared_group="bridges")
    second = configure(
        tmp_path / "b",
        mosquitto.port,
        settings,
        shared_group="bridges",
        client_id="bridge-b",
        spool_path=str(tmp_path / "spool-b.db"),
    )
    a, b = Bridge(first), Bridge(second)
    async with Simulator(first), service(a), service(b):
        await asyncio.wait_for(a.subscribed.wait(), 10)
        await asyncio.wait_for(b.subscribed.wait(), 10)
        async with service(MeterLogger(first)):
            await eventually(lambda: count(first.storage.path) >= 60, timeout=30)
        total = count(first.storage.path)
        await eventually(lambda: a.counters.readings + b.counters.readings >= total)
    assert a.counters.readings > 0 and b.counters.readings > 0, "the load was not shared"
    docs = docs_of(first)
    per_window = Counter((d.meter_id, d.window_start_ms) for d in docs)
    assert set(per_window.values()) == {1}
    balance(first, docs)
