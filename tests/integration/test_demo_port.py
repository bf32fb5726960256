"""`campus-energy demo` when its web port is taken, and with `--backfill-days`.

Another program on the port must not be advertised as the demo's dashboard:
the demo moves to a free port, says so, and prints the URL it really serves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import free_port, require_program, wait_for

from campus_energy.demo.mosquitto import mosquitto_executable


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def test_a_taken_port_moves_the_dashboard_to_a_free_one_it_prints(tmp_path: Path) -> None:
    if mosquitto_executable() is None:
        require_program("mosquitto")
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
        command = [sys.executable, "-m", "campus_energy", "demo", "--fast", "--dir", str(folder)]
        command += ["--port", str(busy), "--backfill-days", "1"]
        with output.open("wb") as out:
            demo = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:

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
        finally:
            demo.send_signal(signal.SIGINT)
            code = demo.wait(60)
    assert code == 0, output.read_text()[-3000:]
    assert "Traceback" not in output.read_text()
    home = folder / "fast"
    with sqlite3.connect(home / "windows.db") as windows:
        spans = windows.execute("SELECT window_start, window_end FROM window_aggregates").fetchall()
    lengths = [datetime.fromisoformat(b) - datetime.fromisoformat(a) for a, b in spans]
    history = sum(1 for length in lengths if length == timedelta(minutes=5))
    assert history > 12 * 288  # at least a whole day of 5-minute windows for 12 meters
