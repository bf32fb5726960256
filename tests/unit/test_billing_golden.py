"""Bills worked out by hand: every line item, total and peak below is arithmetic written in
the comments, from the rules of `core.billing`, `core.demand`, `core.emissions` and
`core.campus`; then the properties a bill keeps for any tariff and energy."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.answers import ScopeHour
from campus_energy.core.billing import Cost, cost
from campus_energy.core.campus import Building, Campus, MeterPlace, VirtualMeter
from campus_energy.core.demand import Peak, monthly_peaks, peaks_of_hours, series
from campus_energy.core.emissions import EmissionFactors, footprint
from campus_energy.core.tariffs import (
    DAY_SETS,
    DemandCharge,
    Period,
    Ratchet,
    Tariff,
    TariffVersion,
)

HOUR_MS = 3_600_000
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
JAN_1 = date(2026, 1, 1)
D = Decimal

Quarters = tuple[float, float, float, float]
FLAT: Quarters = (250.0, 250.0, 250.0, 250.0)  # 1 kWh in every hour


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC epoch ms of a local time."""
    return ms(datetime(year, month, day, hour, minute, tzinfo=zone))


def hours(
    zone: ZoneInfo,
    first: date,
    last: date,
    quarters: Callable[[datetime], Quarters] = lambda _: FLAT,
) -> list[ScopeHour]:
    """Every local clock hour of the days first..last (UTC hours from local midnight to local
    midnight: 23 or 25 of them on a day the clocks change), fully covered by one meter."""
    after = last + timedelta(days=1)
    start, end = at(zone, first.year, first.month, first.day), at(zone, *after.timetuple()[:3])
    return [
        ScopeHour(t, quarters(datetime.fromtimestamp(t / 1000, zone)), 3600.0, 1)
        for t in range(start, end, HOUR_MS)
    ]


def items(bill: Cost) -> list[tuple[str, date, str, str, str]]:
    """Each line as (description, version, quantity, rate, amount), decimals as written."""
    return [
        (line.description, line.valid_from, str(line.quantity), str(line.rate), str(line.amount))
        for line in bill.lines
    ]


def tariff(*versions: TariffVersion, holidays: frozenset[date] = frozenset()) -> Tariff:
    return Tariff("t", "EUR", versions, holidays)


def period(name: str, rate: str, days: str, start: int, end: int) -> Period:
    """A period on the days of a DAY_SETS name (or one day kind), start/end in hours."""
    return Period(name, D(rate), frozenset(DAY_SETS.get(days, (days,))), start * 60, end * 60)


# --- flat rate, standing per day ---------------------------------------------------------------


def test_a_flat_rate_with_a_standing_charge_per_day_over_a_whole_month() -> None:
    # June 2026 in Berlin: 30 days × 24 h; each hour 200 + 250 + 300 + 250 = 1000 Wh
    june = hours(BERLIN, date(2026, 6, 1), date(2026, 6, 30), lambda _: (200, 250, 300, 250))
    flat = tariff(TariffVersion(JAN_1, default_rate=D("0.2837"), standing_per_day=D("0.4555")))
    bill = cost(june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 30), flat)
    assert len(june) == 720
    assert items(bill) == [
        # 720 kWh × 0.2837 = 204.264 → 204.26
        ("Energy, default", JAN_1, "720.000", "0.2837", "204.26"),
        # 30 days × 0.4555 = 13.665 → 13.67 (half up; half even would give 13.66)
        ("Standing charge per day", JAN_1, "30", "0.4555", "13.67"),
    ]
    assert bill.total == D("217.93")  # 204.26 + 13.67
    assert bill.energy_wh == 720_000
    assert bill.coverage == 1.0
    assert bill.unpriced_kwh == 0
    assert bill.demand == ()


# --- time of use: weekdays, weekends, holidays -------------------------------------------------

CORPUS_CHRISTI = date(2026, 6, 4)  # a Thursday


def daytime_heavy(local: datetime) -> Quarters:
    """2 kWh an hour from 08:00 to 20:00 local, 1 kWh an hour at night: 36 kWh a day."""
    return (500, 500, 500, 500) if 8 <= local.hour < 20 else FLAT


