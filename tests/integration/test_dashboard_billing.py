"""The local dashboard's Cost & demand tab, and its hours, against books kept from the readings.

A logger store is written with the logger's own store code: the rows of
`tests.support.dashboard_books.meter_readings` (trapezoid energy in whole mWh every
5 minutes, nothing during an outage, then a gap) for five meters, on the site's clock
in Europe/Berlin from 20 September to 26 October 2026, through the end of summer time
(Sunday 25 October lasts 25 hours: 02:00-03:00 comes twice). The configuration's
campus: building Hall with a main meter and two sub-meters (one of them silent for
three hours across the repeated hour) and their unmetered remainder as a virtual meter,
building Lab of one top-level meter, and a pump in no building. Hall is on a two-period
tariff (day 07:00-22:00, night the rest) with a standing charge per day and a 15-minute
demand charge with a ratchet; Lab and the pump are on none.

The books: per local quarter hour, the signed sum of the scope's meters' energy_wh of
the readings whose ts lies in it, in whole mWh. Each kWh of a period, each amount, the
total, the CO₂ and each peak (the highest quarter's energy × 4 / 1000 kW, from hours in
which every member of a remainder reported) is worked out here by hand, as
docs/billing.md states the rules, and must equal what the tab shows exactly.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from tests.support.config import config_data, meter_at, tcp_bus, write_toml
from tests.support.dashboard_books import Books, Scenario, meter_readings

from campus_energy.core.answers import ScopeHour
from campus_energy.core.days import hour_of
from campus_energy.core.readings import Reading
from campus_energy.dashboard import store_queries as q
from campus_energy.dashboard.store_hours import scope_hours
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
ZONE = "Europe/Berlin"
QUARTER_MS = 900_000
MWH = 1000  # µWh per mWh: every reading's energy is a whole number of mWh
# meter id: (building, floor, its index in meter_readings' power: 900 W × (index + 1) + ...)
METERS = {
    "hall-main": ("Hall", "0", 6),
    "hall-a": ("Hall", "1", 0),
    "hall-b": ("Hall", "2", 1),
    "lab-1": ("Lab", "0", 2),
    "pump": ("", "", 3),
}
PLACES = {"hall-main": {"role": "main"}, "hall-a": {"parent": "hall-main"}}
PLACES["hall-b"] = {"parent": "hall-main"}
REMAINDER = {"hall-main": 1, "hall-a": -1, "hall-b": -1}
SCENARIO = Scenario(
    ZONE,
    (2026, 9, 20, 0, 0),
    (2026, 10, 26, 12, 0, 10),
    300,
    {"hall-b": ((2026, 10, 25, 1, 0), (2026, 10, 25, 4, 0))},
)
DST_DAY = date(2026, 10, 25)
RATES = {"day": Decimal("0.3120"), "night": Decimal("0.1850")}
STANDING_PER_DAY = Decimal("1.50")
PRICE_PER_KW = Decimal("8.40")
RATCHET_SHARE = Decimal("0.8")
CO2_KG_PER_KWH = Decimal("0.380")
CENT = Decimal("0.01")
MILLI = Decimal("0.001")
TARIFF = {
    "id": "hall-tou",
    "currency": "EUR",
    "versions": [
        {
            "valid_from": "2026-01-01",
            "standing_per_day": str(STANDING_PER_DAY),
            "demand": {
                "interval_min": 15,
                "price_per_kw": str(PRICE_PER_KW),
                "ratchet_share": str(RATCHET_SHARE),
                "ratchet_months": 11,
            },
            "periods": [
                {"name": "day", "start": "07:00", "end": "22:00", "rate": str(RATES["day"])},
                {"name": "night", "start": "22:00", "end": "07:00", "rate": str(RATES["night"])},
            ],
        }
    ],
}


def heavier(readings: list[Reading], until_ms: int) -> list[Reading]:
    """A meter's readings with twice the energy before `until_ms` (its totals summed again):
    a busier September, whose peak the ratchet then carries into October."""
    found, total = [], 0
    for r in readings:
        energy = 2 * r.energy_uwh if r.ts_ms < until_ms else r.energy_uwh
        total += energy
        found.append(replace(r, energy_uwh=energy, total_uwh=total))
    return found


def write_store(path: Path, s: Scenario) -> None:
    """The meters' readings and gaps, written by the logger's own store code."""
    readings: list[Reading] = []
    gaps: list[Any] = []
    for meter, (*_, index) in METERS.items():
        rows, found = meter_readings(meter, index, s)
        readings += heavier(rows, s.at((2026, 10, 1, 0, 0))) if meter == "hall-main" else rows
        gaps += found

    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register(
                MeterRecord(m, b, f, "eastron-sdm120") for m, (b, f, _) in METERS.items()
            )
            await store.insert_many(readings)
            await store.commit(Cycle(gaps=gaps))
        finally:
            await store.close()

    asyncio.run(go())


def write_config(folder: Path, store: Path) -> Path:
    meters = [
        meter_at(m, "plant", unit, "eastron-sdm120", building=b, floor=f, **PLACES.get(m, {}))
        for unit, (m, (b, f, _)) in enumerate(METERS.items(), start=1)
    ]
    site = {
        "name": "Billing campus",
        "timezone": ZONE,
        "buildings": [{"name": "Hall", "tariff": TARIFF["id"]}, {"name": "Lab"}],
    }
    remainder = " ".join(f"{'-' if w < 0 else '+'} {m}" for m, w in REMAINDER.items())
    data = config_data(
        [tcp_bus()],
        meters,
        site=site,
        storage={"path": str(store)},
        virtual_meters=[{"id": "hall-rest", "building": "Hall", "terms": remainder[2:]}],
        tariffs=[TARIFF],
        emissions={"factors": [{"valid_from": "2026-01-01", "kg_per_kwh": str(CO2_KG_PER_KWH)}]},
    )
    return write_toml(folder / "campus-energy.toml", data)


# -- the books ---------------------------------------------------------------------------


def kwh(mwh: int) -> Decimal:
    return (Decimal(mwh) / 1_000_000).quantize(MILLI, ROUND_HALF_UP)


def money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Quarters:
    """A scope's energy per local quarter hour (mWh, signed), and which meters reported in
    each local clock hour."""

    mwh: Mapping[int, int]
    reported: Mapping[int, frozenset[str]]  # hour start ms -> meters with a reading in it
    terms: Mapping[str, int]
    covered: Mapping[int, Mapping[str, int]]  # hour start ms -> meter -> ms its readings integrated

    def total(self, start: int, end: int) -> int:
        return sum(v for t, v in self.mwh.items() if start <= t < end)

    def peak_kw(self, start: int, end: int, zone: ZoneInfo) -> Decimal:
        """The highest quarter's demand in [start, end); a remainder's only from hours in
        which every member reported and integrated at least 98 % of the hour."""
        whole = any(w < 0 for w in self.terms.values())

        def full(hour: int) -> bool:
            covered = self.covered.get(hour, {})
            return all(covered.get(m, 0) >= 0.98 * 3_600_000 for m in self.terms)

        counted = [
            v
            for t, v in self.mwh.items()
            if start <= t < end
            and (
                not whole
                or (
                    self.reported.get(hour_of(t, zone), frozenset()) >= set(self.terms)
                    and full(hour_of(t, zone))
                )
            )
        ]
        return (Decimal(max(counted)) * 4 / 1_000_000).quantize(MILLI, ROUND_HALF_UP)


def quarters(books: Books, terms: Mapping[str, int]) -> Quarters:
    mwh: dict[int, int] = defaultdict(int)
    reported: dict[int, set[str]] = defaultdict(set)
    covered: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for meter, ts, *_, energy_wh, _ in books.rows:
        if meter in terms:
            mwh[ts - ts % QUARTER_MS] += terms[meter] * round(energy_wh * 1000)
            reported[hour_of(ts, books.zone)].add(meter)
            covered[hour_of(ts, books.zone)][meter] += books.dt.get((meter, ts), 0)
    return Quarters(dict(mwh), {h: frozenset(m) for h, m in reported.items()}, terms, dict(covered))


def period(ts_ms: int, zone: ZoneInfo) -> str:
    return "day" if 7 <= datetime.fromtimestamp(ts_ms / 1000, zone).hour < 22 else "night"


def energy_lines(books: Books, found: Quarters, start: int, end: int) -> dict[str, Decimal]:
    """'Energy, day' / 'Energy, night': amount of each period's kWh (those with energy)."""
    per: dict[str, int] = defaultdict(int)
    for t, v in found.mwh.items():
        if start <= t < end:
            per[period(t, books.zone)] += v
    return {f"Energy, {p}": money(kwh(v) * RATES[p]) for p, v in sorted(per.items())}


