"""The public dashboard in real Chromium: every number it shows and draws equals the books.

The page is served by the real app on a fixed clock; the browser runs in
America/New_York while the site is elsewhere, so a time drawn in the viewer's
zone instead of the site's shows up. Read back from the page: the KPI and table
values (their `data-value`), the arrays each uPlot chart drew
(`window.campusCharts`), each axis's tick labels and where they sit on the
canvas, and the meter detail — at desktop and phone widths, on a first day
with one hour of data and on a month with a meter offline for a day.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.figures.books import Scenario, local_ms, utc_ms
from tests.figures.campus import Campus, campus_of, close
from tests.support.net import free_port

BROWSER_ZONE = "America/New_York"
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
METERS = {
    "ece-1": ("ECE", "1"),
    "ece-2": ("ECE", "2"),
    "lib-1": ("Main Library", "G"),
}
SCENARIOS = {
    "first-hour-kolkata-30s": Scenario(
        "first-hour", "Asia/Kolkata", 30,
        local_ms("Asia/Kolkata", 2026, 12, 1, 9), local_ms("Asia/Kolkata", 2026, 12, 1, 10),
        5, METERS,
    ),
    "month-offline-utc-300s": Scenario(
        "month", "UTC", 300, utc_ms(2026, 11, 1), utc_ms(2026, 12, 1, 10, 3), 60, METERS,
        offline={"lib-1": (utc_ms(2026, 11, 30, 12), utc_ms(2026, 12, 1, 2))},
    ),
}  # fmt: skip
READ_CHARTS = """() => {
  const out = {};
  for (const [name, slot] of Object.entries(window.campusCharts)) {
    const u = slot.u;
    if (!u || !slot.data) { out[name] = null; continue; }
    const axis = u.axes[0];
    const ctx = u.ctx;
    ctx.font = axis.font[0];
    const ticks = (axis._splits || []).map((v, i) => ({
      v, label: String((axis._values || [])[i]),
      x: u.valToPos(v, "x"), width: ctx.measureText(String((axis._values || [])[i])).width,
    }));
    out[name] = {
      xs: Array.from(slot.data[0]), ys: Array.from(slot.data[1]),
      range: [u.scales.x.min, u.scales.x.max], width: u.width,
      left: u.bbox.left / devicePixelRatio, ticks,
      yLabels: (u.axes[1]._values || []).map(String), xLabel: axis.label,
    };
  }
  return out;
}"""


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Campus, str]]:
    from werkzeug.serving import make_server

    scenario = SCENARIOS[request.param]
    folder = Path(tmp_path_factory.mktemp(request.param))
    with campus_of(scenario, "sqlite", folder) as campus:
        server = make_server("127.0.0.1", free_port(), campus.client.application)
        thread = threading.Thread(target=server.serve_forever, name="page-server")
        thread.start()
        try:
            yield campus, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()
            server.server_close()


def site_label(s: Scenario, t_s: float) -> str:
    local = datetime.fromtimestamp(t_s, UTC).astimezone(s.tz)
    return f"{local.day} {local:%b}" if (local.hour, local.minute) == (0, 0) else f"{local:%H:%M}"


def open_page(browser: Any, base: str, size: str) -> Any:
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height}, timezone_id=BROWSER_ZONE
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(base + "/")
    page.wait_for_function(
        "() => window.campusCharts && window.campusCharts.power24h.data"
        " && window.campusCharts.daily30d.data"
        " && document.querySelector('#today-kwh').dataset.value !== undefined"
        " && document.querySelectorAll('#buildings tbody tr').length > 0"
    )
    page.problems = problems
    return page


def check_power_chart(
    s: Scenario, books: Any, drawn: dict[str, Any], meters: list[str] | None
) -> int:
    now = s.now_ms
    start = now - 86_400_000
    assert drawn["range"] == [pytest.approx(start / 1000), pytest.approx(now / 1000)]
    checked = 0
    for x, y in zip(drawn["xs"], drawn["ys"], strict=True):
        if y is None:  # a gap drawn as a break in the line: the books have nothing there
            assert books.avg_power_w(meters, round(x * 1000) - 300_000, round(x * 1000)) is not None
            continue
        lo = round(x * 1000)
        expected = books.avg_power_w(meters, lo, lo + 300_000)
        assert expected is not None and close(y * 1000, expected, abs_tol=1e-6, rel_tol=1e-3), x
        checked += 1
    return checked


def check_ticks(s: Scenario, drawn: dict[str, Any], daily: bool) -> None:
    labels = [t["label"] for t in drawn["ticks"]]
    assert labels and len(set(labels)) == len(labels), labels
    for t in drawn["ticks"]:
        expected = (
            f"{datetime.fromtimestamp(t['v'], UTC).day} {datetime.fromtimestamp(t['v'], UTC):%b}"
            if daily
            else site_label(s, t["v"])
        )
        assert t["label"] == expected, (t, expected)
        # the label's box lies inside the canvas: nothing is cut off
        centre = drawn["left"] + t["x"]
        assert centre - t["width"] / 2 >= 0 and centre + t["width"] / 2 <= drawn["width"], t
    assert s.zone in drawn["xLabel"]
    values = [float(v.replace(",", "")) for v in drawn["yLabels"]]
    assert len(set(drawn["yLabels"])) == len(values) >= 2, drawn["yLabels"]


@pytest.mark.parametrize("size", sorted(SIZES))
def test_the_page_shows_the_books(served: tuple[Campus, str], browser: Any, size: str) -> None:
    campus, base = served
    s, books = campus.scenario, campus.books
    page = open_page(browser, base, size)
    try:
        today = s.local_day(s.now_ms)
        tomorrow = s.midnight_ms(today + timedelta(days=1))
        ranges = {
            "today": (s.midnight_ms(today), tomorrow),
            "week": (s.midnight_ms(today - timedelta(days=today.weekday())), tomorrow),
            "month": (s.midnight_ms(today.replace(day=1)), tomorrow),
        }
        for period, (lo, hi) in ranges.items():
            shown = float(page.get_attribute(f"#{period}-kwh", "data-value"))
            assert close(shown * 1000, books.energy_wh(None, lo, hi), abs_tol=1e-3), period
        power = sum(books.latest_window_power_w(m) or 0.0 for m in s.meters)
        shown_kw = float(page.get_attribute("#power-now", "data-value"))
        assert close(shown_kw * 1000, power, abs_tol=0.01, rel_tol=1e-3)
        for name in s.buildings():
            ids = [m for m, (b, _) in s.meters.items() if b == name]
            row = page.locator(f"#buildings tr[data-key='{name}']")
            kwh = float(row.locator("td").nth(1).get_attribute("data-value"))
            assert close(kwh * 1000, books.energy_wh(ids, *ranges["today"]), abs_tol=1e-3), name

        # a campus that never generated and had no gap bridged: the page as it was before
        # solar, with no generation, net or estimate shown anywhere
        hidden = page.evaluate(
            """() => [...document.querySelectorAll(['.kpis .flows', '.kpis .estimate',
              '#buildings .flow', '#buildings .estimate-note', '#daily-key'].join(', '))]
              .filter((el) => el.checkVisibility()).map((el) => el.outerHTML.slice(0, 80))"""
        )
        assert hidden == [], hidden
        assert page.locator(".kpis .flows").count() >= 3

        charts = page.evaluate(READ_CHARTS)
        assert check_power_chart(s, books, charts["power24h"], None) > 0
        check_ticks(s, charts["power24h"], daily=False)

        month = charts["daily30d"]
        assert page.evaluate("() => window.campusCharts.daily30d.data.length") == 2  # no generation
        last_day = today
        first_day = last_day - timedelta(days=29)
        utc_midnight = lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()  # noqa: E731
        assert month["range"] == [utc_midnight(first_day) - 43200, utc_midnight(last_day) + 43200]
        for x, y in zip(month["xs"], month["ys"], strict=True):
            day = datetime.fromtimestamp(x, UTC).date()
            expected = books.energy_wh(
                None, s.midnight_ms(day), s.midnight_ms(day + timedelta(days=1))
            )
            assert close(y * 1000, expected, abs_tol=1e-3), day
        assert {datetime.fromtimestamp(x, UTC).date() for x in month["xs"]} == {
            s.local_day(slot) for m in s.meters for slot in books.slots[m]
            if slot >= s.midnight_ms(first_day)
        }  # fmt: skip
        check_ticks(s, month, daily=True)
        assert any(t["label"] == f"{last_day.day} {last_day:%b}" for t in month["ticks"])

        page.click("#meters [data-key='lib-1'] button")
        page.wait_for_function(
            "() => window.campusCharts.meter.data"
            " && document.querySelector('#detail-peak').dataset.value !== undefined"
        )
        detail = page.evaluate(READ_CHARTS)["meter"]
        assert check_power_chart(s, books, detail, ["lib-1"]) > 0
        day = (s.now_ms - 86_400_000, s.now_ms)
        aligned = day[0] - day[0] % 300_000
        kwh = float(page.get_attribute("#detail-kwh", "data-value"))
        assert close(
            kwh * 1000,
            books.energy_wh(["lib-1"], aligned, day[1] - day[1] % 300_000 + 300_000),
            abs_tol=1e-3,
        )
        peak = float(page.get_attribute("#detail-peak", "data-value"))
        steps = [
            books.avg_power_w(["lib-1"], t, t + 300_000) for t in range(aligned, day[1], 300_000)
        ]
        assert close(
            peak * 1000, max(p for p in steps if p is not None), abs_tol=1e-6, rel_tol=1e-3
        )
        shown_last = page.inner_text("#detail-last")
        last_window = books.last["lib-1"].ts_ms
        last_window -= last_window % (s.window_s * 1000)
        local = datetime.fromtimestamp(last_window / 1000, UTC).astimezone(ZoneInfo(s.zone))
        assert f"{local:%H:%M}" in shown_last, shown_last  # the site's clock, not New York's
        assert not page.problems, page.problems
    finally:
        page.context.close()