def test_weekday_weekend_and_holiday_periods_price_their_own_energy() -> None:
    # June 2026: weekends 6-7, 13-14, 20-21, 27-28 (8 days); 22 weekdays, one of them
    # (Thu 4 June) a holiday of the tariff: 21 working days
    tou = tariff(
        TariffVersion(
            JAN_1,
            periods=(
                period("day", "0.3125", "weekdays", 8, 20),
                period("weekend", "0.18", "weekends", 0, 24),
                period("holiday", "0.12", "holidays", 0, 24),
            ),
            default_rate=D("0.21"),
            standing_per_month=D("9.99"),
        ),
        holidays=frozenset({CORPUS_CHRISTI}),
    )
    june = hours(BERLIN, date(2026, 6, 1), date(2026, 6, 30), daytime_heavy)
    bill = cost(june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 30), tou)
    assert items(bill) == [
        # 21 working days × 12 h × 2 kWh = 504 kWh × 0.3125 = 157.50
        ("Energy, day", JAN_1, "504.000", "0.3125", "157.50"),
        # 8 weekend days × 36 kWh = 288 kWh × 0.18 = 51.84
        ("Energy, weekend", JAN_1, "288.000", "0.18", "51.84"),
        # the holiday: 36 kWh × 0.12 = 4.32 (its daytime is not the weekday "day" period)
        ("Energy, holiday", JAN_1, "36.000", "0.12", "4.32"),
        # working days' nights: 21 × 12 h × 1 kWh = 252 kWh × 0.21 = 52.92
        ("Energy, default", JAN_1, "252.000", "0.21", "52.92"),
        # the whole month: 1 × 9.99
        ("Standing charge per month (2026-06)", JAN_1, "1", "9.99", "9.99"),
    ]
    assert bill.total == D("276.57")  # 157.50 + 51.84 + 4.32 + 52.92 + 9.99
    assert bill.energy_wh == 30 * 36_000


# --- a price change in mid-month ---------------------------------------------------------------

JUNE_15 = date(2026, 6, 15)
OLD = TariffVersion(
    JAN_1,
    default_rate=D("0.30"),
    standing_per_month=D("31.00"),
    demand=DemandCharge(15, D("10.00")),
)
NEW = TariffVersion(
    JUNE_15,
    default_rate=D("0.36"),
    standing_per_month=D("47.00"),
    demand=DemandCharge(15, D("12.00")),
)


def one_spike(local: datetime) -> Quarters:
    """1 kWh an hour, but 1000 Wh in the quarter 12:00-12:15 of 10 June (4 kW)."""
    return (1000, 250, 250, 250) if (local.day, local.hour) == (10, 12) else FLAT


def test_a_price_change_in_mid_month_prices_each_day_by_its_own_version() -> None:
    june = hours(BERLIN, date(2026, 6, 1), date(2026, 6, 30), one_spike)
    bill = cost(june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 30), tariff(OLD, NEW))
    assert items(bill) == [
        # 1-14 June: 14 × 24 kWh + 0.75 kWh of the spike = 336.75 kWh × 0.30 = 101.025 → 101.03
        ("Energy, default", JAN_1, "336.750", "0.30", "101.03"),
        # 15-30 June: 16 × 24 = 384 kWh × 0.36 = 138.24
        ("Energy, default", JUNE_15, "384.000", "0.36", "138.24"),
        # 31.00 × 14 / 30 = 14.4666… → 14.47
        ("Standing charge per month (2026-06, 14 of 30 days)", JAN_1, "1", "31.00", "14.47"),
        # 47.00 × 16 / 30 = 25.0666… → 25.07
        ("Standing charge per month (2026-06, 16 of 30 days)", JUNE_15, "1", "47.00", "25.07"),
        # the month's peak, 1000 Wh in 15 min = 4 kW: 4 × 10.00 × 14 / 30 = 18.666… → 18.67
        (
            "Demand charge, 15-minute peak (2026-06, 14 of 30 days)",
            JAN_1,
            "4.000",
            "10.00",
            "18.67",
        ),
        # 4 × 12.00 × 16 / 30 = 25.60
        (
            "Demand charge, 15-minute peak (2026-06, 16 of 30 days)",
            JUNE_15,
            "4.000",
            "12.00",
            "25.60",
        ),
    ]
    assert [line.days for line in bill.lines[2:]] == [14, 16, 14, 16]
    assert [line.month_days for line in bill.lines[2:]] == [30, 30, 30, 30]
    # 101.03 + 138.24 + 14.47 + 25.07 + 18.67 + 25.60
    assert bill.total == D("323.08")
    spike = Peak((2026, 6), D("4.000"), at(BERLIN, 2026, 6, 10, 12))
    assert [(d.peak, d.billed_kw) for d in bill.demand] == [(spike, D("4.000"))] * 2


def test_a_new_version_never_reprices_the_past() -> None:
    june = hours(BERLIN, date(2026, 6, 1), date(2026, 6, 30), one_spike)
    expected = [
        ("Energy, default", JAN_1, "336.750", "0.30", "101.03"),
        ("Standing charge per month (2026-06, 14 of 30 days)", JAN_1, "1", "31.00", "14.47"),
        (
            "Demand charge, 15-minute peak (2026-06, 14 of 30 days)",
            JAN_1,
            "4.000",
            "10.00",
            "18.67",
        ),
    ]
    for versions in ((OLD,), (OLD, NEW)):  # 1-14 June, without and with the new version
        bill = cost(
            june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 14), tariff(*versions)
        )
        assert items(bill) == expected
        assert bill.total == D("134.17")  # 101.03 + 14.47 + 18.67
    # and the old version alone over the whole month: 720.75 kWh × 0.30 = 216.225 → 216.23,
    # the month's standing 31.00, demand 4 kW × 10.00 = 40.00
    alone = cost(june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 30), tariff(OLD))
    assert [a for _, _, _, _, a in items(alone)] == ["216.23", "31.00", "40.00"]
    assert alone.total == D("287.23")


