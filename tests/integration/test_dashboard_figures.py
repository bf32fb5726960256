"""Every figure the local dashboard shows, recomputed from the `readings` rows themselves.

A store is written with the logger's own store code; the books are plain sums over the
rows of its `readings` view (energy = Σ energy_wh; average power = Σ energy_wh ÷ the time
the summed readings integrated, i.e. Σ (ts − previous ts) left of recorded gaps). Each
metric, table cell and chart datum read through AppTest must equal them: energy to the
displayed resolution (kWh charts hold 0.001 Wh), average power to 0.1 %.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from tests.support.dashboard_books import (
    HOUR_MS,
    METERS,
    REASON,
    WEEKDAYS,
    Books,
    Scenario,
    write_config,
    write_store,
)

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
SCENARIOS = {
    "utc": Scenario("UTC", (2026, 6, 10, 0, 0), (2026, 6, 17, 15, 42, 10)),
    "kolkata": Scenario("Asia/Kolkata", (2026, 6, 8, 3, 0), (2026, 6, 17, 14, 37, 10)),
    "new-york-23h-day": Scenario("America/New_York", (2026, 3, 5, 0, 0), (2026, 3, 8, 23, 20, 10)),
    "new-york-25h-day": Scenario(
        "America/New_York", (2026, 10, 28, 12, 0), (2026, 11, 1, 22, 50, 10)
    ),
    "first-hour": Scenario("Asia/Kolkata", (2026, 6, 17, 10, 40), (2026, 6, 17, 11, 40, 10), 60),
    "month-one-meter-offline": Scenario(
        "Asia/Kolkata",
        (2026, 5, 1, 0, 0),
        (2026, 5, 31, 20, 0, 10),
        900,
        {"lib-1": ((2026, 5, 12, 9, 0), (2026, 5, 13, 10, 30))},
        (date(2026, 5, 1), date(2026, 5, 31)),
    ),
}


def chart_data(chart: Any) -> pd.DataFrame:
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()


def spec(chart: Any) -> dict[str, Any]:
    return dict(json.loads(chart.proto.spec))


def tab(at: AppTest, label: str) -> Any:
    return next(t for t in at.tabs if t.label == label)


def wall(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone).replace(tzinfo=None)


def assert_site_time_axis(chart: Any, zone: ZoneInfo) -> None:
    x = spec(chart)["encoding"]["x"]
    assert x["scale"]["type"] == "utc", x  # a browser's zone cannot move these times
    assert x["axis"]["format"] == "%H:%M", x
    assert zone.key in x["title"], x


def assert_kwh(shown: float, wh: float) -> None:
    """A kWh figure held to 0.001 Wh equals the books' Wh to 1e-6 Wh."""
    assert shown * 1000 == pytest.approx(round(wh, 3), abs=1e-6)


def decimals(column: str) -> int:
    """The resolution a figure is shown to: W 0.1, Wh 0.001, kWh 0.000001 (0.001 Wh, shown
    with 3 decimals); anything else is a stored value, exact to 6 decimals."""
    for unit, places in (("(kWh)", 6), ("(Wh)", 3), ("(W)", 1)):
        if column.endswith(unit):
            return places
    return 1 if column == "W" else 6


def assert_no_float_noise(at: AppTest) -> None:
    """Every number in every table and chart is a whole multiple of its resolution, and every
    number a chart's tooltip shows is formatted."""
    tables = [t.value for t in at.dataframe]
    charts = at.get("vega_lite_chart")
    for frame in [*tables, *(chart_data(c) for c in charts)]:
        for column in frame.select_dtypes("float").columns:
            values = frame[column].dropna()
            assert (values == values.round(decimals(column))).all(), (column, list(values))
    for chart in charts:
        floats = set(chart_data(chart).select_dtypes("float").columns)
        tips = [
            t if isinstance(t, dict) else {"field": t} for t in spec(chart)["encoding"]["tooltip"]
        ]
        assert all("format" in t for t in tips if t["field"] in floats), tips


