"""The read planner under what a device refuses: forbidden registers, refused fields, a shorter
request limit; optimal against brute force, and the pieces the poller learns with."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.models import Profile
from campus_energy.core.planner import (
    BusCostModel,
    Extent,
    ReadRequest,
    Refusals,
    merge_extents,
    plan_profile,
    plan_spans,
    profile_fingerprint,
    span_of,
    split_fields,
)
from campus_energy.meters.profiles import builtin_profiles

UNIT = BusCostModel(request_overhead_s=1.0, register_s=0.01)
TCP = BusCostModel.tcp()
SDM120 = builtin_profiles()["eastron-sdm120"]


def spans(requests: tuple[ReadRequest, ...]) -> list[tuple[int, int]]:
    return [(r.start, r.count) for r in requests]


def covers_any(request: ReadRequest, forbidden: list[Extent]) -> bool:
    return any(f.start < request.end and request.start < f.end for f in forbidden)


def test_golden_a_forbidden_register_splits_the_one_span() -> None:
    fields = [Extent(a, a + 1) for a in (1, 2, 3, 5, 6, 10, 11, 12, 14)]
    plan = plan_spans(fields, function=3, cost=UNIT, max_registers=125, forbidden=[Extent(8, 9)])
    assert spans(plan) == [(1, 6), (10, 5)]


def test_golden_sdm120_whose_gaps_are_refused_reads_only_its_fields() -> None:
    gaps = [Extent(2, 6), Extent(8, 12), Extent(14, 30), Extent(32, 70)]
    plan = plan_profile(SDM120, TCP, Refusals(registers=tuple(gaps)))
    assert spans(plan) == [(0, 2), (6, 2), (12, 2), (30, 2), (70, 6)]
    assert spans(plan_profile(SDM120, TCP)) == [(0, 76)]  # what it reads without refusals


def test_a_refused_field_is_left_out_and_its_registers_never_covered() -> None:
    refusals = Refusals(fields=("frequency_hz",))
    plan = plan_profile(SDM120, TCP, refusals)
    frequency = Extent(0x46, 0x48)
    assert not any(covers_any(r, [frequency]) for r in plan)
    assert spans(plan) == [(0, 32), (72, 4)]


def test_a_learned_request_limit_shortens_requests_but_never_splits_a_field() -> None:
    plan = plan_profile(SDM120, TCP, Refusals(max_registers=40))
    assert all(r.count <= 40 for r in plan)
    tiny = plan_profile(SDM120, TCP, Refusals(max_registers=1))
    assert spans(tiny) == [(0, 2), (6, 2), (12, 2), (30, 2), (70, 2), (72, 2), (74, 2)]


def test_an_extent_covering_a_forbidden_register_is_an_error() -> None:
    with pytest.raises(ValueError, match="forbidden"):
        plan_spans(
            [Extent(0, 2)], function=4, cost=UNIT, max_registers=10, forbidden=[Extent(1, 2)]
        )


def test_refusals_are_kept_merged_sorted_and_joined() -> None:
    a = Refusals(registers=(Extent(8, 10), Extent(2, 4), Extent(4, 6)), fields=("b", "a", "b"))
    assert a.registers == (Extent(2, 6), Extent(8, 10))
    assert a.fields == ("a", "b")
    b = Refusals(registers=(Extent(10, 12),), max_registers=20)
    joined = a.joined(b)
    assert joined.registers == (Extent(2, 6), Extent(8, 12))
    assert joined.max_registers == 20
    assert joined.joined(Refusals(max_registers=30)).max_registers == 20
    assert not Refusals()
    assert Refusals(max_registers=5)


def test_a_refused_required_field_does_not_last() -> None:
    refusals = Refusals(registers=(Extent(2, 6),), fields=("power_w", "frequency_hz"))
    assert refusals.lasting() == Refusals(registers=(Extent(2, 6),), fields=("frequency_hz",))


def test_split_halves_on_field_boundaries_and_names_the_gap_between() -> None:
    split = split_fields([Extent(12, 14), Extent(0, 2), Extent(6, 8), Extent(30, 32)])
    assert split.first == (Extent(0, 2), Extent(6, 8))
    assert split.second == (Extent(12, 14), Extent(30, 32))
    assert split.gap == Extent(8, 12)
    touching = split_fields([Extent(70, 72), Extent(72, 74)])
    assert touching.gap.start == touching.gap.end
    assert span_of(split.second, 4) == ReadRequest(4, 12, 20)
    with pytest.raises(ValueError):
        split_fields([Extent(0, 2), Extent(0, 2)])


def test_the_fingerprint_follows_the_register_map_only() -> None:
    same = SDM120.model_copy(update={"description": "another text", "pause_between_requests_s": 1})
    assert profile_fingerprint(same) == profile_fingerprint(SDM120)
    fields = list(SDM120.fields)
    fields[-1] = fields[-1].model_copy(update={"address": 0x0156})
    moved = Profile.model_validate({**SDM120.model_dump(), "fields": fields})
    assert profile_fingerprint(moved) != profile_fingerprint(SDM120)
    holding = SDM120.model_copy(update={"function": "holding"})
    assert profile_fingerprint(holding) != profile_fingerprint(SDM120)


# --- optimality against brute force ------------------------------------------------------------


def brute_force_cost(
    extents: list[Extent], cost: BusCostModel, max_registers: int, forbidden: list[Extent]
) -> float:
    """The cheapest cover by any set of legal requests (each from a field's start to a
    field's end), found by search over which requests to take."""
    starts = sorted({e.start for e in extents})
    ends = sorted({e.end for e in extents})
    legal = [
        ReadRequest(4, s, e - s)
        for s in starts
        for e in ends
        if 0 < e - s <= max_registers and not covers_any(ReadRequest(4, s, e - s), forbidden)
    ]
    best = float("inf")

    def search(i: int, chosen: list[ReadRequest], total: float) -> None:
        nonlocal best
        if total >= best:
            return
        if i == len(extents):
            best = total
            return
        item = extents[i]
        if any(r.start <= item.start and item.end <= r.end for r in chosen):
            search(i + 1, chosen, total)
            return
        for r in legal:
            if r.start <= item.start and item.end <= r.end:
                search(i + 1, [*chosen, r], total + cost.request_s(r.count))

    search(0, [], 0.0)
    return best


@st.composite
def planning_cases(draw: st.DrawFn) -> tuple[list[Extent], list[Extent]]:
    extents: list[Extent] = []
    forbidden: list[Extent] = []
    address = draw(st.integers(0, 5))
    for _ in range(draw(st.integers(1, 7))):
        width = draw(st.sampled_from([1, 2]))
        extents.append(Extent(address, address + width))
        gap = draw(st.integers(0, 12))
        if gap and draw(st.booleans()):
            first = address + width + draw(st.integers(0, gap - 1))
            forbidden.append(
                Extent(first, first + draw(st.integers(1, address + width + gap - first)))
            )
        address += width + gap
    return extents, forbidden


@settings(max_examples=300, deadline=None)
@given(
    case=planning_cases(),
    overhead=st.floats(0.0, 2.0),
    per_register=st.floats(0.001, 0.5),
    max_registers=st.integers(2, 40),
)
def test_plan_with_forbidden_registers_is_as_cheap_as_brute_force(
    case: tuple[list[Extent], list[Extent]],
    overhead: float,
    per_register: float,
    max_registers: int,
) -> None:
    extents, forbidden = case
    cost = BusCostModel(overhead, per_register)
    plan = plan_spans(
        extents, function=4, cost=cost, max_registers=max_registers, forbidden=forbidden
    )
    assert not any(covers_any(r, forbidden) for r in plan)
    for extent in extents:
        assert any(r.start <= extent.start and extent.end <= r.end for r in plan)
    assert all(r.count <= max_registers for r in plan)
    assert cost.plan_s(plan) == pytest.approx(
        brute_force_cost(extents, cost, max_registers, forbidden), rel=1e-9, abs=1e-12
    )


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), max_size=10))
def test_merged_ranges_hold_the_same_registers(pairs: list[tuple[int, int]]) -> None:
    ranges = [Extent(a, a + w) for a, w in pairs]
    merged = merge_extents(ranges)
    assert {r for e in merged for r in range(e.start, e.end)} == {
        r for e in ranges for r in range(e.start, e.end)
    }
    assert all(a.end < b.start for a, b in itertools.pairwise(merged))
