"""What the bytes on a serial line say when no meter on it answers.

Every meter of an RTU bus failing, while bytes do arrive, is a fault of the line rather
than of the meters:

- bytes whose complement is a valid answer: the RS-485 pair is inverted, A and B swapped;
- a frame for the unit asked, of the right length, whose CRC is wrong: the line corrupts
  answers (A/B swapped, no termination, no common ground);
- bytes that do not parse as a frame at all: the bus's speed differs from the meters'
  (or the pair is swapped, which garbles bytes the same way on some adapters).

The meters check records the bytes with the bus's frame trace; when they say the speed
is wrong, one short request at each other standard speed looks for the meters' own.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from campus_energy.config import BusConfig
from campus_energy.core.planner import ReadRequest
from campus_energy.errors import ModbusError
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.polling import MeterPoller
from campus_energy.ops.doctor.checks import Result, Status, plural

READ_FUNCTIONS = frozenset({3, 4})
MIN_FRAME = 5  # device, function, one byte, CRC (2): an exception answer


class LineFault(enum.Enum):
    INVERTED = "inverted"
    BAD_CRC = "bad crc"
    NO_FRAME = "no frame"


def crc16(data: bytes) -> int:
    """Modbus RTU's CRC-16 (polynomial 0xA001, start 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= MIN_FRAME and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _frame_length(data: bytes, start: int) -> int | None:
    """The length of the read answer (or exception answer) that would start at `start`."""
    if len(data) - start < 3:
        return None
    function = data[start + 1]
    if function & 0x7F not in READ_FUNCTIONS:
        return None
    if function & 0x80:
        return MIN_FRAME
    return 5 + data[start + 2]


def frames(data: bytes) -> list[bytes]:
    """The CRC-valid read answers found anywhere in `data`."""
    found = []
    for start in range(len(data)):
        length = _frame_length(data, start)
        if length is not None and _crc_ok(data[start : start + length]):
            found.append(data[start : start + length])
    return found


def broken_frames(data: bytes, unit: int) -> list[bytes]:
    """Answers for `unit` that are whole (device, function, byte count, length) but whose
    CRC is wrong."""
    found = []
    for start in range(len(data)):
        if data[start] != unit:
            continue
        length = _frame_length(data, start)
        if length is None or start + length > len(data):
            continue
        frame = data[start : start + length]
        if not _crc_ok(frame):
            found.append(frame)
    return found


def inverted(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def line_fault(received: Sequence[tuple[int, bytes]]) -> LineFault | None:
    """What the bytes each silent unit's requests drew, `(unit, bytes)` per meter, say about
    the line (None: nothing arrived)."""
    if not any(data for _, data in received):
        return None
    if any(frames(inverted(data)) for _, data in received):
        return LineFault.INVERTED
    if any(broken_frames(data, unit) for unit, data in received):
        return LineFault.BAD_CRC
    return LineFault.NO_FRAME


# --- the line's check ------------------------------------------------------------------------

STANDARD_SPEEDS = (2400, 4800, 9600, 19200, 38400)
PROBE_TIMEOUT_S = 0.3  # one short request per other speed
PROBE_BUDGET_S = len(STANDARD_SPEEDS) * (PROBE_TIMEOUT_S + 0.3)


class Received:
    """The bytes each bus receives (a bus's frame trace), to read back per meter.

    pymodbus traces its whole receive buffer each time bytes arrive, until it cuts a frame
    (or garbage) from it: a trace that extends the one before adds only its new bytes.
    """

    def __init__(self) -> None:
        self._by_bus: dict[str, bytearray] = {}
        self._last: dict[str, bytes] = {}

    def __call__(self, bus: str, sending: bool, frame: bytes) -> None:
        if sending:
            self._last[bus] = b""  # a request: the buffer starts again
            return
        last = self._last.get(bus, b"")
        grown = last and len(frame) > len(last) and frame.startswith(last)
        new = frame[len(last) :] if grown else frame
        self._by_bus.setdefault(bus, bytearray()).extend(new)
        self._last[bus] = frame

    def mark(self, bus: str) -> int:
        return len(self._by_bus.get(bus, b""))

    def since(self, bus: str, mark: int) -> bytes:
        return bytes(self._by_bus.get(bus, b"")[mark:])


async def answering_speed(bus: BusConfig, poller: MeterPoller) -> int | None:
    """The first other standard speed at which `poller`'s meter answers one short request."""
    spec = poller.profile.field("power_w")
    request = ReadRequest(poller.profile.function_code, spec.address, spec.width)
    for speed in STANDARD_SPEEDS:
        if speed == bus.baudrate:
            continue
        probe = ModbusBus(
            bus.model_copy(update={"baudrate": speed, "timeout_s": PROBE_TIMEOUT_S, "retries": 0})
        )
        try:
            await probe.read(poller.meter.unit, request, retries=0)
        except ModbusError:
            continue
        else:
            return speed
        finally:
            await probe.close()
    return None


def _factory(group: Sequence[MeterPoller]) -> str:
    speeds = sorted(
        {(p.profile.name, p.profile.factory_baudrate) for p in group if p.profile.factory_baudrate}
    )
    return ", ".join(f"{name} {speed}" for name, speed in speeds)


async def diagnose_line(
    group: Sequence[MeterPoller], silent: Sequence[tuple[int, bytes]]
) -> Result | None:
    """The line's result when every meter of an RTU bus failed (`silent`: each one's unit and
    the bytes its request drew): None when no byte arrived (the meters' own lines say it)."""
    fault = line_fault(silent)
    if fault is None:
        return None
    bus = group[0].bus.config
    title = f"line {bus.name}"
    count = plural(sum(len(data) for _, data in silent), "byte")
    if fault is not LineFault.NO_FRAME:
        detail = f"frames arrive with bad CRC on every meter ({count})"
        fix = "check the A/B wires are not swapped, termination, and ground"
        if fault is LineFault.INVERTED:
            detail += "; inverted, they are valid answers: A and B are swapped"
            fix = (
                "swap the A and B wires (at the adapter, or at the meter wired the other way "
                "round); then check termination and ground"
            )
        return Result(Status.FAIL, title, detail, fix)
    factory = _factory(group)
    detail = (
        f"bytes arrive but no frame parses ({count}): the bus speed ({bus.baudrate} baud) "
        "probably differs from the meters'" + (f" (factory: {factory})" if factory else "")
    )
    await group[0].bus.close()  # the port is free for the probes
    speed = await answering_speed(bus, group[0])
    if speed is not None:
        detail += f"; meter {group[0].meter.id} answers at {speed} baud"
        fix = (
            f"set baudrate = {speed} for bus {bus.name}, or set each meter to {bus.baudrate} "
            "baud on its front panel"
        )
    else:
        fix = (
            f"set baudrate (and parity) for bus {bus.name} to what the meters are set to, or "
            f"set each meter to {bus.baudrate} baud on its front panel; if the speeds agree, "
            "check that A and B are not swapped"
        )
    return Result(Status.FAIL, title, detail, fix)
