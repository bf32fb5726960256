"""Attacks on the bridge's intake: what anyone who may publish on a reading topic can send.

Each case runs a real Mosquitto (the demo's configuration, or one without a size
limit where the bridge's own bound is the point) and a real bridge in this
process, publishes what an attacker or a careless neighbour would, and reads the
spool and the window documents back. What must hold:

- a reading no meter can produce (1e300 Wh, two of 1.7e308 Wh, 1e300 W, a
  voltage of 1e300 V) is dead-lettered as "implausible" and the windows hold
  only the real readings; the API never answers NaN or Infinity, even for a
  window written straight into the sink;
- one 209-byte reading whose interval starts 86,399 s before its `ts` (it made
  8,640 window documents at 10 s windows) is cut to the meter's longest
  interval: three documents, counted;
- a forged reading that takes a real one's (meter, seq) first keeps the real one
  as a "conflict" dead letter instead of dropping it; an identical redelivery
  stays a silent duplicate;
- with a signing key, a logger's signed readings balance the books while
  unsigned, wrongly signed and altered ones are dead-lettered as "signature";
  a key file others may read stops the logger and the bridge at start (exit 2);
- a 16 MiB payload never reaches the bridge through the demo broker, and with
  no broker limit grows the spool by a bounded prefix; a flood of oversized
  payloads keeps the dead-letter table under its cap.

Short by default; `CAMPUS_ENERGY_FAULTS=long` (`make faults`) floods ten times more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.faults.harness import PLAN
from tests.support.campus import balance
from tests.support.config import make_config, meter_at, tcp_bus
from tests.support.mqtt import running_mosquitto
from tests.support.net import free_port
from tests.support.processes import run_cli
from tests.support.readback import count
from tests.support.services import serving
from tests.support.sinks import docs_of
from tests.support.waiting import eventually

from campus_energy.api import create_app
from campus_energy.backends import open_sink, open_source
from campus_energy.bridge.service import Bridge
from campus_energy.bridge.spool import DEAD_LETTER_PREFIX_BYTES
from campus_energy.config import Config
from campus_energy.core.incoming import MAX_PAYLOAD_BYTES
from campus_energy.core.readings import Reading
from campus_energy.core.signatures import signed
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import Contribution, WindowDelta
from campus_energy.demo.mosquitto import MESSAGE_SIZE_LIMIT
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

FLOOD = 400 if PLAN.name == "long" else 40  # oversized payloads in the dead-letter cap case
METER = "m1"
TOPIC = f"campus/energy/{METER}/reading"
DEPLOYED_BROKER = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def intake_config(tmp_path: Path, port: int, **bridge: Any) -> Config:
    """One 20 kW meter (eastron-sdm120) polled every 5 s, 10 s windows, SQLite sink."""
    return make_config(
        [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        [meter_at(METER, "b", 1, "eastron-sdm120", interval_s=5)],
        site={"timezone": "UTC"},
        mqtt={"port": port},
        bridge={
            "window_s": 10,
            "grace_s": 0.5,
            "spool_path": str(tmp_path / "spool.db"),
            "client_id": "intake-bridge",
            "sqlite": {"path": str(tmp_path / "windows.db")},
            **bridge,
        },
    )


def recent_ms() -> int:
    """A window boundary a minute ago: readings there are past, and written at once."""
    return (int(time.time()) // 10 - 6) * 10_000


def reading(seq: int, ts_ms: int, start_ms: int | None, energy_wh: float, **changes: Any) -> bytes:
    """A reading of METER as the logger writes it (1 kW), with some values changed."""
    uwh = round(energy_wh * 1e6) if math.isfinite(energy_wh) and energy_wh < 1e12 else 0
    values = {"voltage_v": 230.0, "current_a": 4.35, "power_w": 1000.0, "frequency_hz": 50.0}
    body = Reading(METER, ts_ms, seq, uwh, 10**9, values, start_ms).payload("B", "1")
    body.update({"energy_wh": energy_wh, **changes})
    return json.dumps(body).encode()


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Bridge]:
    """The bridge, subscribed; on leaving it stops and writes every pending window."""
    bridge = Bridge(config)
    async with serving(bridge, "subscribed"):
        yield bridge


@contextlib.asynccontextmanager
async def vandal(port: int) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", port, identifier="vandal") as client:
        yield client


def dead_letters(config: Config) -> list[tuple[str, bytes, int | None, str | None]]:
    """(kind, payload kept, size, sha256) of every dead letter, oldest first."""
    conn = sqlite3.connect(config.bridge.spool_path)
    try:
        return conn.execute(
            "SELECT kind, payload, size, sha256 FROM dead_letters ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def spool_bytes(config: Config) -> int:
    path = config.bridge.spool_path
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    return sum(f.stat().st_size for f in files if f.exists())


def strict_json(raw: bytes) -> Any:
    """JSON as a browser parses it: NaN and Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=refuse)


