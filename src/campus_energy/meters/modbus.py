"""Modbus buses over pymodbus: RTU on a serial device, RTU over TCP (RS-485 gateways), Modbus TCP.

A `ModbusBus` is the single owner of its connection: requests are serialised
by one lock, a device's `pause_between_requests_s` is honoured, timeouts and
busy devices are retried, and the connection is reopened with exponential
back-off after it is lost or after repeated silence (a USB adapter unplugged
and plugged back in is picked up again). Callers get registers or one of the
`ModbusError` types; never `None`, never a pymodbus exception, and never whatever
else the serial or network stack raises (`termios.error` when a driver refuses a
setting is not an `OSError`): every failure of a bus is that bus's outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from campus_energy.config import BusConfig
from campus_energy.core.planner import ReadRequest
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
    ModbusFrameError,
    ModbusTimeoutError,
)
from campus_energy.runtime.clock import Backoff

log = logging.getLogger(__name__)

# Exception codes worth a retry: the device may answer next time.
TRANSIENT_EXCEPTION_CODES = frozenset({4, 5, 6, 10, 11})
RECONNECT_DELAY_MIN_S = 0.5
RECONNECT_DELAY_MAX_S = 30.0
# Consecutive failed requests on one bus after which the port is closed and reopened.
REOPEN_AFTER_FAILURES = 6


def failure_text(exc: BaseException) -> str:
    """An exception of the serial or network stack in one line, with its type (a
    `termios.error` says only "(22, 'Invalid argument')")."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no detail"
    return f"{name}: {detail}"


FrameTrace = Callable[[str, bool, bytes], None]
"""Called with (bus name, sending, frame bytes) for every frame on the wire."""


def _serial_client(bus: BusConfig, **common: Any) -> ModbusBaseClient:
    assert bus.device is not None
    return AsyncModbusSerialClient(
        bus.device,
        framer=FramerType.RTU,
        baudrate=bus.baudrate,
        parity=bus.parity,
        stopbits=bus.stopbits,
        bytesize=bus.bytesize,
        **common,
    )


def _rtu_over_tcp_client(bus: BusConfig, **common: Any) -> ModbusBaseClient:
    assert bus.host is not None
    return AsyncModbusTcpClient(bus.host, port=bus.port, framer=FramerType.RTU, **common)


def _tcp_client(bus: BusConfig, **common: Any) -> ModbusBaseClient:
    assert bus.host is not None
    return AsyncModbusTcpClient(bus.host, port=bus.port, framer=FramerType.SOCKET, **common)


CLIENT_FACTORIES: dict[str, Callable[..., ModbusBaseClient]] = {
    "rtu": _serial_client,
    "rtu-tcp": _rtu_over_tcp_client,
    "tcp": _tcp_client,
}


