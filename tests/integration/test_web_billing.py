"""The dashboard's money, carbon and demand in real Chromium, against the API and the books.

The campus (Europe/Berlin): "ECE" has a main meter with two sub-meters under it and a
virtual remainder (main - f1 - f2), on the site's two-period tariff (day 07:00-22:00 at
0.30, night at 0.12) with a standing charge per day and a 15-minute demand charge with a
ratchet (half the highest of the 11 months before) and a minimum; "Library" (two
top-level meters) and "Depot" (no floor area) are on a flat tariff; "yard-1" is in no
building. An annual grid factor prices CO₂. Every meter writes three 300 s windows a
quarter hour from 1 October 2026; ECE has a spike in the repeated hour of the DST change
(25 October, the second 02:30).

Each store is written through the real SQLite sink and served by the real app on a fixed
clock: "november" (Monday 16 November, 11:00) and "dst-day" (Sunday 25 October, 21:00, a
25-hour day); "no-tariff" serves November's store with no tariff and no grid factor. The
browser runs in New York, in en-US. Read back from the page: each figure's text and the
decimal string it keeps (`data-value`), the rows of its tables, and the arrays the demand
chart drew. Each is checked against the API's answer and against the books, computed here
from the windows alone: energy summed per quarter hour, each quarter priced by its local
time, a month's peak its highest quarter hour.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import campus_meters
from tests.support.net import free_port
from tests.support.priced_campus import (
    CENT,
    KWH,
    QUARTER_MS,
    ZONE,
    flat_tariff,
    kwh,
    local,
    local_ms,
    midnight,
    money,
)
from tests.support.sinks import KnownWindow, merge, window_deltas

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import Config, parse_config

pytestmark = pytest.mark.slow

BROWSER_ZONE = "America/New_York"
WINDOW_S = 300
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
SCREENSHOTS = Path("/tmp")


START_MS = local_ms(2026, 10, 1)
NOW = {
    "november": local_ms(2026, 11, 16, 11, 0),  # a Monday
    "dst-day": local_ms(2026, 10, 25, 21, 0),  # clocks went back at 03:00: 25 hours
}
SPIKE_MS = round(datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp() * 1000)  # 02:30 CET
HOLIDAY = date(2026, 11, 2)
METERS = {  # id: (building, floor, role, parent, size in Wh a quarter hour)
    "ece-f1": ("ECE", "1", None, "ece-main", 9000.0),
    "ece-f2": ("ECE", "2", None, "ece-main", 6000.0),
    "ece-main": ("ECE", "0", "main", None, 0.0),  # f1 + f2 + what no sub-meter measures
    "lib-1": ("Library", "G", None, None, 4200.0),
    "lib-2": ("Library", "1", None, None, 2600.0),
    "depot-1": ("Depot", "0", None, None, 1500.0),
    "yard-1": ("", "", None, None, 400.0),
}
REST_WH = 2500.0  # ECE's unmetered remainder
ACCOUNTS: dict[str, dict[str, float]] = {  # what each account's total is, and the campus's
    "ECE": {"ece-main": 1.0},
    "Library": {"lib-1": 1.0, "lib-2": 1.0},
    "Depot": {"depot-1": 1.0},
    "": {"yard-1": 1.0},
}
TARIFF_OF = {"ECE": "tou", "Library": "flat", "Depot": "flat", "": "tou"}
AREA = {"ECE": 2400, "Library": 800}
RATES = {
    "tou": {"day": Decimal("0.30"), "night": Decimal("0.12")},
    "flat": {"default": Decimal("0.25")},
}
STANDING_PER_DAY = {"tou": Decimal("2.00"), "flat": Decimal("0.50")}
DEMAND_PRICE, RATCHET_SHARE, MINIMUM_KW = Decimal("8"), Decimal("0.5"), Decimal("5")
CO2_PER_KWH = Decimal("0.35")


# -- the windows ----------------------------------------------------------------------------------


def quarter_energies(quarter_ms: int) -> dict[str, float]:
    """Each meter's energy (Wh) in a quarter hour: its size, a swing over the site's day and a
    wobble; the main meter holds its sub-meters and the remainder."""
    at = local(quarter_ms)
    hour = at.hour + at.minute / 60
    swing = 1 + 0.45 * math.sin(2 * math.pi * (hour - 9) / 24)
    k = quarter_ms // QUARTER_MS
    found = {
        m: size * swing * (1 + 0.06 * ((k * (i + 7)) % 29) / 29)
        for i, (m, (*_, size)) in enumerate(METERS.items())
        if size
    }
    rest = REST_WH * swing + (60_000.0 if quarter_ms == SPIKE_MS else 0.0)
    found["ece-main"] = found["ece-f1"] + found["ece-f2"] + rest
    return found


def windows(now_ms: int) -> list[KnownWindow]:
    """Three 300 s windows a quarter hour per meter, from START_MS to the last ended by now."""
    found: list[KnownWindow] = []
    for quarter in range(START_MS, now_ms - now_ms % QUARTER_MS, QUARTER_MS):
        for meter, wh in quarter_energies(quarter).items():
            third = wh / 3  # and its mean power (W) over 300 s: 12 × its Wh
            found.extend(
                KnownWindow(meter, quarter + i * WINDOW_S * 1000, third, WINDOW_S, third * 12)
                for i in range(3)
            )
    return found


def write(config: Config, items: list[KnownWindow], now_ms: int) -> None:
    merge(config, window_deltas(items, WINDOW_S, METERS), now_ms, batch=5000)


# -- the books ------------------------------------------------------------------------------------

Month = tuple[int, int]


def month_last(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def period_of(tariff: str, quarter_ms: int) -> str:
    if tariff == "flat":
        return "default"
    return "day" if 7 <= local(quarter_ms).hour < 22 else "night"


@dataclass(frozen=True)
class Peak:
    kw: Decimal
    start_ms: int


class Books:
    """The windows summed per meter per quarter hour, and priced by hand."""

    def __init__(self, items: list[KnownWindow], now_ms: int) -> None:
        self.now_ms = now_ms
        self.today = local(now_ms).date()
        self.quarters: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for w in items:
            self.quarters[w.meter_id][w.start_ms - w.start_ms % QUARTER_MS] += w.energy_wh

    def scope(self, terms: Mapping[str, float]) -> dict[int, float]:
        found: dict[int, float] = defaultdict(float)
        for meter, weight in terms.items():
            for quarter, wh in self.quarters[meter].items():
                found[quarter] += weight * wh
        return dict(found)

    def energy_wh(self, terms: Mapping[str, float], first: date, last: date) -> float:
        lo, hi = midnight(first), midnight(last + timedelta(days=1))
        return sum(wh for q, wh in self.scope(terms).items() if lo <= q < hi)

    def energy_lines(
        self, terms: Mapping[str, float], first: date, last: date, tariff: str
    ) -> dict[str, tuple[Decimal, Decimal]]:
        """Per time-of-use period: (kWh, amount)."""
        lo, hi = midnight(first), midnight(last + timedelta(days=1))
        per: dict[str, float] = defaultdict(float)
        for quarter, wh in self.scope(terms).items():
            if lo <= quarter < hi:
                per[period_of(tariff, quarter)] += wh
        return {p: (kwh(wh), money(kwh(wh) * RATES[tariff][p])) for p, wh in per.items()}

    def peaks(self, terms: Mapping[str, float], end_ms: int | None = None) -> dict[Month, Peak]:
        """Per local month, its highest quarter hour (kW) before end_ms; the earliest on a tie."""
        found: dict[Month, Peak] = {}
        for quarter, wh in sorted(self.scope(terms).items()):
            if end_ms is not None and quarter >= end_ms:
                continue
            at = local(quarter)
            kw = Decimal(wh * 4 / 1000).quantize(KWH, ROUND_HALF_UP)
            best = found.get((at.year, at.month))
            if best is None or kw > best.kw:
                found[(at.year, at.month)] = Peak(kw, quarter)
        return found

    def ratchet_floor(self, terms: Mapping[str, float], month: Month) -> Decimal:
        earlier = [p.kw for m, p in self.peaks(terms).items() if m < month]  # data from October
        return (
            (RATCHET_SHARE * max(earlier)).quantize(KWH, ROUND_HALF_UP) if earlier else Decimal(0)
        )

    def billed_kw(self, terms: Mapping[str, float], month: Month, end_ms: int) -> Decimal:
        peak = self.peaks(terms, end_ms).get(month)
        return max(peak.kw if peak else Decimal(0), self.ratchet_floor(terms, month), MINIMUM_KW)

    def account_total(self, account: str, first: date, last: date) -> Decimal:
        """An account's bill over first..last (one month): energy, standing and demand lines."""
        terms, tariff = ACCOUNTS[account], TARIFF_OF[account]
        total = sum(
            (a for _, a in self.energy_lines(terms, first, last, tariff).values()), Decimal(0)
        )
        days = (last - first).days + 1
        total += money(days * STANDING_PER_DAY[tariff])
        if tariff == "tou":
            length = month_last(first).day
            billed = self.billed_kw(
                terms, (first.year, first.month), midnight(last + timedelta(days=1))
            )
            total += money(billed * DEMAND_PRICE * days / length)
        return total

    def projected(self, account: str) -> Decimal:
        """The month's total if energy goes on as so far: the whole month's standing and demand
        charges, and the energy charges so far over the share of the month elapsed."""
        first = self.today.replace(day=1)
        last = month_last(first)
        start, end = midnight(first), midnight(last + timedelta(days=1))
        elapsed = min(1.0, max(0.0, (self.now_ms - start) / (end - start)))
        terms, tariff = ACCOUNTS[account], TARIFF_OF[account]
        energy = sum(
            (a for _, a in self.energy_lines(terms, first, last, tariff).values()), Decimal(0)
        )
        return money(
            self.account_total(account, first, last) + energy * Decimal((1 - elapsed) / elapsed)
        )

    def co2_kg(self, terms: Mapping[str, float], first: date, last: date) -> Decimal:
        return (kwh(self.energy_wh(terms, first, last)) * CO2_PER_KWH).quantize(KWH, ROUND_HALF_UP)


