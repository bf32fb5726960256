"""Polling meters: one `MeterPoller` per meter, planned once, reading through its bus.

Some firmware refuses (exception 2, illegal data address) a request that spans
registers its datasheet does not document, although each documented register
answers. A poller whose request draws exception 2 finds the refused part by
halving the request on field boundaries and reading the halves, keeps every
value that answers, and plans the meter again around what is refused: the
registers between two halves that answer apart but not together, or a field
that is refused even alone (left out of the readings; a refused `power_w`
puts the meter in error). What is learned is logged once and recorded in the
`PlanBook`, which the logger keeps across restarts.

What was refused is asked again once a day (`RELEARN_AFTER_S`): a refusal that
was passing (a gateway's exception 2 in a bad moment, a device since replaced
or updated) costs a field for a day at most, and one still there costs a few
refused requests a day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from campus_energy.config import Config, MeterConfig
from campus_energy.core.models import REQUIRED_FIELDS, FieldSpec, Profile
from campus_energy.core.planner import (
    Extent,
    ReadRequest,
    Refusals,
    plan_profile,
    span_of,
    split_fields,
)
from campus_energy.errors import ModbusExceptionResponseError, ModbusFieldRefusedError
from campus_energy.meters.learned import DeviceKey, PlanBook
from campus_energy.meters.modbus import FrameTrace, ModbusBus

log = logging.getLogger(__name__)
ILLEGAL_DATA_ADDRESS = 2
RELEARN_AFTER_S = 86_400.0  # what a device refused is asked again after this long

Answered = dict[ReadRequest, list[int]]  # the requests that answered in one poll


def describe_plan(plan: Sequence[ReadRequest]) -> str:
    """'FC04 0+2, FC04 6+2': each request's function, first register and count."""
    return ", ".join(f"FC{r.function:02d} {r.start}+{r.count}" for r in plan) or "nothing"


def describe_registers(ranges: Iterable[Extent]) -> str:
    """'2–5, 8–11': register ranges, first and last register of each."""
    return ", ".join(
        str(r.start) if r.end - r.start == 1 else f"{r.start}–{r.end - 1}" for r in ranges
    )


def describe_refusals(refusals: Refusals, profile: Profile) -> str:
    """What a device refuses, in words: registers, fields (with their addresses), limit."""
    parts = []
    if refusals.registers:
        parts.append(f"registers {describe_registers(refusals.registers)}")
    for name in refusals.fields:
        spec = profile.field(name)
        parts.append(f"{name} (FC{profile.function_code:02d} address {spec.address})")
    if refusals.max_registers is not None:
        parts.append(f"requests of more than {refusals.max_registers} registers")
    return ", ".join(parts) or "nothing"


