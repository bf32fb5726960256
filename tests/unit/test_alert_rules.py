"""core.alert_rules: the subjects and terms of a scope, and golden cases of each kind of rule
in Europe/Berlin (figures worked by hand in the comments), across the autumn clock change."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from campus_energy.core.alert_rules import EVALUATORS, RuleContext, evaluate, subjects, terms_of
from campus_energy.core.alerts import (
    CAMPUS,
    KINDS,
    DemandNow,
    DriftSeen,
    Finding,
    HourEnergy,
    MeterSeen,
    Observations,
    Rule,
    Scope,
)
from campus_energy.core.campus import Building, Campus, MeterPlace, Occupancy, VirtualMeter
from campus_energy.core.timestamps import datetime_ms

BERLIN = ZoneInfo("Europe/Berlin")
ZONE = "Europe/Berlin"
HOUR = 3_600_000
MINUTE = 60_000
WORKDAYS = {d: ((8 * 60, 18 * 60),) for d in ("mon", "tue", "wed", "thu", "fri")}
HOLIDAY = date(2024, 10, 3)  # a Thursday
CAMPUS_MODEL = Campus(
    buildings=(
        Building("Admin", occupancy=Occupancy(WORKDAYS, frozenset({HOLIDAY}))),
        Building("Library"),  # no opening hours
    ),
    meters=(
        MeterPlace("admin-main", "Admin", "main"),
        MeterPlace("admin-f1", "Admin", parent="admin-main"),
        MeterPlace("lib-a", "Library"),
        MeterPlace("lib-b", "Library"),
        MeterPlace("pump", ""),
    ),
    virtual_meters=(VirtualMeter("admin-rest", "Admin", (("admin-main", 1), ("admin-f1", -1))),),
)
CONTEXT = RuleContext(CAMPUS_MODEL, ZONE, 300, 60.0, {m.id: 5.0 for m in CAMPUS_MODEL.meters})


def local(*parts: int, fold: int = 0) -> int:
    return datetime_ms(datetime(*parts, tzinfo=BERLIN, fold=fold))  # type: ignore[misc]


def rule(kind: str, scope: str = "campus", **params: Any) -> Rule:
    return Rule(f"r-{kind}", kind, Scope.parse(scope), params=params)


def one(kind: str, scope: str, seen: Observations, **params: Any) -> Finding | None:
    chosen = rule(kind, scope, **params)
    found = evaluate(chosen, subjects(chosen, CAMPUS_MODEL), seen, CONTEXT)
    assert len(found) <= 1
    return found[0] if found else None


def test_every_kind_has_an_evaluator() -> None:
    assert set(EVALUATORS) == set(KINDS)


# -- subjects and terms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "scope", "expected"),
    [
        ("meter-silent", "campus", ["admin-main", "admin-f1", "lib-a", "lib-b", "pump"]),
        ("coverage-low", "building:Library", ["lib-a", "lib-b"]),
        ("register-drift", "meter:pump", ["pump"]),
        ("after-hours", "campus", [CAMPUS]),
        ("baseline-deviation", "building:Admin", ["Admin"]),
        ("demand-approaching", "meter:admin-rest", ["admin-rest"]),
    ],
)
def test_subjects(kind: str, scope: str, expected: list[str]) -> None:
    assert subjects(rule(kind, scope), CAMPUS_MODEL) == expected


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("campus", {"admin-main": 1.0, "lib-a": 1.0, "lib-b": 1.0, "pump": 1.0}),
        ("building:Admin", {"admin-main": 1.0}),
        ("building:Library", {"lib-a": 1.0, "lib-b": 1.0}),
        ("meter:admin-rest", {"admin-main": 1.0, "admin-f1": -1.0}),
        ("meter:lib-a", {"lib-a": 1.0}),
    ],
)
def test_terms_of_a_scope(scope: str, expected: dict[str, float]) -> None:
    assert terms_of(rule("after-hours", scope), CAMPUS_MODEL) == expected


# -- meter-silent ---------------------------------------------------------------------------

NOW = local(2024, 10, 15, 14, 9)  # Tuesday 14:09 CEST


def silent(meter: MeterSeen | None, **params: Any) -> Finding | None:
    meters = {} if meter is None else {"pump": meter}
    return one("meter-silent", "meter:pump", Observations(NOW, ZONE, meters=meters), **params)


def test_meter_silent_golden() -> None:
    # polled every 5 s: silent after 15 s; 20 s without a reading holds since last + 15 s
    quiet = silent(MeterSeen("pump", 5.0, last_reading_ms=NOW - 20_000))
    assert quiet == Finding("pump", True, 20.0, "no reading for 20 s", NOW - 5_000)
    fresh = silent(MeterSeen("pump", 5.0, last_reading_ms=NOW - 10_000))
    assert fresh is not None and not fresh.holds and fresh.value == 10.0
    # silent_after = 60 s: 20 s is not silent
    assert silent(MeterSeen("pump", 5.0, NOW - 20_000), silent_after=60.0) == Finding(
        "pump", False, 20.0, "last reading 20 s ago"
    )
    # 7 minutes without a reading and the status offline since 14:02
    offline = silent(
        MeterSeen("pump", 5.0, NOW - 7 * MINUTE, status="offline", status_ms=NOW - 7 * MINUTE)
    )
    assert offline is not None and offline.holds and offline.value == 420.0
    assert offline.detail == "no reading for 7 min (status offline since 14:02)"
    assert offline.since_ms == NOW - 7 * MINUTE
    # a fresh reading but the status error: holds
    error = silent(MeterSeen("pump", 5.0, NOW - 1000, status="error", status_ms=NOW - 3000))
    assert error is not None and error.holds and error.since_ms == NOW - 3000


def test_a_meter_never_seen_is_silent() -> None:
    assert silent(None) == Finding("pump", True, None, "no reading seen yet")
    never = silent(MeterSeen("pump", 5.0, status="offline"))
    assert never == Finding("pump", True, None, "no reading seen yet (status offline)")


def test_silence_is_counted_from_the_service_start_at_the_earliest() -> None:
    # started 10 s ago, polled every 5 s: a first reading may yet come (15 s), so no finding
    # (a firing alert stays firing); at 20 s it holds from the start + 15 s; an offline status
    # holds at once; a reading from before the start (the store's, or the book's) counts the
    # same way, and one after the start as usual
    def judge(meter: MeterSeen, started_ago_ms: int) -> list[tuple[bool, int | None, str]]:
        seen = Observations(NOW, ZONE, meters={"pump": meter})
        context = replace(CONTEXT, started_ms=NOW - started_ago_ms)
        found = evaluate(rule("meter-silent", "meter:pump"), ["pump"], seen, context)
        return [(f.holds, f.since_ms, f.detail) for f in found]

    never = MeterSeen("pump", 5.0)
    assert judge(never, 10_000) == []
    assert judge(never, 20_000) == [
        (True, NOW - 5_000, "no reading seen yet since the service started at 14:08")
    ]
    offline = MeterSeen("pump", 5.0, status="offline", status_ms=NOW - 30_000)
    assert judge(offline, 1_000) == [
        (True, NOW - 30_000, "no reading seen yet since the service started at 14:08 "
         "(status offline since 14:08)")
    ]  # fmt: skip
    before = MeterSeen("pump", 5.0, last_reading_ms=NOW - 3_600_000)
    assert judge(before, 10_000) == []
    assert judge(before, 20_000) == [(True, NOW - 5_000, "no reading for 60 min")]
    after = MeterSeen("pump", 5.0, last_reading_ms=NOW - 9_000)
    assert judge(after, 10_000) == [(False, None, "last reading 9 s ago")]


# -- coverage-low ---------------------------------------------------------------------------

NOON = local(2024, 10, 15, 12, 0, 30)  # windows 5 min, grace 60 s: 11:50-11:55 ended last


def coverage(ended: Mapping[int, float], **params: Any) -> Finding | None:
    known = {"lib-a": tuple(sorted(ended.items()))} if ended else {}
    return one("coverage-low", "meter:lib-a", Observations(NOON, ZONE, coverage=known), **params)


def test_coverage_low_golden() -> None:
    at = {m: local(2024, 10, 15, 11, m) for m in range(30, 60, 5)}
    # 11:40 0.5, 11:45 missing (0), 11:50 0.2: the last three ended windows below 0.9; the run
    # of low windows began at 11:40 (11:35 was full); 11:55 has not ended (12:01 > now)
    low = coverage({at[30]: 1.0, at[35]: 1.0, at[40]: 0.5, at[50]: 0.2, at[55]: 0.1})
    assert low == Finding(
        "lib-a", True, 0.2, "windows covered below 90 % since 11:40 (latest 20 %)", at[40]
    )
    # one of the three at 0.95: does not hold
    fine = coverage({at[30]: 1.0, at[40]: 0.5, at[45]: 0.95, at[50]: 0.2})
    assert fine is not None and not fine.holds
    # below = 0.1: 0.5 and 0.2 are not below it (the missing 11:45 is)
    strict = coverage({at[40]: 0.5, at[50]: 0.2}, below=0.1)
    assert strict is not None and not strict.holds
    # windows = 1: only 11:50 counts
    one_low = coverage({at[30]: 1.0, at[45]: 1.0, at[50]: 0.2}, windows=1)
    assert one_low is not None and one_low.holds and one_low.since_ms == at[50]


def test_coverage_low_counts_missing_windows_only_after_the_first() -> None:
    at = {m: local(2024, 10, 15, 11, m) for m in range(30, 60, 5)}
    # first known window 11:45: 11:40 is unknown, not 0 -> no finding yet
    assert coverage({at[45]: 0.2, at[50]: 0.2}) is None
    assert coverage({}) is None


# -- after-hours ----------------------------------------------------------------------------

TUE_NIGHT = local(2024, 10, 15, 22, 10)


def two_weeks(open_kwh: float, closed_kwh: float, end_ms: int) -> tuple[HourEnergy, ...]:
    """Hours of the two weeks before `end_ms`: open hours (08-18 on workdays) and closed."""
    found = []
    for start in range(end_ms - 14 * 24 * HOUR, end_ms - HOUR, HOUR):
        moment = datetime.fromtimestamp(start / 1000, BERLIN)
        is_open = moment.weekday() < 5 and 8 <= moment.hour < 18 and moment.date() != HOLIDAY
        found.append(HourEnergy(start, (open_kwh if is_open else closed_kwh) * 1000, 1.0))
    return tuple(found)


def night(
    now: int, power_kw: float | None, scope: str = "building:Admin", **params: Any
) -> Finding | None:
    subject = Scope.parse(scope).name or CAMPUS
    seen = Observations(
        now,
        ZONE,
        hours={subject: two_weeks(50.0, 10.0, now)},
        power_w={subject: None if power_kw is None else power_kw * 1000},
    )
    return one("after-hours", scope, seen, **params)


def test_after_hours_golden() -> None:
    # open hours 50 kWh each: median mean power 50 kW; 0.5 × 50 kW = 25 kW; 30 kW at 22:10
    found = night(TUE_NIGHT, 30.0, above_share=0.5)
    assert found == Finding(
        "Admin",
        True,
        30.0,
        "30.0 kW at Tue 22:10 while closed, above 0.5 × the open-hours median 50.0 kW",
    )
    assert night(TUE_NIGHT, 20.0, above_share=0.5) == Finding(
        "Admin",
        False,
        20.0,
        "20.0 kW at Tue 22:10 while closed, not above 0.5 × the open-hours median 50.0 kW",
    )
    # an absolute limit alone
    absolute = night(TUE_NIGHT, 30.0, above_kw=25.0)
    assert absolute is not None and absolute.holds
    # both given: both must be exceeded (30 kW > 25 kW but not > 40 kW)
    both = night(TUE_NIGHT, 30.0, above_kw=40.0, above_share=0.5)
    assert both is not None and not both.holds
    assert "above 40 kW and 0.5 × the open-hours median 50.0 kW" in both.detail


def test_after_hours_is_quiet_while_open_and_alarms_on_a_holiday() -> None:
    tuesday_10 = local(2024, 10, 15, 10)
    opened = night(tuesday_10, 80.0, above_kw=25.0)
    assert opened == Finding("Admin", False, 80.0, "80.0 kW, open at 10:00")
    # 3 October is a holiday: closed at 10:00
    holiday = night(local(2024, 10, 3, 10), 30.0, above_kw=25.0)
    assert holiday is not None and holiday.holds
    # Saturday: closed (no opening hours on Saturdays)
    saturday = night(local(2024, 10, 19, 11), 30.0, above_kw=25.0)
    assert saturday is not None and saturday.holds


def test_after_hours_scopes() -> None:
    # a meter takes its building's opening hours, the campus those of the buildings with any
    assert night(TUE_NIGHT, 30.0, "meter:admin-f1", above_kw=25.0) is not None
    assert night(TUE_NIGHT, 30.0, "meter:admin-rest", above_kw=25.0) is not None
    assert night(TUE_NIGHT, 30.0, "campus", above_kw=25.0) is not None
    # no opening hours: no finding; neither for a meter in no building
    assert night(TUE_NIGHT, 30.0, "building:Library", above_kw=25.0) is None
    assert night(TUE_NIGHT, 30.0, "meter:pump", above_kw=25.0) is None
    # missing inputs: no live power, or no open hours to take a median of
    assert night(TUE_NIGHT, None, above_kw=25.0) is None
    seen = Observations(TUE_NIGHT, ZONE, power_w={"Admin": 30_000.0})
    assert one("after-hours", "building:Admin", seen, above_share=0.5) is None


# -- baseline-deviation ---------------------------------------------------------------------


def weeks_of_hours(
    end_ms: int, energy: Callable[[datetime], float], weeks: int = 7
) -> tuple[HourEnergy, ...]:
    """Every hour of the weeks before `end_ms` (exclusive), energy by local time (kWh)."""
    return tuple(
        HourEnergy(t, energy(datetime.fromtimestamp(t / 1000, BERLIN)) * 1000, 1.0)
        for t in range(end_ms - weeks * 7 * 24 * HOUR, end_ms, HOUR)
    )


def deviation(now: int, hours: tuple[HourEnergy, ...], **params: Any) -> Finding | None:
    seen = Observations(now, ZONE, hours={"Admin": hours})
    return one("baseline-deviation", "building:Admin", seen, **params)


def tuesdays_at_10(x_kwh: float) -> Callable[[datetime], float]:
    """Tuesdays 10:00 of six weeks: 50 52 48 51 49 53 kWh (oldest first), then x; else 30."""
    history = {
        date(2024, 10, 15) - timedelta(weeks=n): v
        for n, v in zip(range(6, 0, -1), (50, 52, 48, 51, 49, 53), strict=True)
    }
    history[date(2024, 10, 15)] = x_kwh

    def energy(moment: datetime) -> float:
        if moment.hour == 10 and moment.date() in history:
            return history[moment.date()]
        return 30.0

    return energy


def test_baseline_deviation_golden() -> None:
    # median 50.5, MAD 1.5 (see test_baselines): threshold max(4 × 1.4826 × 1.5, 1) = 8.8956
    now = local(2024, 10, 15, 11, 2)  # the hour 10:00-11:00 has ended (and its grace)
    hours = weeks_of_hours(local(2024, 10, 15, 11), tuesdays_at_10(60.0))
    high = deviation(now, hours)
    assert high == Finding(
        "Admin",
        True,
        60.0,
        "60.0 kWh in Tue 10:00–11:00, 9.5 kWh above the usual 50.5 kWh "
        "(median of 6 Tuesdays; unusual beyond ±8.9 kWh)",
        local(2024, 10, 15, 10),
    )
    usual = deviation(now, weeks_of_hours(local(2024, 10, 15, 11), tuesdays_at_10(59.0)))
    assert usual is not None and not usual.holds and usual.since_ms is None
    # min_kwh = 10: the floor is the threshold
    assert deviation(now, hours, min_kwh=10.0) == Finding(
        "Admin",
        False,
        60.0,
        "60.0 kWh in Tue 10:00–11:00, 9.5 kWh above the usual 50.5 kWh "
        "(median of 6 Tuesdays; unusual beyond ±10.0 kWh)",
    )
    # k = 3: 3 × 2.2239 = 6.67 kWh; 43 kWh is 7.5 below the median: unusual
    low = deviation(now, weeks_of_hours(local(2024, 10, 15, 11), tuesdays_at_10(43.0)), k=3.0)
    assert low is not None and low.holds and "7.5 kWh below the usual" in low.detail


def test_baseline_deviation_waits_for_the_hour_and_needs_four_samples() -> None:
    hours = weeks_of_hours(local(2024, 10, 15, 11), tuesdays_at_10(60.0))
    # at 11:00:30 the hour is inside its grace: the hour before (09:00, 30 kWh like all) counts
    early = deviation(local(2024, 10, 15, 11, 0, 30), hours)
    assert early is not None and not early.holds and "09:00–10:00" in early.detail
    # three weeks of history: three samples, no finding
    assert deviation(local(2024, 10, 15, 11, 2), hours[-(3 * 7 * 24 + 1) :]) is None
    # the hour itself poorly covered: no finding
    last = hours[-1]
    thin = (*hours[:-1], HourEnergy(last.start_ms, last.energy_wh, 0.5))
    assert deviation(local(2024, 10, 15, 11, 2), thin) is None
    assert deviation(local(2024, 10, 15, 11, 2), ()) is None


def office(moment: datetime) -> float:
    """An office: 50 kWh in working hours on workdays (not on the holiday), else 10."""
    working = moment.weekday() < 5 and 8 <= moment.hour < 18 and moment.date() != HOLIDAY
    return 50.0 if working else 10.0


def test_a_configured_holiday_does_not_alarm_but_a_snow_day_does() -> None:
    # 3 Oct (holiday, configured): 10 kWh at 10:00 like the Sundays -> quiet
    holiday = deviation(local(2024, 10, 3, 11, 2), weeks_of_hours(local(2024, 10, 3, 11), office))
    assert holiday is not None and not holiday.holds
    assert "median of 6 holidays and Sundays" in holiday.detail

    # Thu 10 Oct closed for snow (not configured): 10 kWh against Thursdays' 50 -> alarms
    def snowed(moment: datetime) -> float:
        return 10.0 if moment.date() == date(2024, 10, 10) else office(moment)

    snow = deviation(local(2024, 10, 10, 11, 2), weeks_of_hours(local(2024, 10, 10, 11), snowed))
    assert snow is not None and snow.holds and snow.value == 10.0
    # Thu 17 Oct, an ordinary Thursday: the holiday is not among its samples -> quiet
    after = deviation(local(2024, 10, 17, 11, 2), weeks_of_hours(local(2024, 10, 17, 11), office))
    assert after is not None and not after.holds and "median of 5 Thursdays" in after.detail


def test_baseline_deviation_across_the_autumn_change() -> None:
    """Monday 28 Oct 2024, 09:00 CET (08:00 UTC) against the Mondays' 09:00 CEST (07:00 UTC):
    an ordinary Monday stays quiet although the UTC hours moved, in both repeated 02:00s of
    the Sunday before too."""
    end = local(2024, 10, 28, 10)
    monday = deviation(local(2024, 10, 28, 10, 2), weeks_of_hours(end, office))
    assert monday is not None and not monday.holds and monday.value == 50.0
    assert "Mon 09:00–10:00" in monday.detail
    # the 07:00-08:00 hour (opening at 08:00): 10 kWh like the Mondays' 07:00, not 50
    seven = deviation(local(2024, 10, 28, 8, 2), weeks_of_hours(local(2024, 10, 28, 8), office))
    assert seven is not None and not seven.holds and seven.value == 10.0
    for fold in (0, 1):
        after = local(2024, 10, 27, 3) if fold else local(2024, 10, 27, 2, fold=1)
        hours = weeks_of_hours(after, office)
        twice = deviation(after + 2 * MINUTE, hours)
        assert twice is not None and not twice.holds and "Sun 02:00–" in twice.detail


# -- demand-approaching ---------------------------------------------------------------------


def demand(
    now: int, energy_kwh: float, power_kw: float | None, peak_kw: float | None = None,
    complete: bool = True, floor_kw: float | None = None, **params: Any,
) -> Finding | None:  # fmt: skip
    start = local(2024, 10, 15, 14)
    power = None if power_kw is None else power_kw * 1000
    running = DemandNow(start, 15 * MINUTE, energy_kwh * 1000, power, peak_kw, complete, floor_kw)
    seen = Observations(now, ZONE, demand={"Admin": running})
    return one("demand-approaching", "building:Admin", seen, **params)


def test_demand_approaching_golden() -> None:
    # 14:05 into the 15-min interval from 14:00: 50 kWh so far, 600 kW now for 10 min more:
    # (50 + 600 × 1/6) kWh / 0.25 h = 600 kW; 0.9 × 650 kW contracted = 585 kW -> holds
    at = local(2024, 10, 15, 14, 5)
    found = demand(at, 50.0, 600.0, contracted_kw=650.0)
    assert found == Finding(
        "Admin",
        True,
        pytest.approx(600.0),  # type: ignore[arg-type]
        "projected 600.0 kW for the 15-min interval from 14:00 (92 % of the contracted 650.0 kW)",
    )
    # against the month's peak so far (700 kW): 0.9 × 700 = 630 kW -> does not hold
    peak = demand(at, 50.0, 600.0, peak_kw=700.0)
    assert peak is not None and not peak.holds and "of the month's peak so far" in peak.detail
    # contracted_kw wins over the peak
    both = demand(at, 50.0, 600.0, peak_kw=700.0, contracted_kw=650.0)
    assert both is not None and both.holds
    # neither: no finding; no live power: no finding
    assert demand(at, 50.0, 600.0) is None
    assert demand(at, 50.0, None, contracted_kw=650.0) is None
    # a member missing: no all-clear on a projection too low, but a crossing still holds
    assert demand(at, 10.0, 100.0, complete=False, contracted_kw=650.0) is None
    late = demand(at, 50.0, 600.0, complete=False, contracted_kw=650.0)
    assert late is not None and late.holds


def test_demand_against_the_billed_demand_not_a_small_peak_early_in_the_month() -> None:
    # the 2nd of the month: the peak so far 40 kW, but the ratchet bills at least 300 kW;
    # a projection of 200 kW raises no bill (0.9 × 300 = 270) and does not hold, 280 kW does
    at = local(2024, 10, 15, 14, 5)
    quiet = demand(at, 200 / 12, 200.0, peak_kw=40.0, floor_kw=300.0)
    assert quiet is not None and not quiet.holds
    assert "(67 % of the billed demand's ratchet floor 300.0 kW)" in quiet.detail
    above = demand(at, 280 / 12, 280.0, peak_kw=40.0, floor_kw=300.0)
    assert above is not None and above.holds
    # once the month's own peak is above the floor, it is the reference
    later = demand(at, 280 / 12, 280.0, peak_kw=350.0, floor_kw=300.0)
    assert later is not None and not later.holds and "month's peak so far 350.0" in later.detail


def test_demand_fires_at_the_first_poll_after_the_crossing() -> None:
    # 500 kW steady (projection 500 kW < 0.9 × 600 = 540), then 800 kW from 14:07:00;
    # at the 14:07:05 poll: 58.33 kWh + 0.68 kWh so far, 800 kW × 7 min 55 s left:
    # (59.0 + 105.6) / 0.25 = 658 kW -> holds at once
    before = local(2024, 10, 15, 14, 7)
    quiet = demand(before, 500 * 7 / 60, 500.0, contracted_kw=600.0)
    assert quiet is not None and not quiet.holds and quiet.value == pytest.approx(500.0)
    energy = 500 * 7 / 60 + 800 * 5 / 3600
    crossed = demand(before + 5000, energy, 800.0, contracted_kw=600.0)
    assert crossed is not None and crossed.holds
    assert crossed.value == pytest.approx((energy + 800 * 475 / 3600) / 0.25)


# -- register-drift -------------------------------------------------------------------------


def drift(hours: float, integrated_kwh: float, register_kwh: float, **params: Any) -> Any:
    end = local(2024, 10, 15, 6)
    span = DriftSeen(end - round(hours * HOUR), end, integrated_kwh * 1000, register_kwh * 1000)
    seen = Observations(end + MINUTE, ZONE, drift={"pump": span})
    return one("register-drift", "meter:pump", seen, **params)


def test_register_drift_golden() -> None:
    # |102 − 100| / 102 × 100 = 1.96 % <= 2 %; |103 − 100| / 103 × 100 = 2.91 % > 2 %
    calm = drift(24, 102.0, 100.0)
    assert calm is not None and not calm.holds and calm.value == pytest.approx(200 / 102)
    found = drift(24, 103.0, 100.0)
    assert found == Finding(
        "pump",
        True,
        pytest.approx(300 / 103),  # type: ignore[arg-type]
        "integrated 103.0 kWh against the register's 100.0 kWh over 24 h to 06:00 (2.9 % apart)",
    )
    assert drift(24, 103.0, 100.0, percent=5.0).holds is False
    # a span shorter than 23 h, or both below 100 Wh: no finding
    assert drift(22, 103.0, 100.0) is None
    assert drift(24, 0.05, 0.09) is None
    assert drift(23, 0.0, 0.2).holds  # a register that counts while nothing was integrated


def test_missing_inputs_give_no_findings() -> None:
    empty = Observations(NOW, ZONE)
    for kind in ("coverage-low", "register-drift"):
        chosen = rule(kind)
        assert evaluate(chosen, subjects(chosen, CAMPUS_MODEL), empty, CONTEXT) == []
    for kind, params in (
        ("after-hours", {"above_kw": 1.0}),
        ("baseline-deviation", {}),
        ("demand-approaching", {"contracted_kw": 1.0}),
    ):
        assert evaluate(rule(kind, **params), [CAMPUS], empty, CONTEXT) == []
    # but a meter never seen is silent
    chosen = rule("meter-silent", "building:Library")
    assert [f.subject for f in evaluate(chosen, ["lib-a", "lib-b"], empty, CONTEXT)] == [
        "lib-a",
        "lib-b",
    ]


def test_a_window_the_store_has_not_settled_is_not_counted_missing() -> None:
    """With the store reader's margin (settle_s), the newest window counts as ended only once
    it can be in the store: at 11:56:30 (grace 60 s) 11:50-11:55 has ended, but with 60 s
    more the latest is 11:45."""
    known = {"lib-a": ((local(2024, 10, 15, 11, 40), 1.0), (local(2024, 10, 15, 11, 45), 1.0))}
    seen = Observations(local(2024, 10, 15, 11, 56, 30), ZONE, coverage=known)
    chosen = rule("coverage-low", "meter:lib-a", windows=1)
    assert evaluate(chosen, ["lib-a"], seen, CONTEXT)[0].holds  # 11:50 missing: coverage 0
    settled = RuleContext(CAMPUS_MODEL, ZONE, 300, 60.0, settle_s=60.0)
    assert not evaluate(chosen, ["lib-a"], seen, settled)[0].holds


def test_a_meter_never_seen_is_silent_only_three_polls_after_the_service_started() -> None:
    started = local(2024, 10, 15, 14, 0)
    context = RuleContext(CAMPUS_MODEL, ZONE, 300, 60.0, {"pump": 5.0}, started_ms=started)
    chosen = rule("meter-silent", "meter:pump")
    early = evaluate(chosen, ["pump"], Observations(started + 10_000, ZONE), context)
    assert early == []  # no finding yet: a firing alert stays firing, a quiet one quiet
    late = evaluate(chosen, ["pump"], Observations(NOW, ZONE), context)[0]
    assert late.holds and late.since_ms == started + 15_000
    assert late.detail == "no reading seen yet since the service started at 14:00"
    offline = Observations(
        started + 1000, ZONE, meters={"pump": MeterSeen("pump", 5.0, status="offline")}
    )
    assert evaluate(chosen, ["pump"], offline, context)[0].holds
