"""`campus-energy demo`: the system on a simulated campus, with embedded defaults.

Runs an MQTT broker (Mosquitto when installed, otherwise the embedded amqtt
broker), the meter simulator, the logger and the bridge (SQLite sink), and
shows readings flowing: the newest reading of every meter, what was stored,
published, received over MQTT, and the windows written. Its configuration and
data live in one folder (`./demo-data/` by default), reused on the next run so
history accumulates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from campus_energy.bridge import Bridge
from campus_energy.clock import sleep_or_stop
from campus_energy.config import Config
from campus_energy.core.topics import reading_topic
from campus_energy.errors import SpoolError, StoreError
from campus_energy.logger import MeterLogger
from campus_energy.mosquitto import Mosquitto, mosquitto_executable
from campus_energy.reader import TABLE_COLUMNS, TableRow, format_table
from campus_energy.simulator.server import Simulator

DEMO_DIR = Path("demo-data")
GATEWAY_PORT = 15020
TCP_PORT = 15021
BROKER_PORT = 18830
API_PORT = 8000
DASHBOARD_PORT = 8501
log = logging.getLogger("campus_energy.demo")

# (meter id, building, floor, bus, unit, profile)
DEMO_METERS = (
    ("ece-f1-001", "ECE", "1", "gateway-north", 1, "eastron-sdm120"),
    ("ece-f2-001", "ECE", "2", "gateway-north", 2, "eastron-sdm120"),
    ("ece-main", "ECE", "G", "gateway-north", 3, "eastron-sdm630"),
    ("lib-f1-001", "Library", "1", "gateway-north", 4, "eastron-sdm230"),
    ("lib-f2-001", "Library", "2", "gateway-north", 5, "eastron-sdm230"),
    ("lib-main", "Library", "G", "gateway-north", 6, "eastron-sdm72d"),
    ("hostel-a-001", "Hostel", "A", "plant-tcp", 1, "eastron-sdm120"),
    ("hostel-b-001", "Hostel", "B", "plant-tcp", 2, "eastron-sdm120"),
    ("hostel-main", "Hostel", "G", "plant-tcp", 3, "eastron-sdm630"),
    ("admin-f1-001", "Admin", "1", "plant-tcp", 4, "eastron-sdm120"),
    ("admin-legacy", "Admin", "G", "plant-tcp", 5, "campus-legacy"),
    ("admin-main", "Admin", "G", "plant-tcp", 6, "eastron-sdm72d"),
)
DEMO_COLUMNS = (*TABLE_COLUMNS[:3], ("energy_total_wh", "logged kWh", 1000), TABLE_COLUMNS[5])


@dataclass(frozen=True)
class DemoMode:
    """How fast the demo runs. Production uses 5 s polls and 300 s windows; the demo's windows
    are shorter so the web dashboard has data within its first minute."""

    folder: str  # under the demo folder: "" for the normal demo
    interval_s: float
    window_s: int
    grace_s: int
    refresh_s: int  # the web dashboard's auto-refresh


NORMAL = DemoMode("", interval_s=5.0, window_s=30, grace_s=5, refresh_s=10)
FAST = DemoMode("fast", interval_s=1.0, window_s=10, grace_s=2, refresh_s=5)


def demo_config_text(mode: DemoMode = NORMAL) -> str:
    """The demo's configuration file: 12 meters, 4 buildings, an RS-485 gateway and a TCP bus."""
    lines = [
        "# The Campus Energy demo: simulated meters on this machine.",
        "# Written by `campus-energy demo`; edit it freely, it is reused on the next run.",
        "",
        "[site]",
        'name = "Demo Campus"',
        'timezone = "Asia/Kolkata"',
        "",
        "[storage]",
        'path = "smart_meter.db"',
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {BROKER_PORT}",
        "",
        "[logger]",
        'id = "demo"',
        "",
        "[bridge]",
        f"window_s = {mode.window_s}                        # production: 300",
        f"grace_s = {mode.grace_s}",
        'spool_path = "bridge-spool.db"',
        'client_id = "campus-energy-demo-bridge"',
        'sink = "sqlite"',
        "",
        "[bridge.sqlite]",
        'path = "windows.db"',
        "",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {API_PORT}",
        "workers = 1",
        "cache_s = 2",
        f"refresh_s = {mode.refresh_s}",
        "",
        "[dashboard]",
        'host = "127.0.0.1"',
        f"port = {DASHBOARD_PORT}",
        "",
        "[[buses]]",
        'name = "gateway-north"',
        'transport = "rtu-tcp"',
        'host = "127.0.0.1"',
        f"port = {GATEWAY_PORT}",
        "baudrate = 9600",
        "timeout_s = 0.5",
        "",
        "[[buses]]",
        'name = "plant-tcp"',
        'transport = "tcp"',
        'host = "127.0.0.1"',
        f"port = {TCP_PORT}",
        "timeout_s = 0.5",
    ]
    for meter_id, building, floor, bus, unit, profile in DEMO_METERS:
        lines += [
            "",
            "[[meters]]",
            f'id = "{meter_id}"',
            f'bus = "{bus}"',
            f"unit = {unit}",
            f'profile = "{profile}"',
            f'building = "{building}"',
            f'floor = "{floor}"',
            f"interval_s = {mode.interval_s:g}",
        ]
        if meter_id == "admin-legacy":
            lines += ["", "[meters.simulate]", "timeout_rate = 0.02   # a little unreliability"]
    return "\n".join(lines) + "\n"


