"""`doctor` names a serial line's faults: a bus whose speed differs from the meters', and an
RS-485 pair with A and B swapped, over a socat pseudo-terminal pair.

A pty carries bytes, not a signal: a small responder on the far end emulates the wire. It
answers every read request as a meter would, then turns its answer into what the logger's
UART would receive: at another speed, the answer's bits sampled at the bus's speed; on an
inverted pair, every byte inverted. The meter's own speed is compared with the one the logger
set on its end of the cable (read from that end's terminal settings).
"""

from __future__ import annotations

import json
import os
import select
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import config_data, meter_at, write_toml
from tests.support.net import free_port
from tests.support.serial import SocatPair

from campus_energy import cli
from campus_energy.ops.doctor.checks.line import (
    LineFault,
    broken_frames,
    crc16,
    frames,
    inverted,
    line_fault,
)

BAUD = {getattr(termios, f"B{s}"): s for s in (1200, 2400, 4800, 9600, 19200, 38400, 57600)}
FLOAT_230 = bytes.fromhex("43660000")
CHUNK = 32  # bytes a USB adapter hands over at a time, about


def answer_to(request: bytes) -> bytes:
    """A meter's answer to a read request (FC 03/04): every register pair holds 230.0."""
    unit, function, count = request[0], request[1], int.from_bytes(request[4:6])
    data = (FLOAT_230 * count)[: 2 * count]
    frame = bytes([unit, function, 2 * count]) + data
    return frame + crc16(frame).to_bytes(2, "little")


def received_at(data: bytes, sent_baud: int, read_baud: int) -> bytes:
    """What a UART at `read_baud` (8N1) reads of `data` sent at `sent_baud`: the line sampled
    at the reader's bit times, a start bit looked for between bytes."""
    line = []
    for byte in data:
        line += [0, *((byte >> i) & 1 for i in range(8)), 1]
    line += [1] * 20
    step = sent_baud / read_baud  # one reader bit, in sender bits

    def level(t: float) -> int:
        return line[int(t)] if t < len(line) else 1

    out, t = [], 0.0
    while t < len(line):
        if level(t) == 0:
            centre = t + step / 2
            out.append(sum(level(centre + (i + 1) * step) << i for i in range(8)))
            t = centre + 9 * step
        else:
            t += step / 8
    return bytes(out)


class Responder:
    """Meters behind the far end of the cable: every request answered through `wire`
    (answer bytes, the speed the logger's end is set to) -> bytes the logger's end receives."""

    def __init__(self, pair: SocatPair, wire: Callable[[bytes, int], bytes]) -> None:
        self.pair = pair
        self.wire = wire
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="responder")

    def __enter__(self) -> Responder:
        self._fd = os.open(self.pair.server_end, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._fd)
        self._logger_end = os.open(self.pair.client_end, os.O_RDWR | os.O_NOCTTY)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)
        os.close(self._logger_end)

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                continue
            pending += os.read(self._fd, 256)
            while len(pending) >= 8:
                request, pending = pending[:8], pending[8:]
                self.requests += 1
                speed = BAUD[termios.tcgetattr(self._logger_end)[5]]
                self._send(self.wire(answer_to(request), speed), speed)

    def _send(self, data: bytes, speed: int) -> None:
        """`data` at the pace of the line: a pty moves bytes at once, a UART one at a time."""
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            os.write(self._fd, chunk)
            self._stop.wait(len(chunk) * 10 / speed)  # the chunk's time on the wire


def meter_speed(baud: int) -> Callable[[bytes, int], bytes]:
    """Meters set to `baud`: clean answers when the line runs at it, garbled otherwise."""
    return lambda answer, line: answer if line == baud else received_at(answer, baud, line)


def swapped_pair(answer: bytes, line: int) -> bytes:
    return inverted(answer)


def rtu_config(folder: Path, pair: SocatPair, baudrate: int = 9600) -> Path:
    data = config_data(
        [
            {
                "name": "rs485",
                "transport": "rtu",
                "device": pair.client_end,
                "baudrate": baudrate,
                "timeout_s": 1.0,
            }
        ],
        [
            meter_at("ece-1", "rs485", 1, "eastron-sdm120"),
            meter_at("ece-2", "rs485", 2, "eastron-sdm120"),
        ],
        storage={"path": str(folder / "var" / "store.db")},
        mqtt={"port": free_port()},
    )
    return write_toml(folder / "campus-energy.toml", data)


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[Path], dict[str, Any]]]:
    def run(config: Path) -> dict[str, Any]:
        cli.main(["doctor", "--json", "-c", str(config)])
        found = json.loads(capsys.readouterr().out)
        return {e["title"]: e for e in found if e["check"] == "meters"}

    yield run


