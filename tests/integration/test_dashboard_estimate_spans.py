"""The local dashboard spreads each estimate over its gap, as the windows, rollups and bills do.

An estimate (what a meter's registers counted across a gap the logger could not integrate)
covers the time from the meter's reading before the gap to the reading after it. The
dashboard's days, hours and ranges hold the part of it that their time shares with the gap,
in proportion to time — not all of it where the gap ends. A store written through the
logger's own store code in Europe/Berlin, one meter "lab-1" (building Lab) polled every
minute at a steady 1.2 kW, three gaps, each bridged by an estimate on the reading after it:

- 23:50 on Friday 27 March to 00:20 on the 28th: 300 Wh imported, 90 Wh exported — a third
  on the 27th (100 Wh, 30 Wh), two thirds on the 28th (200 Wh, 60 Wh);
- 23:00 CET on the 28th to 04:00 CEST on the 29th, across the night the clocks go forward:
  4,000 Wh over four real hours (the clock says five) — 1,000 Wh in each of the clock hours
  23 (the 28th), 00, 01 and 03 (the 29th, which has no 02): 1,000 Wh on the 28th, 3,000 Wh
  on the 29th;
- 06:30 to 07:30 on Monday the 30th, across the tariff's change from night to day rates:
  600 Wh, 300 Wh at each rate.

The shares are worked out by hand above (GOLDEN_*); the measured figures are the books,
Σ energy_wh of the `readings` rows of a range.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest
from tests.support.config import campus_meters, write_toml

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.readings import Reading
from campus_energy.dashboard import store_queries as q
from campus_energy.dashboard.app import NOW_ENV
from campus_energy.dashboard.store_hours import scope_hours
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
ZONE = ZoneInfo("Europe/Berlin")
METER = "lab-1"
STEP_S = 60
POWER_W = 1200.0
RATES = {"night": Decimal("0.20"), "day": Decimal("0.30")}


def local_ms(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return round(datetime(2026, 3, day, hour, minute, second, tzinfo=ZONE).timestamp() * 1000)


FIRST_MS = local_ms(26)
NOW_MS = local_ms(30, 12, 0, 10)
# (the reading before the gap, the reading after it that carries the estimate, Wh, export Wh)
GAPS = (
    (local_ms(27, 23, 50), local_ms(28, 0, 20), 300.0, 90.0),
    (local_ms(28, 23), local_ms(29, 4), 4000.0, None),
    (local_ms(30, 6, 30), local_ms(30, 7, 30), 600.0, None),
)
# by hand: each local day's part of the estimates (import Wh, export Wh)
GOLDEN_DAYS = {
    26: (0.0, 0.0),
    27: (100.0, 30.0),
    28: (200.0 + 1000.0, 60.0),
    29: (3000.0, 0.0),
    30: (600.0, 0.0),
}
# by hand: each local clock hour's part of the estimated import (Wh); every other hour: none
GOLDEN_HOURS = {
    local_ms(27, 23): 100.0,
    local_ms(28, 0): 200.0,
    local_ms(28, 23): 1000.0,
    local_ms(29, 0): 1000.0,
    local_ms(29, 1): 1000.0,
    local_ms(29, 3): 1000.0,  # 02:00 is no clock hour of the 29th
    local_ms(30, 6): 300.0,
    local_ms(30, 7): 300.0,
}
# by hand: each day's estimated lines on the Cost tab, period -> (kWh, EUR at its rate); of
# 30 March, 06:30-07:00 at the night rate and 07:00-07:30 at the day rate
GOLDEN_LINES = {
    27: {"night": (Decimal("0.100"), Decimal("0.02"))},
    28: {"night": (Decimal("1.200"), Decimal("0.24"))},
    29: {"night": (Decimal("3.000"), Decimal("0.60"))},
    30: {"day": (Decimal("0.300"), Decimal("0.09")), "night": (Decimal("0.300"), Decimal("0.06"))},
}


def readings() -> tuple[list[Reading], list[tuple[str, int, int]]]:
    """The meter's readings every minute, none strictly inside a gap; the reading after a
    gap carries its estimate."""
    estimates = {after: (wh, out) for _, after, wh, out in GAPS}
    state, found, gaps = MeterState(), [], []
    for ts in range(FIRST_MS, NOW_MS - 5_000, STEP_S * 1000):
        if any(before < ts < after for before, after, *_ in GAPS):
            continue
        previous = state.last_ts_ms
        step, state = advance(
            state, power_w=POWER_W, wall_s=ts / 1000, mono_s=ts / 1000, max_gap_s=STEP_S * 2.5
        )
        estimate = estimates.get(ts)
        if step.gap_s is not None and previous is not None:
            gaps.append((METER, previous, ts))
        assert (estimate is not None) == (step.gap_s is not None and previous is not None)
        found.append(
            Reading(
                METER,
                step.ts_ms,
                step.seq,
                step.energy_uwh,
                step.total_uwh,
                {"power_w": POWER_W, "voltage_v": 230.0},
                interval_start_ms=previous if step.energy_uwh else None,
                estimated_uwh=None if estimate is None else round(estimate[0] * 1e6),
                estimated_export_uwh=(
                    None if estimate is None or estimate[1] is None else round(estimate[1] * 1e6)
                ),
                estimated_start_ms=previous if estimate is not None else None,
            )
        )
    return found, gaps


def write_store(path: Path) -> None:
    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register([MeterRecord(METER, "Lab", "0", "eastron-sdm120")])
            found, gaps = readings()
            await store.insert_many(found)
            await store.commit(Cycle(gaps=gaps))
        finally:
            await store.close()

    asyncio.run(go())


class Books:
    """The `readings` rows of the store."""

    def __init__(self, store: Path) -> None:
        conn = sqlite3.connect(store)
        try:
            self.rows = conn.execute(
                "SELECT ts_ms, energy_wh, estimated_energy_wh, estimated_export_wh "
                "FROM readings WHERE meter_id = ? ORDER BY ts_ms",
                (METER,),
            ).fetchall()
        finally:
            conn.close()

    def measured(self, start: int, end: int) -> float:
        return sum(wh for ts, wh, *_ in self.rows if start <= ts < end)

    def estimated(self) -> tuple[float, float]:
        return (
            sum(r[2] or 0.0 for r in self.rows),
            sum(r[3] or 0.0 for r in self.rows),
        )

    def carried(self) -> dict[int, float]:
        """ts -> the estimate a reading carries."""
        return {ts: guess for ts, _, guess, _ in self.rows if guess}


@dataclass(frozen=True)
class Campus:
    store: Path
    config: Path
    books: Books


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Campus:
    folder = tmp_path_factory.mktemp("estimate-spans")
    store = folder / "store.db"
    write_store(store)
    tou = {
        "id": "tou",
        "currency": "EUR",
        "versions": [
            {
                "valid_from": "2026-01-01",
                "periods": [
                    {"name": "day", "start": "07:00", "end": "22:00", "rate": str(RATES["day"])},
                    {
                        "name": "night",
                        "start": "22:00",
                        "end": "07:00",
                        "rate": str(RATES["night"]),
                    },
                ],
            }
        ],
    }
    config = write_toml(
        folder / "campus-energy.toml",
        {
            "site": {
                "name": "Gap campus",
                "timezone": "Europe/Berlin",
                "tariff": "tou",
                "buildings": [{"name": "Lab"}],
            },
            "storage": {"path": store},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters({METER: ("Lab", "0", "main")}),
            "tariffs": [tou],
        },
    )
    return Campus(store, config, Books(store))


@pytest.fixture
def at(campus: Campus, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(campus.config))
    monkeypatch.setenv(NOW_ENV, datetime.fromtimestamp(NOW_MS / 1000, ZONE).isoformat())
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    yield app


def show(at: AppTest, first: int, last: int) -> None:
    """The sidebar's range: the local days first..last of March 2026."""
    picker = next(w for w in at.sidebar.date_input if w.label == "Range (local days)")
    picker.set_value((date(2026, 3, first), date(2026, 3, last))).run()
    assert not at.exception, at.exception