def prepare(folder: Path, mode: DemoMode = NORMAL) -> Path:
    """The demo's config file, written on the first run (the fast demo keeps its own folder)."""
    home = folder / mode.folder
    home.mkdir(parents=True, exist_ok=True)
    path = home / "campus-energy.toml"
    if not path.exists():
        path.write_text(demo_config_text(mode), encoding="utf-8")
    return path


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
    """Counts the readings that arrive over MQTT: proof that they flow through the broker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.received = 0
        self.last: dict[str, int] = {}

    async def run(self) -> None:
        topic = reading_topic(self.config.mqtt.topic_prefix, "+")
        while True:
            try:
                async with aiomqtt.Client(
                    self.config.mqtt.host, self.config.mqtt.port, identifier="campus-energy-demo"
                ) as client:
                    await client.subscribe(topic, qos=1)
                    async for message in client.messages:
                        body = json.loads(bytes(message.payload))
                        self.received += 1
                        self.last[body["meter_id"]] = body["seq"]
            except aiomqtt.MqttError:
                await asyncio.sleep(1)


class ServiceProcess:
    """A service of the demo run as its own process (as systemd would run it), in its own
    session so a Ctrl-C reaches the demo alone, which then stops it in order."""

    def __init__(self, name: str, command: Sequence[str], health_url: str, log_file: Path) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
                return False
            if await asyncio.to_thread(self.healthy):
                return True
            await asyncio.sleep(0.25)
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


def service_processes(config: Config, folder: Path, with_dashboard: bool) -> list[ServiceProcess]:
    """The API (Gunicorn) and, when asked for, the Streamlit dashboard, on the demo's config."""
    assert config.source is not None
    base = [sys.executable, "-m", "campus_energy"]
    logs = folder / "logs"
    found = [
        ServiceProcess(
            "web dashboard and API",
            [*base, "api", "-c", str(config.source)],
            f"http://{config.api.host}:{config.api.port}/api/health",
            logs / "api.log",
        )
    ]
    if with_dashboard:
        found.append(
            ServiceProcess(
                "Streamlit dashboard",
                [*base, "dashboard", "-c", str(config.source)],
                f"http://{config.dashboard.host}:{config.dashboard.port}/_stcore/health",
                logs / "dashboard.log",
            )
        )
    return found


def urls(config: Config, with_dashboard: bool) -> list[str]:
    lines = [f"web dashboard      http://{config.api.host}:{config.api.port}/"]
    lines.append(f"API                http://{config.api.host}:{config.api.port}/api/summary")
    if with_dashboard:
        lines.append(f"Streamlit (local)  http://{config.dashboard.host}:{config.dashboard.port}/")
    return lines