def test_a_bus_faster_than_its_meters_is_named_with_the_speed_they_answer_at(
    tmp_path: Path, socat_pair: SocatPair, doctor: Callable[[Path], dict[str, Any]]
) -> None:
    with Responder(socat_pair, meter_speed(2400)) as responder:
        results = doctor(rtu_config(tmp_path, socat_pair, baudrate=9600))
    assert responder.requests >= 3  # both meters, then the other speeds until one answered
    line = results["line rs485"]
    assert line["status"] == "fail"
    assert line["detail"].startswith("bytes arrive but no frame parses (")
    assert (
        "the bus speed (9600 baud) probably differs from the meters' (factory: eastron-sdm120 2400)"
        "; meter ece-1 answers at 2400 baud" in line["detail"]
    )
    assert line["fix"] == (
        "set baudrate = 2400 for bus rs485, or set each meter to 9600 baud on its front panel"
    )
    for meter in ("meter ece-1", "meter ece-2"):
        assert results[meter]["status"] == "fail"
        assert results[meter]["fix"] == ("the line garbles every answer: see the line 'line rs485'")


def test_garbage_at_every_speed_names_the_speed_and_the_pair(
    tmp_path: Path, socat_pair: SocatPair, doctor: Callable[[Path], dict[str, Any]]
) -> None:
    """Meters at 57600 baud, which doctor does not try: no speed answers."""
    with Responder(socat_pair, meter_speed(57600)):
        results = doctor(rtu_config(tmp_path, socat_pair, baudrate=9600))
    line = results["line rs485"]
    assert line["detail"].startswith("bytes arrive but no frame parses (")
    assert "answers at" not in line["detail"]
    assert "set each meter to 9600 baud on its front panel" in line["fix"]
    assert "check that A and B are not swapped" in line["fix"]


def test_swapped_a_and_b_are_named(
    tmp_path: Path, socat_pair: SocatPair, doctor: Callable[[Path], dict[str, Any]]
) -> None:
    with Responder(socat_pair, swapped_pair):
        results = doctor(rtu_config(tmp_path, socat_pair))
    line = results["line rs485"]
    assert line["status"] == "fail"
    assert line["detail"].startswith("frames arrive with bad CRC on every meter (")
    assert "A and B are swapped" in line["detail"]
    assert line["fix"].startswith("swap the A and B wires")
    assert "termination and ground" in line["fix"]
    assert results["meter ece-1"]["fix"] == (
        "the line garbles every answer: see the line 'line rs485'"
    )


def test_a_healthy_line_and_a_silent_line_have_no_line_verdict(
    tmp_path: Path, socat_pair: SocatPair, doctor: Callable[[Path], dict[str, Any]]
) -> None:
    config = rtu_config(tmp_path, socat_pair, baudrate=9600)
    with Responder(socat_pair, meter_speed(9600)):
        healthy = doctor(config)
    assert healthy["meter ece-1"]["status"] == healthy["meter ece-2"]["status"] == "ok"
    assert "line rs485" not in healthy
    silent = doctor(config)  # nobody on the far end: nothing arrives
    assert "line rs485" not in silent
    assert "set to address 1 at 9600 baud 8N1" in silent["meter ece-1"]["fix"]


# --- reading the bytes --------------------------------------------------------------------------

REQUEST = bytes.fromhex("0104000c0002") + crc16(bytes.fromhex("0104000c0002")).to_bytes(2, "little")


def test_the_crc_matches_the_field_notes_frames() -> None:
    assert frames(bytes.fromhex("01 04 04 43 67 af 55 e2 10")) == [
        bytes.fromhex("01 04 04 43 67 af 55 e2 10")
    ]
    assert bytes.fromhex("01 04 00 00 00 02 71 cb")[-2:] == crc16(
        bytes.fromhex("01 04 00 00 00 02")
    ).to_bytes(2, "little")


def test_the_bytes_are_told_apart() -> None:
    answer = answer_to(REQUEST)
    broken = answer[:-1] + bytes([answer[-1] ^ 0x01])
    assert broken_frames(broken, 1) == [broken] and not frames(broken)
    assert line_fault([(1, inverted(answer))]) is LineFault.INVERTED
    assert line_fault([(1, broken)]) is LineFault.BAD_CRC
    assert line_fault([(1, received_at(answer, 2400, 9600))]) is LineFault.NO_FRAME
    assert line_fault([(1, received_at(answer, 9600, 2400)), (2, b"")]) is LineFault.NO_FRAME
    assert line_fault([(1, b""), (2, b"")]) is None
    assert received_at(answer, 9600, 9600) == answer  # the wire emulation itself
