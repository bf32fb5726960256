"""A simulated building with rooftop PV: its sun, its clouds, and exact energy in both directions.

The truth is checked against an independent computation in exact rational
arithmetic (`fractions.Fraction`) over the float32 knots, against core's
direction split, and by the meter's registers: their differences are the
truth over any interval, and splitting an interval never changes either
direction's energy.
"""

from __future__ import annotations

import math
from datetime import datetime
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.config import load_config, parse_config
from campus_energy.core.energy import split_trapezoid_uwh
from campus_energy.demo.campus import prepare
from campus_energy.meters.simulator.load import EPOCH_S
from campus_energy.meters.simulator.meter import VirtualMeter
from campus_energy.meters.simulator.models import derived_values
from campus_energy.meters.simulator.solar import (
    KNOT_S,
    SolarBuilding,
    clouds_take,
    split_wh,
    sun_share,
)

KOLKATA = ZoneInfo("Asia/Kolkata")
DAY = 86_400
SUNDAY = int(datetime(2026, 6, 14, tzinfo=KOLKATA).timestamp())  # local midnight, in June
WINTER_SUNDAY = int(datetime(2026, 12, 13, tzinfo=KOLKATA).timestamp())
# A building drawing 2-6 kW under an 8 kW array: it exports on sunny stretches of the day
BUILDING = SolarBuilding(7, 2000.0, 6000.0, 8000.0, 0.3, KOLKATA)
INVERTER = SolarBuilding(8, 0.0, 0.0, 5000.0, 0.2, KOLKATA)  # a generation meter: no load


