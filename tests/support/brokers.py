"""MQTT brokers other than Mosquitto, each a process of the test's own on free ports.

- `RabbitMq`: a RabbitMQ node of its own (`<unique>@localhost`) with the `rabbitmq_mqtt`
  plugin, its Mnesia, logs, configuration and Erlang cookie in its folder; management
  off. It shares the machine's epmd (as every Erlang node does) and nothing else: the
  system's node on 5672 is neither touched nor restarted.
- `NatsServer`: `nats-server` with JetStream (its store in the folder) and an `mqtt` block.
- `MosquittoBroker`: Mosquitto with the persistence of production (deploy/mosquitto:
  `autosave_interval 60`, no saving on changes), for the probes that restart a broker; the
  fault scenarios keep the demo's Mosquitto of `tests/conftest.py`.

Each has `port` (its MQTT listener), `start()`, `stop()` (clean: SIGTERM and the wait
for its exit, so it saves what it saves on the way out), `kill()` (SIGKILL of its
process group) and `log_text()`. The state in the folder outlives a stop or a kill, so
`start()` again is a restart. `running_broker(kind, folder)` is the context manager a
fixture uses; a missing program skips the test, except under CI where it fails it.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil
from tests.support.net import free_port
from tests.support.processes import unavailable

from campus_energy.demo.mosquitto import listens, mosquitto_executable

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the script without the su wrapper
RABBITMQ_SEARCH = (RABBITMQ_SERVER, "/usr/lib/rabbitmq/sbin/rabbitmq-server")
NATS_SEARCH = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")
BATCH_INFLIGHT = 500  # the bridge's batch (bridge.service.BATCH): the in-flight window it wants

_names = itertools.count()


class BrokerProcess(Protocol):
    """What a test does with a broker, whichever it is."""

    name: str
    port: int

    @property
    def pid(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def log_text(self) -> str: ...


def _found(name: str, search: tuple[str, ...]) -> str | None:
    return shutil.which(name) or next((p for p in search if Path(p).is_file()), None)


def rabbitmq_executable() -> str | None:
    """The rabbitmq-server start script that runs the node itself (not the `su` wrapper)."""
    return next((p for p in RABBITMQ_SEARCH if Path(p).is_file()), None)


def nats_executable() -> str | None:
    return _found("nats-server", NATS_SEARCH)


class _Server:
    """A broker program run as its own process group, stopped by a signal and waited for."""

    name = "broker"
    start_timeout_s = 30.0
    stop_timeout_s = 30.0

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_file = self.folder / f"{self.name}.out"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        return None

    @property
    def pid(self) -> int:
        """The broker's process (running)."""
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self) -> None:
        """Start it and wait until its own process listens on `port`."""
        assert self.process is None, f"{self.name} is running already"
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=self.folder,
                start_new_session=True,  # its own group: kill() takes its helpers with it
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not listens(self.pid, self.port):
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise AssertionError(f"{self.name} exited {code}: {self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"{self.name} did not listen on {self.port} within "
                    f"{self.start_timeout_s} s: {self.log_text()[-3000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop: SIGTERM, then wait (killed after `stop_timeout_s`, a failure)."""
        if self.process is None:
            return
        helpers = self._helpers()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not stop within {self.stop_timeout_s} s"
            ) from None
        self._reap(helpers)
        self.process = None

    def kill(self) -> None:
        """kill -9 of the broker and of every process it started."""
        if self.process is None:
            return
        helpers = self._helpers()
        self.process.kill()
        self.process.wait(timeout=30)
        for helper in helpers:
            with contextlib.suppress(psutil.Error):
                helper.kill()
        self._reap(helpers)
        self.process = None

    def _helpers(self) -> list[psutil.Process]:
        """The processes the broker started (an Erlang VM's port programs, in their own
        sessions), to be waited for, or killed with it."""
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

    def _reap(self, helpers: list[psutil.Process]) -> None:
        """Wait until none of the broker's helper processes is left."""
        _, alive = psutil.wait_procs(helpers, timeout=10)
        for helper in alive:
            with contextlib.suppress(psutil.Error):
                helper.kill()
        assert not alive, f"{self.name}: helper processes outlived it: {alive}"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class RabbitMq(_Server):
    """A RabbitMQ node of its own with the MQTT plugin, on free ports, state in `folder`.

    `prefetch`: `mqtt.prefetch`, the unacknowledged messages a subscriber may hold (the
    plugin's default is 10; None keeps it); `subscription_ttl_ms`: how long an unused
    persistent session's queue is kept (the plugin's default is 24 hours).
    """

    name = "rabbitmq"
    start_timeout_s = 90.0  # an Erlang node boots in 10-20 s on two busy cores

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        prefetch: int | None = BATCH_INFLIGHT,
        durable_queue_type: str = "classic",
        subscription_ttl_ms: int | None = None,
    ) -> None:
        super().__init__(folder, port)
        self.node = f"campus{os.getpid()}n{next(_names)}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.prefetch = prefetch
        self.durable_queue_type = durable_queue_type
        self.subscription_ttl_ms = subscription_ttl_ms
        self._write_files()

    def _write_files(self) -> None:
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}",
            "mqtt.allow_anonymous = true",
            "mqtt.vhost = /",
            "mqtt.exchange = amq.topic",
            f"mqtt.durable_queue_type = {self.durable_queue_type}",
            "log.console = false",
            "log.file.level = info",
            "disk_free_limit.absolute = 50MB",
        ]
        if self.prefetch is not None:
            lines.append(f"mqtt.prefetch = {self.prefetch}")
        if self.subscription_ttl_ms is not None:
            lines.append(f"mqtt.subscription_ttl = {self.subscription_ttl_ms}")
        (self.folder / "rabbitmq.conf").write_text("\n".join([*lines, ""]))
        (self.folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")  # no management
        (self.folder / "rabbitmq-env.conf").write_text("")  # not the system's NODENAME

    def argv(self) -> list[str]:
        executable = rabbitmq_executable()
        assert executable is not None
        return [executable]

    def environment(self) -> Mapping[str, str]:
        f = self.folder
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(f),  # the node's Erlang cookie, and rabbitmqctl's
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(f / "mnesia"),
            "RABBITMQ_LOG_BASE": str(f / "log"),
            "RABBITMQ_PID_FILE": str(f / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(f / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(f / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # The start script execs the Erlang VM instead of waiting on it in a shell: our
            # process is the node, and its SIGTERM handler stops the node cleanly.
            "RUNNING_UNDER_SYSTEMD": "true",
        }


class NatsServer(_Server):
    """nats-server with JetStream and MQTT, on free ports, its store in `folder`.

    `max_ack_pending`: the `mqtt.max_ack_pending` of the server (None: its default).
    """

    name = "nats"

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        max_ack_pending: int | None = None,
        ack_wait: str = "30s",
    ) -> None:
        super().__init__(folder, port)
        self.client_port = free_port()
        self.server_name = f"campus{os.getpid()}n{next(_names)}"
        mqtt = [f'listen: "127.0.0.1:{self.port}"', f'ack_wait: "{ack_wait}"']
        if max_ack_pending is not None:
            mqtt.append(f"max_ack_pending: {max_ack_pending}")
        self.config_file = self.folder / "nats.conf"
        self.config_file.write_text(
            "\n".join(
                [
                    f'server_name: "{self.server_name}"',
                    f'listen: "127.0.0.1:{self.client_port}"',
                    f'jetstream {{ store_dir: "{self.folder / "jetstream"}" }}',
                    f"mqtt {{ {'; '.join(mqtt)} }}",
                    "",
                ]
            )
        )

    def argv(self) -> list[str]:
        executable = nats_executable()
        assert executable is not None
        return [executable, "-c", str(self.config_file)]


class MosquittoBroker(_Server):
    """Mosquitto saving its state as production does: every 60 s and on a clean stop."""

    name = "mosquitto"

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        autosave_s: int = 60,
        inflight: int | None = BATCH_INFLIGHT,
    ) -> None:
        super().__init__(folder, port)
        inflight_line = f"max_inflight_messages {inflight}" if inflight is not None else ""
        self.config_file = self.folder / "mosquitto.conf"
        self.config_file.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",  # our own user: it can write the folder
                    "persistence true",
                    f"persistence_location {self.folder}/",
                    f"autosave_interval {autosave_s}",
                    "autosave_on_changes false",
                    "max_queued_messages 100000",
                    inflight_line,
                    "",
                ]
            )
        )

    def argv(self) -> list[str]:
        executable = mosquitto_executable()
        assert executable is not None
        return [executable, "-c", str(self.config_file)]


@dataclass(frozen=True)
class Kind:
    """A kind of broker: its class, its program, and where that program is found."""

    make: Callable[..., _Server]
    program: str
    find: Callable[[], str | None]


BROKERS = {
    "mosquitto": Kind(MosquittoBroker, "mosquitto", mosquitto_executable),
    "rabbitmq": Kind(RabbitMq, "rabbitmq-server", rabbitmq_executable),
    "nats": Kind(NatsServer, "nats-server", nats_executable),
}


def require_broker(kind: str) -> None:
    """Skip the test when the broker's program is missing (fail it under CI)."""
    if BROKERS[kind].find() is None:
        unavailable(f"{BROKERS[kind].program} is not installed")


@contextlib.contextmanager
def running_broker(kind: str, folder: Path, **options: object) -> Iterator[_Server]:
    """A broker of `kind` ("mosquitto", "rabbitmq", "nats") on a free port, stopped after."""
    require_broker(kind)
    broker = BROKERS[kind].make(folder, **options)
    broker.start()
    try:
        yield broker
    finally:
        try:
            broker.stop()
        finally:
            broker.kill()  # a stop that failed leaves nothing running either
