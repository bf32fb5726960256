"""The meter's registers as a second witness: gap estimates, resolution, and meter events."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.witness import (
    RegisterRead,
    RegisterSpec,
    Witness,
    Witnesses,
    across_event,
    judge,
    most_wh,
    observe,
    rebased,
)

KWH_FLOAT = RegisterSpec("float32", 1000.0)  # an Eastron's kWh register
WH_UINT32 = RegisterSpec("uint32", 1.0)  # a Wh counter that rolls over at 2^32 Wh
MAX_W = 20_000.0
T0 = 1_767_225_600_000
HOUR_MS = 3_600_000


def trusted(value_wh: float, ts_ms: int = T0) -> Witness:
    return Witness(value_wh, ts_ms, trusted=True)


def judged(
    witness: Witness,
    value_wh: float | None,
    ts_ms: int = T0 + HOUR_MS,
    *,
    spec: RegisterSpec = KWH_FLOAT,
    gap: bool = True,
):  # type: ignore[no-untyped-def]
    return judge(
        witness, value_wh, ts_ms, spec=spec, max_power_w=MAX_W, register="import_energy_wh", gap=gap
    )


# -- resolution -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value_wh", "step_wh"),
    [
        (KWH_FLOAT, 98_765_000.0, 7.8125),  # 2^-7 kWh between 65,536 and 131,072 kWh
        (KWH_FLOAT, 1_000_000.0, 2**-14 * 1000),  # 1,000 kWh is inside [512, 1024)
        (KWH_FLOAT, 1_500.0, 2**-23 * 1000),  # 1.5 kWh: 2^-23 kWh
        (KWH_FLOAT, 0.0, 0.0),
        (WH_UINT32, 123_456.0, 1.0),
        (RegisterSpec("int32", 10.0), 5_000.0, 10.0),  # a register in steps of 0.01 kWh
    ],
)
def test_a_registers_resolution_is_the_step_it_moves_in_near_its_value(
    spec: RegisterSpec, value_wh: float, step_wh: float
) -> None:
    assert spec.resolution_wh(value_wh) == pytest.approx(step_wh, rel=1e-12)


def test_an_integer_register_wraps_at_its_range_a_float_one_never() -> None:
    assert WH_UINT32.wrap_wh == 2**32
    assert RegisterSpec("uint16", 10.0).wrap_wh == 2**16 * 10
    assert KWH_FLOAT.wrap_wh is None


# -- one register ---------------------------------------------------------------------------


def test_a_plausible_difference_across_a_gap_is_the_estimate() -> None:
    found = judged(trusted(1_000_000.0), 1_000_500.0)
    assert found.estimated_uwh == 500_000_000
    assert found.event is None
    assert found.witness == trusted(1_000_500.0, T0 + HOUR_MS)


def test_without_a_gap_the_register_only_moves_the_baseline() -> None:
    found = judged(trusted(1_000_000.0), 1_000_500.0, gap=False)
    assert found.estimated_uwh is None and found.event is None
    assert found.witness == trusted(1_000_500.0, T0 + HOUR_MS)


def test_the_most_a_meter_can_count_bounds_the_estimate() -> None:
    most = most_wh(MAX_W, 3600)
    assert most == pytest.approx(20_000 * 1.01)
    step = KWH_FLOAT.resolution_wh(1_020_000.0)
    at_most = judged(trusted(1_000_000.0), 1_000_000.0 + most + step)
    # no event (within the register's rounding), and the estimate held to what the meter can
    # count: the bound the bridge holds an estimate to
    assert at_most.event is None and at_most.estimated_uwh == math.floor(most * 1e6)
    beyond = judged(trusted(1_000_000.0), 1_000_000.0 + most + 3 * step)
    assert beyond.estimated_uwh is None
    assert beyond.event is not None and beyond.event.kind == "jump"


def test_a_small_step_back_within_the_resolution_is_no_energy_and_no_event() -> None:
    start = 98_765_000.0
    found = judged(trusted(start), start - 7.8125)  # one float32 step below
    assert found.event is None
    assert found.estimated_uwh == 0
    assert found.witness.trusted and found.witness.value_wh == start - 7.8125
    # two steps back is more than the register's rounding: an event
    assert judged(trusted(start), start - 2 * 7.8125 - 0.1).event is not None


@pytest.mark.parametrize(
    ("spec", "before", "after", "kind"),
    [
        (KWH_FLOAT, 5_000_000.0, 2_000_000.0, "replaced"),  # another meter with its own count
        (KWH_FLOAT, 5_000_000.0, 12.5, "reset"),  # cleared from the front panel
        (KWH_FLOAT, 5_000_000.0, 15_000.0, "reset"),  # a new meter that counted an hour at 15 kW
        (WH_UINT32, 2**32 - 2_000.0, 700.0, "rollover"),  # an integer register near its top
        (WH_UINT32, 2**31, 700.0, "reset"),  # not near its top: not a rollover
        (KWH_FLOAT, 5_000_000.0, 5_500_000.0, "jump"),  # 500 kWh in an hour of a 20 kW meter
    ],
)
def test_a_register_that_goes_back_or_jumps_is_an_event_and_no_witness(
    spec: RegisterSpec, before: float, after: float, kind: str
) -> None:
    found = judged(trusted(before), after, spec=spec)
    assert found.estimated_uwh is None
    assert found.event is not None
    assert (found.event.kind, found.event.before_wh, found.event.after_wh) == (kind, before, after)
    assert found.event.register == "import_energy_wh" and found.event.ts_ms == T0 + HOUR_MS
    assert found.witness == Witness(after, T0 + HOUR_MS, trusted=False)


def test_an_episode_is_one_event_and_a_plausible_step_makes_a_new_baseline() -> None:
    minute = 60_000
    first = judged(trusted(5_000_000.0), 10.0, T0 + minute)
    assert first.event is not None and first.event.kind == "reset"
    # still misbehaving: it moves the baseline, no second event
    second = judged(first.witness, 9_000_000.0, T0 + 2 * minute)
    assert second.event is None and not second.witness.trusted
    third = judged(second.witness, 20.0, T0 + 3 * minute)
    assert third.event is None and not third.witness.trusted
    # a plausible step from it: a baseline again, but no estimate from the untrusted one
    fourth = judged(third.witness, 30.0, T0 + 4 * minute)
    assert fourth.event is None and fourth.estimated_uwh is None
    assert fourth.witness == trusted(30.0, T0 + 4 * minute)
    # from there it bears witness across a gap again
    fifth = judged(fourth.witness, 130.0, T0 + 5 * minute)
    assert fifth.estimated_uwh == 100_000_000
    # and the next misbehaviour is a new episode: a new event
    sixth = judged(fifth.witness, 1.0, T0 + 6 * minute)
    assert sixth.event is not None


def test_an_unread_register_leaves_the_witness_as_it_was() -> None:
    witness = trusted(1_000.0)
    for value in (None, float("nan"), float("inf")):
        found = judged(witness, value)
        assert found.witness == witness and found.estimated_uwh is None and found.event is None


def test_the_first_read_is_the_baseline() -> None:
    found = judged(Witness(), 1_234.5)
    assert found == type(found)(trusted(1_234.5, T0 + HOUR_MS))


# -- both registers -------------------------------------------------------------------------

SPECS = {"import": KWH_FLOAT, "export": KWH_FLOAT}
BEFORE = Witnesses(trusted(1_000_000.0), trusted(200_000.0))


def observed(
    read: RegisterRead,
    witnesses: Witnesses = BEFORE,
    *,
    specs: dict[str, RegisterSpec] = SPECS,
    gap: bool = True,
    since_ms: int | None = None,
):  # type: ignore[no-untyped-def]
    return observe(witnesses, read, specs=specs, max_power_w=MAX_W, gap=gap, since_ms=since_ms)


def test_both_directions_are_estimated_together_with_their_resolution() -> None:
    found = observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0, 203_000.0), since_ms=T0)
    assert (found.estimated_uwh, found.estimated_export_uwh) == (400_000_000, 3_000_000_000)
    assert found.estimated and found.events == ()
    assert found.resolution_wh == KWH_FLOAT.resolution_wh(1_000_400.0)
    assert found.witnesses == Witnesses(
        trusted(1_000_400.0, T0 + HOUR_MS), trusted(203_000.0, T0 + HOUR_MS)
    )


def test_an_import_only_meter_is_estimated_on_its_import_register() -> None:
    found = observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0), specs={"import": KWH_FLOAT})
    assert (found.estimated_uwh, found.estimated_export_uwh) == (400_000_000, None)
    assert found.witnesses.export == BEFORE.export


def test_no_estimate_unless_every_register_bears_witness() -> None:
    unread = observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0, None))
    assert not unread.estimated
    assert unread.witnesses.import_ == trusted(1_000_400.0, T0 + HOUR_MS)
    assert unread.witnesses.export == BEFORE.export
    # an event on export: no estimate of import either, and the event is reported
    back = observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0, 5.0))
    assert not back.estimated
    assert [(e.kind, e.register) for e in back.events] == [("reset", "export_energy_wh")]
    # no gap: nothing to estimate
    assert not observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0, 203_000.0), gap=False).estimated


def test_a_register_last_read_before_the_gap_began_bears_no_witness_for_it() -> None:
    # the reading before the gap (at T0 + 1 min) did not return the registers: their
    # difference since T0 covers a minute that was measured already
    later = T0 + 60_000
    found = observed(RegisterRead(T0 + HOUR_MS, 1_000_400.0, 203_000.0), since_ms=later)
    assert not found.estimated
    assert found.witnesses.import_ == trusted(1_000_400.0, T0 + HOUR_MS)


def test_a_confirmed_new_start_rebases_one_register() -> None:
    at = T0 + 10 * HOUR_MS
    after = rebased(BEFORE, "import", 0.0, at)
    assert after == Witnesses(trusted(0.0, at), BEFORE.export)
    assert rebased(BEFORE, "export", 7.0, at) == Witnesses(BEFORE.import_, trusted(7.0, at))
    # the new meter's first read steps plausibly from the new start: no event
    found = observed(RegisterRead(at + HOUR_MS, 900.0, 200_000.0), after, gap=False)
    assert found.events == ()


@given(
    start=st.floats(0, 5e8),
    powers=st.lists(st.floats(0, MAX_W), min_size=1, max_size=20),
)
def test_estimates_of_an_honest_register_add_up_to_its_difference(
    start: float, powers: list[float]
) -> None:
    """Each gap's estimate is what the register counted, so their sum is its difference."""
    witness, value, total = trusted(start), start, 0
    for k, power in enumerate(powers, start=1):
        value += power  # an hour at `power`
        found = judged(witness, value, T0 + k * HOUR_MS)
        assert found.event is None and found.estimated_uwh is not None
        total += found.estimated_uwh
        witness = found.witness
    assert total == pytest.approx((value - start) * 1e6, abs=len(powers))


