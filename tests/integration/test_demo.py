"""`campus-energy demo --fast --with-dashboard`: the whole system from one command.

The promise to a newcomer: the web dashboard shows the campus within the first
minute, and Ctrl-C stops every process the demo started. The alerts service runs with
them: its book is there, the API serves it, and the status line counts the alerts firing.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support.http import get_json, status
from tests.support.mqtt import require_mosquitto
from tests.support.net import free_port
from tests.support.processes import campus_energy
from tests.support.services import serving_process
from tests.support.waiting import wait_for

FIRST_MINUTE_S = 60.0


@pytest.mark.slow
def test_the_fast_demo_shows_the_campus_within_a_minute_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    require_mosquitto()
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
    command = campus_energy("demo", "--fast", "--with-dashboard", "--dir", folder)
    started = time.monotonic()
    # stopped as Ctrl-C stops it
    with serving_process(
        command, output, env=env, stop_signal=signal.SIGINT, stop_timeout=60
    ) as demo:
        summary_url = f"http://127.0.0.1:{api}/api/summary"

        def campus_shown() -> Any:
            body = get_json(summary_url)
            if body and body["meters_online"] == 13 and body["power_w"] > 0 and body["today_kwh"]:
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
            "Sports",
        }
        assert status(f"http://127.0.0.1:{api}/") == 200
        # the alerts service runs: its book exists (the API finds it) and the screen counts
        alerts = get_json(f"http://127.0.0.1:{api}/api/alerts")
        assert alerts is not None and alerts["configured"] is True, alerts
        assert wait_for(lambda: status(f"http://127.0.0.1:{dashboard}/_stcore/health") == 200, 30)
        text = wait_for(lambda: "windows" in output.read_text() and output.read_text(), 10)
        assert f"http://127.0.0.1:{api}/" in text and f"http://127.0.0.1:{dashboard}/" in text
        assert " · alerts firing " in text
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3  # Mosquitto, Gunicorn (arbiter and worker), Streamlit
    text = output.read_text()
    assert "demo stopped" in text and "Traceback" not in text
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # on shutdown the bridge writes the open windows: every stored Wh is in a window
    home = folder / "fast"
    assert (home / "alerts.db").is_file()
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
