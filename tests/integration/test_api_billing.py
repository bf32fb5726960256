"""The billing endpoints against the books: windows written through the real SQLite sink,
every figure priced by hand here from the windows themselves.

The campus (Europe/Berlin): building "Main" has a main meter and two sub-meters under
it, and a virtual remainder (main - f1 - f2); "Annex" has no main meter (its total is
its two top-level meters); "yard-1" is in no building. Main and the yard are on a
time-of-use tariff with standing and demand charges (a ratchet, a minimum), the
Annex on a flat one; an annual grid factor prices CO₂. Every meter writes one 300 s
window per quarter hour from 1 October 2026 to "now", Monday 16 November 11:00
local; Main has a spike in the repeated hour of the DST change (25 October, 02:30
CET), and f2 is silent on 13 November 10:00-12:00.

The books below know nothing of the code: they sum the windows per quarter hour and
price each quarter at its local time's rate (the campus, its tariffs and that pricing are
tests/support/priced_campus.py, shared with the reports).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from tests.support.config import campus_meters
from tests.support.priced_campus import (
    ACCOUNTS,
    ANNEX,
    CENT,
    HOLIDAY,
    KWH,
    MAIN,
    METERS,
    QUARTER_MS,
    RATES,
    TARIFF_OF,
    YARD,
    flat_tariff,
    kwh,
    local,
    local_ms,
    midnight,
    money,
    period_of,
    tou_tariff,
)
from tests.support.sinks import KnownWindow, merge, window_deltas

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import Config, parse_config

WINDOW_S = 300


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


START_MS = local_ms(2026, 10, 1)
NOW_MS = local_ms(2026, 11, 16, 11, 0)  # a Monday
SPIKE_MS = utc_ms(2026, 10, 25, 1, 30)  # 02:30 CET, the second 02:30 of that night
GAP = (local_ms(2026, 11, 13, 10), local_ms(2026, 11, 13, 12))  # f2 silent
REST = {"main-1": 1.0, "main-f1": -1.0, "main-f2": -1.0}


def window_energies(k: int, quarter_ms: int) -> dict[str, float]:
    """Each meter's energy (Wh) in the k-th quarter hour; the main meter holds its sub-meters."""
    f1 = 30 + (k * 13 % 29) * 1.37
    f2 = 20 + (k * 7 % 17) * 2.11
    rest = 15 + (k * 5 % 11) * 0.93 + (4000.0 if quarter_ms == SPIKE_MS else 0.0)
    found = {
        "main-1": f1 + f2 + rest,
        "main-f1": f1,
        "main-f2": f2,
        "annex-1": 25 + (k * 11 % 23) * 1.13,
        "annex-2": 10 + (k * 3 % 7) * 3.07,
        "yard-1": 5 + (k % 5) * 0.71,
    }
    if GAP[0] <= quarter_ms < GAP[1]:
        del found["main-f2"]
    return found


def windows() -> list[KnownWindow]:
    """One window per meter per quarter hour, at :00, :05 or :10 of it, all ended by now."""
    found = []
    for k, quarter in enumerate(range(START_MS, NOW_MS - QUARTER_MS + 1, QUARTER_MS)):
        start = quarter + (k % 3) * WINDOW_S * 1000
        for meter, wh in window_energies(k, quarter).items():
            found.append(KnownWindow(meter, start, wh, WINDOW_S, 0.0))
    return found


