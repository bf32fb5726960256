"""Bills with estimated energy and export, against the books: windows written through the
real SQLite sink, every figure priced here by hand from the windows themselves.

The campus (Europe/Berlin), March 2026 (the clocks go forward on Sunday 29 March):
building "Main" (a time-of-use tariff with standing and demand charges) has one main
meter; "Annex" (a flat tariff) has a rooftop PV meter that exports by day. Every meter
writes one window per quarter hour all month, except across gaps the meters' registers
bridged: there the windows hold estimated energy only — Main on Tuesday 10 March
10:00-11:00 (peak rate, far above any measured demand) and across the missing hour of
29 March 01:00-04:00 (night rate); the PV meter's estimated export at noon on 15 March.

The books: measured import, estimated import and export summed per meter per quarter
hour; each quarter priced at its local time's rate. Bills count the estimate unless
`billing.include_estimated` is false, show it apart, and never let it set a demand peak.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from tests.support.config import campus_meters
from tests.support.sinks import merge

from campus_energy.accounts.command import as_table, energy_from, flows_from
from campus_energy.accounts.events import events_of_store
from campus_energy.accounts.statements import campus_bill
from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import Config, parse_config
from campus_energy.core.windows import Contribution, WindowDelta
from campus_energy.reports.content import build_report
from campus_energy.reports.message import plain_text, standalone_html
from campus_energy.reports.periods import parse_period
from campus_energy.reports.tables import document

ZONE = ZoneInfo("Europe/Berlin")
WINDOW_S = 300
QUARTER_MS = 900_000
KWH = Decimal("0.001")
CENT = Decimal("0.01")
METERS = {  # id: (building, floor, role, parent)
    "main-1": ("Main", "0", "main", None),
    "roof-1": ("Annex", "R", None, None),
}
RATES = {"peak": Decimal("0.30"), "night": Decimal("0.15"), "default": Decimal("0.20")}
FLAT = Decimal("0.25")


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=ZONE).timestamp() * 1000)


def local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZONE)


START_MS = local_ms(2026, 3, 1)
END_MS = local_ms(2026, 4, 1)
NOW_MS = local_ms(2026, 4, 2, 9)
PEAK_GAP = (local_ms(2026, 3, 10, 10), local_ms(2026, 3, 10, 11))  # a Tuesday, peak rate
DST_GAP = (local_ms(2026, 3, 29, 1), local_ms(2026, 3, 29, 4))  # 2 real hours: 02:00 skipped
PV_GAP = (local_ms(2026, 3, 15, 12), local_ms(2026, 3, 15, 13))
PEAK_GAP_WH = 300.0  # per quarter: 1.2 kW, far above Main's measured demand
EVENT_MS = local_ms(2026, 3, 18, 9, 30)


def within(gap: tuple[int, int], quarter: int) -> bool:
    return gap[0] <= quarter < gap[1]


@dataclass(frozen=True)
class Quarter:
    meter_id: str
    start_ms: int
    import_wh: float = 0.0
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0


def quarters() -> list[Quarter]:
    found = []
    for k, quarter in enumerate(range(START_MS, END_MS, QUARTER_MS)):
        if within(PEAK_GAP, quarter):
            found.append(Quarter("main-1", quarter, estimated_wh=PEAK_GAP_WH))
        elif within(DST_GAP, quarter):
            found.append(Quarter("main-1", quarter, estimated_wh=50.0 + k % 3))
        else:
            found.append(Quarter("main-1", quarter, import_wh=40 + (k * 7 % 13) * 1.7))
        hour = local(quarter).hour
        if within(PV_GAP, quarter):
            found.append(Quarter("roof-1", quarter, estimated_export_wh=90.0))
        elif 9 <= hour < 16:
            found.append(Quarter("roof-1", quarter, export_wh=100 + (k % 5) * 3.1))
        else:
            found.append(Quarter("roof-1", quarter, import_wh=20 + (k % 4) * 0.7))
    return found


def deltas(items: list[Quarter]) -> list[WindowDelta]:
    """Each quarter as one window at its start, as the bridge hands it to the sink."""
    return [
        WindowDelta(
            q.meter_id,
            q.start_ms,
            WINDOW_S,
            (
                Contribution(
                    q.meter_id,
                    q.start_ms,
                    1,
                    q.import_wh,
                    WINDOW_S if q.import_wh or q.export_wh else 0.0,
                    True,
                    (q.import_wh - q.export_wh) * 12,
                    export_wh=q.export_wh,
                    estimated_wh=q.estimated_wh,
                    estimated_export_wh=q.estimated_export_wh,
                ),
            ),
            METERS[q.meter_id][0],
            METERS[q.meter_id][1],
        )
        for q in items
    ]


# -- the books ----------------------------------------------------------------------------------


def kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(KWH, ROUND_HALF_UP)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def period_of(quarter_ms: int) -> str:
    """Night 00-06 every day, peak 08-20 on weekdays, else the default (all on whole hours)."""
    moment = local(quarter_ms)
    if moment.hour < 6:
        return "night"
    return "peak" if moment.weekday() < 5 and 8 <= moment.hour < 20 else "default"


class Books:
    def __init__(self, items: list[Quarter]) -> None:
        self.items = items

    def of(self, meter: str) -> list[Quarter]:
        return [q for q in self.items if q.meter_id == meter]

    def total(self, meter: str, what: str) -> float:
        return sum(getattr(q, what) for q in self.of(meter))

    def lines(self, meter: str, what: str) -> dict[str, tuple[Decimal, Decimal]]:
        """Main's energy of `what` per time-of-use period: (kWh, amount)."""
        per: dict[str, float] = defaultdict(float)
        for q in self.of(meter):
            if getattr(q, what):
                per[period_of(q.start_ms)] += getattr(q, what)
        return {p: (kwh(wh), money(kwh(wh) * RATES[p])) for p, wh in per.items()}

    def peak_kw(self, meter: str, with_estimates: bool = False) -> Decimal:
        """The month's highest quarter-hour demand (kW)."""
        return max(
            (
                Decimal((q.import_wh + (q.estimated_wh if with_estimates else 0)) * 4) / 1000
            ).quantize(KWH, ROUND_HALF_UP)
            for q in self.of(meter)
        )

    def main_total(self, counted: bool) -> Decimal:
        """Main's bill: energy (measured, and estimated when counted), 31 days' standing,
        the month's standing and demand (max(peak, 2 kW) × 10)."""
        lines = list(self.lines("main-1", "import_wh").values())
        if counted:
            lines += list(self.lines("main-1", "estimated_wh").values())
        energy = sum((amount for _, amount in lines), Decimal(0))
        demand = money(max(self.peak_kw("main-1"), Decimal(2)) * 10)
        return energy + money(31 * Decimal("1.50")) + money(Decimal(30)) + demand

    def annex_total(self) -> Decimal:
        return money(kwh(self.total("roof-1", "import_wh")) * FLAT) + money(31 * Decimal("0.50"))


