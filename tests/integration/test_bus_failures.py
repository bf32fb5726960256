"""Whatever a bus's serial stack raises is that bus's outage: logged once, retried, the others
untouched; and `scan` counts only units that are really there.

The failures are injected into the logger's RS-485 bus (a real pseudo-terminal pair): a
driver refusing a setting while the client is made (pyserial's ValueError), or while
the port opens (`termios.error`, which is not an OSError), an adapter failing
mid-request, and an exception type nobody anticipated. The TCP bus beside it keeps
logging every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import termios
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import METERS, campus
from tests.support.readback import count, query
from tests.support.serial import SocatPair
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy.config import BusConfig
from campus_energy.core.planner import ReadRequest
from campus_energy.logger.service import MeterLogger
from campus_energy.meters import modbus
from campus_energy.meters.diagnose import scan
from campus_energy.meters.polling import MeterPoller
from campus_energy.meters.simulator.server import Simulator

FAILING_METER = "ece-f2"  # the campus's one meter on its RS-485 bus


class Unanticipated(Exception):
    """An exception type no code of ours names."""


Failure = Callable[[], Exception]


def failing_rtu(where: str, failure: Failure) -> Callable[..., Any]:
    """A client factory for RTU buses whose client fails `where`: "factory", "connect" or
    "request" (after a real open of the port)."""
    real = modbus.CLIENT_FACTORIES["rtu"]

    def factory(config: BusConfig, **common: Any) -> Any:
        if where == "factory":
            raise failure()
        client = real(config, **common)

        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise failure()

        if where == "connect":
            client.connect = fail
        else:
            client.read_input_registers = fail
            client.read_holding_registers = fail
        return client

    return factory


CASES: dict[str, tuple[str, Failure, str]] = {
    "refused-setting": ("factory", lambda: ValueError("Not a valid parity: 'E'"), "ValueError"),
    "termios-at-open": ("connect", lambda: termios.error(22, "Invalid argument"), "termios.error"),
    "unanticipated-at-open": ("connect", lambda: Unanticipated("driver says no"), "Unanticipated"),
    "termios-mid-request": ("request", lambda: termios.error(5, "I/O error"), "termios.error"),
    "unanticipated-mid-request": ("request", lambda: Unanticipated("unplugged"), "Unanticipated"),
}


# One case per place a bus fails (its settings, opening, a request) runs in `make test`; the
# same places failing with another error type run in `make faults`.
LONG_CASES = {"termios-at-open", "termios-mid-request"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.long] if c in LONG_CASES else []) for c in CASES]
)
async def test_a_failing_serial_bus_is_its_own_outage(
    case: str,
    tmp_path: Path,
    mosquitto: Any,
    socat_pair: SocatPair,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    where, failure, named = CASES[case]
    config, simulated = campus(tmp_path, mosquitto.port, rtu=socat_pair)
    monkeypatch.setitem(modbus.CLIENT_FACTORIES, "rtu", failing_rtu(where, failure))
    db = config.storage.path
    logger = MeterLogger(config)
    caplog.set_level(logging.INFO, logger="campus_energy")
    async with Simulator(simulated), serving(logger, "ready"):
        # the TCP bus logs on; the failing bus is retried (it fails again) without stopping it
        await eventually(lambda: all(count(db, m) >= 12 for m in METERS), timeout=30)
        assert logger.counters.by_meter_failures.get(FAILING_METER, 0) >= 2
        assert count(db, FAILING_METER) == 0
        status = logger.statuses.current[FAILING_METER]
        assert status.state in {"error", "offline"}
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and FAILING_METER in r.getMessage()
    ]
    assert len(errors) == 1, errors  # once per outage, not once per poll
    assert named in errors[0], errors[0]
    assert not [r for r in caplog.records if r.exc_info], "a failure escaped as a traceback"


# -- scan behind a gateway ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway(present: dict[int, int]) -> AsyncIterator[int]:
    """A Modbus TCP gateway on a free port: units in `present` answer one register with their
    value; for every other unit it answers exception 11 (the target failed to respond)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                transaction, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                function = pdu[0]
                if unit in present:
                    body = struct.pack(">BBH", function, 2, present[unit])
                else:
                    body = struct.pack(">BB", function | 0x80, 11)
                writer.write(struct.pack(">HHHB", transaction, 0, len(body) + 1, unit) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_scan_counts_no_unit_a_gateway_says_did_not_answer() -> None:
    async with gateway({3: 0x1234, 7: 0x0042}) as port:
        bus = BusConfig(name="gw", transport="tcp", host="127.0.0.1", port=port)
        hits = await scan(bus, range(1, 11), request=ReadRequest(4, 0, 1), timeout_s=0.5)
    assert [(h.unit, h.registers) for h in hits] == [(3, [0x1234]), (7, [0x0042])]


@pytest.mark.slow
async def test_a_bus_whose_polling_breaks_is_started_again_and_the_others_poll_on(
    tmp_path: Path,
    mosquitto: Any,
    socat_pair: SocatPair,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure no layer below turned into a meter's outage (here: the RS-485 meter's decoding
    raising) stops that bus's loop, which is logged with its traceback and started again with
    back-off; the logger and its TCP bus run on."""
    config, simulated = campus(tmp_path, mosquitto.port, rtu=socat_pair)
    logger = MeterLogger(config)
    real_poll = MeterPoller.poll

    async def poll(poller: MeterPoller) -> dict[str, float]:
        if poller.meter.id == FAILING_METER:
            raise Unanticipated("a decoder bug")
        return await real_poll(poller)

    monkeypatch.setattr(MeterPoller, "poll", poll)
    db = config.storage.path
    caplog.set_level(logging.INFO, logger="campus_energy")

    def restarts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "polling failed" in r.getMessage()]

    async with Simulator(simulated), serving(logger, "ready"):
        await eventually(lambda: len(restarts()) >= 2, timeout=15)  # 1 s, then 2 s back-off
        await eventually(lambda: all(count(db, m) >= 12 for m in METERS), timeout=30)
    assert all("bus rs485" in r.getMessage() and r.exc_info for r in restarts())
    assert count(db, FAILING_METER) == 0


@pytest.mark.slow
async def test_a_cycle_that_breaks_midway_leaves_no_hole_in_the_books(
    tmp_path: Path,
    mosquitto: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When a meter's poll fails unexpectedly after other meters of its bus were read in the
    same cycle, nothing of that cycle is kept, so each meter's next reading takes up its
    sequence and integrates its energy from the last stored one: no number and no
    watt-hour is skipped."""
    config, simulated = campus(tmp_path, mosquitto.port)
    logger = MeterLogger(config)
    real_poll = MeterPoller.poll
    calls = {"admin-old": 0}

    async def poll(poller: MeterPoller) -> dict[str, float]:
        if poller.meter.id == "admin-old":  # the last meter of the bus's cycle
            calls["admin-old"] += 1
            if calls["admin-old"] == 4:
                raise Unanticipated("a decoder bug, once")
        return await real_poll(poller)

    monkeypatch.setattr(MeterPoller, "poll", poll)
    db = config.storage.path
    caplog.set_level(logging.INFO, logger="campus_energy")
    async with Simulator(simulated), serving(logger, "ready"):
        await eventually(lambda: any("polling failed" in r.getMessage() for r in caplog.records))
        await eventually(lambda: all(count(db, m) >= 10 for m in METERS), timeout=30)
    for meter in METERS:
        seqs = sorted(
            seq for (seq,) in query(db, "SELECT seq FROM readings WHERE meter_id = ?", (meter,))
        )
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (meter, seqs)
