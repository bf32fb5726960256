"""The public dashboard's figures in real Chromium, against the books of the window rows.

Each store is written through the SQLite sink and served by the API under
Gunicorn on a fixed clock, and the browser runs in another zone than the site,
at desktop and phone widths. Read back from the page: the arrays each uPlot
chart drew (`window.campusCharts`), where each axis put its ticks and labels,
and the text of the KPIs, the building and meter tables and the meter detail.
The books are computed here from the `window_aggregates` rows alone: energy is
Σ total_energy_wh; a step's average power is Σ energy ÷ covered time per meter,
summed over the meters.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import re
import sqlite3
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support.net import free_port
from tests.support.services import serving_process

from campus_energy.backends.sqlite.sink import SqliteSink
from campus_energy.core.windows import Contribution, WindowDelta
from campus_energy.demo.mosquitto import port_open

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
STEP = 5 * MINUTE
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
METERS = {  # id -> (building, floor, typical power in W): three magnitudes, three buildings
    "ece-1": ("ECE", "1", 3_400.0),
    "ece-2": ("ECE", "2", 12_500.0),
    "hos-1": ("Hostel", "3", 46_000.0),
    "lib-1": ("Main Library", "G", 780.0),
}


def local_ms(zone: str, *parts: int) -> int:
    return round(datetime(*parts, tzinfo=ZoneInfo(zone)).timestamp() * 1000)  # type: ignore[misc]


@dataclass(frozen=True)
class Store:
    """A campus as the bridge would have written it, and the instant the API serves it at."""

    zone: str
    window_s: int
    browser_zone: str
    now_ms: int
    spans: tuple[tuple[int, int, int], ...]  # windows start every `every` ms in [from, to)
    offline: dict[str, tuple[int, int]] = field(default_factory=dict)  # no windows in [from, to)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def local(self, ms: float) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz)

    def midnight_ms(self, day: date) -> int:
        return round(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp() * 1000)


def dense_then_sparse(now_ms: int, window_s: int, dense_ms: int, sparse: tuple[int, int]) -> Any:
    """Windows up to the last whole one before now: every window for `dense_ms`, then back
    to `sparse[0]` ms one window every `sparse[1]` ms."""
    last = now_ms - now_ms % (window_s * 1000)
    spans = [(last - dense_ms, last, window_s * 1000)]
    if sparse[0]:
        spans.append((last - sparse[0], last - dense_ms, sparse[1]))
    return tuple(spans)


DAY_ONE_NOW = local_ms("Asia/Kolkata", 2026, 6, 1, 8, 12, 40)
WEEK_NOW = local_ms("UTC", 2026, 3, 11, 14, 7, 10)
YEAR_NOW = local_ms("America/New_York", 2026, 11, 15, 9, 3, 20)  # 30 days back cross DST's end
STORES = {
    # the first hour of a new campus: 30-second windows, the site 10½ hours from the browser
    "day-one-kolkata-30s": Store(
        "Asia/Kolkata", 30, "America/New_York", DAY_ONE_NOW,
        dense_then_sparse(DAY_ONE_NOW, 30, HOUR, (0, 0)),
    ),
    # a week of 30-second windows (the last 26 hours all there), one meter stopped 3 h ago
    "week-utc-30s": Store(
        "UTC", 30, "America/New_York", WEEK_NOW,
        dense_then_sparse(WEEK_NOW, 30, 26 * HOUR, (7 * DAY, 10 * MINUTE)),
        offline={"hos-1": (WEEK_NOW - 3 * HOUR, WEEK_NOW + DAY)},
    ),
    # over a year of 5-minute windows, the library offline for the whole of 12 Nov
    "year-new-york-300s": Store(
        "America/New_York", 300, "Asia/Kolkata", YEAR_NOW,
        dense_then_sparse(YEAR_NOW, 300, 33 * DAY, (400 * DAY, DAY)),
        offline={
            "lib-1": (
                local_ms("America/New_York", 2026, 11, 12),
                local_ms("America/New_York", 2026, 11, 13),
            )
        },
    ),
}  # fmt: skip


def power_w(meter: str, t_ms: int) -> float:
    """A meter's load: its typical power with a daily swing and a wobble from window to window."""
    base = METERS[meter][2]
    hours = t_ms / HOUR
    return base * (
        1 + 0.35 * math.sin(2 * math.pi * (hours - 6) / 24) + 0.04 * math.sin(hours * 37)
    )


