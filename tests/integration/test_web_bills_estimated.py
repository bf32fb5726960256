"""The dashboard's bills and costs with estimated energy and export, in real Chromium, against
the books.

The campus is tests/support/estimated_campus.py (Europe/Berlin, March 2026, now Monday 30
March 14:00): Main's main meter has gaps its registers bridged (estimated import, one of
them today), the Annex's rooftop PV meter exports by day (and an estimated export across
a gap), the Hall has neither. Its windows are written once through the real SQLite sink and
served by the real app on a fixed clock, with `billing.include_estimated` true ("counted")
and false ("excluded"). Read back from the page: the cost cards, the kWh/m² ranking, and
the Main's, the Annex's and the Hall's bills and meters — each figure's text and the
decimal string it keeps (`data-value`), each equal to the books: the windows' sums — and
the month's meter events where the logger's store is readable.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.support.estimated_campus import ACCOUNTS, NOW_MS, TODAY, Books, kwh, write_campus
from tests.support.net import free_port

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import Config

pytestmark = pytest.mark.slow

FIRST = date(2026, 3, 1)
LAST = date(2026, 3, 31)

CAMPUS_READY = """() => document.querySelectorAll('#intensity-ranking tbody tr').length === 3
  && document.querySelector('#cost-month').dataset.value !== undefined"""
BUILDING_READY = """(name) => document.querySelector('#building-title').textContent === name
  && document.querySelectorAll('#building-meters tbody tr').length > 0
  && document.querySelector('#building-meters tbody td.num').dataset.value !== undefined
  && document.querySelector('#bill-total').dataset.value !== undefined
  && document.querySelector('#building-kwh').dataset.value !== undefined"""
# Every element of <main> with an id (its text, the value it keeps, whether it shows), and the
# rows of its tables, each cell with its text, its value and its notes' (class, value, text).
READ = r"""() => {
  const notes = (el) => [...el.querySelectorAll('.estimate-note')].map((n) =>
    ({ cls: n.className, value: n.dataset.value ?? null, text: n.textContent }));
  const cell = (el) => ({ text: el.textContent.replace(/\s+/g, ' ').trim(),
    value: el.dataset.value ?? null, notes: notes(el), cls: el.className });
  const figures = {};
  for (const el of document.querySelectorAll('main [id]')) {
    figures[el.id] = { ...cell(el), shown: el.closest('[hidden]') === null };
  }
  const rows = {};
  for (const table of document.querySelectorAll('main table[id]')) {
    rows[table.id] = [...table.tBodies[0].rows].map((tr) => ({
      key: tr.dataset.key ?? null, kind: tr.dataset.kind ?? null, cls: tr.className,
      cells: [...tr.cells].map(cell) }));
  }
  const events = [...document.querySelectorAll('#bill-events li')].map((li) =>
    ({ text: li.textContent, kind: li.dataset.kind }));
  return { figures, rows, events, text: document.body.innerText };
}"""


@dataclass(frozen=True)
class Written:
    counted: Config
    excluded: Config
    books: Books


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    counted, excluded, books = write_campus(Path(tmp_path_factory.mktemp("bills-estimated-web")))
    return Written(counted, excluded, books)


@dataclass(frozen=True)
class Served:
    counted: bool
    books: Books
    base: str


@pytest.fixture(scope="module", params=["counted", "excluded"])
def served(request: pytest.FixtureRequest, written: Written) -> Iterator[Served]:
    """The app on the store and a fixed clock, served over HTTP from a thread."""
    from werkzeug.serving import make_server

    config = written.counted if request.param == "counted" else written.excluded
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: NOW_MS / 1000)
    server = make_server("127.0.0.1", free_port(), app)
    thread = threading.Thread(target=server.serve_forever, name="bills-estimated-page")
    thread.start()
    try:
        yield Served(
            request.param == "counted", written.books, f"http://127.0.0.1:{server.server_port}"
        )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        source.close()


def open_page(browser: Any, served: Served, where: str = "", width: int = 1280) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    context.clock.set_fixed_time(NOW_MS / 1000)
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


# -- how the page writes a decimal string (en-US) --------------------------------------------------


def decimal_text(text: str, decimals: int | None = None) -> str:
    n = len(text.partition(".")[2]) if decimals is None else decimals
    return f"{Decimal(text).quantize(Decimal(1).scaleb(-n), ROUND_HALF_UP):,.{n}f}"


def kwh_text(text: str) -> str:
    """To about three significant figures: 3 places under 10, 2 under 100, else 1."""
    size = abs(Decimal(text))
    return decimal_text(text, 3 if size < 10 else 2 if size < 100 else 1)


# -- the books ------------------------------------------------------------------------------------


def billed(books: Books, first: date, last: date, counted: bool) -> Decimal:
    """The accounts' billed energy summed, each account's to the Wh as its bill states it."""
    return sum(
        (books.billed_kwh(meter, first, last, counted) for meter in ACCOUNTS.values()),
        Decimal(0),
    )


def estimated(books: Books, first: date, last: date) -> Decimal:
    return kwh(books.total("main-1", "estimated_wh", first, last))


def words(counted: bool) -> str:
    return "of which estimated" if counted else "estimated, not billed:"


# -- the tests ------------------------------------------------------------------------------------


def test_the_books_hold_estimates_and_export_today_and_this_month(written: Written) -> None:
    books = written.books
    assert estimated(books, TODAY, TODAY) == Decimal("0.248")
    assert estimated(books, FIRST, LAST) > estimated(books, TODAY, TODAY)
    assert books.month("roof-1", "export_wh") > 0 and books.month("roof-1", "estimated_export_wh")
    assert not books.month("hall-1", "estimated_wh") and not books.month("hall-1", "export_wh")


def test_the_cost_cards_and_the_ranking_state_the_estimate_apart(
    browser: Any, served: Served
) -> None:
    books, counted = served.books, served.counted
    page = open_page(browser, served)
    try:
        page.wait_for_function(CAMPUS_READY)
        shown = page.evaluate(READ)
        overview = api(page, served, "/api/cost/overview")
    finally:
        page.context.close()
    assert not page.problems, page.problems
    figures = shown["figures"]
    assert overview["estimated_counted"] is counted
    for key, first in (("today", TODAY), ("month", FIRST)):
        energy = figures[f"cost-{key}-kwh"]
        assert energy["value"] == overview[key]["energy_kwh"]
        assert Decimal(energy["value"]) == billed(books, first, TODAY, counted)
        box, figure = figures[f"cost-{key}-estimate"], figures[f"cost-{key}-estimated-kwh"]
        assert box["shown"] and figure["shown"]
        assert figure["value"] == overview[key]["estimated_kwh"]
        assert Decimal(figure["value"]) == estimated(books, first, TODAY) > 0
        assert box["text"] == f"{words(counted)} {kwh_text(figure['value'])} kWh"
    # with the estimate counted, the energy holds it; without, it is the measured import only
    measured = sum(kwh(books.total(m, "import_wh", FIRST, TODAY)) for m in ACCOUNTS.values())
    month_kwh = Decimal(figures["cost-month-kwh"]["value"])
    assert month_kwh == measured + (estimated(books, FIRST, TODAY) if counted else 0)

    # the ranking: Main's energy with its estimate apart, the others' without a note
    rows = {r["key"]: r["cells"] for r in shown["rows"]["intensity-ranking"]}
    assert set(rows) == set(ACCOUNTS)
    for name, meter in ACCOUNTS.items():
        cell = rows[name][3]
        assert Decimal(cell["value"]) == books.billed_kwh(meter, FIRST, TODAY, counted)
        if name != "Main":
            assert cell["notes"] == [], (name, cell)
    (note,) = rows["Main"][3]["notes"]
    assert Decimal(note["value"]) == estimated(books, FIRST, TODAY)
    figure = kwh_text(note["value"])
    assert note["text"] == (f"of which est. {figure}" if counted else f"est. {figure}, not billed")


def read_building(browser: Any, served: Served, name: str) -> tuple[dict[str, Any], Any, Any]:
    page = open_page(browser, served, f"#building={name}")
    try:
        page.wait_for_function(BUILDING_READY, arg=name)
        shown = page.evaluate(READ)
        bill = api(page, served, f"/api/bills?month=2026-03&building={name}")["bills"][0]
        overview = api(page, served, "/api/cost/overview")
    finally:
        page.context.close()
    assert not page.problems, page.problems
    return shown, bill, overview


def test_a_bill_states_its_estimate_apart(browser: Any, served: Served) -> None:
    books, counted = served.books, served.counted
    shown, bill, overview = read_building(browser, served, "Main")
    figures = shown["figures"]
    measured = kwh(books.total("main-1", "import_wh", FIRST, LAST))
    guessed = estimated(books, FIRST, LAST)
    # the bill's energy, and its estimated part beside it
    assert figures["bill-energy-kwh"]["value"] == bill["energy_kwh"]
    assert Decimal(bill["energy_kwh"]) == books.billed_kwh("main-1", FIRST, LAST, counted)
    assert figures["bill-estimated-kwh"]["value"] == bill["estimated_kwh"]
    assert Decimal(figures["bill-estimated-kwh"]["value"]) == guessed
    said = figures["bill-estimate"]["text"]
    assert said == f"({words(counted)} {decimal_text(bill['estimated_kwh'])} kWh)"
    facts = figures["bill-facts"]["text"]
    assert facts.startswith(f"Energy {decimal_text(bill['energy_kwh'])} kWh ({words(counted)}")
    assert "bill-export" not in figures and "Exported" not in facts  # Main exports nothing
    # its estimated lines: their own rows, only when counted
    lines = shown["rows"]["bill"]
    apart = [r["cells"][0]["text"] for r in lines if "estimated" in r["cls"].split()]
    assert apart == ([x["description"] for x in bill["lines"] if x["estimated"]] if counted else [])
    assert bool(apart) is counted
    assert all(text.endswith("(estimated)") for text in apart)
    # the month so far (the overview's), with its estimate apart
    row = {b["name"]: b for b in overview["buildings"]}["Main"]
    energy = figures["building-kwh"]
    assert energy["value"] == row["energy_kwh"]
    assert Decimal(energy["value"]) == books.billed_kwh("main-1", FIRST, TODAY, counted)
    box, figure = figures["building-kwh-estimate"], figures["building-kwh-estimated"]
    assert box["shown"] and figure["value"] == row["estimated_kwh"]
    assert Decimal(figure["value"]) == estimated(books, FIRST, TODAY)
    assert box["text"] == f"{words(counted)} {kwh_text(figure['value'])} kWh"
    # the meter's measured import, its estimate under it
    (main,) = shown["rows"]["building-meters"]
    cell = main["cells"][3]
    assert Decimal(cell["value"]) == measured
    assert [(n["cls"], Decimal(n["value"])) for n in cell["notes"]] == [
        ("estimate-note meter-estimate", guessed)
    ]
    assert cell["notes"][0]["text"] == f"+ est. {decimal_text(str(guessed))}"
    # the month's meter events, where the logger's store is readable (not in "excluded")
    events = [r["text"] for r in shown["events"]]
    if counted:
        assert [(e["meter"], e["kind"], e["source"]) for e in bill["meter_events"]] == [
            ("main-1", "replaced", "confirmed")
        ]
        assert events == ["main-1 replaced (confirmed), 18 Mar, 09:30: new meter SN 42"]
        assert figures["bill-events-block"]["shown"]
    else:
        assert bill["meter_events"] is None and events == []
        assert not figures["bill-events-block"]["shown"]


def test_a_bill_states_the_export_not_priced(browser: Any, served: Served) -> None:
    books = served.books
    shown, bill, _ = read_building(browser, served, "Annex")
    figures = shown["figures"]
    exported = kwh(books.month("roof-1", "export_wh"))
    guessed = kwh(books.month("roof-1", "estimated_export_wh"))
    assert figures["bill-export-kwh"]["value"] == bill["export_kwh"]
    assert Decimal(bill["export_kwh"]) == exported > 0
    assert figures["bill-estimated-export-kwh"]["value"] == bill["estimated_export_kwh"]
    assert Decimal(bill["estimated_export_kwh"]) == guessed > 0
    assert figures["bill-export"]["text"] == (
        f"Exported {decimal_text(str(exported))} kWh, estimated {decimal_text(str(guessed))} kWh"
        " (not priced: no feed-in tariff)"
    )
    # the energy billed is the import alone: no estimate of import, no line for the export
    assert Decimal(figures["bill-energy-kwh"]["value"]) == kwh(books.month("roof-1", "import_wh"))
    assert "bill-estimate" not in figures
    assert {r["kind"] for r in shown["rows"]["bill"]} == {"energy", "standing"}
    assert not any("xport" in r["cells"][0]["text"] for r in shown["rows"]["bill"])
    (roof,) = shown["rows"]["building-meters"]
    cell = roof["cells"][3]
    assert Decimal(cell["value"]) == kwh(books.month("roof-1", "import_wh"))
    assert [(n["cls"], Decimal(n["value"])) for n in cell["notes"]] == [
        ("estimate-note meter-export", exported)
    ]


def test_a_bill_without_estimate_or_export_says_nothing_of_them(
    browser: Any, served: Served
) -> None:
    books = served.books
    shown, bill, _ = read_building(browser, served, "Hall")
    figures = shown["figures"]
    assert Decimal(bill["estimated_kwh"]) == 0 and Decimal(bill["export_kwh"]) == 0
    assert Decimal(figures["bill-energy-kwh"]["value"]) == kwh(books.month("hall-1", "import_wh"))
    for absent in ("bill-estimate", "bill-estimated-kwh", "bill-export", "bill-export-kwh"):
        assert absent not in figures, absent
    assert figures["bill-facts"]["text"].startswith(
        f"Energy {decimal_text(bill['energy_kwh'])} kWh · "
    )
    assert not figures["building-kwh-estimate"]["shown"]
    assert figures["building-kwh-estimated"]["value"] is None
    assert shown["events"] == [] and not figures["bill-events-block"]["shown"]
    assert shown["rows"]["building-meters"][0]["cells"][3]["notes"] == []


def test_on_a_phone_the_estimates_and_the_export_fit(browser: Any, served: Served) -> None:
    page = open_page(browser, served, width=390)
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    try:
        page.wait_for_function(CAMPUS_READY)
        found = {"campus": page.evaluate(overflow)}
        assert page.locator("#cost-month-estimate").is_visible()
        for name in ("Main", "Annex"):
            page.goto(f"{served.base}/#building={name}")
            page.wait_for_function(BUILDING_READY, arg=name)
            assert page.locator("#bill-estimate" if name == "Main" else "#bill-export").is_visible()
            found[name] = page.evaluate(overflow)
    finally:
        page.context.close()
    assert found == {"campus": 0, "Main": 0, "Annex": 0}
    assert not page.problems, page.problems
