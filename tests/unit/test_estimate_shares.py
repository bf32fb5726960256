"""An estimate's share of ranges of time: in proportion to time, whole µWh, adding up exactly."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.estimate_shares import Gap, shares
from campus_energy.core.windows import _shares

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE_MS = 60_000


def berlin_ms(day: int, hour: int, minute: int = 0) -> int:
    return round(datetime(2026, 3, day, hour, minute, tzinfo=BERLIN).timestamp() * 1000)


def test_a_gap_across_local_midnight_is_shared_by_its_two_days() -> None:
    """23:50-00:20: a third before midnight, two thirds after."""
    gap = Gap(berlin_ms(27, 23, 50), berlin_ms(28, 0, 20))
    days = [berlin_ms(27, 0), berlin_ms(28, 0), berlin_ms(29, 0)]
    assert shares(gap, 300_000_000, days) == {0: 100_000_000, 1: 200_000_000}
    assert shares(gap, 300_000_000, days[:2]) == {0: 100_000_000}  # a range that cuts the gap
    assert shares(gap, 300_000_000, days[1:]) == {0: 200_000_000}


def test_a_gap_across_the_spring_change_is_shared_by_real_time() -> None:
    """23:00 CET to 04:00 CEST is four hours, not the clock's five: a quarter on the 28th,
    a quarter in each of the clock hours 00, 01 and 03 of the 29th."""
    gap = Gap(berlin_ms(28, 23), berlin_ms(29, 4))
    hours = [berlin_ms(28, 23), berlin_ms(29, 0), berlin_ms(29, 1), berlin_ms(29, 3)]
    hours.append(berlin_ms(29, 4))
    assert shares(gap, 4_000_000_000, hours) == {i: 1_000_000_000 for i in range(4)}
    days = [berlin_ms(28, 0), berlin_ms(29, 0), berlin_ms(30, 0)]
    assert shares(gap, 4_000_000_000, days) == {0: 1_000_000_000, 1: 3_000_000_000}


def test_a_gap_not_known_counts_whole_at_its_reading() -> None:
    bounds = [0, 10, 20, 30]
    assert shares(Gap(None, 15), 7, bounds) == {1: 7}
    assert shares(Gap(15, 15), 7, bounds) == {1: 7}
    assert shares(Gap(None, 10), 7, bounds) == {1: 7}  # a range holds the readings in [a, b)
    assert shares(Gap(None, 30), 7, bounds) == {}


def test_what_lies_outside_the_bounds_is_in_no_range() -> None:
    gap = Gap(0, 100)
    assert shares(gap, 1_000, [50, 60]) == {0: 100}
    assert shares(gap, 1_000, [100, 200]) == {}
    assert shares(gap, 1_000, [-50, 0]) == {}
    assert shares(gap, 0, [0, 100]) == {}


def test_the_overlap_of_a_gap_and_a_range() -> None:
    gap = Gap(10, 20)
    assert gap.overlaps(0, 11) and gap.overlaps(19, 30)
    assert not gap.overlaps(0, 10) and not gap.overlaps(20, 30)
    assert Gap(None, 20).overlaps(20, 21) and not Gap(None, 20).overlaps(0, 20)


spans = st.tuples(
    st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=1, max_value=10**8)
)


@given(
    span=spans,
    amount=st.integers(min_value=0, max_value=10**12),
    cuts=st.lists(st.integers(min_value=-(10**8), max_value=2 * 10**8), max_size=12),
)
def test_the_shares_add_up_and_a_range_is_the_sum_of_its_parts(
    span: tuple[int, int], amount: int, cuts: list[int]
) -> None:
    start, length = span
    end = start + length
    gap = Gap(start, end)
    bounds = sorted({start - 1, end + 1, *(start + c for c in cuts)})
    found = shares(gap, amount, bounds)
    assert sum(found.values()) == amount  # ranges that cover the gap hold all of it
    for i, part in found.items():
        overlap = min(end, bounds[i + 1]) - max(start, bounds[i])
        assert abs(part - amount * overlap / length) < 1 + amount * 1e-15
    coarse = [bounds[0], *bounds[2::2], bounds[-1]]  # fewer cuts: each the sum of its parts
    for j, part in shares(gap, amount, coarse).items():
        inside = [p for i, p in found.items() if coarse[j] <= bounds[i] < coarse[j + 1]]
        assert part == sum(inside)


@given(
    start=st.integers(min_value=0, max_value=10**12),
    length=st.integers(min_value=1, max_value=86_400_000),
    window_min=st.sampled_from([1, 5, 15, 60]),
    amount=st.integers(min_value=0, max_value=10**10),
)
def test_the_windows_of_the_bridge_hold_the_same_shares(
    start: int, length: int, window_min: int, amount: int
) -> None:
    """As `core.windows` shares an estimate over aligned windows, to within a µWh."""
    window_ms = window_min * MINUTE_MS
    end = start + length
    windows = _shares(start, end, window_ms, [float(amount)])
    first = min(windows)
    bounds = [*sorted(windows), max(windows) + window_ms]
    found = shares(Gap(start, end), amount, bounds)
    for i, window in enumerate(bounds[:-1]):
        (_, (part,)) = windows[window]
        assert found.get(i, 0) == pytest.approx(part, abs=1 + amount * 1e-12), window - first
