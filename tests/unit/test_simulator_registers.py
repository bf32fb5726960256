"""A simulated meter's import register is a function of wall-clock time, not of the simulator.

Two simulator processes started at different times answer the same register
for the same instant, the register never decreases across a restart, and it
is the exact integral of the deterministic load since a fixed epoch, however
long ago that was, computed without walking every second in between.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.config import Config, parse_config
from campus_energy.meters.simulator.load import EPOCH_S, CampusLoad
from campus_energy.meters.simulator.meter import VirtualMeter
from campus_energy.meters.simulator.server import Simulator

KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")  # summer time: 23- and 25-hour days
MONDAY = datetime(2026, 11, 30, tzinfo=KOLKATA).timestamp()
HOUR = 3600.0
DAY = 86_400.0


def config() -> Config:
    return parse_config(
        {
            "site": {"timezone": "Asia/Kolkata"},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {"id": "lib-1", "bus": "b", "unit": 1, "profile": "eastron-sdm120"},
                {"id": "lib-3", "bus": "b", "unit": 2, "profile": "eastron-sdm630"},
            ],
        }
    )


def meter(started_at: float, index: int = 0) -> VirtualMeter:
    cfg = config()
    m = cfg.meters[index]
    return VirtualMeter(m, cfg.profile_of(m), cfg.site.zone, started_at=started_at)


def brute_force_wh(load: CampusLoad, t0: float, t1: float) -> float:
    """The trapezoid over every knot: what the closed form must agree with."""
    points = [t0, *range(math.floor(t0) + 1, math.ceil(t1)), t1]
    return sum(load.energy_wh(a, b) for a, b in pairwise(points))


@pytest.mark.parametrize("index", [0, 1])
def test_two_simulators_started_at_different_times_answer_the_same_register(index: int) -> None:
    first = meter(started_at=MONDAY, index=index)
    first.import_energy_wh(MONDAY + 2 * HOUR)  # the first has been answering for a while
    restarted = meter(started_at=MONDAY + 3 * HOUR + 17.25, index=index)
    for t in (MONDAY + 3 * HOUR + 20.5, MONDAY + 5 * HOUR, MONDAY + 2 * DAY + 0.125):
        assert restarted.import_energy_wh(t) == pytest.approx(first.import_energy_wh(t), abs=1e-3)


def test_the_register_never_decreases_across_a_restart() -> None:
    before = meter(started_at=MONDAY)
    last_before = before.import_energy_wh(MONDAY + HOUR)
    after = meter(started_at=MONDAY + HOUR + 5)
    first_after = after.import_energy_wh(MONDAY + HOUR + 5)
    assert first_after > last_before
    exact = before.load.energy_wh(MONDAY + HOUR, MONDAY + HOUR + 5)
    assert first_after - last_before == pytest.approx(exact, abs=1e-3)


def test_the_register_is_the_integral_since_the_epoch() -> None:
    subject = meter(started_at=MONDAY)
    start = subject.import_energy_wh(EPOCH_S)
    assert start == subject.initial_wh
    # a register read a day after the epoch is the sum of every knot of that day
    t = EPOCH_S + DAY + 0.5
    expected = brute_force_wh(subject.load, EPOCH_S, t)
    assert subject.import_energy_wh(t) - start == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("zone", [KOLKATA, BERLIN], ids=["kolkata", "berlin"])
def test_long_intervals_agree_with_the_trapezoid_over_every_knot(zone: ZoneInfo) -> None:
    load = CampusLoad(5, 700.0, 3500.0, zone)
    # across the spring-forward night in Berlin (29 March 2026) and from a Sunday to a Monday
    t0 = datetime(2026, 3, 28, 20, 13, 7, tzinfo=zone).timestamp() + 0.37
    t1 = t0 + 1.3 * DAY + 0.41
    assert load.energy_wh(t0, t1) == pytest.approx(brute_force_wh(load, t0, t1), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    t0=st.floats(min_value=EPOCH_S - 30 * DAY, max_value=EPOCH_S + 4000 * DAY),
    length=st.floats(min_value=0.0, max_value=2 * DAY),
)
def test_the_closed_form_splits_like_the_integral(t0: float, length: float) -> None:
    load = CampusLoad(9, 400.0, 2400.0, BERLIN)
    t1 = t0 + length
    whole = load.energy_since_epoch_wh(t1) - load.energy_since_epoch_wh(t0)
    assert whole >= 0
    if length <= 2 * HOUR:
        assert whole == pytest.approx(load.energy_wh(t0, t1), rel=1e-7, abs=1e-4)


def test_reading_a_register_years_after_the_epoch_is_cheap() -> None:
    subject = meter(started_at=MONDAY)
    began = time.perf_counter()
    for i in range(200):
        subject.import_energy_wh(EPOCH_S + 3000 * DAY + 97.5 * i)
    assert time.perf_counter() - began < 2.0  # a loop over 8 years of seconds takes hours


def test_replacing_a_meter_is_explicit_and_restarts_its_register_at_zero() -> None:
    subject = meter(started_at=MONDAY)
    before = subject.import_energy_wh(MONDAY + HOUR)
    subject.replace(MONDAY + HOUR)
    assert subject.replaced_at == MONDAY + HOUR
    later = subject.import_energy_wh(MONDAY + 2 * HOUR)
    assert later < before
    assert later == pytest.approx(subject.load.energy_wh(MONDAY + HOUR, MONDAY + 2 * HOUR), 1e-6)


def test_the_simulator_replaces_a_meter_only_when_told(caplog: pytest.LogCaptureFixture) -> None:
    now = [MONDAY + HOUR]
    simulator = Simulator(config(), clock=lambda: now[0])
    before = simulator.meters["lib-1"].import_energy_wh(now[0])
    simulator.replace_meter("lib-1")
    assert "lib-1 replaced" in caplog.text
    now[0] += 60
    assert simulator.meters["lib-1"].import_energy_wh(now[0]) < before
    assert simulator.meters["lib-3"].import_energy_wh(now[0]) > 1e6  # the others go on
