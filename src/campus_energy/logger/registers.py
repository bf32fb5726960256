"""The logger's use of a meter's own energy registers as a second witness (`core.witness`).

`Registers` is what the logger keeps of one meter's registers between readings:
their layout (from the profile), the largest power that makes a count plausible,
and the witnesses (restored from the store at start). `witness` judges a new
reading's registers: across a gap it puts what they counted on the reading as
estimated energy; a register that went back or jumped gives a detected
`MeterEvent`. `confirmed` sets a baseline a person gave (a new meter's first
count) when the register has not been read since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from campus_energy.config import MeterConfig
from campus_energy.core.energy import Step
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.models import Profile
from campus_energy.core.readings import Reading
from campus_energy.core.witness import (
    DIRECTIONS,
    REGISTER_FIELDS,
    RegisterRead,
    RegisterSpec,
    Witnesses,
    observe,
    rebased,
    register_specs,
)

DIRECTION_OF_REGISTER = {name: direction for direction, name in REGISTER_FIELDS.items()}


@dataclass(frozen=True)
class Registers:
    """A meter's energy registers as the logger knows them. Without a largest power (`limit_w`)
    nothing tells a plausible count from a jump: such a meter's registers are not judged."""

    meter: MeterConfig
    specs: Mapping[str, RegisterSpec] = field(default_factory=dict)  # direction -> layout
    limit_w: float | None = None
    witnesses: Witnesses = field(default_factory=Witnesses)

    @classmethod
    def of(
        cls, meter: MeterConfig, profile: Profile, limit_w: float | None, witnesses: Witnesses
    ) -> Registers:
        specs = register_specs(profile) if limit_w is not None else {}
        return cls(meter, specs, limit_w, witnesses)

    def witness(
        self, reading: Reading, step: Step, previous_ts: int | None, recorded_ms: int
    ) -> tuple[Reading, Registers, list[MeterEvent]]:
        """`reading` (of `step`; `previous_ts`: the meter's reading before) with what the
        registers counted across its gap when they bear witness to it; the registers after
        it, and the events it showed (detected, recorded at `recorded_ms`)."""
        meter = self.meter
        read = RegisterRead(
            step.ts_ms,
            reading.values.get(REGISTER_FIELDS["import"]),
            reading.values.get(REGISTER_FIELDS["export"]),
        )
        # every register the meter has is judged: one not read at this reading bears no
        # witness, so nothing is estimated (import and export together or not at all)
        specs = {d: self.specs[d] for d in DIRECTIONS if d in self.specs}
        if not specs or self.limit_w is None:
            return reading, self, []
        gap = (
            step.gap_s is not None
            and previous_ts is not None
            and meter.estimate_gaps
            and step.gap_s <= meter.max_estimate_gap_s
        )
        seen = observe(
            self.witnesses,
            read,
            specs=specs,
            max_power_w=self.limit_w,
            gap=gap,
            since_ms=previous_ts,
        )
        events = [
            MeterEvent(
                meter.id,
                e.ts_ms,
                e.kind,
                "detected",
                register=e.register,
                before_wh=e.before_wh,
                after_wh=e.after_wh,
                note=e.detail,
                recorded_ms=recorded_ms,
            )
            for e in seen.events
        ]
        after = replace(self, witnesses=seen.witnesses)
        if not seen.estimated:
            return reading, after, events
        estimated = replace(
            reading,
            estimated_uwh=seen.estimated_uwh,
            estimated_export_uwh=seen.estimated_export_uwh,
            estimated_start_ms=previous_ts,
        )
        return estimated, after, events

    def settling(self) -> list[str]:
        """The registers still settling after an event (read, not yet a trusted baseline)."""
        return [
            REGISTER_FIELDS[d]
            for d in DIRECTIONS
            if d in self.specs
            and self.witnesses.of(d).value_wh is not None
            and not self.witnesses.of(d).trusted
        ]

    def confirmed(self, event: MeterEvent) -> Registers | None:
        """The registers with the new start of a confirmed event as a baseline, or None when it
        gives none or the register was read at or after it (it speaks for itself)."""
        direction = DIRECTION_OF_REGISTER.get(event.register)
        if direction is None or event.new_start_wh is None:
            return None
        last = self.witnesses.of(direction)
        if last.ts_ms is not None and last.ts_ms >= event.ts_ms:
            return None
        if event.id is not None and last.rebased_by == event.id:
            return None  # set from it already
        witnesses = rebased(
            self.witnesses,
            direction,
            event.new_start_wh,
            event.ts_ms,
            spec=self.specs.get(direction),
            old_final_wh=event.old_final_wh,
            event_id=event.id,
        )
        return replace(self, witnesses=witnesses)