@dataclass
class Check:
    at: AppTest
    books: Books
    meters: set[str]
    first: date
    last: date

    @property
    def zone(self) -> ZoneInfo:
        return self.books.zone

    @property
    def today(self) -> date:
        return self.books.local(self.books.now_ms).date()

    def range_ms(self) -> tuple[int, int]:
        end = self.books.midnight(self.last + timedelta(days=1))
        return self.books.midnight(self.first), min(end, self.books.now_ms + 1)

    def kpis(self) -> None:
        b, today = self.books, self.today
        starts = [today, today - timedelta(days=today.weekday()), today.replace(day=1)]
        labels = ["Today (kWh)", "This week (kWh)", "This month (kWh)"]
        shown = {m.label: float(m.value.replace(",", "")) for m in self.at.metric}
        directions = ["Consumption (kWh)", "Generation (kWh)", "Net (kWh)"]
        assert list(shown) == labels + directions
        for label, day in zip(labels, starts, strict=True):
            exact = b.wh(self.meters, b.midnight(day), b.now_ms + 1) / 1000
            assert abs(shown[label] - exact) <= 0.0005 + 1e-9, label  # shown to 1 Wh
        # the sidebar's range: these meters only import, so net is consumption
        consumed = b.wh(self.meters, *self.range_ms()) / 1000
        assert abs(shown["Consumption (kWh)"] - consumed) <= 0.0005 + 1e-9
        assert shown["Generation (kWh)"] == 0
        assert shown["Net (kWh)"] == shown["Consumption (kWh)"]

    def overview(self) -> None:
        b, overview = self.books, tab(self.at, "Overview")
        now_table = overview.dataframe[0].value.set_index("meter")
        assert set(now_table.index) == self.meters
        for meter in self.meters:
            last = max((r for r in b.rows if r[0] == meter), key=lambda r: r[1])
            status = "online" if b.now_ms - last[1] <= 60_000 else "offline"
            when = b.local(last[1]).strftime("%Y-%m-%d %H:%M:%S")
            expected = [status, round(last[2], 1), *last[3:7], when]
            assert now_table.loc[meter].tolist() == expected, meter
        [chart] = overview.get("vega_lite_chart")
        shown = chart_data(chart).set_index("meter")
        start = b.midnight(self.today)
        for meter in self.meters:
            assert_kwh(shown.loc[meter, "energy (kWh)"], b.wh({meter}, start, b.now_ms + 1))
            assert shown.loc[meter, "building"] == METERS[meter][0]

    def live(self) -> None:
        b, [chart] = self.books, tab(self.at, "Live").get("vega_lite_chart")
        assert_site_time_axis(chart, self.zone)
        shown = chart_data(chart)
        rows = [r for r in b.rows if r[0] in self.meters and b.now_ms - 15 * 60_000 <= r[1]]
        expected = sorted((r[0], wall(r[1], self.zone), round(r[2], 1)) for r in rows)
        times = shown["time"].dt.tz_localize(None).dt.to_pydatetime()
        assert sorted(zip(shown["meter"], times, shown["W"], strict=True)) == expected

    def energy_per_day(self, chart: Any) -> None:
        b, (start, end) = self.books, self.range_ms()
        shown = chart_data(chart)
        found = b.sums(self.meters, start, end, lambda r: b.local(r[1]).date().isoformat())
        books = {k: v for k, v in found.items() if v != [0.0, 0]}
        assert len(shown) == len(books)  # a meter-day without readings is no bar, not 0
        per_day = zip(shown["meter"], shown["day"], shown["energy (kWh)"], strict=True)
        for meter, day, kwh in per_day:
            assert_kwh(kwh, books[(meter, day)][0])

    def weekdays(self, chart: Any) -> None:
        b, (start, end) = self.books, self.range_ms()
        power = b.mean_w(self.meters, start, end, b.weekday)
        per_meter = b.sums(self.meters, start, end, b.weekday)
        per_day = b.sums(self.meters, start, end, b.day)
        covered = {day for (_, day), (_, ms) in per_day.items() if ms > 0}
        shown = chart_data(chart)
        assert list(shown["weekday"]) == [w for w in WEEKDAYS if w in power]
        for _, row in shown.iterrows():
            lengths = [b.day_ms(d) for d in covered if WEEKDAYS[d.weekday()] == row["weekday"]]
            per_day_wh = power[row["weekday"]] * sum(lengths) / len(lengths) / HOUR_MS
            assert row["energy (kWh)"] == pytest.approx(per_day_wh / 1000, rel=1e-3)
            spans = [ms for (_, w), (_, ms) in per_meter.items() if w == row["weekday"] and ms]
            assert row["hours"] == round(sum(spans) / len(spans) / HOUR_MS, 1)

    def hours(self, chart: Any) -> None:
        b, (start, end) = self.books, self.range_ms()
        power = b.mean_w(self.meters, start, end, lambda r: b.local(r[1]).hour)
        shown = chart_data(chart)
        assert sorted(shown["hour"]) == sorted(power)  # hours without readings: no bar, not 0
        for hour, w in zip(shown["hour"], shown["W"], strict=True):
            assert w == pytest.approx(power[hour], rel=1e-3), hour

    def history(self) -> None:
        history = tab(self.at, "History")
        assert [s.value for s in history.subheader] == [
            "Energy per day",
            "Consumption by weekday (average per day)",
            "Average power by hour of day",
        ]
        per_day, weekday, hourly = history.get("vega_lite_chart")
        self.energy_per_day(per_day)
        self.weekdays(weekday)
        self.hours(hourly)

    def day_detail(self) -> None:
        b, [chart] = self.books, tab(self.at, "Day detail").get("vega_lite_chart")
        assert_site_time_axis(chart, self.zone)
        start = b.midnight(self.today)
        end = b.midnight(self.today + timedelta(days=1))
        power = b.mean_w(
            self.meters, start, end, lambda r: (r[0], start + (r[1] - start) // 60_000 * 60_000)
        )
        shown = chart_data(chart)
        assert len(shown) == len(power)
        times = shown["time"].dt.tz_localize(None).dt.to_pydatetime()
        for meter, ts, at, w in zip(shown["meter"], shown["ts_ms"], times, shown["W"], strict=True):
            assert at == wall(ts, self.zone)
            assert w == pytest.approx(power[(meter, ts)], rel=1e-3)

    def quality(self) -> None:
        b, quality = self.books, tab(self.at, "Data quality")
        start, end = b.midnight(self.first), b.midnight(self.last + timedelta(days=1))
        gaps = sorted(
            (m, b.local(a).strftime("%Y-%m-%d %H:%M:%S"), (z - a) / 1000)
            for m, a, z in b.gaps
            if m in self.meters and z >= start and a < end
        )
        tables = [t.value for t in quality.dataframe]
        if gaps:
            shown = tables.pop(0)
            assert sorted(zip(shown["meter"], shown["from"], shown["seconds"], strict=True)) == gaps
        if "lib-1" in self.meters:
            shown = tables.pop(0)
            when = b.local(b.now_ms - 400_000).strftime("%Y-%m-%d %H:%M:%S")
            assert shown.values.tolist() == [["lib-1", when, REASON, 99999.0]]
        drift = tables[0].set_index("meter")
        for meter in self.meters:
            rows = [r for r in b.rows if r[0] == meter and start <= r[1] < end]
            integrated = sum(r[7] for r in rows[1:])
            register = rows[-1][8] - rows[0][8]
            difference = integrated - register
            share = round(100 * difference / register, 3)
            expected = [round(integrated, 3), round(register, 3), round(difference, 3), share]
            assert drift.loc[meter].tolist() == pytest.approx(expected, abs=1e-6), meter

    def raw(self) -> None:
        b, shown = self.books, tab(self.at, "Raw data").dataframe[0].value
        start, end = b.midnight(self.first), b.midnight(self.last + timedelta(days=1))
        rows = [r for r in b.rows if r[0] in self.meters and start <= r[1] < end]
        pairs = set(zip(shown["meter_id"], shown["ts_ms"], shown["energy_wh"], strict=True))
        books = {(r[0], r[1], r[7]) for r in rows}
        cutoff = sorted(r[1] for r in rows)[-1000:][0]  # the newest 1,000 (any of a tie)
        assert len(pairs) == min(1000, len(rows)) and pairs <= books
        assert {r for r in books if r[1] > cutoff} <= pairs

    def everything(self) -> None:
        assert not self.at.exception, [e.value for e in self.at.exception]
        assert not self.at.error, [e.value for e in self.at.error]
        for figures in (self.kpis, self.overview, self.live, self.history, self.day_detail):
            figures()
        self.quality()
        self.raw()
        assert_no_float_noise(self.at)


def open_dashboard(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s: Scenario
) -> tuple[AppTest, Books]:
    store = tmp_path / "store.db"
    write_store(store, s)
    zone = ZoneInfo(s.zone)
    now = datetime.fromtimestamp(s.at(s.now) / 1000, zone)
    monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(write_config(tmp_path, store, s.zone)))
    monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", now.isoformat())
    monkeypatch.setattr(sys, "argv", [APP])
    at = AppTest.from_file(APP, default_timeout=60).run()
    if s.days is not None:
        next(w for w in at.sidebar.date_input if w.label == "Range (local days)").set_value(
            s.days
        ).run()
    return at, Books(store, zone, s.at(s.now))


