"""The API of an estate of sites (tests/support/sites.py), against the books of each site.

One store for the module, written through the real SQLite sink: three sites in Berlin (the
store's zone), New York (on its 25-hour day) and Tokyo (no daylight-saving time). With
`site=` every figure is that site's meters' windows summed over days and hours of that
site's own zone; without it, the whole estate on the default site's clock, as a single-site
deployment answers. An app serving one site (`api.site`) answers as `site=` of it does and
shows nothing of the others.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from tests.support import known_windows as fx
from tests.support import sites as st
from tests.support.stores import postgres_schema

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import parse_config
from campus_energy.core.alerts import AlertState, Transition
from campus_energy.incidents.store import AlertBook

MINUTE = 60_000
# every endpoint that takes site= (and what it answers with)
SITED = [
    "/api/health",
    "/api/meters",
    "/api/summary",
    "/api/aggregate/campus",
    "/api/aggregate/building/Dock",
    "/api/series",
    "/api/series?step=1d",
    "/api/export.csv",
    "/api/cost",
    "/api/cost/overview",
    "/api/demand",
    "/api/bills",
    "/api/bills.csv",
    "/api/bills.xlsx",
    "/api/buildings",
    "/api/alerts",
]


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, st.Books]:
    folder = tmp_path_factory.mktemp("estate")
    items = st.write(folder / "windows.db")
    _write_book(folder / "alerts.db")
    return folder, st.Books(items)


@pytest.fixture(scope="module")
def books(estate: tuple[Path, st.Books]) -> st.Books:
    return estate[1]


def _client(folder: Path, **api: Any) -> Iterator[FlaskClient]:
    config = st.config_for(folder / "windows.db", folder / "alerts.db", **api)
    source = open_source(config)
    try:
        yield create_app(config, source=source, clock=lambda: st.NOW_MS / 1000).test_client()
    finally:
        source.close()


@pytest.fixture(scope="module")
def client(estate: tuple[Path, st.Books]) -> Iterator[FlaskClient]:
    """The whole estate's API."""
    yield from _client(estate[0])


@pytest.fixture(scope="module")
def served(estate: tuple[Path, st.Books]) -> Iterator[FlaskClient]:
    """An API serving the east site only (`api.site`)."""
    yield from _client(estate[0], site="east")


def get(client: FlaskClient, url: str, status: int = 200) -> Any:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    return response.get_json() if response.mimetype == "application/json" else response.data


def with_site(url: str, site: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}site={site}"


def kwh(wh: float) -> float:
    return round(wh / 1000, 6)


def today(site: str) -> date:
    return st.local_day(st.NOW_MS, st.ZONES[site])


# -- /api/sites -----------------------------------------------------------------------------------


def test_sites_are_listed_with_their_meters_and_today_on_their_own_clock(
    client: FlaskClient, books: st.Books
) -> None:
    sites = get(client, "/api/sites")["sites"]
    assert [s["id"] for s in sites] == ["north", "east", "south"]  # the default first
    for found in sites:
        site = found["id"]
        zone = st.ZONES[site]
        meters = st.meters_of(site)
        counted = st.meters_of(site, counted=True)
        day = today(site)
        latest = {m: books.latest(m) for m in meters}
        online = {m for m, w in latest.items() if w is not None}  # each ended just now
        assert found["name"] == st.NAMES[site] and found["timezone"] == zone.key
        assert found["default"] is (site == "north")
        assert (found["meters"], found["meters_online"]) == (len(meters), len(online))
        assert found["buildings"] == st.buildings_of(site)
        assert found["today"] == day.isoformat()
        assert found["today_kwh"] == pytest.approx(
            kwh(books.days(counted, day, day, zone).energy_wh), abs=1e-6
        )
        power = sum(w.power_w for m, w in latest.items() if w is not None and m in counted)
        assert found["power_w"] == pytest.approx(power, abs=1e-3)
        last = max(w.start_ms for w in latest.values() if w is not None)
        assert found["last_window"] == st.iso(last)
    assert sites[1]["today"] == "2026-11-01" and sites[0]["today"] == "2026-11-02"


