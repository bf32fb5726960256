"""Bills of an estate: each site's accounts billed over its own local month.

"Main" is on the default site (Europe/Berlin); "Annex" on site "west" (America/New_York,
six hours behind). The same windows cut at Berlin's and at New York's midnights differ, so
a bill in the wrong zone is caught: every figure is compared with the windows summed by hand.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support.config import config_data, meter_at, tcp_bus, write_toml
from tests.support.priced_campus import flat_tariff, kwh, money, tou_tariff
from tests.support.sinks import KnownWindow, merge, window_deltas

from campus_energy.accounts.command import energy_from
from campus_energy.accounts.scopes import UnknownScope, accounts, resolve
from campus_energy.accounts.statements import campus_bill
from campus_energy.backends import open_source
from campus_energy.cli import main
from campus_energy.config import Config, parse_config

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WINDOW_S = 900
PLACES = {"main-1": ("Main", "0"), "annex-1": ("Annex", "0"), "annex-2": ("Annex", "1")}
SITE = {"main-1": "main", "annex-1": "west", "annex-2": "west"}


def ms(zone: ZoneInfo, *when: int) -> int:
    return round(datetime(*when, tzinfo=zone).timestamp() * 1000)


def windows() -> list[KnownWindow]:
    """Every quarter hour from 28 October to 3 December (UTC), each meter's energy a pattern
    of the quarter's index, so no two cuts of the month hold the same sum."""
    start, end = ms(UTC, 2026, 10, 28), ms(UTC, 2026, 12, 3)
    found = []
    for i, at in enumerate(range(start, end, WINDOW_S * 1000)):
        for k, meter in enumerate(PLACES):
            wh = 10.0 + (i * (k + 3)) % 17 + 0.125 * k
            found.append(KnownWindow(meter, at, wh, WINDOW_S, wh * 4))
    return found


def estate_data(folder: Path) -> dict[str, Any]:
    meters = [meter_at(m, "plant", n, "eastron-sdm120", building=b, floor=f)
              for n, (m, (b, f)) in enumerate(PLACES.items(), start=1)]  # fmt: skip
    for m in meters:
        m["site"] = SITE[m["id"]]
    data = config_data(
        [tcp_bus()],
        meters,
        site={"timezone": "Europe/Berlin", "tariff": "tou",
              "buildings": [{"name": "Main", "tariff": "tou"},
                            {"name": "Annex", "tariff": "flat"}]},
        sites=[{"id": "west", "name": "West Campus", "timezone": "America/New_York"}],
        tariffs=[tou_tariff("2026-01-01", "2026-11-02"), flat_tariff("2026-01-01")],
        bridge={"window_s": WINDOW_S, "sink": "sqlite",
                "sqlite": {"path": str(folder / "windows.db")}},
    )  # fmt: skip
    return data


def estate(folder: Path) -> Config:
    return parse_config(estate_data(folder))


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("estate")
    config = estate(folder)
    write_toml(folder / "campus-energy.toml", estate_data(folder))
    known = windows()
    deltas = window_deltas(known, WINDOW_S, PLACES)
    deltas = [dataclasses.replace(d, site=SITE[d.meter_id]) for d in deltas]
    merge(config, deltas, ms(UTC, 2026, 12, 4))
    source = open_source(config)
    try:
        yield config, source, known
    finally:
        source.close()


def month_wh(known: list[KnownWindow], meters: set[str], zone: ZoneInfo) -> float:
    low, high = ms(zone, 2026, 11, 1), ms(zone, 2026, 12, 1)
    return sum(w.energy_wh for w in known if w.meter_id in meters and low <= w.start_ms < high)


def test_a_sites_bill_is_its_accounts_over_its_own_local_month(billed: Any) -> None:
    config, source, known = billed
    west = campus_bill(config, source.scope_hours, energy_from(source), (2026, 11), site="west")
    [annex] = west.bills
    assert (annex.scope.name, annex.scope.site) == ("Annex", "west")
    expected = month_wh(known, {"annex-1", "annex-2"}, NEW_YORK)
    assert annex.cost.energy_wh == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(month_wh(known, {"annex-1", "annex-2"}, BERLIN), abs=1)
    # the meters on the bill add up to it, cut at the same midnights
    uses = {u.id: u.energy_kwh for u in annex.meters}
    for meter in ("annex-1", "annex-2"):
        wh = month_wh(known, {meter}, NEW_YORK)
        assert uses[meter] == kwh(wh)
    assert west.energy_kwh == kwh(expected)
    # 30 days of the flat standing charge (0.50) and 0.25 a kWh
    energy_line = next(x for x in annex.cost.lines if x.kind == "energy")
    assert energy_line.amount == money(kwh(expected) * Decimal("0.25"))


