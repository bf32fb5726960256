"""The logger's second witness, without Modbus: which readings the registers bridge, the meter
events they give, and a person's confirmed new start."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.support.config import make_config, meter_at, tcp_bus

from campus_energy.config import Config
from campus_energy.core.energy import Step
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.core.witness import RegisterSpec, Witness, Witnesses, register_specs
from campus_energy.logger.registers import Registers

T0 = 1_767_225_600_000
KWH_FLOAT = RegisterSpec("float32", 1000.0)


def config(**extra: Any) -> Config:
    meters = [
        meter_at("lab", "plant", 1, "eastron-sdm120", **extra),
        meter_at("old", "plant", 2, "campus-legacy"),
    ]
    return make_config([tcp_bus()], meters)


def registers(witnesses: Witnesses, **extra: Any) -> Registers:
    found = config(**extra)
    meter = found.meters[0]
    return Registers.of(meter, found.profile_of(meter), found.power_limit_w(meter), witnesses)


BEFORE = Witnesses(Witness(1_000_000.0, T0, True), Witness(5_000.0, T0, True))
HOUR = 3_600_000


def reading_at(ts_ms: int, import_wh: float | None, export_wh: float | None) -> Reading:
    values = {"power_w": 100.0, "import_energy_wh": import_wh, "export_energy_wh": export_wh}
    return Reading("lab", ts_ms, 2, 0, 0, {k: v for k, v in values.items() if v is not None})


def step_at(ts_ms: int, gap_s: float | None) -> Step:
    return Step(ts_ms, 2, 0, 0, gap_s)


def test_the_profiles_registers_are_its_energy_fields() -> None:
    found = config()
    assert register_specs(found.profile_of(found.meters[0])) == {
        "import": KWH_FLOAT,
        "export": KWH_FLOAT,
    }
    assert register_specs(found.profile_of(found.meters[1])) == {}  # campus-legacy reads none


def test_a_gap_is_bridged_with_the_registers_difference() -> None:
    found, after, events = registers(BEFORE).witness(
        reading_at(T0 + HOUR, 1_001_000.0, 5_250.0), step_at(T0 + HOUR, 3600.0), T0, T0 + HOUR
    )
    assert (found.estimated_uwh, found.estimated_export_uwh) == (1_000_000_000, 250_000_000)
    assert found.estimated_start_ms == T0 and events == []
    assert after.witnesses.import_ == Witness(1_001_000.0, T0 + HOUR, True)


def test_what_bridges_no_gap() -> None:
    later = reading_at(T0 + HOUR, 1_001_000.0, 5_250.0)
    cases = [
        (registers(BEFORE), step_at(T0 + HOUR, None), T0),  # no gap: integrated
        (registers(BEFORE), step_at(T0 + HOUR, 3600.0), T0 + 1_000),  # read before the gap
        (registers(BEFORE, estimate_gaps=False), step_at(T0 + HOUR, 3600.0), T0),
        (registers(BEFORE, max_estimate_gap_s=1800), step_at(T0 + HOUR, 3600.0), T0),
        (registers(BEFORE), step_at(T0 + HOUR, 3600.0), None),  # the first reading
    ]
    for witness, step, previous in cases:
        found, after, events = witness.witness(later, step, previous, T0 + HOUR)
        assert not found.estimated and found == later and events == []
        assert after.witnesses.import_.value_wh == 1_001_000.0  # the baseline moves on
    # a reading without its registers leaves them as they were
    bare = reading_at(T0 + HOUR, None, None)
    found, after, _ = registers(BEFORE).witness(bare, step_at(T0 + HOUR, 3600.0), T0, T0 + HOUR)
    assert found == bare and after.witnesses == BEFORE


def test_a_register_gone_back_is_a_detected_event() -> None:
    found, after, events = registers(BEFORE).witness(
        reading_at(T0 + 5_000, 12.5, 5_000.0), step_at(T0 + 5_000, None), T0, T0 + 5_010
    )
    assert not found.estimated
    assert events == [
        MeterEvent(
            "lab",
            T0 + 5_000,
            "reset",
            "detected",
            register="import_energy_wh",
            before_wh=1_000_000.0,
            after_wh=12.5,
            note=events[0].note,
            recorded_ms=T0 + 5_010,
        )
    ]
    assert "import_energy_wh went from 1000000.0 Wh to 12.5 Wh" in events[0].note
    assert not after.witnesses.import_.trusted


def test_without_a_largest_power_the_registers_are_not_judged() -> None:
    unbounded = replace(registers(BEFORE), limit_w=None)
    found, after, events = unbounded.witness(
        reading_at(T0 + 5_000, 12.5, 0.0), step_at(T0 + 5_000, 3600.0), T0, T0
    )
    assert not found.estimated and events == [] and after == unbounded


def test_a_confirmed_new_start_is_a_baseline_only_if_the_register_was_not_read_since() -> None:
    new = MeterEvent("lab", T0 + HOUR, "replaced", "confirmed", new_start_wh=20.0)
    rebased = registers(BEFORE).confirmed(new)
    assert rebased is not None
    assert rebased.witnesses == Witnesses(Witness(20.0, T0 + HOUR, True), BEFORE.export)
    export = replace(new, register="export_energy_wh", new_start_wh=0.0)
    assert registers(BEFORE).confirmed(export) is not None
    assert registers(BEFORE).confirmed(replace(new, ts_ms=T0)) is None  # read at it
    assert registers(BEFORE).confirmed(replace(new, new_start_wh=None)) is None


def test_an_export_register_not_read_after_the_gap_leaves_the_gap_unestimated() -> None:
    """Import and export are estimated together or not at all: an import-only estimate would
    drop the gap's export for good (its witness would no longer start at the gap)."""
    found, after, events = registers(BEFORE).witness(
        reading_at(T0 + HOUR, 1_001_000.0, None), step_at(T0 + HOUR, 3600.0), T0, T0 + HOUR
    )
    assert not found.estimated and events == []
    assert after.witnesses.export == BEFORE.export  # still the read before the gap
    assert after.witnesses.import_.value_wh == 1_001_000.0


def test_a_confirmed_baseline_is_set_once() -> None:
    event = MeterEvent(
        "lab", T0 + 600_000, "replaced", "confirmed", old_final_wh=1_000_100.0,
        new_start_wh=0.0, id=4,
    )  # fmt: skip
    once = registers(BEFORE).confirmed(event)
    assert once is not None and once.witnesses.import_.rebased_by == 4
    assert once.witnesses.import_.value_wh == -100.0  # the new count, less the old one's last
    assert once.confirmed(event) is None  # set from it already


def test_a_register_that_went_back_is_settling_until_it_steps_plausibly() -> None:
    _, after, events = registers(BEFORE).witness(
        reading_at(T0 + 5_000, 12.0, 5_000.0), step_at(T0 + 5_000, None), T0, T0 + 5_000
    )
    assert [e.kind for e in events] == ["reset"] and after.settling() == ["import_energy_wh"]
    _, later, _ = after.witness(
        reading_at(T0 + 10_000, 12.5, 5_000.0), step_at(T0 + 10_000, None), T0 + 5_000, T0
    )
    assert later.settling() == []