class MeterPoller:
    """Reads every field of one meter with the planner's requests, learning what it refuses."""

    def __init__(
        self,
        meter: MeterConfig,
        profile: Profile,
        bus: ModbusBus,
        *,
        book: PlanBook | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meter = meter
        self.profile = profile
        self.bus = bus
        self.book = book if book is not None else PlanBook()
        self._monotonic = monotonic
        self._refused_since = monotonic()  # when what it refuses was last asked
        self.key = DeviceKey(meter.bus, meter.unit, profile.name)
        self.learned_before = self.book.refusals(self.key, profile)  # from an earlier run
        self.refusals = self.learned_before
        self._replan()

    def _replan(self) -> None:
        """The requests, and the fields decoded, for what the device refuses now: worked out
        when that changes, not on every poll."""
        self.plan = plan_profile(self.profile, self.bus.config.cost_model, self.refusals)
        kept = tuple(f for f in self.profile.fields if f.name not in self.refusals.fields)
        self._decoded = self.profile.model_copy(update={"fields": kept})

    @property
    def refused_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.profile.fields if f.name in self.refusals.fields)

    async def poll(self) -> dict[str, float]:
        """Values of every field the device does not refuse, in SI units.

        Raises a `ModbusError` on failure, `ModbusFieldRefusedError` when a required field
        is refused.
        """
        answered: Answered = {}
        relearning = bool(self.refusals) and (
            self._monotonic() - self._refused_since >= RELEARN_AFTER_S
        )
        if relearning:
            log.info(
                "meter %s (bus %s unit %d): asking again what the firmware refused (%s)",
                self.meter.id,
                self.meter.bus,
                self.meter.unit,
                describe_refusals(self.refusals, self.profile),
            )
            self.refusals = Refusals()
            self._replan()
            self._refused_since = self._monotonic()
        before, learned = self.plan, Refusals()
        try:
            await self._ask_required_again(answered)
            pending = list(self.plan)
            while pending:
                request = pending.pop(0)
                try:
                    await self._read(request, answered)
                except ModbusExceptionResponseError as exc:
                    if exc.code != ILLEGAL_DATA_ADDRESS:
                        raise
                    found = await self._explain(self._inside(request), answered)
                    learned = learned.joined(found)
                    self.refusals = self.refusals.joined(found)
                    self._replan()
                    # The new plan is tried at once (what answered already is not asked
                    # again): the poll ends with a plan whose every request answered.
                    pending = [r for r in self.plan if r not in answered]
        finally:
            if learned:
                await self._adopted(learned, before)
        if relearning and not learned:  # every request answered: the book forgets it too
            await self.book.record(self.key, self.profile, self.refusals)
        self._raise_if_required_refused()
        blocks = [(r.start, registers) for r, registers in answered.items()]
        return self._decoded.decode(blocks)

    async def _read(self, request: ReadRequest, answered: Answered) -> list[int]:
        """The registers of `request`: from the bus, unless it answered already in this poll."""
        registers = answered.get(request)
        if registers is None:
            registers = await self.bus.read(
                self.meter.unit, request, pause_s=self.profile.pause_between_requests_s
            )
            answered[request] = registers
        return registers

    def _inside(self, request: ReadRequest) -> tuple[Extent, ...]:
        """The extents of the fields to read that `request` covers."""
        return tuple(
            Extent(f.address, f.end)
            for f in self.profile.fields
            if f.name not in self.refusals.fields
            and request.start <= f.address
            and f.end <= request.end
        )

    async def _explain(self, extents: tuple[Extent, ...], answered: Answered) -> Refusals:
        """`extents`, read as one request, drew exception 2: read them in halves (a half that
        is refused in turn halved), keeping what answers, and say what the device refuses —
        something inside the refused request, so that it is never asked again."""
        if len(set(extents)) == 1:
            (only,) = set(extents)
            names = [
                f.name for f in self.profile.fields if (f.address, f.end) == (only.start, only.end)
            ]
            return Refusals(fields=tuple(names))
        split = split_fields(extents)
        found = Refusals()
        counts = []
        for half in (split.first, split.second):
            request = span_of(half, self.profile.function_code)
            try:
                await self._read(request, answered)
            except ModbusExceptionResponseError as exc:
                if exc.code != ILLEGAL_DATA_ADDRESS:
                    raise
                found = found.joined(await self._explain(half, answered))
            else:
                counts.append(request.count)
        if len(counts) < 2:
            return found
        if split.gap.end > split.gap.start:  # each half answers, both together do not
            return Refusals(registers=(split.gap,))
        return Refusals(max_registers=max(counts))  # nothing between them: the length

    async def _adopted(self, learned: Refusals, before: tuple[ReadRequest, ...]) -> None:
        """Say once what was learned and how the plan changed; record it."""
        for spec in self.profile.fields:
            if spec.name in learned.fields:
                log.warning(
                    "meter %s (bus %s unit %d): the firmware refuses %s "
                    "(FC%02d address %d, exception 2): %s",
                    self.meter.id,
                    self.meter.bus,
                    self.meter.unit,
                    spec.name,
                    self.profile.function_code,
                    spec.address,
                    "no reading without it"
                    if spec.name in REQUIRED_FIELDS
                    else "left out of its readings",
                )
        log.info(
            "meter %s (bus %s unit %d): the firmware refuses %s (exception 2); plan %s → %s",
            self.meter.id,
            self.meter.bus,
            self.meter.unit,
            describe_refusals(learned, self.profile),
            describe_plan(before),
            describe_plan(self.plan),
        )
        await self.book.record(self.key, self.profile, self.refusals)

    async def _ask_required_again(self, answered: Answered) -> None:
        """A required field refused earlier is asked for alone, once a poll: a device that
        answers it again (the right meter at the address, its profile corrected) is back."""
        for spec in self.refused_fields:
            if spec.name not in REQUIRED_FIELDS:
                continue
            request = ReadRequest(self.profile.function_code, spec.address, spec.width)
            try:
                await self._read(request, answered)
            except ModbusExceptionResponseError as exc:
                if exc.code == ILLEGAL_DATA_ADDRESS:
                    self._raise_if_required_refused()
                raise
            self.refusals = self.refusals.without_fields([spec.name])
            self._replan()
            log.info(
                "meter %s (bus %s unit %d): %s answers again; plan %s",
                self.meter.id,
                self.meter.bus,
                self.meter.unit,
                spec.name,
                describe_plan(self.plan),
            )

    def _raise_if_required_refused(self) -> None:
        for spec in self.refused_fields:
            if spec.name in REQUIRED_FIELDS:
                raise ModbusFieldRefusedError(
                    self.meter.bus,
                    self.meter.unit,
                    field=spec.name,
                    function=self.profile.function_code,
                    address=spec.address,
                    count=spec.width,
                )


def open_buses(config: Config, *, trace: FrameTrace | None = None) -> dict[str, ModbusBus]:
    """One `ModbusBus` per configured bus (connections open lazily on first use)."""
    return {bus.name: ModbusBus(bus, trace=trace) for bus in config.buses}


def pollers(
    config: Config,
    buses: Mapping[str, ModbusBus],
    meters: Iterable[MeterConfig],
    book: PlanBook | None = None,
) -> list[MeterPoller]:
    """A planned poller for each of `meters`, avoiding what `book` says each device refuses."""
    book = book if book is not None else PlanBook()
    found = []
    for meter in meters:
        profile = config.profile_of(meter)
        poller = MeterPoller(meter, profile, buses[meter.bus], book=book)
        if book.outdated(poller.key, profile):
            log.info(
                "meter %s: profile %s changed since what the device refuses was learned; "
                "learning again",
                meter.id,
                profile.name,
            )
        elif poller.refusals:
            log.info(
                "meter %s (bus %s unit %d): the firmware refuses %s (learned earlier); plan %s",
                meter.id,
                meter.bus,
                meter.unit,
                describe_refusals(poller.refusals, profile),
                describe_plan(poller.plan),
            )
        found.append(poller)
    return found