# --- across a confirmed replacement ------------------------------------------------------------


KWH32 = RegisterSpec("float32", 1000.0)


@pytest.mark.parametrize(
    ("before", "old_final", "new_start", "after", "expected"),
    [
        # 300 Wh on the old meter, 33.3 on the new: 333.3 Wh in the gap
        (98_765_400.0, 98_765_700.0, 0.0, 33.3, 333.3),
        # a final read one register step below the last read (rounding): nothing on the old
        (98_765_400.0, 98_765_400.0 - 7.8, 10.0, 110.0, 100.0),
        # the old meter's final before its last read: not its final
        (98_765_400.0, 98_765_000.0, 0.0, 33.3, None),
        # the new meter's first count above what it shows after the gap
        (1000.0, 1100.0, 500.0, 400.0, None),
        # 20 minutes at most 1 kW cannot count 400 Wh (333.3 Wh and four steps)
        (98_765_400.0, 98_765_780.0, 0.0, 20.0, None),
    ],
)
def test_a_gap_across_a_replacement_from_the_old_and_new_counts(
    before: float, old_final: float, new_start: float, after: float, expected: float | None
) -> None:
    found = across_event(
        before, old_final, new_start, after, span_s=1200.0, spec=KWH32, max_power_w=1000.0
    )
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


