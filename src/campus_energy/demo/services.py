"""The demo's services: its MQTT broker, a receiver counting what flows, and child processes.

Every port the demo listens on — the broker's, the simulated buses', the web
dashboard's — is checked before it starts: one that another program holds (a
second demo, say) is replaced by a free one, and the demo says so. Sharing the
other's broker would mix both demos' sessions (same client ids): each one would
lose readings from its windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from campus_energy.config import Config
from campus_energy.core.topics import reading_topic
from campus_energy.demo.mosquitto import Mosquitto, mosquitto_executable

log = logging.getLogger("campus_energy.demo")


@contextlib.asynccontextmanager
async def demo_broker(config: Config, folder: Path, kind: str = "auto") -> AsyncIterator[str]:
    """Mosquitto (`auto` when it is installed), else the embedded amqtt broker; yields its name."""
    port = config.mqtt.port
    if kind == "mosquitto" or (kind == "auto" and mosquitto_executable() is not None):
        broker = Mosquitto(folder / "mosquitto", port)
        await asyncio.to_thread(broker.start)
        try:
            yield f"Mosquitto on 127.0.0.1:{port}"
        finally:
            await asyncio.to_thread(broker.stop)
        return
    from amqtt.broker import Broker

    embedded = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await embedded.start()
    try:
        yield f"embedded amqtt broker on 127.0.0.1:{port} (install mosquitto for production)"
    finally:
        await embedded.shutdown()


class Receiver:
    """Counts the readings that arrive over MQTT: proof that they flow through the broker.

    A message that is no reading (not JSON, not an object with `meter_id` and an integer
    `seq`) is counted in `malformed`, and the receiver goes on."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.received = 0
        self.malformed = 0
        self.last: dict[str, int] = {}

    def take(self, payload: object) -> None:
        """Count one message's payload."""
        try:
            if not isinstance(payload, str | bytes | bytearray):
                raise TypeError("no payload")
            body = json.loads(payload)
            meter_id, seq = body["meter_id"], body["seq"]
        except (ValueError, TypeError, KeyError):  # JSONDecodeError is a ValueError
            self.malformed += 1
            return
        if not isinstance(meter_id, str) or not isinstance(seq, int):
            self.malformed += 1
            return
        self.received += 1
        self.last[meter_id] = seq

    async def run(self) -> None:
        topics = [reading_topic(root, "+") for root in self.config.topic_roots()]
        while True:
            try:
                async with aiomqtt.Client(
                    self.config.mqtt.host, self.config.mqtt.port, identifier="campus-energy-demo"
                ) as client:
                    for topic in topics:
                        await client.subscribe(topic, qos=1)
                    async for message in client.messages:
                        self.take(message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(1)


class ServiceProcess:
    """A service of the demo run as its own process (as systemd would run it), in its own
    session so a Ctrl-C reaches the demo alone, which then stops it in order."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        health_url: str,
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        self.log_file = log_file
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.state = "starting"  # then "ready" or "failed"

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
            )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return int(response.status) < 500
        except (OSError, ValueError):
            return False

    async def wait_healthy(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                self.state = "failed"
                return False
            if await asyncio.to_thread(self.healthy):
                self.state = "ready"
                return True
            await asyncio.sleep(0.25)
        self.state = "failed"
        return False

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %g s: killed", self.name, timeout_s)
            self.process.kill()
            self.process.wait()


def service_processes(
    config: Config, folder: Path, with_dashboard: bool, env: Mapping[str, str] | None = None
) -> list[ServiceProcess]:
    """The API (Gunicorn) and, when asked for, the Streamlit dashboard, on the demo's config
    (`env`: their environment, which carries the ports the demo chose)."""
    assert config.source is not None
    base = [sys.executable, "-m", "campus_energy"]
    logs = folder / "logs"
    found = [
        ServiceProcess(
            "web dashboard and API",
            [*base, "api", "-c", str(config.source)],
            f"http://{config.api.host}:{config.api.port}/api/health",
            logs / "api.log",
            env,
        )
    ]
    if with_dashboard:
        found.append(
            ServiceProcess(
                "Streamlit dashboard",
                [*base, "dashboard", "-c", str(config.source)],
                f"http://{config.dashboard.host}:{config.dashboard.port}/_stcore/health",
                logs / "dashboard.log",
                env,
            )
        )
    return found


def urls(config: Config, with_dashboard: bool) -> list[str]:
    lines = [f"web dashboard      http://{config.api.host}:{config.api.port}/"]
    lines.append(f"API                http://{config.api.host}:{config.api.port}/api/summary")
    if with_dashboard:
        lines.append(f"Streamlit (local)  http://{config.dashboard.host}:{config.dashboard.port}/")
    return lines


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as Gunicorn does: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def any_free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


BROKER_HOST = "127.0.0.1"  # where the demo's broker listens, whatever mqtt.host says


def own_listeners(config: Config) -> tuple[Config, tuple[str, ...]]:
    """The broker's and the simulated buses' ports: as configured, or any free port when another
    program holds one (its notes say so). The logger and the bridge run in the demo's own
    process, so the changed configuration reaches them."""
    notes: list[str] = []

    def free(host: str, port: int, what: str) -> int:
        if port_free(host, port):
            return port
        chosen = any_free_port(host)
        notes.append(
            f"port {port} on {host} is taken by another program: {what} listens on port "
            f"{chosen} instead"
        )
        return chosen

    mqtt = config.mqtt.model_copy(
        update={"port": free(BROKER_HOST, config.mqtt.port, "the MQTT broker")}
    )
    buses = tuple(
        bus
        if bus.transport == "rtu" or bus.host is None
        else bus.model_copy(
            update={"port": free(bus.host, bus.port, f"the simulated bus {bus.name!r}")}
        )
        for bus in config.buses
    )
    return config.model_copy(update={"mqtt": mqtt, "buses": buses}), tuple(notes)


@dataclass(frozen=True)
class Ports:
    """The ports the demo's web services listen on, and what to tell about them."""

    config: Config
    env: dict[str, str]  # for the services' processes: CAMPUS_ENERGY__… overrides
    notes: tuple[str, ...]


def choose_ports(
    config: Config,
    api_port: int | None = None,
    dashboard_port: int | None = None,
    *,
    with_dashboard: bool = False,
) -> Ports:
    """The API's and the dashboard's ports: as asked (else as configured), or any free port
    when that one is taken, saying so."""
    env: dict[str, str] = {}
    notes: list[str] = []
    api, dashboard = config.api, config.dashboard
    wanted = [("web dashboard and API", "API", api.host, api_port or api.port)]
    if with_dashboard:
        wanted.append(
            ("Streamlit dashboard", "DASHBOARD", dashboard.host, dashboard_port or dashboard.port)
        )
    chosen: dict[str, int] = {}
    for name, section, host, port in wanted:
        if not port_free(host, port):
            taken = port
            port = any_free_port(host)
            notes.append(
                f"port {taken} on {host} is taken by another program: "
                f"the {name} listens on port {port} instead"
            )
        chosen[section] = port
        env[f"CAMPUS_ENERGY__{section}__PORT"] = str(port)
    api = api.model_copy(update={"port": chosen["API"]})
    if "DASHBOARD" in chosen:
        dashboard = dashboard.model_copy(update={"port": chosen["DASHBOARD"]})
    updated = config.model_copy(update={"api": api, "dashboard": dashboard})
    return Ports(updated, env, tuple(notes))