# -- the app --------------------------------------------------------------------------------------


def config_for(db: Path, priced: bool) -> Config:
    tou = {
        "id": "tou",
        "currency": "EUR",
        "versions": [
            {
                "valid_from": date(2026, 1, 1),
                "standing_per_day": "2.00",
                "periods": [
                    {
                        "name": "day",
                        "days": ["all"],
                        "start": "07:00",
                        "end": "22:00",
                        "rate": "0.30",
                    },
                    {
                        "name": "night",
                        "days": ["all"],
                        "start": "22:00",
                        "end": "07:00",
                        "rate": "0.12",
                    },
                ],
                "demand": {
                    "interval_min": 15,
                    "price_per_kw": "8",
                    "ratchet_share": "0.5",
                    "ratchet_months": 11,
                    "minimum_kw": "5",
                },
            }
        ],
    }
    own = {"tariff": "flat"} if priced else {}
    billing: dict[str, Any] = {
        "tariffs": [tou, flat_tariff(date(2026, 1, 1))],
        "emissions": {"factors": [{"valid_from": date(2026, 1, 1), "kg_per_kwh": "0.35"}]},
    }
    return parse_config(
        {
            "site": {
                "name": "Billing Campus",
                "timezone": ZONE.key,
                **({"tariff": "tou"} if priced else {}),
                "buildings": [
                    {
                        "name": "ECE",
                        "floor_area_m2": AREA["ECE"],
                        "occupancy": {
                            "mon": "08:00-20:00",
                            "tue": "08:00-20:00",
                            "wed": "08:00-20:00",
                            "thu": "08:00-20:00",
                            "fri": "08:00-18:00",
                            "sat": ["09:00-12:00", "13:00-15:00"],
                            "holidays": [HOLIDAY],
                        },
                    },
                    {"name": "Library", "floor_area_m2": AREA["Library"], **own},
                    {"name": "Depot", **own},
                ],
            },
            "bridge": {"window_s": WINDOW_S, "grace_s": 60, "sqlite": {"path": str(db)}},
            "api": {"cache_s": 0},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters(METERS),
            "virtual_meters": [
                {"id": "ece-rest", "building": "ECE", "terms": "ece-main - ece-f1 - ece-f2"}
            ],
            **(billing if priced else {}),
        }
    )


