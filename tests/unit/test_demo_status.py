"""What the demo's screen shows: notices that a refresh never wipes, what it waits for, ports."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from campus_energy.config import load_config
from campus_energy.core.readings import Reading
from campus_energy.demo import Notices, choose_ports, prepare, screen, waiting_line
from campus_energy.demo.services import port_free
from campus_energy.demo.status import collecting
from campus_energy.logger.publisher import StatusBoard


@dataclass
class Logged:
    latest: dict[str, Reading] = field(default_factory=dict)
    statuses: StatusBoard = field(default_factory=StatusBoard)


def test_notices_stay_on_screen_above_the_table_and_the_status_line(tmp_path: Path) -> None:
    config = load_config(prepare(tmp_path), {})
    notices = Notices(keep=3)
    with collecting(notices, quiet_stderr=False):
        logging.getLogger("campus_energy.logger").error("meter x: no answer")
        logging.getLogger("campus_energy.bridge").info("not a notice")
    notices.add("port 8000 is taken")
    text = screen(config, Logged(), ["head"], "STATUS", notices=notices.lines, waiting="WAIT")
    lines = text.splitlines()
    error = next(i for i, line in enumerate(lines) if "ERROR campus_energy.logger" in line)
    taken = next(i for i, line in enumerate(lines) if "port 8000 is taken" in line)
    table = next(i for i, line in enumerate(lines) if line.startswith("meter "))
    assert lines[error].startswith("! ") and error < taken < table
    assert lines[-2:] == ["WAIT", "STATUS"]
    assert "not a notice" not in text
    for n in range(5):
        notices.add(f"more {n}")
    assert len(notices.lines) == 3 and notices.lines[-1].endswith("more 4")


def test_on_a_terminal_warnings_go_to_the_screen_not_to_stderr() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    keep = Keep()
    root.addHandler(keep)
    notices = Notices()
    try:
        with collecting(notices, quiet_stderr=True):
            logging.getLogger("campus_energy.demo").warning("muted on stderr")
        logging.getLogger("campus_energy.demo").warning("after the demo")
    finally:
        root.removeHandler(keep)
    assert seen == ["after the demo"]
    assert [line.endswith("muted on stderr") for line in notices.lines] == [True]


def test_until_the_first_window_a_line_says_what_the_demo_waits_for(tmp_path: Path) -> None:
    config = load_config(prepare(tmp_path), {})  # 30 s windows written 5 s after they end
    now = time.mktime((2026, 12, 5, 18, 30, 12, 0, 0, -1))
    before = waiting_line(config, polled=0, windows=0, first_ms=None, now=now)
    assert before == "waiting for the first readings: polling 13 meters every 5 s …"
    first_ms = round((now - 2) * 1000)  # 18:30:10
    waiting = waiting_line(config, polled=7, windows=0, first_ms=first_ms, now=now)
    assert waiting is not None
    assert "7 of 13 meters polled" in waiting
    assert "closes at 18:30:30" in waiting and "written at 18:30:35" in waiting
    late = waiting_line(config, polled=13, windows=0, first_ms=first_ms, now=now + 60)
    assert late is not None and "due since 18:30:35" in late
    assert waiting_line(config, polled=13, windows=1, first_ms=first_ms, now=now) is None


def test_a_taken_port_is_replaced_by_a_free_one_and_said(tmp_path: Path) -> None:
    config = load_config(prepare(tmp_path), {})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert not port_free("127.0.0.1", busy)
        ports = choose_ports(config, busy, busy, with_dashboard=True)
        chosen = ports.config.api.port
        assert chosen != busy and port_free("127.0.0.1", chosen)
        assert ports.env["CAMPUS_ENERGY__API__PORT"] == str(chosen)
        assert ports.env["CAMPUS_ENERGY__DASHBOARD__PORT"] == str(ports.config.dashboard.port)
        assert ports.config.dashboard.port != busy
        assert len(ports.notes) == 2 and f"port {busy}" in ports.notes[0]
        assert f"port {chosen} instead" in ports.notes[0]
    assert ports.config.source == config.source  # the children still read the demo's file


def test_a_free_port_is_kept_quietly(tmp_path: Path) -> None:
    config = load_config(prepare(tmp_path), {})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ports = choose_ports(config, port)
    assert ports.config.api.port == port and ports.notes == ()
    assert "CAMPUS_ENERGY__DASHBOARD__PORT" not in ports.env
