"""The meter's own energy registers as a second witness: energy across gaps, and meter events.

A meter counts its import (and, where it has one, export) energy in registers
of its own, whether anyone polls it or not. The logger integrates power; where
an interval is too long to integrate (a burst of lost polls, a restart, a
reboot), the registers read on both sides of the gap say what the meter
counted meanwhile. That difference is recorded as *estimated* energy, kept
apart from measured energy, when it is plausible: not negative, and at most
the meter's maximum power over the gap (plus the register's resolution).

A register that goes backwards, or forwards by more than the maximum power can
deliver, is an event, not data (`EVENT_KINDS`):

- `rollover`: an integer register near the top of its range starts again near 0;
- `reset`: the register starts again near 0 (cleared from the front panel);
- `replaced`: it goes back to some other value (another meter, with its own count);
- `jump`: it moves forward further than the meter can count in the time.

After an event the register is no witness until a new baseline is established:
the read after the event becomes the baseline, and it is trusted once a later
read steps plausibly from it. Further implausible steps before then move the
baseline without another event, so a register that keeps misbehaving is one
event, not one per poll.

A register's resolution (`resolution_wh`) is the step it moves in near its
value: a float32 kWh register near 98,765 kWh moves in steps of 2^-7 kWh
(7.8 Wh), so a difference of two reads is known to within one step.

Pure: every time and value comes in as an argument.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace

from campus_energy.core.energy import UWH_PER_WH
from campus_energy.core.models import Profile
from campus_energy.core.registers import REGISTER_TYPES

EVENT_KINDS = ("replaced", "reset", "rollover", "jump")
DIRECTIONS = ("import", "export")
REGISTER_FIELDS: Mapping[str, str] = {  # direction -> the profiles' name of its register
    "import": "import_energy_wh",
    "export": "export_energy_wh",
}
PLAUSIBLE_SLACK = 0.01  # clock rates: a register may move 1 % more than max power × time
ROLLOVER_NEAR = 0.9  # an integer register beyond this share of its range may roll over
NEAR_ZERO_WH = 1000.0  # a register that goes back to at most this has started again from 0


@dataclass(frozen=True)
class RegisterSpec:
    """How a meter's energy register is laid out: its type and the Wh of one raw unit."""

    type: str  # one of core.registers.REGISTER_TYPES
    scale: float  # Wh per raw unit (1000 for a kWh register)

    def resolution_wh(self, value_wh: float) -> float:
        """The step, in Wh, in which the register moves near `value_wh`."""
        rtype = REGISTER_TYPES[self.type]
        if not rtype.is_float:
            return abs(self.scale)
        raw = abs(value_wh / self.scale)
        if raw == 0 or not math.isfinite(raw):
            return 0.0
        return _float32_ulp(raw) * abs(self.scale)

    @property
    def wrap_wh(self) -> float | None:
        """Where an integer register starts again at 0 (None for a float register)."""
        rtype = REGISTER_TYPES[self.type]
        if rtype.is_float:
            return None
        return (rtype.maximum + 1) * abs(self.scale)


def _float32_ulp(value: float) -> float:
    """The distance from float32 `value` to the next float32 up."""
    bits = struct.unpack(">I", struct.pack(">f", value))[0]
    above = struct.unpack(">f", struct.pack(">I", bits + 1))[0]
    below = struct.unpack(">f", struct.pack(">I", bits))[0]
    return float(above - below)


def register_specs(profile: Profile) -> dict[str, RegisterSpec]:
    """The layout of a profile's energy registers, by direction (none: the profile reads none)."""
    direction_of = {name: direction for direction, name in REGISTER_FIELDS.items()}
    found = {}
    for spec in profile.fields:
        direction = direction_of.get(spec.name)
        if direction is not None:
            found[direction] = RegisterSpec(spec.type, spec.scale)
    return found


@dataclass(frozen=True)
class RegisterRead:
    """A meter's energy registers as one reading read them (None: not read)."""

    ts_ms: int
    import_wh: float | None = None
    export_wh: float | None = None

    def of(self, direction: str) -> float | None:
        return self.import_wh if direction == "import" else self.export_wh


@dataclass(frozen=True)
class Witness:
    """What the logger remembers of one register between reads: the last read value and time,
    and whether it is a baseline the register can bear witness from."""

    value_wh: float | None = None
    ts_ms: int | None = None
    trusted: bool = False  # False: after an event, until a read steps plausibly from it
    rebased_by: int | None = None  # the confirmed event (id) a person's counts set it from