def test_energy_before_the_first_version_is_unpriced_not_priced_silently() -> None:
    june = hours(BERLIN, date(2026, 6, 1), date(2026, 6, 30))
    late = tariff(TariffVersion(JUNE_15, default_rate=D("0.36")))
    bill = cost(june, {"m": 1.0}, BERLIN, date(2026, 6, 1), date(2026, 6, 30), late)
    # 1-14 June: 336 kWh unpriced; 15-30 June: 384 kWh × 0.36 = 138.24
    assert items(bill) == [("Energy, default", JUNE_15, "384.000", "0.36", "138.24")]
    assert bill.unpriced_kwh == D("336.000")
    assert bill.total == D("138.24")


# --- daylight saving: local clock, calendar days -----------------------------------------------


def test_november_in_new_york_prices_25_hours_on_the_day_clocks_go_back() -> None:
    # 1 Nov 2026 (a Sunday) runs 04:00Z to 05:00Z next day: 25 h; November: 30 × 24 + 1 = 721 h
    # Weekends: Sundays 1, 8, 15, 22, 29, Saturdays 7, 14, 21, 28: 21 weekdays
    tou = Tariff(
        "ny",
        "USD",
        (
            TariffVersion(
                JAN_1,
                periods=(
                    period("peak", "0.20", "weekdays", 8, 20),
                    period("night", "0.05", "all", 1, 2),
                ),
                default_rate=D("0.10"),
                standing_per_day=D("1.00"),
            ),
        ),
    )
    november = hours(NEW_YORK, date(2026, 11, 1), date(2026, 11, 30))
    assert len(november) == 721
    # 01:00 is lived twice on 1 November: at 05:00Z (EDT) and at 06:00Z (EST)
    repeated = [h for h in november if datetime.fromtimestamp(h.hour_ms / 1000, NEW_YORK).hour == 1]
    assert [h.hour_ms for h in repeated[:2]] == [
        ms(datetime(2026, 11, 1, 5, tzinfo=UTC)),
        ms(datetime(2026, 11, 1, 6, tzinfo=UTC)),
    ]
    bill = cost(november, {"m": 1.0}, NEW_YORK, date(2026, 11, 1), date(2026, 11, 30), tou)
    assert items(bill) == [
        # 21 weekdays × 12 h (08:00-20:00 local, whether EDT or EST) = 252 kWh × 0.20 = 50.40
        ("Energy, peak", JAN_1, "252.000", "0.20", "50.40"),
        # 01:00-02:00 on 30 days, twice on 1 November: 31 kWh × 0.05 = 1.55
        ("Energy, night", JAN_1, "31.000", "0.05", "1.55"),
        # the rest: 721 − 252 − 31 = 438 kWh × 0.10 = 43.80
        ("Energy, default", JAN_1, "438.000", "0.10", "43.80"),
        # standing by calendar days, not 721 / 24: 30 × 1.00
        ("Standing charge per day", JAN_1, "30", "1.00", "30.00"),
    ]
    assert bill.total == D("125.75")  # 50.40 + 1.55 + 43.80 + 30.00
    assert bill.currency == "USD"
    assert bill.energy_wh == 721_000
    assert bill.coverage == 1.0


def test_march_in_berlin_prices_23_hours_on_the_day_clocks_go_forward() -> None:
    # 29 Mar 2026 (a Sunday) skips 02:00-03:00: March has 31 × 24 − 1 = 743 hours
    # Weekends: Sundays 1, 8, 15, 22, 29, Saturdays 7, 14, 21, 28: 22 weekdays
    tou = tariff(
        TariffVersion(
            JAN_1,
            periods=(
                period("peak", "0.40", "weekdays", 8, 20),
                period("night", "0.05", "all", 2, 3),
            ),
            default_rate=D("0.25"),
            standing_per_day=D("0.50"),
        )
    )
    march = hours(BERLIN, date(2026, 3, 1), date(2026, 3, 31))
    assert len(march) == 743
    on_the_29th = [
        local.hour
        for local in (datetime.fromtimestamp(h.hour_ms / 1000, BERLIN) for h in march)
        if local.day == 29
    ]
    assert on_the_29th == [0, 1, *range(3, 24)]
    bill = cost(march, {"m": 1.0}, BERLIN, date(2026, 3, 1), date(2026, 3, 31), tou)
    assert items(bill) == [
        # 22 weekdays × 12 h = 264 kWh × 0.40 = 105.60 (08:00 local is 07:00Z, from the
        # 30th 06:00Z)
        ("Energy, peak", JAN_1, "264.000", "0.40", "105.60"),
        # 02:00-03:00 exists on 30 days only: 30 kWh × 0.05 = 1.50
        ("Energy, night", JAN_1, "30.000", "0.05", "1.50"),
        # 743 − 264 − 30 = 449 kWh × 0.25 = 112.25
        ("Energy, default", JAN_1, "449.000", "0.25", "112.25"),
        # 31 calendar days × 0.50 = 15.50
        ("Standing charge per day", JAN_1, "31", "0.50", "15.50"),
    ]
    assert bill.total == D("234.85")  # 105.60 + 1.50 + 112.25 + 15.50
    assert bill.coverage == 1.0