# -- the figures of one site, cut in its own zone -------------------------------------------------


@pytest.mark.parametrize("site", st.SITES)
def test_a_sites_summary_counts_its_meters_on_its_own_clock(
    client: FlaskClient, books: st.Books, site: str
) -> None:
    zone, day = st.ZONES[site], today(site)
    week, month = day - timedelta(days=day.weekday()), day.replace(day=1)
    counted = st.meters_of(site, counted=True)
    body = get(client, f"/api/summary?site={site}")
    assert body["site"] == site and body["timezone"] == zone.key
    assert body["meters"] == len(st.meters_of(site))
    for key, first in (("today_kwh", day), ("week_kwh", week), ("month_kwh", month)):
        expected = kwh(books.days(counted, first, day, zone).energy_wh)
        assert body[key] == pytest.approx(expected, abs=1e-6), key
    for building in body["buildings"]:
        own = {m for m in counted if st.site_of(m) == site and _building(m) == building["building"]}
        expected = kwh(books.days(own, week, day, zone).energy_wh)
        assert building["week_kwh"] == pytest.approx(expected, abs=1e-6), building
    assert {b["building"] for b in body["buildings"]} == set(st.buildings_of(site)) | (
        {""} if site == "north" else set()  # old-1, in no building
    )


def _building(meter: str) -> str:
    return st.METERS[meter][1] if meter in st.METERS else st.STORE_ONLY[meter][1]


@pytest.mark.parametrize("site", st.SITES)
def test_a_sites_days_are_its_local_days(client: FlaskClient, books: st.Books, site: str) -> None:
    zone = st.ZONES[site]
    counted = st.meters_of(site, counted=True)
    body = get(client, f"/api/series?site={site}&step=1d")
    expected = books.per_day(counted, zone)
    first = today(site) - timedelta(days=29)
    assert [p["date"] for p in body["points"]] == [
        d.isoformat() for d in sorted(expected) if d >= first
    ]
    for point in body["points"]:
        day = date.fromisoformat(point["date"])
        assert point["t"] == st.iso(st.midnight(day, zone))
        assert point["energy_wh"] == pytest.approx(expected[day], abs=1e-6), day
    if site == "east":  # 1 November lasts 25 hours in New York
        (dst,) = [p for p in body["points"] if p["date"] == "2026-11-01"]
        covered = books.days(counted, date(2026, 11, 1), date(2026, 11, 1), zone).readings * 300
        assert dst["coverage"] == pytest.approx(covered / (25 * 3600 * len(counted)), abs=1e-6)


@pytest.mark.parametrize("site", ["east", "south"])
def test_a_sites_hours_are_its_local_hours(client: FlaskClient, books: st.Books, site: str) -> None:
    """A site's hours are the store's clock hours (New York's repeated 01:00 twice)."""
    zone = st.ZONES[site]
    span = "start=2026-11-01T03:00:00Z&end=2026-11-01T09:00:00Z"
    body = get(client, f"/api/series?site={site}&step=1h&{span}")
    expected = books.per_step(st.meters_of(site, counted=True), {"zone": zone})
    lo, hi = st.instant("2026-11-01T03:00:00Z"), st.instant("2026-11-01T09:00:00Z")
    hours = sorted(h for h in expected if lo - 3_600_000 < h < hi)
    assert [p["t"] for p in body["points"]] == [st.iso(h) for h in hours]
    for point, hour in zip(body["points"], hours, strict=True):
        assert point["energy_wh"] == pytest.approx(expected[hour], abs=1e-6)
    if site == "east":  # 01:00 EDT and 01:00 EST
        assert {"2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z"} <= {p["t"] for p in body["points"]}


