"""The dashboard of an estate of sites (tests/support/sites.py) in real Chromium.

The whole estate's API shows a site picker; choosing a site keeps it in the address, every
request the page makes carries it, the header names the site and every figure shown is that
site's books on its own clock. An API serving one site (`api.site`) shows the page of a
single site: no picker, no site's name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.support import sites as st
from tests.support.net import free_port

from campus_energy.api import create_app
from campus_energy.backends import open_source

pytestmark = pytest.mark.slow

READY = """(site) => document.querySelector('#app').dataset.shownSite === site
  && document.querySelector('#today-kwh').dataset.value !== undefined
  && document.querySelectorAll('#meters tbody tr').length > 0
  && window.campusCharts.daily30d.data !== null"""
READ = """() => ({
  today: Number(document.querySelector('#today-kwh').dataset.value),
  week: Number(document.querySelector('#week-kwh').dataset.value),
  month: Number(document.querySelector('#month-kwh').dataset.value),
  meters: [...document.querySelectorAll('#meters tbody tr')].map((tr) => tr.dataset.key),
  days: window.campusCharts.daily30d.data.map((column) => Array.from(column)),
  name: document.querySelector('#site-name').textContent,
  nameShown: !document.querySelector('#site-name').hidden,
  pickerShown: !document.querySelector('#site-picker').hidden,
  picked: document.querySelector('#site-select').value,
  options: [...document.querySelectorAll('#site-select option')].map((o) => [o.value, o.text]),
  zone: document.querySelector('#site-zone').textContent,
  title: document.title,
  csv: document.querySelector('#bills-csv').getAttribute('href'),
})"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, st.Books]:
    db = tmp_path_factory.mktemp("estate") / "windows.db"
    return db, st.Books(st.write(db))


def _serve(db: Path, **api: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    config = st.config_for(db, **api)
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: st.NOW_MS / 1000)
    server = make_server("127.0.0.1", free_port(), app)
    thread = threading.Thread(target=server.serve_forever, name="sites-page-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        source.close()


@pytest.fixture(scope="module")
def estate(store: tuple[Path, st.Books]) -> Iterator[str]:
    yield from _serve(store[0])


@pytest.fixture(scope="module")
def one_site(store: tuple[Path, st.Books]) -> Iterator[str]:
    yield from _serve(store[0], site="east")


def open_page(browser: Any, base: str, where: str = "/") -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="Europe/London", locale="en-GB"
    )
    context.clock.set_fixed_time(st.NOW_MS / 1000)
    page = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    page.problems, page.requests = problems, requests
    page.goto(base + where)
    return page


def shows_the_books(shown: dict[str, Any], books: st.Books, site: str | None) -> None:
    """Today, this week, this month, the meters and the 30 days drawn are the site's books
    on its clock (site None: the whole estate's on the default site's)."""
    every = st.SITES if site is None else (site,)
    zone = st.ZONES[site or "north"]
    counted = frozenset().union(*(st.meters_of(s, counted=True) for s in every))
    day = st.local_day(st.NOW_MS, zone)
    week = day - timedelta(days=day.weekday())
    firsts = {"today": day, "week": week, "month": day.replace(day=1)}
    for key, first in firsts.items():
        expected = books.days(counted, first, day, zone).energy_wh / 1000
        assert shown[key] == pytest.approx(expected, abs=1e-6), (site, key)
    meters = frozenset().union(*(st.meters_of(s) for s in every))
    configured = {m for m in st.METERS if st.METERS[m][0] in every}
    assert sorted(shown["meters"]) == sorted(meters | configured)
    per_day = books.per_day(counted, zone)
    xs, ys = shown["days"]
    drawn = {datetime.fromtimestamp(x, UTC).date(): y for x, y in zip(xs, ys, strict=True)}
    assert drawn.keys() == {d for d in per_day if d > day - timedelta(days=30)}
    for d, kwh in drawn.items():
        assert kwh == pytest.approx(per_day[d] / 1000, abs=1e-6), (site, d)


def test_the_picker_switches_site_and_every_figure_follows(
    browser: Any, estate: str, store: tuple[Path, st.Books]
) -> None:
    books = store[1]
    page = open_page(browser, estate)
    try:
        page.wait_for_function(READY, arg="")
        page.wait_for_selector("#app[data-sites='3']", state="attached")
        shown = page.evaluate(READ)
        assert shown["pickerShown"] and shown["nameShown"] and shown["name"] == "All sites"
        assert shown["options"] == [["", "All sites"]] + [[s, st.NAMES[s]] for s in st.SITES]
        assert page.get_by_label("Site", exact=True).evaluate("e => e.id") == "site-select"
        shows_the_books(shown, books, None)
        for site in ("east", "south", "north"):
            page.requests.clear()
            page.get_by_label("Site", exact=True).select_option(site)
            page.wait_for_function(READY, arg=site)
            shown = page.evaluate(READ)
            assert parse_qs(urlsplit(page.url).query) == {"site": [site]}
            assert (shown["name"], shown["picked"]) == (st.NAMES[site], site)
            assert shown["zone"] == st.ZONES[site].key
            assert st.NAMES[site] in shown["title"]
            assert shown["csv"].endswith(f"&site={site}")
            shows_the_books(shown, books, site)
            asked = [parse_qs(urlsplit(u).query).get("site") for u in page.requests]
            assert asked and all(a == [site] for a in asked), page.requests
        page.go_back()  # the address keeps the choice: back is the site before
        page.wait_for_function(READY, arg="south")
        assert page.evaluate(READ)["picked"] == "south"
        assert not page.problems, page.problems
    finally:
        page.context.close()


def test_a_site_in_the_address_is_shown_and_an_unknown_one_dropped(
    browser: Any, estate: str, store: tuple[Path, st.Books]
) -> None:
    page = open_page(browser, estate, "/?site=east")
    try:
        page.wait_for_function(READY, arg="east")
        page.wait_for_selector("#app[data-sites='3']", state="attached")
        shown = page.evaluate(READ)
        assert (shown["picked"], shown["name"]) == ("east", "East Campus")
        shows_the_books(shown, store[1], "east")
        page.click("#intensity-ranking a[href='#building=Dock']")  # a building of east's
        page.wait_for_function("() => !document.querySelector('#building-view').hidden")
        page.get_by_label("Site", exact=True).select_option("south")  # Dock is not south's
        page.wait_for_function(READY, arg="south")
        assert page.url.endswith("/?site=south")
        assert page.evaluate("() => document.querySelector('#building-view').hidden")
        assert not page.problems, page.problems
    finally:
        page.context.close()
    page = open_page(browser, estate, "/?site=atlantis")
    try:
        page.wait_for_function(READY, arg="")  # the whole estate, once the sites are known
        page.wait_for_selector("#app[data-sites='3']", state="attached")
        assert urlsplit(page.url).query == ""
        assert page.evaluate(READ)["picked"] == ""
    finally:
        page.context.close()


def test_a_single_site_has_no_picker(
    browser: Any, one_site: str, store: tuple[Path, st.Books]
) -> None:
    page = open_page(browser, one_site)
    try:
        page.wait_for_function(READY, arg="east")
        page.wait_for_selector("#app[data-sites='1']", state="attached")
        shown = page.evaluate(READ)
        assert not shown["pickerShown"] and not shown["nameShown"]
        assert shown["title"] == "Campus Energy" and shown["options"] == []
        shows_the_books(shown, store[1], "east")
        assert not page.problems, page.problems
    finally:
        page.context.close()
