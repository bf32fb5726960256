"""The example production broker (deploy/mosquitto/) run for real: users, ACL, TLS, persistence.

The example files are used as they are, with only their paths, ports and the
user Mosquitto runs as changed, so what is proved here is what gets deployed.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import getpass
import ipaddress
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.support.mqtt import retained_messages
from tests.support.net import free_port
from tests.support.processes import require_program
from tests.support.services import serving
from tests.support.waiting import wait_for

from campus_energy.config import MqttConfig, parse_config
from campus_energy.core.readings import Reading
from campus_energy.demo.mosquitto import mosquitto_executable, port_open
from campus_energy.errors import BrokerError
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore
from campus_energy.runtime.mqtt import connect, subscribe

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
LOGGER_ID = "switch-room-a"  # the logger the example ACL names
PASSWORDS = {
    f"logger-{LOGGER_ID}": "logger-secret",
    "bridge": "bridge-secret",
    "homeassistant": "ha-secret",
}
NOT_AUTHORIZED = 135  # MQTT 5 reason code
CREDENTIALS_REFUSED = {4, 5, 134, 135}  # bad user name or password, not authorised


def adapt(example: str, folder: Path, plain_port: int, tls_port: int) -> str:
    """The example configuration with only its paths, ports and run-as user changed.

    Each replaced line must occur exactly once, so a changed example fails here
    instead of silently running a different configuration.
    """
    replacements = {
        "user mosquitto": f"user {getpass.getuser()}",
        "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {folder}/mosquitto.pid",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {folder}/data/",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "listener 8883": f"listener {tls_port}",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {folder}/certs/ca.crt",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {folder}/certs/server.crt",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {folder}/certs/server.key",
        "password_file /etc/mosquitto/passwd": f"password_file {folder}/passwd",
        "acl_file /etc/mosquitto/acl": f"acl_file {folder}/acl",
        "log_dest syslog": f"log_dest file {folder}/mosquitto.log",
    }
    lines = example.splitlines()
    for old, new in replacements.items():
        where = [i for i, line in enumerate(lines) if line.strip() == old]
        assert len(where) == 1, f"the example should have the line {old!r} once"
        lines[where[0]] = new
    return "\n".join(lines) + "\n"


# --- certificates: a private CA and a server certificate for localhost ------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(folder: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = folder / "server.key"
    key_file.write_bytes(_pem_key(key))
    key_file.chmod(0o600)


# --- the broker ------------------------------------------------------------------------------


@dataclass
class SecuredBroker:
    executable: str
    folder: Path
    plain_port: int
    tls_port: int
    ca_file: Path
    other_ca_file: Path  # a CA the broker's certificate does not come from
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.folder / "mosquitto.conf"
        self.process = subprocess.Popen(
            [self.executable, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self.process
        wait_for(
            lambda: (
                process.poll() is not None
                or (
                    port_open("127.0.0.1", self.plain_port)
                    and port_open("127.0.0.1", self.tls_port)
                )
            ),
            10,
            "mosquitto opens its listeners",
        )
        if process.poll() is not None:
            log = self.folder / "mosquitto.log"
            pytest.fail(f"mosquitto exited: {log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        """A clean stop: Mosquitto saves its persistence file."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def password_file(self, user: str) -> Path:
        return self.folder / "secrets" / f"{user}.password"

    def mqtt(self, user: str | None, *, tls: bool = False, ca: Path | None = None) -> MqttConfig:
        """The project's [mqtt] settings for one of the example's users."""
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": self.plain_port}
        if user is not None:
            settings |= {"username": user, "password_file": self.password_file(user)}
        if tls:
            settings |= {"port": self.tls_port, "tls_ca_file": ca or self.ca_file}
        return MqttConfig.model_validate(settings)

    def client(self, user: str, **kwargs: Any) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1", self.plain_port, username=user, password=PASSWORDS[user], **kwargs
        )


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    executable = mosquitto_executable() or require_program("mosquitto")
    passwd = require_program("mosquitto_passwd")
    folder = tmp_path / "broker"
    (folder / "data").mkdir(parents=True)
    (folder / "certs").mkdir()
    (folder / "secrets").mkdir(mode=0o700)

    ca_file, ca_key, ca_cert = make_ca(folder / "certs", "ca")
    make_server_cert(folder / "certs", ca_key, ca_cert)
    other_ca, _, _ = make_ca(tmp_path, "other-ca")

    passwords = folder / "passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([passwd, *create, "-b", str(passwords), user, password], check=True)
        secret = folder / "secrets" / f"{user}.password"
        secret.write_text(password + "\n", encoding="utf-8")
        secret.chmod(0o600)
    passwords.chmod(0o600)
    (folder / "acl").write_text((EXAMPLE / "acl").read_text("utf-8"), encoding="utf-8")

    broker = SecuredBroker(executable, folder, free_port(), free_port(), ca_file, other_ca)
    example = (EXAMPLE / "mosquitto.conf").read_text("utf-8")
    (folder / "mosquitto.conf").write_text(
        adapt(example, folder, broker.plain_port, broker.tls_port), "utf-8"
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- the proofs ------------------------------------------------------------------------------


async def test_anonymous_clients_and_wrong_passwords_are_refused(
    secured_broker: SecuredBroker,
) -> None:
    with pytest.raises(MqttConnectError) as anonymous:
        async with aiomqtt.Client("127.0.0.1", secured_broker.plain_port):
            pass
    with pytest.raises(MqttConnectError) as wrong:
        async with aiomqtt.Client(
            "127.0.0.1", secured_broker.plain_port, username="bridge", password="guess"
        ):
            pass
    for refused in (anonymous.value, wrong.value):
        # paho reports MQTT 3.1.1's CONNACK 4/5 as the MQTT 5 reason codes 134/135
        assert getattr(refused.rc, "value", refused.rc) in CREDENTIALS_REFUSED
    with pytest.raises(BrokerError) as through_the_adapter:
        async with connect(secured_broker.mqtt(None), client_id="nobody"):
            pass
    assert "secret" not in str(through_the_adapter.value)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReadingStore]:
    s = ReadingStore(tmp_path / "store.db")
    await s.register([MeterRecord("lib-f1"), MeterRecord("lib-main")])
    try:
        yield s
    finally:
        await s.close()