def fraction_truth(building: SolarBuilding, a: int, b: int) -> tuple[Fraction, Fraction]:
    """Import and export in Wh over whole knots [a, b] (multiples of KNOT_S), in exact
    rational arithmetic from the knots alone: an independent check of the closed form."""
    imported = exported = Fraction(0)
    knots = [Fraction(building.knot_w(j)) for j in range(a // KNOT_S, b // KNOT_S + 1)]
    for p, q in pairwise(knots):
        if p >= 0 and q >= 0:
            imported += (p + q) * KNOT_S / 7200
        elif p <= 0 and q <= 0:
            exported -= (p + q) * KNOT_S / 7200
        else:
            cross = KNOT_S * p / (p - q)
            first, second = p * cross / 7200, q * (KNOT_S - cross) / 7200
            if p > 0:
                imported, exported = imported + first, exported - second
            else:
                imported, exported = imported + second, exported - first
    return imported, exported


# --- the sun and the clouds -------------------------------------------------------------------


def test_the_sun_is_down_at_night_and_highest_at_noon() -> None:
    day = SUNDAY // DAY
    assert sun_share(day, 0) == 0.0
    assert sun_share(day, 3 * 3600) == 0.0
    assert sun_share(day, 23 * 3600) == 0.0
    noon = sun_share(day, 12 * 3600)
    assert noon == max(sun_share(day, s) for s in range(0, DAY, 600))
    assert 0.99 < noon <= 1.0  # mid June: the highest sun of the year


def test_summer_days_are_longer_and_higher_than_winter_days() -> None:
    summer, winter = SUNDAY // DAY, WINTER_SUNDAY // DAY

    def daylight_s(day: int) -> int:
        return sum(60 for s in range(0, DAY, 60) if sun_share(day, s) > 0)

    assert daylight_s(summer) == pytest.approx(14 * 3600, abs=180)
    assert daylight_s(winter) == pytest.approx(10 * 3600, abs=600)
    assert sun_share(winter, 12 * 3600) < 0.55 < 0.99 < sun_share(summer, 12 * 3600)


def test_clouds_take_their_share_of_the_sun_on_average() -> None:
    draws = [(i + 0.5) / 10_000 for i in range(10_000)]  # the uniform draw, evenly spread
    for cloudiness in (0.1, 0.3, 0.7):
        taken = [clouds_take(d, cloudiness) for d in draws]
        assert sum(taken) / len(taken) == pytest.approx(cloudiness, abs=2e-3)
        assert all(0.0 <= x <= 1.0 for x in taken)
    assert clouds_take(0.5, 0.0) == 0.0
    assert clouds_take(0.5, 1.0) == 1.0


def test_the_curve_is_deterministic_per_seed() -> None:
    again = SolarBuilding(7, 2000.0, 6000.0, 8000.0, 0.3, KOLKATA)
    other = SolarBuilding(9, 2000.0, 6000.0, 8000.0, 0.3, KOLKATA)
    times = [SUNDAY + 3 * 3600 + 997 * i for i in range(60)]
    assert [again.power_w(t) for t in times] == [BUILDING.power_w(t) for t in times]
    assert [other.power_w(t) for t in times] != [BUILDING.power_w(t) for t in times]


def test_a_clear_sky_array_gives_exactly_the_sun_curve() -> None:
    clear = SolarBuilding(3, 0.0, 0.0, 4000.0, 0.0, KOLKATA)
    for j in range(SUNDAY // KNOT_S, (SUNDAY + DAY) // KNOT_S):
        local = j * KNOT_S + 19_800
        expected = 4000.0 * sun_share(local // DAY, local % DAY)
        assert clear.parts_w(j) == (0.0, expected)
        assert clear.knot_w(j) == pytest.approx(-expected, rel=1e-7, abs=1e-30)


# --- direction ----------------------------------------------------------------------------------


def test_it_exports_only_while_the_array_gives_more_than_the_building_draws() -> None:
    exporting = 0
    for j in range(SUNDAY // KNOT_S, (SUNDAY + DAY) // KNOT_S):
        building, pv = BUILDING.parts_w(j)
        net = BUILDING.knot_w(j)
        assert net == pytest.approx(building - pv, rel=1e-7)
        if pv == 0:
            assert net > 0  # night: the building's load only
        if abs(building - pv) > 1e-3 * building:
            assert (net < 0) == (pv > building)
        exporting += net < 0
    assert 10 < exporting < 144  # it exports some of the day, never all of it


def test_at_night_nothing_is_exported_and_a_generation_meter_reads_zero() -> None:
    night = (SUNDAY, SUNDAY + 4 * 3600)
    assert BUILDING.export_wh(*night) == 0.0
    assert BUILDING.import_wh(*night) > 4 * 2000 * 0.97
    assert INVERTER.import_wh(SUNDAY, SUNDAY + DAY) == 0.0
    assert INVERTER.energy(*night).export_wh == 0.0
    assert INVERTER.power_w(SUNDAY + 2 * 3600 + 17.5) == 0.0
    noon = SUNDAY + 12 * 3600
    assert INVERTER.power_w(noon) < -2500
    assert INVERTER.export_wh(SUNDAY, SUNDAY + DAY) > 5000 * 4  # a June day, a few clouds


@pytest.mark.parametrize(
    ("a_w", "b_w", "seconds", "import_wh", "export_wh"),
    [
        (1000.0, 3000.0, 300, 1000 / 6, 0.0),  # importing throughout: the trapezoid
        (-1000.0, -3000.0, 300, 0.0, 1000 / 6),
        (1000.0, -3000.0, 300, 1000 * 75 / 7200, 3000 * 225 / 7200),  # crosses zero at 75 s
        (-3000.0, 1000.0, 300, 1000 * 75 / 7200, 3000 * 225 / 7200),
        (0.0, -600.0, 60, 0.0, 5.0),
        (600.0, 0.0, 60, 5.0, 0.0),
    ],
)
def test_golden_split_of_a_straight_piece(
    a_w: float, b_w: float, seconds: float, import_wh: float, export_wh: float
) -> None:
    got = split_wh(a_w, b_w, seconds)
    assert got == pytest.approx((import_wh, export_wh), rel=1e-12, abs=1e-12)
    core = split_trapezoid_uwh(a_w, b_w, seconds)
    assert core == (round(import_wh * 1e6), round(export_wh * 1e6))


@pytest.mark.parametrize("day", [SUNDAY, WINTER_SUNDAY, SUNDAY + DAY])
def test_a_day_by_direction_is_the_exact_rational_split_of_its_knots(day: int) -> None:
    imported, exported = fraction_truth(BUILDING, day, day + DAY)
    got = BUILDING.energy(day, day + DAY)
    assert got.import_wh == pytest.approx(float(imported), abs=1e-6)
    assert got.export_wh == pytest.approx(float(exported), abs=1e-6)
    assert exported > 0
    net = sum(
        (Fraction(BUILDING.knot_w(j)) + Fraction(BUILDING.knot_w(j + 1))) * KNOT_S / 7200
        for j in range(day // KNOT_S, (day + DAY) // KNOT_S)
    )
    assert got.import_wh - got.export_wh == pytest.approx(float(net), abs=1e-6)


def test_a_crossing_inside_a_poll_interval_is_split_where_the_line_meets_zero() -> None:
    crossings = [
        j
        for j in range(SUNDAY // KNOT_S, (SUNDAY + DAY) // KNOT_S)
        if (BUILDING.knot_w(j) > 0) != (BUILDING.knot_w(j + 1) > 0)
    ]
    assert crossings
    j = crossings[0]
    a, b = BUILDING.knot_w(j), BUILDING.knot_w(j + 1)
    cross_s = KNOT_S * a / (a - b)
    start = j * KNOT_S
    assert BUILDING.power_w(start + cross_s) == pytest.approx(0.0, abs=1e-6)
    got = BUILDING.energy(start, start + KNOT_S)
    assert (got.import_wh, got.export_wh) == pytest.approx(split_wh(a, b, KNOT_S), abs=1e-9)
    assert got.import_wh > 0 and got.export_wh > 0


instants = st.floats(min_value=SUNDAY - 2 * DAY, max_value=SUNDAY + 3 * DAY)


@settings(max_examples=200, deadline=None)
@given(a=instants, b=instants, c=instants)
def test_splitting_an_interval_anywhere_never_changes_either_direction(
    a: float, b: float, c: float
) -> None:
    t0, t1, t2 = sorted((a, b, c))
    whole = BUILDING.energy(t0, t2)
    first, second = BUILDING.energy(t0, t1), BUILDING.energy(t1, t2)
    assert first.import_wh + second.import_wh == pytest.approx(whole.import_wh, abs=1e-6)
    assert first.export_wh + second.export_wh == pytest.approx(whole.export_wh, abs=1e-6)
    assert min(first.import_wh, first.export_wh, second.import_wh, second.export_wh) >= 0


@settings(max_examples=100, deadline=None)
@given(t=st.floats(min_value=SUNDAY, max_value=SUNDAY + DAY), span=st.floats(1, 4 * KNOT_S))
def test_inside_an_interval_the_direction_follows_the_sign_of_power(t: float, span: float) -> None:
    got = BUILDING.energy(t, t + span)
    inside = range(math.floor(t / KNOT_S) + 1, math.ceil((t + span) / KNOT_S))
    powers = [
        BUILDING.power_w(t),
        *(BUILDING.knot_w(j) for j in inside),
        BUILDING.power_w(t + span),
    ]
    assert (got.export_wh > 0) == any(p < 0 for p in powers)
    assert (got.import_wh > 0) == any(p > 0 for p in powers)


# --- the meter's registers ------------------------------------------------------------------


def pv_meter(started_at: float, **simulate: float) -> VirtualMeter:
    config = parse_config(
        {
            "site": {"timezone": "Asia/Kolkata"},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {
                    "id": "sports-main",
                    "bus": "b",
                    "unit": 1,
                    "profile": "eastron-sdm630",
                    "simulate": {"base_w": 2000, "peak_w": 6000, "pv_peak_w": 8000, **simulate},
                },
                {"id": "plain", "bus": "b", "unit": 2, "profile": "eastron-sdm120"},
            ],
        }
    )
    m = config.meters[0]
    return VirtualMeter(m, config.profile_of(m), config.site.zone, started_at=started_at)


PV_METER = pv_meter(SUNDAY, cloudiness=0.3)


@settings(max_examples=150, deadline=None)
@given(a=instants, b=instants)
def test_the_registers_differences_are_the_truth_in_both_directions(a: float, b: float) -> None:
    t0, t1 = sorted((a, b))
    before, after = PV_METER.registers(t0), PV_METER.registers(t1)
    truth = PV_METER.energy(t0, t1)
    assert after.import_wh - before.import_wh == pytest.approx(truth.import_wh, abs=1e-6)
    assert after.export_wh - before.export_wh == pytest.approx(truth.export_wh, abs=1e-6)


def test_the_registers_count_since_the_epoch_from_their_own_starting_values() -> None:
    at_epoch = PV_METER.registers(EPOCH_S)
    assert at_epoch.import_wh == PV_METER.initial_wh
    assert at_epoch.export_wh == PV_METER.initial_export_wh > 0
    later = PV_METER.registers(SUNDAY + DAY)
    assert later.export_wh - at_epoch.export_wh == pytest.approx(
        PV_METER.load.energy(EPOCH_S, SUNDAY + DAY).export_wh, rel=1e-12
    )
    assert pv_meter(SUNDAY + 5 * DAY, cloudiness=0.3).registers(SUNDAY) == PV_METER.registers(
        SUNDAY
    )  # a function of time alone: a simulator started later answers the same


def test_the_served_values_carry_both_registers_and_power_consistent_with_its_magnitude() -> None:
    noon = SUNDAY + 12 * 3600
    exporting = next(
        t for t in range(noon - 7200, noon + 7200, 60) if PV_METER.load.power_w(t) < -500
    )
    values = PV_METER.values_at(exporting)
    power = values["power_w"]
    assert power < -500
    assert values["current_a"] > 0
    apparent = sum(values[f"voltage_l{n}_v"] * values[f"current_l{n}_a"] for n in (1, 2, 3))
    assert values["power_factor"] == pytest.approx(abs(power) / apparent, rel=1e-9)
    assert 0.8 < values["power_factor"] <= 1.0
    assert all(values[f"power_l{n}_w"] < 0 for n in (1, 2, 3))
    assert values["export_energy_wh"] == PV_METER.registers(exporting).export_wh
    assert values["total_energy_wh"] == values["import_energy_wh"] + values["export_energy_wh"]
    phases = sum(values[f"export_energy_l{n}_wh"] for n in (1, 2, 3))
    assert phases == pytest.approx(values["export_energy_wh"], rel=1e-12)


def test_derived_values_no_longer_hold_export_at_zero() -> None:
    values = {
        "import_energy_wh": 5000.0,
        "export_energy_wh": 1200.0,
        "power_w": -100.0,
        "voltage_v": 230.0,
        "current_a": 0.5,
        "power_factor": 0.87,
    }
    derived = derived_values(values, 1)
    assert derived["export_energy_wh"] == 1200.0
    assert derived["total_energy_wh"] == 6200.0
    assert derived["export_reactive_energy_varh"] > 0
    consuming = derived_values({k: v for k, v in values.items() if k != "export_energy_wh"}, 1)
    assert (consuming["export_energy_wh"], consuming["total_energy_wh"]) == (0.0, 5000.0)


def test_a_meter_without_pv_never_exports() -> None:
    config = parse_config(
        {
            "site": {"timezone": "Asia/Kolkata"},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [{"id": "plain", "bus": "b", "unit": 2, "profile": "eastron-sdm120"}],
        }
    )
    m = config.meters[0]
    plain = VirtualMeter(m, config.profile_of(m), config.site.zone, started_at=SUNDAY)
    values = plain.values_at(SUNDAY + 12 * 3600)
    assert values["export_energy_wh"] == 0.0
    assert values["total_energy_wh"] == values["import_energy_wh"] > 0
    assert plain.energy(SUNDAY, SUNDAY + DAY).export_wh == 0.0


def test_a_replaced_meter_restarts_both_registers_at_zero() -> None:
    meter = pv_meter(SUNDAY, cloudiness=0.3, replace_at_s=9 * 3600)
    before = meter.values_at(SUNDAY + 9 * 3600 - 1)
    assert before["import_energy_wh"] > 1e5 and before["export_energy_wh"] > 1e5
    at = SUNDAY + 9 * 3600
    later = SUNDAY + 15 * 3600
    after = meter.values_at(later)
    truth = meter.energy(at, later)
    assert after["import_energy_wh"] == pytest.approx(truth.import_wh, abs=1e-9)
    assert after["export_energy_wh"] == pytest.approx(truth.export_wh, abs=1e-9)
    assert 0 < after["export_energy_wh"] < before["export_energy_wh"]


def test_a_generation_meter_only_exports() -> None:
    meter = pv_meter(SUNDAY, base_w=0, peak_w=0, pv_peak_w=5000, cloudiness=0.2)
    day = meter.energy(SUNDAY, SUNDAY + DAY)
    assert day.import_wh == 0.0 and day.export_wh > 5000 * 4
    night, noon = meter.values_at(SUNDAY + 3600), meter.values_at(SUNDAY + 12 * 3600)
    assert (night["power_w"], night["current_a"]) == (0.0, 0.0)
    assert noon["power_w"] < 0 < noon["current_a"]
    assert noon["import_energy_wh"] == meter.registers(SUNDAY).import_wh  # never moves


@pytest.mark.parametrize("month", [3, 6, 12])
def test_the_demos_sports_hall_exports_around_noon_and_imports_at_night(
    tmp_path: Path, month: int
) -> None:
    config = load_config(prepare(tmp_path), {})
    (hall,) = [m for m in config.meters if m.id == "sports-main"]
    meter = VirtualMeter(hall, config.profile_of(hall), config.site.zone, started_at=SUNDAY)
    wednesday = datetime(2026, month, 2, tzinfo=KOLKATA)
    while wednesday.weekday() != 2:
        wednesday = wednesday.replace(day=wednesday.day + 1)
    midnight = wednesday.timestamp()
    midday = meter.energy(midnight + 11 * 3600, midnight + 13 * 3600)
    night = meter.energy(midnight, midnight + 5 * 3600)
    assert midday.export_wh > 5000  # kWh go out over the working day's lunch hours
    assert night.export_wh == 0.0 and night.import_wh > 5 * 6000 * 0.97
