"""The broker binds each meter to its logger: a real Mosquitto with the ACL `mosquitto-acl` writes.

Two loggers, each with its own meter and user, a bridge user and Home Assistant.
The ACL and the users come from the command and `mosquitto_passwd`, as in a
deployment. What must hold:

- a logger's reading reaches the bridge; the same logger's reading on the other
  logger's meter never does (MQTT 3.1.1 acknowledges and drops it), and the
  other logger's genuine reading arrives after it;
- the bridge can publish nothing;
- under MQTT 5 every publish outside a user's topics is answered "not authorised";
- a forged reading with a real reading's seq, published with one logger's
  credentials on the other's meter before the real one, leaves the books exact:
  the bridge windows exactly the real readings.

Ordering is the witness, never a sleep: Mosquitto handles a QoS 1 PUBLISH
completely — queueing it for every subscriber that may read it — before it
sends the PUBACK, and a subscriber's queue is delivered in order. So once a
publisher has its acknowledgement, a later message that arrives first proves
the earlier one was not delivered.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.net import free_port
from tests.support.processes import require_program
from tests.support.services import serving, serving_process
from tests.support.sinks import docs_of
from tests.support.waiting import eventually

from campus_energy.bridge.service import Bridge
from campus_energy.cli import main
from campus_energy.config import Config, load_config
from campus_energy.core.readings import Reading
from campus_energy.demo.mosquitto import mosquitto_executable, port_open
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.store import MeterRecord, ReadingStore

PREFIX = "campus/energy"
LOGGERS = {"hall-a": "a-main", "hall-b": "b-main"}  # logger id -> its one meter
NOT_AUTHORIZED = 135  # MQTT 5 reason code
T0 = 1_768_414_200_000  # 2026-01-14T18:10:00Z
READINGS = 60


def reading(meter: str) -> str:
    return f"{PREFIX}/{meter}/reading"


@dataclass
class AclBroker:
    """Mosquitto with only a password file and the generated ACL (no anonymous clients)."""

    folder: Path
    port: int
    passwords: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def config(self, name: str) -> Config:
        return load_config(self.folder / f"{name}.toml", {})

    def client(self, user: str, *, v5: bool = False) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=f"{user}-{next(_fresh)}",
            username=user,
            password=self.passwords[user],
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        )


_fresh = itertools.count()


def _config_file(folder: Path, port: int, logger_id: str, meters: list[str], user: str) -> str:
    """A configuration in the TOML a service reads: its user, its logger, the meters."""
    units = "".join(
        f'[[meters]]\nid = "{m}"\nbus = "b"\nunit = {i}\nprofile = "eastron-sdm120"\n'
        f'building = "{m[0].upper()}"\n'
        for i, m in enumerate(meters, start=1)
    )
    return (
        f'[site]\ntimezone = "Asia/Kolkata"\n'
        f'[storage]\npath = "{folder / logger_id}.db"\n'
        f'[mqtt]\nport = {port}\nusername = "{user}"\n'
        f'password_file = "{folder / user}.password"\nhomeassistant_discovery = true\n'
        f'[logger]\nid = "{logger_id}"\n'
        f"[bridge]\nwindow_s = 300\ngrace_s = 0\n"
        f'spool_path = "{folder}/spool.db"\nclient_id = "bridge-acl"\n'
        f'[bridge.sqlite]\npath = "{folder}/windows.db"\n'
        f'[[buses]]\nname = "b"\ntransport = "tcp"\nhost = "127.0.0.1"\n{units}'
    )


@pytest.fixture
def acl_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[AclBroker]:
    executable = mosquitto_executable() or require_program("mosquitto")
    passwd = require_program("mosquitto_passwd")
    folder = tmp_path / "broker"
    folder.mkdir()
    port = free_port()
    for logger_id, meter in LOGGERS.items():
        text = _config_file(folder, port, logger_id, [meter], f"logger-{logger_id}")
        (folder / f"{logger_id}.toml").write_text(text, encoding="utf-8")
    # the bridge knows every meter, as the campus's configuration does
    text = _config_file(folder, port, "central", list(LOGGERS.values()), "bridge")
    (folder / "bridge.toml").write_text(text, encoding="utf-8")

    acl = folder / "acl"
    loggers = [str(folder / f"{logger_id}.toml") for logger_id in LOGGERS]
    code = main(["mosquitto-acl", "-c", str(folder / "bridge.toml"), "--loggers", *loggers,
                 "-o", str(acl), "--passwd", str(folder / "passwd")])  # fmt: skip
    assert code == 0
    commands = capsys.readouterr().out
    users = [line.split()[1] for line in acl.read_text("utf-8").splitlines() if line[:5] == "user "]
    assert users == ["logger-hall-a", "logger-hall-b", "bridge", "homeassistant"]
    passwords = {user: f"{user}-secret" for user in users}
    for user, password in passwords.items():
        assert f"mosquitto_passwd {folder / 'passwd'} {user}\n" in commands
        subprocess.run([passwd, *(["-c"] if user == users[0] else []), "-b",
                        str(folder / "passwd"), user, password], check=True)  # fmt: skip
        (folder / f"{user}.password").write_text(password + "\n", encoding="utf-8")
    (folder / "mosquitto.conf").write_text(
        "\n".join(
            [
                "per_listener_settings false",
                f"listener {port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {folder / 'passwd'}",
                f"acl_file {acl}",
                f"user {getpass.getuser()}",
                "persistence false",
                f"log_dest file {folder / 'mosquitto.log'}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    broker = AclBroker(folder, port, passwords)
    with serving_process(
        [executable, "-c", folder / "mosquitto.conf"],
        folder / "mosquitto.log",  # the broker's own log_dest too
        ready=lambda: port_open("127.0.0.1", port),
        ready_timeout=10,
        stop_timeout=10,
    ) as running:
        broker.process = running.process
        yield broker


async def next_message(client: aiomqtt.Client) -> tuple[str, bytes]:
    async with asyncio.timeout(10):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            return str(message.topic), message.payload
    raise AssertionError("no message")


async def test_a_logger_reaches_the_bridge_only_on_its_own_meters(acl_broker: AclBroker) -> None:
    a, b = reading(LOGGERS["hall-a"]), reading(LOGGERS["hall-b"])
    async with (
        acl_broker.client("bridge") as bridge,
        acl_broker.client("logger-hall-a") as logger_a,
        acl_broker.client("logger-hall-b") as logger_b,
    ):
        await bridge.subscribe(f"{PREFIX}/+/reading", qos=1)
        await logger_a.publish(a, b'{"seq": 1}', qos=1)
        assert await next_message(bridge) == (a, b'{"seq": 1}')

        await logger_a.publish(b, b'{"seq": 7, "forged": true}', qos=1)  # acknowledged, dropped
        await logger_b.publish(b, b'{"seq": 7}', qos=1)
        assert await next_message(bridge) == (b, b'{"seq": 7}')

        # ... and it does not turn up later either: the next message is hall-a's next one
        await logger_a.publish(a, b'{"seq": 2}', qos=1)
        assert await next_message(bridge) == (a, b'{"seq": 2}')


async def test_the_bridge_can_publish_nothing(acl_broker: AclBroker) -> None:
    a = reading(LOGGERS["hall-a"])
    async with (
        acl_broker.client("homeassistant") as reader,
        acl_broker.client("bridge") as bridge,
        acl_broker.client("logger-hall-a") as logger_a,
    ):
        await reader.subscribe(f"{PREFIX}/#", qos=1)
        await bridge.publish(a, b'{"seq": 1, "forged": true}', qos=1)
        await bridge.publish(f"{PREFIX}/logger/hall-a/status", b'{"state": "offline"}', qos=1)
        await logger_a.publish(a, b'{"seq": 1}', qos=1)
        assert await next_message(reader) == (a, b'{"seq": 1}')


async def publish_codes(broker: AclBroker, user: str, topics: list[str]) -> dict[str, str]:
    """What the broker's MQTT 5 acknowledgement of a publish to each topic says."""
    codes: dict[int, int] = {}
    async with broker.client(user, v5=True) as client:
        acknowledge = client._client.on_publish

        def capture(*args: Any) -> None:  # (client, userdata, mid, reason_code, properties)
            codes[args[2]] = args[3].value
            acknowledge(*args)

        client._client.on_publish = capture
        mids = {}
        for topic in topics:
            before = set(codes)
            await client.publish(topic, b"{}", qos=1)
            (mid,) = set(codes) - before
            mids[topic] = mid
    return {topic: verdict(codes[mid]) for topic, mid in mids.items()}


