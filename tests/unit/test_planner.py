"""The read planner: golden cases and optimality against brute force."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.planner import (
    BusCostModel,
    Extent,
    ReadRequest,
    plan_per_field,
    plan_profile,
    plan_spans,
)
from campus_energy.meters.profiles import builtin_profiles

UNIT = BusCostModel(request_overhead_s=1.0, register_s=0.01)
SERIAL_9600 = BusCostModel.serial(9600)
SERIAL_2400 = BusCostModel.serial(2400)
TCP = BusCostModel.tcp()


def spans(requests: tuple[ReadRequest, ...]) -> list[tuple[int, int]]:
    return [(r.start, r.count) for r in requests]


def test_golden_no_fill_groups_only_contiguous_registers() -> None:
    fields = [Extent(a, a + 1) for a in (1, 2, 3, 5, 6, 10, 11, 12, 14)]
    plan = plan_spans(fields, function=3, cost=UNIT, max_registers=125, read_gaps=False)
    assert spans(plan) == [(1, 3), (5, 2), (10, 3), (14, 1)]


def test_golden_with_fill_and_costly_requests_reads_one_span() -> None:
    fields = [Extent(a, a + 1) for a in (1, 2, 3, 5, 6, 10, 11, 12, 14)]
    plan = plan_spans(fields, function=3, cost=UNIT, max_registers=125, read_gaps=True)
    assert spans(plan) == [(1, 14)]


def test_golden_long_gap_is_not_worth_reading() -> None:
    cheap_requests = BusCostModel(request_overhead_s=0.01, register_s=0.01)
    fields = [Extent(0, 2), Extent(100, 102)]
    plan = plan_spans(fields, function=4, cost=cheap_requests, max_registers=125)
    assert spans(plan) == [(0, 2), (100, 2)]


def test_golden_device_limit_splits_the_span() -> None:
    fields = [Extent(a, a + 2) for a in range(0, 80, 2)]
    plan = plan_spans(fields, function=4, cost=TCP, max_registers=50)
    assert all(r.count <= 50 for r in plan)
    assert len(plan) == 2
    assert sum(r.count for r in plan) == 80


def test_all_sdm120_fields_on_tcp_are_one_request() -> None:
    sdm120 = builtin_profiles()["eastron-sdm120"]
    assert spans(plan_profile(sdm120, TCP)) == [(0, 76)]


def test_every_builtin_plan_covers_every_field_within_the_device_limit() -> None:
    for profile in builtin_profiles().values():
        for cost in (SERIAL_2400, SERIAL_9600, TCP):
            plan = plan_profile(profile, cost)
            assert all(r.function == profile.function_code for r in plan)
            assert all(r.count <= profile.max_registers_per_request for r in plan)
            for field in profile.fields:
                assert any(r.start <= field.address and field.end <= r.end for r in plan), field
            assert cost.plan_s(plan) <= cost.plan_s(plan_per_field(profile)) + 1e-12


def test_a_field_wider_than_the_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="wider"):
        plan_spans([Extent(0, 4)], function=3, cost=UNIT, max_registers=2)


def test_serial_model_matches_the_field_notes() -> None:
    # 9600 8N1: 960 bytes/s; 74 registers = 8 + 5 + 148 = 161 bytes ≈ 168 ms on the wire.
    model = BusCostModel.serial(9600, turnaround_s=0.0)
    wire = (8 + 5 + 2 * 74) * 10 / 9600
    assert model.request_s(74) == pytest.approx(wire + 2 * 3.5 * 10 / 9600)
    assert BusCostModel.serial(9600, parity="E").register_s == pytest.approx(2 * 11 / 9600)


# --- optimality against brute force -----------------------------------------------------------


def set_partitions(items: list[Extent]) -> Iterator[list[list[Extent]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first], *partition]
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]


def brute_force_cost(
    extents: list[Extent], cost: BusCostModel, max_registers: int, read_gaps: bool
) -> float:
    covered = {r for e in extents for r in range(e.start, e.end)}
    best = float("inf")
    for partition in set_partitions(extents):
        total = 0.0
        for group in partition:
            start = min(e.start for e in group)
            end = max(e.end for e in group)
            if end - start > max_registers:
                break
            if not read_gaps and any(r not in covered for r in range(start, end)):
                break
            total += cost.request_s(end - start)
        else:
            best = min(best, total)
    return best


@st.composite
def field_sets(draw: st.DrawFn) -> list[Extent]:
    count = draw(st.integers(1, 7))
    extents = []
    address = draw(st.integers(0, 5))
    for _ in range(count):
        width = draw(st.sampled_from([1, 2]))
        extents.append(Extent(address, address + width))
        address += width + draw(st.integers(0, 12))
    return extents


@settings(max_examples=300, deadline=None)
@given(
    extents=field_sets(),
    overhead=st.floats(0.0, 2.0),
    per_register=st.floats(0.001, 0.5),
    max_registers=st.integers(2, 40),
    read_gaps=st.booleans(),
)
def test_plan_is_as_cheap_as_brute_force(
    extents: list[Extent],
    overhead: float,
    per_register: float,
    max_registers: int,
    read_gaps: bool,
) -> None:
    cost = BusCostModel(overhead, per_register)
    plan = plan_spans(
        extents, function=4, cost=cost, max_registers=max_registers, read_gaps=read_gaps
    )
    assert cost.plan_s(plan) == pytest.approx(
        brute_force_cost(extents, cost, max_registers, read_gaps), rel=1e-9, abs=1e-12
    )
    covered = {r for e in extents for r in range(e.start, e.end)}
    for extent in extents:
        assert any(r.start <= extent.start and extent.end <= r.end for r in plan)
    for request in plan:
        assert request.count <= max_registers
        if not read_gaps:
            assert all(r in covered for r in range(request.start, request.end))