RANGES = [
    ("east", date(2026, 11, 1), date(2026, 11, 1)),  # 25 hours
    ("east", date(2026, 10, 5), date(2026, 11, 1)),  # whole store days in the middle
    ("east", date(2026, 10, 30), date(2026, 10, 31)),
    ("south", date(2026, 10, 24), date(2026, 10, 26)),  # Berlin's 25 hours inside
    ("south", date(2026, 11, 2), date(2026, 11, 2)),
    ("north", date(2026, 10, 25), date(2026, 11, 2)),
]


@pytest.mark.parametrize(("site", "first", "last"), RANGES)
def test_a_sites_aggregate_is_summed_over_its_local_days(
    client: FlaskClient, books: st.Books, site: str, first: date, last: date
) -> None:
    zone = st.ZONES[site]
    body = get(client, f"/api/aggregate/campus?site={site}&start_date={first}&end_date={last}")
    sums = books.days(st.meters_of(site), first, last, zone)  # every meter, as the original
    assert body["total_energy_kwh"] == pytest.approx(kwh(sums.energy_wh), abs=1e-6)
    assert body["readings_processed"] == sums.readings
    assert body["meters_found"] == len(sums.meters)
    assert body["last_reading_in_range"] == st.iso(sums.last_ms)
    assert body["time_range_start"] == st.iso(st.midnight(first, zone))
    assert body["time_range_end"] == st.iso(st.midnight(last + timedelta(days=1), zone))
    assert body["timezone"] == zone.key and body["site"] == site


def test_a_building_is_found_in_its_own_site_only(client: FlaskClient, books: st.Books) -> None:
    first, last = date(2026, 10, 10), date(2026, 11, 1)
    url = f"/api/aggregate/building/Dock?start_date={first}&end_date={last}"
    body = get(client, with_site(url, "east"))
    dock = {m for m in st.meters_of("east") if _building(m) == "Dock"}  # east-x too
    expected = books.days(dock, first, last, st.ZONES["east"])
    assert body["total_energy_kwh"] == pytest.approx(kwh(expected.energy_wh), abs=1e-6)
    assert body["meters_found"] == 3
    for other in ("north", "south"):
        assert "Dock" in get(client, with_site(url, other), 404)["error"]
    assert "hall-main" in get(client, "/api/series?site=east&meter=hall-main", 404)["error"]
    assert "hall-rest" in get(client, "/api/series?site=east&virtual=hall-rest", 404)["error"]
    series = get(client, "/api/series?site=east&virtual=dock-sum&step=1h")
    assert series["scope"] == "virtual" and series["points"]


@pytest.mark.parametrize("site", ["east", "south"])
def test_a_sites_export_holds_its_series(client: FlaskClient, site: str) -> None:
    query = f"site={site}&step=1d&start=2026-10-20"
    series = get(client, f"/api/series?{query}")["points"]
    rows = list(csv.DictReader(io.StringIO(get(client, f"/api/export.csv?{query}").decode())))
    assert [r["t"] for r in rows] == [p["t"] for p in series]
    assert [float(r["energy_wh"]) for r in rows] == [p["energy_wh"] for p in series]


def test_the_whole_estate_is_one_campus_on_the_default_sites_clock(
    client: FlaskClient, books: st.Books
) -> None:
    """Without site=, every meter, days of [site].timezone: a single site's answers."""
    zone, day = st.ZONES["north"], today("north")
    counted = frozenset().union(*(st.meters_of(s, counted=True) for s in st.SITES))
    every = frozenset().union(*(st.meters_of(s) for s in st.SITES))
    body = get(client, "/api/summary")
    assert "site" not in body and body["timezone"] == zone.key
    expected = kwh(books.days(counted, day.replace(day=1), day, zone).energy_wh)
    assert body["month_kwh"] == pytest.approx(expected, abs=1e-6)
    first, last = date(2026, 10, 5), date(2026, 11, 1)
    total = get(client, f"/api/aggregate/campus?start_date={first}&end_date={last}")
    expected = kwh(books.days(every, first, last, zone).energy_wh)
    assert total["total_energy_kwh"] == pytest.approx(expected, abs=1e-6)
    meters = {m["meter_id"]: m["site"] for m in get(client, "/api/meters")["meters"]}
    assert meters == {m: st.site_of(m) for m in every | {"office-2"}}


