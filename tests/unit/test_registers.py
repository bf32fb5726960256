"""Decoding and encoding of every register type and byte order, against raw SDM frames."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from campus_energy.core.registers import BYTE_ORDERS, REGISTER_TYPES, decode, encode


def registers_of_frame(frame_hex: str) -> list[int]:
    """The registers carried by a raw Modbus RTU response frame (CRC checked by pymodbus)."""
    _used, pdu = FramerRTU(DecodePDU(False)).handleFrame(bytes.fromhex(frame_hex), 1, 0)
    assert pdu is not None, "frame rejected"
    return list(pdu.registers)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("01 04 04 43 67 af 55 e2 10", 231.685),  # voltage
        ("01 04 04 41 fa 17 7c c1 98", 31.261),  # power
        ("01 04 04 45 a2 26 c7 14 98", 5188.847),  # import energy, kWh
    ],
)
def test_raw_sdm_frames_decode_to_the_datasheet_values(frame: str, expected: float) -> None:
    assert decode(registers_of_frame(frame), "float32", "ABCD") == pytest.approx(expected, abs=5e-4)


def test_a_frame_with_a_bad_crc_is_rejected_by_the_framer() -> None:
    frame = bytes.fromhex("01 04 04 43 67 af 55 e2 11")  # last CRC byte wrong
    _used, pdu = FramerRTU(DecodePDU(False)).handleFrame(frame, 1, 0)
    assert pdu is None


# 0x12345678 as float32 bits, laid out in each order.
LAYOUTS = {
    "ABCD": [0x1234, 0x5678],
    "CDAB": [0x5678, 0x1234],
    "BADC": [0x3412, 0x7856],
    "DCBA": [0x7856, 0x3412],
}


@pytest.mark.parametrize("order", sorted(LAYOUTS))
def test_each_byte_order_reads_its_own_layout(order: str) -> None:
    assert decode(LAYOUTS[order], "uint32", order) == 0x12345678
    expected = struct.unpack(">f", bytes.fromhex("12345678"))[0]
    assert decode(LAYOUTS[order], "float32", order) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("type_name", "registers", "expected"),
    [
        ("int16", [0xFFFF], -1),
        ("uint16", [0xFFFF], 65535),
        ("int32", [0xFFFF, 0xFFFE], -2),
        ("uint32", [0x0001, 0x0000], 65536),
        ("float32", [0x3F80, 0x0000], 1.0),
    ],
)
def test_types_decode_big_endian(type_name: str, registers: list[int], expected: float) -> None:
    assert decode(registers, type_name) == expected


def test_16_bit_types_swap_bytes_in_badc() -> None:
    assert decode([0x3412], "uint16", "BADC") == 0x1234
    assert decode([0x3412], "uint16", "CDAB") == 0x3412


def test_wrong_register_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], "float32")


@given(
    value=st.floats(width=32, allow_nan=False, allow_infinity=False),
    order=st.sampled_from(sorted(BYTE_ORDERS)),
)
def test_float32_round_trips_in_every_order(value: float, order: str) -> None:
    decoded = decode(encode(value, "float32", order), "float32", order)
    assert struct.pack(">f", decoded) == struct.pack(">f", value)  # the very same float32
    assert digits(decoded) <= digits(value)  # in its shortest decimal form


def digits(x: float) -> int:
    """The significant digits of a float's shortest decimal (1e15 has 1, though its repr,
    '1000000000000000.0', is longer than that of the float32 below it, 999999986991104.0)."""
    return len(Decimal(repr(x)).normalize().as_tuple().digits)


@given(data=st.data(), type_name=st.sampled_from(["int16", "uint16", "int32", "uint32"]))
def test_integers_round_trip_in_every_order(data: st.DataObject, type_name: str) -> None:
    rtype = REGISTER_TYPES[type_name]
    value = data.draw(st.integers(rtype.minimum, rtype.maximum))
    order = data.draw(st.sampled_from(sorted(BYTE_ORDERS)))
    assert decode(encode(value, type_name, order), type_name, order) == value


def test_encoding_clamps_integers_to_their_range() -> None:
    assert decode(encode(70000, "uint16"), "uint16") == 65535
    assert decode(encode(-5, "uint16"), "uint16") == 0
    assert decode(encode(math.inf, "int16"), "int16") == 32767
    assert decode(encode(math.nan, "int32"), "int32") == 0
