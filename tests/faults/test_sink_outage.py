"""Scenario 2: the sink unreachable for several windows — PostgreSQL refusing connections,
the Firestore emulator stopped (SIGSTOP: it hangs) and continued."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tests.faults.books import Books
from tests.faults.harness import PLAN, WINDOW_S, campus, record
from tests.support.net import TcpProxy
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_postgres_refusing_connections_loses_nothing(
    tmp_path: Path, mosquitto: Any, postgres_dsn: tuple[str, str], report: list[Books]
) -> None:
    dsn, schema = postgres_dsn
    target = conninfo_to_dict(dsn)
    proxy = TcpProxy(str(target.get("host", "127.0.0.1")), int(target.get("port", 5432)))
    cut_off = make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))
    sink = {"sink": "postgres", "postgres": {"dsn": cut_off, "schema": schema}}
    truth = {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
    with campus("postgres refused", tmp_path, mosquitto.port, sink, truth_sink=truth) as c:
        c.run(proxy.start())
        c.on_close(lambda: c.run(proxy.close()))
        c.start()
        c.advance(2)
        for _ in range(PLAN.rounds):
            c.run(proxy.cut())  # open connections broken, new ones refused
            c.advance(PLAN.outage_windows)
            wait_for(lambda: c.overdue_s() > WINDOW_S, 30, "windows wait in the spool")
            c.run(proxy.restore())
            wait_for(lambda: c.overdue_s() <= 0, 90, "the spool catches up")
            c.advance(2)
        c.settle()
        assert "ERROR campus_energy.bridge: sink postgres" in c.bridge.log_text()
        books = c.books()
    record(report, books)


def emulator_process(host: str) -> psutil.Process:
    port = host.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        command = child.cmdline()
        if any(part.endswith("serve.js") for part in command) and port in command:
            return child
    raise AssertionError(f"no Firestore emulator process on {host}")


@pytest.mark.timeout(PLAN.test_timeout_s)
def test_a_stopped_firestore_emulator_loses_nothing(
    tmp_path: Path,
    mosquitto: Any,
    firestore_emulator: str,
    monkeypatch: pytest.MonkeyPatch,
    report: list[Books],
) -> None:
    """The emulator keeps its documents in memory only, so it is never really restarted (that
    would wipe the sink): it is stopped by SIGSTOP (calls hang) and continued, and it
    disappears from the network behind a relay (connections refused) and reappears."""
    host, port = firestore_emulator.rsplit(":", 1)
    emulator = emulator_process(firestore_emulator)
    proxy = TcpProxy(host, int(port))
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{proxy.port}")
    sink = {
        "sink": "firestore",
        "firestore": {"project": "demo-faults", "collection": "windows", "layout": "per-meter"},
    }
    stop = (
        lambda: emulator.send_signal(signal.SIGSTOP),
        lambda: emulator.send_signal(signal.SIGCONT),
    )
    with campus("firestore stopped", tmp_path, mosquitto.port, sink) as c:
        gone = (lambda: c.run(proxy.cut()), lambda: c.run(proxy.restore()))
        c.run(proxy.start())
        c.on_close(lambda: c.run(proxy.close()))
        c.on_close(stop[1])
        c.start()
        c.advance(2)
        for _ in range(PLAN.rounds):
            for begin, end in (gone, stop):
                begin()
                c.advance(PLAN.outage_windows)
                wait_for(lambda: c.overdue_s() > WINDOW_S, 30, "windows wait in the spool")
                end()
                wait_for(lambda: c.overdue_s() <= 0, 90, "the spool catches up")
                c.advance(1)
        c.settle()  # (the client retries calls for 20 s: a short outage is not an error)
        books = c.books()
    record(report, books)