# -- the books ----------------------------------------------------------------------------------


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def month_length(year: int, month: int) -> int:
    after = date(year + month // 12, month % 12 + 1, 1)
    return (after - date(year, month, 1)).days


class Books:
    """The windows summed per meter per quarter hour (UTC ms of its start), and priced."""

    def __init__(self, items: list[KnownWindow]) -> None:
        self.quarters: dict[str, dict[int, float]] = defaultdict(dict)
        for w in items:
            quarter = w.start_ms - w.start_ms % QUARTER_MS
            self.quarters[w.meter_id][quarter] = self.quarters[w.meter_id].get(quarter, 0) + (
                w.energy_wh
            )

    def scope(self, terms: Mapping[str, float]) -> dict[int, float]:
        """Σ weight × energy per quarter hour in which any member has a window."""
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

    def peaks(self, terms: Mapping[str, float], end_ms: int) -> dict[tuple[int, int], Decimal]:
        """Per local month, the highest quarter-hour demand (kW) before end_ms."""
        found: dict[tuple[int, int], Decimal] = {}
        for quarter, wh in self.scope(terms).items():
            if quarter >= end_ms:
                continue
            month = (local(quarter).year, local(quarter).month)
            kw = Decimal(wh * 4 / 1000).quantize(KWH, ROUND_HALF_UP)
            found[month] = max(found.get(month, kw), kw)
        return found

    def account_total(self, account: str, first: date, last: date) -> Decimal:
        """An account's bill over first..last: energy, standing and demand lines."""
        terms, tariff = ACCOUNTS[account], TARIFF_OF[account]
        energy = self.energy_lines(terms, first, last, tariff)
        total = sum((amount for _, amount in energy.values()), Decimal(0))
        every = days(first, last)
        if tariff == "flat":
            return total + money(len(every) * Decimal("0.50"))
        total += money(len(every) * Decimal("1.50"))
        peaks = self.peaks(terms, midnight(last + timedelta(days=1)))
        months = sorted({(d.year, d.month) for d in every})
        for year, month in months:
            count = sum(1 for d in every if (d.year, d.month) == (year, month))
            length = month_length(year, month)
            total += money(Decimal(1) * Decimal(30) * count / length)
            total += money(billed_kw(peaks, (year, month)) * Decimal(10) * count / length)
        return total


def billed_kw(peaks: Mapping[tuple[int, int], Decimal], month: tuple[int, int]) -> Decimal:
    """max(the month's peak, 0.5 × the highest of the 11 months before, 2 kW)."""
    earlier = [kw for m, kw in peaks.items() if m < month]  # the data begins in October
    floor = (Decimal("0.5") * max(earlier)).quantize(KWH, ROUND_HALF_UP) if earlier else 0
    return max(peaks.get(month, Decimal(0)), Decimal(floor), Decimal(2))


def co2_kg(wh: float) -> Decimal:
    return (Decimal(wh) / 1000 * Decimal("0.4")).quantize(KWH, ROUND_HALF_UP)


# -- the app ------------------------------------------------------------------------------------


def config_for(folder: Path) -> Config:
    return parse_config(
        {
            "site": {
                "name": "Billing Campus",
                "timezone": "Europe/Berlin",
                "tariff": "tou",
                "buildings": [
                    {
                        "name": "Main",
                        "floor_area_m2": 1000,
                        "occupancy": {
                            "mon": "08:00-18:00",
                            "sat": ["09:00-12:00", "13:00-15:00"],
                            "holidays": [HOLIDAY],
                        },
                    },
                    {"name": "Annex", "floor_area_m2": 400, "tariff": "flat"},
                ],
            },
            "bridge": {
                "window_s": WINDOW_S,
                "grace_s": 60,
                "sqlite": {"path": str(folder / "windows.db")},
            },
            "api": {"cache_s": 30},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters(METERS),
            "virtual_meters": [
                {"id": "main-rest", "building": "Main", "terms": "main-1 - main-f1 - main-f2"}
            ],
            "tariffs": [tou_tariff(date(2026, 1, 1), HOLIDAY), flat_tariff(date(2026, 1, 1))],
            "emissions": {"factors": [{"valid_from": date(2026, 1, 1), "kg_per_kwh": "0.4"}]},
        }
    )


def write(config: Config, items: list[KnownWindow]) -> None:
    """The windows merged through the real sink, as the bridge writes them."""
    merge(config, window_deltas(items, WINDOW_S, METERS), NOW_MS)


@dataclass(frozen=True)
class Campus:
    config: Config
    books: Books
    client: FlaskClient

    def get(self, url: str, status: int = 200) -> Any:
        answer = self.client.get(url)
        assert answer.status_code == status, (url, answer.status_code, answer.data[:300])
        return answer.get_json()


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    config = config_for(tmp_path_factory.mktemp("billing"))
    items = windows()
    write(config, items)
    source = open_source(config)
    try:
        app = create_app(config, source=source, clock=lambda: NOW_MS / 1000)
        yield Campus(config, Books(items), app.test_client())
    finally:
        source.close()


def amounts(lines: list[dict[str, Any]], kind: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        x["period"]: (Decimal(x["quantity"]), Decimal(x["amount"]))
        for x in lines
        if x["kind"] == kind
    }


# -- /api/cost ----------------------------------------------------------------------------------


def test_a_buildings_cost_is_priced_quarter_by_quarter(campus: Campus) -> None:
    first, last = date(2026, 11, 1), date(2026, 11, 14)
    body = campus.get(f"/api/cost?building=Main&start_date={first}&end_date={last}")
    books = campus.books
    assert body["scope"]["basis"] == "main meter main-1"
    assert body["scope"]["meters"] == MAIN
    assert amounts(body["lines"], "energy") == books.energy_lines(MAIN, first, last, "tou")
    assert Decimal(body["energy_kwh"]) == kwh(books.energy_wh(MAIN, first, last))
    (demand,) = body["demand"]
    peaks = books.peaks(MAIN, midnight(last + timedelta(days=1)))
    assert Decimal(demand["peak_kw"]) == peaks[(2026, 11)]
    assert Decimal(demand["ratchet_floor_kw"]) == Decimal("0.5") * peaks[(2026, 10)]
    assert Decimal(demand["billed_kw"]) == billed_kw(peaks, (2026, 11)) > peaks[(2026, 11)]
    assert Decimal(body["total"]) == books.account_total("Main", first, last)
    assert Decimal(body["total"]) == sum(Decimal(x["amount"]) for x in body["lines"])
    assert body["totals"] == {"EUR": body["total"]} and body["currency"] == "EUR"
    co2 = Decimal(body["emissions"]["co2_kg"])
    assert abs(co2 - co2_kg(books.energy_wh(MAIN, first, last))) <= Decimal("0.001")


def test_a_building_without_a_main_meter_is_the_sum_of_its_meters(campus: Campus) -> None:
    first, last = date(2026, 11, 1), date(2026, 11, 14)
    body = campus.get(f"/api/cost?building=Annex&start_date={first}&end_date={last}")
    assert body["scope"]["basis"] == "sum of 2 top-level meter(s)"
    assert body["tariff"] == "flat" and body["demand"] == []
    assert amounts(body["lines"], "energy") == campus.books.energy_lines(ANNEX, first, last, "flat")
    assert Decimal(body["total"]) == campus.books.account_total("Annex", first, last)


def test_a_meter_and_a_virtual_meter_cost_their_energy_only(campus: Campus) -> None:
    first, last = date(2026, 11, 9), date(2026, 11, 13)  # the 13th: f2 silent for 2 hours
    books = campus.books
    for scope, terms in (("meter=main-f1", {"main-f1": 1.0}), ("virtual=main-rest", REST)):
        body = campus.get(f"/api/cost?{scope}&start_date={first}&end_date={last}")
        assert {x["kind"] for x in body["lines"]} == {"energy"}, scope
        lines = books.energy_lines(terms, first, last, "tou")
        assert amounts(body["lines"], "energy") == lines, scope
        assert Decimal(body["total"]) == sum(amount for _, amount in lines.values()), scope
        assert body["scope"]["building"] == "Main"
    one_day = campus.get("/api/cost?virtual=main-rest&start_date=2026-11-13&end_date=2026-11-13")
    # each member covers 4 × 300 s an hour; the 2 hours without f2 cover nothing
    assert one_day["coverage"] == pytest.approx(22 * 1200 / 86400, abs=1e-6)
    assert one_day["scope"]["meters"] == REST


def test_the_campus_cost_is_the_sum_of_its_accounts(campus: Campus) -> None:
    first, last = date(2026, 10, 20), date(2026, 11, 14)
    body = campus.get(f"/api/cost?start_date={first}&end_date={last}")
    books = campus.books
    names = [a["scope"]["name"] for a in body["accounts"]]
    assert names == ["Main", "Annex", ""]
    expected = sum((books.account_total(a, first, last) for a in ACCOUNTS), Decimal(0))
    assert Decimal(body["total"]) == expected
    assert body["totals"] == {"EUR": str(expected)} and body["currency"] == "EUR"
    assert Decimal(body["total"]) == sum(Decimal(a["total"]) for a in body["accounts"])
    # no sub-meter counted twice: the campus is main-1 + annex + yard, not every meter
    campus_wh = sum(books.energy_wh(t, first, last) for t in ACCOUNTS.values())
    assert Decimal(body["energy_kwh"]) == sum(kwh(books.energy_wh(t, first, last))
                                              for t in ACCOUNTS.values())  # fmt: skip
    every_wh = sum(books.energy_wh({m: 1.0}, first, last) for m in METERS)
    assert float(body["energy_kwh"]) == pytest.approx(campus_wh / 1000, abs=0.01)
    assert every_wh > campus_wh * 1.3
    assert body["scope"]["meters"] == {**MAIN, **ANNEX, **YARD}
    # the coincident peak per month, not billed
    assert [d["month"] for d in body["demand"]] == ["2026-10", "2026-11"]
    assert all(d["billed_kw"] is None for d in body["demand"])
    peaks = books.peaks({**MAIN, **ANNEX, **YARD}, midnight(last + timedelta(days=1)))
    assert [Decimal(d["peak_kw"]) for d in body["demand"]] == [
        peaks[(2026, 10)],
        peaks[(2026, 11)],
    ]


def test_the_dst_day_has_25_hours_each_priced_by_its_local_clock(campus: Campus) -> None:
    day = date(2026, 10, 25)  # a Sunday: night 00-06 (02:00-03:00 twice), default after
    body = campus.get(f"/api/cost?building=Main&start_date={day}&end_date={day}")
    books = campus.books
    quarters = [q for q in books.scope(MAIN) if midnight(day) <= q < midnight(date(2026, 10, 26))]
    assert len(quarters) == 100
    lines = books.energy_lines(MAIN, day, day, "tou")
    assert set(lines) == {"night", "default"}
    assert amounts(body["lines"], "energy") == lines
    night = [q for q in quarters if period_of("tou", q) == "night"]
    assert len(night) == 7 * 4  # 00:00-06:00 local holds seven hours that night
    assert Decimal(body["total"]) == books.account_total("Main", day, day)
    demand = campus.get(f"/api/demand?building=Main&start_date={day}&end_date={day}")
    assert len(demand["points"]) == 100
    scope = books.scope(MAIN)
    for point in demand["points"]:
        start = round(datetime.fromisoformat(point["start"]).timestamp() * 1000)
        assert point["kw"] == pytest.approx(scope[start] * 4 / 1000, abs=1e-6)
    (october,) = demand["monthly_peaks"]
    assert october["start_local"] == "2026-10-25T02:30+01:00"  # the second 02:30
    assert Decimal(october["kw"]) == Decimal(scope[SPIKE_MS] * 4 / 1000).quantize(KWH)


# -- /api/demand --------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [15, 30])
def test_the_monthly_peak_is_the_highest_interval(campus: Campus, interval: int) -> None:
    body = campus.get(
        f"/api/demand?building=Main&start_date=2026-11-01&end_date=2026-11-16&interval={interval}"
    )
    scope = campus.books.scope(MAIN)
    per = interval * 60_000
    sums: dict[int, float] = defaultdict(float)
    for quarter, wh in scope.items():
        if quarter >= midnight(date(2026, 11, 1)):
            sums[quarter - quarter % per] += wh
    kw = {start: wh / 1000 / (interval / 60) for start, wh in sums.items()}
    best = max(kw, key=lambda s: (kw[s], -s))
    assert body["interval_min"] == interval
    (november,) = body["monthly_peaks"]
    assert Decimal(november["kw"]) == Decimal(kw[best]).quantize(KWH, ROUND_HALF_UP)
    assert november["start"].startswith(local(best).astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    october = campus.books.peaks(MAIN, NOW_MS)[(2026, 10)]
    assert body["ratchet_floors"] == {"2026-11": str((Decimal("0.5") * october).quantize(KWH))}
    assert len(body["points"]) == len([s for s in sums if s < midnight(date(2026, 11, 17))])


def test_the_campus_demand_is_its_coincident_peak_and_carries_no_floor(campus: Campus) -> None:
    body = campus.get("/api/demand?start_date=2026-10-01&end_date=2026-11-16")
    assert body["scope"]["kind"] == "campus" and body["ratchet_floors"] == {}
    peaks = campus.books.peaks({**MAIN, **ANNEX, **YARD}, NOW_MS)
    assert [Decimal(p["kw"]) for p in body["monthly_peaks"]] == [
        peaks[(2026, 10)],
        peaks[(2026, 11)],
    ]


# -- /api/bills ---------------------------------------------------------------------------------


def test_the_bills_add_up_and_match_the_books(campus: Campus) -> None:
    body = campus.get("/api/bills?month=2026-10")
    accounts = [b["account"] for b in body["bills"]]
    assert accounts == ["Main", "Annex", ""]
    for bill in body["bills"]:
        assert Decimal(bill["total"]) == sum(Decimal(x["amount"]) for x in bill["lines"])
        expected = campus.books.account_total(
            bill["account"], date(2026, 10, 1), date(2026, 10, 31)
        )
        assert Decimal(bill["total"]) == expected, bill["account"]
    total = sum(Decimal(b["total"]) for b in body["bills"])
    assert body["campus"]["totals"] == {"EUR": str(total)}
    main = body["bills"][0]
    uses = {m["id"]: m for m in main["meter_energy"]}
    assert set(uses) == {"main-1", "main-f1", "main-f2", "main-rest"}
    assert uses["main-rest"]["kind"] == "virtual" and uses["main-1"]["kind"] == "main"
    one = campus.get("/api/bills?month=2026-10&building=Annex")
    assert [b["account"] for b in one["bills"]] == ["Annex"]
    assert one["bills"][0]["total"] == body["bills"][1]["total"]


def test_the_csv_and_the_workbook_hold_the_json_figures(campus: Campus) -> None:
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    body = campus.get("/api/bills?month=2026-11")
    as_csv = campus.client.get("/api/bills.csv?month=2026-11")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert 'filename="bills-2026-11.csv"' in as_csv.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    totals = {r["account"]: r["amount"] for r in rows if r["kind"] == "total"}
    assert totals == {
        **{b["account"] or "(no building)": b["total"] for b in body["bills"]},
        "campus": body["campus"]["totals"]["EUR"],
    }
    json_lines = [
        (b["account"] or "(no building)", x["description"], x["quantity"], x["amount"])
        for b in body["bills"]
        for x in b["lines"]
    ]
    csv_lines = [
        (r["account"], r["description"], r["quantity"], r["amount"])
        for r in rows
        if r["kind"] != "total"
    ]
    assert csv_lines == json_lines
    workbook = campus.client.get("/api/bills.xlsx?month=2026-11")
    assert workbook.status_code == 200
    assert workbook.mimetype == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert workbook.headers["Content-Disposition"] == 'attachment; filename="bills-2026-11.xlsx"'
    book = load_workbook(io.BytesIO(workbook.data))
    sheet = list(book["Bills"].iter_rows(values_only=True))
    header = sheet[0]
    cells = [dict(zip(header, row, strict=True)) for row in sheet[1:]]
    assert [(c["account"], c["description"]) for c in cells] == [
        (r["account"], r["description"]) for r in rows
    ]
    for cell, row in zip(cells, rows, strict=True):
        if row["amount"]:
            assert Decimal(str(cell["amount"])) == Decimal(row["amount"]), row
        if row["quantity"]:
            assert Decimal(str(cell["quantity"])) == Decimal(row["quantity"]), row
    head, *account_rows = book["Accounts"].iter_rows(values_only=True)
    accounts = {r[1]: dict(zip(head, r, strict=True)) for r in account_rows}
    assert Decimal(str(accounts["Main"]["total"])) == Decimal(body["bills"][0]["total"])


# -- /api/cost/overview -------------------------------------------------------------------------


def test_the_overview_sums_the_accounts(campus: Campus) -> None:
    body = campus.get("/api/cost/overview")
    books = campus.books
    today, first = date(2026, 11, 16), date(2026, 11, 1)
    assert body["currency"] == "EUR"
    day_total = sum((books.account_total(a, today, today) for a in ACCOUNTS), Decimal(0))
    assert Decimal(body["today"]["total"]) == day_total
    assert Decimal(body["today"]["energy_kwh"]) == sum(
        kwh(books.energy_wh(t, today, today)) for t in ACCOUNTS.values()
    )
    month = body["month"]
    assert (month["first_day"], month["last_day"]) == ("2026-11-01", "2026-11-30")
    assert month["elapsed_share"] == pytest.approx((15 * 24 + 11) / (30 * 24), abs=1e-6)
    month_total = sum((books.account_total(a, first, today) for a in ACCOUNTS), Decimal(0))
    assert Decimal(month["total"]) == month_total
    assert month["totals"] == {"EUR": month["total"]}
    # Main projected: the whole month's standing and demand, energy carried on at its pace
    whole = books.account_total("Main", first, date(2026, 11, 30))
    energy = sum(a for _, a in books.energy_lines(MAIN, first, today, "tou").values())
    intensity = {
        name: books.energy_wh(ACCOUNTS[name], first, today) / 1000 / area
        for name, area in (("Main", 1000), ("Annex", 400))
    }
    ranked = sorted(intensity, key=lambda name: -intensity[name])
    assert [b["name"] for b in body["buildings"]] == [*ranked, ""]  # no area: last
    buildings = {b["name"]: b for b in body["buildings"]}
    for name, per_m2 in intensity.items():
        assert float(buildings[name]["kwh_per_m2"]) == pytest.approx(per_m2, abs=0.001)
    main = buildings["Main"]
    elapsed = Decimal((15 * 24 + 11) / (30 * 24))
    projected = money(whole + energy * (1 - elapsed) / elapsed)
    assert abs(Decimal(main["projected_total"]) - projected) <= CENT
    assert Decimal(main["total"]) == books.account_total("Main", first, today)
    peaks = books.peaks(MAIN, NOW_MS)
    assert Decimal(main["peak"]["kw"]) == peaks[(2026, 11)]
    assert Decimal(main["previous_month_peak"]["kw"]) == peaks[(2026, 10)]
    assert Decimal(main["billed_kw"]) == billed_kw(peaks, (2026, 11))
    assert body["buildings"][2]["kwh_per_m2"] is None
    campus_peaks = books.peaks({**MAIN, **ANNEX, **YARD}, NOW_MS)
    assert Decimal(body["campus_demand"]["peak"]["kw"]) == campus_peaks[(2026, 11)]


# -- the campus model and virtual meters beside real ones ---------------------------------------


def test_buildings_describe_the_campus_model(campus: Campus) -> None:
    body = campus.get("/api/buildings")
    main, annex = body["buildings"]
    assert (main["name"], main["floor_area_m2"], main["tariff"]) == ("Main", 1000, "tou")
    assert main["basis"] == "main meter main-1" and main["main_meter"] == "main-1"
    assert main["occupancy"]["mon"] == ["08:00-18:00"]
    assert main["occupancy"]["sat"] == ["09:00-12:00", "13:00-15:00"]
    assert main["occupancy"]["sun"] == [] and main["occupancy"]["holidays"] == ["2026-11-02"]
    kinds = {m["id"]: (m["kind"], m["parent"], m["floor"]) for m in main["meters"]}
    assert kinds == {
        "main-1": ("main", None, "0"),
        "main-f1": ("sub-meter", "main-1", "1"),
        "main-f2": ("sub-meter", "main-1", "2"),
    }
    assert main["virtual_meters"] == [
        {
            "id": "main-rest",
            "building": "Main",
            "floor": "",
            "expression": "main-1 - main-f1 - main-f2",
            "terms": {"main-1": 1.0, "main-f1": -1.0, "main-f2": -1.0},
        }
    ]
    assert annex["tariff"] == "flat" and annex["occupancy"] is None
    assert {m["kind"] for m in annex["meters"]} == {"top-level"}
    assert [m["id"] for m in body["no_building"]["meters"]] == ["yard-1"]
    assert body["no_building"]["tariff"] == "tou"


def test_meters_list_the_virtual_meters_beside_the_real_ones(campus: Campus) -> None:
    body = campus.get("/api/meters")
    assert {m["meter_id"] for m in body["meters"]} == set(METERS)
    assert [v["id"] for v in body["virtual_meters"]] == ["main-rest"]
    assert body["virtual_meters"][0]["terms"] == REST


def test_a_virtual_meters_series_combines_its_members_per_step(campus: Campus) -> None:
    start, end = "2026-11-13T08:00:00Z", "2026-11-13T12:00:00Z"  # 09:00-13:00 local
    body = campus.get(f"/api/series?virtual=main-rest&start={start}&end={end}&step=1h")
    assert (body["scope"], body["name"]) == ("virtual", "main-rest")
    scope = campus.books.scope(REST)
    points = {p["t"]: p for p in body["points"]}
    assert len(points) == 4
    for hour in range(8, 12):
        t = utc_ms(2026, 11, 13, hour)
        point = points[f"2026-11-13T{hour:02d}:00:00Z"]
        expected = sum(scope.get(t + i * QUARTER_MS, 0.0) for i in range(4))
        assert point["energy_wh"] == pytest.approx(expected, abs=1e-5)
        silent = GAP[0] <= t < GAP[1]  # f2 has no window: energy not filled in, no coverage
        assert point["coverage"] == (0.0 if silent else pytest.approx(1200 / 3600, abs=1e-6))
        assert (point["avg_power_w"] is None) == silent
        if not silent:  # Σ weight × each member's mean power over its covered time
            assert point["avg_power_w"] == pytest.approx(expected * 3600 / 1200, abs=1e-2)
    export = campus.client.get(f"/api/export.csv?virtual=main-rest&start={start}&end={end}&step=1h")
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert [float(r["energy_wh"]) for r in rows] == [p["energy_wh"] for p in body["points"]]
    assert "campus-energy-virtual-1h.csv" in export.headers["Content-Disposition"]
    fine = campus.get(f"/api/series?virtual=main-rest&start={start}&end={end}&step=5m")
    assert all(p["coverage"] == 1.0 for p in fine["points"] if p["t"] < "2026-11-13T09:00")


# -- bad parameters and unknown names -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/bills?month=2026-13", "month"),
        ("/api/bills?month=26-11", "month"),
        ("/api/bills.csv?month=2026-1", "month"),
        ("/api/bills.xlsx?month=november", "month"),
        ("/api/bills?building=", "building"),
        ("/api/cost?start_date=2026-11-10&end_date=2026-11-09", "end_date"),
        ("/api/cost?start_date=2026-13-01", "start_date"),
        ("/api/cost?start_date=2025-01-01&end_date=2026-01-02", "end_date"),
        ("/api/cost?building=Main&meter=main-1", "meter"),
        ("/api/cost?meter=main-1&virtual=main-rest", "virtual"),
        ("/api/cost?building=", "building"),
        ("/api/demand?interval=20", "interval"),
        ("/api/demand?interval=15m", "interval"),
        ("/api/demand?start_date=2026-01-01&end_date=2026-11-01", "end_date"),
        ("/api/demand?building=Main&virtual=main-rest", "virtual"),
        ("/api/series?virtual=main-rest&meter=main-1", "virtual"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(campus: Campus, url: str, parameter: str) -> None:
    body = campus.get(url, 400)
    assert body["error"].startswith(f"{parameter}: "), body


@pytest.mark.parametrize(
    "url",
    [
        "/api/cost?building=Nowhere",
        "/api/cost?meter=no-such-meter",
        "/api/cost?virtual=no-such-virtual",
        "/api/demand?meter=no-such-meter",
        "/api/bills?building=Nowhere",
        "/api/bills.csv?building=Nowhere",
        "/api/series?virtual=no-such-virtual",
        "/api/export.csv?virtual=main-1",  # a real meter is no virtual one
    ],
)
def test_an_unknown_name_is_a_404(campus: Campus, url: str) -> None:
    body = campus.get(url, 404)
    assert "unknown" in body["error"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/cost", "?building=Main&start_date=2026-10-20&end_date=2026-11-16"),
        ("/api/cost", "?meter=main-f2&start_date=2026-11-13&end_date=2026-11-13"),
        ("/api/cost", "?virtual=main-rest"),
        ("/api/cost", "?start_date=2026-10-01&end_date=2026-11-30"),
        ("/api/cost/overview", ""),
        ("/api/demand", "?start_date=2026-10-24&end_date=2026-10-26&interval=60"),
        ("/api/demand", "?virtual=main-rest&start_date=2026-11-13&end_date=2026-11-13"),
        ("/api/bills", "?month=2026-11"),
        ("/api/bills", "?month=2026-09"),  # before any data: no peaks, zero energy
        ("/api/buildings", ""),
        ("/api/meters", ""),
    ],
)
def test_every_answer_matches_its_published_schema(campus: Campus, path: str, query: str) -> None:
    schema = published_schema(campus.get("/api/openapi.json"), path)
    body = campus.get(path + query)
    validate(schema, body)
    assert undescribed(schema, body) == []


def published_schema(document: Any, path: str) -> Any:
    return document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]


def validate(schema: Any, body: Any) -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    validator.validate(body)


def undescribed(schema: Any, body: Any, where: str = "") -> list[str]:
    """Where the answer holds a field its schema does not name (the schema allows more, so
    validating alone would not say)."""
    found: list[str] = []
    if isinstance(body, dict):
        named = schema.get("properties", {})
        others = schema.get("additionalProperties")
        for key, value in body.items():
            if key in named:
                found += undescribed(named[key], value, f"{where}.{key}")
            elif isinstance(others, dict):
                found += undescribed(others, value, f"{where}.{key}")
            else:
                found.append(f"{where}.{key}")
    elif isinstance(body, list):
        for i, item in enumerate(body):
            found += undescribed(schema.get("items", {}), item, f"{where}[{i}]")
    return found


def test_undescribed_names_a_field_the_schema_leaves_out() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    body = {"a": [{"b": 1}, {"b": 2, "c": 3}], "m": {"EUR": "1"}, "d": None}
    assert undescribed(schema, body) == [".a[1].c", ".d"]


# -- answers with estimated energy and export -----------------------------------------------------

ESTIMATED_PATHS = [
    ("/api/cost", "?building=Main&start_date=2026-03-01&end_date=2026-03-31"),
    ("/api/cost", "?meter=roof-1&start_date=2026-03-15&end_date=2026-03-15"),
    ("/api/cost", "?start_date=2026-03-01&end_date=2026-03-30"),
    ("/api/cost/overview", ""),
    ("/api/bills", "?month=2026-03"),
    ("/api/bills", "?month=2026-03&building=Annex"),
]


@pytest.fixture(scope="module")
def estimated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FlaskClient]]:
    """The campus of tests/support/estimated_campus.py: estimates counted and not."""
    from tests.support.estimated_campus import NOW_MS as ESTIMATED_NOW_MS
    from tests.support.estimated_campus import write_campus

    counted, excluded, _ = write_campus(tmp_path_factory.mktemp("billing-estimated"))
    sources = {"counted": open_source(counted), "excluded": open_source(excluded)}
    try:
        yield {
            name: create_app(
                c, source=sources[name], clock=lambda: ESTIMATED_NOW_MS / 1000
            ).test_client()
            for name, c in (("counted", counted), ("excluded", excluded))
        }
    finally:
        for source in sources.values():
            source.close()