# --- demand: 15 and 30 minutes, a 13-month ratchet ---------------------------------------------

# Asia/Kolkata (+05:30): local hours start at :30 UTC; a local half hour is q0+q1 or q2+q3.
# Every quarter 100 Wh (0.4 kW) but one spike hour a month, at 11:00 local on the 10th,
# whose first two quarters hold 250 Wh × the month's peak in kW (q0 + q1 over 30 min:
# 2 × 250 × kW Wh × 2 / 1000 = kW)
HISTORY_KW = {
    (2025, 1): 40,
    **{(2025, m): 10 for m in range(2, 7)},
    (2025, 7): 24,
    **{(2025, m): 10 for m in range(8, 12)},
    (2025, 12): 12,
}
BASE: Quarters = (100, 100, 100, 100)
JAN_5 = (2026, 1, 5, 10)  # (100, 1500, 1500, 100): 15 min 6 kW at 10:15; 30 min 3.2 kW
JAN_20 = (2026, 1, 20, 14)  # (1000, 1000, 100, 100): 30 min 4 kW at 14:00


def ratchet_quarters(local: datetime) -> Quarters:
    key = (local.year, local.month, local.day, local.hour)
    if key == JAN_5:
        return (100, 1500, 1500, 100)
    if key == JAN_20:
        return (1000, 1000, 100, 100)
    kw = HISTORY_KW.get((local.year, local.month))
    if kw is not None and (local.day, local.hour) == (10, 11):
        return (250 * kw, 250 * kw, 100, 100)
    return BASE


@cache
def thirteen_months() -> tuple[ScopeHour, ...]:
    # 1 Jan 2025 to 31 Jan 2026: 396 days × 24 h
    return tuple(hours(KOLKATA, date(2025, 1, 1), date(2026, 1, 31), ratchet_quarters))


SINCE_2024 = date(2024, 1, 1)


def demand_tariff(interval: int, share: str, minimum: str = "0") -> Tariff:
    """8.00 INR/kWh; 300 INR per kW of the month's billed demand, an 11-month ratchet."""
    charge = DemandCharge(interval, D("300"), Ratchet(D(share), 11, D(minimum)))
    return Tariff("d", "INR", (TariffVersion(SINCE_2024, default_rate=D("8.00"), demand=charge),))


def bill_month(year: int, month: int, of: Tariff) -> Cost:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return cost(thirteen_months(), {"m": 1.0}, KOLKATA, date(year, month, 1), last, of)


def history_peak(year: int, month: int) -> Peak:
    """A history month's peak: its spike hour's first quarter / half hour, 05:30Z on the 10th."""
    return Peak((year, month), D(HISTORY_KW[(year, month)]), at(KOLKATA, year, month, 10, 11))


def test_the_monthly_peaks_of_thirteen_months() -> None:
    data = thirteen_months()
    assert len(data) == 396 * 24
    half_hours = peaks_of_hours(data, 30, {"m": 1.0}, KOLKATA)
    quarters = peaks_of_hours(data, 15, {"m": 1.0}, KOLKATA)
    history = {m: history_peak(*m) for m in HISTORY_KW}
    # January 2026: q0+q1 of 14:00 on the 20th, (1000 + 1000) Wh / 0.5 h = 4 kW (08:30Z);
    # the 5th's 1500 + 1500 Wh straddle 10:15-10:45, which is no local half hour
    assert half_hours == history | {(2026, 1): Peak((2026, 1), D("4.000"), at(KOLKATA, *JAN_20))}
    # 15 minutes: 1500 Wh / 0.25 h = 6 kW at 10:15 local on the 5th (04:45Z)
    assert quarters == history | {(2026, 1): Peak((2026, 1), D("6.000"), at(KOLKATA, *JAN_5, 15))}
    assert at(KOLKATA, *JAN_5, 15) == ms(datetime(2026, 1, 5, 4, 45, tzinfo=UTC))
    # the series the peaks are the highest of, built interval by interval
    assert monthly_peaks(series(data, 30, {"m": 1.0}), KOLKATA) == half_hours


# Energy of December 2025: 744 h × 400 Wh + the spike's 6200 − 400 = 303.4 kWh × 8.00 = 2427.20
# Energy of January 2026: 744 h × 400 Wh + 2800 + 1800 (spikes) = 302.2 kWh × 8.00 = 2417.60


def test_the_ratchet_floor_beats_the_months_own_peak() -> None:
    bill = bill_month(2025, 12, demand_tariff(30, "0.75"))
    (demand,) = bill.demand
    # December's own peak: (3000 + 3000) Wh / 0.5 h = 12 kW; the previous 11 months are
    # Jan-Nov 2025, their highest 40 kW (January): floor 0.75 × 40 = 30 kW
    assert (demand.peak.kw if demand.peak else None, demand.ratchet_floor_kw) == (D("12"), D("30"))
    assert demand.billed_kw == D("30.000")
    assert items(bill) == [
        ("Energy, default", SINCE_2024, "303.400", "8.00", "2427.20"),
        # 30 kW × 300 = 9000.00
        ("Demand charge, 30-minute peak (2025-12)", SINCE_2024, "30.000", "300", "9000.00"),
    ]
    assert bill.total == D("11427.20")


