"""Injected faults surface as the project's exceptions; retries and reconnection recover."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import make_config
from tests.support.net import free_port
from tests.support.serial import SocatPair
from tests.support.waiting import eventually

from campus_energy.config import Config, SimulationConfig
from campus_energy.core.planner import ReadRequest
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
    ModbusFrameError,
    ModbusTimeoutError,
)
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.polling import open_buses, pollers
from campus_energy.meters.simulator.server import Simulator

VOLTAGE = ReadRequest(4, 0, 2)


def one_meter(transport: str = "rtu-tcp", port: int | None = None, **bus: Any) -> Config:
    return make_config(
        [
            {
                "name": "gw",
                "transport": transport,
                "host": "127.0.0.1",
                "port": port or free_port(),
                "timeout_s": 0.2,
                **bus,
            }
        ],
        [{"id": "m1", "bus": "gw", "unit": 7, "profile": "eastron-sdm120"}],
    )


async def running(config: Config, faults: SimulationConfig | None = None) -> Simulator:
    simulator = Simulator(config, faults=faults)
    await simulator.start()
    return simulator


@pytest.fixture
async def bus_and_simulator(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ModbusBus, Simulator]]:
    config = one_meter(retries=request.param.get("retries", 3))
    simulator = await running(config, SimulationConfig(**request.param.get("faults", {})))
    bus = ModbusBus(config.buses[0])
    try:
        yield bus, simulator
    finally:
        await bus.close()
        await simulator.stop()


@pytest.mark.parametrize("bus_and_simulator", [{"faults": {"timeout_rate": 1.0}}], indirect=True)
async def test_a_silent_device_is_a_timeout_naming_bus_unit_and_address(
    bus_and_simulator: tuple[ModbusBus, Simulator],
) -> None:
    bus, simulator = bus_and_simulator
    with pytest.raises(ModbusTimeoutError) as caught:
        await bus.read(7, VOLTAGE)
    error = caught.value
    assert (error.bus, error.unit, error.function, error.address, error.count) == ("gw", 7, 4, 0, 2)
    assert "bus 'gw' unit 7 FC04 address 0 count 2" in str(error)
    assert simulator.meters["m1"].counts.timeout == 4  # the first attempt and 3 retries


@pytest.mark.parametrize("bus_and_simulator", [{"faults": {"exception_rate": 1.0}}], indirect=True)
async def test_an_exception_response_carries_its_code(
    bus_and_simulator: tuple[ModbusBus, Simulator],
) -> None:
    bus, simulator = bus_and_simulator
    with pytest.raises(ModbusExceptionResponseError) as caught:
        await bus.read(7, VOLTAGE)
    assert caught.value.code == 4
    assert "device failure" in str(caught.value)
    assert simulator.meters["m1"].counts.exception == 4  # device failure is retried


@pytest.mark.parametrize("bus_and_simulator", [{"faults": {}}], indirect=True)
async def test_an_illegal_address_is_not_retried(
    bus_and_simulator: tuple[ModbusBus, Simulator],
) -> None:
    bus, _simulator = bus_and_simulator
    with pytest.raises(ModbusExceptionResponseError) as caught:
        await bus.read(7, ReadRequest(4, 500, 2))
    assert caught.value.code == 2
    assert bus.requests == 1


@pytest.mark.parametrize("bus_and_simulator", [{"faults": {"corrupt_rate": 1.0}}], indirect=True)
async def test_a_corrupted_frame_is_a_frame_error(
    bus_and_simulator: tuple[ModbusBus, Simulator],
) -> None:
    bus, _ = bus_and_simulator
    with pytest.raises(ModbusFrameError) as caught:
        await bus.read(7, VOLTAGE, retries=0)
    assert caught.value.unit == 7


@pytest.mark.parametrize(
    "bus_and_simulator",
    [{"retries": 10, "faults": {"timeout_rate": 0.2, "exception_rate": 0.1, "corrupt_rate": 0.1}}],
    indirect=True,
)
async def test_retries_ride_through_an_unreliable_meter(
    bus_and_simulator: tuple[ModbusBus, Simulator],
) -> None:
    bus, simulator = bus_and_simulator
    for _ in range(15):
        registers = await bus.read(7, VOLTAGE)
        assert len(registers) == 2
    counts = simulator.meters["m1"].counts
    assert counts.timeout + counts.exception + counts.corrupt > 0, "no fault was injected"
    assert bus.failures == counts.timeout + counts.exception + counts.corrupt


async def test_an_unknown_unit_gets_no_answer() -> None:
    config = one_meter()
    async with Simulator(config):
        bus = ModbusBus(config.buses[0])
        try:
            with pytest.raises(ModbusTimeoutError):
                await bus.read(99, VOLTAGE, retries=0)
            assert len(await bus.read(7, VOLTAGE)) == 2
        finally:
            await bus.close()


async def test_a_closed_port_is_a_connection_error_and_back_off_fails_fast() -> None:
    config = one_meter()  # nothing listens on its port
    bus = ModbusBus(config.buses[0])
    try:
        with pytest.raises(ModbusConnectionError, match=r"cannot open 127\.0\.0\.1"):
            await bus.read(7, VOLTAGE)
        started = time.monotonic()
        with pytest.raises(ModbusConnectionError, match="next attempt in"):
            await bus.read(7, VOLTAGE)
        assert time.monotonic() - started < 0.1  # no waiting while backing off
    finally:
        await bus.close()


async def read_until_ok(bus: ModbusBus, unit: int, deadline_s: float) -> list[int]:
    """Poll like the logger does (once per attempt) until a read succeeds."""
    failures: list[ModbusError] = []

    async def attempt() -> list[int] | None:
        try:
            return await bus.read(unit, VOLTAGE, retries=0)
        except ModbusError as exc:
            failures.append(exc)
            return None

    try:
        return await eventually(attempt, deadline_s, f"a read of unit {unit} succeeds")
    except AssertionError:
        if failures:
            raise failures[-1] from None  # the last failure, as the logger would see it
        raise


async def test_a_gateway_that_restarts_is_reconnected() -> None:
    config = one_meter()
    bus = ModbusBus(config.buses[0])
    try:
        simulator = await running(config)
        assert len(await bus.read(7, VOLTAGE)) == 2
        await simulator.stop()
        with pytest.raises(ModbusError):
            await bus.read(7, VOLTAGE, retries=0)
        simulator = await running(config)
        try:
            assert len(await read_until_ok(bus, 7, deadline_s=10)) == 2
        finally:
            await simulator.stop()
    finally:
        await bus.close()


async def test_an_unplugged_and_replugged_serial_adapter_is_recovered(tmp_path: Path) -> None:
    cable = SocatPair(tmp_path)
    cable.plug()
    config = make_config(
        [{"name": "line", "transport": "rtu", "device": cable.client_end, "timeout_s": 0.3}],
        [{"id": "m1", "bus": "line", "unit": 7, "profile": "eastron-sdm120"}],
    )
    server_bus = config.buses[0].model_copy(update={"device": cable.server_end})
    server_config = config.model_copy(update={"buses": (server_bus,)})
    server_config._profiles = dict(config.profiles)
    bus = ModbusBus(config.buses[0])
    simulator = await running(server_config)
    try:
        assert len(await bus.read(7, VOLTAGE)) == 2
        # Unplug: the device node disappears under both ends.
        await simulator.stop()
        cable.unplug()
        with pytest.raises(ModbusError):
            await bus.read(7, VOLTAGE, retries=0)
        # Plug back in: a new pty behind the same path.
        cable.plug()
        simulator = await running(server_config)
        assert len(await read_until_ok(bus, 7, deadline_s=15)) == 2
        assert bus.reconnects >= 2
    finally:
        await bus.close()
        await simulator.stop()
        cable.unplug()


async def test_a_meter_that_stops_answering_and_returns() -> None:
    config = one_meter()
    now = [1_764_230_400.0]
    simulator = Simulator(
        config,
        faults=SimulationConfig(disconnect_after_s=10, reconnect_after_s=20),
        clock=lambda: now[0],
    )
    async with simulator:
        buses = open_buses(config)
        (poller,) = pollers(config, buses, config.meters)
        try:
            assert (await poller.poll())["power_w"] > 0
            now[0] += 15
            with pytest.raises(ModbusTimeoutError):
                await poller.poll()
            now[0] += 10
            assert (await poller.poll())["power_w"] > 0
        finally:
            await buses["gw"].close()