def windows_of(store: Store) -> list[WindowDelta]:
    """Every window of every meter; every 7th covers only 80 % of its time (a missed poll), so
    a step's power over its covered time differs from its energy over its length."""
    found = []
    for meter, (building, floor, _) in METERS.items():
        away = store.offline.get(meter, (0, 0))
        seq = 0
        for first, last, every in store.spans:
            for start in range(first, last, every):
                if away[0] <= start < away[1]:
                    continue
                seq += 1
                covered = store.window_s * (0.8 if seq % 7 == 3 else 1.0)
                power = power_w(meter, start)
                energy = power * covered / 3600
                item = Contribution(meter, start, seq, energy, covered, True, power)
                found.append(WindowDelta(meter, start, store.window_s, (item,), building, floor))
    return found


def write(db: Path, store: Store) -> None:
    deltas = windows_of(store)

    async def go() -> None:
        sink = SqliteSink(db, store.tz)
        try:
            for i in range(0, len(deltas), 5000):
                await sink.merge(deltas[i : i + 5000], store.now_ms)
        finally:
            await sink.close()

    # in a thread of its own: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, go()).result()


class Books:
    """What every figure must be, from the window rows alone (per meter, sorted by start)."""

    def __init__(self, store: Store, db: Path) -> None:
        self.store = store
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT meter_id, window_start, window_end, total_energy_wh, coverage "
                "FROM window_aggregates ORDER BY meter_id, window_start"
            ).fetchall()
        finally:
            conn.close()
        self.rows: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for meter, start, end, energy, coverage in rows:
            a, b = (round(datetime.fromisoformat(x).timestamp() * 1000) for x in (start, end))
            starts, energies, covered = self.rows.setdefault(meter, ([], [0.0], [0.0]))
            starts.append(a)
            energies.append(energies[-1] + energy)
            covered.append(covered[-1] + coverage * (b - a) / 1000)

    def meter_sums(self, meter: str, lo: int, hi: int) -> tuple[float, float]:
        """(energy Wh, covered s) of the meter's windows that start in [lo, hi)."""
        starts, energy, covered = self.rows.get(meter, ([], [0.0], [0.0]))
        i, j = bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)
        return energy[j] - energy[i], covered[j] - covered[i]

    def energy_wh(self, meters: list[str], lo: int, hi: int) -> float:
        return math.fsum(self.meter_sums(m, lo, hi)[0] for m in meters)

    def power_w(self, meters: list[str], lo: int, hi: int) -> float | None:
        found = [self.meter_sums(m, lo, hi) for m in meters]
        powers = [e * 3600 / c for e, c in found if c > 0]
        return math.fsum(powers) if powers else None

    def latest(self, meter: str) -> tuple[int, float] | None:
        """(start, average power) of the meter's latest window, if it is online now."""
        starts = self.rows[meter][0]
        last = starts[-1]
        energy, covered = self.meter_sums(meter, last, last + 1)
        ended_ago = self.store.now_ms - (last + self.store.window_s * 1000)
        fresh = (2 * self.store.window_s + 60) * 1000  # two windows and the bridge's grace
        return (last, energy * 3600 / covered) if ended_ago <= fresh else None

    def power_now_w(self, meters: list[str]) -> float:
        return math.fsum(found[1] for m in meters if (found := self.latest(m)) is not None)


@dataclass
class Served:
    name: str
    store: Store
    books: Books
    base: str


LAUNCHER = """
import sys
from campus_energy.api import create_app
from campus_energy.api.server import Gunicorn
from campus_energy.config import load_config
from pathlib import Path

class FixedClock(Gunicorn):
    def load(self):
        return create_app(self.config, clock=lambda: float(sys.argv[2]))

FixedClock(load_config(Path(sys.argv[1]))).run()
"""


@contextlib.contextmanager
def serve(name: str, folder: Path) -> Iterator[Served]:
    """The store written into a SQLite file and served by Gunicorn on the store's clock."""
    store = STORES[name]
    db = folder / "windows.db"
    write(db, store)
    port = free_port()
    config = folder / "campus-energy.toml"
    config.write_text(
        f'[site]\ntimezone = "{store.zone}"\n[bridge]\nwindow_s = {store.window_s}\n'
        f'[bridge.sqlite]\npath = "{db}"\n[api]\nport = {port}\nworkers = 1\ncache_s = 0\n'
    )
    launcher = folder / "fixed_clock.py"
    launcher.write_text(LAUNCHER)
    with serving_process(
        [sys.executable, launcher, config, str(store.now_ms / 1000)],
        folder / "api.log",
        ready=lambda: port_open("127.0.0.1", port),
        ready_timeout=20,
        stop_timeout=20,
        shared=True,
    ):
        yield Served(name, store, Books(store, db), f"http://127.0.0.1:{port}")


