"""The API's health probe against real sockets: what counts as answering, and the log it leaves.

The probe's clock is a fake one the test moves (timeouts); the sockets are real
(an answer, silence, a refusal, a hang-up), and the test waits for them by
polling the probe, never by sleeping.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.clock import FakeClock
from tests.support.waiting import wait_for

from campus_energy.api import probe as probe_module
from campus_energy.api.probe import USER_AGENT, HealthProbe, probe_address


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A listening socket on loopback that answers only when the test says so."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(10)
    try:
        yield sock
    finally:
        sock.close()


def probe_of(server: socket.socket, clock: FakeClock) -> HealthProbe:
    return HealthProbe(probe_address(server), every_s=5, timeout_s=10, clock=clock)


def settled(probe: HealthProbe) -> bool:
    """Step until the probe in flight has its outcome (polled with a real-time bound)."""
    probe.step()
    return not probe.in_flight


def answer(server: socket.socket, response: bytes) -> bytes:
    """Accept the probe's connection, read its request, send `response`; the request."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        conn.sendall(response)
    return request


def test_a_200_is_answering_and_the_request_is_a_real_get(server: socket.socket) -> None:
    probe = probe_of(server, FakeClock())
    probe.step()
    assert probe.in_flight
    request = answer(server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    wait_for(lambda: settled(probe))
    assert probe.answering
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /api/live HTTP/1.1"
    assert f"User-Agent: {USER_AGENT}" in lines


@pytest.mark.parametrize(
    ("status_line", "answering"),
    [
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 503 SERVICE UNAVAILABLE", False),  # /api/live never says 503: not our app
        (b"HTTP/1.1 500 Internal Server Error", False),
        (b"HTTP/1.1 404 NOT FOUND", False),
        (b"SSH-2.0-OpenSSH_9.2", False),  # something else holds the port
    ],
)
def test_which_answers_count(status_line: bytes, answering: bool, server: socket.socket) -> None:
    probe = probe_of(server, FakeClock())
    probe.step()
    answer(server, status_line + b"\r\n\r\n")
    wait_for(lambda: settled(probe))
    assert probe.answering is answering


def test_silence_past_the_timeout_stops_answering_logged_once_until_it_answers_again(
    server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="campus_energy.api")
    clock = FakeClock()
    probe = probe_of(server, clock)
    probe.step()  # connected (the kernel completes it) and sent; nobody accepts
    clock.now += 10
    probe.step()
    assert probe.in_flight and probe.answering  # 10 s is not past the bound yet
    clock.now += 0.5
    assert not probe.answering  # overdue: no ping from here on
    probe.step()
    assert not probe.in_flight
    for _ in range(3):  # each step starts the next probe at once; it stays unanswered
        probe.step()
        clock.now += 11
        probe.step()
        assert not probe.answering
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    port = server.getsockname()[1]
    assert errors == [
        f"api: GET /api/live on 127.0.0.1:{port}: no answer within 10 s; "
        "systemd's watchdog is no longer pinged"
    ]
    for _ in range(4):  # the probes' connections, queued: the last one gets the answer
        conn, _ = server.accept()
        conn.close()
    probe.step()
    answer(server, b"HTTP/1.1 200 OK\r\n\r\n")
    wait_for(lambda: settled(probe))
    assert probe.answering
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "recovered after 33 s and 4 failed attempts (HTTP 200)" in infos[0]


def test_a_refused_connection_or_a_hang_up_is_not_answering(server: socket.socket) -> None:
    probe = probe_of(server, FakeClock())
    probe.step()
    conn, _ = server.accept()
    conn.close()  # hung up without a word
    wait_for(lambda: settled(probe))
    assert not probe.answering
    address = probe_address(server)
    server.close()  # nothing listens there any more
    refused = HealthProbe(address, every_s=5, clock=FakeClock())
    wait_for(lambda: settled(refused))
    assert not refused.answering


def test_a_probe_not_yet_due_is_not_sent(server: socket.socket) -> None:
    clock = FakeClock()
    probe = probe_of(server, clock)
    probe.step()
    answer(server, b"HTTP/1.1 200 OK\r\n\r\n")
    wait_for(lambda: settled(probe))
    clock.now += 4.9
    probe.step()
    assert not probe.in_flight  # every_s = 5
    clock.now += 0.1
    probe.step()
    assert probe.in_flight
    probe.close()


def test_wildcard_and_unix_addresses_are_reached_from_the_same_host(tmp_path: Path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as anywhere:
        port = anywhere.getsockname()[1]
        assert probe_address(anywhere) == (socket.AF_INET, ("127.0.0.1", port))
    with socket.socket(socket.AF_UNIX) as unix:
        path = str(tmp_path / "api.sock")
        unix.bind(path)
        unix.listen()
        assert probe_address(unix) == (socket.AF_UNIX, path)
        probe = HealthProbe(probe_address(unix), every_s=5, clock=FakeClock())
        probe.step()
        unix.settimeout(10)
        answer(unix, b"HTTP/1.1 200 OK\r\n\r\n")
        wait_for(lambda: settled(probe))
        assert probe.answering
    os.unlink(path)


def test_a_socket_that_cannot_be_opened_is_a_failed_probe_not_a_stopped_arbiter(
    server: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of file descriptors, the probe fails and says so; before, the OSError escaped
    into Gunicorn's arbiter loop and stopped the API."""

    def no_descriptors(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    probe = probe_of(server, FakeClock())
    with monkeypatch.context() as patched:
        patched.setattr(probe_module.socket, "socket", no_descriptors)
        probe.step()
        probe.step()
    assert not probe.answering and not probe.in_flight
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "cannot open a socket: Too many open files" in failures[0]