@dataclass(frozen=True)
class RegisterEvent:
    """A register that went backwards or jumped: `before_wh` at the read before, `after_wh`
    now."""

    ts_ms: int
    kind: str  # one of EVENT_KINDS
    register: str  # the profile's field: import_energy_wh or export_energy_wh
    before_wh: float
    after_wh: float
    detail: str


@dataclass(frozen=True)
class Judgement:
    """What one read of a register says: the witness afterwards, the energy the register
    counted across a gap (µWh; None: no estimate), and an event."""

    witness: Witness
    estimated_uwh: int | None = None
    event: RegisterEvent | None = None


def most_wh(max_power_w: float, span_s: float) -> float:
    """The most energy a meter of `max_power_w` can count in `span_s` seconds."""
    return max_power_w * max(span_s, 0.0) / 3600 * (1 + PLAUSIBLE_SLACK)


def judge(
    witness: Witness,
    value_wh: float | None,
    ts_ms: int,
    *,
    spec: RegisterSpec,
    max_power_w: float,
    register: str,
    gap: bool,
) -> Judgement:
    """Judge one read of a register against the last (`gap`: the interval since was not
    integrated, so a plausible difference is an estimate)."""
    if value_wh is None or not math.isfinite(value_wh):
        return Judgement(witness)  # not read: the last read stays the baseline
    now = Witness(value_wh, ts_ms, trusted=True)
    before = witness.value_wh
    if before is None or witness.ts_ms is None:
        return Judgement(now)  # the first read: a baseline
    span_s = (ts_ms - witness.ts_ms) / 1000
    step = max(spec.resolution_wh(before), spec.resolution_wh(value_wh))
    delta = value_wh - before
    if -step <= delta <= most_wh(max_power_w, span_s) + 2 * step:
        if not witness.trusted:
            return Judgement(now)  # a new baseline, established: a witness from here on
        # a count beyond what the meter can draw in the time is the register's rounding:
        # the estimate is held to the bound the bridge holds it to
        counted = min(max(delta, 0.0), most_wh(max_power_w, span_s))
        estimated = math.floor(counted * UWH_PER_WH) if gap else None
        return Judgement(now, estimated_uwh=estimated)
    untrusted = Witness(value_wh, ts_ms, trusted=False)
    if not witness.trusted:
        return Judgement(untrusted)  # still settling after an event: no second event
    kind = _kind(before, value_wh, delta, spec, max_power_w, span_s)
    detail = (
        f"{register} went from {before:.1f} Wh to {value_wh:.1f} Wh in {span_s:g} s "
        f"({_words[kind]})"
    )
    event = RegisterEvent(ts_ms, kind, register, before, value_wh, detail)
    return Judgement(untrusted, event=event)


_words = {
    "rollover": "it rolled over at the top of its range",
    "reset": "it started again near 0",
    "replaced": "it went backwards: another meter, or one reset to another value",
    "jump": "more than the meter's maximum power can count in the time",
}


def _kind(
    before: float, after: float, delta: float, spec: RegisterSpec, max_power_w: float, span_s: float
) -> str:
    if delta > 0:
        return "jump"
    counted = most_wh(max_power_w, span_s) + 2 * spec.resolution_wh(after)
    near_zero = after <= max(NEAR_ZERO_WH, counted)
    wrap = spec.wrap_wh
    if wrap is not None and before >= ROLLOVER_NEAR * wrap and near_zero:
        return "rollover"
    return "reset" if near_zero else "replaced"


@dataclass(frozen=True)
class Witnesses:
    """A meter's two registers' witnesses."""

    import_: Witness = Witness()
    export: Witness = Witness()

    def of(self, direction: str) -> Witness:
        return self.import_ if direction == "import" else self.export


@dataclass(frozen=True)
class Observed:
    """What one reading's registers say: the witnesses afterwards, the estimate of a gap
    (None per direction: none), its resolution, and the events."""

    witnesses: Witnesses
    estimated_uwh: int | None = None
    estimated_export_uwh: int | None = None
    resolution_wh: float = 0.0  # the estimate is known to within this (both directions)
    events: tuple[RegisterEvent, ...] = ()

    @property
    def estimated(self) -> bool:
        return self.estimated_uwh is not None or self.estimated_export_uwh is not None