def tab(at: AppTest, label: str) -> Any:
    return next(t for t in at.tabs if t.label == label)


def kwh(wh: float) -> str:
    return f"{wh / 1000:,.3f}"


def golden(first: int, last: int) -> tuple[float, float]:
    days = [GOLDEN_DAYS[d] for d in range(first, last + 1)]
    return sum(d[0] for d in days), sum(d[1] for d in days)


def test_the_books_hold_each_estimate_on_the_reading_after_its_gap(campus: Campus) -> None:
    """And the shares by hand spread exactly what the readings carry."""
    b = campus.books
    assert b.carried() == pytest.approx({after: wh for _, after, wh, _ in GAPS})
    assert b.estimated() == pytest.approx(golden(26, 30))
    assert sum(GOLDEN_HOURS.values()) == pytest.approx(b.estimated()[0])
    assert local_ms(29, 4) - local_ms(28, 23) == 4 * 3_600_000  # the clocks went forward


@pytest.mark.parametrize("day", [27, 28, 29, 30])
def test_a_days_figures_hold_its_share_of_each_gap(at: AppTest, campus: Campus, day: int) -> None:
    """The overview and the data-quality view of one local day: its measured energy from
    the books, and of each gap that reaches into it the part of its estimate inside it."""
    show(at, day, day)
    start, end = local_ms(day), min(local_ms(day + 1), NOW_MS + 1)
    measured = campus.books.measured(start, end)
    estimated, estimated_export = GOLDEN_DAYS[day]
    overview = tab(at, "Overview")
    shown = {m.label: m.value for m in overview.metric}
    assert shown["Consumption (kWh)"] == kwh(measured)
    captions = [c.value for c in overview.caption]
    assert f"Consumption: measured {kwh(measured)} kWh + estimated {kwh(estimated)} kWh" in (
        captions
    )
    if estimated_export:
        assert f"Generation: measured 0.000 kWh + estimated {kwh(estimated_export)} kWh" in (
            captions
        )
    per_meter = next(
        t.value for t in overview.dataframe if {"meter", "net (kWh)"} <= set(t.value.columns)
    )
    row = per_meter.set_index("meter").loc[METER]
    assert row["estimated consumption (kWh)"] * 1000 == pytest.approx(estimated, abs=1e-6)
    quality = tab(at, "Data quality")
    found = next(t.value for t in quality.dataframe if "estimates" in t.value.columns)
    row = found.set_index("meter").loc[METER]
    assert row["estimated import (kWh)"] * 1000 == pytest.approx(estimated, abs=1e-6)
    assert row["estimated export (kWh)"] * 1000 == pytest.approx(estimated_export, abs=1e-6)
    assert row["estimates"] == sum(1 for a, b, *_ in GAPS if a < end and b > start)


