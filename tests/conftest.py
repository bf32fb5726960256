"""Shared fixtures: leak checks, free ports, external programs, configurations."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from campus_energy.config import Config, parse_config

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> str:
    """The path of `name`; skips the test when it is missing, except under CI where it fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: .ci/run must install it)")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def leftover_children() -> list[psutil.Process]:
        return [
            p
            for p in me.children(recursive=True)
            if p.pid not in children_before and p.status() != psutil.STATUS_ZOMBIE
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