def test_a_peak_twelve_months_back_has_left_the_ratchet_window() -> None:
    bill = bill_month(2026, 1, demand_tariff(30, "0.75"))
    (demand,) = bill.demand
    # the previous 11 months are Feb-Dec 2025: January 2025's 40 kW is out; the highest is
    # July's 24 kW: floor 0.75 × 24 = 18 kW, above January's own 4 kW
    assert demand.month == (2026, 1)
    assert demand.interval_min == 30
    assert demand.peak == Peak((2026, 1), D("4.000"), at(KOLKATA, *JAN_20))
    assert (demand.ratchet_floor_kw, demand.minimum_kw, demand.billed_kw) == (
        D("18.000"),
        D("0.000"),
        D("18.000"),
    )
    assert items(bill) == [
        ("Energy, default", SINCE_2024, "302.200", "8.00", "2417.60"),
        # 18 kW × 300 = 5400.00
        ("Demand charge, 30-minute peak (2026-01)", SINCE_2024, "18.000", "300", "5400.00"),
    ]
    assert bill.total == D("7817.60")


def test_15_minute_demand_is_a_quarter_and_30_minute_demand_a_local_half_hour() -> None:
    # a share of 0.2: floor 0.2 × July's 24 kW = 4.8 kW
    fifteen = bill_month(2026, 1, demand_tariff(15, "0.2"))
    thirty = bill_month(2026, 1, demand_tariff(30, "0.2"))
    # 15 min: January's own 6 kW beats the floor: 6 × 300 = 1800.00; total 2417.60 + 1800.00
    assert [(d.ratchet_floor_kw, d.billed_kw) for d in fifteen.demand] == [(D("4.8"), D("6"))]
    assert items(fifteen)[1] == (
        "Demand charge, 15-minute peak (2026-01)",
        SINCE_2024,
        "6.000",
        "300",
        "1800.00",
    )
    assert fifteen.total == D("4217.60")
    # 30 min: January's own 4 kW is below the floor: 4.8 × 300 = 1440.00; total 3857.60
    assert [(d.ratchet_floor_kw, d.billed_kw) for d in thirty.demand] == [(D("4.8"), D("4.8"))]
    assert items(thirty)[1][2:] == ("4.800", "300", "1440.00")
    assert thirty.total == D("3857.60")


def test_the_minimum_beats_both_the_peak_and_the_floor() -> None:
    # January: max(own 4, floor 0.75 × 24 = 18, minimum 25) = 25 kW × 300 = 7500.00
    january = bill_month(2026, 1, demand_tariff(30, "0.75", minimum="25"))
    assert [(d.minimum_kw, d.billed_kw) for d in january.demand] == [(D("25"), D("25"))]
    assert items(january)[1][2:] == ("25.000", "300", "7500.00")
    assert january.total == D("9917.60")  # 2417.60 + 7500.00
    # December: max(own 12, floor 30, minimum 25) = 30 kW: the floor wins
    december = bill_month(2025, 12, demand_tariff(30, "0.75", minimum="25"))
    assert [d.billed_kw for d in december.demand] == [D("30")]


def test_earlier_peaks_given_as_a_store_computes_them_bill_the_same() -> None:
    # January 2026's own hours only, and the 11 months before as their peaks
    january = [h for h in thirteen_months() if h.hour_ms >= at(KOLKATA, 2026, 1, 1)]
    earlier = {30: {m: history_peak(*m) for m in HISTORY_KW if m != (2025, 1)}}
    of = demand_tariff(30, "0.75")
    bill = cost(january, {"m": 1.0}, KOLKATA, date(2026, 1, 1), date(2026, 1, 31), of, earlier)
    assert items(bill) == items(bill_month(2026, 1, of))
    assert bill.total == D("7817.60")


# --- a virtual remainder meter ------------------------------------------------------------------

ADMIN = Campus(
    buildings=(Building("Admin"),),
    meters=(
        MeterPlace("admin-main", "Admin", role="main"),
        MeterPlace("admin-f1", "Admin", parent="admin-main"),
        MeterPlace("admin-f2", "Admin", parent="admin-main"),
    ),
    virtual_meters=(
        VirtualMeter(
            "admin-rest", "Admin", (("admin-main", 1), ("admin-f1", -1), ("admin-f2", -1))
        ),
        VirtualMeter("admin-not-f2", "Admin", (("admin-rest", 1), ("admin-f1", 1))),
    ),
)


