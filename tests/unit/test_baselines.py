"""core.baselines: the median, the MAD, and which hours a baseline compares — the same local
wall-clock hour and kind of day, across the clock changes of Europe/Berlin."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.alerts import HourEnergy
from campus_energy.core.baselines import (
    MAD_SCALE,
    Baseline,
    day_kind,
    hour_baseline,
    mad,
    median,
    same_hour_samples,
)
from campus_energy.core.timestamps import datetime_ms

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3_600_000


def local(*parts: int, fold: int = 0) -> int:
    return datetime_ms(datetime(*parts, tzinfo=BERLIN, fold=fold))  # type: ignore[misc]


def hours_between(first_ms: int, end_ms: int, coverage: float = 1.0) -> list[HourEnergy]:
    """Every UTC hour (Berlin's local hours start on them), its energy = its start in hours
    since first_ms: each hour is recognisable by its energy."""
    return [
        HourEnergy(t, float((t - first_ms) // HOUR), coverage)
        for t in range(first_ms, end_ms, HOUR)
    ]


def energy_of(first_ms: int, start_ms: int) -> float:
    return float((start_ms - first_ms) // HOUR)


# -- median, MAD, Baseline ------------------------------------------------------------------


def test_median_and_mad_golden() -> None:
    # 1 2 3 4 100: median 3; |deviations| 2 1 0 1 97 -> sorted 0 1 1 2 97: MAD 1
    assert median([100, 1, 3, 2, 4]) == 3
    assert mad([100, 1, 3, 2, 4]) == 1
    # even count: the mean of the middle two; 48..53: median 50.5, |dev| 0.5 0.5 1.5 1.5 2.5 2.5
    samples = [50.0, 52.0, 48.0, 51.0, 49.0, 53.0]
    assert median(samples) == 50.5
    assert mad(samples) == 1.5
    base = Baseline.of(samples)
    assert base == Baseline(50.5, 1.5 * MAD_SCALE, 6)
    # k = 4: 4 × 1.4826 × 1.5 = 8.8956, above a floor of 1; 9.5 away deviates, 8.5 does not
    assert base.threshold(4, 1.0) == pytest.approx(8.8956)
    assert base.deviates(60.0, 4, 1.0) and not base.deviates(59.0, 4, 1.0)
    assert base.deviates(41.0, 4, 1.0) and not base.deviates(42.0, 4, 1.0)
    # the floor wins over a spread near zero
    assert Baseline.of([10.0] * 5).threshold(4, 2.0) == 2.0
    with pytest.raises(ValueError):
        median([])


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.randoms())
def test_a_baseline_does_not_depend_on_the_order_of_its_samples(
    samples: list[float], rnd: random.Random
) -> None:
    shuffled = list(samples)
    rnd.shuffle(shuffled)
    assert Baseline.of(shuffled) == Baseline.of(samples)


@given(
    st.lists(st.floats(0, 1e6), min_size=4, max_size=20),
    st.floats(0, 2e6),
    st.floats(0.5, 10),
    st.floats(0, 1e4),
    st.integers(-20, 20),
)
def test_scaling_every_sample_scales_the_threshold_and_keeps_the_decision(
    samples: list[float], x: float, k: float, floor: float, power: int
) -> None:
    c = 2.0**power  # exact in floating point: the decision cannot change by rounding
    base, scaled = Baseline.of(samples), Baseline.of([c * v for v in samples])
    assert scaled.threshold(k, c * floor) == pytest.approx(c * base.threshold(k, floor))
    assert scaled.deviates(c * x, k, c * floor) == base.deviates(x, k, floor)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=30), st.floats(0.1, 1e3))
def test_scaling_by_any_factor_scales_median_and_spread(samples: list[float], c: float) -> None:
    base, scaled = Baseline.of(samples), Baseline.of([c * v for v in samples])
    assert scaled.median == pytest.approx(c * base.median, rel=1e-9, abs=1e-9)
    assert scaled.spread == pytest.approx(c * base.spread, rel=1e-9, abs=1e-6)


# -- which hours are compared ---------------------------------------------------------------


def test_the_same_hour_last_week_across_the_autumn_change() -> None:
    """Monday 28 Oct 2024 09:00 CET is 08:00 UTC; the Mondays before were CEST, where 09:00
    was 07:00 UTC. Comparing UTC hours would take 10:00 local."""
    first = local(2024, 9, 1)
    hours = hours_between(first, local(2024, 10, 28, 12))
    target = local(2024, 10, 28, 9)
    assert target == datetime_ms(datetime(2024, 10, 28, 8, tzinfo=ZoneInfo("UTC")))
    samples = same_hour_samples(hours, target, BERLIN, weeks=4)
    mondays = [local(2024, 9, d, 9) for d in (30,)] + [local(2024, 10, d, 9) for d in (7, 14, 21)]
    assert samples == [energy_of(first, m) for m in mondays]


def test_the_repeated_hour_of_the_25_hour_day_counts_once() -> None:
    """Sunday 27 Oct 2024 has 02:00 twice (00:00 UTC in CEST, 01:00 UTC in CET): the Sunday
    after compares with the first."""
    first = local(2024, 9, 1)
    hours = hours_between(first, local(2024, 11, 4))
    target = local(2024, 11, 3, 2)
    samples = same_hour_samples(hours, target, BERLIN, weeks=2)
    first_two = local(2024, 10, 27, 2, fold=0)
    assert first_two == local(2024, 10, 27, 2, fold=1) - HOUR
    assert samples == [energy_of(first, local(2024, 10, 20, 2)), energy_of(first, first_two)]


def test_the_missing_hour_of_the_spring_day_gives_no_sample() -> None:
    """Sunday 31 Mar 2024 has no 02:00: the Sunday after compares with three Sundays of four
    (not with 03:00 of 31 March), and three samples make no baseline."""
    first = local(2024, 3, 1)
    hours = hours_between(first, local(2024, 4, 8))
    target = local(2024, 4, 7, 2)
    samples = same_hour_samples(hours, target, BERLIN, weeks=4)
    assert samples == [energy_of(first, local(2024, 3, d, 2)) for d in (10, 17, 24)]
    assert hour_baseline(hours, target, BERLIN, weeks=4) is None
    assert hour_baseline(hours, target, BERLIN, weeks=5) is not None  # 3 March as well


def test_holidays_are_compared_with_sundays_and_left_out_of_their_weekday() -> None:
    first = local(2024, 9, 1)
    hours = hours_between(first, local(2024, 10, 25))
    holidays = {date(2024, 10, 3)}  # a Thursday
    assert day_kind(date(2024, 10, 3), holidays) == "sun"
    assert day_kind(date(2024, 10, 10), holidays) == "thu"
    # the holiday itself: the Sundays before it (and no Thursday)
    on_holiday = same_hour_samples(hours, local(2024, 10, 3, 10), BERLIN, 4, holidays)
    sundays = [local(2024, 9, d, 10) for d in (8, 15, 22, 29)]
    assert on_holiday == [energy_of(first, s) for s in sundays]
    # a Thursday after it: the Thursdays of four weeks but the holiday
    thursday = same_hour_samples(hours, local(2024, 10, 24, 10), BERLIN, 4, holidays)
    assert thursday == [energy_of(first, local(2024, 9, 26, 10))] + [
        energy_of(first, local(2024, 10, d, 10)) for d in (10, 17)
    ]
    # a Sunday after it: the holiday is among the Sundays of the week before
    sunday = same_hour_samples(hours, local(2024, 10, 6, 10), BERLIN, 1, holidays)
    assert sunday == [
        energy_of(first, local(2024, 9, 29, 10)),
        energy_of(first, local(2024, 10, 3, 10)),
    ]


def test_poorly_covered_hours_are_no_samples() -> None:
    first = local(2024, 9, 1)
    hours = [
        HourEnergy(h.start_ms, h.energy_wh, 0.5 if h.start_ms == local(2024, 9, 30, 9) else 1.0)
        for h in hours_between(first, local(2024, 10, 28, 12))
    ]
    samples = same_hour_samples(hours, local(2024, 10, 28, 9), BERLIN, weeks=4)
    assert samples == [energy_of(first, local(2024, 10, d, 9)) for d in (7, 14, 21)]