# --- 1: values no meter can produce ---------------------------------------------------------------


async def test_readings_no_meter_can_produce_are_dead_lettered(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = intake_config(tmp_path, mosquitto.port)
    t = recent_ms()
    real = reading(1, t + 5_000, t, 1.389)  # 1 kW for 5 s
    attacks = [
        reading(2, t + 6_000, t + 5_000, 1e300),
        reading(3, t + 7_000, t + 6_000, 1.7e308),  # two of them made an infinite window
        reading(4, t + 8_000, t + 7_000, 1.7e308),
        reading(5, t + 9_000, t + 8_000, 0.1, power_w=1e300),
        reading(6, t + 9_500, t + 9_000, 0.1, voltage_v=1e300),
        reading(7, t + 9_600, t + 9_500, 0.01, power_factor=7.0),
    ]
    with caplog.at_level(logging.WARNING, logger="campus_energy.bridge"):
        async with running(config) as bridge, vandal(mosquitto.port) as client:
            for payload in [real, *attacks]:
                await client.publish(TOPIC, payload, qos=1)
            await eventually(lambda: bridge.counters.received == 1 + len(attacks))
    assert bridge.counters.dead_letters == {"implausible": len(attacks)}
    assert [kind for kind, *_ in dead_letters(config)] == ["implausible"] * len(attacks)
    assert sum("refused a message (implausible)" in r.getMessage() for r in caplog.records) == 1
    docs = docs_of(config)
    assert len(docs) == 1 and docs[0].readings_in_batch == 1
    assert docs[0].total_energy_wh == pytest.approx(1.389)
    app = create_app(config, source=open_source(config))
    summary = strict_json(app.test_client().get("/api/summary").data)
    assert summary["today_kwh"] == pytest.approx(0.001389, abs=1e-6) or summary["today_kwh"] == 0


async def test_one_reading_over_a_day_is_cut_to_the_meters_longest_interval(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = intake_config(tmp_path, mosquitto.port)
    t = recent_ms()
    day = json.dumps(
        {
            "schema": 1,
            "meter_id": METER,
            "building": "EC",
            "floor": "1",
            "ts": iso_utc(t),
            "seq": 1,
            "power_w": 500.0,
            "energy_wh": 0.5,
            "interval_start": iso_utc(t - 86_399_000),
            "voltage_v": 231.5,
        }
    ).encode()
    with caplog.at_level(logging.WARNING, logger="campus_energy.bridge"):
        async with running(config) as bridge, vandal(mosquitto.port) as client:
            await client.publish(TOPIC, day, qos=1)
            await eventually(lambda: bridge.counters.received == 1)
    assert len(day) == 209
    assert (bridge.counters.spans_cut, dict(bridge.counters.dead_letters)) == (1, {})
    assert sum("covers 86399 s of timestamps" in r.getMessage() for r in caplog.records) == 1
    docs = sorted(docs_of(config), key=lambda d: d.window_start_ms)
    # the meter's longest interval (17.675 s) before ts, at 10 s windows: 3 documents, not 8,640
    assert [d.window_start_ms for d in docs] == [t - 20_000, t - 10_000, t]
    assert sum(d.total_energy_wh for d in docs) == pytest.approx(0.5)


# --- 2: a forged reading takes a real one's place -------------------------------------------------


async def test_a_forged_reading_keeps_the_real_one_as_a_conflict(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = intake_config(tmp_path, mosquitto.port)
    t = recent_ms()
    before = reading(6, t + 5_000, t, 1.389)
    forged = reading(7, t + 10_000, t + 5_000, 0.001, power_w=1.0)  # published first
    real = reading(7, t + 10_000, t + 5_000, 1.389)
    with caplog.at_level(logging.WARNING, logger="campus_energy.bridge"):
        async with running(config) as bridge, vandal(mosquitto.port) as client:
            for payload in (before, forged, real, forged, before, real):  # then redeliveries
                await client.publish(TOPIC, payload, qos=1)
            await eventually(lambda: bridge.counters.received == 6)
    assert bridge.counters.dead_letters == {"conflict": 1}
    ((kind, kept, size, _),) = dead_letters(config)
    assert (kind, kept, size) == ("conflict", real, len(real))  # never dropped silently
    assert bridge.counters.duplicates == 2 + 1 + 2  # the redeliveries' window contributions
    assert sum("refused a message (conflict)" in r.getMessage() for r in caplog.records) == 1
    docs = docs_of(config)
    assert sum(d.readings_in_batch for d in docs) == 2


# --- 3: signed readings ---------------------------------------------------------------------------


def signing_campus(tmp_path: Path, broker_port: int, key_file: Path) -> Config:
    """Two simulated meters behind a logger that signs, as in tests/integration/test_bridge."""
    return make_config(
        [tcp_bus(timeout_s=0.2, retries=0)],
        [
            meter_at("lib-main", "plant", 1, "eastron-sdm630", interval_s=0.5),
            meter_at("lib-f1", "plant", 2, "eastron-sdm120", interval_s=0.5),
        ],
        storage={"path": str(tmp_path / "store.db")},
        mqtt={"port": broker_port, "signing_key_file": str(key_file)},
        logger={"id": "signing-test"},
        bridge={
            "window_s": 2,
            "grace_s": 0.5,
            "spool_path": str(tmp_path / "spool.db"),
            "client_id": "signing-bridge",
            "sqlite": {"path": str(tmp_path / "windows.db")},
        },
    )


async def test_signed_readings_land_and_forged_ones_are_dead_lettered(
    tmp_path: Path, mosquitto: Any
) -> None:
    key_file = tmp_path / "signing.key"
    key_file.write_text("9c" * 32 + "\n")
    key_file.chmod(0o600)
    config = signing_campus(tmp_path, mosquitto.port, key_file)
    t = recent_ms()
    forged = json.loads(reading(10**6, t, None, 0.0))
    forged.update(meter_id="lib-f1", energy_wh=50.0)
    topic = "campus/energy/lib-f1/reading"
    attacks = [
        json.dumps(forged).encode(),  # unsigned
        json.dumps(signed(forged, b"a key the vandal made up, 32 B+")).encode(),
        json.dumps(signed(forged, b"9c" * 32) | {"energy_wh": 5e4}).encode(),  # altered after
    ]
    bridge = Bridge(config)
    async with Simulator(config), serving(bridge, "subscribed"):
        async with serving(MeterLogger(config)), vandal(mosquitto.port) as client:
            await eventually(lambda: bridge.counters.readings >= 20)
            for payload in attacks:
                await client.publish(topic, payload, qos=1)
            await eventually(lambda: sum(bridge.counters.dead_letters.values()) == len(attacks))
        await eventually(lambda: bridge.counters.readings >= count(config.storage.path))
    assert bridge.counters.dead_letters == {"signature": len(attacks)}
    assert bridge.counters.readings == count(config.storage.path)
    balance(config, docs_of(config), rollups=False)


@pytest.mark.parametrize("service", ["bridge", "logger"])
def test_a_signing_key_others_may_read_stops_the_service_at_start(
    tmp_path: Path, service: str
) -> None:
    secret = "5e" * 32
    key_file = tmp_path / "signing.key"
    key_file.write_text(secret)
    key_file.chmod(0o644)
    config_file = tmp_path / "campus-energy.toml"
    config_file.write_text(
        f'[mqtt]\nport = {free_port()}\nsigning_key_file = "{key_file}"\n'
        '[[buses]]\nname = "b"\ntransport = "tcp"\nhost = "127.0.0.1"\n'
        '[[meters]]\nid = "m1"\nbus = "b"\nunit = 1\nprofile = "eastron-sdm120"\n'
    )
    done = run_cli(service, "-c", config_file)
    assert done.returncode == 2, done.stderr
    assert "mqtt.signing_key_file" in done.stderr and "chmod 600" in done.stderr
    assert secret not in done.stderr + done.stdout


# --- 4: oversized payloads ------------------------------------------------------------------------


async def test_a_16_mib_payload_never_reaches_the_bridge_through_the_demo_broker(
    tmp_path: Path,
) -> None:
    with running_mosquitto(tmp_path / "mq") as mq:
        assert f"message_size_limit {MESSAGE_SIZE_LIMIT}" in mq.config_file.read_text()
        config = intake_config(tmp_path, mq.port)
        t = recent_ms()
        async with running(config) as bridge, vandal(mq.port) as client:
            await client.publish(TOPIC, reading(1, t + 5_000, t, 1.389), qos=1)
            await eventually(lambda: bridge.counters.received == 1)
            grown_from = spool_bytes(config)
            await client.publish(TOPIC, b"{" + b" " * (16 * 2**20 - 2) + b"}", qos=1)
            await client.publish(TOPIC, reading(2, t + 10_000, t + 5_000, 1.389), qos=1)
            await eventually(lambda: bridge.counters.received >= 2)  # the reading after it
            grown = spool_bytes(config) - grown_from
    assert (bridge.counters.received, dict(bridge.counters.dead_letters)) == (2, {})
    assert grown < 64 * 1024
    deployed = [line.split() for line in DEPLOYED_BROKER.read_text().splitlines()]
    assert ["message_size_limit", str(MESSAGE_SIZE_LIMIT)] in deployed


async def test_a_16_mib_payload_past_a_broker_without_limit_keeps_a_bounded_prefix(
    tmp_path: Path,
) -> None:
    huge = bytes(range(256)) * (16 * 2**20 // 256)
    with running_mosquitto(tmp_path / "mq", message_size_limit=0) as mq:
        config = intake_config(tmp_path, mq.port)
        t = recent_ms()
        async with running(config) as bridge, vandal(mq.port) as client:
            await client.publish(TOPIC, reading(1, t + 5_000, t, 1.389), qos=1)
            await eventually(lambda: bridge.counters.received == 1)
            grown_from = spool_bytes(config)
            await client.publish(TOPIC, huge, qos=1)
            await client.publish(TOPIC, reading(2, t + 10_000, t + 5_000, 1.389), qos=1)
            await eventually(lambda: bridge.counters.received == 3)
            grown = spool_bytes(config) - grown_from
    assert bridge.counters.dead_letters == {"oversized": 1}
    assert bridge.counters.readings == 2
    ((kind, kept, size, sha256),) = dead_letters(config)
    assert (kind, kept, size) == ("oversized", huge[:DEAD_LETTER_PREFIX_BYTES], len(huge))
    assert sha256 == hashlib.sha256(huge).hexdigest()
    assert grown < 256 * 1024  # was 33 MB: the payload twice (database and WAL)


async def test_a_flood_of_oversized_payloads_keeps_the_dead_letters_under_their_cap(
    tmp_path: Path, mosquitto: Any
) -> None:
    cap = 64 * 1024
    config = intake_config(tmp_path, mosquitto.port, dead_letters_max_bytes=cap)
    payloads = [bytes([n % 256]) * (MAX_PAYLOAD_BYTES + 1 + n) for n in range(FLOOD)]
    async with running(config) as bridge, vandal(mosquitto.port) as client:
        for payload in payloads:
            await client.publish(TOPIC, payload, qos=1)
        await eventually(lambda: bridge.counters.received == FLOOD, timeout=60)
        held = await bridge.spool.dead_letter_bytes()
    kept = dead_letters(config)
    assert held <= cap and 0 < len(kept) < FLOOD
    assert bridge.counters.dead_letters == {"oversized": FLOOD}
    assert bridge.counters.dead_letters_evicted == FLOOD - len(kept)
    assert [size for *_, size, _ in kept] == [len(p) for p in payloads[FLOOD - len(kept) :]]
    assert spool_bytes(config) < 8 * 2**20  # the table's cap, and at most a WAL of 1,000 pages


# --- 5: the API never answers NaN or Infinity -----------------------------------------------------


def test_an_infinite_window_in_the_sink_breaks_no_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written straight into the sink, bypassing the bridge: 1e308 + 1e308 Wh = inf."""
    config = intake_config(tmp_path, free_port())
    t = recent_ms()

    async def write() -> None:
        sink = open_sink(config)
        try:
            ok = Contribution(METER, t - 20_000, 1, 1.389, 10.0, True, 1000.0)
            huge = [Contribution(METER, t - 10_000, s, 1e308, 5.0, True, 1.0) for s in (2, 3)]
            await sink.merge(
                [
                    WindowDelta(METER, t - 20_000, 10, (ok,), "B", "1"),
                    WindowDelta(METER, t - 10_000, 10, tuple(huge), "B", "1"),
                ],
                t,
            )
        finally:
            await sink.close()

    asyncio.run(write())
    source = open_source(config)
    try:
        client = create_app(config, source=source).test_client()
        answers = {
            url: client.get(url)
            for url in (
                "/api/summary",
                f"/api/series?meter={METER}",
                f"/api/export.csv?meter={METER}",
                "/api/aggregate/campus",
                "/api/meters",
                "/api/health",
            )
        }
        with caplog.at_level(logging.ERROR, logger="campus_energy.api"):
            for _ in range(3):  # logged once, answered the same every time
                assert client.get("/api/summary").status_code == 503
    finally:
        source.close()
    for url, answer in answers.items():
        assert answer.status_code in (200, 503), url
        if answer.mimetype == "text/csv":
            rows = answer.data.decode().splitlines()[1:]
            assert all(math.isfinite(float(v)) for row in rows for v in row.split(",")[1:] if v)
        else:
            body = strict_json(answer.data)  # valid JSON, whatever the status
            assert answer.status_code == 200 or set(body) == {"error"}, url
    assert answers["/api/summary"].status_code == 503
    assert strict_json(answers["/api/summary"].data)["error"].startswith("the answer cannot")
    assert answers["/api/meters"].status_code == answers["/api/health"].status_code == 200
    assert sum("/api/summary" in r.getMessage() for r in caplog.records) == 1
