"""The simulator's load: deterministic, never negative, and its energy is the exact integral."""

from __future__ import annotations

import math
from datetime import datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.config import Config, MeterConfig, SimulationConfig, parse_config
from campus_energy.meters.simulator.load import CampusLoad, electrical_values, unit_random
from campus_energy.meters.simulator.meter import VirtualMeter

KOLKATA = ZoneInfo("Asia/Kolkata")
# Wednesday 13 March 2024, 00:00 in Kolkata (18:30 UTC the day before).
WEDNESDAY = datetime(2024, 3, 13, tzinfo=KOLKATA).timestamp()
HOUR = 3600.0


def load(seed: int = 7, base_w: float = 800.0, peak_w: float = 4000.0) -> CampusLoad:
    return CampusLoad(seed, base_w, peak_w, KOLKATA)


def config(simulate: dict[str, Any] | None = None) -> Config:
    meters = [
        {"id": "lib-1", "bus": "b", "unit": 1, "profile": "eastron-sdm120"},
        {"id": "lib-3", "bus": "b", "unit": 2, "profile": "eastron-sdm630"},
    ]
    if simulate is not None:
        meters[0]["simulate"] = simulate
    return parse_config(
        {
            "site": {"timezone": "Asia/Kolkata"},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": meters,
        }
    )


def virtual_meter(
    simulate: dict[str, Any] | None = None, started_at: float = WEDNESDAY
) -> VirtualMeter:
    cfg = config(simulate)
    meter = cfg.meters[0]
    return VirtualMeter(meter, cfg.profile_of(meter), cfg.site.zone, started_at=started_at)


times_st = st.floats(min_value=WEDNESDAY - 7 * 86400, max_value=WEDNESDAY + 7 * 86400)


# --- the random source and determinism --------------------------------------------------------


@given(seed=st.integers(0, 2**64 - 1), key=st.integers(0, 2**40))
def test_unit_random_is_in_the_unit_interval_and_repeatable(seed: int, key: int) -> None:
    value = unit_random(seed, key)
    assert 0.0 <= value < 1.0
    assert unit_random(seed, key) == value


def test_the_same_seed_gives_the_same_power() -> None:
    times = [WEDNESDAY + 37_000.25 + 61.5 * i for i in range(50)]
    assert [load(seed=11).power_w(t) for t in times] == [load(seed=11).power_w(t) for t in times]


def test_different_seeds_give_different_power() -> None:
    times = [WEDNESDAY + 37_000.25 + 61.5 * i for i in range(50)]
    first = [load(seed=11).power_w(t) for t in times]
    second = [load(seed=12).power_w(t) for t in times]
    assert sum(a != b for a, b in zip(first, second, strict=True)) > 45


@settings(max_examples=200)
@given(
    t=times_st,
    seed=st.integers(0, 2**32),
    base_w=st.floats(0, 50_000),
    peak_w=st.floats(0, 200_000),
)
def test_power_is_never_negative(t: float, seed: int, base_w: float, peak_w: float) -> None:
    assert load(seed, base_w, peak_w).power_w(t) >= 0.0


def test_power_is_linear_between_knots() -> None:
    subject = load()
    k = int(WEDNESDAY) + 40_000
    a, b = subject.knot_w(k), subject.knot_w(k + 1)
    assert subject.power_w(float(k)) == a
    assert subject.power_w(k + 0.25) == pytest.approx(a + 0.25 * (b - a), rel=1e-12)


# --- exact energy -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    t0=times_st,
    length=st.floats(min_value=0.0, max_value=600.0),
    split=st.floats(min_value=0.0, max_value=1.0),
)
def test_splitting_an_interval_never_changes_the_energy(
    t0: float, length: float, split: float
) -> None:
    subject = load()
    t1 = t0 + length
    middle = min(max(t0 + split * length, t0), t1)
    whole = subject.energy_wh(t0, t1)
    parts = subject.energy_wh(t0, middle) + subject.energy_wh(middle, t1)
    assert parts == pytest.approx(whole, rel=1e-9, abs=1e-12)


