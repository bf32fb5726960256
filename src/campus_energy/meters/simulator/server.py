"""Serving virtual meters over Modbus with pymodbus's simulator (`SimDevice`/`SimData`).

One pymodbus server per configured bus: Modbus TCP or RTU over TCP on the
bus's host and port, RTU on its serial device. Requests for units that no
meter answers to go unanswered, as on a real RS-485 line, or draw exception
11 (gateway target failed to respond) from a bus playing a TCP gateway
(`[buses.simulate] absent_units`). Each meter serves what its firmware
serves (`firmware.Firmware`: measurements on FC 04, configuration on FC 03
for the Eastrons). Faults are injected per meter: no answer (the request is
dropped before it is processed), a Modbus exception response (device
failure), a corrupted frame (the response's CRC is broken; RTU framings
only), refused registers, another word order, a late answer.

Every request answered intact can be reported to an `on_answer` hook (with
`campus-energy simulate --answers FILE`, one JSON line per answer): the meter,
the time its values were taken and the power it served. That is the ground
truth a fault-injection test holds the logger's store against.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from campus_energy.config import BusConfig, Config, SimulationConfig
from campus_energy.core.registers import decode
from campus_energy.errors import ServiceError
from campus_energy.meters.modbus import failure_text
from campus_energy.meters.simulator.firmware import Firmware
from campus_energy.meters.simulator.meter import VirtualMeter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """One request a virtual meter answered intact."""

    meter_id: str
    t: float  # the simulator's clock (UTC epoch seconds) when the values were taken
    start: int  # first register of the request
    count: int
    power_w: float | None  # the power field as the client decodes it (None: not requested)


AnswerHook = Callable[[Answer], None]


class AnswerLog:
    """Answers appended to a file as JSON lines, each written through as it happens."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, answer: Answer) -> None:
        self._file.write(json.dumps(asdict(answer), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


def served_power(meter: VirtualMeter, start: int, registers: Sequence[int]) -> float | None:
    """The power value in a response holding `registers` from `start` (None: not in it)."""
    spec = meter.profile.field("power_w")
    offset = spec.address - start
    if offset < 0 or offset + spec.width > len(registers):
        return None
    words = registers[offset : offset + spec.width]
    return decode(words, spec.type, meter.profile.byte_order) * spec.scale


GATEWAY_REGISTERS = 0x10000  # a gateway answers every address of an absent unit alike


async def _no_target(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes:
    """A TCP gateway's answer for a unit nobody on its RS-485 line answers to."""
    return ExcCodes.GATEWAY_NO_RESPONSE


class BusServer:
    """The virtual meters of one bus behind one pymodbus server."""

    def __init__(
        self,
        bus: BusConfig,
        meters: Iterable[VirtualMeter],
        *,
        clock: Callable[[], float],
        host: str | None = None,
        on_answer: AnswerHook | None = None,
    ) -> None:
        self.bus = bus
        self.meters = {m.unit: m for m in meters}
        self.firmware = {unit: Firmware(m, bus) for unit, m in self.meters.items()}
        self.host = host or bus.host or "127.0.0.1"
        self._clock = clock
        self._on_answer = on_answer
        self._pending: dict[int, str] = {}
        self._corrupt_next: set[int] = set()
        self._server: ModbusBaseServer | None = None
        self.framer = FramerType.SOCKET if bus.transport == "tcp" else FramerType.RTU

    @property
    def endpoint(self) -> str:
        if self.bus.transport == "rtu":
            return str(self.bus.device)
        return f"{self.host}:{self.bus.port}"

    def _devices(self) -> list[SimDevice]:
        devices = [
            SimDevice(
                id=unit,
                simdata=firmware.blocks(),
                action=functools.partial(self._action, firmware),
            )
            for unit, firmware in sorted(self.firmware.items())
        ]
        if self.bus.simulate.absent_units == "gateway-exception":
            # pymodbus's device 0 stands for every unit without a device of its own
            everything = SimData(0, count=GATEWAY_REGISTERS, datatype=DataType.REGISTERS)
            devices.append(SimDevice(id=0, simdata=[everything], action=_no_target))
        return devices

    def _on_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            return pdu
        meter = self.meters.get(pdu.dev_id)
        if meter is None:
            if self.bus.simulate.absent_units == "gateway-exception":
                return pdu  # the gateway answers: its target failed to respond
            return cast(ModbusPDU, None)  # nobody on the line answers this unit
        fault = meter.draw_fault(self._clock())
        if fault == "timeout":
            return cast(ModbusPDU, None)  # dropped: the request is never processed
        self._pending[pdu.dev_id] = fault
        return pdu

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and data and data[0] in self._corrupt_next:
            self._corrupt_next.discard(data[0])
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # break the CRC
        return data

    async def _action(
        self,
        firmware: Firmware,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        meter = firmware.meter
        fault = self._pending.pop(meter.unit, "ok")
        if meter.faults.response_delay_s > 0:
            await asyncio.sleep(meter.faults.response_delay_s)  # a slow responder
        if set_values is not None or function_code not in firmware.tables:
            return ExcCodes.ILLEGAL_FUNCTION  # meters are read-only here; no coils or inputs
        if fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if firmware.refuses(function_code, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        broken = fault == "corrupt" and self.framer == FramerType.RTU
        if broken:
            self._corrupt_next.add(meter.unit)
        now = self._clock()
        for field_address, words in firmware.image(function_code, now).items():
            offset = field_address - start_address
            if offset >= 0 and offset + len(words) <= len(registers):
                registers[offset : offset + len(words)] = words
        if self._on_answer is not None and not broken:
            power = None
            if function_code in firmware.measuring:
                offset = address - start_address
                power = served_power(meter, address, registers[offset : offset + count])
            self._on_answer(Answer(meter.meter.id, now, address, count, power))
        return None

    async def start(self) -> None:
        common: dict[str, Any] = {
            "framer": self.framer,
            "trace_pdu": self._on_pdu,
            "trace_packet": self._on_packet,
        }
        server: ModbusBaseServer
        try:
            if self.bus.transport == "rtu":
                assert self.bus.device is not None
                server = ModbusSerialServer(
                    self._devices(),
                    port=self.bus.device,
                    baudrate=self.bus.baudrate,
                    parity=self.bus.parity,
                    stopbits=self.bus.stopbits,
                    bytesize=self.bus.bytesize,
                    **common,
                )
            else:
                address = (self.host, self.bus.port)
                server = ModbusTcpServer(self._devices(), address=address, **common)
            await server.serve_forever(background=True)
        except Exception as exc:  # sockets, pyserial, termios (a refused setting): all the same
            raise ServiceError(
                f"bus {self.bus.name!r}: cannot serve on {self.endpoint}: {failure_text(exc)}"
            ) from None
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


class Simulator:
    """Every meter of a configuration, served on its bus."""

    def __init__(
        self,
        config: Config,
        *,
        meter_ids: Iterable[str] | None = None,
        host: str | None = None,
        faults: SimulationConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_answer: AnswerHook | None = None,
    ) -> None:
        self.clock = clock
        wanted = set(meter_ids) if meter_ids is not None else None
        started = clock()
        self.meters: dict[str, VirtualMeter] = {
            m.id: VirtualMeter(
                m,
                config.profile_of(m),
                config.site.zone,
                started_at=started,
                faults=faults,
            )
            for m in config.meters
            if wanted is None or m.id in wanted
        }
        self.servers = [
            BusServer(
                bus,
                [vm for vm in self.meters.values() if vm.meter.bus == bus.name],
                clock=clock,
                host=host,
                on_answer=on_answer,
            )
            for bus in config.buses
            if any(vm.meter.bus == bus.name for vm in self.meters.values())
        ]

    def replace_meter(self, meter_id: str) -> None:
        """Fault injection: a new meter takes `meter_id`'s place now, its register from 0.

        The only way a simulated register restarts: otherwise it is a function of time.
        """
        self.meters[meter_id].replace(self.clock())
        log.warning("simulated meter %s replaced: its import register restarts at 0", meter_id)

    async def start(self) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        try:
            for server in self.servers:
                await server.start()
        except ServiceError:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_forever(self, stop: asyncio.Event) -> None:
        async with self:
            await stop.wait()