@pytest.mark.parametrize("which", ["counted", "excluded"])
@pytest.mark.parametrize(("path", "query"), ESTIMATED_PATHS)
def test_the_estimated_energy_and_export_match_the_published_schema(
    estimated: dict[str, FlaskClient], which: str, path: str, query: str
) -> None:
    client = estimated[which]
    schema = published_schema(client.get("/api/openapi.json").get_json(), path)
    answer = client.get(path + query)
    assert answer.status_code == 200, answer.data[:300]
    body = answer.get_json()
    validate(schema, body)
    assert undescribed(schema, body) == []
    # each added field is described, required where it is always answered, and has
    # something to say here
    text = str(body)
    for added in ("estimated_kwh", "estimated_counted", "export_kwh", "meter_events"):
        if added in text:
            assert f"'{added}'" in str(schema), added
    assert "'estimated_kwh'" in text
    assert f"'estimated_counted': {which == 'counted'}" in text
    if path == "/api/bills":
        assert {"export_kwh", "estimated_export_kwh", "meter_events"} <= set(
            published_schema_of_bill(schema)["required"]
        )
        events = [b["meter_events"] for b in body["bills"]]
        if which == "excluded":  # no logger's store to read: no record, not "no event"
            assert events == [None] * len(events)
        else:
            assert [e["kind"] for found in events for e in found] == (
                [] if "building=Annex" in query else ["replaced"]
            )


