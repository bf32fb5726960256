"""The dashboard's alerts in real Chromium: the banner and the Alerts panel against the book.

The book (`tests.support.alert_book`) is written through `AlertBook.record`; the real app
serves it over HTTP from a thread on a fixed clock, and a second app serves a campus with no
book. The browser runs in New York: every time on the page must be on the site's clock
(Asia/Kolkata).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support import alert_book as ab
from tests.support.net import free_port

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import parse_config

pytestmark = pytest.mark.slow

SITE = ZoneInfo(ab.ZONE)
ANSWERED = "() => document.getElementById('alerts').dataset.configured !== undefined"
READ = """() => {
  const banner = document.getElementById('alert-banner');
  const rows = (id) => [...document.getElementById(id).tBodies[0].rows].map((tr) => ({
    key: tr.dataset.key, cells: [...tr.cells].map((c) => c.textContent.trim()),
    times: [...tr.querySelectorAll('time')].map((t) => t.getAttribute('datetime')) }));
  return {
    banner: { shown: !banner.hidden, role: banner.getAttribute('role'),
      severity: banner.dataset.severity, count: banner.dataset.count,
      text: document.getElementById('alert-banner-text').textContent },
    panel: !document.getElementById('alerts').hidden,
    active: rows('alerts-active'), recent: rows('alerts-recent'),
    none: !document.getElementById('alerts-none').hidden,
    silences: document.getElementById('alerts-silences').textContent,
  };
}"""


@dataclass(frozen=True)
class Served:
    base: str


@pytest.fixture(scope="module", params=["book", "no-book"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    from werkzeug.serving import make_server

    folder: Path = tmp_path_factory.mktemp(request.param)
    config = parse_config(ab.config_data(folder))
    if request.param == "book":
        ab.write_book(config.alerts.state_path)
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: ab.NOW_MS / 1000)
    server = make_server("127.0.0.1", free_port(), app)
    thread = threading.Thread(target=server.serve_forever, name="alerts-page-server")
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        source.close()


def open_page(browser: Any, served: Served) -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    context.clock.set_fixed_time(ab.NOW_MS / 1000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    page.goto(served.base + "/")
    page.wait_for_function(ANSWERED)
    return page


def site_time(ms: int | None) -> str:
    assert ms is not None
    at = datetime.fromtimestamp(ms / 1000, UTC).astimezone(SITE)
    return f"{at.day} {at:%b}, {at:%H:%M}"


@pytest.mark.parametrize("served", ["book"], indirect=True)
def test_the_banner_and_the_panel_show_the_book(browser: Any, served: Served) -> None:
    page = open_page(browser, served)
    try:
        page.wait_for_function("() => !document.getElementById('alert-banner').hidden")
        seen = page.evaluate(READ)
        night = ab.STATES[0]
        assert seen["banner"] == {
            "shown": True,
            "role": "alert",
            "severity": "critical",  # the most severe firing alert's
            "count": "2",
            "text": f"2 alerts firing — night-load campus ({night.detail}) and 1 more",
        }
        assert seen["panel"] and not seen["none"]
        assert [r["key"] for r in seen["active"]] == [f"{s.rule}/{s.subject}" for s in ab.ACTIVE]
        assert [r["cells"] for r in seen["active"]] == [
            [ab.KINDS[s.rule][2], s.rule, s.subject, s.phase, site_time(s.since_ms), s.detail]
            for s in ab.ACTIVE
        ]
        assert [r["times"] for r in seen["active"]] == [[ab.iso(s.since_ms)] for s in ab.ACTIVE]
        assert ab.SILENT_DETAIL in seen["active"][1]["cells"]
        week = [e for e in reversed(ab.EVENTS) if e.at_ms >= ab.NOW_MS - 7 * ab.DAY]
        words = {"firing": "fired", "resolved": "resolved"}
        assert [r["cells"] for r in seen["recent"]] == [
            [site_time(e.at_ms), words[e.event], e.severity, e.rule, e.subject, e.detail]
            for e in week
        ]
        assert seen["silences"] == ""
        check_accessible(page)
        page.click("#alert-banner-dismiss")
        page.wait_for_function("() => document.getElementById('alert-banner').hidden")
        page.reload()  # dismissed for the session: it stays away
        page.wait_for_function(ANSWERED)
        page.wait_for_function(
            "() => document.querySelectorAll('#alerts-active tbody tr').length === 3"
        )
        assert page.evaluate(READ)["banner"]["shown"] is False
        assert not page.problems, page.problems
    finally:
        page.context.close()


@pytest.mark.parametrize("served", ["no-book"], indirect=True)
def test_without_a_book_nothing_of_alerts_shows(browser: Any, served: Served) -> None:
    page = open_page(browser, served)
    try:
        seen = page.evaluate(READ)
        assert seen["banner"]["shown"] is False and seen["panel"] is False
        assert seen["active"] == [] and seen["recent"] == []
        assert "alerts firing" not in page.inner_text("body")
        assert not page.problems, page.problems
    finally:
        page.context.close()


def check_accessible(page: Any) -> None:
    """The alerts' tables have column headers and a name; the panel is named by its heading."""
    found = page.evaluate(
        """() => [...document.querySelectorAll('#alerts table')].map((t) => [t.id,
            [...t.tHead.rows[0].cells].every((c) => c.tagName === 'TH' && c.scope === 'col'),
            !!(t.caption || t.getAttribute('aria-labelledby'))])"""
    )
    assert found and all(headed and named for _, headed, named in found), found
    assert page.get_attribute("#alerts", "aria-labelledby") == "alerts-heading"
