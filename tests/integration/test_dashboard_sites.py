"""The local dashboard over a store of two sites' meters: one site at a time, each figure the
books of that site's readings cut at that site's own local midnight.

A logger without `logger.site` polls the meters of both sites of the estate (the store is
written with the logger's own store code, the rows of
`tests.support.dashboard_books.meter_readings`, every 10 minutes from 18 May 2026):
- "north", the default site, Berlin Campus (Europe/Berlin): buildings Aula and Mensa, and
  old-1, a meter only the store knows (so the logger's site: the default one);
- "east", New York Campus (America/New_York): buildings Pier and Loft.
Now is 03:30:10 UTC on Monday 1 June 2026: 05:30 on Monday 1 June in Berlin (today, this
week and this month began at 22:00 UTC), 23:30 on Sunday 31 May in New York (today began
at 04:00 UTC on the 31st, the week on Monday 25 May, the month on 1 May). So every
"today", week, month and day of the two sites is cut at a different instant, and a figure
cut in the wrong zone differs from the books.

A book of alerts holds alerts of each site's meters and buildings, one of the whole
estate (no site's) and a silence of each site.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from tests.support.config import campus_meters, write_toml
from tests.support.dashboard_books import Books, Scenario, meter_readings

from campus_energy.core.alerts import AlertState, Transition
from campus_energy.core.readings import Reading
from campus_energy.incidents.store import AlertBook
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
READINGS = Scenario("UTC", (2026, 5, 18, 0, 0), (2026, 6, 1, 3, 30, 10), 600)
NOW_MS = READINGS.at(READINGS.now)
SITES = {  # id: (name, time zone); the default site first
    "north": ("Berlin Campus", "Europe/Berlin"),
    "east": ("New York Campus", "America/New_York"),
}
METERS = {  # the configuration's: id -> (site, building, floor)
    "aula-1": ("north", "Aula", "0"),
    "aula-2": ("north", "Aula", "1"),
    "mensa-1": ("north", "Mensa", "0"),
    "pier-1": ("east", "Pier", "0"),
    "pier-2": ("east", "Pier", "1"),
    "loft-1": ("east", "Loft", "3"),
}
STORE_ONLY = "old-1"  # no building, not configured: the logger's site, the default one
KPIS = ("Today (kWh)", "This week (kWh)", "This month (kWh)")
MINUTE = 60_000
TODAY, DAY = date(2026, 6, 1), timedelta(days=1)  # in Berlin; New York's is the day before
RULES = [
    {"name": "silent", "kind": "meter-silent", "scope": "campus"},
    {"name": "pier-load", "kind": "baseline-deviation", "scope": "building:Pier"},
    {"name": "estate-load", "kind": "baseline-deviation", "scope": "campus"},
]
KINDS = {r["name"]: (r["kind"], r["scope"]) for r in RULES}
STATES = [  # at NOW_MS
    AlertState("silent", "mensa-1", "firing", NOW_MS - 20 * MINUTE, fired_ms=NOW_MS - 20 * MINUTE),
    AlertState("silent", "loft-1", "firing", NOW_MS - 15 * MINUTE, fired_ms=NOW_MS - 15 * MINUTE),
    AlertState("silent", STORE_ONLY, "firing", NOW_MS - 9 * MINUTE, fired_ms=NOW_MS - 9 * MINUTE),
    AlertState("pier-load", "Pier", "pending", NOW_MS - 5 * MINUTE),
    AlertState("estate-load", "campus", "firing", NOW_MS - 30 * MINUTE),
]
SILENCED = [("silent", "aula-2"), ("silent", "pier-1"), (None, None)]  # (rule, subject)
# what each site's Alerts tab lists: the estate's alert and the silence of everything
# are no one site's, the silence of everything reaches every site
ALERTS = {"north": {"mensa-1", STORE_ONLY}, "east": {"loft-1", "Pier"}}
SILENCES = {"north": {"aula-2", "(every subject)"}, "east": {"pier-1", "(every subject)"}}


def site_meters(site: str) -> set[str]:
    """The meters the site's views show: the configured ones, and the store's own."""
    found = {m for m, (s, *_) in METERS.items() if s == site}
    return found | ({STORE_ONLY} if site == "north" else set())


def traces(site: str) -> set[str]:
    """What of a site may appear in a page: its meters' ids and its buildings."""
    return site_meters(site) | {b for s, b, _ in METERS.values() if s == site}


def other(site: str) -> str:
    return next(s for s in SITES if s != site)


# -- the store, the book and the configuration ---------------------------------------------