def summed(
    windows: Mapping[str, Sequence[float]], terms: Mapping[str, float], hour_ms: int
) -> ScopeHour:
    """A scope's hour from its members' twelve 5-minute windows: each quarter the signed sum
    of three windows of each member found."""
    found = [m for m in terms if m in windows]
    q0, q1, q2, q3 = (
        sum(terms[m] * sum(windows[m][3 * q : 3 * q + 3]) for m in found) for q in range(4)
    )
    return ScopeHour(hour_ms, (q0, q1, q2, q3), 3600.0, len(found))


def test_a_virtual_remainder_is_main_minus_subs_and_a_silent_member_makes_no_peak() -> None:
    terms = ADMIN.terms("admin-rest")
    assert terms == {"admin-main": 1.0, "admin-f1": -1.0, "admin-f2": -1.0}
    # nested: (main − f1 − f2) + f1 = main − f2, the f1 terms cancel and are dropped
    assert ADMIN.terms("admin-not-f2") == {"admin-main": 1.0, "admin-f2": -1.0}
    # every 5 minutes: main 300 Wh, f1 100, f2 50; a quarter: 900 − 300 − 150 = 450 Wh
    windows = {"admin-main": [300.0] * 12, "admin-f1": [100.0] * 12, "admin-f2": [50.0] * 12}
    silent_f2 = {m: w for m, w in windows.items() if m != "admin-f2"}
    day = [
        summed(silent_f2 if hour == 12 else windows, terms, at(BERLIN, 2026, 6, 10, hour))
        for hour in range(24)
    ]
    # at noon f2 sends nothing: 900 − 300 = 600 Wh a quarter (2.4 kW), two members of three
    assert (day[12].quarters_wh, day[12].members) == ((600, 600, 600, 600), 2)
    flat = tariff(TariffVersion(JAN_1, default_rate=D("0.20"), demand=DemandCharge(15, D("10.00"))))
    bill = cost(day, terms, BERLIN, date(2026, 6, 10), date(2026, 6, 10), flat)
    assert items(bill) == [
        # 23 h × 1800 Wh + 2400 Wh = 43.8 kWh × 0.20 = 8.76
        ("Energy, default", JAN_1, "43.800", "0.20", "8.76"),
        # 450 Wh / 0.25 h = 1.8 kW (noon's 2.4 kW does not count): 1.8 × 10.00 × 1/30 = 0.60
        ("Demand charge, 15-minute peak (2026-06, 1 of 30 days)", JAN_1, "1.800", "10.00", "0.60"),
    ]
    assert bill.total == D("9.36")
    # coverage: 23 of 24 hours (the hour f2 is silent covers nothing)
    assert bill.coverage == 23 / 24
    # the earliest of equal peaks: 00:00 local, 22:00Z the day before
    assert bill.demand[0].peak == Peak((2026, 6), D("1.800"), at(BERLIN, 2026, 6, 10))
    # a plain sum of meters only understates when one is silent, so its hours count: f1 + f2
    # with f2 silent at noon and f1 at 800 Wh a quarter there: 3.2 kW is the peak
    plain = {"admin-f1": 1.0, "admin-f2": 1.0}
    loud = {"admin-f1": [800 / 3] * 12}
    sums = [
        summed(loud if hour == 12 else windows, plain, at(BERLIN, 2026, 6, 10, hour))
        for hour in range(24)
    ]
    assert peaks_of_hours(sums, 15, plain, BERLIN) == {
        (2026, 6): Peak((2026, 6), D("3.200"), at(BERLIN, 2026, 6, 10, 12))
    }


# --- buildings: main meters, sub-meters, top-level meters ---------------------------------------

CAMPUS = Campus(
    buildings=(Building("Admin"), Building("Library")),
    meters=(
        MeterPlace("admin-main", "Admin", role="main"),
        MeterPlace("admin-f1", "Admin", parent="admin-main"),
        MeterPlace("admin-f1-lab", "Admin", parent="admin-f1"),
        MeterPlace("lib-a", "Library"),
        MeterPlace("lib-a-hvac", "Library", parent="lib-a"),
        MeterPlace("lib-b", "Library"),
        MeterPlace("pump", ""),
        MeterPlace("pump-motor", "", parent="pump"),
    ),
)


def test_a_building_total_is_its_main_meter_else_its_top_level_meters() -> None:
    admin = CAMPUS.building_total("Admin")
    assert (admin.terms, admin.basis, admin.main) == (
        {"admin-main": 1.0},
        "main meter admin-main",
        "admin-main",
    )
    library = CAMPUS.building_total("Library")
    assert (library.terms, library.basis, library.main) == (
        {"lib-a": 1.0, "lib-b": 1.0},
        "sum of 2 top-level meter(s)",
        None,
    )
    # the campus: Admin's main, Library's two top-level meters, the pump in no building;
    # no sub-meter (admin-f1, admin-f1-lab, lib-a-hvac, pump-motor)
    assert CAMPUS.campus_total().terms == {
        "admin-main": 1.0,
        "lib-a": 1.0,
        "lib-b": 1.0,
        "pump": 1.0,
    }


# --- emissions ----------------------------------------------------------------------------------