def test_an_estimate_at_the_bound_is_admitted_by_the_bridge() -> None:
    """What the logger estimates near its bound passes the bridge's check (core.incoming):
    a float32 kWh register near 98,765 kWh (7.8 Wh steps) on a 1 kW meter over a 60 s gap,
    whose registers moved three steps (23.4 Wh) where the meter can count 16.8 Wh."""
    import json

    from campus_energy.core.incoming import Admitted, Limits, admit
    from campus_energy.core.readings import Reading

    spec = RegisterSpec("float32", 1000.0)
    start = 98_765_000.0
    witnesses = Witnesses(Witness(start, 0, trusted=True), Witness(0.0, 0, trusted=True))
    seen = observe(
        witnesses,
        RegisterRead(60_000, start + 3 * 7.8125, 0.0),
        specs={"import": spec, "export": spec},
        max_power_w=1000.0,
        gap=True,
        since_ms=0,
    )
    assert seen.estimated_uwh == math.floor(most_wh(1000.0, 60) * 1e6)
    ts = 1_767_225_600_000
    reading = Reading(
        "m",
        ts,
        2,
        0,
        0,
        {"power_w": 900.0},
        estimated_uwh=seen.estimated_uwh,
        estimated_export_uwh=seen.estimated_export_uwh,
        estimated_start_ms=ts - 60_000,
    )
    verdict = admit(
        "campus/energy/m/reading",
        json.dumps(reading.payload("", "")).encode(),
        prefix="campus/energy",
        now_ms=ts,
        limits={"m": Limits(max_power_w=1000.0)},
    )
    assert isinstance(verdict, Admitted), verdict