def co2_kg(mwh: int) -> Decimal:
    return (Decimal(mwh) / 1_000_000 * CO2_KG_PER_KWH).quantize(MILLI, ROUND_HALF_UP)


# -- the page ----------------------------------------------------------------------------


@dataclass
class Page:
    at: AppTest
    books: Books

    @classmethod
    def open(cls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Page:
        store = tmp_path / "store.db"
        write_store(store, SCENARIO)
        zone = ZoneInfo(ZONE)
        now_ms = SCENARIO.at(SCENARIO.now)
        monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(write_config(tmp_path, store)))
        now = datetime.fromtimestamp(now_ms / 1000, zone).isoformat()
        monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", now)
        monkeypatch.setattr(sys, "argv", [APP])
        return cls(AppTest.from_file(APP, default_timeout=60).run(), Books(store, zone, now_ms))

    def show(self, scope: str, first: date, last: date) -> Any:
        """The tab, showing `scope` over the local days first..last."""
        picker = next(w for w in self.at.sidebar.date_input if w.label == "Range (local days)")
        picker.set_value((first, last)).run()
        self.tab().selectbox(key="cost_scope").set_value(scope).run()
        assert not self.at.exception, [e.value for e in self.at.exception]
        assert not self.at.error, [e.value for e in self.at.error]
        return self.tab()

    def tab(self) -> Any:
        return next(t for t in self.at.tabs if t.label == "Cost & demand")

    def range_ms(self, first: date, last: date) -> tuple[int, int]:
        return self.books.midnight(first), self.books.midnight(last + timedelta(days=1))

    def month_ms(self, day: date) -> tuple[int, int]:
        start = day.replace(day=1)
        after = (start + timedelta(days=32)).replace(day=1)
        return self.books.midnight(start), self.books.midnight(after)