def test_energy_of_a_tiny_interval_is_power_times_duration() -> None:
    subject = load()
    t0 = WEDNESDAY + 40_000.3
    t1 = t0 + 1e-3
    assert subject.energy_wh(t0, t1) == pytest.approx(
        subject.power_w(t0) * (t1 - t0) / HOUR, rel=1e-3
    )


@pytest.mark.parametrize("offset", [0, 40_000, 86_399])
def test_energy_over_one_knot_interval_is_the_trapezoid(offset: int) -> None:
    subject = load()
    k = int(WEDNESDAY) + offset
    trapezoid_wh = (subject.knot_w(k) + subject.knot_w(k + 1)) / 2 / HOUR
    assert subject.energy_wh(float(k), float(k + 1)) == pytest.approx(trapezoid_wh, rel=1e-15)


def test_energy_of_an_empty_or_reversed_interval_is_zero() -> None:
    subject = load()
    assert subject.energy_wh(WEDNESDAY, WEDNESDAY) == 0.0
    assert subject.energy_wh(WEDNESDAY + 10, WEDNESDAY) == 0.0


def test_energy_lies_between_the_least_and_greatest_power() -> None:
    subject = load()
    t0 = WEDNESDAY + 10 * HOUR
    knots = [subject.knot_w(int(t0) + i) for i in range(301)]
    energy = subject.energy_wh(t0, t0 + 300)
    assert min(knots) * 300 / HOUR <= energy <= max(knots) * 300 / HOUR


# --- the daily shape --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 7, 2024, 987_654_321])
def test_weekday_working_hours_draw_more_than_three_in_the_morning(seed: int) -> None:
    subject = load(seed)
    night_wh = subject.energy_wh(WEDNESDAY + 3 * HOUR, WEDNESDAY + 4 * HOUR)
    working_wh = subject.energy_wh(WEDNESDAY + 10 * HOUR, WEDNESDAY + 11 * HOUR)
    assert working_wh > 1.5 * night_wh


# --- what the meter displays ------------------------------------------------------------------


@given(t=times_st, seed=st.integers(0, 2**32))
def test_single_phase_values_are_consistent(t: float, seed: int) -> None:
    values = electrical_values(load(seed), t, phases=1)
    assert set(values) == {"voltage_v", "current_a", "power_w", "power_factor", "frequency_hz"}
    assert values["power_w"] == load(seed).power_w(t)
    product = values["voltage_v"] * values["current_a"] * values["power_factor"]
    assert product == pytest.approx(values["power_w"], rel=1e-9, abs=1e-9)
    assert 0.8 <= values["power_factor"] <= 0.99
    assert 49.9 < values["frequency_hz"] < 50.1
    assert 220 < values["voltage_v"] < 240


@given(t=times_st, seed=st.integers(0, 2**32))
def test_three_phase_values_are_consistent(t: float, seed: int) -> None:
    values = electrical_values(load(seed, 2400.0, 12_000.0), t, phases=3)
    phases = (1, 2, 3)
    power = values["power_w"]
    assert power == pytest.approx(sum(values[f"power_l{n}_w"] for n in phases), rel=1e-9)
    assert values["current_a"] == pytest.approx(
        sum(values[f"current_l{n}_a"] for n in phases), rel=1e-9
    )
    for n in phases:
        product = values[f"voltage_l{n}_v"] * values[f"current_l{n}_a"]
        assert product * values[f"power_factor_l{n}"] == pytest.approx(
            values[f"power_l{n}_w"], rel=1e-9, abs=1e-9
        )
    assert values["voltage_v"] == pytest.approx(
        sum(values[f"voltage_l{n}_v"] for n in phases) / 3, rel=1e-12
    )


# --- the virtual meter ------------------------------------------------------------------------


def test_the_import_register_never_decreases() -> None:
    meter = virtual_meter()
    times = [WEDNESDAY + 0.7 * i**2 for i in range(60)]
    readings = [meter.import_energy_wh(t) for t in times]
    assert all(b > a for a, b in pairwise(readings))
    assert meter.import_energy_wh(WEDNESDAY) == readings[-1]  # time never runs backwards


