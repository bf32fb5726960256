"""The bridge's writes to its spool: a burst of messages is one commit, a lingering batch lost
to kill -9 is redelivered, and a first-layout spool keeps what it holds when converted."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.campus import METERS, bridged_campus
from tests.support.processes import campus_energy
from tests.support.services import serving, spawn
from tests.support.sinks import sqlite_sink
from tests.support.waiting import eventually

from campus_energy.bridge import service
from campus_energy.bridge.service import Bridge
from campus_energy.core.readings import Reading
from campus_energy.runtime.mqtt import encode

BURST = 3  # readings per meter in one burst


def burst(first_seq: int, count: int = BURST) -> list[tuple[str, bytes]]:
    """`count` readings of every meter, one second apart and recent, as a logger publishes them."""
    now_ms = int(time.time() * 1000) - count * 1000
    found = []
    for meter in METERS:
        for i in range(count):
            ts = now_ms + i * 1000
            reading = Reading(meter, ts, first_seq + i, 250_000, 0, {"power_w": 900.0}, ts - 1000)
            found.append((f"campus/energy/{meter}/reading", encode(reading.payload("B", "1"))))
    return found


async def publish_at_once(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="burst") as client:
        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in messages))


def spooled(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT meter_id, seq FROM contributions ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("commit_interval_s", [0, 2])
async def test_a_burst_of_messages_is_one_commit(
    commit_interval_s: float, tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quiet spell that ends a batch, widened from 50 ms: a loaded machine may deliver a
    # burst's messages further apart; what is tested is that a burst gathers into one batch.
    monkeypatch.setattr(service, "QUIET_S", 1.0)
    monkeypatch.setattr(service, "LINGER_S", 5.0)
    config = bridged_campus(
        tmp_path,
        mosquitto.port,
        sqlite_sink(tmp_path),
        window_s=300,
        grace_s=600,  # no window is written during the test: every commit is a batch's
        commit_interval_s=commit_interval_s,
    )
    bridge = Bridge(config)
    async with serving(bridge, "subscribed"):
        before = bridge.spool.commits
        await publish_at_once(mosquitto.port, burst(1))
        await eventually(lambda: bridge.counters.readings >= BURST * len(METERS))
        assert bridge.spool.commits - before == 1
        await publish_at_once(mosquitto.port, burst(1 + BURST))
        total = 2 * BURST * len(METERS)
        await eventually(lambda: bridge.counters.readings >= total)
        assert bridge.spool.commits - before == 2
    assert bridge.counters.readings == total and bridge.counters.duplicates == 0


@pytest.mark.slow
async def test_kill_9_during_a_lingering_batch_loses_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    config_file = tmp_path / "bridge.toml"
    config_file.write_text(
        f"""
[mqtt]
port = {mosquitto.port}
[bridge]
window_s = 300
grace_s = 600
spool_path = "{tmp_path / "spool.db"}"
client_id = "bridge-a"
commit_interval_s = 300
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
"""
    )
    log = tmp_path / "bridge.log"
    process = spawn(campus_energy("bridge", "-c", config_file), log, with_stdout=False)
    try:
        await eventually(lambda: "subscribed to" in log.read_text(), timeout=20)
        messages = burst(1)
        await publish_at_once(mosquitto.port, messages)  # the broker has them: in flight
        assert spooled(tmp_path / "spool.db") == []  # lingering: nothing committed, nothing acked
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        config_file.write_text(config_file.read_text().replace("commit_interval_s = 300", ""))
        process = spawn(campus_energy("bridge", "-c", config_file), log, with_stdout=False)
        expected = sorted((m, seq) for m in METERS for seq in range(1, BURST + 1))
        await eventually(lambda: spooled(tmp_path / "spool.db") == expected, timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()