@pytest.mark.parametrize(("first", "last"), [(26, 27), (27, 28), (28, 29), (26, 30)])
def test_a_range_holds_the_parts_of_the_gaps_inside_it(
    at: AppTest, campus: Campus, first: int, last: int
) -> None:
    show(at, first, last)
    start, end = local_ms(first), min(local_ms(last + 1), NOW_MS + 1)
    measured = campus.books.measured(start, end)
    estimated, estimated_export = golden(first, last)
    captions = [c.value for c in tab(at, "Overview").caption]
    assert f"Consumption: measured {kwh(measured)} kWh + estimated {kwh(estimated)} kWh" in (
        captions
    )
    assert f"Generation: measured 0.000 kWh + estimated {kwh(estimated_export)} kWh" in captions


def test_the_hours_hold_the_parts_of_the_gaps_they_span(campus: Campus) -> None:
    """The hours the Cost tab prices: each local clock hour its share; an hour inside a gap,
    with no reading, holds its share with the meter as a member that covered none of it."""
    conn = q.connect(campus.store)
    try:
        hours = scope_hours(conn, ZONE, local_ms(26), local_ms(31), {METER: 1.0})
    finally:
        conn.close()
    found = {h.hour_ms: h.estimated_wh for h in hours if h.estimated_wh}
    assert found == pytest.approx(GOLDEN_HOURS, abs=1e-6)
    inside = {h.hour_ms: h for h in hours if h.hour_ms in (local_ms(29, 0), local_ms(29, 1))}
    assert set(inside) == {local_ms(29, 0), local_ms(29, 1)}
    assert all((h.members, h.min_covered_s, h.energy_wh) == (1, 0.0, 0.0) for h in inside.values())


@pytest.mark.parametrize("day", [27, 28, 29, 30])
def test_the_cost_tab_prices_each_share_at_the_rate_of_its_hours(
    at: AppTest, campus: Campus, day: int
) -> None:
    """As bills do: the day's measured import plus its share of the estimates, the estimate
    on lines of its own at the rates of the hours it spans (each line's kWh rounded)."""
    show(at, day, day)
    cost = tab(at, "Cost & demand")
    start, end = local_ms(day), min(local_ms(day + 1), NOW_MS + 1)
    measured = campus.books.measured(start, end)
    estimated = GOLDEN_DAYS[day][0]
    billed = (Decimal(measured + estimated) / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)
    assert {m.label: m.value for m in cost.metric}["Energy (kWh)"] == f"{billed:,}"
    note = next(c.value for c in cost.caption if c.value.startswith("Readings cover"))
    assert f"Energy: measured {kwh(measured)} kWh + estimated {kwh(estimated)} kWh" in note
    lines = cost.table[0].value.set_index("description")
    expected = {f"Energy, {p} (estimated)": v for p, v in GOLDEN_LINES[day].items()}
    shown = {
        d: (lines.loc[d, "quantity"], lines.loc[d, "amount"])
        for d in lines.index
        if d.endswith("(estimated)")
    }
    assert shown == expected