def test_energy_since_start_is_the_exact_integral() -> None:
    start = WEDNESDAY + 9 * HOUR
    meter = virtual_meter(started_at=start)
    # The register holds a meter-like total of megawatt-hours, so the difference keeps ~1e-9 Wh.
    for t in (start + 1234.5, start + 1300.25, start + 2000.0, start + 3 * HOUR + 0.125):
        expected = meter.load.energy_wh(start, t)
        assert meter.energy_since_start_wh(t) == pytest.approx(expected, rel=1e-9)


def test_the_configured_seed_and_powers_are_used() -> None:
    meter = virtual_meter({"seed": 42, "base_w": 500.0, "peak_w": 2500.0})
    assert (meter.seed, meter.load.base_w, meter.load.peak_w) == (42, 500.0, 2500.0)
    assert meter.load.zone == KOLKATA


def draws(meter: VirtualMeter, times: list[float]) -> list[str]:
    return [meter.draw_fault(t) for t in times]


EVERY_SECOND = [WEDNESDAY + i for i in range(500)]


def test_zero_fault_rates_always_answer() -> None:
    meter = virtual_meter()
    assert set(draws(meter, EVERY_SECOND)) == {"ok"}
    assert meter.counts.answered == 500


@pytest.mark.parametrize("fault", ["timeout", "exception", "corrupt"])
def test_a_fault_rate_of_one_always_fails(fault: str) -> None:
    meter = virtual_meter({f"{fault}_rate": 1.0})
    assert set(draws(meter, EVERY_SECOND)) == {fault}
    assert getattr(meter.counts, fault) == 500
    assert meter.counts.answered == 0


def test_fault_rates_are_roughly_respected() -> None:
    meter = virtual_meter({"seed": 3, "timeout_rate": 0.2, "exception_rate": 0.1})
    results = draws(meter, [WEDNESDAY + i for i in range(5000)])
    assert 0.17 < results.count("timeout") / 5000 < 0.23
    assert 0.08 < results.count("exception") / 5000 < 0.12
    assert "corrupt" not in results


def test_the_meter_is_silent_between_disconnect_and_reconnect() -> None:
    meter = virtual_meter({"disconnect_after_s": 600, "reconnect_after_s": 900})
    offsets = [0.0, 599.9, 600.0, 750.0, 899.9, 900.0, 5000.0]
    assert draws(meter, [WEDNESDAY + s for s in offsets]) == [
        "ok",
        "ok",
        "timeout",
        "timeout",
        "timeout",
        "ok",
        "ok",
    ]
    assert (meter.counts.answered, meter.counts.timeout) == (4, 3)


def test_without_reconnect_the_meter_stays_silent() -> None:
    meter = virtual_meter({"disconnect_after_s": 60})
    assert draws(meter, [WEDNESDAY + s for s in (59.0, 60.0, 86_400.0)]) == [
        "ok",
        "timeout",
        "timeout",
    ]


def test_faults_passed_in_replace_the_configured_ones() -> None:
    cfg = config({"timeout_rate": 1.0})
    meter_cfg: MeterConfig = cfg.meters[0]
    meter = VirtualMeter(
        meter_cfg,
        cfg.profile_of(meter_cfg),
        cfg.site.zone,
        started_at=WEDNESDAY,
        faults=SimulationConfig(exception_rate=1.0),
    )
    assert set(draws(meter, EVERY_SECOND[:20])) == {"exception"}


def test_a_three_phase_meter_shows_per_phase_values() -> None:
    cfg = config()
    meter_cfg = cfg.meters[1]
    meter = VirtualMeter(meter_cfg, cfg.profile_of(meter_cfg), KOLKATA, started_at=WEDNESDAY)
    values = meter.values_at(WEDNESDAY + 10 * HOUR)
    assert {f.name for f in cfg.profile_of(meter_cfg).fields} <= set(values)
    assert math.isclose(
        values["power_w"], sum(values[f"power_l{n}_w"] for n in (1, 2, 3)), rel_tol=1e-9
    )


def test_random_streams_of_different_seeds_are_unrelated() -> None:
    assert unit_random(1, 2) != unit_random(2, 1)
    assert unit_random(42, 13, 7) != unit_random(43, 12, 7)
    assert unit_random(5) != 0.0
    draws = [unit_random(seed, 1) for seed in range(1, 200)]
    assert len(set(draws)) == len(draws)