def write_store(path: Path) -> None:
    readings: list[Reading] = []
    gaps: list[Any] = []
    for index, meter in enumerate([*METERS, STORE_ONLY]):
        rows, found = meter_readings(meter, index, READINGS)
        readings += rows
        gaps += found
    places = {m: (b, f) for m, (_, b, f) in METERS.items()} | {STORE_ONLY: ("", "")}

    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register(
                MeterRecord(m, b, f, "eastron-sdm120") for m, (b, f) in places.items()
            )
            await store.insert_many(readings)
            await store.commit(Cycle(gaps=gaps))
        finally:
            await store.close()

    asyncio.run(go())


def write_book(path: Path) -> None:
    with AlertBook(path) as book:
        for state in STATES:
            if state.fired_ms is not None:
                kind, scope = KINDS[state.rule]
                event = Transition(
                    state.rule, state.subject, "firing", state.fired_ms, "warning", None, ""
                )
                book.record([], [(event, kind, scope, ())], state.fired_ms, kinds=KINDS)
        book.record(STATES, [], NOW_MS, kinds=KINDS)
        for rule, subject in SILENCED:
            book.silence(rule, subject, NOW_MS + 60 * MINUTE, "ops", NOW_MS - MINUTE)


@dataclass(frozen=True)
class Files:
    store: Path
    book: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """The store and the book, written once for every test here (the dashboard only reads)."""
    folder = tmp_path_factory.mktemp("estate")
    found = Files(folder / "store.db", folder / "alerts.db")
    write_store(found.store)
    write_book(found.book)
    return found


def write_config(folder: Path, files: Files, **sections: Any) -> Path:
    (north, north_zone), (east, east_zone) = SITES.values()
    meters = campus_meters({m: (b, f) for m, (_, b, f) in METERS.items()})
    data = {
        "site": {"id": "north", "name": north, "timezone": north_zone},
        "sites": [{"id": "east", "name": east, "timezone": east_zone}],
        "storage": {"path": str(files.store)},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": [{**m, "site": METERS[m["id"]][0]} for m in meters],
        "alerts": {"state_path": str(files.book), "rules": RULES},
        **sections,
    }
    return write_toml(folder / "campus-energy.toml", data)


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: Files) -> Iterator[Any]:
    """open_page(**sections): the dashboard run once at NOW_MS on the estate's config."""

    def go(**sections: Any) -> AppTest:
        config = write_config(tmp_path, files, **sections)
        monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(config))
        now = datetime.fromtimestamp(NOW_MS / 1000, UTC).isoformat()
        monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", now)
        monkeypatch.setattr(sys, "argv", [APP])
        return AppTest.from_file(APP, default_timeout=60).run()

    yield go


# -- what the page shows -----------------------------------------------------------------


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def tab(at: AppTest, label: str) -> Any:
    return next(t for t in at.tabs if t.label == label)


def chart_data(chart: Any) -> pd.DataFrame:
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()


def shown_text(*blocks: Any) -> str:
    """Everything the blocks show, as text: every element's message (labels, options,
    values, captions, chart specs) and the data of every table and chart."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if node.type == "vega_lite_chart":
            for dataset in node.proto.datasets:
                frame = pa.ipc.open_stream(dataset.data.data).read_pandas()
                parts.append(frame.to_csv())
        if node.type in ("arrow_data_frame", "table"):
            parts.append(pd.DataFrame(node.value).to_csv())
        for child in getattr(node, "children", {}).values():
            walk(child)

    for block in blocks:
        walk(block)
    return "\n".join(parts)


def site_selector(at: AppTest) -> Any | None:
    return next((w for w in at.sidebar.selectbox if w.label == "Site"), None)


# -- the books ---------------------------------------------------------------------------


def books(store: Path, site: str) -> Books:
    return Books(store, ZoneInfo(SITES[site][1]), NOW_MS)


def kwh(mwh: int) -> Decimal:
    return (Decimal(mwh) / 1_000_000).quantize(Decimal("0.001"), ROUND_HALF_UP)


def assert_kwh(shown: float, wh: float) -> None:
    """A kWh figure held to 0.001 Wh equals the books' Wh to 1e-6 Wh."""
    assert shown * 1000 == pytest.approx(round(wh, 3), abs=1e-6)


