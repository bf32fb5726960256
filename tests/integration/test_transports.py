"""Simulator ↔ poller over Modbus TCP, RTU over TCP, and RTU on a socat pseudo-terminal pair.

Every built-in profile is served by the simulator and read back by the
logger's own polling code; the values must be the simulator's, to float32
precision. The simulator's clock is frozen so both sides see the same instant.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from tests.support.config import make_config
from tests.support.net import free_port
from tests.support.serial import SocatPair

from campus_energy.config import Config
from campus_energy.meters.polling import open_buses, pollers
from campus_energy.meters.profiles import builtin_profiles
from campus_energy.meters.simulator.server import Simulator

FROZEN_T = 1_764_230_400.5  # a Thursday, 13:30 in Asia/Kolkata
PROFILES = sorted(builtin_profiles())


def bus_for(transport: str, socat: SocatPair | None) -> tuple[dict[str, Any], str | None]:
    """(client-side bus config, server-side device path for rtu)."""
    if transport == "rtu":
        assert socat is not None
        return {"name": "line", "transport": "rtu", "device": socat.client_end, "timeout_s": 1.0}, (
            socat.server_end
        )
    return {"name": "line", "transport": transport, "host": "127.0.0.1", "port": free_port()}, None


def with_device(config: Config, device: str | None) -> Config:
    """The same configuration with the rtu bus on the simulator's end of the cable."""
    if device is None:
        return config
    bus = config.buses[0].model_copy(update={"device": device})
    copy = config.model_copy(update={"buses": (bus,)})
    copy._profiles = dict(config.profiles)
    return copy


def same_float32(a: float, b: float) -> bool:
    return struct.pack(">f", a) == struct.pack(">f", b)


@pytest.fixture(params=["tcp", "rtu-tcp", "rtu"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cable(transport: str, tmp_path: Any) -> Any:
    if transport != "rtu":
        yield None
        return
    pair = SocatPair(tmp_path)
    pair.plug()
    try:
        yield pair
    finally:
        pair.unplug()


async def test_every_builtin_profile_reads_back_the_simulated_values(
    transport: str, cable: SocatPair | None
) -> None:
    bus, server_device = bus_for(transport, cable)
    meters = [
        {"id": f"m{unit}", "bus": "line", "unit": unit, "profile": name}
        for unit, name in enumerate(PROFILES, start=1)
    ]
    client_config = make_config([bus], meters)
    simulator = Simulator(with_device(client_config, server_device), clock=lambda: FROZEN_T)
    async with simulator:
        buses = open_buses(client_config)
        try:
            for poller in pollers(client_config, buses, client_config.meters):
                values = await poller.poll()
                truth = simulator.meters[poller.meter.id].values_at(FROZEN_T)
                assert set(values) == {f.name for f in poller.profile.fields}
                for spec in poller.profile.fields:
                    expected = truth[spec.name]
                    assert same_float32(values[spec.name] / spec.scale, expected / spec.scale), (
                        poller.meter.id,
                        spec.name,
                        values[spec.name],
                        expected,
                    )
                assert values["power_w"] > 0
        finally:
            for b in buses.values():
                await b.close()


async def test_meters_on_one_bus_are_read_in_one_request_each_over_tcp() -> None:
    port = free_port()
    config = make_config(
        [{"name": "plant", "transport": "tcp", "host": "127.0.0.1", "port": port}],
        [
            {"id": "a", "bus": "plant", "unit": 1, "profile": "eastron-sdm120"},
            {"id": "b", "bus": "plant", "unit": 2, "profile": "eastron-sdm630"},
        ],
    )
    frames: list[tuple[bool, bytes]] = []
    async with Simulator(config, clock=lambda: FROZEN_T):
        buses = open_buses(
            config, trace=lambda bus, sending, frame: frames.append((sending, frame))
        )
        try:
            for poller in pollers(config, buses, config.meters):
                await poller.poll()
        finally:
            for b in buses.values():
                await b.close()
    sent = [frame for sending, frame in frames if sending]
    assert len(sent) == 2
    # MBAP unit id is byte 6, function code byte 7, then address and count.
    assert [(f[6], f[7], int.from_bytes(f[8:10]), int.from_bytes(f[10:12])) for f in sent] == [
        (1, 4, 0, 76),
        (2, 4, 0, 76),
    ]