def metrics(tab: Any) -> dict[str, str]:
    return {m.label: m.value for m in tab.metric}


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def lines(tab: Any) -> pd.DataFrame:
    return tab.table[0].value


def amounts(table: pd.DataFrame) -> dict[str, Decimal]:
    return dict(zip(table["description"], table["amount"], strict=True))


def layers(chart: Any) -> dict[str, pd.DataFrame]:
    """Each layer's data of a layered chart, by its mark ('line', 'rule', 'point', 'text')."""
    data = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.proto.datasets}
    spec = json.loads(chart.proto.spec)
    found = {}
    for layer in spec["layer"]:
        mark = layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        found[mark] = data[layer.get("data", spec.get("data"))["name"]]  # one: at the top
    return found


def months(tab: Any) -> pd.DataFrame:
    return tab.table[-1].value.set_index("month")


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Page:
    return Page.open(monkeypatch, tmp_path)


def hall_bill(page: Page, first: date, last: date) -> tuple[dict[str, Decimal], Decimal]:
    """Hall's line items over first..last (description: amount) by hand, and the ratchet
    floor of the month (0.8 × September's peak)."""
    b, hall = page.books, quarters(page.books, {"hall-main": 1})
    start, end = page.range_ms(first, last)
    month_start, _ = page.month_ms(first)
    peak = hall.peak_kw(month_start, end, b.zone)  # the month's, up to the range's last day
    floor = (RATCHET_SHARE * hall.peak_kw(*page.month_ms(date(2026, 9, 1)), b.zone)).quantize(
        MILLI, ROUND_HALF_UP
    )
    days = (last - first).days + 1
    found = energy_lines(b, hall, start, end) | {
        "Standing charge per day": money(days * STANDING_PER_DAY),
        f"Demand charge, 15-minute peak (2026-10, {days} of 31 days)": money(
            max(peak, floor) * PRICE_PER_KW * days / 31
        ),
    }
    return found, floor