def test_import_and_export_together_are_held_to_what_the_meter_moves() -> None:
    spec = RegisterSpec("float32", 1000.0)
    witnesses = Witnesses(Witness(5_000.0, 0, trusted=True), Witness(3_000.0, 0, trusted=True))
    # 1 kW over 60 s moves 16.83 Wh at most; the registers say 12 + 12
    seen = observe(
        witnesses,
        RegisterRead(60_000, 5_012.0, 3_012.0),
        specs={"import": spec, "export": spec},
        max_power_w=1000.0,
        gap=True,
        since_ms=0,
    )
    assert seen.estimated_uwh is not None and seen.estimated_export_uwh is not None
    most = math.floor(most_wh(1000.0, 60) * 1e6)
    assert seen.estimated_uwh + seen.estimated_export_uwh <= most
    assert seen.estimated_uwh == seen.estimated_export_uwh  # shared down alike


def test_a_confirmed_replacement_carries_the_old_count_across_the_gap() -> None:
    """A person's record of a replacement inside a gap the logger has not seen the end of yet:
    the read after the gap estimates the whole gap from the old and new counts."""
    spec = RegisterSpec("float32", 1000.0)
    before = Witnesses(Witness(98_765_400.0, 0, trusted=True), Witness(0.0, 0, trusted=True))
    witnesses = rebased(
        before,
        "import",
        0.0,  # the new meter's first count, at 8 minutes
        480_000,
        spec=spec,
        old_final_wh=98_765_400.0 + 133.3,  # the old meter counted 133.3 Wh more
        event_id=7,
    )
    assert witnesses.import_.ts_ms == 0 and witnesses.import_.rebased_by == 7
    seen = observe(
        witnesses,
        RegisterRead(1_200_000, 200.0, 0.0),  # 20 minutes: the new meter shows 200 Wh
        specs={"import": spec, "export": spec},
        max_power_w=1000.0,
        gap=True,
        since_ms=0,
    )
    assert seen.events == ()
    assert seen.estimated_uwh == pytest.approx(333.3e6, abs=1)
    # without the old meter's final, the baseline is the new start at the event: no estimate
    plain = rebased(before, "import", 0.0, 480_000, spec=spec, event_id=7)
    assert plain.import_.ts_ms == 480_000
    assert not observe(
        plain,
        RegisterRead(1_200_000, 200.0, 0.0),
        specs={"import": spec, "export": spec},
        max_power_w=1000.0,
        gap=True,
        since_ms=0,
    ).estimated
