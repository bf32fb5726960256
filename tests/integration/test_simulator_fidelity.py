"""The simulator serves what real Eastron firmware serves, checked with a plain pymodbus client.

The register maps below are written out from the Eastron datasheets, not taken
from the simulator's own tables, and values are decoded here with `struct`:
a test fails when the simulator's table, its encoding or its arithmetic is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from tests.support.config import make_config, meter_at, tcp_bus
from tests.support.net import free_port
from tests.support.serial import SocatPair

from campus_energy.config import Config, load_config
from campus_energy.errors import ConfigError
from campus_energy.meters.simulator.server import Simulator

FROZEN_T = 1_764_230_400.5  # a Thursday, 13:30 in Asia/Kolkata: working hours
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, GATEWAY_NO_RESPONSE = 1, 2, 11

# --- the datasheets' input registers (FC 04), 0-based wire addresses -----------------------

SINGLE_PHASE = {
    "V": 0x0000,
    "I": 0x0006,
    "P": 0x000C,
    "VA": 0x0012,
    "VAr": 0x0018,
    "PF": 0x001E,
    "angle": 0x0024,
    "Hz": 0x0046,
    "import kWh": 0x0048,
    "export kWh": 0x004A,
    "import kVArh": 0x004C,
    "export kVArh": 0x004E,
    "total kWh": 0x0156,
    "total kVArh": 0x0158,
}
SDM72D = {
    **{f"V{n}": 0x0000 + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"I{n}": 0x0006 + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"P{n}": 0x000C + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"VA{n}": 0x0012 + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"VAr{n}": 0x0018 + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"PF{n}": 0x001E + 2 * (n - 1) for n in (1, 2, 3)},
    "V avg": 0x002A,
    "I avg": 0x002E,
    "I sum": 0x0030,
    "P": 0x0034,
    "VA": 0x0038,
    "VAr": 0x003C,
    "PF": 0x003E,
    "Hz": 0x0046,
    "import kWh": 0x0048,
    "export kWh": 0x004A,
    "total kWh": 0x0156,
    "total kVArh": 0x0158,
}
SDM630 = {
    **SDM72D,
    "import kVArh": 0x004C,
    "export kVArh": 0x004E,
    **{f"import kWh {n}": 0x015A + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"export kWh {n}": 0x0160 + 2 * (n - 1) for n in (1, 2, 3)},
    **{f"total kWh {n}": 0x0166 + 2 * (n - 1) for n in (1, 2, 3)},
}
MAPS = {
    "eastron-sdm120": SINGLE_PHASE,
    "eastron-sdm230": SINGLE_PHASE,
    "eastron-sdm630": SDM630,
    "eastron-sdm72d": SDM72D,
}
# The holding registers (FC 03): network parity/stop, Modbus address, baud rate code
PARITY, ADDRESS, BAUD = 0x0012, 0x0014, 0x001C


def f32(words: Iterable[int], order: str = "ABCD") -> float:
    """A float32 from two registers in a byte order (ABCD: big-endian words)."""
    raw = struct.pack(">HH", *words)
    if order in ("BADC", "DCBA"):
        raw = raw[1::-1] + raw[:1:-1]
    if order in ("CDAB", "DCBA"):
        raw = raw[2:] + raw[:2]
    return float(struct.unpack(">f", raw)[0])


def ulp32(x: float) -> float:
    """The spacing of float32 values at x."""
    return 2.0 ** (math.frexp(abs(x))[1] - 24)


# --- a simulator and an independent client ---------------------------------------------------


@asynccontextmanager
async def served(
    config: Config, clock: Callable[[], float] = lambda: FROZEN_T
) -> AsyncIterator[Simulator]:
    simulator = Simulator(config, clock=clock)
    async with simulator:
        yield simulator


@asynccontextmanager
async def tcp_client(
    config: Config, bus: int = 0, timeout: float = 2.0
) -> AsyncIterator[AsyncModbusTcpClient]:
    port, transport = config.buses[bus].port, config.buses[bus].transport
    framer = FramerType.RTU if transport == "rtu-tcp" else FramerType.SOCKET
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=framer, timeout=timeout, retries=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def read(client: Any, function: int, unit: int, address: int, count: int) -> ModbusPDU:
    call = client.read_holding_registers if function == 3 else client.read_input_registers
    response: ModbusPDU = await call(address, count=count, device_id=unit)
    return response


async def words(client: Any, function: int, unit: int, address: int, count: int) -> list[int]:
    response = await read(client, function, unit, address, count)
    assert not response.isError(), (function, unit, hex(address), count, response)
    return list(response.registers)


async def refusal(client: Any, function: int, unit: int, address: int, count: int) -> int:
    response = await read(client, function, unit, address, count)
    assert response.isError(), (function, unit, hex(address), count, response)
    return int(response.exception_code)


async def documented(client: Any, unit: int, table: dict[str, int]) -> dict[str, float]:
    """Every register of a datasheet map, each read on its own (FC 04)."""
    return {name: f32(await words(client, 4, unit, a, 2)) for name, a in table.items()}


def all_models(**bus: Any) -> Config:
    return make_config(
        [tcp_bus(**bus)],
        [meter_at(f"m{u}", "plant", u, name) for u, name in enumerate(sorted(MAPS), start=1)],
    )


UNITS = {name: unit for unit, name in enumerate(sorted(MAPS), start=1)}

# --- FC 03 and FC 04 --------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MAPS))
async def test_input_registers_carry_the_whole_documented_map(model: str) -> None:
    config = all_models()
    unit = UNITS[model]
    async with served(config) as simulator, tcp_client(config) as client:
        values = await documented(client, unit, MAPS[model])
        truth = simulator.meters[f"m{unit}"].values_at(FROZEN_T)
    assert values["P"] == pytest.approx(truth["power_w"], rel=1e-6)
    assert values["import kWh"] == pytest.approx(truth["import_energy_wh"] / 1000, rel=1e-6)
    assert 49.9 < values["Hz"] < 50.1
    assert values["P"] > 0


@pytest.mark.parametrize("model", sorted(MAPS))
async def test_holding_registers_carry_the_configuration_not_the_measurements(model: str) -> None:
    baud, code = (4800, 1) if model in ("eastron-sdm120", "eastron-sdm230") else (19200, 3)
    port = free_port()
    bus = {"name": "gw", "transport": "rtu-tcp", "host": "127.0.0.1", "port": port}
    config = make_config(
        [{**bus, "baudrate": baud, "parity": "N", "stopbits": 2}],
        [meter_at("m", "gw", 17, model)],
    )
    async with served(config), tcp_client(config) as client:
        configuration = await words(client, 3, 17, PARITY, BAUD + 2 - PARITY)
        at_voltage = await words(client, 3, 17, 0x0000, 2)
        at_frequency = await refusal(client, 3, 17, 0x0046, 2)
        voltage = f32(await words(client, 4, 17, 0x0000, 2))
    assert f32(configuration[0:2]) == 3.0  # 2 stop bits, no parity
    assert f32(configuration[ADDRESS - PARITY :][:2]) == 17.0
    assert f32(configuration[BAUD - PARITY :][:2]) == float(code)
    assert at_voltage == [0, 0]  # a gap of the configuration table, never the voltage
    assert at_frequency == ILLEGAL_ADDRESS  # beyond the configuration table
    assert 200 < voltage < 260


async def test_parity_codes_follow_the_bus() -> None:
    buses = [
        {"name": f"gw{p}", "transport": "rtu-tcp", "host": "127.0.0.1", "port": free_port()}
        | {"parity": p.upper(), "baudrate": 2400}
        for p in ("n", "e", "o")
    ]
    config = make_config(buses, [meter_at(f"m{p}", f"gw{p}", 1, "eastron-sdm120") for p in "neo"])
    found = []
    async with served(config):
        for index in range(3):
            async with tcp_client(config, bus=index) as client:
                registers = await words(client, 3, 1, PARITY, BAUD + 2 - PARITY)
                found.append((f32(registers[:2]), f32(registers[BAUD - PARITY :][:2])))
    assert found == [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]  # 2400 baud is code 0


async def test_a_model_without_a_documented_map_serves_its_fields_on_either_function() -> None:
    config = make_config([tcp_bus()], [meter_at("old", "plant", 1, "campus-legacy")])
    async with served(config) as simulator, tcp_client(config) as client:
        holding = f32(await words(client, 3, 1, 10, 2))
        inputs = f32(await words(client, 4, 1, 10, 2))
        beyond = await refusal(client, 3, 1, 56, 2)  # past its last field (frequency, 54)
        truth = simulator.meters["old"].values_at(FROZEN_T)["power_w"]
    assert holding == inputs == pytest.approx(-truth / 1000, rel=1e-6)  # kW, sign inverted
    assert beyond == ILLEGAL_ADDRESS


async def test_writes_and_coils_are_refused() -> None:
    config = all_models()
    async with served(config), tcp_client(config) as client:
        write = await client.write_register(ADDRESS, 0x4000, device_id=1)
        coils = await client.read_coils(0, count=8, device_id=1)
        configuration = await words(client, 3, 1, ADDRESS, 2)
    assert write.isError() and write.exception_code == ILLEGAL_FUNCTION
    assert coils.isError() and coils.exception_code == ILLEGAL_FUNCTION
    assert f32(configuration) == 1.0  # the address is what it was


# --- every documented register is consistent --------------------------------------------------


@pytest.mark.parametrize("model", ["eastron-sdm120", "eastron-sdm230"])
async def test_single_phase_values_are_consistent(model: str) -> None:
    config = all_models()
    async with served(config), tcp_client(config) as client:
        v = await documented(client, UNITS[model], SINGLE_PHASE)
    assert v["VA"] == pytest.approx(v["V"] * v["I"], rel=1e-5)
    assert v["P"] == pytest.approx(v["VA"] * v["PF"], rel=1e-5)
    assert v["VAr"] == pytest.approx(math.sqrt(v["VA"] ** 2 - v["P"] ** 2), rel=1e-4)
    assert v["angle"] == pytest.approx(math.degrees(math.acos(v["PF"])), abs=1e-3)
    assert v["export kWh"] == 0.0 and v["export kVArh"] == 0.0  # a consuming load
    assert v["total kWh"] == v["import kWh"] + v["export kWh"]
    assert v["total kVArh"] == v["import kVArh"] + v["export kVArh"]
    assert 0 < v["import kVArh"] < v["import kWh"]  # an inductive load at PF 0.82..0.99


@pytest.mark.parametrize("model", ["eastron-sdm630", "eastron-sdm72d"])
async def test_three_phase_values_are_consistent(model: str) -> None:
    config = all_models()
    async with served(config), tcp_client(config) as client:
        v = await documented(client, UNITS[model], MAPS[model])
    phases = (1, 2, 3)
    assert v["P"] == pytest.approx(sum(v[f"P{n}"] for n in phases), rel=1e-5)
    assert v["VA"] == pytest.approx(sum(v[f"VA{n}"] for n in phases), rel=1e-5)
    assert v["VAr"] == pytest.approx(sum(v[f"VAr{n}"] for n in phases), rel=1e-5)
    assert v["PF"] == pytest.approx(v["P"] / v["VA"], rel=1e-5)
    assert v["I sum"] == pytest.approx(sum(v[f"I{n}"] for n in phases), rel=1e-5)
    assert v["I avg"] == pytest.approx(v["I sum"] / 3, rel=1e-5)
    assert v["V avg"] == pytest.approx(sum(v[f"V{n}"] for n in phases) / 3, rel=1e-5)
    for n in phases:
        assert v[f"VA{n}"] == pytest.approx(v[f"V{n}"] * v[f"I{n}"], rel=1e-5)
        assert v[f"P{n}"] == pytest.approx(v[f"VA{n}"] * v[f"PF{n}"], rel=1e-5)
        assert v[f"VAr{n}"] == pytest.approx(
            math.sqrt(v[f"VA{n}"] ** 2 - v[f"P{n}"] ** 2), rel=1e-4
        )
    assert v["export kWh"] == 0.0
    assert v["total kWh"] == v["import kWh"] + v["export kWh"]
    assert v["total kVArh"] > 0


async def test_the_sdm630s_per_phase_energies_add_up_to_its_totals() -> None:
    config = all_models()
    async with served(config), tcp_client(config) as client:
        v = await documented(client, UNITS["eastron-sdm630"], SDM630)
    imported = sum(v[f"import kWh {n}"] for n in (1, 2, 3))
    assert abs(imported - v["import kWh"]) <= 2 * ulp32(v["import kWh"])
    for n in (1, 2, 3):
        assert v[f"export kWh {n}"] == 0.0
        assert v[f"total kWh {n}"] == v[f"import kWh {n}"] + v[f"export kWh {n}"]
        share = v[f"P{n}"] / v["P"]  # each phase's energy is its share of the power
        assert v[f"import kWh {n}"] == pytest.approx(v["import kWh"] * share, rel=1e-5)
    assert v["total kVArh"] == v["import kVArh"] + v["export kVArh"]


async def test_the_import_register_only_rises() -> None:
    now = [FROZEN_T]
    config = all_models()
    readings = []
    async with served(config, clock=lambda: now[0]), tcp_client(config) as client:
        for step in range(5):
            now[0] = FROZEN_T + 60 * step
            registers = await words(client, 4, UNITS["eastron-sdm630"], 0x0048, 4)
            readings.append((f32(registers[:2]), f32(registers[2:])))
    imports = [i for i, _ in readings]
    assert imports == sorted(imports) and imports[-1] > imports[0]
    assert {e for _, e in readings} == {0.0}


# --- undocumented registers -------------------------------------------------------------------


async def test_gap_reads_are_answered_with_zeros_by_default() -> None:
    config = all_models()
    async with served(config), tcp_client(config) as client:
        span = await words(client, 4, UNITS["eastron-sdm120"], 0x0000, 0x0050)
        beyond = await refusal(client, 4, UNITS["eastron-sdm120"], 0x015A, 2)
    assert span[0x0002:0x0006] == [0, 0, 0, 0]  # between voltage and current
    assert span[0x0026:0x0046] == [0] * 0x20  # between phase angle and frequency
    assert 200 < f32(span[0:2]) < 260 and 49.9 < f32(span[0x46:0x48]) < 50.1
    assert beyond == ILLEGAL_ADDRESS  # the SDM120 has no per-phase energies


async def test_firmware_that_refuses_gap_reads_answers_only_documented_spans() -> None:
    config = make_config(
        [tcp_bus()],
        [meter_at("m", "plant", 1, "eastron-sdm120", simulate={"refuse_gap_reads": True})],
    )
    async with served(config), tcp_client(config) as client:
        across = await refusal(client, 4, 1, 0x0000, 0x0008)  # voltage .. current, and the gap
        gap_only = await refusal(client, 4, 1, 0x0040, 2)
        voltage = await words(client, 4, 1, 0x0000, 2)
        contiguous = await words(client, 4, 1, 0x0046, 0x000A)  # Hz .. export kVArh, no gap
        configuration_across = await refusal(client, 3, 1, PARITY, BAUD + 2 - PARITY)
        address = await words(client, 3, 1, ADDRESS, 2)
    assert across == gap_only == configuration_across == ILLEGAL_ADDRESS
    assert 200 < f32(voltage) < 260
    assert 49.9 < f32(contiguous[:2]) < 50.1
    assert f32(address) == 1.0


async def test_refused_registers_draw_exception_2_even_inside_a_documented_span() -> None:
    config = make_config(
        [tcp_bus()],
        [meter_at("m", "plant", 1, "eastron-sdm120", simulate={"refused_registers": [0x46]})],
    )
    async with served(config), tcp_client(config) as client:
        alone = await refusal(client, 4, 1, 0x0046, 2)
        inside = await refusal(client, 4, 1, 0x0000, 0x0050)
        energy = await words(client, 4, 1, 0x0048, 2)
        before = await words(client, 4, 1, 0x0000, 0x0046)
    assert alone == inside == ILLEGAL_ADDRESS
    assert f32(energy) > 1000
    assert 200 < f32(before[:2]) < 260


def test_the_firmware_options_read_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "campus-energy.toml"
    path.write_text(
        """