def with_total(found: dict[str, Decimal]) -> dict[str, Decimal]:
    return found | {"Total (EUR)": sum(found.values(), Decimal(0))}


def test_a_building_is_its_main_meter_priced_on_the_day_of_25_hours(page: Page) -> None:
    b = page.books
    start, end = page.range_ms(DST_DAY, DST_DAY)
    assert end - start == 25 * 3_600_000
    tab = page.show("Building: Hall", DST_DAY, DST_DAY)
    hall = quarters(b, {"hall-main": 1})  # the sub-meters are inside it: never added
    shown = metrics(tab)
    assert number(shown["Energy (kWh)"]) == kwh(hall.total(start, end))
    assert number(shown["CO₂ (kg)"]) == co2_kg(hall.total(start, end))
    expected, floor = hall_bill(page, DST_DAY, DST_DAY)
    assert set(expected) == {
        "Energy, day",
        "Energy, night",
        "Standing charge per day",
        "Demand charge, 15-minute peak (2026-10, 1 of 31 days)",
    }
    table = lines(tab)
    assert amounts(table) == with_total(expected)
    assert number(shown["Cost (EUR)"]) == with_total(expected)["Total (EUR)"]
    month_start, month_end = page.month_ms(DST_DAY)
    assert floor > hall.peak_kw(month_start, end, b.zone)  # September's peak carries over
    assert list(table.iloc[3][["quantity", "unit"]]) == [floor, "kW"]

    chart = layers(tab.get("vega_lite_chart")[0])
    series = chart["line"]
    assert list(series["ts_ms"]) == list(range(start, end, QUARTER_MS))  # 100 quarter hours
    assert list(series["kW"]) == [
        float((Decimal(hall.mwh.get(t, 0)) * 4 / 1_000_000).quantize(MILLI, ROUND_HALF_UP))
        for t in range(start, end, QUARTER_MS)
    ]
    # the month's peak, over the whole month (its readings end today), and its ratchet floor
    table = months(tab)
    assert table.loc["2026-10", "peak (kW)"] == hall.peak_kw(month_start, month_end, b.zone)
    assert table.loc["2026-10", "ratchet floor (kW)"] == floor > 0
    rule = chart["rule"]
    assert list(rule["kW"]) == [float(floor)]
    assert list(rule[["ts_ms", "end_ms"]].iloc[0]) == [start, end]  # across the range shown


def test_the_peak_marked_is_the_months_highest_quarter(page: Page) -> None:
    b = page.books
    first, last = date(2026, 10, 1), date(2026, 10, 26)
    tab = page.show("Building: Hall", first, last)
    hall = quarters(b, {"hall-main": 1})
    month_start, month_end = page.month_ms(first)
    in_month = {t: v for t, v in hall.mwh.items() if month_start <= t < month_end}
    at = min(t for t, v in in_month.items() if v == max(in_month.values()))  # the earliest
    peak = hall.peak_kw(month_start, month_end, b.zone)
    chart = layers(tab.get("vega_lite_chart")[0])
    marked = chart["point"]
    assert (list(marked["kW"]), list(marked["ts_ms"])) == ([float(peak)], [at])
    assert list(chart["text"]["label"]) == [f"peak {peak:,.3f} kW"]
    assert months(tab).loc["2026-10", "peak at"] == b.local(at).strftime("%Y-%m-%d %H:%M %Z")
    expected, _ = hall_bill(page, first, last)
    assert amounts(lines(tab)) == with_total(expected)