class Stores:
    """Each clock's store, written once for the module (two apps may serve one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: dict[str, tuple[Path, Books]] = {}

    def get(self, name: str) -> tuple[Path, Books]:
        if name not in self.made:
            now = NOW[name]
            db = self.folder / f"{name}.db"
            items = windows(now)
            write(config_for(db, priced=True), items, now)
            self.made[name] = (db, Books(items, now))
        return self.made[name]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    return Stores(tmp_path_factory.mktemp("stores"))


@dataclass(frozen=True)
class Served:
    name: str
    now_ms: int
    books: Books
    base: str
    priced: bool


CAMPUSES = {
    "november": ("november", True),
    "dst-day": ("dst-day", True),
    "no-tariff": ("november", False),
}


@pytest.fixture(scope="module")
def campus(request: pytest.FixtureRequest, stores: Stores) -> Iterator[Served]:
    """The app on a store and a fixed clock, served over HTTP from a thread."""
    from werkzeug.serving import make_server

    store, priced = CAMPUSES[request.param]
    db, books = stores.get(store)
    config = config_for(db, priced)
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: NOW[store] / 1000)
    server = make_server("127.0.0.1", free_port(), app)
    thread = threading.Thread(target=server.serve_forever, name="billing-page-server")
    thread.start()
    try:
        yield Served(
            request.param, NOW[store], books, f"http://127.0.0.1:{server.server_port}", priced
        )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        source.close()


def campuses(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("campus", names, indirect=True)


# -- the page -------------------------------------------------------------------------------------

CAMPUS_READY = """(priced) => document.querySelectorAll('#building-demand tbody tr').length > 0
  && document.querySelectorAll('#intensity-ranking tbody tr').length > 0
  && document.querySelector('#campus-peak').dataset.value !== undefined
  && (!priced || document.querySelector('#cost-today').dataset.value !== undefined)"""
BUILDING_READY = """(priced) => {
  const chart = window.campusCharts.demand;
  return chart.u && chart.data && document.querySelectorAll('#building-meters tbody tr').length > 0
    && document.querySelector('#building-peak').dataset.value !== undefined
    && (priced ? document.querySelector('#bill-total').dataset.value !== undefined
               : !document.querySelector('#bill-unpriced').hidden);
}"""
# Every element of <main> with an id (its text, the value it keeps, whether it shows) and
# the rows of every table, each cell with its text and kept value.
READ = """() => {
  const cell = (el) => ({ text: el.textContent.trim(),
    value: el.dataset.value ?? el.querySelector('[data-value]')?.dataset.value ?? null,
    kind: el.dataset.kind ?? null });
  const shown = (el) => el.closest('[hidden]') === null;
  const figures = {};
  for (const el of document.querySelectorAll('main [id]')) {
    figures[el.id] = { ...cell(el), shown: shown(el) };
  }
  const rows = {};
  for (const table of document.querySelectorAll('main table[id]')) {
    rows[table.id] = [...table.tBodies[0].rows].map((tr) => ({
      key: tr.dataset.key ?? null, kind: tr.dataset.kind ?? null,
      cells: [...tr.cells].map(cell) }));
  }
  const links = Object.fromEntries([...document.querySelectorAll('main a[id]')]
    .map((a) => [a.id, a.getAttribute('href')]));
  return { figures, rows, links, text: document.body.innerText, title: document.title,
    focused: document.activeElement && document.activeElement.id,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth };
}"""
READ_DEMAND = """() => {
  const slot = window.campusCharts.demand, u = slot.u;
  const axis = u.axes[0];
  return { xs: Array.from(u.data[0]), ys: Array.from(u.data[1]), marks: Array.from(u.data[2]),
    floors: Array.from(u.data[3]), range: [u.scales.x.min, u.scales.x.max],
    ticks: (axis._splits || []).map((v, i) => ({ v, label: String((axis._values || [])[i]) })),
    label: document.getElementById('chart-demand').getAttribute('aria-label') };
}"""


def open_page(browser: Any, served: Served, size: str = "desktop", where: str = "") -> Any:
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height}, timezone_id=BROWSER_ZONE, locale="en-US"
    )
    context.clock.set_fixed_time(served.now_ms / 1000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    page.goto(served.base + "/" + where)
    return page


def api(page: Any, served: Served, path: str) -> Any:
    answer = page.request.get(served.base + path)
    assert answer.status == 200, (path, answer.status, answer.text()[:300])
    return answer.json()


# -- how the page writes what the API states ------------------------------------------------------


def places(text: str) -> int:
    return len(text.partition(".")[2])


def decimal_text(text: str, decimals: int | None = None) -> str:
    """A decimal string as en-US shows it: grouped, to its own places or rounded half up."""
    n = places(text) if decimals is None else decimals
    return f"{Decimal(text).quantize(Decimal(1).scaleb(-n), ROUND_HALF_UP):,.{n}f}"


def money_text(text: str) -> str:
    return "€" + decimal_text(text)


def kwh_text(text: str) -> str:
    """To about three significant figures: 3 places under 10, 2 under 100, else 1."""
    size = abs(Decimal(text))
    return decimal_text(text, 3 if size < 10 else 2 if size < 100 else 1)


def site_time(ms: int) -> str:
    at = local(ms)
    return f"{at.day} {at:%b}, {at:%H:%M}"


def iso_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def shows(figure: dict[str, Any], api_text: str | None, fmt: Any = decimal_text) -> None:
    """The figure keeps the API's decimal string and shows it formatted."""
    assert figure["shown"], figure
    assert figure["value"] == api_text, (figure, api_text)
    assert figure["text"] == (fmt(api_text) if api_text is not None else "—"), (figure, api_text)


