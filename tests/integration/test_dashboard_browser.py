"""The local dashboard for real: `campus-energy dashboard` on a free port, headless Chromium
in New York looking at a campus in Kolkata."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support import CHROMIUM_ARGS
from tests.support.dashboard_books import Books, Scenario, write_config, write_store
from tests.support.http import streamlit_health
from tests.support.net import free_port
from tests.support.processes import campus_energy, require_program
from tests.support.services import serving_process

SITE = Scenario("Asia/Kolkata", (2026, 6, 17, 13, 0), (2026, 6, 17, 15, 20, 10), 60)
BROWSER_ZONE = "America/New_York"  # 9 h 30 min behind the site
X_LABELS = """(title) => {
    const axes = [...document.querySelectorAll('[role="tabpanel"] .role-axis')];
    const x = axes.find((a) => a.querySelector('.role-axis-title')?.textContent.includes(title));
    const labels = x ? [...x.querySelectorAll('.role-axis-label text')] : [];
    return labels.length ? labels.map((t) => t.textContent) : null;
}"""


def minutes(label: str) -> int:
    hours, mins = label.split(":")
    return int(hours) * 60 + int(mins)


@pytest.mark.slow
def test_a_browser_elsewhere_shows_the_books_on_the_sites_clock(tmp_path: Path) -> None:
    chromium = require_program("chromium")
    from playwright.sync_api import expect, sync_playwright

    store, port = tmp_path / "store.db", free_port()
    write_store(store, SITE)
    books = Books(store, ZoneInfo(SITE.zone), SITE.at(SITE.now))
    campus = {r[0] for r in books.rows}
    today_kwh = books.wh(campus, SITE.at((2026, 6, 17)), books.now_ms + 1) / 1000
    now = datetime.fromtimestamp(books.now_ms / 1000, books.zone).isoformat()
    config = write_config(tmp_path, store, SITE.zone, port)
    with (
        serving_process(
            campus_energy("dashboard", "-c", config),
            tmp_path / "dashboard.log",
            ready=lambda: streamlit_health(port) == "ok",
            ready_timeout=60,
            env={**os.environ, "CAMPUS_ENERGY_DASHBOARD_NOW": now},
        ),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                timezone_id=BROWSER_ZONE, viewport={"width": 1400, "height": 1200}
            )
            page.goto(f"http://127.0.0.1:{port}/")
            kpi = page.get_by_test_id("stMetric").filter(has_text="Today (kWh)")
            expect(kpi.get_by_test_id("stMetricValue")).to_have_text(
                f"{today_kwh:,.3f}", timeout=60_000
            )
            expect(page.get_by_test_id("stToolbar")).to_be_attached()
            expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
            page.get_by_role("tab", name="Day detail").click()
            labels = page.wait_for_function(
                X_LABELS, arg=f"({SITE.zone}", timeout=30_000
            ).json_value()
        finally:
            browser.close()
    # the readings run 13:01 to 15:20 in Kolkata (03:31 to 05:50 in New York)
    assert "14:00" in labels, labels
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in labels), labels
    assert all(13 * 60 <= minutes(label) <= 15 * 60 + 20 for label in labels), labels