# -- the apps -----------------------------------------------------------------------------------


def config_for(folder: Path, include_estimated: bool | None, store: Path) -> Config:
    tariff = {
        "id": "tou",
        "currency": "EUR",
        "versions": [
            {
                "valid_from": date(2026, 1, 1),
                "default_rate": "0.20",
                "standing_per_day": "1.50",
                "standing_per_month": "30",
                "periods": [
                    {
                        "name": "peak",
                        "days": ["weekdays"],
                        "start": "08:00",
                        "end": "20:00",
                        "rate": "0.30",
                    },
                    {
                        "name": "night",
                        "days": ["all"],
                        "start": "00:00",
                        "end": "06:00",
                        "rate": "0.15",
                    },
                ],
                "demand": {"interval_min": 15, "price_per_kw": "10", "minimum_kw": "2"},
            }
        ],
    }
    flat = {
        "id": "flat",
        "currency": "EUR",
        "versions": [
            {"valid_from": date(2026, 1, 1), "default_rate": "0.25", "standing_per_day": "0.50"}
        ],
    }
    settings: dict[str, Any] = {
        "site": {
            "name": "Solar Campus",
            "timezone": "Europe/Berlin",
            "tariff": "tou",
            "buildings": [{"name": "Main"}, {"name": "Annex", "tariff": "flat"}],
        },
        "storage": {"path": str(store)},
        "bridge": {"window_s": WINDOW_S, "sqlite": {"path": str(folder / "windows.db")}},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": campus_meters(METERS),
        "tariffs": [tariff, flat],
    }
    if include_estimated is not None:
        settings["billing"] = {"include_estimated": include_estimated}
    return parse_config(settings)