def test_a_partial_hourly_file_falls_back_to_the_dated_annual_factor() -> None:
    def utc_hour(year: int, month: int, day: int, hour: int) -> int:
        return ms(datetime(year, month, day, hour, tzinfo=UTC))

    factors = EmissionFactors(
        annual=((date(2025, 1, 1), D("0.700")), (date(2026, 1, 1), D("0.710"))),
        hourly={
            utc_hour(2026, 1, 15, 4): D("600"),
            utc_hour(2025, 12, 31, 18): D("400"),
            utc_hour(2026, 1, 15, 18): D("999"),  # 00:00-00:30 local on the 16th: outside
        },
    )
    data = [
        # 10:00 local on 15 Jan 2026 = 04:30Z: q0, q1 in 04:00Z (600 g), q2, q3 in 05:00Z (none)
        ScopeHour(at(KOLKATA, 2026, 1, 15, 10), (1000, 1000, 500, 500), 3600.0, 1),
        # 23:00 local on 31 Dec 2025 = 17:30Z: q0, q1 in 17:00Z (none), q2, q3 in 18:00Z (400 g)
        ScopeHour(at(KOLKATA, 2025, 12, 31, 23), (500, 500, 500, 500), 3600.0, 1),
        # 1 June 2024: before every annual factor, in no hourly one
        ScopeHour(at(KOLKATA, 2024, 6, 1, 12), (250, 250, 250, 250), 3600.0, 1),
        # 00:00 local on 16 Jan 2026: after the range's last local day
        ScopeHour(at(KOLKATA, 2026, 1, 16, 0), (9999, 9999, 9999, 9999), 3600.0, 1),
    ]
    found = footprint(data, KOLKATA, date(2024, 6, 1), date(2026, 1, 15), factors)
    # hourly: 2 kWh × 600 g + 1 kWh × 400 g = 1.600 kg (3 kWh)
    # annual: 1 kWh × 0.710 (a 2026 day) + 1 kWh × 0.700 (a 2025 day) = 1.410 kg (2 kWh)
    assert found.kg == D("3.010")
    assert (found.kwh_hourly, found.kwh_annual, found.kwh_unknown) == (
        D("3.000"),
        D("2.000"),
        D("1.000"),
    )
    assert found.fallback_share == 0.4  # 2 / (3 + 2)


# --- properties ---------------------------------------------------------------------------------

ZONES = (ZoneInfo("UTC"), BERLIN, NEW_YORK, KOLKATA)
MONTHS = ((2026, 3), (2026, 6), (2026, 11))
prices = st.decimals(min_value=0, max_value=2, places=4)


@st.composite
def versions(draw: st.DrawFn, month: tuple[int, int]) -> tuple[TariffVersion, ...]:
    def one(valid_from: date) -> TariffVersion:
        start = draw(st.integers(0, 94))
        end = draw(st.integers(start + 1, 96))
        periods = (
            Period("peak", draw(prices), frozenset(DAY_SETS["weekdays"]), start * 15, end * 15),
        )
        demand = None
        if draw(st.booleans()):
            ratchet = Ratchet(draw(st.decimals(0, 1, places=2)), 11, draw(prices))
            demand = DemandCharge(draw(st.sampled_from((15, 30, 60))), draw(prices) * 100, ratchet)
        return TariffVersion(
            valid_from,
            periods if draw(st.booleans()) else (),
            draw(prices),
            draw(prices),
            draw(prices) * 100,
            demand,
        )

    found = [one(date(2025, 1, 1))]
    if draw(st.booleans()):
        found.append(one(date(*month, draw(st.integers(2, 28)))))
    return tuple(found)


@st.composite
def months_of_energy(
    draw: st.DrawFn,
) -> tuple[ZoneInfo, tuple[int, int], list[ScopeHour]]:
    """A zone, a month, and its hours: a daily profile of 96 quarters (Wh, some negative, as
    a remainder's may be) scaled by a whole factor per day."""
    zone = draw(st.sampled_from(ZONES))
    month = draw(st.sampled_from(MONTHS))
    profile = draw(st.lists(st.integers(-200, 3000), min_size=96, max_size=96))
    scale = draw(st.lists(st.integers(0, 3), min_size=31, max_size=31))

    def quarters(local: datetime) -> Quarters:
        step, factor = local.hour * 4, scale[local.day - 1]
        q0, q1, q2, q3 = (float(q * factor) for q in profile[step : step + 4])
        return (q0, q1, q2, q3)

    last = date(*month, calendar.monthrange(*month)[1])
    return zone, month, hours(zone, date(*month, 1), last, quarters)


@settings(max_examples=100, deadline=None)
@given(months_of_energy(), st.data())
def test_the_line_amounts_add_up_to_the_total(
    energy: tuple[ZoneInfo, tuple[int, int], list[ScopeHour]], data: st.DataObject
) -> None:
    zone, month, month_hours = energy
    decimals = data.draw(st.integers(0, 3))
    of = Tariff("t", "EUR", data.draw(versions(month)), decimals=decimals)
    first = data.draw(st.integers(1, 20))
    last = data.draw(st.integers(first, calendar.monthrange(*month)[1]))
    bill = cost(month_hours, {"m": 1.0}, zone, date(*month, first), date(*month, last), of)
    assert bill.total == sum(line.amount for line in bill.lines)
    unit = Decimal(1).scaleb(-decimals)
    for line in bill.lines:
        # each line rounded once, from its rounded quantity
        part = Decimal(line.days) / line.month_days if line.days and line.month_days else 1
        assert line.amount == (line.quantity * line.rate * part).quantize(unit, ROUND_HALF_UP)


