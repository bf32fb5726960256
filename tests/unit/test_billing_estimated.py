"""Estimated energy on a bill, worked out by hand: counted on lines of its own at the rates
of the hours it fell in (a quarter of each hour's estimate in each quarter hour), left off
when excluded, never a demand peak, never coverage."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.answers import ScopeHour
from campus_energy.core.billing import Cost, cost
from campus_energy.core.tariffs import (
    DAY_SETS,
    DemandCharge,
    Period,
    Ratchet,
    Tariff,
    TariffVersion,
)

BERLIN = ZoneInfo("Europe/Berlin")
HOUR_MS = 3_600_000
JAN_1 = date(2026, 1, 1)
D = Decimal
FIRST, LAST = date(2026, 3, 28), date(2026, 3, 29)  # Sunday 29 March: a 23-hour day


def at(day: date, hour: int = 0) -> int:
    return round(datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).timestamp() * 1000)


def day_hours(estimates: dict[int, float]) -> list[ScopeHour]:
    """Every hour of 28-29 March (24 + 23), 1 kWh measured each (250 Wh a quarter); the hour
    starting at each UTC ms in `estimates` carries that estimated Wh too."""
    start, end = at(FIRST), at(LAST + timedelta(days=1))
    return [
        ScopeHour(t, (250.0, 250.0, 250.0, 250.0), 3600.0, 1, estimates.get(t, 0.0))
        for t in range(start, end, HOUR_MS)
    ]


def tou() -> Tariff:
    """0.20 EUR/kWh; 'day' 08:00-20:00 at 0.30; 10 EUR per kW of 15-minute demand."""
    day = Period("day", D("0.30"), frozenset(DAY_SETS["all"]), 8 * 60, 20 * 60)
    demand = DemandCharge(15, D("10"), Ratchet(D(0), 11, D(0)))
    version = TariffVersion(JAN_1, default_rate=D("0.20"), periods=(day,), demand=demand)
    return Tariff("t", "EUR", (version,), frozenset())


# 2000 Wh estimated in the hour 19:00-20:00 of the 28th (day rate), 3000 Wh in the hour
# 03:00-04:00 of the 29th (the first hour after the clocks went forward; default rate)
ESTIMATES = {at(FIRST, 19): 2000.0, at(LAST, 3): 3000.0}


def items(bill: Cost) -> list[tuple[str, str, str, str, bool]]:
    return [
        (x.description, str(x.quantity), str(x.rate), str(x.amount), x.estimated)
        for x in bill.lines
    ]


def test_an_estimate_is_billed_on_its_own_lines_at_its_hours_rates() -> None:
    found = day_hours(ESTIMATES)
    assert len(found) == 47
    bill = cost(found, {"m": 1.0}, BERLIN, FIRST, LAST, tou())
    assert items(bill) == [
        # measured: 2 days × 12 day hours = 24 kWh × 0.30 = 7.20
        ("Energy, day", "24.000", "0.30", "7.20", False),
        # 47 hours − 24 = 23 kWh × 0.20 = 4.60
        ("Energy, default", "23.000", "0.20", "4.60", False),
        # estimated: 2 kWh × 0.30 = 0.60; 3 kWh × 0.20 = 0.60
        ("Energy, day (estimated)", "2.000", "0.30", "0.60", True),
        ("Energy, default (estimated)", "3.000", "0.20", "0.60", True),
        # demand: the measured quarter of 250 Wh = 1 kW (the estimates' 500 and 750 Wh
        # quarters, 2 and 3 kW, are no demand) × 10 × 2/31 days of March = 0.645 → 0.65
        ("Demand charge, 15-minute peak (2026-03, 2 of 31 days)", "1.000", "10", "0.65", False),
    ]
    assert bill.total == D("13.65")
    assert bill.energy_wh == 47_000 + 5_000
    assert bill.measured_wh == 47_000
    assert bill.estimated_wh == bill.billed_estimated_wh == 5_000
    assert bill.coverage == 1.0
    [month] = bill.demand
    assert month.peak is not None and month.peak.kw == D("1.000")


def test_an_estimate_excluded_is_stated_and_not_billed() -> None:
    bill = cost(
        day_hours(ESTIMATES), {"m": 1.0}, BERLIN, FIRST, LAST, tou(), include_estimated=False
    )
    assert [x[0] for x in items(bill)] == [
        "Energy, day",
        "Energy, default",
        "Demand charge, 15-minute peak (2026-03, 2 of 31 days)",
    ]
    assert bill.total == D("12.45")  # 7.20 + 4.60 + 0.65
    assert bill.energy_wh == bill.measured_wh == 47_000
    assert bill.estimated_wh == 5_000
    assert bill.billed_estimated_wh == 0
    assert bill.estimated_counted is False


def test_an_estimate_before_the_first_version_is_unpriced() -> None:
    late = replace(tou(), versions=(replace(tou().versions[0], valid_from=LAST),))
    bill = cost(day_hours(ESTIMATES), {"m": 1.0}, BERLIN, FIRST, LAST, late)
    # the 28th: 24 kWh measured + 2 kWh estimated before the tariff's first version
    assert bill.unpriced_kwh == D("26.000")
    assert [x[0] for x in items(bill) if x[4]] == ["Energy, default (estimated)"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 5000, allow_nan=False), min_size=47, max_size=47))
def test_estimates_never_change_demand_or_coverage_and_add_up(guesses: list[float]) -> None:
    plain = day_hours({})
    guessed = [replace(h, estimated_wh=g) for h, g in zip(plain, guesses, strict=True)]
    with_them = cost(guessed, {"m": 1.0}, BERLIN, FIRST, LAST, tou())
    without = cost(plain, {"m": 1.0}, BERLIN, FIRST, LAST, tou())
    assert with_them.demand == without.demand
    assert with_them.coverage == without.coverage
    assert [x for x in with_them.lines if not x.estimated] == list(without.lines)
    assert abs(with_them.estimated_wh - sum(guesses)) < 1e-6
    assert abs(with_them.energy_wh - without.energy_wh - sum(guesses)) < 1e-6
    assert with_them.total is not None and without.total is not None
    assert with_them.total == without.total + sum(
        (x.amount for x in with_them.lines if x.estimated), Decimal(0)
    )