def open_page(browser: Any, served: Served, size: str) -> Any:
    """The dashboard in a browser whose zone is not the site's, once every figure is in."""
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        timezone_id=served.store.browser_zone,
        locale="en-US",
    )
    context.clock.set_fixed_time(served.store.now_ms / 1000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    page.goto(served.base + "/")
    page.wait_for_function(
        """() => {
          const c = window.campusCharts;
          return c && c.power24h.u && c.daily30d.u
            && document.querySelector('#today-kwh').dataset.value !== undefined
            && document.querySelectorAll('#buildings tbody tr').length > 0
            && document.querySelectorAll('#meters tbody tr').length > 0;
        }"""
    )
    return page


# What each chart drew, read from its uPlot: the data arrays, the x range, and every tick
# label of both axes with its box in canvas pixels (positioned and measured as uPlot draws it).
READ_CHARTS = """() => {
  const out = {};
  for (const [name, slot] of Object.entries(window.campusCharts)) {
    const u = slot.u;
    if (!u || !slot.data || u.root.closest('[hidden]')) { out[name] = null; continue; }
    const canvas = u.ctx.canvas;
    const ticks = (axis, scale) => {
      u.ctx.font = axis.font[0];
      const size = axis.font[1];
      // a y label is right-aligned ticks + gap left of its axis's inner edge
      const right = Math.round((axis._pos - axis.ticks.size - axis.gap) * devicePixelRatio);
      return (axis._splits || []).map((v, i) => {
        const label = (axis._values || [])[i];
        if (label == null) return null;
        const at = u.valToPos(v, scale, true), width = u.ctx.measureText(String(label)).width;
        return { v, label: String(label), at, box: scale === "x"
          ? [at - width / 2, at + width / 2, 0, 0]
          : [right - width, right, at - size / 2, at + size / 2] };
      }).filter((t) => t !== null);
    };
    const root = u.root.getBoundingClientRect();
    out[name] = {
      xs: Array.from(u.data[0]), ys: Array.from(u.data[1]),
      range: [u.scales.x.min, u.scales.x.max],
      source: { start: slot.source.start, end: slot.source.end, timezone: slot.source.timezone },
      canvas: [canvas.width, canvas.height], dpr: devicePixelRatio,
      root: [root.left, root.right],
      plot: [u.bbox.left, u.bbox.left + u.bbox.width, u.bbox.top, u.bbox.top + u.bbox.height],
      x: { ticks: ticks(u.axes[0], "x"), label: u.axes[0].label },
      y: { ticks: ticks(u.axes[1], "y"), label: u.axes[1].label,
           inner: u.axes[1]._pos * devicePixelRatio,
           outer: (u.axes[1]._pos - u.axes[1]._size) * devicePixelRatio },
    };
  }
  return out;
}"""

READ_TEXT = """() => {
  const cell = (el) => el ? { text: el.textContent.trim(), value: el.dataset.value ?? null } : null;
  const rows = (sel) => Object.fromEntries([...document.querySelectorAll(sel + ' tbody tr')]
    .map((tr) => [tr.dataset.key, [...tr.cells].map(cell)]));
  const kpis = {};
  for (const id of ['power-now', 'today-kwh', 'week-kwh', 'month-kwh']) {
    kpis[id] = cell(document.getElementById(id));
  }
  return { kpis, buildings: rows('#buildings'), meters: rows('#meters'),
    header: document.querySelector('.site-header').innerText,
    zone: document.getElementById('site-zone')?.textContent ?? null,
    lastWindow: document.getElementById('last-window').textContent,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    kpiFits: [...document.querySelectorAll('.kpi-value')].map((el) => {
      const value = el.querySelector('span[id]').getBoundingClientRect();
      const unit = el.querySelector('.unit').getBoundingClientRect();
      return el.scrollWidth <= el.clientWidth && unit.top < value.bottom;
    }) };
}"""
READ_DETAIL = """() => Object.fromEntries(
  ['detail-power', 'detail-kwh', 'detail-peak', 'detail-last'].map((id) => {
    const el = document.getElementById(id);
    return [id, { text: el.textContent.trim(), value: el.dataset.value ?? null }];
  }))"""
DETAIL_METER = "ece-1"


@pytest.fixture(scope="module", params=sorted(STORES))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serve(request.param, tmp_path_factory.mktemp(request.param)) as found:
        yield found


@dataclass
class Shown:
    """Everything the page showed and drew, at one size."""

    served: Served
    size: str
    charts: dict[str, Any]
    text: dict[str, Any]
    detail: dict[str, Any]
    problems: list[str]


def read_page(browser: Any, served: Served, size: str) -> Shown:
    page = open_page(browser, served, size)
    try:
        charts = page.evaluate(READ_CHARTS)
        text = page.evaluate(READ_TEXT)
        page.click(f"#meters [data-key='{DETAIL_METER}'] button")
        page.wait_for_function(
            "() => window.campusCharts.meter.u && window.campusCharts.meter.data"
            " && document.querySelector('#detail-peak').dataset.value !== undefined"
        )
        charts["meter"] = page.evaluate(READ_CHARTS)["meter"]
        detail = page.evaluate(READ_DETAIL)
        return Shown(served, size, charts, text, detail, page.problems)
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def pages(browser: Any, served: Served) -> dict[str, Shown]:
    """The page read once per size for each store (one Gunicorn per store)."""
    return {size: read_page(browser, served, size) for size in SIZES}


@pytest.fixture(params=sorted(SIZES))
def shown(request: pytest.FixtureRequest, pages: dict[str, Shown]) -> Shown:
    return pages[request.param]


# ---------------------------------------------------------------- how the page rounds
KW_TOL = 6e-7  # the API answers power to the mW
KWH_TOL = 6e-7  # and energy totals to the Wh/1000 (kWh to 6 places)


def decimals_kw(kw: float) -> int:
    return 2 if abs(kw) < 10 else 1


def decimals_kwh(kwh: float) -> int:
    return 3 if abs(kwh) < 10 else 2 if abs(kwh) < 100 else 1


def formatted(value: float, decimals: int) -> str:
    """en-US, grouped, rounded half away from zero on the exact binary value (as Intl does)."""
    exact = Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{exact:,.{decimals}f}"


def shows(cell: dict[str, Any], expected: float, decimals: Any, abs_tol: float) -> None:
    """The cell keeps the full value (≈ the books) and shows it rounded, without float noise."""
    assert cell["value"] is not None, cell
    value = float(cell["value"])
    assert value == pytest.approx(expected, abs=abs_tol, rel=1e-12), (cell, expected)
    assert cell["text"] == formatted(value, decimals(value)), cell
    assert cell["text"] == formatted(expected, decimals(expected)), (cell, expected)


# ---------------------------------------------------------------- what the books say
def steps(answer: dict[str, Any]) -> tuple[int, int]:
    """The 5-minute steps a series answer covers: [from the step holding start, end)."""
    start = round(datetime.fromisoformat(answer["start"]).timestamp() * 1000)
    end = round(datetime.fromisoformat(answer["end"]).timestamp() * 1000)
    return start - start % STEP, end


def site_label(store: Store, t_s: float) -> str:
    local = store.local(t_s * 1000)
    return f"{local.day} {local:%b}" if (local.hour, local.minute) == (0, 0) else f"{local:%H:%M}"


def today(store: Store) -> date:
    return store.local(store.now_ms).date()


def day_carrier(day: date) -> float:
    """A site day as the daily chart carries it: its date's UTC midnight, in seconds."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------- the tests
def check_labels_fit(drawn: dict[str, Any]) -> None:
    """Every tick label lies wholly inside the canvas, x labels never overlap, y labels stay
    between the plot and the axis title."""
    width, height = drawn["canvas"]
    xs = drawn["x"]["ticks"]
    assert xs, drawn["x"]
    for t in xs:
        assert t["box"][0] >= 0 and t["box"][1] <= width, (t, width)
    for a, b in itertools.pairwise(xs):
        assert a["box"][1] + 4 * drawn["dpr"] <= b["box"][0], (a, b)
    for t in drawn["y"]["ticks"]:
        left, right, top, bottom = t["box"]
        assert drawn["y"]["outer"] <= left and right <= drawn["y"]["inner"], (t, drawn["y"])
        assert top >= 0 and bottom <= height, (t, height)


def check_round_y(drawn: dict[str, Any], unit: str) -> None:
    """Ticks at 0 and whole multiples of 1, 2 or 5 × 10ⁿ, labelled exactly, reaching the data."""
    assert f"({unit})" in drawn["y"]["label"], drawn["y"]["label"]
    ticks = drawn["y"]["ticks"]
    values = [t["v"] for t in ticks]
    assert len(values) >= 3 and values[0] == 0, ticks
    incr = values[1] - values[0]
    power = 10 ** math.floor(math.log10(incr))
    assert any(math.isclose(incr, k * power, rel_tol=1e-9) for k in (1, 2, 5)), incr
    for k, t in enumerate(ticks):
        assert math.isclose(t["v"], k * incr, rel_tol=1e-9, abs_tol=1e-12), ticks
        assert float(t["label"].replace(",", "")) == pytest.approx(t["v"], abs=1e-9), t
    assert len({t["label"] for t in ticks}) == len(ticks), ticks
    top = max((y for y in drawn["ys"] if y is not None), default=0)
    assert drawn["y"]["ticks"][-1]["v"] + incr > top, (ticks, top)


def check_power_axis(store: Store, drawn: dict[str, Any]) -> None:
    """The whole 24 hours asked for, ticks on whole site hours every 1–12 h, labelled on the
    site's 24-hour clock (the date at midnight) once each."""
    lo, hi = (datetime.fromisoformat(drawn["source"][k]).timestamp() for k in ("start", "end"))
    assert hi - lo == 86_400 and hi == store.now_ms / 1000
    assert drawn["range"] == [pytest.approx(lo), pytest.approx(hi)]
    ticks = drawn["x"]["ticks"]
    assert len(ticks) >= 3, ticks
    gaps = {b["v"] - a["v"] for a, b in itertools.pairwise(ticks)}
    assert len(gaps) == 1 and gaps.pop() in {h * 3600 for h in (1, 2, 3, 4, 6, 12)}, ticks
    for t in ticks:
        assert lo <= t["v"] <= hi and store.local(t["v"] * 1000).minute == 0, t
        assert t["label"] == site_label(store, t["v"]), t
    assert len({t["label"] for t in ticks}) == len(ticks)
    assert store.zone in drawn["x"]["label"] and "24-hour" in drawn["x"]["label"]


def test_the_month_chart_spans_its_30_site_days_with_one_label_a_day(shown: Shown) -> None:
    store = shown.served.store
    drawn = shown.charts["daily30d"]
    last = today(store)
    first = last - timedelta(days=29)
    lo, hi = drawn["range"]
    assert lo <= day_carrier(first) - 0.4 * 86_400 and hi >= day_carrier(last) + 0.4 * 86_400
    assert hi - lo <= 31 * 86_400, drawn["range"]
    ticks = drawn["x"]["ticks"]
    assert len(ticks) >= 4, ticks
    for t in ticks:
        day = datetime.fromtimestamp(t["v"], UTC)
        assert (day.hour, day.minute) == (0, 0) and first <= day.date() <= last, t
        assert t["label"] == f"{day.day} {day:%b}", t
    assert len({t["label"] for t in ticks}) == len(ticks), ticks
    assert ticks[-1]["label"] == f"{last.day} {last:%b}", ticks  # today is named
    assert store.zone in drawn["x"]["label"]
    check_round_y(drawn, "kWh")


def test_the_power_charts_span_24_hours_on_the_site_clock(shown: Shown) -> None:
    store = shown.served.store
    for name in ("power24h", "meter"):
        check_power_axis(store, shown.charts[name])
        check_round_y(shown.charts[name], "kW")


def test_no_label_is_cut_off_and_nothing_overflows_the_page(shown: Shown) -> None:
    for name in ("power24h", "daily30d", "meter"):
        drawn = shown.charts[name]
        check_labels_fit(drawn)
        assert drawn["root"][0] >= 0 and drawn["root"][1] <= SIZES[shown.size][0], drawn["root"]
    assert shown.text["overflow"] <= 0, shown.text["overflow"]
    assert all(shown.text["kpiFits"]), shown.text  # each KPI and its unit on one line, whole
    assert not shown.problems, shown.problems


def test_every_time_is_the_sites_and_says_so(shown: Shown) -> None:
    store = shown.served.store
    text = shown.text
    assert text["zone"] == store.zone and f"Times in {store.zone}" in text["header"], text
    assert not re.search(r"\b[AP]M\b", text["header"] + str(text["meters"]) + str(shown.detail))
    last = max(shown.served.books.rows[m][0][-1] for m in METERS)
    assert f"{store.local(last):%H:%M}" in text["lastWindow"], text["lastWindow"]
    for meter in METERS:
        start = shown.served.books.rows[meter][0][-1]
        local = store.local(start)
        assert text["meters"][meter][4]["text"] == f"{local.day} {local:%b}, {local:%H:%M}"
    local = store.local(shown.served.books.rows[DETAIL_METER][0][-1])
    assert f"{local.day} {local:%b}, {local:%H:%M}" in shown.detail["detail-last"]["text"]


def test_the_drawn_series_equal_the_books(shown: Shown) -> None:
    store, books = shown.served.store, shown.served.books
    for name, meters in (("power24h", [*METERS]), ("meter", [DETAIL_METER])):
        drawn = shown.charts[name]
        lo, hi = steps(drawn["source"])
        expected = {t / 1000: books.power_w(meters, t, t + STEP) for t in range(lo, hi, STEP)}
        assert {x for x, y in zip(drawn["xs"], drawn["ys"], strict=True) if y is not None} == {
            x for x, w in expected.items() if w is not None
        }, name
        for x, y in zip(drawn["xs"], drawn["ys"], strict=True):
            if y is None:  # a break in the line: the books have nothing there
                assert expected.get(x) is None, (name, x)
            else:
                assert y * 1000 == pytest.approx(expected[x], abs=2e-3), (name, x)
    drawn = shown.charts["daily30d"]
    first = today(store) - timedelta(days=29)
    days = [first + timedelta(days=k) for k in range(30)]
    energy = {
        day_carrier(d): books.energy_wh(
            [*METERS], store.midnight_ms(d), store.midnight_ms(d + timedelta(days=1))
        )
        for d in days
    }
    assert set(drawn["xs"]) == {x for x, wh in energy.items() if wh > 0}
    for x, y in zip(drawn["xs"], drawn["ys"], strict=True):
        assert y * 1000 == pytest.approx(energy[x], abs=2e-6, rel=1e-12), x


def test_the_meter_detail_agrees_with_the_books(shown: Shown) -> None:
    books = shown.served.books
    drawn = shown.charts["meter"]
    lo, hi = steps(drawn["source"])
    detail = shown.detail
    latest = books.latest(DETAIL_METER)
    assert latest is not None
    shows(detail["detail-power"], latest[1] / 1000, decimals_kw, KW_TOL)
    # the page adds the steps' energy, each kept by the API to the µWh
    energy = books.energy_wh([DETAIL_METER], lo, hi) / 1000
    shows(detail["detail-kwh"], energy, decimals_kwh, (hi - lo) / STEP * 5e-10)
    powers = [books.power_w([DETAIL_METER], t, t + STEP) for t in range(lo, hi, STEP)]
    peak = max(p for p in powers if p is not None)
    shows(detail["detail-peak"], peak / 1000, decimals_kw, KW_TOL)
    # a step's average is a mean of its windows' averages: never above the highest window
    starts = books.rows[DETAIL_METER][0]
    highest = max(books.power_w([DETAIL_METER], s, s + 1) or 0.0 for s in starts if lo <= s < hi)
    assert latest[1] * 0.5 <= peak <= highest * (1 + 1e-9), (latest, peak, highest)


def test_the_figures_in_words_equal_the_books(shown: Shown) -> None:
    store, books = shown.served.store, shown.served.books
    kpis = shown.text["kpis"]
    day = today(store)
    tomorrow = store.midnight_ms(day + timedelta(days=1))
    periods = {
        "today-kwh": store.midnight_ms(day),
        "week-kwh": store.midnight_ms(day - timedelta(days=day.weekday())),
        "month-kwh": store.midnight_ms(day.replace(day=1)),
    }
    for key, start in periods.items():
        shows(kpis[key], books.energy_wh([*METERS], start, tomorrow) / 1000, decimals_kwh, KWH_TOL)
    shows(kpis["power-now"], books.power_now_w([*METERS]) / 1000, decimals_kw, KW_TOL)
    buildings = sorted({b for b, _, _ in METERS.values()})
    assert sorted(shown.text["buildings"]) == buildings
    for name in buildings:
        ids = [m for m, (b, _, _) in METERS.items() if b == name]
        cells = shown.text["buildings"][name]
        shows(cells[1], books.power_now_w(ids) / 1000, decimals_kw, KW_TOL)
        shows(
            cells[2],
            books.energy_wh(ids, periods["today-kwh"], tomorrow) / 1000,
            decimals_kwh,
            KWH_TOL,
        )
    for meter in METERS:
        cells = shown.text["meters"][meter]
        latest = books.latest(meter)
        assert cells[5]["text"] == ("online" if latest else "offline"), (meter, cells)
        if latest:
            shows(cells[3], latest[1] / 1000, decimals_kw, KW_TOL)