@dataclass
class Books:
    """What the status line shows besides the services' own counters."""

    outbox: int = 0
    spool: int = 0


async def books(logger: MeterLogger, bridge: Bridge) -> Books:
    try:
        outbox = sum((await logger.store.outbox_depth()).values())
        return Books(outbox, await bridge.spool.pending())
    except (StoreError, SpoolError):  # a busy file never stops the status line
        return Books()


def status_line(logger: MeterLogger, bridge: Bridge, receiver: Receiver, found: Books) -> str:
    """One compact line: readings, windows, outbox, errors."""
    c, b = logger.counters, bridge.counters
    errors = c.failed_polls + c.rejected + c.store_failures + sum(b.dead_letters.values())
    return (
        f"readings stored {c.readings} · published {logger.publisher.published} · "
        f"received over MQTT {receiver.received} · bridge: readings {b.readings} · "
        f"windows {b.window_writes} · outbox {found.outbox} · spool {found.spool} · "
        f"errors {errors} (failed polls {c.failed_polls}, rejected {c.rejected}, "
        f"dead letters {sum(b.dead_letters.values())})"
    )


def screen(
    config: Config,
    logger: MeterLogger,
    head: Sequence[str],
    status: str,
) -> str:
    rows = []
    for meter in config.meters:
        latest = logger.latest.get(meter.id)
        state = logger.statuses.current.get(meter.id)
        values: dict[str, float | None] = {}
        if latest is not None:
            values = {**latest.values, "energy_total_wh": latest.energy_total_wh}
        note = ""
        if state is not None and state.state != "online":
            note = f"{state.state}: {state.detail}"
        rows.append(TableRow(meter.id, values, note))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return "\n".join(
        [
            f"Campus Energy demo — {config.site.name} — {stamp}",
            *head,
            "",
            format_table(rows, config, DEMO_COLUMNS),
            "",
            status,
        ]
    )


async def run_demo(
    config: Config,
    folder: Path,
    stop: asyncio.Event,
    *,
    rounds: int | None = None,
    broker_kind: str = "auto",
    with_dashboard: bool = False,
) -> None:
    """The simulated campus, the broker, the logger, the bridge and the dashboards, until `stop`."""
    interval = max(1.0, min((m.interval_s for m in config.meters), default=5.0))
    interactive = sys.stdout.isatty()
    children = service_processes(config, folder, with_dashboard)
    async with demo_broker(config, folder, broker_kind) as broker, Simulator(config):
        services_stop = asyncio.Event()
        bridge = Bridge(config)
        bridging = asyncio.create_task(bridge.run(services_stop))
        await asyncio.wait_for(bridge.subscribed.wait(), 15)  # its session exists before data flows
        logger = MeterLogger(config)
        logging_task = asyncio.create_task(logger.run(services_stop))
        receiver = Receiver(config)
        receiving = asyncio.create_task(receiver.run())
        try:
            for child in children:
                child.start()
            for child in children:
                if not await child.wait_healthy(60):
                    print(f"{child.name} did not start: see {child.log_file}", flush=True)
            head = [
                f"broker: {broker}; store: {config.storage.path}",
                f"{config.bridge.window_s} s windows, written {config.bridge.grace_s:g} s after "
                f"they end, into {config.bridge.sqlite.path}",
                *urls(config, with_dashboard),
            ]
            print("\n".join(head), flush=True)
            shown = 0
            while rounds is None or shown < rounds:
                if await sleep_or_stop(interval, stop):
                    break
                status = status_line(logger, bridge, receiver, await books(logger, bridge))
                text = screen(config, logger, head, status)
                if interactive:
                    text = "\033[H\033[2J" + text + "\n\nCtrl-C to stop."
                print(text, flush=True)
                shown += 1
        finally:
            for child in reversed(children):
                await asyncio.to_thread(child.stop)
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            services_stop.set()
            await logging_task
            await bridging
