"""What one virtual meter's firmware serves: its holding and input register tables.

For a built-in model read from input registers (the Eastrons), FC 04 serves
the model's whole documented input map and FC 03 its configuration (parity,
address, baud rate, as set for the bus it is on). A meter of a model without
a documented map here serves its profile's fields alike on either function
code. Registers between served ones read as 0, as on a real Eastron,
unless the profile reads no gaps or the firmware refuses gap reads
(`refuse_gap_reads`): then a request covering one draws exception 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pymodbus.simulator import DataType, SimData

from campus_energy.config import BusConfig
from campus_energy.core.models import FUNCTION_CODES, FieldSpec
from campus_energy.core.registers import encode
from campus_energy.meters.simulator.meter import VirtualMeter
from campus_energy.meters.simulator.models import CONFIG_REGISTERS, config_values, model_of

HOLDING = FUNCTION_CODES["holding"]
INPUT = FUNCTION_CODES["input"]


@dataclass(frozen=True)
class Table:
    """One register table (holding or input registers) and what it serves."""

    fields: tuple[FieldSpec, ...]
    gaps_answered: bool  # registers between fields read as 0 (else: exception 2)

    def blocks(self) -> list[SimData]:
        """The table's address space for pymodbus: any address outside it draws exception 2."""
        if not self.fields:
            return [SimData(0, count=1, datatype=DataType.INVALID)]
        fields = sorted(self.fields, key=lambda f: f.address)
        if self.gaps_answered:
            end = max(f.end for f in fields)
            return [SimData(0, count=end, datatype=DataType.REGISTERS)]
        blocks: list[SimData] = []
        start, end = fields[0].address, fields[0].end
        for spec in fields[1:]:
            if spec.address > end:
                blocks.append(SimData(start, count=end - start, datatype=DataType.REGISTERS))
                start = spec.address
            end = max(end, spec.end)
        blocks.append(SimData(start, count=end - start, datatype=DataType.REGISTERS))
        return blocks

    def image(self, values: Mapping[str, float], byte_order: str) -> dict[int, list[int]]:
        """The registers of every field holding `values` (a missing name reads as 0)."""
        return {
            spec.address: encode(values.get(spec.name, 0.0) / spec.scale, spec.type, byte_order)
            for spec in self.fields
        }


def _merged(preferred: tuple[FieldSpec, ...], rest: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
    """`preferred` and those of `rest` that overlap none of them, sorted by address."""
    taken = {a for spec in preferred for a in range(spec.address, spec.end)}
    extra = tuple(s for s in rest if taken.isdisjoint(range(s.address, s.end)))
    return tuple(sorted(preferred + extra, key=lambda s: s.address))


class Firmware:
    """The two register tables of one virtual meter on one bus, and how it encodes them."""

    def __init__(self, meter: VirtualMeter, bus: BusConfig) -> None:
        profile = meter.profile
        options = meter.faults
        model = model_of(profile) if profile.function == "input" else None
        self.meter = meter
        self.byte_order = options.word_order or profile.byte_order
        gaps = profile.read_gaps and not options.refuse_gap_reads
        self.config: dict[str, float] = {}
        if model is None:
            self.measuring = frozenset((HOLDING, INPUT))  # the function codes with measurements
            self.tables = {fc: Table(profile.fields, gaps) for fc in self.measuring}
            return
        self.measuring = frozenset((INPUT,))
        self.config = config_values(model, bus, meter.unit)
        self.tables = {
            INPUT: Table(_merged(profile.fields, model.inputs), gaps),
            HOLDING: Table(tuple(r for r in CONFIG_REGISTERS if r.name in self.config), gaps),
        }

    def blocks(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """Coils, discrete inputs (none: their function codes are refused), holding and input
        registers, as pymodbus's `SimDevice` takes them."""
        return (
            [SimData(0, datatype=DataType.BITS)],
            [SimData(0, datatype=DataType.BITS)],
            self.tables[HOLDING].blocks(),
            self.tables[INPUT].blocks(),
        )

    def refuses(self, function_code: int, address: int, count: int) -> bool:
        """Whether a read of [address, address + count) covers a register the unit refuses."""
        return function_code in self.measuring and any(
            address <= r < address + count for r in self.meter.faults.refused_registers
        )

    def image(self, function_code: int, t: float) -> dict[int, list[int]]:
        """The registers of the table `function_code` reads, at time `t`, by field address."""
        values = self.meter.values_at(t) if function_code in self.measuring else self.config
        return self.tables[function_code].image(values, self.byte_order)