VIRTUAL = {"dock-sum": {"dock-1", "dock-2"}}


@pytest.fixture(scope="module")
def postgres_estate() -> Iterator[FlaskClient]:
    """The estate's windows written once to a PostgreSQL schema of its own."""
    with postgres_schema() as (dsn, schema):
        sink = {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
        st.write(sink)
        config = st.config_for(sink)
        source = open_source(config)
        try:
            yield create_app(config, source=source, clock=lambda: st.NOW_MS / 1000).test_client()
        finally:
            source.close()


@pytest.mark.parametrize("site", st.SITES)
def test_a_sites_figures_from_postgresql_are_its_books(
    postgres_estate: FlaskClient, books: st.Books, site: str
) -> None:
    """The same days of each site from PostgreSQL's rollups: today, this month, a long range
    and each day of the last 30."""
    client, zone, day = postgres_estate, st.ZONES[site], today(site)
    counted = st.meters_of(site, counted=True)
    summary = get(client, f"/api/summary?site={site}")
    for key, first in (("today_kwh", day), ("month_kwh", day.replace(day=1))):
        expected = kwh(books.days(counted, first, day, zone).energy_wh)
        assert summary[key] == pytest.approx(expected, abs=1e-6), key
    first, last = date(2026, 10, 5), date(2026, 11, 1)
    total = get(client, f"/api/aggregate/campus?site={site}&start_date={first}&end_date={last}")
    sums = books.days(st.meters_of(site), first, last, zone)
    assert total["total_energy_kwh"] == pytest.approx(kwh(sums.energy_wh), abs=1e-6)
    assert (total["readings_processed"], total["last_reading_in_range"]) == (
        sums.readings,
        st.iso(sums.last_ms),
    )
    per_day = books.per_day(counted, zone)
    for point in get(client, f"/api/series?site={site}&step=1d")["points"]:
        expected = per_day[date.fromisoformat(point["date"])]
        assert point["energy_wh"] == pytest.approx(expected, abs=1e-6)


# -- billing per site -----------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["east", "south"])
def test_a_sites_bills_and_demand_are_of_its_months(
    client: FlaskClient, books: st.Books, site: str
) -> None:
    zone = st.ZONES[site]
    configured = {m for m in st.METERS if st.METERS[m][0] == site}
    body = get(client, f"/api/bills?site={site}&month=2026-10")
    assert body["timezone"] == zone.key
    assert [b["account"] for b in body["bills"]] == st.buildings_of(site)
    for bill in body["bills"]:
        for meter in bill["meter_energy"]:
            members = VIRTUAL.get(meter["id"], {meter["id"]})
            wh = books.days(members, date(2026, 10, 1), date(2026, 10, 31), zone).energy_wh
            assert float(meter["energy_kwh"]) == pytest.approx(wh / 1000, abs=1e-3)
    demand = get(client, f"/api/demand?site={site}&start_date=2026-10-01&end_date=2026-10-31")
    quarters: dict[int, float] = {}
    lo, hi = st.midnight(date(2026, 10, 1), zone), st.midnight(date(2026, 11, 1), zone)
    for w in books.items:
        if w.meter_id in configured and lo <= w.start_ms < hi:
            quarter = w.start_ms - w.start_ms % 900_000
            quarters[quarter] = quarters.get(quarter, 0.0) + w.energy_wh
    peak_start, peak_wh = max(quarters.items(), key=lambda q: (q[1], -q[0]))
    (october,) = [p for p in demand["monthly_peaks"] if p["month"] == "2026-10"]
    assert float(october["kw"]) == pytest.approx(peak_wh * 4 / 1000, abs=1e-3)
    assert october["start"] == st.iso(peak_start).replace("Z", ".000Z")


def test_a_sites_cost_is_of_its_own_accounts(client: FlaskClient, books: st.Books) -> None:
    zone = st.ZONES["east"]
    configured = {m for m in st.METERS if st.METERS[m][0] == "east"}
    body = get(client, "/api/cost?site=east&start_date=2026-10-05&end_date=2026-10-31")
    wh = books.days(configured, date(2026, 10, 5), date(2026, 10, 31), zone).energy_wh
    assert float(body["energy_kwh"]) == pytest.approx(wh / 1000, abs=2e-3)
    assert [a["scope"]["name"] for a in body["accounts"]] == ["Dock", "Office"]
    overview = get(client, "/api/cost/overview?site=east")
    assert overview["today"]["date"] == "2026-11-01"
    assert {b["name"] for b in overview["buildings"]} == {"Dock", "Office"}
    model = get(client, "/api/buildings?site=east")
    assert [b["name"] for b in model["buildings"]] == ["Dock", "Office"]
    assert model["timezone"] == zone.key


# -- api.site: one site as if the others did not exist ---------------------------------------------

OTHERS = {  # what of the other sites must never show on east's API
    "meters": ["hall-main", "hall-f1", "lab-1", "old-1", "gate-1"],
    "buildings": ["Hall", "Lab", "Gate"],
    "sites": ["north", "south", "North Campus", "South Campus"],
    "virtual": ["hall-rest"],
}


@pytest.mark.parametrize("url", ["/api/sites", *SITED])
def test_a_served_site_answers_as_its_site_of_the_estate(
    client: FlaskClient, served: FlaskClient, url: str
) -> None:
    """Every endpoint of an API serving east equals the estate's site=east and names nothing
    of another site; site=east is the same answer, another site unknown."""
    mine = served.get(url)
    assert mine.status_code == 200, (url, mine.data[:300])
    text = _text(mine.data, mine.mimetype)
    for kind, names in OTHERS.items():
        for name in names:
            assert f'"{name}"' not in text and f",{name}," not in text, (url, kind, name)
    if url == "/api/sites":
        assert [s["id"] for s in mine.get_json()["sites"]] == ["east"]
        return
    assert _parts(served.get(with_site(url, "east"))) == _parts(mine)
    assert _parts(mine) == _parts(client.get(with_site(url, "east"))), url
    for other in ("north", "south"):
        answer = served.get(with_site(url, other))
        assert answer.status_code == 404 and other in answer.get_json()["error"], url


def _parts(response: Any) -> dict[str, bytes]:
    """An answer's body; a workbook's parts but its properties (they hold the time made)."""
    if not response.mimetype.endswith("sheet"):
        return {"": response.data}
    with zipfile.ZipFile(io.BytesIO(response.data)) as book:
        return {n: book.read(n) for n in book.namelist() if not n.startswith("docProps/")}


def _text(data: bytes, mimetype: str) -> str:
    """An answer as text: a workbook's shared strings and sheets, else the body."""
    if mimetype.endswith("sheet"):
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            return "".join(
                book.read(n).decode().replace(">", '>"').replace("<", '"<')
                for n in book.namelist()
                if n.endswith(".xml")
            )
    text = data.decode()
    return text if mimetype == "application/json" else "," + text.replace("\n", ",\n,") + ","


def test_a_served_sites_figures_are_its_own(served: FlaskClient, books: st.Books) -> None:
    zone, day = st.ZONES["east"], today("east")
    health = get(served, "/api/health")
    assert (health["meters"], health["timezone"]) == (len(st.meters_of("east")), zone.key)
    total = get(served, f"/api/aggregate/campus?start_date={day}")
    expected = books.days(st.meters_of("east"), day, day, zone)
    assert total["total_energy_kwh"] == pytest.approx(kwh(expected.energy_wh), abs=1e-6)
    meters = {m["meter_id"] for m in get(served, "/api/meters")["meters"]}
    assert meters == st.meters_of("east") | {"office-2"}
    assert "Hall" in get(served, "/api/aggregate/building/Hall", 404)["error"]
    assert "gate-1" in get(served, "/api/series?meter=gate-1", 404)["error"]


# -- the site parameter: malformed, unknown -------------------------------------------------------

MALFORMED = ["North", "a b", "../north", "east\n", "éast", "east;drop", "east%00", "*"]


@pytest.mark.parametrize("url", SITED)
def test_a_malformed_site_is_a_400_and_an_unknown_one_a_404(client: FlaskClient, url: str) -> None:
    for value in MALFORMED:
        response = client.get(with_site(url, quote(value)))
        assert response.status_code == 400, (url, value, response.data[:200])
        assert response.get_json()["error"].startswith("site:"), (url, value)
    response = client.get(with_site(url, "nowhere"))
    assert response.status_code == 404, (url, response.data[:200])
    assert "unknown site 'nowhere'" in response.get_json()["error"]


def test_site_of_a_single_site_estate_is_the_whole(tmp_path: Path) -> None:
    """A deployment of one site answers site=<its id> as it answers without."""
    config = fx.config_for(tmp_path)
    fx.write(config, fx.windows())
    source = open_source(config)
    try:
        client = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000).test_client()
        for url in ["/api/summary", "/api/series?step=1d", "/api/aggregate/campus", "/api/cost"]:
            whole = get(client, url)
            assert get(client, with_site(url, "main")) == {**whole, "site": "main"}, url
        assert get(client, "/api/sites")["sites"][0]["id"] == "main"
    finally:
        source.close()


