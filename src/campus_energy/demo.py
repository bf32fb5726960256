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
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from campus_energy.bridge import Bridge
from campus_energy.clock import sleep_or_stop
from campus_energy.config import Config
from campus_energy.core.topics import reading_topic
from campus_energy.logger import MeterLogger
from campus_energy.mosquitto import Mosquitto, mosquitto_executable
from campus_energy.reader import TABLE_COLUMNS, TableRow, format_table
from campus_energy.simulator.server import Simulator

DEMO_DIR = Path("demo-data")
GATEWAY_PORT = 15020
TCP_PORT = 15021
BROKER_PORT = 18830
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


def demo_config_text(interval_s: float = 5.0) -> str:
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
        "window_s = 300",
        "grace_s = 30",
        'spool_path = "bridge-spool.db"',
        'client_id = "campus-energy-demo-bridge"',
        'sink = "sqlite"',
        "",
        "[bridge.sqlite]",
        'path = "windows.db"',
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
            f"interval_s = {interval_s:g}",
        ]
        if meter_id == "admin-legacy":
            lines += ["", "[meters.simulate]", "timeout_rate = 0.02   # a little unreliability"]
    return "\n".join(lines) + "\n"


def prepare(folder: Path) -> Path:
    """The demo's config file, written on the first run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "campus-energy.toml"
    if not path.exists():
        path.write_text(demo_config_text(), encoding="utf-8")
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


def screen(
    config: Config, logger: MeterLogger, bridge: Bridge, receiver: Receiver, broker: str
) -> str:
    rows = []
    for meter in config.meters:
        latest = logger.latest.get(meter.id)
        status = logger.statuses.current.get(meter.id)
        values: dict[str, float | None] = {}
        if latest is not None:
            values = {**latest.values, "energy_total_wh": latest.energy_total_wh}
        note = ""
        if status is not None and status.state != "online":
            note = f"{status.state}: {status.detail}"
        rows.append(TableRow(meter.id, values, note))
    c = logger.counters
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return "\n".join(
        [
            f"Campus Energy demo — {config.site.name} — {stamp}",
            f"broker: {broker}; store: {config.storage.path}",
            "",
            format_table(rows, config, DEMO_COLUMNS),
            "",
            f"readings stored {c.readings} · published {logger.publisher.published} · "
            f"received over MQTT {receiver.received} · failed polls {c.failed_polls} · "
            f"rejected {c.rejected} · gaps {c.gaps}",
            f"bridge: readings {bridge.counters.readings} · windows written "
            f"{bridge.counters.window_writes} to {config.bridge.sqlite.path.name} "
            f"({config.bridge.window_s} s windows, written {config.bridge.grace_s:g} s after "
            "they end)",
        ]
    )


async def run_demo(
    config: Config,
    folder: Path,
    stop: asyncio.Event,
    *,
    rounds: int | None = None,
    broker_kind: str = "auto",
) -> None:
    """The simulated campus, the broker and the logger, with a live view, until `stop`."""
    interval = min((m.interval_s for m in config.meters), default=5.0)
    interactive = sys.stdout.isatty()
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
            shown = 0
            while rounds is None or shown < rounds:
                if await sleep_or_stop(interval, stop):
                    break
                text = screen(config, logger, bridge, receiver, broker)
                if interactive:
                    text = "\033[H\033[2J" + text + "\n\nCtrl-C to stop."
                print(text, flush=True)
                shown += 1
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            services_stop.set()
            await logging_task
            await bridging