def verdict(code: int) -> str:
    """0 (success) and 16 (no matching subscribers) accept; 135 refuses."""
    if code < 0x80:
        return "accepted"
    return "not authorised" if code == NOT_AUTHORIZED else f"refused ({code})"


async def test_every_topic_outside_a_users_own_is_not_authorised(acl_broker: AclBroker) -> None:
    own = [
        f"{PREFIX}/a-main/reading",
        f"{PREFIX}/a-main/status",
        f"{PREFIX}/logger/hall-a/status",
        "homeassistant/sensor/campus_energy_hall-a/a-main_power_w/config",
        "homeassistant/binary_sensor/campus_energy_hall-a/logger/config",
    ]
    others = [
        f"{PREFIX}/b-main/reading",
        f"{PREFIX}/b-main/status",
        f"{PREFIX}/logger/hall-b/status",
        "homeassistant/sensor/campus_energy_hall-b/b-main_power_w/config",
        f"{PREFIX}/unknown-meter/reading",
        f"{PREFIX}/a-main/reading/extra",
        "elsewhere/topic",
    ]
    codes = await publish_codes(acl_broker, "logger-hall-a", own + others)
    assert codes == {t: "accepted" for t in own} | {t: "not authorised" for t in others}
    codes = await publish_codes(acl_broker, "bridge", own + others)
    assert set(codes.values()) == {"not authorised"}
    codes = await publish_codes(acl_broker, "homeassistant", own[:3] + others[:3])
    assert set(codes.values()) == {"not authorised"}