def published_schema_of_bill(schema: Any) -> Any:
    return schema["properties"]["bills"]["items"]


def test_a_schema_without_an_added_field_fails_the_check(
    estimated: dict[str, FlaskClient],
) -> None:
    """The check above would catch a field left out of the schema."""
    import copy

    from jsonschema import ValidationError  # type: ignore[import-untyped]

    client = estimated["counted"]
    schema = published_schema(client.get("/api/openapi.json").get_json(), "/api/bills")
    body = client.get("/api/bills?month=2026-03").get_json()
    bill = published_schema_of_bill(schema)
    for field in ("estimated_kwh", "export_kwh", "meter_events", "measured_kwh"):
        cut = copy.deepcopy(schema)
        del published_schema_of_bill(cut)["properties"][field]
        assert undescribed(cut, body) == [f".bills[{i}].{field}" for i in range(3)], field
    cut = copy.deepcopy(schema)
    published_schema_of_bill(cut)["properties"]["estimated_counted"] = {"type": "string"}
    with pytest.raises(ValidationError):
        validate(cut, body)
    assert bill["properties"]["estimated_counted"]["type"] == "boolean"


def test_money_is_summed_per_currency_and_named_only_when_one() -> None:
    from campus_energy.api.costs import currency_of, money_answer, totals_of

    one = totals_of([("EUR", Decimal("1.10")), (None, None), ("EUR", Decimal("2.05"))])
    assert (currency_of(one), money_answer(one)) == (
        "EUR",
        {"total": "3.15", "totals": {"EUR": "3.15"}},
    )
    two = totals_of([("EUR", Decimal("1.10")), ("INR", Decimal("90.00"))])
    assert currency_of(two) is None
    assert money_answer(two, "projected_total") == {
        "projected_total": None,
        "projected_totals": {"EUR": "1.10", "INR": "90.00"},
    }
    assert (currency_of({}), money_answer({})) == (None, {"total": None, "totals": {}})