def row_of(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    (found,) = [r["cells"] for r in rows if r["key"] == key]
    return list(found)


# -- the tests ------------------------------------------------------------------------------------


def month_of(books: Books) -> tuple[date, date, date]:
    """The first day of the month, today and the month's last day."""
    first = books.today.replace(day=1)
    return first, books.today, month_last(first)


@campuses("november", "dst-day")
def test_the_cost_cards_equal_the_api_and_the_books(browser: Any, campus: Served) -> None:
    page = open_page(browser, campus)
    try:
        page.wait_for_function(CAMPUS_READY, arg=True)
        shown = page.evaluate(READ)
        overview = api(page, campus, "/api/cost/overview")
    finally:
        page.context.close()
    figures, books = shown["figures"], campus.books
    first, today, _ = month_of(books)
    assert overview["currency"] == "EUR" and overview["today"]["date"] == today.isoformat()

    shows(figures["cost-today"], overview["today"]["total"], money_text)
    day = sum((books.account_total(a, today, today) for a in ACCOUNTS), Decimal(0))
    assert Decimal(figures["cost-today"]["value"]) == day
    shows(figures["cost-month"], overview["month"]["total"], money_text)
    so_far = sum((books.account_total(a, first, today) for a in ACCOUNTS), Decimal(0))
    assert Decimal(figures["cost-month"]["value"]) == so_far
    shows(figures["cost-projected"], overview["month"]["projected_total"], money_text)
    projected = sum((books.projected(a) for a in ACCOUNTS), Decimal(0))
    assert abs(Decimal(figures["cost-projected"]["value"]) - projected) <= len(ACCOUNTS) * CENT
    assert Decimal(figures["cost-projected"]["value"]) > so_far

    for key, lo in (("today", today), ("month", first)):
        energy = figures[f"cost-{key}-kwh"]
        shows(energy, overview[key]["energy_kwh"], kwh_text)
        assert Decimal(energy["value"]) == sum(
            kwh(books.energy_wh(t, lo, today)) for t in ACCOUNTS.values()
        )
        co2 = figures[f"co2-{key}"]
        shows(co2, overview[key]["co2_kg"], kwh_text)
        expected = sum(books.co2_kg(t, lo, today) for t in ACCOUNTS.values())
        assert abs(Decimal(co2["value"]) - expected) <= len(ACCOUNTS) * KWH

    # what the projection assumes is said, beside it and in its tooltip
    share = overview["month"]["elapsed_share"]
    assumes = figures["projection-assumes"]["text"]
    assert f"{share * 100:.1f}% of {first:%B %Y} has passed" in assumes, assumes
    assert "standing and demand charges" in assumes and figures["projection-assumes"]["shown"]
    assert shown["links"]["bills-csv"] == f"api/bills.csv?month={first:%Y-%m}"
    assert "NaN" not in shown["text"] and "undefined" not in shown["text"]
    assert not page.problems, page.problems


@campuses("november")
def test_the_peaks_and_the_ranking_equal_the_api_and_the_books(
    browser: Any, campus: Served
) -> None:
    page = open_page(browser, campus)
    try:
        page.wait_for_function(CAMPUS_READY, arg=True)
        shown = page.evaluate(READ)
        overview = api(page, campus, "/api/cost/overview")
    finally:
        page.context.close()
    figures, rows, books = shown["figures"], shown["rows"], campus.books
    first, today, _ = month_of(books)
    this, last = (first.year, first.month), (2026, 10)

    # the campus's coincident peak: every account's total together
    everything = {m: w for terms in ACCOUNTS.values() for m, w in terms.items()}
    peaks = books.peaks(everything)
    demand = overview["campus_demand"]
    assert demand["interval_min"] == 15
    for key, month in (("campus-peak", this), ("campus-peak-previous", last)):
        which = "peak" if month == this else "previous_month_peak"
        shows(figures[key], demand[which]["kw"])
        assert Decimal(figures[key]["value"]) == peaks[month].kw
        assert iso_ms(demand[which]["start"]) == peaks[month].start_ms
        assert figures[f"{key}-at"]["text"] == site_time(peaks[month].start_ms)
    change = float(peaks[this].kw / peaks[last].kw - 1)
    assert figures["campus-peak-change"]["text"] == (
        f"{abs(change) * 100:.1f}% {'below' if change < 0 else 'above'} last month's peak."
    )

    # each account's peak against last month's, its ratchet floor and the demand billed
    by_name = {b["name"]: b for b in overview["buildings"]}
    table = rows["building-demand"]
    assert [r["key"] for r in table] == ["Depot", "ECE", "Library", ""]
    for name, terms in ACCOUNTS.items():
        cells = row_of(table, name)
        answer = by_name[name]
        account_peaks = books.peaks(terms)
        shows({**cells[1], "shown": True}, answer["peak"]["kw"])
        assert Decimal(cells[1]["value"]) == account_peaks[this].kw
        shows({**cells[2], "shown": True}, answer["previous_month_peak"]["kw"])
        assert Decimal(cells[2]["value"]) == account_peaks[last].kw
        if TARIFF_OF[name] == "tou":
            floor = books.ratchet_floor(terms, this)
            shows({**cells[3], "shown": True}, answer["ratchet_floor_kw"])
            assert (
                Decimal(cells[3]["value"])
                == floor
                == (RATCHET_SHARE * account_peaks[last].kw).quantize(KWH, ROUND_HALF_UP)
            )
            billed = books.billed_kw(terms, this, books.now_ms)
            shows({**cells[4], "shown": True}, answer["billed_kw"])
            assert Decimal(cells[4]["value"]) == billed
        else:  # a flat tariff charges no demand
            assert answer["ratchet_floor_kw"] is None and answer["billed_kw"] is None
            assert (cells[3]["text"], cells[4]["text"]) == ("—", "—")
    # ECE's October spike (the DST night) sets a floor above November's peak: billed at it
    ece = row_of(table, "ECE")
    assert Decimal(ece[4]["value"]) == Decimal(ece[3]["value"]) > Decimal(ece[1]["value"])

    # kWh/m², month to date: the books' order, those without a floor area apart
    intensity = {
        name: books.energy_wh(ACCOUNTS[name], first, today) / 1000 / area
        for name, area in AREA.items()
    }
    ranked = sorted(intensity, key=lambda name: -intensity[name])
    ranking = rows["intensity-ranking"]
    assert [r["key"] for r in ranking] == ranked == [b["name"] for b in overview["buildings"][:2]]
    for place, name in enumerate(ranked, start=1):
        cells = row_of(ranking, name)
        assert cells[0]["text"] == str(place)
        assert cells[1]["text"] == name
        shows({**cells[2], "shown": True}, by_name[name]["kwh_per_m2"])
        assert float(cells[2]["value"]) == pytest.approx(intensity[name], abs=0.0005)
        shows({**cells[3], "shown": True}, by_name[name]["energy_kwh"])
        assert Decimal(cells[3]["value"]) == kwh(books.energy_wh(ACCOUNTS[name], first, today))
        assert cells[4]["text"] == f"{AREA[name]:,}"
    apart = rows["intensity-unranked"]
    assert [r["key"] for r in apart] == ["Depot", ""]
    assert [r["cells"][0]["text"] for r in apart] == ["Depot", "Meters in no building"]
    for r in apart:
        terms = ACCOUNTS[r["key"]]
        assert Decimal(r["cells"][1]["value"]) == kwh(books.energy_wh(terms, first, today))
    assert figures["no-area"]["shown"]
    # a building links to its page; the meters in no building have none
    assert shown["text"].count("Meters in no building") >= 2
    assert not page.problems, page.problems


def check_bill(
    shown: dict[str, Any], answer: dict[str, Any], books: Books, name: str, first: date
) -> None:
    """The bill on the page is the API's, line by line, and the books priced by hand."""
    (bill,) = answer["bills"]
    assert bill["account"] == name
    lines = shown["rows"]["bill"]
    assert [(r["kind"], r["cells"][0]["text"]) for r in lines] == [
        (x["kind"], x["description"]) for x in bill["lines"]
    ]
    for row, line in zip(lines, bill["lines"], strict=True):
        quantity, unit, rate, amount = row["cells"][1:]
        assert (quantity["value"], quantity["text"]) == (
            line["quantity"],
            decimal_text(line["quantity"]),
        )
        assert unit["text"] == line["unit"]
        assert rate["value"] == line["rate"]
        assert rate["text"] == "€" + decimal_text(line["rate"], max(places(line["rate"]), 2))
        assert (amount["value"], amount["text"]) == (line["amount"], money_text(line["amount"]))
    shows(shown["figures"]["bill-total"], bill["total"], money_text)
    assert Decimal(bill["total"]) == sum(Decimal(x["amount"]) for x in bill["lines"])

    # the books: this month's energy per period priced by hand, and the whole month's bill
    terms, tariff = ACCOUNTS[name], TARIFF_OF[name]
    last = month_last(first)
    energy = {
        x["period"]: (Decimal(x["quantity"]), Decimal(x["amount"]))
        for x in bill["lines"]
        if x["kind"] == "energy"
    }
    assert energy == books.energy_lines(terms, first, last, tariff)
    assert Decimal(shown["figures"]["bill-total"]["value"]) == books.account_total(
        name, first, last
    )
    assert (
        f"Energy {decimal_text(bill['energy_kwh'])} kWh" in shown["figures"]["bill-facts"]["text"]
    )
    assert Decimal(bill["energy_kwh"]) == kwh(books.energy_wh(terms, first, last))
    assert shown["figures"]["bill-month"]["text"] == f"{first:%B %Y}"


def check_demand_chart(
    drawn: dict[str, Any], answer: dict[str, Any], books: Books, terms: Mapping[str, float]
) -> None:
    """The chart draws every quarter hour of the month so far at the books' kW, rings the
    month's peak and draws the floor the tariff bills at least."""
    first, today, _ = month_of(books)
    lo, hi = midnight(first), midnight(today + timedelta(days=1))
    quarters = {q: wh for q, wh in books.scope(terms).items() if lo <= q < hi}
    assert drawn["range"] == [lo / 1000, hi / 1000]
    drawn_at = {
        round(x * 1000): y for x, y in zip(drawn["xs"], drawn["ys"], strict=True) if y is not None
    }
    assert set(drawn_at) == set(quarters)
    for quarter, wh in quarters.items():
        assert drawn_at[quarter] == pytest.approx(wh * 4 / 1000, abs=1e-6), local(quarter)
    peak = books.peaks(terms)[(first.year, first.month)]
    (month_peak,) = answer["monthly_peaks"]
    assert (Decimal(month_peak["kw"]), iso_ms(month_peak["start"])) == (peak.kw, peak.start_ms)
    marks = [
        (round(x * 1000), m)
        for x, m in zip(drawn["xs"], drawn["marks"], strict=True)
        if m is not None
    ]
    assert marks == [(peak.start_ms, float(peak.kw))]
    # the floor the tariff bills at least: the ratchet's, or its minimum
    floor = answer["ratchet_floors"][f"{first:%Y-%m}"]
    month = (first.year, first.month)
    assert Decimal(floor) == max(books.ratchet_floor(terms, month), MINIMUM_KW)
    assert set(drawn["floors"]) == {float(floor)}
    # a tick at site midnights only, labelled with their date; none twice
    labels = [t["label"] for t in drawn["ticks"]]
    assert labels and len(set(labels)) == len(labels)
    for tick in drawn["ticks"]:
        at = local(round(tick["v"] * 1000))
        assert (at.hour, at.minute) == (0, 0) and tick["label"] == f"{at.day} {at:%b}", tick
    assert (
        f"Peak {decimal_text(month_peak['kw'])} kW at {site_time(peak.start_ms)}" in drawn["label"]
    )


def open_building(page: Any, served: Served, link: str) -> dict[str, Any]:
    """Follow a building's link on the campus view; its page, once every figure is in."""
    page.click(link)
    page.wait_for_function(BUILDING_READY, arg=served.priced)
    shown: dict[str, Any] = page.evaluate(READ)
    return shown


@campuses("november")
def test_a_buildings_page_shows_its_meters_bill_and_demand(browser: Any, campus: Served) -> None:
    books = campus.books
    first, today, _ = month_of(books)
    page = open_page(browser, campus)
    try:
        page.wait_for_function(CAMPUS_READY, arg=True)
        shown = open_building(page, campus, "#intensity-ranking a[href='#building=ECE']")
        drawn = page.evaluate(READ_DEMAND)
        assert page.url.endswith("/#building=ECE") and shown["title"].startswith("ECE")
        assert shown["focused"] == "building-title"  # where a screen reader lands
        assert shown["figures"]["building-view"]["shown"]
        assert shown["figures"]["campus-view"]["shown"] is False
        bill = api(page, campus, f"/api/bills?month={first:%Y-%m}&building=ECE")
        demand = api(page, campus, f"/api/demand?building=ECE&start_date={first}&end_date={today}")
        model = api(page, campus, "/api/buildings")
        overview = api(page, campus, "/api/cost/overview")
        exports = {
            key: page.request.get(campus.base + "/" + shown["links"][key])
            for key in ("bill-csv", "bill-xlsx")
        }
        csv_text, xlsx = exports["bill-csv"].text(), exports["bill-xlsx"]
        # back to the campus, then another building from the demand table
        page.click("#back-link")
        page.wait_for_function("() => !document.getElementById('campus-view').hidden")
        library = open_building(page, campus, "#building-demand a[href='#building=Library']")
        library_bill = api(page, campus, f"/api/bills?month={first:%Y-%m}&building=Library")
        problems = page.problems
    finally:
        page.context.close()
    figures = shown["figures"]

    # what the campus model says of the building
    (ece,) = [b for b in model["buildings"] if b["name"] == "ECE"]
    assert figures["building-title"]["text"] == "ECE"
    assert figures["building-tariff"]["text"] == "tou" == ece["tariff"]
    assert figures["building-area"]["text"] == "2,400"
    assert figures["building-basis"]["text"] == "main meter ece-main" == ece["basis"]
    meters = {r["key"]: r["cells"] for r in shown["rows"]["building-meters"]}
    assert {k: (c[1]["kind"], c[1]["text"]) for k, c in meters.items()} == {
        "ece-main": ("main", "Main meter (the building's total)"),
        "ece-f1": ("sub-meter", "Sub-meter of ece-main"),
        "ece-f2": ("sub-meter", "Sub-meter of ece-main"),
    }
    assert {k: c[2]["text"] for k, c in meters.items()} == {
        "ece-main": "0",
        "ece-f1": "1",
        "ece-f2": "2",
    }
    uses = {m["id"]: m for m in bill["bills"][0]["meter_energy"]}
    for meter, cells in meters.items():
        assert cells[3]["value"] == uses[meter]["energy_kwh"]
        assert Decimal(cells[3]["value"]) == kwh(
            books.energy_wh({meter: 1.0}, first, month_last(first))
        )
    (virtual,) = shown["rows"]["building-virtual"]
    assert (
        virtual["key"] == "ece-rest" and virtual["cells"][1]["text"] == "ece-main - ece-f1 - ece-f2"
    )
    rest = {"ece-main": 1.0, "ece-f1": -1.0, "ece-f2": -1.0}
    assert virtual["cells"][2]["value"] == uses["ece-rest"]["energy_kwh"]
    assert float(virtual["cells"][2]["value"]) == pytest.approx(
        books.energy_wh(rest, first, month_last(first)) / 1000, abs=0.0015
    )
    hours = {r["key"]: r["cells"][1]["text"] for r in shown["rows"]["opening-hours"]}
    assert hours == {
        "mon": "08:00–20:00", "tue": "08:00–20:00", "wed": "08:00–20:00", "thu": "08:00–20:00",
        "fri": "08:00–18:00", "sat": "09:00–12:00, 13:00–15:00", "sun": "Closed",
    }  # fmt: skip
    assert figures["holidays"]["text"] == "Closed on holidays: 2 Nov 2026."

    # the month so far, from the overview, and this month's bill
    overview_row = {b["name"]: b for b in overview["buildings"]}["ECE"]
    shows(figures["building-kwh"], overview_row["energy_kwh"])
    shows(figures["building-kwh-m2"], overview_row["kwh_per_m2"])
    shows(figures["building-cost"], overview_row["total"], money_text)
    assert Decimal(figures["building-cost"]["value"]) == books.account_total("ECE", first, today)
    shows(figures["building-projected"], overview_row["projected_total"], money_text)
    check_bill(shown, bill, books, "ECE", first)

    # its demand: the month's peak against last month's, the ratchet floor and what is billed
    terms = ACCOUNTS["ECE"]
    peaks = books.peaks(terms)
    shows(figures["building-peak"], bill["bills"][0]["peak"]["kw"])
    assert Decimal(figures["building-peak"]["value"]) == peaks[(2026, 11)].kw
    assert figures["building-peak-at"]["text"] == site_time(peaks[(2026, 11)].start_ms)
    assert Decimal(figures["building-peak-previous"]["value"]) == peaks[(2026, 10)].kw
    assert Decimal(figures["building-floor"]["value"]) == books.ratchet_floor(terms, (2026, 11))
    assert Decimal(figures["building-billed"]["value"]) == books.billed_kw(
        terms, (2026, 11), books.now_ms
    )
    check_demand_chart(drawn, demand, books, terms)

    # the exports hold the same bill
    assert exports["bill-csv"].status == 200 and xlsx.status == 200
    assert 'filename="bills-2026-11.csv"' in exports["bill-csv"].headers["content-disposition"]
    totals = [
        r
        for r in csv.DictReader(io.StringIO(csv_text))
        if r["kind"] == "total" and r["account"] == "ECE"
    ]
    assert [r["amount"] for r in totals] == [figures["bill-total"]["value"]]
    assert xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")

    # a flat tariff's building: energy at one rate and a standing charge per day, no demand
    check_bill(library, library_bill, books, "Library", first)
    assert {r["kind"] for r in library["rows"]["bill"]} == {"energy", "standing"}
    assert library["figures"]["building-floor"]["text"] == "—"
    assert not library["figures"]["virtual-block"]["shown"]
    assert not library["figures"]["opening-hours"]["shown"]  # none configured: said so instead
    assert "No opening hours" in library["text"]
    assert not problems, problems


@campuses("november")
def test_without_estimates_or_export_the_bills_look_as_before(browser: Any, campus: Served) -> None:
    """No gap bridged, no solar: no estimate and no export is shown anywhere money is."""
    page = open_page(browser, campus)
    try:
        page.wait_for_function(CAMPUS_READY, arg=True)
        shown = page.evaluate(READ)
        notes = page.evaluate("() => document.querySelectorAll('main .estimate-note').length")
        overview = api(page, campus, "/api/cost/overview")
        building = open_building(page, campus, "#intensity-ranking a[href='#building=ECE']")
        building_notes = page.evaluate(
            "() => document.querySelectorAll('#building-view .estimate-note').length"
        )
        bill = api(page, campus, "/api/bills?month=2026-11&building=ECE")["bills"][0]
        problems = page.problems
    finally:
        page.context.close()
    assert overview["estimated_counted"] is True
    assert Decimal(overview["today"]["estimated_kwh"]) == 0
    assert Decimal(overview["month"]["estimated_kwh"]) == 0
    for key in ("today", "month"):  # the place is there, kept hidden
        assert not shown["figures"][f"cost-{key}-estimate"]["shown"]
        assert shown["figures"][f"cost-{key}-estimated-kwh"]["value"] is None
    assert notes == 0 and building_notes == 0
    assert Decimal(bill["estimated_kwh"]) == 0 and Decimal(bill["export_kwh"]) == 0
    figures = building["figures"]
    assert not figures["building-kwh-estimate"]["shown"]
    assert not figures["bill-events-block"]["shown"]  # no meter event on record
    assert figures["bill-energy-kwh"]["value"] == bill["energy_kwh"]
    for absent in ("bill-estimate", "bill-estimated-kwh", "bill-export", "bill-export-kwh"):
        assert absent not in figures, absent
    assert not [r for r in building["rows"]["bill"] if "(estimated)" in r["cells"][0]["text"]]
    for text in (shown["text"], building["text"]):
        assert "estimated" not in text.lower() and "xported" not in text, text
    assert not problems, problems


@campuses("dst-day")
def test_the_dst_day_is_drawn_and_priced_by_its_local_clock(browser: Any, campus: Served) -> None:
    books = campus.books
    first, today, _ = month_of(books)
    assert today == date(2026, 10, 25)
    page = open_page(browser, campus, where="#building=ECE")
    try:
        page.wait_for_function(BUILDING_READY, arg=True)
        shown = page.evaluate(READ)
        drawn = page.evaluate(READ_DEMAND)
        bill = api(page, campus, "/api/bills?month=2026-10&building=ECE")
        demand = api(page, campus, f"/api/demand?building=ECE&start_date={first}&end_date={today}")
    finally:
        page.context.close()
    terms = ACCOUNTS["ECE"]
    check_demand_chart(drawn, demand, books, terms)
    # the day has 25 hours: 02:00-03:00 twice; up to 21:00 that is 88 quarter hours
    day = [x for x in drawn["xs"] if midnight(today) <= x * 1000 < books.now_ms]
    assert len(day) == 88 and len(set(day)) == 88
    twice = [x for x in day if local(round(x * 1000)).hour == 2]
    assert len(twice) == 8
    # the peak is the spike in the second 02:30 (CET), at its local time
    figures = shown["figures"]
    assert Decimal(figures["building-peak"]["value"]) == books.peaks(terms)[(2026, 10)].kw
    assert books.peaks(terms)[(2026, 10)].start_ms == SPIKE_MS
    assert figures["building-peak-at"]["text"] == "25 Oct, 02:30"
    assert local(SPIKE_MS).utcoffset() == timedelta(hours=1)  # CET: the repeated 02:30
    # no month before the data: last month's peak is none, and the minimum is billed at least
    assert figures["building-peak-previous"]["text"] == "—"
    assert figures["building-floor"]["text"] == "0"
    assert figures["building-minimum"]["text"] == "the tariff's minimum: 5.000 kW"
    assert Decimal(figures["building-billed"]["value"]) == books.billed_kw(
        terms, (2026, 10), books.now_ms
    )
    check_bill(shown, bill, books, "ECE", first)
    # the bill's energy of the 25th holds all 25 hours, priced by their local clock
    day_lines = books.energy_lines(terms, today, today, "tou")
    assert sum(q for q, _ in day_lines.values()) == kwh(books.energy_wh(terms, today, today))
    assert not page.problems, page.problems


@campuses("no-tariff")
def test_without_a_tariff_there_are_no_cost_cards_and_no_errors(
    browser: Any, campus: Served
) -> None:
    page = open_page(browser, campus)
    try:
        page.wait_for_function(CAMPUS_READY, arg=False)
        shown = page.evaluate(READ)
        overview = api(page, campus, "/api/cost/overview")
        building = open_building(page, campus, "#intensity-ranking a[href='#building=ECE']")
        problems = page.problems
    finally:
        page.context.close()
    assert overview["currency"] is None and overview["month"]["total"] is None
    figures = shown["figures"]
    assert not figures["cost"]["shown"]  # no cost cards, and no CO₂ without a grid factor
    for text in (shown["text"], building["text"]):
        for word in ("NaN", "undefined", "null", "€"):
            assert word not in text, word
    # peaks and the ranking need no tariff
    assert figures["demand"]["shown"] and figures["intensity"]["shown"]
    ece = row_of(shown["rows"]["building-demand"], "ECE")
    assert Decimal(ece[1]["value"]) == campus.books.peaks(ACCOUNTS["ECE"])[(2026, 11)].kw
    assert (ece[3]["text"], ece[4]["text"]) == ("—", "—")
    # the building's page: its meters and demand, its energy not priced
    assert (
        building["figures"]["bill-unpriced"]["shown"]
        and not building["figures"]["bill-wrap"]["shown"]
    )
    assert not building["figures"]["building-cost"]["shown"]
    assert building["figures"]["building-tariff"]["text"] == "none: not priced"
    assert len(building["rows"]["building-meters"]) == 3
    assert not problems, problems


def screenshot(page: Any, name: str) -> None:
    """The whole page as a PNG, to look at (written here: Playwright's own writing would leave
    its event loop's file threads behind, as the browser outlives the test)."""
    (SCREENSHOTS / name).write_bytes(page.screenshot(full_page=True))


def check_accessible(page: Any) -> None:
    """Every table's columns have headers; every shown section a heading; no overflow."""
    found = page.evaluate(
        """() => ({
          tables: [...document.querySelectorAll('main table:not(.u-legend)')]
            .filter((t) => t.closest('[hidden]') === null)
            .map((t) => [t.id, t.tHead ? [...t.tHead.rows[0].cells].every((c) => c.tagName === 'TH'
              && c.scope === 'col') : false, !!(t.caption || t.getAttribute('aria-labelledby'))]),
          sections: [...document.querySelectorAll('main section')]
            .filter((s) => s.closest('[hidden]') === null)
            .map((s) => [s.getAttribute('aria-labelledby'),
              !!document.getElementById(s.getAttribute('aria-labelledby') || '')]),
          overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        })"""
    )
    assert all(headed and named for _, headed, named in found["tables"]), found["tables"]
    assert all(ok for _, ok in found["sections"]), found["sections"]
    assert found["overflow"] <= 0, found["overflow"]


@campuses("november")
@pytest.mark.parametrize("size", sorted(SIZES))
def test_both_views_read_whole_at_any_width(browser: Any, campus: Served, size: str) -> None:
    page = open_page(browser, campus, size)
    try:
        page.wait_for_function(CAMPUS_READY, arg=True)
        page.wait_for_function(
            "() => window.campusCharts.power24h.u && window.campusCharts.daily30d.u"
        )
        check_accessible(page)
        screenshot(page, f"campus-energy-billing-{size}.png")
        open_building(page, campus, "#building-demand a[href='#building=ECE']")
        check_accessible(page)
        screenshot(page, f"campus-energy-building-{size}.png")
        assert not page.problems, page.problems
    finally:
        page.context.close()