def test_a_virtual_remainder_is_priced_at_its_buildings_energy_rates(page: Page) -> None:
    b = page.books
    first, last = date(2026, 10, 1), date(2026, 10, 26)
    start, end = page.range_ms(first, last)
    tab = page.show("Meter: hall-rest (virtual)", first, last)
    rest = quarters(b, REMAINDER)
    shown = metrics(tab)
    assert number(shown["Energy (kWh)"]) == kwh(rest.total(start, end))
    expected = energy_lines(b, rest, start, end)  # no standing or demand charge: the account's
    total = sum(expected.values(), Decimal(0))
    assert amounts(lines(tab)) == expected | {"Total (EUR)": total}
    assert number(shown["Cost (EUR)"]) == total
    # its peak leaves out the hours hall-b was silent in (the remainder would overstate them)
    peak = rest.peak_kw(*page.month_ms(first), b.zone)
    assert peak != quarters_peak_with_every_hour(rest, *page.month_ms(first))
    table = months(tab)
    assert table.loc["2026-10", "peak (kW)"] == peak
    assert "ratchet floor (kW)" not in table.columns
    assert "rule" not in layers(tab.get("vega_lite_chart")[0])


def quarters_peak_with_every_hour(found: Quarters, start: int, end: int) -> Decimal:
    top = max(v for t, v in found.mwh.items() if start <= t < end)
    return (Decimal(top) * 4 / 1_000_000).quantize(MILLI, ROUND_HALF_UP)


def test_a_sub_meter_is_priced_at_its_buildings_energy_rates(page: Page) -> None:
    b = page.books
    start, end = page.range_ms(DST_DAY, DST_DAY)
    tab = page.show("Meter: hall-b", DST_DAY, DST_DAY)
    sub = quarters(b, {"hall-b": 1})
    expected = energy_lines(b, sub, start, end)
    assert amounts(lines(tab)) == expected | {"Total (EUR)": sum(expected.values(), Decimal(0))}
    assert number(metrics(tab)["Energy (kWh)"]) == kwh(sub.total(start, end))


def test_the_campus_is_its_accounts_and_an_unpriced_one_says_so(page: Page) -> None:
    b = page.books
    start, end = page.range_ms(DST_DAY, DST_DAY)
    tab = page.show("Campus", DST_DAY, DST_DAY)
    accounts = [quarters(b, {m: 1}) for m in ("hall-main", "lab-1", "pump")]
    shown = metrics(tab)
    # every kWh once: Hall by its main meter, Lab, the pump; never the sub-meters again
    assert number(shown["Energy (kWh)"]) == sum(kwh(a.total(start, end)) for a in accounts)
    assert number(shown["CO₂ (kg)"]) == sum(co2_kg(a.total(start, end)) for a in accounts)
    expected, _ = hall_bill(page, DST_DAY, DST_DAY)  # the one priced account
    table = lines(tab)
    assert list(table["account"]) == ["Hall"] * len(expected) + [""]
    assert amounts(table) == with_total(expected)
    assert number(shown["Cost (EUR)"]) == with_total(expected)["Total (EUR)"]
    notes = [i.value for i in tab.info]
    assert [n.split(":")[0] for n in notes] == [
        "No tariff is configured for building Lab",
        "No tariff is configured for the meters in no building",
    ]
    assert all("energy and demand only" in n for n in notes)
    # the campus's coincident peak: no charge, so no ratchet floor
    campus = quarters(b, {"hall-main": 1, "lab-1": 1, "pump": 1})
    table = months(tab)
    assert table.loc["2026-10", "peak (kW)"] == campus.peak_kw(*page.month_ms(DST_DAY), b.zone)
    assert "ratchet floor (kW)" not in table.columns
    assert "rule" not in layers(tab.get("vega_lite_chart")[0])