def real_readings(meter: str) -> list[Reading]:
    found = []
    total = 0
    for i in range(READINGS):
        energy = 0 if i == 0 else 1_500_000  # 1.5 Wh every 5 s (1,080 W)
        total += energy
        values = {"power_w": 1080.0, "voltage_v": 230.0, "current_a": 4.7, "power_factor": 0.99}
        found.append(Reading(meter, T0 + 5000 * i, i + 1, energy, total, values))
    return found


@pytest.fixture
async def hall_b_store(acl_broker: AclBroker) -> AsyncIterator[ReadingStore]:
    config = acl_broker.config("hall-b")
    store = ReadingStore(config.storage.path)
    try:
        await store.register(
            MeterRecord(m.id, m.building, m.floor, m.profile) for m in config.meters
        )
        await store.insert_many(real_readings("b-main"))
        yield store
    finally:
        await store.close()


async def test_a_forged_reading_for_another_loggers_meter_never_reaches_the_books(
    acl_broker: AclBroker, hall_b_store: ReadingStore
) -> None:
    """The issue's attack: the next seq of a real meter, 8 s ahead of its logger, published
    before the real reading. Before the ACL bound meters to loggers the bridge took it and
    dropped the real one as a duplicate; now the broker never delivers it."""
    bridge_config = acl_broker.config("bridge")
    bridge = Bridge(bridge_config)
    real = real_readings("b-main")
    target = replace(real[30], interval_start_ms=real[29].ts_ms)
    forged = {  # plausible: 2 kW over the 13 s since the previous real reading
        **target.payload("B", ""),
        "ts": "2026-01-14T18:12:38.000Z",  # 8 s after the real one
        "power_w": 2000.0,
        "energy_wh": 7.0,
    }
    async with serving(bridge, "subscribed"):
        async with acl_broker.client("logger-hall-a") as attacker:
            await attacker.publish(reading("b-main"), json.dumps(forged).encode(), qos=1)
        drained = asyncio.Event()
        drained.set()  # publish the outbox until it is empty, then return
        logger_b = Publisher(acl_broker.config("hall-b"), hall_b_store, StatusBoard())
        await asyncio.wait_for(logger_b.run(drained), 30)
        await eventually(lambda: bridge.counters.readings >= READINGS)
    assert bridge.counters.received == READINGS  # the forged one never arrived
    docs = docs_of(bridge_config)
    assert sum(d.readings_in_batch for d in docs) == READINGS
    assert sum(d.total_energy_wh for d in docs) == pytest.approx(1.5 * (READINGS - 1), abs=1e-6)
    assert max(d.total_energy_wh for d in docs) < 100
