"""`campus-energy demo` when its web port is taken, and with `--backfill-days`.

Another program on the port must not be advertised as the demo's dashboard:
the demo moves to a free port, says so, and prints the URL it really serves.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.support.http import get_json
from tests.support.mqtt import require_mosquitto
from tests.support.net import free_port
from tests.support.processes import campus_energy
from tests.support.services import serving_process
from tests.support.waiting import wait_for


@pytest.mark.slow
def test_a_taken_port_moves_the_dashboard_to_a_free_one_it_prints(tmp_path: Path) -> None:
    require_mosquitto()
    env = {
        **os.environ,
        "CAMPUS_ENERGY__BUSES__0__PORT": str(free_port()),
        "CAMPUS_ENERGY__BUSES__1__PORT": str(free_port()),
        "CAMPUS_ENERGY__MQTT__PORT": str(free_port()),
    }
    folder, output = tmp_path / "demo", tmp_path / "demo.out"
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        busy = other_program.getsockname()[1]
        command = campus_energy("demo", "--fast", "--dir", folder)
        command += ["--port", str(busy), "--backfill-days", "1"]
        with serving_process(command, output, env=env, stop_signal=signal.SIGINT, stop_timeout=60):

            def moved() -> int | None:
                for line in output.read_text().splitlines():
                    if line.startswith(f"port {busy} ") and "instead" in line:
                        return int(line.split("listens on port ")[1].split()[0])
                return None

            port = wait_for(moved, timeout=30)
            assert port != busy
            health = wait_for(lambda: get_json(f"http://127.0.0.1:{port}/api/health"), 60)
            assert health["status"] in ("ok", "degraded")
            text = wait_for(lambda: "waiting for the first" in output.read_text() and output, 30)
            shown = text.read_text()
            assert f"http://127.0.0.1:{port}/" in shown
            assert f"http://127.0.0.1:{busy}/" not in shown
            assert "history: " in shown and " readings and " in shown
    home = folder / "fast"
    with sqlite3.connect(home / "windows.db") as windows:
        spans = windows.execute("SELECT window_start, window_end FROM window_aggregates").fetchall()
    lengths = [datetime.fromisoformat(b) - datetime.fromisoformat(a) for a, b in spans]
    history = sum(1 for length in lengths if length == timedelta(minutes=5))
    assert history > 12 * 288  # at least a whole day of 5-minute windows for 12 meters
