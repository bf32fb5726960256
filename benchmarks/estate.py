"""An estate run as its own processes, as production runs it, from one configuration file.

One `campus-energy simulate` process serves every meter (a Modbus TCP gateway per bus,
`Shape.units_per_bus` units each), a `campus-energy logger` per site polls its site's meters
(`logger.site`), one Mosquitto carries the readings, `Shape.bridges` `campus-energy bridge`
processes share the subscription (`bridge.shared_group`) and write one window store. What
differs between two loggers or two bridges comes from `CAMPUS_ENERGY__*` variables, as a
systemd `EnvironmentFile=` would give it: a logger's site, id, store and metrics port, a
bridge's client id, spool and metrics port.

The window stores: `postgres_store()` (a schema of its own, dropped after; the bridges'
connections carry an application name, so their server processes can be found and measured)
and `firestore_store()` (the tests' emulator, run by `firestore_counting.js`, which logs every
document write). Every process is its own process group: `Estate.close()` (and a failed start)
kills whatever is still running.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from campus_energy.core.topics import reading_topic, site_root
from campus_energy.demo.mosquitto import MESSAGE_SIZE_LIMIT, listens, mosquitto_executable
from measure import free_port

POSTGRES_DSN = os.environ.get(
    "CAMPUS_ENERGY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
APPLICATION = "campus-energy-scale"  # the bridges' application_name in PostgreSQL
PREFIX = "campus/energy"
PROFILE = "eastron-sdm120"
HERE = Path(__file__).resolve().parent
EMULATOR_DIR = harness.REPO / "tests" / "firestore_emulator"  # as tests/support/emulator.py


@dataclass(frozen=True)
class Shape:
    """How big an estate is and how it is run."""

    meters: int
    sites: int = 10
    units_per_bus: int = 100  # one Modbus TCP gateway per bus
    interval_s: float = 5.0
    window_s: int = 300
    grace_s: float = 60.0
    bridges: int = 2
    split: str = "shared"  # bridges share the subscription, or "sites": each takes its sites

    def __post_init__(self) -> None:
        if self.buses < self.sites:
            raise ValueError(f"{self.sites} sites need at least as many gateways: {self.buses}")
        if self.split == "sites" and self.sites % self.bridges:
            raise ValueError(f"{self.sites} sites do not split evenly over {self.bridges} bridges")

    @property
    def buses(self) -> int:
        return -(-self.meters // self.units_per_bus)

    @property
    def offered_per_s(self) -> float:
        """Readings a second the meters offer (one per meter per interval)."""
        return self.meters / self.interval_s

    def site_id(self, k: int) -> str:
        return f"site-{k:02d}"

    def site_of_bus(self, bus: int) -> int:
        """Buses are dealt to the sites in turn, so that each site has whole gateways."""
        return bus % self.sites

    def reading_filter(self, k: int) -> str:
        """The reading topics of site `k` (the first is the default site: no site level)."""
        return reading_topic(site_root(PREFIX, self.site_id(k) if k else None), "+")

    def filters_of(self, bridge: int) -> list[str]:
        """With `split` "sites": the reading topics bridge `bridge` subscribes to."""
        per = self.sites // self.bridges
        return [self.reading_filter(k) for k in range(bridge * per, (bridge + 1) * per)]

    def label(self) -> str:
        bridges = f"{self.bridges} bridge{'s' if self.bridges > 1 else ''}"
        if self.bridges > 1:
            bridges += " split by site" if self.split == "sites" else " sharing a subscription"
        return (
            f"{self.meters:,} meters, {self.sites} sites, {self.buses} gateways, "
            f"{self.interval_s:g} s, {self.window_s} s windows, {bridges}"
        )


def estate_data(
    shape: Shape, broker_port: int, bus_ports: list[int], store: dict[str, Any]
) -> dict[str, Any]:
    """The estate's configuration, as data: every site, gateway and meter, the bridges' store."""
    buses = [
        {
            "name": f"gw-{b:03d}",
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": port,
            "simulate": {"absent_units": "gateway-exception"},
        }
        for b, port in enumerate(bus_ports)
    ]
    meters = []
    for n in range(shape.meters):
        bus, unit = divmod(n, shape.units_per_bus)
        site = shape.site_of_bus(bus)
        meters.append(
            {
                "id": f"m{n:05d}",
                "bus": f"gw-{bus:03d}",
                "unit": unit + 1,
                "profile": PROFILE,
                "building": f"S{site:02d}-B{bus:03d}-{unit // 25}",  # 25 meters a building
                "floor": str(unit % 5),
                "interval_s": shape.interval_s,
                "site": shape.site_id(site),
            }
        )
    bridge: dict[str, Any] = {"window_s": shape.window_s, "grace_s": shape.grace_s, **store}
    if shape.bridges > 1 and shape.split == "sites":
        bridge["topic_filters"] = shape.filters_of(0)  # the others' are overridden (Estate)
    elif shape.bridges > 1:
        bridge["shared_group"] = "scale"
    return {
        "site": {"id": shape.site_id(0), "name": "Site 0", "timezone": "UTC"},
        "sites": [{"id": shape.site_id(k), "name": f"Site {k}"} for k in range(1, shape.sites)],
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_prefix": PREFIX},
        "bridge": bridge,
        "buses": buses,
        "meters": meters,
    }


# -- the window stores -------------------------------------------------------------------------


@dataclass
class Store:
    """A window store for the bridges: its `[bridge]` settings, the environment they need."""

    kind: str  # "postgres" | "firestore"
    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    schema: str = ""
    write_log: Path | None = None  # the emulator's log of document writes
    emulator: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        if self.kind == "postgres":
            return f"PostgreSQL (schema {self.schema})"
        layout = self.settings["firestore"]["layout"]
        return f"Firestore emulator, layout {layout}"


@contextlib.contextmanager
def postgres_store() -> Iterator[Store]:
    """A schema of its own on the local PostgreSQL, dropped after."""
    import psycopg

    schema = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_DSN, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{POSTGRES_DSN}{'&' if '?' in POSTGRES_DSN else '?'}application_name={APPLICATION}"
    try:
        yield Store(
            "postgres", {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}, {}, schema
        )
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextlib.contextmanager
def firestore_store(folder: Path, layout: str = "per-window") -> Iterator[Store]:
    """The tests' Firestore emulator on a free port, logging every document write.

    Raises `harness.EmulatorError` when node or the emulator is missing, or it does not start.
    """
    import select
    import shutil

    node = shutil.which("node")
    if node is None or not (EMULATOR_DIR / "node_modules" / "@firestore-emulator").is_dir():
        raise harness.EmulatorError("the Firestore emulator needs node and `make install`")
    port = free_port()
    log = folder / "firestore-writes.tsv"
    process = subprocess.Popen(
        [node, str(HERE / "firestore_counting.js"), str(EMULATOR_DIR), str(port), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready"):
            raise harness.EmulatorError(f"the Firestore emulator did not start: {line!r}")
        host = f"127.0.0.1:{port}"
        settings = {
            "sink": "firestore",
            "firestore": {"project": "scale-bench", "layout": layout},
        }
        yield Store("firestore", settings, {"FIRESTORE_EMULATOR_HOST": host}, "", log, process)
    finally:
        terminate(process)
        end_group(process, timeout_s=10)
        if process.stdout is not None:
            process.stdout.close()


# -- the broker --------------------------------------------------------------------------------


class Broker:
    """Mosquitto as deploy/mosquitto/mosquitto.conf sets it (saved every 60 s, in-flight 500
    per client), queues sized generously (docs/deployment.md), `$SYS` every `sys_interval_s`."""

    def __init__(self, folder: Path, sys_interval_s: int = 2) -> None:
        self.folder = folder
        self.port = free_port()
        self.sys_interval_s = sys_interval_s
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = mosquitto_executable()
        if executable is None:
            raise RuntimeError("mosquitto is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",
                    "persistence true",
                    f"persistence_location {self.folder}/",
                    "autosave_interval 60",
                    "autosave_on_changes false",
                    "max_queued_messages 2000000",
                    "max_queued_bytes 0",
                    "max_inflight_messages 1000",
                    "queue_qos0_messages false",
                    f"message_size_limit {MESSAGE_SIZE_LIMIT}",
                    f"sys_interval {self.sys_interval_s}",
                    f"log_dest file {self.folder / 'mosquitto.log'}",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [executable, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not listens(self.process.pid, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            end_group(self.process, timeout_s=15)


# -- ports -------------------------------------------------------------------------------------

LISTEN_PORTS = (20000, 32000)  # below Linux's ephemeral range (32768-60999): no client's port


def listen_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on, below the ephemeral range, so that
    no outgoing connection (ours or another program's) holds one when a gateway binds it."""
    rng = random.Random()
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", rng.randrange(*LISTEN_PORTS)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


