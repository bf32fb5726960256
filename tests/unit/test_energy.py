"""Energy integration and timestamps: golden tables, properties, wall-clock steps."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.energy import (
    UWH_PER_WH,
    MeterState,
    Step,
    advance,
    implausible,
    split_trapezoid_uwh,
    stamp,
    trapezoid_uwh,
)

T0 = 1_764_230_400.0  # wall seconds; monotonic times below start at 1000.0


def run(
    samples: list[tuple[float, float]], *, max_gap_s: float = 1e9, state: MeterState | None = None
) -> tuple[list[Step], MeterState]:
    """Feed (seconds since start, power W) samples; wall and monotonic clocks agree."""
    state = state or MeterState()
    steps = []
    for t, power in samples:
        step, state = advance(
            state, power_w=power, wall_s=T0 + t, mono_s=1000.0 + t, max_gap_s=max_gap_s
        )
        steps.append(step)
    return steps, state


# Golden tables: (minute, kW) readings and the kWh they must add up to.
GOLDEN = [
    # constant 6 kW for an hour, read every minute: 6 kWh
    ([(m, 6.0) for m in range(61)], 6.0),
    # a ramp 0 → 60 kW over an hour: the trapezoid is exact for a ramp, 30 kWh
    ([(m, float(m)) for m in range(61)], 30.0),
    # 2 kW, a step to 8 kW at minute 30, read every 10 minutes: trapezoid across the step
    ([(0, 2.0), (10, 2.0), (20, 2.0), (30, 8.0), (40, 8.0), (50, 8.0), (60, 8.0)], 5.5),
    # the original deployment's case: 3.6 kW read every 5 s for a minute: 0.06 kWh
    ([(s / 60, 3.6) for s in range(0, 61, 5)], 0.06),
]


@pytest.mark.parametrize(("table", "kwh"), GOLDEN)
def test_golden_tables(table: list[tuple[float, float]], kwh: float) -> None:
    steps, state = run([(minute * 60, kw * 1000) for minute, kw in table])
    # each reading's energy is rounded to 1 µWh (1e-9 kWh)
    assert state.total_uwh / UWH_PER_WH / 1000 == pytest.approx(kwh, abs=len(table) * 0.5e-9)
    assert steps[0].energy_uwh == 0  # nothing before the first reading
    assert state.total_uwh == sum(s.energy_uwh for s in steps)
    assert [s.seq for s in steps] == list(range(1, len(steps) + 1))


def test_a_gap_longer_than_max_gap_adds_nothing_and_is_reported() -> None:
    # 1 kW every 5 s, then an outage of 60 s, then 10 kW: the 10 kW is not applied to the gap.
    samples = [(0, 1000.0), (5, 1000.0), (65, 10_000.0), (70, 10_000.0)]
    steps, state = run(samples, max_gap_s=15)
    assert [s.gap_s for s in steps] == [None, None, 60.0, None]
    assert steps[2].energy_uwh == 0
    expected_wh = 1000 * 5 / 3600 + 10_000 * 5 / 3600
    assert state.total_uwh / UWH_PER_WH == pytest.approx(expected_wh, abs=1e-6)


def test_one_spike_cannot_become_kwh_across_a_quiet_stretch() -> None:
    # Home Assistant's complaint: a 50 kW spike after an hour of silence.
    steps, _ = run([(0, 100.0), (3600, 50_000.0)], max_gap_s=15)
    assert steps[1].energy_uwh == 0


def test_energy_uses_the_monotonic_clock_not_the_wall_clock() -> None:
    state = MeterState()
    _, state = advance(state, power_w=3600.0, wall_s=T0, mono_s=10.0, max_gap_s=60)
    # the wall clock jumps 5 minutes ahead, 10 s really pass
    step, _ = advance(state, power_w=3600.0, wall_s=T0 + 310, mono_s=20.0, max_gap_s=60)
    assert step.energy_uwh == 10 * UWH_PER_WH  # 3600 W × 10 s = 10 Wh


def test_unknown_previous_monotonic_time_is_a_gap() -> None:
    restored = MeterState(seq=7, total_uwh=123, last_ts_ms=int(T0 * 1000), last_power_w=500.0)
    step, state = advance(restored, power_w=500.0, wall_s=T0 + 5, mono_s=50.0, max_gap_s=15)
    assert (step.seq, step.energy_uwh, step.total_uwh) == (8, 0, 123)
    assert step.gap_s == 5.0
    assert state.last_mono_s == 50.0


# --- timestamps across wall-clock steps -------------------------------------------------------


def test_timestamps_follow_the_wall_clock() -> None:
    assert stamp(None, None, T0 + 0.0015, 1.0) == int(T0 * 1000) + 1
    assert stamp(1000, 1.0, 2.5, 2.0) == 2500


def test_a_backward_step_never_reorders_a_meters_rows() -> None:
    state = MeterState()
    wall = T0
    stamps = []
    for i in range(200):
        mono = 1000.0 + 5 * i
        if i == 20:
            wall -= 120  # NTP steps the clock back two minutes
        step, state = advance(state, power_w=100.0, wall_s=wall, mono_s=mono, max_gap_s=15)
        stamps.append(step.ts_ms)
        wall += 5
    assert all(b > a for a, b in itertools.pairwise(stamps))
    # spacing halves during the catch-up, never collapses to 1 ms
    assert min(b - a for a, b in itertools.pairwise(stamps)) == 2500
    # and the wall clock is followed again once it has caught up
    assert stamps[-1] == int(wall * 1000) - 5000


def test_a_backward_step_does_not_change_energy() -> None:
    steps_steady, _ = run([(t, 2000.0) for t in range(0, 100, 5)], max_gap_s=15)
    state = MeterState()
    total_stepped = 0
    for t in range(0, 100, 5):
        wall = T0 + t - (300 if t >= 50 else 0)
        step, state = advance(state, power_w=2000.0, wall_s=wall, mono_s=1000.0 + t, max_gap_s=15)
        total_stepped += step.energy_uwh
    assert total_stepped == sum(s.energy_uwh for s in steps_steady)


# --- plausibility ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("power", "limit", "refused"),
    [
        (math.nan, None, "NaN"),
        (math.inf, None, "infinite"),
        (-math.inf, 1e5, "infinite"),
        (20_001.0, 20_000.0, "beyond"),
        (-20_001.0, 20_000.0, "beyond"),
        (19_999.0, 20_000.0, None),
        (1e12, None, None),
    ],
)
def test_implausible_power(power: float, limit: float | None, refused: str | None) -> None:
    reason = implausible(power, limit)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


# --- properties ------------------------------------------------------------------------------

powers = st.floats(0, 100_000, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(power=powers, seconds=st.floats(0.001, 3600))
def test_constant_power_over_dt_is_p_times_dt(power: float, seconds: float) -> None:
    _steps, state = run([(0.0, power), (seconds, power)])
    # exact up to the rounding of the one stored energy to a whole µWh
    assert abs(state.total_uwh - power * seconds / 3600 * UWH_PER_WH) <= 0.5 + 1e-6


@settings(max_examples=200, deadline=None)
@given(a=powers, b=powers, seconds=st.floats(1, 600), split=st.floats(0.01, 0.99))
def test_splitting_an_interval_never_changes_the_total(
    a: float, b: float, seconds: float, split: float
) -> None:
    """A reading in the middle of a linear change adds nothing and loses nothing."""
    middle = a + (b - a) * split
    _, whole = run([(0.0, a), (seconds, b)])
    _, halves = run([(0.0, a), (seconds * split, middle), (seconds, b)])
    # each stored energy is rounded to 1 µWh
    assert abs(halves.total_uwh - whole.total_uwh) <= 1


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(0.5, 14.9), min_size=2, max_size=60),
    base=st.floats(100, 10_000),
    slope=st.floats(-5, 5),
)
def test_energy_does_not_depend_on_poll_spacing_within_max_gap(
    gaps: list[float], base: float, slope: float
) -> None:
    """For a linear load the trapezoid is exact however the polls fall."""
    times = [0.0]
    for g in gaps:
        times.append(times[-1] + g)
    power = [max(0.0, base + slope * t) for t in times]
    if min(power) == 0.0:
        return  # the clamp makes the load non-linear; not this property's business
    _, state = run(list(zip(times, power, strict=True)), max_gap_s=15)
    duration = times[-1]
    exact_wh = (power[0] + power[-1]) / 2 * duration / 3600
    # one µWh of rounding per reading at most
    assert abs(state.total_uwh / UWH_PER_WH - exact_wh) <= len(times) * 1e-6


def test_trapezoid_rounds_to_whole_microwatt_hours() -> None:
    assert trapezoid_uwh(1.0, 1.0, 3.6) == 1000  # 1 W × 3.6 s = 1 mWh
    assert isinstance(trapezoid_uwh(0.3, 0.3, 1.0), int)


# --- two directions --------------------------------------------------------------------------


SPLITS = [
    # (power a W, power b W, seconds, import Wh, export Wh)
    (2000.0, 2000.0, 3600.0, 2000.0, 0.0),
    (-1000.0, -3000.0, 3600.0, 0.0, 2000.0),
    # +2 kW to −1 kW over 6 s: zero at 4 s; import ½·2000·4 s, export ½·1000·2 s
    (2000.0, -1000.0, 6.0, 2000 * 4 / 2 / 3600, 1000 * 2 / 2 / 3600),
    # −3 kW to +1 kW over 8 s: zero at 6 s; export ½·3000·6 s, import ½·1000·2 s
    (-3000.0, 1000.0, 8.0, 1000 * 2 / 2 / 3600, 3000 * 6 / 2 / 3600),
    # touching zero at one end only is one direction
    (0.0, 500.0, 10.0, 500 * 10 / 2 / 3600, 0.0),
    (0.0, -500.0, 10.0, 0.0, 500 * 10 / 2 / 3600),
]


@pytest.mark.parametrize(("a", "b", "seconds", "imported", "exported"), SPLITS)
def test_an_interval_is_split_at_its_zero_crossing(
    a: float, b: float, seconds: float, imported: float, exported: float
) -> None:
    got = split_trapezoid_uwh(a, b, seconds)
    assert got == (round(imported * UWH_PER_WH), round(exported * UWH_PER_WH))


@given(
    st.floats(-1e5, 1e5, allow_nan=False),
    st.floats(-1e5, 1e5, allow_nan=False),
    st.floats(0.001, 3600.0),
)
@settings(max_examples=300)
def test_import_minus_export_is_the_signed_trapezoid(a: float, b: float, seconds: float) -> None:
    imported, exported = split_trapezoid_uwh(a, b, seconds)
    assert imported >= 0 and exported >= 0
    assert abs((imported - exported) - trapezoid_uwh(a, b, seconds)) <= 1  # µWh rounding
    if a >= 0 and b >= 0:
        assert exported == 0
    if a <= 0 and b <= 0:
        assert imported == 0


def test_each_direction_is_totalled_on_its_own() -> None:
    # a PV building: importing, then exporting through noon, then importing again
    powers = [800.0, 200.0, -600.0, -1500.0, -400.0, 300.0, 900.0]
    steps, state = run([(10.0 * i, p) for i, p in enumerate(powers)])
    assert state.total_uwh == sum(s.energy_uwh for s in steps)
    assert state.export_total_uwh == sum(s.export_uwh for s in steps)
    assert steps[-1].export_total_uwh == state.export_total_uwh
    assert all(s.energy_uwh >= 0 and s.export_uwh >= 0 for s in steps)
    signed = sum(trapezoid_uwh(a, b, 10.0) for a, b in itertools.pairwise(powers))
    assert abs(state.total_uwh - state.export_total_uwh - signed) <= len(powers)
    # a gap integrates neither direction
    after, _ = run([(0.0, -1000.0), (100.0, -1000.0)], max_gap_s=30.0)
    assert (after[1].energy_uwh, after[1].export_uwh, after[1].gap_s) == (0, 0, 100.0)