# -- alerts ---------------------------------------------------------------------------------------

ALERTS = [  # rule, subject, phase
    ("silent", "dock-1", "firing"),
    ("silent", "gate-1", "firing"),
    ("silent", "hall-main", "pending"),
    ("dock-hours", "Dock", "firing"),
    ("estate-load", "campus", "firing"),
]
SILENCES = [("silent", "gate-1"), ("dock-hours", None), ("gate-cover", None), (None, None)]


def _write_book(path: Path) -> None:
    now = st.NOW_MS
    kinds = {r["name"]: (r["kind"], r["scope"]) for r in st.RULES}
    with AlertBook(path) as book:
        for rule, subject, phase in ALERTS:
            fired = now - 10 * MINUTE if phase == "firing" else None
            transition = Transition(rule, subject, "firing", now - 10 * MINUTE, "warning", 1.0, "")
            if fired is not None:
                kind, scope = kinds[rule]
                book.record([], [(transition, kind, scope, ())], fired, kinds=kinds)
        book.record(
            [
                AlertState(
                    rule,
                    subject,
                    phase,
                    now - 10 * MINUTE,
                    holds_since_ms=now - 15 * MINUTE,
                    fired_ms=now - 10 * MINUTE if phase == "firing" else None,
                    notified_ms=now - 10 * MINUTE if phase == "firing" else None,
                    value=1.0,
                    detail="",
                )
                for rule, subject, phase in ALERTS
            ],
            [],
            now,
            kinds=kinds,
        )
        for rule, subject in SILENCES:
            book.silence(rule, subject, now + 60 * MINUTE, "ops", now - MINUTE)