def observe(
    witnesses: Witnesses,
    read: RegisterRead,
    *,
    specs: Mapping[str, RegisterSpec],
    max_power_w: float,
    gap: bool,
    since_ms: int | None = None,
) -> Observed:
    """Judge a reading's registers (`specs`: direction -> the register's layout; a direction
    without one is not judged). An estimate is made only when every register the meter has
    bears witness across the gap, so import and export are estimated together or not at all.

    `since_ms` is where the gap starts (the previous reading's time): a register last read
    at another time (a reading between without it, a baseline a person set) would span
    more or less than the gap, so it bears no witness for it."""
    if since_ms is not None and any(
        witnesses.of(d).ts_ms != since_ms for d in DIRECTIONS if d in specs
    ):
        gap = False
    judged: dict[str, Judgement] = {}
    for direction in DIRECTIONS:
        spec = specs.get(direction)
        if spec is None:
            continue
        judged[direction] = judge(
            witnesses.of(direction),
            read.of(direction),
            read.ts_ms,
            spec=spec,
            max_power_w=max_power_w,
            register=REGISTER_FIELDS[direction],
            gap=gap,
        )
    after = Witnesses(
        import_=judged["import"].witness if "import" in judged else witnesses.import_,
        export=judged["export"].witness if "export" in judged else witnesses.export,
    )
    events = tuple(j.event for j in judged.values() if j.event is not None)
    complete = bool(judged) and all(j.estimated_uwh is not None for j in judged.values())
    if not gap or not complete:
        return Observed(after, events=events)
    resolution = 0.0
    for direction in judged:
        value = read.of(direction)
        assert value is not None
        resolution = max(resolution, specs[direction].resolution_wh(value))
    imported = judged["import"].estimated_uwh if "import" in judged else None
    exported = judged["export"].estimated_uwh if "export" in judged else None
    # Import and export together are at most what the meter's largest power moves in the gap
    # (|power| bounds both): a sum beyond it (two registers' rounding) is shared down.
    spans = [witnesses.of(d).ts_ms for d in judged]
    start = since_ms if since_ms is not None else min(t for t in spans if t is not None)
    most = math.floor(most_wh(max_power_w, (read.ts_ms - start) / 1000) * UWH_PER_WH)
    total = (imported or 0) + (exported or 0)
    if total > most:
        imported = None if imported is None else imported * most // total
        exported = None if exported is None else exported * most // total
    return Observed(
        after,
        estimated_uwh=imported,
        estimated_export_uwh=exported,
        resolution_wh=resolution,
        events=events,
    )


def rebased(
    witnesses: Witnesses,
    direction: str,
    value_wh: float,
    ts_ms: int,
    *,
    spec: RegisterSpec | None = None,
    old_final_wh: float | None = None,
    event_id: int | None = None,
) -> Witnesses:
    """The witnesses with a register's baseline set by a person (a confirmed replacement's
    new start `value_wh` at `ts_ms`).

    When the person also gave the old meter's final count and the register was last read,
    trusted, before the event, the new meter's count is carried on from that read: the
    baseline is the new start less what the old meter counted from that read to its final,
    at that read's time. The read after the gap then estimates the whole gap, as
    `across_event` does ((old final − the read before) + (the read after − new start)).
    Otherwise the baseline is the new start at the event's time (nothing estimated across
    the part before it). `event_id` marks the baseline as that event's, so it is set once."""
    last = witnesses.of(direction)
    carried = (
        old_final_wh is not None
        and spec is not None
        and last.trusted
        and last.value_wh is not None
        and last.ts_ms is not None
        and last.ts_ms < ts_ms
        and old_final_wh >= last.value_wh - spec.resolution_wh(last.value_wh)
    )
    if carried:
        assert old_final_wh is not None and last.value_wh is not None
        counted = max(old_final_wh - last.value_wh, 0.0)
        fresh = Witness(value_wh - counted, last.ts_ms, trusted=True, rebased_by=event_id)
    else:
        fresh = Witness(value_wh, ts_ms, trusted=True, rebased_by=event_id)
    if direction == "import":
        return replace(witnesses, import_=fresh)
    return replace(witnesses, export=fresh)


def across_event(
    before_wh: float,
    old_final_wh: float,
    new_start_wh: float,
    after_wh: float,
    *,
    span_s: float,
    spec: RegisterSpec,
    max_power_w: float,
) -> float | None:
    """What a register counted across a gap in which its meter was replaced (or reset), from a
    person's record of the old meter's final count and the new one's first: the old meter's
    count from the read before the gap to its final, plus the new one's from its start to the
    read after. None when either part goes backwards by more than the register's step, or
    the sum is more than the meter's largest power can count in the gap."""
    step = max(spec.resolution_wh(v) for v in (before_wh, old_final_wh, new_start_wh, after_wh))
    old_part, new_part = old_final_wh - before_wh, after_wh - new_start_wh
    if old_part < -step or new_part < -step:
        return None
    counted = max(old_part, 0.0) + max(new_part, 0.0)
    if counted > most_wh(max_power_w, span_s) + 4 * step:
        return None
    return counted
