"""Meter profiles: what a meter model exposes and how to read it.

A profile is data (a TOML file under `meters/profiles/`); this module is its validated
shape. Field names follow the project's standard: the unit is the suffix
(`_v`, `_a`, `_w`, `_wh`, `_hz`, ...), per-phase fields put `_l1/_l2/_l3`
before the unit, and `power_factor` has no unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from campus_energy.core.registers import BYTE_ORDERS, REGISTER_TYPES, decode, encode

CORE_FIELDS = ("voltage_v", "current_a", "power_w", "power_factor", "frequency_hz")
REQUIRED_FIELDS = ("power_w",)
MODBUS_MAX_READ_REGISTERS = 125  # Modbus application protocol, FC 03/04
FUNCTION_CODES = {"holding": 3, "input": 4}

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# Longest suffix first: "_wh" before "_w", "_var" before "_va" before "_v"/"_a".
_UNITS = (
    ("_varh", "varh"),
    ("_var", "var"),
    ("_vah", "VAh"),
    ("_va", "VA"),
    ("_wh", "Wh"),
    ("_hz", "Hz"),
    ("_w", "W"),
    ("_v", "V"),
    ("_a", "A"),
    ("_s", "s"),
    ("_pct", "%"),
    ("_c", "°C"),
)


def unit_of(field_name: str) -> str:
    """The physical unit implied by a standard field name ('' for dimensionless)."""
    for suffix, unit in _UNITS:
        if field_name.endswith(suffix):
            return unit
    return ""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Frozen):
    """One value of a meter: where it is on the wire and how to turn it into SI units."""

    name: str
    address: int = Field(ge=0, le=65535, description="0-based register address on the wire")
    type: Literal["float32", "int16", "uint16", "int32", "uint32"] = "float32"
    scale: float = 1.0
    description: str = ""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _FIELD_NAME.match(value):
            raise ValueError(f"must be lower_snake_case, got {value!r}")
        return value

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, value: float) -> float:
        if value == 0 or not math.isfinite(value):
            raise ValueError(f"must be a finite, non-zero number, got {value}")
        return value

    @property
    def width(self) -> int:
        return REGISTER_TYPES[self.type].width

    @property
    def end(self) -> int:
        """One past the last register of this field."""
        return self.address + self.width

    @property
    def unit(self) -> str:
        return unit_of(self.name)


class Profile(_Frozen):
    """A meter model's register map."""

    name: str
    description: str = ""
    manufacturer: str = ""
    function: Literal["input", "holding"] = "input"
    byte_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = "ABCD"
    max_registers_per_request: int = Field(default=MODBUS_MAX_READ_REGISTERS, ge=1, le=125)
    pause_between_requests_s: float = Field(default=0.0, ge=0.0, le=10.0)
    read_gaps: bool = Field(
        default=True,
        description="registers between fields may be read (false: each request covers fields only)",
    )
    phases: Literal[1, 3] = 1
    factory_baudrate: int | None = Field(
        default=None,
        ge=300,
        le=115_200,
        description="the serial speed a new unit answers at, until set on the meter itself",
    )
    max_power_w: float | None = Field(
        default=None,
        gt=0,
        description="largest plausible |power_w|; beyond it a reading is refused",
    )
    fields: tuple[FieldSpec, ...]

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _PROFILE_NAME.match(value):
            raise ValueError(f"must be lower-case letters, digits, '-' or '_', got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_fields(self) -> Profile:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate field names: {', '.join(duplicates)}")
        missing = [n for n in REQUIRED_FIELDS if n not in names]
        if missing:
            raise ValueError(f"missing required fields: {', '.join(missing)}")
        for spec in self.fields:
            if spec.width > self.max_registers_per_request:
                raise ValueError(f"field {spec.name!r} is wider than max_registers_per_request")
        assert self.byte_order in BYTE_ORDERS
        return self

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.function]

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def decode(self, blocks: Sequence[tuple[int, Sequence[int]]]) -> dict[str, float]:
        """Values of every field, in SI units, from `(start address, registers)` blocks.

        Raises KeyError naming a field that no block covers.
        """
        values: dict[str, float] = {}
        for spec in self.fields:
            for start, registers in blocks:
                offset = spec.address - start
                if offset >= 0 and spec.end <= start + len(registers):
                    raw = decode(
                        registers[offset : offset + spec.width], spec.type, self.byte_order
                    )
                    values[spec.name] = raw * spec.scale
                    break
            else:
                raise KeyError(f"field {spec.name!r} (address {spec.address}) was not read")
        return values

    def encode(self, values: Mapping[str, float]) -> dict[int, list[int]]:
        """Registers per field address holding `values` (missing names read as 0)."""
        return {
            spec.address: encode(
                values.get(spec.name, 0.0) / spec.scale, spec.type, self.byte_order
            )
            for spec in self.fields
        }