@pytest.mark.parametrize(
    ("site", "active", "silences"),
    [
        ("east", {"dock-1", "Dock"}, {("dock-hours", None), (None, None)}),
        ("north", {"hall-main"}, {(None, None)}),
        ("south", {"gate-1"}, {("silent", "gate-1"), ("gate-cover", None), (None, None)}),
        ("", {s for _, s, _ in ALERTS}, set(SILENCES)),
    ],
)
def test_a_sites_alerts_are_those_of_its_meters_and_buildings(
    client: FlaskClient, site: str, active: set[str], silences: set[tuple[str | None, ...]]
) -> None:
    body = get(client, f"/api/alerts?site={site}")
    assert body["configured"] is True
    assert {a["subject"] for a in body["active"]} == active
    assert {r["subject"] for r in body["recent"]} <= active
    assert {(s["rule"], s["subject"]) for s in body["silences"]} == silences
    assert ("campus" in {a["subject"] for a in body["active"]}) is not bool(site)


def test_the_estates_cost_cuts_every_account_at_the_estates_midnights(
    client: FlaskClient, books: st.Books
) -> None:
    """Without `site`, days are [site].timezone's for every account (docs/api.md), a New
    York account's too: the sum of the accounts is the books cut at Berlin's midnights."""
    zone = st.ZONES["north"]
    counted = set().union(*(st.meters_of(s, counted=True) for s in st.SITES))
    counted &= set(st.METERS)  # the accounts hold configured meters only
    body = get(client, "/api/cost?start_date=2026-10-05&end_date=2026-10-31")
    wh = books.days(counted, date(2026, 10, 5), date(2026, 10, 31), zone).energy_wh
    assert float(body["energy_kwh"]) == pytest.approx(wh / 1000, abs=5e-3)
    overview = get(client, "/api/cost/overview")
    assert overview["today"]["date"] == "2026-11-02"  # Berlin's, not New York's 1 November
    today = books.days(counted, date(2026, 11, 2), date(2026, 11, 2), zone).energy_wh
    assert float(overview["today"]["energy_kwh"]) == pytest.approx(today / 1000, abs=5e-3)