def check(at: AppTest, books: Books, s: Scenario, meters: set[str]) -> Check:
    today = books.local(books.now_ms).date()
    first, last = s.days or (today - timedelta(days=6), today)
    return Check(at, books, meters, first, last)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_figure_equals_the_books(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = SCENARIOS[name]
    at, books = open_dashboard(monkeypatch, tmp_path, s)
    check(at, books, s, set(METERS)).everything()


def test_a_building_and_a_meter_selection_equal_their_books(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = SCENARIOS["month-one-meter-offline"]
    at, books = open_dashboard(monkeypatch, tmp_path, s)
    next(w for w in at.sidebar.multiselect if w.label == "Buildings").set_value(["ECE"]).run()
    check(at, books, s, {"ece-1", "ece-2"}).everything()
    next(w for w in at.sidebar.multiselect if w.label == "Buildings").set_value(["Library"]).run()
    check(at, books, s, {"lib-1"}).everything()
    at.sidebar.multiselect[0].set_value(["ECE", "Library"]).run()
    next(w for w in at.sidebar.multiselect if w.label == "Meters").set_value(["ece-2"]).run()
    check(at, books, s, {"ece-2"}).everything()


def test_hours_and_weekdays_without_readings_are_named_not_drawn_as_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = SCENARIOS["first-hour"]  # 10:40 to 11:40 on a Wednesday, the first day
    at, _ = open_dashboard(monkeypatch, tmp_path, s)
    history = tab(at, "History")
    _, weekday, hourly = history.get("vega_lite_chart")
    assert list(chart_data(weekday)["weekday"]) == ["Wed"]  # today, under way, still shown
    assert list(chart_data(hourly)["hour"]) == [10, 11]
    captions = " ".join(c.value for c in history.caption)
    assert "Estimated from less than a day of readings: Wed (1.0 h)." in captions
    assert "No readings on: Mon, Tue, Thu, Fri, Sat, Sun (no data, not zero)." in captions
    absent = ", ".join(f"{i:02d}" for i in range(24) if i not in (10, 11))
    assert f"No readings in hours: {absent} (no data, not zero)." in captions