def readings(count: int) -> list[Reading]:
    return [
        Reading(meter, 1_764_230_400_000 + 5000 * i, i + 1, 1000, 1000 * (i + 1), {"power_w": 7.0})
        for i in range(count)
        for meter in ("lib-f1", "lib-main")
    ]


async def test_the_logger_publishes_and_the_bridge_and_home_assistant_receive(
    secured_broker: SecuredBroker, store: ReadingStore, tmp_path: Path
) -> None:
    user = f"logger-{LOGGER_ID}"
    config = parse_config(
        {
            "storage": {"path": str(tmp_path / "store.db")},
            "mqtt": secured_broker.mqtt(user).model_dump(exclude_none=True)
            | {"homeassistant_discovery": True},
            "logger": {"id": LOGGER_ID},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {"id": "lib-f1", "bus": "b", "unit": 1, "profile": "eastron-sdm120"},
                {"id": "lib-main", "bus": "b", "unit": 2, "profile": "eastron-sdm630"},
            ],
        }
    )
    backlog = readings(50)
    await store.commit(Cycle(readings=backlog))
    bridge_mqtt = secured_broker.mqtt("bridge")
    shared = "$share/bridges/campus/energy/+/reading"
    received: dict[str, list[dict[str, Any]]] = {}
    async with (
        subscribe(bridge_mqtt, client_id="bridge-shared", topics=[shared]) as first,
        subscribe(
            bridge_mqtt, client_id="bridge-plain", topics=["campus/energy/+/reading"]
        ) as second,
    ):
        publisher = Publisher(config, store, StatusBoard())
        async with serving(publisher, "drained", ready_timeout=20, stop_timeout=10):
            for name, subscription in (("shared", first), ("plain", second)):
                got = received.setdefault(name, [])
                while len(got) < len(backlog):
                    for message in await asyncio.wait_for(subscription.batch(500), 10):
                        got.append(json.loads(message.payload))
                        subscription.ack(message)
            # Home Assistant (its own user) sees the statuses and the discovery configs
            seen = await retained_messages(
                secured_broker.plain_port,
                ["campus/energy/#", "homeassistant/#"],
                "homeassistant/zz-test/end",
                username="homeassistant",
                password=PASSWORDS["homeassistant"],
            )
    assert await store.outbox_depth() == {"lib-f1": 0, "lib-main": 0}
    for got in received.values():
        assert sorted((p["meter_id"], p["seq"]) for p in got) == sorted(
            (r.meter_id, r.seq) for r in backlog
        )
    status = json.loads(seen[f"campus/energy/logger/{LOGGER_ID}/status"])
    assert status["state"] == "online"
    discovery = [t for t in seen if t.startswith("homeassistant/")]
    assert f"homeassistant/sensor/campus_energy_{LOGGER_ID}/lib-f1_power_w/config" in discovery
    # the logger, an SDM120 and an SDM630, each meter with its export energy and export register
    assert len(discovery) == 1 + 9 + 21