def test_a_served_site_acts_on_its_own_alerts_only(
    estate: tuple[Path, st.Books], tmp_path: Path
) -> None:
    """An API serving east acknowledges and silences east's alerts, and answers 404 for
    another site's and for the estate's."""
    folder = estate[0]
    book = tmp_path / "alerts.db"
    book.write_bytes((folder / "alerts.db").read_bytes())  # the module's book stays as it is
    (tmp_path / "token").write_text("s3cret-token\n", "utf-8")
    data = st.config_data(folder / "windows.db", book, site="east")
    data["alerts"]["api_token_file"] = str(tmp_path / "token")
    config = parse_config(data)
    source = open_source(config)
    try:
        client = create_app(config, source=source, clock=lambda: st.NOW_MS / 1000).test_client()
        auth = {"Authorization": "Bearer s3cret-token"}

        def post(url: str, body: dict[str, Any]) -> int:
            return client.post(url, json=body, headers=auth).status_code

        assert post("/api/alerts/ack", {"rule": "silent", "subject": "gate-1"}) == 404  # south's
        assert post("/api/alerts/ack", {"rule": "estate-load", "subject": "campus"}) == 404
        assert post("/api/alerts/ack", {"rule": "silent", "subject": "dock-1"}) == 200  # east's
        assert post("/api/alerts/silence", {"rule": "gate-cover", "for": "1h"}) == 404
        assert post("/api/alerts/silence", {"rule": "silent", "for": "1h"}) == 404  # estate
        assert post("/api/alerts/silence", {"rule": "dock-hours", "for": "1h"}) == 200
        with AlertBook(book) as held:
            others = [x.id for x in held.silences(st.NOW_MS) if x.rule == "gate-cover"]
        assert others and post("/api/alerts/unsilence", {"id": others[0]}) == 404
    finally:
        source.close()


def test_a_sites_daily_series_from_hours_counts_its_hour_rows(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """East's days are summed from the store's hours: a daily series reads 24 rows a day and
    meter, and its budget counts them; north's days are the store's and read one row."""
    from campus_energy.api import views

    monkeypatch.setattr(views, "MAX_HOUR_ROWS", 1_000)
    url = "/api/series?step=1d&start=2026-10-01T00:00:00Z&end=2026-10-31T00:00:00Z"
    refused = get(client, url + "&site=east", status=400)
    assert "start" in refused["error"] and "America/New_York" in refused["error"]
    get(client, url + "&site=north")  # 30 daily rows a meter: within MAX_ROWS
