"""`campus-energy demo --fast --with-dashboard`: the whole system from one command.

The promise to a newcomer: the web dashboard shows the campus within the first
minute, and Ctrl-C stops every process the demo started.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.conftest import free_port, require_program, wait_for

from campus_energy.demo.mosquitto import mosquitto_executable

FIRST_MINUTE_S = 60.0


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def test_the_fast_demo_shows_the_campus_within_a_minute_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    if mosquitto_executable() is None:
        require_program("mosquitto")
    api, dashboard = free_port(), free_port()
    env = {
        **os.environ,
        "CAMPUS_ENERGY__BUSES__0__PORT": str(free_port()),
        "CAMPUS_ENERGY__BUSES__1__PORT": str(free_port()),
        "CAMPUS_ENERGY__MQTT__PORT": str(free_port()),
        "CAMPUS_ENERGY__API__PORT": str(api),
        "CAMPUS_ENERGY__DASHBOARD__PORT": str(dashboard),
    }
    folder = tmp_path / "demo"
    output = tmp_path / "demo.out"
    command = [sys.executable, "-m", "campus_energy", "demo", "--fast", "--with-dashboard"]
    with output.open("wb") as out:
        demo = subprocess.Popen(
            [*command, "--dir", str(folder)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    started = time.monotonic()
    try:
        summary_url = f"http://127.0.0.1:{api}/api/summary"

        def campus_shown() -> Any:
            body = get_json(summary_url)
            if body and body["meters_online"] == 12 and body["power_w"] > 0 and body["today_kwh"]:
                return body
            return None

        summary = wait_for(campus_shown, timeout=FIRST_MINUTE_S)
        shown_after = time.monotonic() - started
        assert shown_after < FIRST_MINUTE_S
        assert {b["building"] for b in summary["buildings"]} == {
            "Admin",
            "ECE",
            "Hostel",
            "Library",
        }
        assert status(f"http://127.0.0.1:{api}/") == 200
        assert wait_for(lambda: status(f"http://127.0.0.1:{dashboard}/_stcore/health") == 200, 30)
        text = wait_for(lambda: "windows" in output.read_text() and output.read_text(), 10)
        assert f"http://127.0.0.1:{api}/" in text and f"http://127.0.0.1:{dashboard}/" in text
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3  # Mosquitto, Gunicorn (arbiter and worker), Streamlit
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C does
        code = demo.wait(60)
    assert code == 0, output.read_text()[-3000:]
    text = output.read_text()
    assert "demo stopped" in text and "Traceback" not in text
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # on shutdown the bridge writes the open windows: every stored Wh is in a window
    home = folder / "fast"
    with (
        sqlite3.connect(home / "windows.db") as windows,
        sqlite3.connect(home / "smart_meter.db") as store,
    ):
        (in_windows,) = windows.execute(
            "SELECT sum(total_energy_wh) FROM window_aggregates"
        ).fetchone()
        (in_store,) = store.execute("SELECT sum(energy_wh) FROM readings").fetchone()
    assert in_store > 0
    assert in_windows == pytest.approx(in_store, abs=1e-6)
