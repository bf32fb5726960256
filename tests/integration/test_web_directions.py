"""The public dashboard of a campus with rooftop solar and bridged gaps, in real Chromium.

The page is served by the real app on a fixed clock, over a SQLite window store
written through the sink (tests/figures/solar.py: Europe/Berlin on both DST days,
60 s and 300 s windows). Read back from the page: today's, this week's and this
month's consumption, generation, net and estimates (their `data-value`, and whether
each is shown), each building's row, the arrays the charts drew (generation as bars
below zero, the net per day, a PV meter's power curve through zero) — each equal
to the books (tests/figures/books.py). An estimate is shown only where it is not
zero, apart from the measured figure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.figures.books import Scenario
from tests.figures.campus import Campus, campus_of, close
from tests.figures.solar import VIRTUAL, fall, spring
from tests.support.net import free_port

pytestmark = pytest.mark.slow

SCENARIOS = {"spring-60s": spring(60), "fall-300s": fall(300)}
KWH_TOL = 1e-6  # the page shows what the API gives (kWh to six decimals)
READY = (
    "() => window.campusCharts && window.campusCharts.power24h.data"
    " && window.campusCharts.daily30d.data"
    " && document.querySelector('#today-kwh').dataset.value !== undefined"
    " && document.querySelectorAll('#buildings tbody tr').length > 0"
)
READ_KPIS = """() => {
  const value = (sel) => {
    const el = document.querySelector(sel);
    return el.dataset.value === undefined ? null : Number(el.dataset.value);
  };
  const shown = (sel) => document.querySelector(sel).checkVisibility();
  const out = {};
  for (const p of ["today", "week", "month"]) {
    out[p] = {
      energy_wh: value(`#${p}-kwh`), export_wh: value(`#${p}-export-kwh`),
      net_wh: value(`#${p}-net-kwh`), estimated_wh: value(`#${p}-estimated-kwh`),
      estimated_export_wh: value(`#${p}-estimated-export-kwh`),
      measured_shown: value(`#${p}-estimate .measured`),
      flows: shown(`#${p}-export-kwh`), estimate: shown(`#${p}-estimated-kwh`),
      estimate_export: shown(`#${p}-estimated-export-kwh`),
    };
  }
  out.power = value("#power-now");
  out.buildings = {};
  for (const tr of document.querySelectorAll("#buildings tbody tr")) {
    const cell = (i) => tr.cells[i];
    const note = (i) => cell(i).querySelector(".estimate-note");
    out.buildings[tr.dataset.key] = {
      energy_wh: Number(cell(2).dataset.value), export_wh: Number(cell(3).dataset.value),
      net_wh: Number(cell(4).dataset.value),
      estimated_wh: note(2) ? Number(note(2).dataset.value) : null,
      estimated_export_wh: note(3) ? Number(note(3).dataset.value) : null,
      flows: cell(3).checkVisibility() && cell(4).checkVisibility(),
      text: cell(2).textContent,
    };
  }
  return out;
}"""
READ_CHART = """(name) => {
  const slot = window.campusCharts[name];
  const u = slot.u;
  const ys = slot.data.slice(1).map((c) => Array.from(c));
  const low = Math.min(...ys.flat().filter((v) => v !== null));
  return {
    xs: Array.from(slot.data[0]), ys, labels: u.series.slice(1).map((s) => s.label),
    y: [u.scales.y.min, u.scales.y.max],
    // where the lowest value is drawn, and the plot's height (CSS pixels)
    lowAt: u.valToPos(low, "y"), height: u.bbox.height / devicePixelRatio,
  };
}"""


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Campus, str]]:
    from werkzeug.serving import make_server

    scenario = SCENARIOS[request.param]
    folder = Path(tmp_path_factory.mktemp(request.param))
    with campus_of(scenario, "sqlite", folder, VIRTUAL) as campus:
        server = make_server("127.0.0.1", free_port(), campus.client.application)
        thread = threading.Thread(target=server.serve_forever, name="directions-page-server")
        thread.start()
        try:
            yield campus, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()
            server.server_close()


SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture(params=["desktop"])
def page(request: pytest.FixtureRequest, served: tuple[Campus, str], browser: Any) -> Iterator[Any]:
    """The page in a browser on New York's clock (not the site's), at a width (`desktop`
    unless a test asks for others)."""
    _, base = served
    width, height = SIZES[request.param]
    context = browser.new_context(
        viewport={"width": width, "height": height}, timezone_id="America/New_York"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    page.wait_for_function(READY)
    try:
        yield page
        assert not problems, problems
    finally:
        context.close()


def periods(s: Scenario) -> dict[str, tuple[int, int]]:
    today = s.local_day(s.now_ms)
    tomorrow = s.midnight_ms(today + timedelta(days=1))
    return {
        "today": (s.midnight_ms(today), tomorrow),
        "week": (s.midnight_ms(today - timedelta(days=today.weekday())), tomorrow),
        "month": (s.midnight_ms(today.replace(day=1)), tomorrow),
    }


def kwh(wh: float) -> float:
    return wh / 1000


@pytest.mark.parametrize("page", sorted(SIZES), indirect=True)
def test_the_totals_show_consumption_generation_net_and_estimates(
    served: tuple[Campus, str], page: Any
) -> None:
    campus, _ = served
    s, books = campus.scenario, campus.books
    shown = page.evaluate(READ_KPIS)
    for period, (lo, hi) in periods(s).items():
        sums, got = books.sums(None, lo, hi), shown[period]
        for name in ("energy_wh", "export_wh", "net_wh"):
            assert close(got[name], kwh(getattr(sums, name)), abs_tol=KWH_TOL), (period, name)
        assert got["flows"] is True, period  # the campus generates: generation and net shown
        for name, box in (("estimated_wh", "estimate"), ("estimated_export_wh", "estimate_export")):
            expected = kwh(getattr(sums, name))
            assert expected > 0, (period, name)  # every period of these campuses has both
            assert got[box] is True and close(got[name], expected, abs_tol=KWH_TOL), (period, name)
        # "measured X kWh + estimated Y kWh": the measured figure beside the estimate
        assert got["measured_shown"] == got["energy_wh"], period
    today = periods(s)["today"]
    estimated = {"with": 0, "without": 0}
    for name in s.buildings():
        ids = [m for m, (b, _) in s.meters.items() if b == name]
        sums, row = books.sums(ids, *today), shown["buildings"][name]
        for field in ("energy_wh", "export_wh", "net_wh"):
            assert close(row[field], kwh(getattr(sums, field)), abs_tol=KWH_TOL), (name, field)
        assert row["flows"] is True, name
        for field in ("estimated_wh", "estimated_export_wh"):
            expected = kwh(getattr(sums, field))
            if expected == 0:  # shown only where there is an estimate
                assert row[field] is None, (name, field)
                estimated["without"] += 1
            else:
                assert close(row[field], expected, abs_tol=KWH_TOL), (name, field)
                estimated["with"] += 1
    assert estimated["with"] > 0 and estimated["without"] > 0, estimated
    power = sum(books.latest_window_power_w(m) or 0.0 for m in s.meters)
    assert close(shown["power"] * 1000, power, abs_tol=0.01, rel_tol=1e-3)


def test_the_month_chart_draws_generation_below_zero_and_the_net(
    served: tuple[Campus, str], page: Any
) -> None:
    campus, _ = served
    s, books = campus.scenario, campus.books
    drawn = page.evaluate(READ_CHART, "daily30d")
    assert drawn["labels"] == ["Consumption", "Generation", "Net"]
    assert page.locator("#daily-key").is_visible()  # the key says which bars are which
    consumption, generation, net = drawn["ys"]
    assert len(drawn["xs"]) == len({s.local_day(slot) for m in s.meters for slot in books.slots[m]})
    for x, used, made, left in zip(drawn["xs"], consumption, generation, net, strict=True):
        day = datetime.fromtimestamp(x, UTC).date()
        sums = books.sums(None, s.midnight_ms(day), s.midnight_ms(day + timedelta(days=1)))
        assert close(used, kwh(sums.energy_wh), abs_tol=1e-6), day
        assert made < 0 and close(-made, kwh(sums.export_wh), abs_tol=1e-6), day
        assert close(left, kwh(sums.net_wh), abs_tol=1e-6), day
    # the scale reaches below the lowest bar: nothing is clipped
    assert drawn["y"][0] <= min(generation) < 0 < max(consumption) <= drawn["y"][1]
    assert 0 <= drawn["lowAt"] <= drawn["height"]


def test_the_24_hour_chart_is_the_net_power(served: tuple[Campus, str], page: Any) -> None:
    books = served[0].books
    drawn = page.evaluate(READ_CHART, "power24h")
    (ys,) = drawn["ys"]
    checked = 0
    for x, y in zip(drawn["xs"], ys, strict=True):
        if y is None:
            continue
        lo = round(x * 1000)
        expected = books.avg_power_w(None, lo, lo + 300_000)
        assert close(y * 1000, expected, abs_tol=1e-6, rel_tol=1e-3), x
        checked += 1
    assert checked > 0
    assert drawn["y"][0] <= min(v for v in ys if v is not None)


def test_a_pv_meters_day_curve_goes_below_zero(served: tuple[Campus, str], page: Any) -> None:
    campus, _ = served
    s, books = campus.scenario, campus.books
    page.click("#meters [data-key='sun-1'] button")
    page.wait_for_function(
        "() => window.campusCharts.meter.data"
        " && document.querySelector('#detail-kwh').dataset.value !== undefined"
    )
    drawn = page.evaluate(READ_CHART, "meter")
    (ys,) = drawn["ys"]
    powers = [y for y in ys if y is not None]
    assert min(powers) < -1 and max(powers) > 0  # kW: exporting at noon, importing at night
    assert drawn["y"][0] <= min(powers) and 0 <= drawn["lowAt"] <= drawn["height"]
    for x, y in zip(drawn["xs"], ys, strict=True):
        if y is not None:
            lo = round(x * 1000)
            expected = books.avg_power_w(["sun-1"], lo, lo + 300_000)
            assert close(y * 1000, expected, abs_tol=1e-6, rel_tol=1e-3), x
    start = s.now_ms - 86_400_000
    day = (start - start % 300_000, s.now_ms - s.now_ms % 300_000 + 300_000)
    sums = books.sums(["sun-1"], *day)
    read = page.evaluate(
        """() => Object.fromEntries(["#detail-kwh", "#detail-export-kwh",
          "#detail-estimated-kwh", "#detail-estimated-export-kwh"].map((sel) => {
            const el = document.querySelector(sel);
            return [sel, el.checkVisibility() ? Number(el.dataset.value) : null];
          }))"""
    )
    assert close(read["#detail-kwh"], kwh(sums.energy_wh), abs_tol=1e-6)
    assert close(read["#detail-export-kwh"], kwh(sums.export_wh), abs_tol=1e-6)
    for sel, name in (
        ("#detail-estimated-kwh", "estimated_wh"),
        ("#detail-estimated-export-kwh", "estimated_export_wh"),
    ):
        expected = kwh(getattr(sums, name))
        if expected == 0:
            assert read[sel] is None, sel
        else:
            assert close(read[sel], expected, abs_tol=1e-6), sel
    assert sums.estimated_export_wh > 0  # its bridged noon lies in the last 24 hours


def test_a_buildings_page_shows_its_generation_net_and_estimates(
    served: tuple[Campus, str], page: Any
) -> None:
    campus, base = served
    s, books = campus.scenario, campus.books
    month = periods(s)["month"]
    read = """() => Object.fromEntries(["#building-export-kwh", "#building-net-kwh",
      "#building-estimated-kwh", "#building-estimated-export-kwh"].map((sel) => {
        const el = document.querySelector(sel);
        return [sel, el.checkVisibility() ? Number(el.dataset.value) : null];
      }))"""
    for name in s.buildings():
        page.goto(f"{base}/#building={name.replace(' ', '%20')}")
        page.wait_for_function(
            "(name) => document.querySelector('#building-title').textContent === name"
            " && document.querySelector('#building-kwh').dataset.value !== undefined",
            arg=name,
        )
        shown = page.evaluate(read)
        ids = [m for m, (b, _) in s.meters.items() if b == name]
        sums = books.sums(ids, *month)
        expected = {
            "#building-export-kwh": kwh(sums.export_wh) if sums.export_wh else None,
            "#building-net-kwh": kwh(sums.net_wh) if sums.export_wh else None,
            "#building-estimated-kwh": kwh(sums.estimated_wh)
            if sums.estimated_wh or sums.estimated_export_wh
            else None,
            "#building-estimated-export-kwh": kwh(sums.estimated_export_wh)
            if sums.estimated_export_wh
            else None,
        }
        for sel, value in expected.items():
            assert close(shown[sel], value, abs_tol=KWH_TOL), (name, sel, shown[sel], value)
    assert books.sums(["lib-1"], *month).export_wh == 0  # the Library shows no generation