async def first_message(client: aiomqtt.Client) -> tuple[str, bytes]:
    async with asyncio.timeout(10):
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            return str(message.topic), payload
    raise AssertionError("no message")


async def test_each_user_reads_and_writes_only_what_the_acl_gives_it(
    secured_broker: SecuredBroker,
) -> None:
    """Mosquitto 2.0 grants every subscription and checks reads when it delivers a message,
    and drops unauthorised publishes. Messages from one client reach a subscriber in the
    order they were published, so "the next message is B" proves "A, sent before, was not
    delivered"."""
    reading = "campus/energy/lib-f1/reading"
    meter_status = "campus/energy/lib-f1/status"
    own_status = f"campus/energy/logger/{LOGGER_ID}/status"
    logger_user = f"logger-{LOGGER_ID}"

    # The bridge receives readings and nothing else of the campus.
    async with (
        secured_broker.client("bridge", identifier="bridge") as bridge,
        secured_broker.client(logger_user, identifier="logger") as logger,
    ):
        await bridge.subscribe("campus/energy/#", qos=1)
        await logger.publish(meter_status, b'{"state": "online"}', qos=1)
        await logger.publish(reading, b'{"seq": 1}', qos=1)
        assert await first_message(bridge) == (reading, b'{"seq": 1}')

    # MQTT 5: the broker answers the bridge's publish with "not authorised".
    async with secured_broker.client(
        "bridge", identifier="forger-5", protocol=aiomqtt.ProtocolVersion.V5
    ) as forger:
        codes: list[int] = []
        acknowledge = forger._client.on_publish

        def capture(*args: Any) -> None:
            codes.append(args[3].value)  # (client, userdata, mid, reason_code, properties)
            acknowledge(*args)

        forger._client.on_publish = capture
        await forger.publish(reading, b'{"forged": true}', qos=1)
    assert codes == [NOT_AUTHORIZED]

    # MQTT 3.1.1 acknowledges it like any other and drops it: a reader gets the
    # logger's next message on the topic, never the forged one before it.
    async with (
        secured_broker.client("homeassistant", identifier="reader") as reader,
        secured_broker.client("bridge", identifier="forger-311") as forger,
        secured_broker.client(logger_user, identifier="logger") as logger,
    ):
        await reader.subscribe(reading, qos=1)
        await forger.publish(reading, b'{"forged": true}', qos=1)  # acknowledged: handled
        await logger.publish(reading, b'{"genuine": true}', qos=1)
        assert await first_message(reader) == (reading, b'{"genuine": true}')

    # The logger publishes readings but may not read them back; its own status it may.
    async with secured_broker.client(logger_user, identifier="curious-logger") as logger:
        await logger.subscribe("campus/energy/#", qos=1)
        await logger.publish(reading, b'{"seq": 2}', qos=1)
        await logger.publish(own_status, b'{"state": "online"}', qos=1)
        assert await first_message(logger) == (own_status, b'{"state": "online"}')
        # ... and nothing outside its topics
        await logger.publish("campus/energy/logger/another-logger/status", b"{}", qos=1)
        await logger.publish("elsewhere/topic", b"{}", qos=1)

    # Home Assistant sees none of the logger's stray publishes (nothing was stored).
    seen = await retained_messages(
        secured_broker.plain_port,
        ["#"],
        "homeassistant/zz-test/end",
        username="homeassistant",
        password=PASSWORDS["homeassistant"],
    )
    assert seen == {}