@settings(max_examples=100, deadline=None)
@given(months_of_energy(), st.data())
def test_splitting_a_month_keeps_each_periods_energy(
    energy: tuple[ZoneInfo, tuple[int, int], list[ScopeHour]], data: st.DataObject
) -> None:
    zone, month, month_hours = energy
    of = Tariff("t", "EUR", data.draw(versions(month)))
    days = calendar.monthrange(*month)[1]
    split = data.draw(st.integers(2, days))

    def kwh_by_period(first: int, last: int) -> dict[tuple[date, str | None], Decimal]:
        bill = cost(month_hours, {"m": 1.0}, zone, date(*month, first), date(*month, last), of)
        found: dict[tuple[date, str | None], Decimal] = {}
        for line in bill.lines:
            if line.kind == "energy":
                key = (line.valid_from, line.period)
                found[key] = found.get(key, Decimal(0)) + line.quantity
        return found

    whole = kwh_by_period(1, days)
    halves = [kwh_by_period(1, split - 1), kwh_by_period(split, days)]
    # whole watt-hours: every kWh quantity is exact at 0.001, so the parts add up exactly
    joined: dict[tuple[date, str | None], Decimal] = {}
    for half in halves:
        for key, quantity in half.items():
            joined[key] = joined.get(key, Decimal(0)) + quantity
    assert {k: q for k, q in joined.items() if q} == {k: q for k, q in whole.items() if q}


@st.composite
def campuses(draw: st.DrawFn) -> Campus:
    """Buildings (some declared), meters in them or in none; each meter's parent an earlier
    meter of its building, or none; at most one top-level main meter per building."""
    names = [f"b{i}" for i in range(draw(st.integers(0, 4)))]
    declared = names[: draw(st.integers(0, len(names)))]
    meters: list[MeterPlace] = []
    mains: set[str] = set()
    for i in range(draw(st.integers(0, 12))):
        building = draw(st.sampled_from(["", *names]))
        same = [m.id for m in meters if m.building == building]
        parent = draw(st.sampled_from([None, *same]))
        main = bool(building) and parent is None and building not in mains and draw(st.booleans())
        if main:
            mains.add(building)
        meters.append(MeterPlace(f"m{i}", building, "main" if main else None, parent))
    return Campus(tuple(Building(n) for n in declared), tuple(meters))


@settings(max_examples=300, deadline=None)
@given(campuses())
def test_the_campus_total_holds_every_building_once_and_no_sub_meter(campus: Campus) -> None:
    parts = [campus.building_total(n).terms for n in campus.building_names()]
    parts.append(campus.unassigned_total().terms)
    union = [meter for part in parts for meter in part]
    assert len(union) == len(set(union))  # no meter in two totals
    assert campus.campus_total().terms == dict.fromkeys(union, 1.0)
    # from first principles: a building's main meter if it has one, else its meters with
    # no parent; and the meters with no parent in no building
    expected = set()
    for building in {m.building for m in campus.meters}:
        ours = [m for m in campus.meters if m.building == building]
        main = [m.id for m in ours if m.role == "main"]
        expected |= set(main) if main else {m.id for m in ours if m.parent is None}
    assert set(union) == expected
    assert not any(m.parent for m in campus.meters if m.id in union)


def test_a_remainders_hour_with_a_member_short_of_coverage_counts_for_no_peak() -> None:
    """main − sub: in the 10:00 hour the sub-meter reported but covered only 50 minutes (a
    gap it did not integrate), so main − sub is too high there: 2.0 kWh in a quarter would
    read as 8 kW. The hour at 11:00, fully covered, holds the peak: 0.5 kWh in a quarter,
    2 kW. A plain sum with the same short hour still counts it (it can only understate)."""
    zone = ZoneInfo("UTC")
    ten = round(datetime(2026, 11, 3, 10, tzinfo=UTC).timestamp() * 1000)
    hours = [
        ScopeHour(ten, (2000.0, 100.0, 100.0, 100.0), 3000.0, 2),
        ScopeHour(ten + 3_600_000, (500.0, 100.0, 100.0, 100.0), 3600.0, 2),
    ]
    remainder = {"main": 1.0, "sub": -1.0}
    (found,) = peaks_of_hours(hours, 15, remainder, zone).values()
    assert (found.kw, found.start_ms) == (Decimal("2.000"), ten + 3_600_000)
    assert [p.counts for p in series(hours, 60, remainder)] == [False, True]
    (summed,) = peaks_of_hours(hours, 15, {"a": 1.0, "b": 1.0}, zone).values()
    assert (summed.kw, summed.start_ms) == (Decimal("8.000"), ten)