def test_a_building_without_a_tariff_shows_energy_and_demand_only(page: Page) -> None:
    b = page.books
    start, end = page.range_ms(DST_DAY, DST_DAY)
    tab = page.show("Building: Lab", DST_DAY, DST_DAY)
    lab = quarters(b, {"lab-1": 1})
    shown = metrics(tab)
    assert number(shown["Energy (kWh)"]) == kwh(lab.total(start, end))
    assert shown["Cost"] == "not priced"
    assert len(tab.table) == 1  # no line items: only the demand months
    (note,) = [i.value for i in tab.info]
    assert note.startswith("No tariff is configured for building Lab: energy and demand only")
    assert months(tab).loc["2026-10", "peak (kW)"] == lab.peak_kw(*page.month_ms(DST_DAY), b.zone)
    assert len(layers(tab.get("vega_lite_chart")[0])["line"]) == 100


# -- the hours themselves ----------------------------------------------------------------


def brute_force(books: Books, terms: Mapping[str, float], start: int, end: int) -> list[ScopeHour]:
    """Every reading added to its local hour and quarter, one by one."""
    wh: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    covered: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for meter, ts, *_, energy_wh, _ in books.rows:
        hour = hour_of(ts, books.zone)
        if meter not in terms or not start <= hour < end:
            continue
        wh[hour][(ts - hour) // QUARTER_MS] += terms[meter] * energy_wh
        covered[hour][meter] += books.dt.get((meter, ts), 0)
    return [
        ScopeHour(h, (x[0], x[1], x[2], x[3]), min(covered[h].values()) / 1000, len(covered[h]))
        for h, x in sorted(wh.items())
    ]


def assert_same_hours(found: Iterable[ScopeHour], expected: Iterable[ScopeHour]) -> None:
    found, expected = list(found), list(expected)
    assert [(h.hour_ms, h.members, h.min_covered_s) for h in found] == [
        (h.hour_ms, h.members, h.min_covered_s) for h in expected
    ]
    for one, other in zip(found, expected, strict=True):
        assert one.quarters_wh == pytest.approx(other.quarters_wh, abs=1e-6), one.hour_ms


@pytest.mark.parametrize(
    "zone",
    ["Europe/Berlin", "Asia/Kolkata", "America/St_Johns"],  # whole, :30 and -:30 offsets
)
def test_the_hours_equal_the_readings_summed_one_by_one(tmp_path: Path, zone: str) -> None:
    s = Scenario(
        zone,
        (2026, 10, 24, 21, 7),  # a reading every 7 minutes: they straddle the quarters
        (2026, 10, 26, 3, 0, 10),
        420,
        {"hall-b": ((2026, 10, 25, 1, 10), (2026, 10, 25, 4, 20))},
    )
    path = tmp_path / "store.db"
    write_store(path, s)
    site = ZoneInfo(zone)
    books = Books(path, site, s.at(s.now))
    store = q.open_store(path)  # as the dashboard opens it: read-only
    try:
        for terms in (REMAINDER, {"hall-main": 1.0}, {"hall-a": 1.0, "lab-1": 1.0, "nowhere": 1.0}):
            for first, last in (
                ((2026, 10, 24, 0, 0), (2026, 10, 27, 0, 0)),  # from before the first reading
                ((2026, 10, 25, 2, 0), (2026, 10, 25, 9, 40)),  # from the hour repeated
            ):
                start, end = s.at(first), s.at(last)
                found = scope_hours(q.connection(store), site, start, end, terms)
                assert_same_hours(found, brute_force(books, terms, start, end))
    finally:
        store.close()