def logger_store_with_events(path: Path) -> None:
    """A logger's store holding the record of meter events (the columns of `meter_events`)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE meter_events (id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, "
            "ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, register TEXT, "
            "before_wh REAL, after_wh REAL, old_final_wh REAL, new_start_wh REAL, note TEXT, "
            "recorded_ms INTEGER)"
        )
        rows = [
            ("main-1", EVENT_MS, "replaced", "detected", "import_energy_wh", 98_765_000.0,
             12_000.0, None, None, "", EVENT_MS),
            ("main-1", EVENT_MS, "replaced", "confirmed", "import_energy_wh", None, None,
             98_765_400.0, 11_500.0, "new meter SN 42", EVENT_MS + 60_000),
            ("main-1", local_ms(2026, 4, 1, 0, 30), "reset", "detected", "import_energy_wh",
             5.0e6, 2.0, None, None, "", None),  # April: not this month's
            ("roof-1", local_ms(2026, 3, 3, 12), "jump", "detected", "export_energy_wh",
             1.0e6, 9.0e6, None, None, "", None),
        ]  # fmt: skip
        conn.executemany(
            "INSERT INTO meter_events (meter_id, ts_ms, kind, source, register, before_wh, "
            "after_wh, old_final_wh, new_start_wh, note, recorded_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


@dataclass(frozen=True)
class Campus:
    books: Books
    counted: Config  # billing.include_estimated left at its default
    excluded: Config  # billing.include_estimated = false, and no logger's store to read
    clients: Mapping[str, FlaskClient]

    def bills(self, which: str, suffix: str = "") -> Any:
        answer = self.clients[which].get(f"/api/bills{suffix}?month=2026-03")
        assert answer.status_code == 200, answer.data[:300]
        return answer.get_json() if not suffix else answer.data.decode()


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    folder = tmp_path_factory.mktemp("bills-estimated")
    store = folder / "smart_meter.db"
    logger_store_with_events(store)
    counted = config_for(folder, None, store)
    excluded = config_for(folder, False, folder / "no-logger-here.db")
    items = quarters()
    merge(counted, deltas(items), NOW_MS)
    sources = {name: open_source(c) for name, c in (("counted", counted), ("excluded", excluded))}
    try:
        clients = {
            name: create_app(c, source=sources[name], clock=lambda: NOW_MS / 1000).test_client()
            for name, c in (("counted", counted), ("excluded", excluded))
        }
        yield Campus(Books(items), counted, excluded, clients)
    finally:
        for source in sources.values():
            source.close()


def account(document: Any, name: str) -> Any:
    return next(b for b in document["bills"] if b["account"] == name)


def energy_lines(bill: Any, estimated: bool) -> dict[str, tuple[Decimal, Decimal]]:
    return {
        x["period"]: (Decimal(x["quantity"]), Decimal(x["amount"]))
        for x in bill["lines"]
        if x["kind"] == "energy" and x["estimated"] is estimated
    }


# -- the bills ----------------------------------------------------------------------------------


def test_the_month_has_the_dst_day_and_both_kinds_of_energy(campus: Campus) -> None:
    assert (END_MS - START_MS) / 3_600_000 == 31 * 24 - 1  # a 23-hour day
    assert campus.books.total("main-1", "estimated_wh") > 0
    assert campus.books.total("roof-1", "export_wh") > 0


def test_a_bill_counts_estimated_energy_by_default_on_lines_of_its_own(campus: Campus) -> None:
    books = campus.books
    main = account(campus.bills("counted"), "Main")
    measured, estimated = books.total("main-1", "import_wh"), books.total("main-1", "estimated_wh")
    assert main["estimated_counted"] is True
    assert Decimal(main["measured_kwh"]) == kwh(measured)
    assert Decimal(main["estimated_kwh"]) == kwh(estimated)
    assert Decimal(main["energy_kwh"]) == kwh(measured + estimated)
    assert energy_lines(main, False) == books.lines("main-1", "import_wh")
    assert energy_lines(main, True) == books.lines("main-1", "estimated_wh")
    assert {x["description"] for x in main["lines"] if x["estimated"]} == {
        "Energy, peak (estimated)",
        "Energy, night (estimated)",
    }
    assert Decimal(main["total"]) == books.main_total(counted=True)
    assert Decimal(main["total"]) > books.main_total(counted=False)
    assert Decimal(main["coverage"]) < 1  # the gaps' estimates cover no time


def test_include_estimated_false_bills_measured_energy_and_still_states_the_estimate(
    campus: Campus,
) -> None:
    books = campus.books
    main = account(campus.bills("excluded"), "Main")
    measured, estimated = books.total("main-1", "import_wh"), books.total("main-1", "estimated_wh")
    assert main["estimated_counted"] is False
    assert Decimal(main["energy_kwh"]) == Decimal(main["measured_kwh"]) == kwh(measured)
    assert Decimal(main["estimated_kwh"]) == kwh(estimated)
    assert energy_lines(main, True) == {}
    assert energy_lines(main, False) == books.lines("main-1", "import_wh")
    assert Decimal(main["total"]) == books.main_total(counted=False)
    campus_part = campus.bills("excluded")["campus"]
    assert Decimal(campus_part["energy_kwh"]) == kwh(measured) + kwh(
        books.total("roof-1", "import_wh")
    )
    assert Decimal(campus_part["estimated_kwh"]) == kwh(estimated)


def test_an_estimate_never_sets_the_demand_peak(campus: Campus) -> None:
    books = campus.books
    measured_peak = books.peak_kw("main-1")
    assert books.peak_kw("main-1", with_estimates=True) == Decimal("1.200") > measured_peak
    for which in ("counted", "excluded"):
        main = account(campus.bills(which), "Main")
        assert Decimal(main["peak"]["kw"]) == measured_peak
        [demand] = main["demand"]
        assert Decimal(demand["peak_kw"]) == measured_peak
        assert Decimal(demand["billed_kw"]) == max(measured_peak, Decimal(2))


def test_export_is_stated_on_the_bill_and_not_priced(campus: Campus) -> None:
    books = campus.books
    found = campus.bills("counted")
    annex, main = account(found, "Annex"), account(found, "Main")
    exported = books.total("roof-1", "export_wh")
    assert Decimal(annex["export_kwh"]) == kwh(exported)
    estimated_export = books.total("roof-1", "estimated_export_wh")
    assert Decimal(annex["estimated_export_kwh"]) == kwh(estimated_export) > 0
    assert Decimal(found["campus"]["estimated_export_kwh"]) == kwh(estimated_export)
    assert Decimal(main["export_kwh"]) == 0
    assert Decimal(found["campus"]["export_kwh"]) == kwh(exported)
    [roof] = annex["meter_energy"]
    assert Decimal(roof["export_kwh"]) == kwh(exported)
    assert Decimal(roof["energy_kwh"]) == kwh(books.total("roof-1", "import_wh"))
    assert Decimal(roof["estimated_kwh"]) == 0  # an estimated export is no import
    assert Decimal(roof["estimated_export_kwh"]) == kwh(estimated_export)
    # the flat tariff prices the import alone: no feed-in tariff
    assert Decimal(annex["total"]) == books.annex_total()
    assert Decimal(annex["estimated_kwh"]) == 0


def test_the_csv_shows_the_estimate_and_the_export_apart(campus: Campus) -> None:
    books = campus.books
    rows = list(csv.DictReader(io.StringIO(campus.bills("counted", ".csv"))))
    main = [r for r in rows if r["account"] == "Main"]
    [of_which] = [r for r in main if r["kind"] == "estimated"]
    assert of_which["description"] == "of which estimated"
    assert Decimal(of_which["quantity"]) == kwh(books.total("main-1", "estimated_wh"))
    [total] = [r for r in main if r["kind"] == "total"]
    assert Decimal(total["amount"]) == books.main_total(counted=True)
    exported, guessed = [r for r in rows if r["account"] == "Annex" and r["kind"] == "export"]
    assert exported["description"] == "Exported (not priced)"
    assert Decimal(exported["quantity"]) == kwh(books.total("roof-1", "export_wh"))
    assert guessed["description"] == "Exported, estimated (not priced)"
    assert Decimal(guessed["quantity"]) == kwh(books.total("roof-1", "estimated_export_wh"))
    assert exported["amount"] == guessed["amount"] == ""
    excluded = list(csv.DictReader(io.StringIO(campus.bills("excluded", ".csv"))))
    [not_billed] = [r for r in excluded if r["account"] == "Main" and r["kind"] == "estimated"]
    assert not_billed["description"] == "estimated, not billed"


def test_a_bill_lists_its_meters_events_of_the_month(campus: Campus) -> None:
    found = campus.bills("counted")
    main, annex = account(found, "Main"), account(found, "Annex")
    assert [(e["meter"], e["kind"], e["source"]) for e in main["meter_events"]] == [
        ("main-1", "replaced", "detected"),
        ("main-1", "replaced", "confirmed"),
    ]
    confirmed = main["meter_events"][1]
    assert confirmed["old_final_wh"] == 98_765_400.0
    assert confirmed["new_start_wh"] == 11_500.0
    assert confirmed["note"] == "new meter SN 42"
    assert confirmed["at_local"] == "2026-03-18T09:30:00+01:00"
    assert [(e["meter"], e["kind"]) for e in annex["meter_events"]] == [("roof-1", "jump")]
    # no logger's store to read: the bill says it has no record, not that nothing happened
    assert account(campus.bills("excluded"), "Main")["meter_events"] is None


def test_the_bill_command_prints_the_estimate_export_and_events(campus: Campus) -> None:
    books = campus.books
    source = open_source(campus.counted)
    try:
        found = campus_bill(
            campus.counted,
            source.scope_hours,
            energy_from(source),
            (2026, 3),
            peaks_of=source.scope_peaks,
            flows_of=flows_from(source),
            events_of=events_of_store(campus.counted.storage.path),
        )
    finally:
        source.close()
    text = as_table(found)
    estimated = kwh(books.total("main-1", "estimated_wh"))
    assert "of which estimated" in text
    assert f" {estimated} kWh" in text
    assert f" {kwh(books.total('roof-1', 'export_wh'))} kWh" in text
    assert "Exported (not priced: no feed-in tariff)" in text
    assert "meter event: main-1 replaced (confirmed)" in text
    assert found.estimated_kwh == estimated
    assert found.energy_kwh == kwh(
        books.total("main-1", "import_wh") + books.total("main-1", "estimated_wh")
    ) + kwh(books.total("roof-1", "import_wh"))


# -- the report of the month --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["counted", "excluded"])
def test_the_months_report_states_the_estimate_the_export_and_the_net(
    campus: Campus, which: str
) -> None:
    books = campus.books
    config = campus.counted if which == "counted" else campus.excluded
    counted = which == "counted"
    source = open_source(config)
    try:
        report = build_report(config, source, parse_period("2026-03"))
    finally:
        source.close()
    rows = {row.title: row for row in report.rows}
    main, annex, whole = rows["Main"], rows["Annex"], rows["Campus"]
    measured = books.total("main-1", "import_wh")
    estimated = books.total("main-1", "estimated_wh")
    assert main.measured_kwh == kwh(measured)
    assert main.estimated_kwh == kwh(estimated)
    assert main.estimated_counted is counted
    assert main.energy_kwh == kwh(measured + (estimated if counted else 0))
    assert main.export_kwh == 0
    exported = books.total("roof-1", "export_wh")
    assert annex.export_kwh == kwh(exported)
    assert annex.net_kwh == kwh(books.total("roof-1", "import_wh")) - kwh(exported)
    assert whole.export_kwh == kwh(exported)
    assert whole.estimated_kwh == kwh(estimated)
    assert whole.energy_kwh == main.energy_kwh + annex.energy_kwh
    # the month's cost is the month's bill, with or without the estimate
    assert main.costs == {"EUR": books.main_total(counted=counted)}
    [row] = [r for r in document(report)["buildings"] if r["scope"] == "Main"]
    assert row["estimated_kwh"] == str(kwh(estimated))
    assert row["export_kwh"] == "0.000"
    assert row["estimated_counted"] is counted
    text = plain_text(report)
    what = "of which estimated" if counted else "not counted: estimated"
    assert f"  {what} {kwh(estimated)} kWh (measured {kwh(measured)} kWh)" in text
    assert f"  exported {kwh(exported)} kWh (not priced)" in text
    assert any(str(kwh(estimated)) in note for note in report.notes)
    html = standalone_html(report)
    assert ("of which estimated" if counted else "estimated, not counted") in html
    assert "Exported kWh" in html


def test_the_cost_endpoint_states_the_estimate_apart(campus: Campus) -> None:
    books = campus.books
    measured = books.total("main-1", "import_wh")
    estimated = books.total("main-1", "estimated_wh")
    roof = books.total("roof-1", "import_wh")
    days = "start_date=2026-03-01&end_date=2026-03-31"
    for which, counted in (("counted", True), ("excluded", False)):
        client = campus.clients[which]
        main = client.get(f"/api/cost?building=Main&{days}").get_json()
        assert Decimal(main["measured_kwh"]) == kwh(measured)
        assert Decimal(main["estimated_kwh"]) == kwh(estimated)
        assert main["estimated_counted"] is counted
        assert Decimal(main["energy_kwh"]) == kwh(measured + (estimated if counted else 0))
        whole = client.get(f"/api/cost?{days}").get_json()
        assert Decimal(whole["measured_kwh"]) == kwh(measured) + kwh(roof)
        assert Decimal(whole["estimated_kwh"]) == kwh(estimated)
        assert whole["estimated_counted"] is counted
        assert Decimal(whole["total"]) == books.main_total(counted) + books.annex_total()


def test_the_workbook_has_the_estimate_the_export_and_the_events(campus: Campus) -> None:
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    books = campus.books
    answer = campus.clients["counted"].get("/api/bills.xlsx?month=2026-03")
    assert answer.status_code == 200
    book = load_workbook(io.BytesIO(answer.data))
    header, *rows = book["Accounts"].iter_rows(values_only=True)
    accounts = {row[1]: dict(zip(header, row, strict=True)) for row in rows}
    assert Decimal(str(accounts["Main"]["estimated_kwh"])) == kwh(
        books.total("main-1", "estimated_wh")
    )
    assert Decimal(str(accounts["Main"]["measured_kwh"])) == kwh(books.total("main-1", "import_wh"))
    assert accounts["Main"]["estimated_counted"] == "yes"
    assert Decimal(str(accounts["Annex"]["export_kwh"])) == kwh(books.total("roof-1", "export_wh"))
    header, *events = book["Meter events"].iter_rows(values_only=True)
    found = [dict(zip(header, row, strict=True)) for row in events]
    assert [(e["account"], e["meter"], e["kind"], e["source"]) for e in found] == [
        ("Main", "main-1", "replaced", "detected"),
        ("Main", "main-1", "replaced", "confirmed"),
        ("Annex", "roof-1", "jump", "detected"),
    ]
