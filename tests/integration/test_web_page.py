"""The public dashboard in a real browser: Gunicorn on a free port, headless Chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.support import CHROMIUM_ARGS
from tests.support.net import free_port
from tests.support.processes import campus_energy, require_program
from tests.support.services import serving_process

from campus_energy.backends.sqlite.sink import SqliteSink
from campus_energy.core.windows import Contribution, WindowDelta
from campus_energy.demo.mosquitto import port_open

WINDOW_S = 300
METERS = {"ece-1": ("ECE", "1"), "lib-1": ("Library", "1")}


def delta(meter: str, start_ms: int, energy_wh: float, seq: int) -> WindowDelta:
    return WindowDelta(
        meter,
        start_ms,
        WINDOW_S,
        (Contribution(meter, start_ms, seq, energy_wh, WINDOW_S, True, energy_wh * 12),),
        *METERS[meter],
    )


def write(db: Path, deltas: list[WindowDelta]) -> None:
    from zoneinfo import ZoneInfo

    async def go() -> None:
        sink = SqliteSink(db, ZoneInfo("UTC"))
        try:
            await sink.merge(deltas, round(time.time() * 1000))
        finally:
            await sink.close()

    # in a thread of its own: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, go()).result()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Gunicorn serving a campus whose windows end just now (UTC days)."""
    db = tmp_path / "windows.db"
    now = int(time.time() * 1000)
    latest = now - now % (WINDOW_S * 1000) - WINDOW_S * 1000
    # two days of windows, the newest ended within the last five minutes
    write(
        db,
        [
            delta(m, latest - k * WINDOW_S * 1000, 100.0 + i * 50 + k % 5, 1)
            for i, m in enumerate(METERS)
            for k in range(2 * 288)
        ],
    )
    port = free_port()
    config = tmp_path / "campus-energy.toml"
    config.write_text(
        f"""
[site]
timezone = "UTC"
[bridge]
window_s = {WINDOW_S}
[bridge.sqlite]
path = "{db}"
[api]
port = {port}
workers = 1
refresh_s = 5
cache_s = 0
"""
    )
    with serving_process(
        campus_energy("api", "-c", config),
        tmp_path / "api.log",
        ready=lambda: port_open("127.0.0.1", port),
        ready_timeout=20,
        stop_timeout=20,
    ):
        yield f"http://127.0.0.1:{port}", db


@pytest.mark.slow
def test_the_dashboard_shows_the_data_and_refreshes(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    chromium = require_program("chromium")
    from playwright.sync_api import sync_playwright

    base, db = served
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(base + "/")
            summary: dict[str, Any] = page.request.get(base + "/api/summary").json()
            page.wait_for_function(
                "() => document.querySelector('#today-kwh')?.dataset.value !== undefined"
            )
            shown = float(page.get_attribute("#today-kwh", "data-value") or "nan")
            assert shown == pytest.approx(summary["today_kwh"], rel=1e-6)
            assert page.inner_text("#health-status").strip() != ""
            assert "ECE" in page.inner_text("#buildings") and "Library" in page.inner_text(
                "#buildings"
            )
            for chart in ("#chart-24h", "#chart-30d"):
                page.wait_for_selector(f"{chart} canvas")
                painted = page.evaluate(
                    """(selector) => {
                        const c = document.querySelector(selector + ' canvas');
                        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        let n = 0;
                        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
                        return n;
                    }""",
                    chart,
                )
                assert painted > 1000, f"{chart} looks empty ({painted} painted pixels)"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            # a new window is written: the next refresh shows it
            now = int(time.time() * 1000)
            fresh = now - now % (WINDOW_S * 1000)
            write(db, [delta("ece-1", fresh, 5000.0, 1)])
            page.wait_for_function(
                "(before) => Number(document.querySelector('#today-kwh').dataset.value) > before",
                arg=shown,
                timeout=20_000,
            )
            after = float(page.get_attribute("#today-kwh", "data-value") or "nan")
            assert after == pytest.approx(shown + 5.0, rel=1e-6)
            page.click("#meters [data-key='ece-1'] button")
            page.wait_for_selector("#meter-detail canvas")
        finally:
            browser.close()
    assert not problems, problems