def _quiet_pymodbus() -> None:
    """pymodbus logs every timeout at ERROR; this adapter reports failures itself."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ModbusBus:
    """One Modbus bus and its connection."""

    def __init__(
        self,
        config: BusConfig,
        *,
        trace: FrameTrace | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        _quiet_pymodbus()
        self.config = config
        self.name = config.name
        self._trace = trace
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._client: ModbusBaseClient | None = None
        self._last_request_end: dict[int, float] = {}
        self._received_bytes = 0
        self._failures_in_a_row = 0
        self._reconnect = Backoff(RECONNECT_DELAY_MIN_S, RECONNECT_DELAY_MAX_S)
        self._next_connect_at = 0.0
        self.requests = 0
        self.failures = 0
        self.reconnects = 0

    @property
    def endpoint(self) -> str:
        if self.config.transport == "rtu":
            return str(self.config.device)
        return f"{self.config.host}:{self.config.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received_bytes += len(data)
        if self._trace is not None:
            self._trace(self.name, sending, data)
        return data

    async def _connect(self, unit: int) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = self._monotonic()
        if now < self._next_connect_at:
            raise ModbusConnectionError(
                self.name,
                unit,
                detail=f"{self.endpoint} unavailable, next attempt in "
                f"{self._next_connect_at - now:.1f} s",
            )
        self._drop_client()
        reason = ""
        client: ModbusBaseClient | None = None
        try:
            client = CLIENT_FACTORIES[self.config.transport](
                self.config,
                timeout=self.config.timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._on_packet,
            )
            client.set_max_no_responses(1_000_000)  # this adapter decides when to reopen
            ok = await client.connect()
        except Exception as exc:  # pyserial, termios, sockets, a driver: whatever they raise
            log.debug("connect to %s failed: %s", self.endpoint, failure_text(exc))
            reason = f": {failure_text(exc)}"
            ok = False
        if not ok or client is None:
            if client is not None:
                _close_quietly(client)
            self._next_connect_at = self._monotonic() + self._reconnect.failed()
            raise ModbusConnectionError(
                self.name, unit, detail=f"cannot open {self.endpoint}{reason}"
            )
        self._client = client
        self._reconnect = Backoff(RECONNECT_DELAY_MIN_S, RECONNECT_DELAY_MAX_S)
        self._next_connect_at = 0.0
        self.reconnects += 1
        return client

    def _drop_client(self) -> None:
        if self._client is not None:
            _close_quietly(self._client)
            self._client = None

    async def _pause_for(self, unit: int, pause_s: float) -> None:
        last = self._last_request_end.get(unit)
        if last is not None and pause_s > 0:
            wait = last + pause_s - self._monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _request_once(self, client: ModbusBaseClient, unit: int, req: ReadRequest) -> Any:
        where: dict[str, Any] = {
            "function": req.function,
            "address": req.start,
            "count": req.count,
        }
        self._received_bytes = 0
        method = client.read_input_registers if req.function == 4 else client.read_holding_registers
        try:
            response = await method(req.start, count=req.count, device_id=unit)
        except ConnectionException as exc:
            self._drop_client()
            raise ModbusConnectionError(self.name, unit, detail=str(exc), **where) from None
        except ModbusIOException:
            if not client.connected:
                self._drop_client()
                raise ModbusConnectionError(self.name, unit, **where) from None
            if self._received_bytes:
                raise ModbusFrameError(
                    self.name, unit, detail=f"{self._received_bytes} bytes unusable", **where
                ) from None
            raise ModbusTimeoutError(self.name, unit, **where) from None
        except (ModbusException, OSError, ValueError) as exc:
            raise ModbusFrameError(self.name, unit, detail=str(exc), **where) from None
        except Exception as exc:  # anything else the serial stack raises: the port is suspect
            self._drop_client()
            raise ModbusConnectionError(
                self.name, unit, detail=failure_text(exc), **where
            ) from None
        if response.isError():
            raise ModbusExceptionResponseError(
                self.name, unit, code=int(response.exception_code), **where
            )
        registers = list(response.registers)
        if len(registers) != req.count:
            raise ModbusFrameError(
                self.name, unit, detail=f"{len(registers)} registers in the response", **where
            )
        return registers

    async def read(
        self,
        unit: int,
        request: ReadRequest,
        *,
        pause_s: float = 0.0,
        retries: int | None = None,
    ) -> list[int]:
        """Read one span of registers from device `unit`, retrying transient failures."""
        attempts = 1 + (self.config.retries if retries is None else retries)
        async with self._lock:
            error: ModbusError | None = None
            for _ in range(attempts):
                client = await self._connect(unit)
                await self._pause_for(unit, pause_s)
                self.requests += 1
                try:
                    registers: list[int] = await self._request_once(client, unit, request)
                except ModbusExceptionResponseError as exc:
                    self._note_failure()
                    error = exc
                    if exc.code not in TRANSIENT_EXCEPTION_CODES:
                        raise
                except (ModbusTimeoutError, ModbusFrameError, ModbusConnectionError) as exc:
                    # A lost connection is reopened by the next attempt (or fails fast there).
                    self._note_failure()
                    error = exc
                else:
                    self._failures_in_a_row = 0
                    return registers
                finally:
                    self._last_request_end[unit] = self._monotonic()
            assert error is not None
            raise error

    def _note_failure(self) -> None:
        self.failures += 1
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= REOPEN_AFTER_FAILURES and self._client is not None:
            log.info(
                "bus %s: %d failures in a row, reopening %s",
                self.name,
                self._failures_in_a_row,
                self.endpoint,
            )
            self._failures_in_a_row = 0
            self._drop_client()

    async def close(self) -> None:
        async with self._lock:
            self._drop_client()


def _close_quietly(client: ModbusBaseClient) -> None:
    """Close a client whose port may already be broken: a failure to close is no news."""
    try:
        client.close()
    except Exception as exc:
        log.debug("closing a client failed: %s", failure_text(exc))