def assert_site(at: AppTest, store: Path, site: str) -> None:
    """Every view shows `site`: its name and zone, its meters, each energy figure the sum
    of its readings' energy_wh over days cut at its own local midnight, its alerts."""
    assert_clean(at)
    b, meters = books(store, site), site_meters(site)
    name, zone = SITES[site]
    assert [t.value for t in at.title] == [f"Campus Energy — {name}"]
    assert f"times in {zone}" in at.caption[0].value
    shown_meters = next(w for w in at.sidebar.multiselect if w.label == "Meters")
    assert set(shown_meters.options) == set(shown_meters.value) == meters

    today = b.local(NOW_MS).date()
    starts = (today, today - timedelta(days=today.weekday()), today.replace(day=1))
    figures = {m.label: float(m.value.replace(",", "")) for m in tab(at, "Overview").metric}
    for label, day in zip(KPIS, starts, strict=True):
        exact = b.wh(meters, b.midnight(day), NOW_MS + 1) / 1000
        assert abs(figures[label] - exact) <= 0.0005 + 1e-9, label  # shown to 1 Wh

    [per_meter] = tab(at, "Overview").get("vega_lite_chart")
    shown = chart_data(per_meter).set_index("meter")
    assert set(shown.index) == meters
    for meter in meters:
        assert_kwh(shown.loc[meter, "energy (kWh)"], b.wh({meter}, b.midnight(today), NOW_MS + 1))

    first = today - timedelta(days=6)  # the sidebar's days
    start, end = b.midnight(first), b.midnight(today + timedelta(days=1))
    per_day = chart_data(tab(at, "History").get("vega_lite_chart")[0])
    expected = b.sums(meters, start, end, lambda r: b.local(r[1]).date().isoformat())
    assert len(per_day) == len(expected)
    for meter, day, shown_kwh in zip(
        per_day["meter"], per_day["day"], per_day["energy (kWh)"], strict=True
    ):
        assert_kwh(shown_kwh, expected[(meter, day)][0])

    cost = tab(at, "Cost & demand")
    scopes = cost.selectbox(key="cost_scope")
    buildings = sorted({bd for s, bd, _ in METERS.values() if s == site})
    configured = sorted(m for m, (s, *_) in METERS.items() if s == site)
    assert scopes.options == [
        "Campus",
        *(f"Building: {bd}" for bd in buildings),
        *(f"Meter: {m}" for m in configured),
    ]
    assert scopes.value == "Campus"
    accounts = [[m for m in configured if METERS[m][1] == bd] for bd in buildings]
    energy = sum(
        (kwh(sum(round(r[7] * 1000) for r in b.rows if r[0] in a and start <= r[1] < end))
         for a in accounts),
        Decimal(0),
    )  # fmt: skip
    figures = {m.label: m.value for m in cost.metric}
    assert Decimal(figures["Energy (kWh)"].replace(",", "")) == energy
    assert f"local days {first.isoformat()} to {today.isoformat()}" in cost.caption[0].value

    alerts = tab(at, "Alerts")
    active, silences = (d.value for d in alerts.dataframe[:2])
    assert set(active["subject"]) == ALERTS[site]
    assert set(silences["subject"]) == SILENCES[site]
    firing = {m.label: m.value for m in alerts.metric}["Firing"]
    assert int(firing) == len(ALERTS[site]) - (site == "east")  # Pier's is pending


def assert_no_trace(text: str, site: str) -> None:
    found = sorted(t for t in traces(site) if t in text)
    assert not found, f"{site}'s {found} shown"


# -- the tests -----------------------------------------------------------------------------


def test_the_site_selector_limits_every_view_to_the_sites_meters_and_zone(
    open_page: Any, files: Files
) -> None:
    north, east = (books(files.store, site) for site in SITES)  # the scenario's days differ
    assert (north.local(NOW_MS).date(), east.local(NOW_MS).date()) == (TODAY, TODAY - DAY)
    at = open_page()
    selector = site_selector(at)
    assert selector is not None
    names = [name for name, _ in SITES.values()]
    assert (selector.options, selector.value) == (names, "north")  # the default site first
    for site in SITES:
        if site != selector.value:
            selector.set_value(site).run()
        assert_site(at, files.store, site)
        tabs = shown_text(at.main, *at.sidebar.multiselect)
        assert_no_trace(tabs, other(site))
        assert all(t in tabs for t in traces(site))  # what is looked for is there to see
        selector = site_selector(at)
        assert selector is not None


def test_dashboard_site_shows_that_site_alone(open_page: Any, files: Files) -> None:
    at = open_page(dashboard={"site": "east"})
    assert site_selector(at) is None
    assert_site(at, files.store, "east")
    everything = shown_text(at.main, at.sidebar)
    assert_no_trace(everything, "north")
    assert SITES["north"][0] not in everything
    assert all(t in everything for t in traces("east"))