[[buses]]
name = "gw"
transport = "tcp"
host = "127.0.0.1"
[buses.simulate]
absent_units = "gateway-exception"

[[meters]]
id = "m"
bus = "gw"
unit = 1
profile = "eastron-sdm630"
[meters.simulate]
refuse_gap_reads = true
refused_registers = [0x46]
word_order = "CDAB"
response_delay_s = 0.25
replace_at_s = 60
""",
        encoding="utf-8",
    )
    config = load_config(path)
    sim = config.meters[0].simulate
    assert sim.refuse_gap_reads and sim.refused_registers == (0x46,)
    assert (sim.word_order, sim.response_delay_s, sim.replace_at_s) == ("CDAB", 0.25, 60)
    assert config.buses[0].simulate.absent_units == "gateway-exception"


TCP = {"name": "b", "transport": "tcp", "host": "127.0.0.1"}
RTU = {"name": "b", "transport": "rtu", "device": "/dev/ttyUSB0"}


@pytest.mark.parametrize(
    ("bus", "simulate", "key"),
    [
        (TCP, {"refused_registers": [0x10000]}, "simulate.refused_registers"),
        (TCP, {"word_order": "ACBD"}, "simulate.word_order"),
        (TCP, {"response_delay_s": -1}, "simulate.response_delay_s"),
        (TCP, {"replace_at_s": -5}, "simulate.replace_at_s"),
        (RTU | {"simulate": {"absent_units": "gateway-exception"}}, {}, "gateway-exception"),
        (TCP | {"simulate": {"absent_units": "answer"}}, {}, "simulate.absent_units"),
    ],
)
def test_bad_simulation_options_are_refused_naming_the_key(
    bus: dict[str, Any], simulate: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config([bus], [meter_at("m", "b", 1, "eastron-sdm120", simulate=simulate)])
    assert key in str(caught.value)


# --- word order, slow answers, replacement, gateways -----------------------------------------


async def test_a_word_swapped_device_reads_as_garbage_in_the_profiles_order() -> None:
    config = make_config(
        [tcp_bus()],
        [meter_at("m", "plant", 1, "eastron-sdm120", simulate={"word_order": "CDAB"})],
    )
    async with served(config) as simulator, tcp_client(config) as client:
        registers = await words(client, 4, 1, 0x0000, 2)
        truth = simulator.meters["m"].values_at(FROZEN_T)["voltage_v"]
    assert f32(registers, "CDAB") == pytest.approx(truth, rel=1e-6)
    assert not 100 < f32(registers, "ABCD") < 400  # what an ABCD profile makes of it


async def test_a_slow_responder_times_out_an_impatient_client_only() -> None:
    config = make_config(
        [tcp_bus(), tcp_bus("quick")],
        [
            meter_at("slow", "plant", 1, "eastron-sdm120", simulate={"response_delay_s": 0.6}),
            meter_at("fast", "quick", 1, "eastron-sdm120"),
        ],
    )
    async with served(config):
        async with tcp_client(config, timeout=0.15) as impatient:
            with pytest.raises(ModbusIOException):
                await impatient.read_input_registers(0, count=2, device_id=1)
        async with tcp_client(config, timeout=5.0) as patient, tcp_client(config, 1) as other:
            slow = asyncio.create_task(patient.read_input_registers(0, count=2, device_id=1))
            quick = await other.read_input_registers(0, count=2, device_id=1)
            assert not slow.done()  # the other bus answered while this one is still waiting
            answer = await slow
    assert not quick.isError() and not answer.isError()
    assert 200 < f32(answer.registers) < 260


async def test_a_replaced_meter_restarts_its_import_register_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [FROZEN_T]
    config = make_config(
        [tcp_bus()], [meter_at("m", "plant", 1, "eastron-sdm630", simulate={"replace_at_s": 60})]
    )
    caplog.set_level(logging.WARNING, logger="campus_energy")
    async with served(config, clock=lambda: now[0]) as simulator, tcp_client(config) as client:
        before = f32(await words(client, 4, 1, 0x0048, 2))
        now[0] = FROZEN_T + 90
        after = f32(await words(client, 4, 1, 0x0048, 2))
        now[0] = FROZEN_T + 120
        later = f32(await words(client, 4, 1, 0x0048, 2))
        total = f32(await words(client, 4, 1, 0x0156, 2))
        load = simulator.meters["m"].load
    assert before > 1000  # kWh: an old meter
    assert after == pytest.approx(load.energy_wh(FROZEN_T + 60, FROZEN_T + 90) / 1000, rel=1e-5)
    assert 0 < after < later == total < 1  # counting up again from 0, the total with it
    replaced = [r for r in caplog.records if "replaced" in r.getMessage()]
    assert len(replaced) == 1 and "m" in replaced[0].getMessage()


async def test_a_gateway_answers_exception_11_for_absent_units_and_a_line_stays_silent() -> None:
    config = make_config(
        [tcp_bus("gateway", simulate={"absent_units": "gateway-exception"}), tcp_bus("line")],
        [meter_at("a", "gateway", 1, "eastron-sdm120"), meter_at("b", "line", 1, "eastron-sdm120")],
    )
    async with served(config):
        async with tcp_client(config, 0) as gateway:
            present = await words(gateway, 4, 1, 0x0000, 2)
            absent = [await refusal(gateway, 4, unit, 0x0000, 2) for unit in (2, 9, 247)]
            absent_holding = await refusal(gateway, 3, 5, 0x0014, 2)
        async with tcp_client(config, 1, timeout=0.2) as line:
            with pytest.raises(ModbusException):
                await line.read_input_registers(0, count=2, device_id=2)
    assert 200 < f32(present) < 260
    assert absent == [GATEWAY_NO_RESPONSE] * 3 and absent_holding == GATEWAY_NO_RESPONSE


# --- RTU framing on a serial line -------------------------------------------------------------


async def test_the_tables_over_rtu_on_a_serial_line(tmp_path: Path) -> None:
    cable = SocatPair(tmp_path)
    cable.plug()
    try:
        config = make_config(
            [{"name": "line", "transport": "rtu", "device": cable.server_end, "baudrate": 9600}],
            [
                meter_at("one", "line", 3, "eastron-sdm120"),
                meter_at("three", "line", 4, "eastron-sdm630", simulate={"refuse_gap_reads": True}),
            ],
        )
        client = AsyncModbusSerialClient(cable.client_end, baudrate=9600, timeout=1.0, retries=0)
        async with served(config):
            assert await client.connect()
            try:
                single = await documented(client, 3, SINGLE_PHASE)
                configuration = await words(client, 3, 3, PARITY, BAUD + 2 - PARITY)
                energies = await words(client, 4, 4, 0x015A, 6)
                refused = await refusal(client, 4, 4, 0x0000, 0x0030)
            finally:
                client.close()
    finally:
        cable.unplug()
    assert single["total kWh"] == single["import kWh"] > 1000
    assert single["VA"] == pytest.approx(single["V"] * single["I"], rel=1e-5)
    assert [f32(configuration[i:][:2]) for i in (0, ADDRESS - PARITY, BAUD - PARITY)] == [0, 3, 2]
    assert all(f32(energies[i : i + 2]) > 0 for i in (0, 2, 4))
    assert refused == ILLEGAL_ADDRESS  # 0x002C..0x002D is no register of the SDM630


# --- a building with rooftop PV ---------------------------------------------------------------

SUNNY_NOON = 1_772_953_200.0  # Sunday 8 March 2026, 12:30 in Asia/Kolkata: it exports


@pytest.mark.parametrize("model", sorted(MAPS))
async def test_a_pv_building_serves_negative_power_and_its_export_register(model: str) -> None:
    simulate = {"base_w": 400, "peak_w": 1500, "pv_peak_w": 6000, "cloudiness": 0.1}
    config = make_config([tcp_bus()], [meter_at("roof", "plant", 1, model, simulate=simulate)])
    async with served(config, clock=lambda: SUNNY_NOON) as simulator:
        async with tcp_client(config) as client:
            v = await documented(client, 1, MAPS[model])
        truth = simulator.meters["roof"].values_at(SUNNY_NOON)
    assert v["P"] == pytest.approx(truth["power_w"], rel=1e-6) and v["P"] < -1000
    assert v["export kWh"] == pytest.approx(truth["export_energy_wh"] / 1000, rel=1e-6)
    assert v["export kWh"] > 100  # its own starting value and the exports since the epoch
    assert abs(v["total kWh"] - v["import kWh"] - v["export kWh"]) <= 2 * ulp32(v["total kWh"])
    currents = [v[k] for k in ("I", "I sum") if k in v]
    assert currents and all(c > 0 for c in currents)  # current is a magnitude