def test_a_request_reads_a_scopes_hours_once() -> None:
    from campus_energy.api.costs import HoursMemo
    from campus_energy.core.answers import ScopeHour

    reads: list[tuple[int, int]] = []

    def hours_of(start: int, end: int, terms: Mapping[str, float]) -> list[ScopeHour]:
        reads.append((start, end))
        return [ScopeHour(h, (1.0, 1.0, 1.0, 1.0), 3600.0, 1) for h in range(start, end, 3600_000)]

    memo = HoursMemo(hours_of)
    month = memo(0, 10 * 3600_000, MAIN)
    day = memo(0, 4 * 3600_000, MAIN)  # a part of what was read
    assert day == month[:4] and reads == [(0, 10 * 3600_000)]
    memo(0, 4 * 3600_000, ANNEX)  # other terms
    memo(0, 12 * 3600_000, MAIN)  # further than what was read
    assert reads[1:] == [(0, 4 * 3600_000), (0, 12 * 3600_000)]


# -- totals elsewhere: no sub-meter counted twice, the original endpoints as they were ----------


def test_the_summary_counts_each_building_by_its_total(campus: Campus) -> None:
    today = date(2026, 11, 16)
    body = campus.get("/api/summary")
    books = campus.books
    found = {b["building"]: b for b in body["buildings"]}
    assert found["Main"]["basis"] == "main meter main-1"
    assert found["Annex"]["basis"] == "sum of 2 top-level meter(s)"
    for name, terms in (("Main", MAIN), ("Annex", ANNEX), ("", YARD)):
        assert found[name]["today_kwh"] == pytest.approx(
            books.energy_wh(terms, today, today) / 1000, abs=6e-4
        ), name
    every = {**MAIN, **ANNEX, **YARD}
    assert body["today_kwh"] == pytest.approx(books.energy_wh(every, today, today) / 1000, abs=6e-4)
    subs = books.energy_wh({"main-f1": 1.0, "main-f2": 1.0}, today, today)
    assert subs > 1000  # counting the sub-meters too would show
    assert body["meters"] == len(METERS)


def test_a_buildings_series_sums_its_total_the_original_aggregate_every_meter(
    campus: Campus,
) -> None:
    first, last = date(2026, 11, 2), date(2026, 11, 8)
    body = campus.get(
        f"/api/series?building=Main&start={first}&end={last + timedelta(days=1)}&step=1d"
    )
    books = campus.books
    for point, day in zip(body["points"], days(first, last), strict=True):
        assert point["energy_wh"] == pytest.approx(books.energy_wh(MAIN, day, day), abs=0.06)
    campus_series = campus.get(f"/api/series?start={first}&end={last}&step=1d")
    every = {**MAIN, **ANNEX, **YARD}
    assert campus_series["points"][0]["energy_wh"] == pytest.approx(
        books.energy_wh(every, first, first), abs=0.06
    )
    # the original deployment's endpoint: every meter named with the building, as it was
    seed = campus.get(f"/api/aggregate/building/Main?start_date={first}&end_date={last}")
    all_three = {"main-1": 1.0, "main-f1": 1.0, "main-f2": 1.0}
    assert seed["total_energy_kwh"] == pytest.approx(
        books.energy_wh(all_three, first, last) / 1000, abs=6e-3
    )
    assert seed["meters_found"] == 3
