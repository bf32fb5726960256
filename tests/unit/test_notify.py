"""systemd notifications: the environment, the datagrams, and a watchdog that a hung loop stops."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.clock import FakeClock

from campus_energy.runtime.notify import Notifier, Watchdog


def parse(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, standing in for systemd's, and its name."""
    name = f"@campus-energy-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    try:
        yield sock, name
    finally:
        sock.close()


async def receive(sock: socket.socket, timeout: float) -> dict[str, str] | None:
    """The next message, or None when none arrives within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    try:
        return parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout))
    except TimeoutError:
        return None


@pytest.mark.parametrize(
    ("environ", "pid", "enabled", "interval"),
    [
        ({}, 5, False, None),
        ({"WATCHDOG_USEC": "2000000"}, 5, False, None),  # no socket: nothing to ping
        ({"NOTIFY_SOCKET": "@sd"}, 5, True, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "2000000"}, 5, True, 1.0),
        ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "5"}, 5, True, 1.0),
        ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, 5, True, None),
        ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "soon"}, 5, True, None),
        ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "0"}, 5, True, None),
        ({"NOTIFY_SOCKET": "relative/path", "WATCHDOG_USEC": "2000000"}, 5, False, None),
    ],
)
def test_the_environment_decides_socket_and_watchdog(
    environ: dict[str, str], pid: int, enabled: bool, interval: float | None
) -> None:
    notifier = Notifier.from_environ(environ, pid)
    assert notifier.enabled is enabled
    assert notifier.ping_interval_s == interval


def test_without_a_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environ({}, 1)
    assert not notifier.ready("up")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_messages_reach_an_abstract_socket(manager: tuple[socket.socket, str]) -> None:
    sock, name = manager
    notifier = Notifier(name)
    assert notifier.ready("polling 3 meters")
    assert parse(sock.recv(4096)) == {"READY": "1", "STATUS": "polling 3 meters"}
    notifier.status("two\nlines")
    assert parse(sock.recv(4096)) == {"STATUS": "two lines"}
    notifier.watchdog()
    assert parse(sock.recv(4096)) == {"WATCHDOG": "1"}
    notifier.stopping()
    assert parse(sock.recv(4096)) == {"STOPPING": "1"}


def test_messages_reach_a_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        assert Notifier(str(path)).ready()
        assert parse(sock.recv(4096)) == {"READY": "1"}


def test_a_missing_socket_never_raises_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"), watchdog_s=1.0)
    with caplog.at_level(logging.DEBUG, logger="campus_energy.notify"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "systemd notification socket" in errors[0].getMessage()


def test_progress_restarts_the_time_limit_of_that_work_only() -> None:
    clock = FakeClock()
    watchdog = Watchdog(Notifier(), clock=clock)
    with watchdog.working("flush", 10), watchdog.working("receive", 10):
        clock.now += 9
        watchdog.progress("flush")
        watchdog.progress("nothing by this name")
        clock.now += 5
        assert watchdog.overdue() == ["receive (busy 14 s, limit 10 s)"]
        clock.now += 6
        assert watchdog.overdue() == [
            "flush (busy 11 s, limit 10 s)",
            "receive (busy 20 s, limit 10 s)",
        ]
    assert watchdog.overdue() == []
    watchdog.progress("flush")  # idle: no work, no limit
    assert watchdog.overdue() == []


async def test_a_hung_loop_stops_the_pings_and_they_resume_when_it_moves_again(
    manager: tuple[socket.socket, str],
) -> None:
    sock, name = manager
    sock.setblocking(False)
    watchdog = Watchdog(Notifier(name, watchdog_s=0.2))  # a ping every 0.1 s
    stop, release = asyncio.Event(), asyncio.Event()

    async def loop_that_hangs() -> None:
        with watchdog.working("bus plant", 1.0):
            await release.wait()  # a read that never returns

    pinging = asyncio.create_task(watchdog.run(stop))
    hanging = asyncio.create_task(loop_that_hangs())
    try:
        pings = 0
        while (message := await receive(sock, 5)) is not None and "STATUS" not in message:
            pings += message.get("WATCHDOG") == "1"
        assert pings >= 2, "pinged while the work was within its limit"
        assert message is not None
        assert message["STATUS"].startswith("hung: bus plant (busy ")
        assert message["STATUS"].endswith(", limit 1 s)")
        silent = await receive(sock, 1.0)  # ten ping intervals
        assert silent is None, f"a hung loop must stop the pings, got {silent}"
        release.set()
        assert await receive(sock, 5) == {"STATUS": "running"}
        assert await receive(sock, 5) == {"WATCHDOG": "1"}
    finally:
        release.set()
        stop.set()
        await asyncio.gather(pinging, hanging)


async def test_without_a_watchdog_the_pinger_returns_at_once() -> None:
    await asyncio.wait_for(Watchdog(Notifier("@sd")).run(asyncio.Event()), 1)