# -- processes ---------------------------------------------------------------------------------


def terminate(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process's group (once: a service that has stopped listening for signals
    while it shuts down would die of a second one)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


def end_group(process: subprocess.Popen[Any], timeout_s: float = 20.0) -> int | None:
    """Wait `timeout_s` for a process told to stop, then SIGKILL its group; its exit status.
    Whatever else it left running in its group is killed too."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


@dataclass
class Service:
    """One process of the estate."""

    role: str  # simulator | logger | bridge
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None
    store: Path | None = None  # a logger's SQLite store
    spool: Path | None = None  # a bridge's spool

    @property
    def pid(self) -> int:
        return self.process.pid


class Estate:
    """Every process of an estate of `shape`, started from one configuration file."""

    def __init__(self, shape: Shape, folder: Path, store: Store) -> None:
        self.shape = shape
        self.folder = folder
        self.store = store
        folder.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(folder / "mosquitto")
        self.bus_ports = listen_ports(shape.buses)
        self.config_file = folder / "estate.toml"
        self.services: list[Service] = []
        self.started_at = 0.0

    def of(self, role: str) -> list[Service]:
        return [s for s in self.services if s.role == role]

    def _spawn(self, role: str, name: str, command: str, env: dict[str, str]) -> Service:
        log = self.folder / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "campus_energy", command, "-c", str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.store.env, **env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        service = Service(role, name, process, log)
        self.services.append(service)
        return service

    def start(self) -> None:
        """Broker, then simulator and bridges, then the loggers; returns once each serves."""
        from tests.support.config import toml_text  # the repository's root: on sys.path by harness

        try:
            self.broker.start()
            simulator = self._simulate(toml_text)
            for k in range(self.shape.bridges):
                port = free_port()
                env = {
                    "CAMPUS_ENERGY__BRIDGE__CLIENT_ID": f"scale-bridge-{k}",
                    "CAMPUS_ENERGY__BRIDGE__SPOOL_PATH": str(self.folder / f"spool-{k}.db"),
                    "CAMPUS_ENERGY__BRIDGE__METRICS_PORT": str(port),
                }
                if self.shape.bridges > 1 and self.shape.split == "sites":
                    for i, topic in enumerate(self.shape.filters_of(k)):
                        env[f"CAMPUS_ENERGY__BRIDGE__TOPIC_FILTERS__{i}"] = topic
                bridge = self._spawn("bridge", f"bridge-{k}", "bridge", env)
                bridge.metrics_port, bridge.spool = port, self.folder / f"spool-{k}.db"
            for attempt in range(3):  # another program may take a gateway's port meanwhile
                try:
                    ready = simulator.log
                    wait_for(lambda log=ready: "simulator ready" in read(log), 600, simulator)
                    break
                except RuntimeError:
                    if attempt == 2 or "cannot serve on" not in read(simulator.log):
                        raise
                self.services.remove(simulator)
                self.bus_ports = listen_ports(self.shape.buses)
                simulator = self._simulate(toml_text, f"simulator-{attempt + 1}")
            for bridge in self.of("bridge"):  # subscribed before the first reading is published
                wait_for(lambda b=bridge: subscribed(b), 60, bridge)
            for k in range(self.shape.sites):
                site = self.shape.site_id(k)
                port = free_port()
                logger = self._spawn(
                    "logger",
                    f"logger-{site}",
                    "logger",
                    {
                        "CAMPUS_ENERGY__LOGGER__SITE": site,
                        "CAMPUS_ENERGY__LOGGER__ID": f"logger-{site}",
                        "CAMPUS_ENERGY__STORAGE__PATH": str(self.folder / f"store-{site}.db"),
                        "CAMPUS_ENERGY__LOGGER__METRICS_PORT": str(port),
                    },
                )
                logger.metrics_port, logger.store = port, self.folder / f"store-{site}.db"
            for logger in self.of("logger"):
                wait_for(lambda s=logger: answers(s), 120, logger)
            self.started_at = time.time()
        except BaseException:
            self.close()
            raise

    def _simulate(self, toml_text: Any, name: str = "simulator") -> Service:
        """The configuration file written with the gateways' ports, and the simulator of it."""
        data = estate_data(self.shape, self.broker.port, self.bus_ports, self.store.settings)
        self.config_file.write_text(toml_text(data), encoding="utf-8")
        return self._spawn("simulator", name, "simulate", {})

    def stop(self, role: str, timeout_s: float = 60.0) -> list[int | None]:
        """SIGTERM to every process of `role`, at once; their exit statuses."""
        services = self.of(role)
        for s in services:
            if s.process.returncode is None:
                terminate(s.process)
        return [end_group(s.process, timeout_s) for s in services]

    def close(self) -> None:
        """Whatever still runs: loggers, bridges, simulator, then the broker."""
        for role in ("logger", "bridge", "simulator"):
            self.stop(role, timeout_s=20)
        self.broker.stop()

    def pids(self) -> dict[int, str]:
        found = {s.pid: s.role for s in self.services if s.process.poll() is None}
        if self.broker.process is not None and self.broker.process.poll() is None:
            found[self.broker.process.pid] = "broker"
        if self.store.emulator is not None and self.store.emulator.poll() is None:
            found[self.store.emulator.pid] = "emulator"
        return found


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def wait_for(ready: Any, timeout_s: float, service: Service) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if service.process.poll() is not None:
            tail = read(service.log)[-2000:]
            raise RuntimeError(f"{service.name} exited ({service.process.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready after {timeout_s:g} s")
        time.sleep(0.2)


def answers(service: Service) -> bool:
    from probes import scrape

    assert service.metrics_port is not None
    return scrape(service.metrics_port) is not None


def subscribed(service: Service) -> bool:
    from probes import scrape, total

    assert service.metrics_port is not None
    found = scrape(service.metrics_port)
    return found is not None and total(found, "campus_energy_bridge_broker_connected") == 1