def test_the_default_sites_bill_and_the_estates(billed: Any) -> None:
    config, source, known = billed
    main = campus_bill(config, source.scope_hours, energy_from(source), (2026, 11), site="main")
    assert [b.scope.name for b in main.bills] == ["Main"]
    assert main.bills[0].cost.energy_wh == pytest.approx(
        month_wh(known, {"main-1"}, BERLIN), abs=1e-6
    )
    estate_bill = campus_bill(config, source.scope_hours, energy_from(source), (2026, 11))
    by_name = {b.scope.name: b for b in estate_bill.bills}
    assert set(by_name) == {"Main", "Annex"}  # each account in its own site's month
    assert by_name["Annex"].cost.energy_wh == pytest.approx(
        month_wh(known, {"annex-1", "annex-2"}, NEW_YORK), abs=1e-6
    )
    assert by_name["Main"].cost.energy_wh == pytest.approx(
        month_wh(known, {"main-1"}, BERLIN), abs=1e-6
    )


def test_a_scope_outside_the_site_asked_is_unknown(billed: Any) -> None:
    config, _, _ = billed
    with pytest.raises(UnknownScope, match="not in site 'main'"):
        resolve(config, "building", "Annex", "main")
    assert resolve(config, "campus", None, "west").terms == {"annex-1": 1.0, "annex-2": 1.0}
    assert [s.name for s in accounts(config, "west")] == ["Annex"]
    assert resolve(config, "meter", "annex-2").site == "west"


def test_the_bill_command_bills_a_site(billed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, known = billed
    path = config.bridge.sqlite.path.parent / "campus-energy.toml"
    args = ["bill", "-c", str(path), "--month", "2026-11", "--site", "west", "--format", "json"]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    [annex] = document["bills"]
    assert (annex["account"], annex["scope"]["site"]) == ("Annex", "west")
    assert document["timezone"] == "America/New_York"
    assert document["campus"]["energy_kwh"] == str(
        kwh(month_wh(known, {"annex-1", "annex-2"}, NEW_YORK))
    )
    assert main([*args[:-4], "--site", "east"]) == 2
    assert "unknown site 'east'" in capsys.readouterr().err


def test_a_sites_report_is_cut_in_its_own_zone(billed: Any) -> None:
    from campus_energy.reports.content import build_report
    from campus_energy.reports.periods import parse_period

    config, source, known = billed
    report = build_report(config, source, parse_period("2026-11"), site="west")
    assert (report.site, report.zone) == ("West Campus", "America/New_York")
    annex, campus = report.rows
    expected = month_wh(known, {"annex-1", "annex-2"}, NEW_YORK)
    assert (annex.name, annex.energy_kwh, campus.energy_kwh) == (
        "Annex",
        kwh(expected),
        kwh(expected),
    )
    for day, shown in zip(range(1, 31), campus.daily_kwh, strict=True):
        low, high = ms(NEW_YORK, 2026, 11, day), ms(NEW_YORK, 2026, 11, day) + 86_400_000
        if day == 1:  # 1 November in New York: the clocks go back, a 25-hour day
            high += 3_600_000
        wh = sum(w.energy_wh for w in known
                 if w.meter_id.startswith("annex") and low <= w.start_ms < high)  # fmt: skip
        assert shown == pytest.approx(wh / 1000, abs=1e-9), day
    assert {c.meter for c in report.coverage} == {"annex-1", "annex-2"}
    # a building's report is its site's too, without naming the site
    alone = build_report(config, source, parse_period("2026-11"), "Annex")
    assert alone.zone == "America/New_York" and alone.rows[0].energy_kwh == kwh(expected)


def test_a_sites_report_holds_its_own_alerts_only(billed: Any) -> None:
    from campus_energy.incidents.values import HistoryRow
    from campus_energy.reports.content import build_report
    from campus_energy.reports.periods import parse_period

    config, source, _ = billed
    at = ms(UTC, 2026, 11, 10)

    def row(rule: str, subject: str, scope: str) -> HistoryRow:
        return HistoryRow(rule, subject, "meter-silent", scope, "firing", at, "warning", None,
                          "", False)  # fmt: skip

    history = [
        row("silent", "annex-1", "campus"),  # west's meter, of an estate-wide rule
        row("silent", "main-1", "campus"),  # main's
        row("load", "campus", "campus"),  # the estate's total: no one site's
        row("annex-night", "Annex", "building:Annex"),
        row("main-night", "Main", "building:Main"),
    ]
    west = build_report(config, source, parse_period("2026-11"), site="west", alerts=history)
    assert [(r.rule, r.subject) for r in west.alerts or ()] == [
        ("annex-night", "Annex"),
        ("silent", "annex-1"),
    ]
    annex = build_report(config, source, parse_period("2026-11"), "Annex", alerts=history)
    assert [(r.rule, r.subject) for r in annex.alerts or ()] == [
        ("annex-night", "Annex"),
        ("silent", "annex-1"),
    ]
    estate_report = build_report(config, source, parse_period("2026-11"), alerts=history)
    assert len(estate_report.alerts or ()) == len(history)
