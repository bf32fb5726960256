"""Register decoding and encoding, built on pymodbus's own conversion helpers.

Byte orders follow the names used across Modbus tools: ABCD (big-endian, no
swap), CDAB (word swap), BADC (byte swap inside each word), DCBA (both).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

_DT = ModbusClientMixin.DATATYPE
WordOrder = Literal["big", "little"]


@dataclass(frozen=True)
class RegisterType:
    """How one value of a field is laid out in registers."""

    name: str
    width: int  # registers
    datatype: ModbusClientMixin.DATATYPE
    is_float: bool
    minimum: int = 0
    maximum: int = 0


REGISTER_TYPES: dict[str, RegisterType] = {
    "float32": RegisterType("float32", 2, _DT.FLOAT32, is_float=True),
    "int16": RegisterType("int16", 1, _DT.INT16, False, -(2**15), 2**15 - 1),
    "uint16": RegisterType("uint16", 1, _DT.UINT16, False, 0, 2**16 - 1),
    "int32": RegisterType("int32", 2, _DT.INT32, False, -(2**31), 2**31 - 1),
    "uint32": RegisterType("uint32", 2, _DT.UINT32, False, 0, 2**32 - 1),
}


@dataclass(frozen=True)
class ByteOrder:
    """A byte order as (swap the two bytes of each word, order of the words)."""

    name: str
    swap_bytes: bool
    word_order: WordOrder


BYTE_ORDERS: dict[str, ByteOrder] = {
    "ABCD": ByteOrder("ABCD", swap_bytes=False, word_order="big"),
    "CDAB": ByteOrder("CDAB", swap_bytes=False, word_order="little"),
    "BADC": ByteOrder("BADC", swap_bytes=True, word_order="big"),
    "DCBA": ByteOrder("DCBA", swap_bytes=True, word_order="little"),
}


def _swap_bytes(registers: Sequence[int]) -> list[int]:
    return [((word & 0xFF) << 8) | (word >> 8) for word in registers]


def decode(registers: Sequence[int], type_name: str, byte_order: str = "ABCD") -> float:
    """Decode the registers of one value; always returns a float."""
    rtype = REGISTER_TYPES[type_name]
    order = BYTE_ORDERS[byte_order]
    if len(registers) != rtype.width:
        raise ValueError(f"{type_name} needs {rtype.width} registers, got {len(registers)}")
    words = _swap_bytes(registers) if order.swap_bytes else list(registers)
    value = ModbusClientMixin.convert_from_registers(words, rtype.datatype, order.word_order)
    assert isinstance(value, int | float)
    return shortest_float32(value) if rtype.is_float else float(value)


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32 (231.68499755859375 -> 231.685)."""
    if not math.isfinite(value):
        return value
    exact = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == exact:
            return candidate
    return value


def encode(value: float, type_name: str, byte_order: str = "ABCD") -> list[int]:
    """Encode one value into registers. Integers are rounded and clamped to the type's range."""
    rtype = REGISTER_TYPES[type_name]
    order = BYTE_ORDERS[byte_order]
    raw: int | float
    if rtype.is_float:
        raw = float(value)
    elif math.isnan(value):
        raw = 0
    elif math.isinf(value):
        raw = rtype.maximum if value > 0 else rtype.minimum
    else:
        raw = min(max(round(value), rtype.minimum), rtype.maximum)
    words = ModbusClientMixin.convert_to_registers(raw, rtype.datatype, order.word_order)
    return _swap_bytes(words) if order.swap_bytes else words