async def test_the_tls_listener_accepts_a_client_that_trusts_the_ca(
    secured_broker: SecuredBroker,
) -> None:
    user = f"logger-{LOGGER_ID}"
    status = f"campus/energy/logger/{LOGGER_ID}/status"
    async with connect(secured_broker.mqtt(user, tls=True), client_id="tls-logger") as broker:
        await broker.publish(status, {"state": "online", "ts": "", "detail": "tls"}, retain=True)
    seen = await retained_messages(
        secured_broker.plain_port,
        ["campus/energy/#", "homeassistant/#"],
        "homeassistant/zz-test/end",
        username="homeassistant",
        password=PASSWORDS["homeassistant"],
    )
    assert json.loads(seen[status])["detail"] == "tls"


# paho-mqtt 2.2 does not close the socket of a failed TLS handshake (_ssl_wrap_socket):
# the garbage collector closes it, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_tls_listener_refuses_a_client_that_trusts_another_ca(
    secured_broker: SecuredBroker,
) -> None:
    user = f"logger-{LOGGER_ID}"
    untrusting = secured_broker.mqtt(user, tls=True, ca=secured_broker.other_ca_file)
    with pytest.raises(BrokerError) as refused:
        async with connect(untrusting, client_id="tls-untrusting"):
            pass
    message = str(refused.value)
    del refused  # its traceback holds the socket: close it here, inside this test's filter
    gc.collect()
    assert "certificate verify failed" in message


async def test_a_bridge_that_is_away_gets_every_reading_across_a_broker_restart(
    secured_broker: SecuredBroker,
) -> None:
    """More readings than Mosquitto's default queue (1,000) wait for the bridge's
    persistent session, and survive a restart of the broker in between."""
    count = 1500
    bridge = secured_broker.mqtt("bridge")
    async with subscribe(bridge, client_id="bridge-away", topics=["campus/energy/+/reading"]):
        pass  # the persistent session exists; the bridge goes away
    async with connect(secured_broker.mqtt(f"logger-{LOGGER_ID}"), client_id="logger") as logger:
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    logger.publish("campus/energy/lib-f1/reading", {"seq": seq})
                    for seq in range(start + 1, start + 101)
                )
            )
    secured_broker.stop()
    assert (secured_broker.folder / "data" / "mosquitto.db").is_file()
    secured_broker.start()
    seqs: list[int] = []
    async with subscribe(
        bridge, client_id="bridge-away", topics=["campus/energy/+/reading"]
    ) as subscription:
        while len(set(seqs)) < count:
            for message in await asyncio.wait_for(subscription.batch(500), 10):
                seqs.append(json.loads(message.payload)["seq"])
                subscription.ack(message)
    assert sorted(set(seqs)) == list(range(1, count + 1))
