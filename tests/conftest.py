"""Shared fixtures: leak checks, free ports, external programs, configurations."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support import CHROMIUM_ARGS, SHARED_PROCESSES
from tests.support.emulator import emulator_environment
from tests.support.net import free_port
from tests.support.processes import require_program
from tests.support.stores import emulator_or_skip, postgres_schema

from campus_energy.config import Config, parse_config


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Playwright) for a module's tests; skipped locally without chromium."""
    chromium = require_program("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """No test may leave a thread, a child process or a listening port behind."""
    threads_before = set(threading.enumerate())
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}

    def listening() -> set[tuple[str, int]]:
        return {
            (c.laddr.ip, c.laddr.port)
            for c in me.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }

    ports_before = listening()
    yield

    def leftover_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]

    def alive(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:  # gone, or a zombie already
            return False

    def leftover_children() -> list[psutil.Process]:
        return [
            p
            for p in me.children(recursive=True)
            if p.pid not in children_before and p.pid not in SHARED_PROCESSES and alive(p)
        ]

    deadline = time.monotonic() + 5
    while (leftover_threads() or leftover_children()) and time.monotonic() < deadline:
        time.sleep(0.02)
    threads, children = leftover_threads(), leftover_children()
    for child in children:
        child.kill()
    assert not threads, f"test left threads running: {threads}"
    assert not children, f"test left processes running: {[c.cmdline() for c in children]}"
    ports = listening() - ports_before
    assert not ports, f"test left ports listening: {sorted(ports)}"


def make_config(buses: list[dict[str, Any]], meters: list[dict[str, Any]], **extra: Any) -> Config:
    data: dict[str, Any] = {"site": {"timezone": "Asia/Kolkata"}, "buses": buses, "meters": meters}
    data.update(extra)
    return parse_config(data)


class SocatPair:
    """A pseudo-terminal pair made by socat: a virtual RS-485 cable between two device paths."""

    def __init__(self, folder: Path) -> None:
        self.server_end = str(folder / "ttySIM")
        self.client_end = str(folder / "ttyLOGGER")
        self.process: subprocess.Popen[bytes] | None = None

    def plug(self) -> None:
        socat = require_program("socat")
        self.process = subprocess.Popen(
            [
                socat,
                f"pty,raw,echo=0,link={self.server_end}",
                f"pty,raw,echo=0,link={self.client_end}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: os.path.exists(self.server_end) and os.path.exists(self.client_end))

    def unplug(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        wait_for(lambda: not os.path.exists(self.client_end))


@pytest.fixture
def socat_pair(tmp_path: Path) -> Iterator[SocatPair]:
    pair = SocatPair(tmp_path)
    pair.plug()
    try:
        yield pair
    finally:
        pair.unplug()


# --- MQTT -------------------------------------------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    """A private Mosquitto on a free port, with persistence in tmp_path."""
    from campus_energy.demo.mosquitto import Mosquitto, mosquitto_executable

    if mosquitto_executable() is None:
        require_program("mosquitto")
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Collector:
    """A QoS 1 subscriber with a persistent session that reconnects by itself."""

    def __init__(
        self, port: int, topic: str = "campus/energy/#", client_id: str = "collector"
    ) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.messages: list[tuple[str, Any, bool]] = []  # topic, payload, retained
        self.subscribed = None  # an asyncio.Event, made inside the loop
        self._task: Any = None

    async def __aenter__(self) -> Collector:
        import asyncio

        self.subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        import asyncio
        import json

        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    assert self.subscribed is not None
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        self.messages.append((str(message.topic), payload, message.retain))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def readings(self) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.messages if t.endswith("/reading")]

    def statuses(self, topic_suffix: str) -> list[str]:
        return [p["state"] for t, p, _ in self.messages if t.endswith(topic_suffix)]


async def eventually(
    condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Await until `condition()` (sync or async) is truthy; fail after `timeout` seconds."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


# --- sinks: PostgreSQL, the Firestore emulator, a TCP proxy to cut them off -------------------


@pytest.fixture
def postgres_dsn() -> Iterator[tuple[str, str]]:
    with postgres_schema() as found:
        yield found


@pytest.fixture
def firestore_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh emulator for one test, with FIRESTORE_EMULATOR_HOST pointing at it."""
    with emulator_or_skip() as host:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        yield host


@pytest.fixture(scope="module")
def shared_firestore_emulator() -> Iterator[str]:
    """One emulator for a module's tests, with FIRESTORE_EMULATOR_HOST pointing at it.

    For tests that do not stop it or depend on an empty one: each writes its own project.
    """
    with emulator_or_skip(shared=True) as host, emulator_environment(host):
        yield host


class TcpProxy:
    """A TCP relay to a real service that a test can cut and restore (a network outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: Any = None
        self._writers: set[Any] = set()

    async def start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pump(source: Any, sink: Any) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
