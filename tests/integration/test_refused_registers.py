"""Firmware that refuses registers (exception 2), against the simulator over Modbus TCP: the
logger learns a plan around them, keeps logging, remembers it across a restart, and learns
again when the profile's register map changes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import config_data, make_config, meter_at, tcp_bus, write_toml
from tests.support.net import free_port
from tests.support.processes import run_cli
from tests.support.readback import count, query
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy import cli
from campus_energy.config import Config, load_config
from campus_energy.core.planner import Extent, ReadRequest
from campus_energy.errors import ModbusConnectionError, ModbusFieldRefusedError
from campus_energy.logger.service import MeterLogger
from campus_energy.meters import polling
from campus_energy.meters.learned import PlanBook, learned_plans_path, read_book
from campus_energy.meters.polling import open_buses, pollers
from campus_energy.meters.simulator.server import Answer, Simulator

POLLING = "campus_energy.meters.polling"
SDM120_FIELDS = (
    "voltage_v",
    "current_a",
    "power_w",
    "power_factor",
    "frequency_hz",
    "import_energy_wh",
    "export_energy_wh",
)
# The SDM120 profile's fields, read each on its own (the last three are adjacent).
FIELDS_ONLY = [(0, 2), (6, 2), (12, 2), (30, 2), (70, 6)]


def one_meter(folder: Path, broker_port: int, **simulate: Any) -> Config:
    return make_config(
        [tcp_bus(timeout_s=0.5, retries=0)],
        [meter_at("lab", "plant", 4, "eastron-sdm120", interval_s=0.5, simulate=simulate)],
        storage={"path": str(folder / "store.db")},
        mqtt={"host": "127.0.0.1", "port": broker_port},
        logger={"id": "test-logger"},
    )


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == POLLING and r.levelno == level and text in r.getMessage()
    ]


def spans(plan: tuple[ReadRequest, ...]) -> list[tuple[int, int]]:
    return [(r.start, r.count) for r in plan]


@pytest.mark.slow
async def test_a_meter_refusing_gap_reads_logs_every_field_after_learning_its_plan(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=POLLING)
    config = one_meter(tmp_path, mosquitto.port, refuse_gap_reads=True)
    db = config.storage.path
    answers: list[Answer] = []
    async with Simulator(config, on_answer=answers.append):
        logger = MeterLogger(config)
        async with serving(logger, "ready"):
            await eventually(lambda: count(db, "lab") >= 6, timeout=20)
            bus = logger.runs["lab"].poller.bus
            refused_while_learning = bus.failures
            answered = len(answers)
            await eventually(lambda: len(answers) >= answered + 3 * len(FIELDS_ONLY), timeout=10)
            assert bus.failures == refused_while_learning  # no request is refused any more
            assert spans(logger.runs["lab"].poller.plan) == FIELDS_ONLY
    assert refused_while_learning > 0
    rows = query(
        db,
        "SELECT voltage_v, current_a, power_w, power_factor, frequency_hz, "
        "import_energy_wh FROM readings WHERE meter_id = 'lab'",
    )
    assert rows and all(None not in row for row in rows)  # the first poll's values too
    learned = messages(caplog, logging.INFO, "meter lab")
    assert len(learned) == 1, learned
    assert "FC04 0+76 → FC04 0+2, FC04 6+2, FC04 12+2, FC04 30+2, FC04 70+6" in learned[0]
    assert "registers 2–5, 8–11, 14–29, 32–69" in learned[0]
    assert not messages(caplog, logging.WARNING, "")
    stored = json.loads(learned_plans_path(db).read_text())
    (device,) = stored["devices"]
    assert (device["bus"], device["unit"], device["profile"]) == ("plant", 4, "eastron-sdm120")
    assert device["refused_registers"] == [[2, 6], [8, 12], [14, 30], [32, 70]]


async def test_a_refused_field_is_left_out_and_reported_once_while_power_and_energy_flow(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=POLLING)
    config = one_meter(tmp_path, mosquitto.port, refused_registers=[0x46])
    db = config.storage.path
    async with Simulator(config):
        logger = MeterLogger(config)
        async with serving(logger, "ready"):
            await eventually(lambda: count(db, "lab") >= 8, timeout=20)
            poller = logger.runs["lab"].poller
    assert spans(poller.plan) == [(0, 32), (72, 4)]
    rows = query(
        db,
        "SELECT power_w, frequency_hz, voltage_v, energy_wh, energy_total_wh FROM readings "
        "WHERE meter_id = 'lab' ORDER BY seq",
    )
    assert len(rows) >= 8
    assert all(power is not None and power > 0 for power, *_ in rows)
    assert all(frequency is None for _, frequency, *_ in rows)
    assert all(voltage is not None for _, _, voltage, *_ in rows)
    assert rows[-1][4] > rows[1][4] > 0  # energy keeps adding up
    warned = messages(caplog, logging.WARNING, "frequency_hz")
    assert len(warned) == 1, warned
    assert "meter lab" in warned[0] and "FC04 address 70" in warned[0]
    assert "left out" in warned[0]
    assert len(messages(caplog, logging.INFO, "plan FC04 0+76")) == 1


async def test_a_restarted_logger_never_asks_what_was_refused_again(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=POLLING)
    config = one_meter(tmp_path, mosquitto.port, refuse_gap_reads=True)
    db = config.storage.path
    answers: list[Answer] = []
    async with Simulator(config, on_answer=answers.append):
        first = MeterLogger(config)
        async with serving(first, "ready"):
            await eventually(lambda: count(db, "lab") >= 2, timeout=20)
        assert first.runs["lab"].poller.bus.failures > 0  # it learned by being refused
        caplog.clear()
        answers.clear()
        stored = count(db, "lab")
        second = MeterLogger(config)
        async with serving(second, "ready"):
            assert spans(second.runs["lab"].poller.plan) == FIELDS_ONLY  # before any poll
            await eventually(lambda: count(db, "lab") >= stored + 5, timeout=20)
        bus = second.runs["lab"].poller.bus
    assert bus.failures == 0
    assert bus.requests == len(answers) > 0  # every request answered ...
    assert {(a.start, a.count) for a in answers} <= set(FIELDS_ONLY)  # ... and none spans a gap
    assert len(messages(caplog, logging.INFO, "learned earlier")) == 1
    assert not messages(caplog, logging.INFO, "→")  # nothing learned again


def custom_profile(folder: Path, power_address: int) -> Path:
    """A profile of a site's own meter (not a built-in model): voltage, current, power."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site-meter.toml").write_text(
        'name = "site-meter"\n'
        'function = "input"\n'
        "fields = [\n"
        '  { name = "voltage_v", address = 0 },\n'
        '  { name = "current_a", address = 6 },\n'
        f'  {{ name = "power_w", address = {power_address} }},\n'
        "]\n",
        encoding="utf-8",
    )
    return folder


def site_meter(folder: Path, profiles: Path) -> Config:
    return make_config(
        [tcp_bus(timeout_s=0.5, retries=0)],
        [meter_at("lab", "plant", 4, "site-meter", simulate={"refuse_gap_reads": True})],
        storage={"path": str(folder / "store.db")},
        profiles_dir=str(profiles),
    )


async def poll_once_tracing(config: Config, book: PlanBook) -> tuple[list[bytes], list[Any]]:
    """One poll of every meter with pollers built from `book`; the requests sent (TCP frames)
    and the pollers."""
    sent: list[bytes] = []

    def trace(bus: str, sending: bool, frame: bytes) -> None:
        if sending:
            sent.append(frame)

    buses = open_buses(config, trace=trace)
    planned = pollers(config, buses, config.meters, book)
    try:
        for poller in planned:
            await poller.poll()
    finally:
        for bus in buses.values():
            await bus.close()
    return sent, planned


def request_of(frame: bytes) -> tuple[int, int, int]:
    """(function, first register, count) of a Modbus TCP read request frame."""
    body = frame[7:]
    return body[0], int.from_bytes(body[1:3]), int.from_bytes(body[3:5])


async def test_a_poller_built_from_what_was_kept_asks_only_what_answers(tmp_path: Path) -> None:
    config = site_meter(tmp_path, custom_profile(tmp_path / "profiles", 12))
    path = learned_plans_path(config.storage.path)
    async with Simulator(config):
        learning, _ = await poll_once_tracing(config, PlanBook(path, writable=True))
        assert request_of(learning[0]) == (4, 0, 14)  # the whole span first: refused
        again, (poller,) = await poll_once_tracing(config, PlanBook(path, writable=True))
    assert [request_of(f) for f in again] == [(4, 0, 2), (4, 6, 2), (4, 12, 2)]
    assert poller.bus.failures == 0
    assert poller.refusals.registers == (Extent(2, 6), Extent(8, 12))


async def test_a_changed_profile_forgets_what_was_learned_under_the_old_one(
    tmp_path: Path,
) -> None:
    profiles = custom_profile(tmp_path / "profiles", 12)
    before = site_meter(tmp_path, profiles)
    path = learned_plans_path(before.storage.path)
    async with Simulator(before):
        await poll_once_tracing(before, PlanBook(path, writable=True))
    custom_profile(profiles, 10)  # power moves: the register map is not the same
    after = site_meter(tmp_path, profiles)
    book = PlanBook(path, writable=True)
    async with Simulator(after):
        sent, (poller,) = await poll_once_tracing(after, book)
    assert not poller.learned_before  # nothing of the old map applies
    assert request_of(sent[0]) == (4, 0, 12)  # asked across the gaps, refused, learned again
    assert poller.refusals.registers == (Extent(2, 6), Extent(8, 10))
    (device,) = json.loads(path.read_text())["devices"]
    assert device["refused_registers"] == [[2, 6], [8, 10]]


# --- what read -v and doctor show ---------------------------------------------------------------


def refusing_config_file(folder: Path) -> tuple[Path, Config]:
    """A configuration file: an SDM120 whose firmware refuses gap reads and its frequency
    (registers 32–69 are never learned: no plan reads across the refused frequency)."""
    data = config_data(
        [tcp_bus(timeout_s=0.5, retries=0)],
        [
            meter_at(
                "lab",
                "plant",
                4,
                "eastron-sdm120",
                simulate={"refuse_gap_reads": True, "refused_registers": [0x46]},
            )
        ],
        storage={"path": str(folder / "var" / "store.db")},
        mqtt={"port": free_port()},
    )
    path = write_toml(folder / "campus-energy.toml", data)
    return path, load_config(path, {})


def exception_answers(stderr: str) -> list[str]:
    """The answers of `read -v`'s frame trace that are Modbus exception responses (FC 0x84)."""
    return [line for line in stderr.splitlines() if " <- " in line and line.split()[9:10] == ["84"]]


async def test_read_verbose_marks_the_learned_plan_and_uses_what_the_logger_kept(
    tmp_path: Path,
) -> None:
    path, config = refusing_config_file(tmp_path)
    async with Simulator(config):
        first = await asyncio.to_thread(run_cli, "read", "lab", "-v", "-c", str(path))
        assert first.returncode == 0, first.stderr
        assert "plan for lab: FC04 0+76" in first.stderr
        assert (
            "learned plan for lab: FC04 0+2, FC04 6+2, FC04 12+2, FC04 30+2, FC04 72+4"
            in first.stderr
        )
        assert (
            "  avoids what the firmware refuses (learned by this read): "
            "registers 2–5, 8–11, 14–29" in first.stderr
        )
        assert "  leaves out frequency_hz: the firmware refuses it (FC04 address 70" in (
            first.stderr
        )
        assert exception_answers(first.stderr)
        assert "power_w" in first.stdout and "frequency_hz" not in first.stdout
        assert not learned_plans_path(config.storage.path).exists()  # read keeps nothing

        # what the logger learned and kept: read asks nothing that is refused
        await poll_once_tracing(
            config, PlanBook(learned_plans_path(config.storage.path), writable=True)
        )
        second = await asyncio.to_thread(run_cli, "read", "lab", "-v", "-c", str(path))
    assert second.returncode == 0, second.stderr
    assert "plan for lab: FC04 0+2, FC04 6+2, FC04 12+2, FC04 30+2, FC04 72+4" in second.stderr
    assert "(learned earlier): registers 2–5, 8–11, 14–29" in second.stderr
    assert "learned plan" not in second.stderr
    assert exception_answers(second.stderr) == []


async def test_doctor_reports_what_the_firmware_refuses_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, config = refusing_config_file(tmp_path)

    def doctor() -> dict[str, dict[str, Any]]:
        cli.main(["doctor", "--json", "-c", str(path)])
        return {entry["title"]: entry for entry in json.loads(capsys.readouterr().out)}

    async with Simulator(config):
        before = await asyncio.to_thread(doctor)
        await poll_once_tracing(
            config, PlanBook(learned_plans_path(config.storage.path), writable=True)
        )
        after = await asyncio.to_thread(doctor)
    # nothing kept yet: doctor's own read learns it, and says so in the meter's line
    assert before["plans"]["status"] == "ok"
    assert before["plans"]["detail"] == "no meter's firmware has refused a read"
    meter = before["meter lab"]
    assert meter["status"] == "warn"
    assert (
        "the firmware refuses registers 2–5, 8–11, 14–29: the plan avoids them" in (meter["detail"])
    )
    assert "frequency_hz (FC04 address 70): left out of its readings" in meter["detail"]
    assert "profiles show eastron-sdm120" in meter["fix"]
    # kept by the logger: the plan's line says it, the meter's line is a plain answer
    plan = after["plan lab"]
    assert plan["status"] == "warn"
    assert plan["detail"].startswith(
        "the firmware refuses registers 2–5, 8–11, 14–29; the plan avoids them; "
        "the firmware refuses frequency_hz (FC04 address 70): left out of its readings "
        "(5 requests: FC04 0+2, FC04 6+2, FC04 12+2, FC04 30+2, FC04 72+4, learned "
    )
    assert "profiles show eastron-sdm120" in plan["fix"]
    assert after["meter lab"]["status"] == "ok"
    assert "refuses" not in after["meter lab"]["detail"]


async def test_a_refused_power_field_is_the_meters_error_asked_again_alone_each_poll(
    tmp_path: Path,
) -> None:
    config = make_config(
        [tcp_bus(timeout_s=0.5, retries=0)],
        [meter_at("lab", "plant", 4, "eastron-sdm120", simulate={"refused_registers": [0x0C]})],
        storage={"path": str(tmp_path / "store.db")},
    )
    sent: list[bytes] = []
    buses = open_buses(
        config, trace=lambda bus, sending, frame: sent.append(frame) if sending else None
    )
    book = PlanBook(learned_plans_path(config.storage.path), writable=True)
    (poller,) = pollers(config, buses, config.meters, book)
    try:
        async with Simulator(config):
            with pytest.raises(ModbusFieldRefusedError) as first:
                await poller.poll()
            sent.clear()
            with pytest.raises(ModbusFieldRefusedError):
                await poller.poll()
    finally:
        await buses["plant"].close()
    assert first.value.summary == (
        "bus 'plant' unit 4: refuses power_w (FC04 address 12, code 2: illegal data address)"
    )
    assert [request_of(f) for f in sent] == [(4, 12, 2)]  # power alone, nothing else
    assert not learned_plans_path(config.storage.path).exists() or all(
        "power_w" not in d["refused_fields"]
        for d in json.loads(learned_plans_path(config.storage.path).read_text())["devices"]
    )


async def poll_answered(poller: Any) -> dict[str, float]:
    """The first poll that gets through (the connection comes back after a restart)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        try:
            return dict(await poller.poll())
        except ModbusConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)  # the bus's own reconnect back-off decides; this only asks


async def test_what_was_refused_is_asked_again_after_a_day(
    tmp_path: Path,
    mosquitto: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refusal that passed (a gateway's bad moment, a device since replaced) costs the
    field for a day at most: then it is asked again, and the plans file forgets it."""
    caplog.set_level(logging.INFO, logger=POLLING)
    refusing = one_meter(tmp_path, mosquitto.port, refused_registers=[0x46])
    lab = refusing.meters[0]
    answering = lab.model_copy(
        update={"simulate": lab.simulate.model_copy(update={"refused_registers": ()})}
    )
    healed = refusing.model_copy(update={"meters": [answering]})
    path = tmp_path / "plans.json"
    buses = open_buses(refusing)
    try:
        (poller,) = pollers(refusing, buses, refusing.meters, PlanBook(path, writable=True))
        async with Simulator(refusing):
            assert "frequency_hz" not in await poll_answered(poller)
            assert "frequency_hz" not in await poll_answered(poller)  # not asked again yet
        assert read_book(path)[poller.key].refusals.fields == ("frequency_hz",)
        monkeypatch.setattr(polling, "RELEARN_AFTER_S", 0.0)
        async with Simulator(healed):
            values = await poll_answered(poller)
        assert values["frequency_hz"] == pytest.approx(50, abs=1)
        assert not poller.refusals and not read_book(path)[poller.key].refusals
        assert len(messages(caplog, logging.INFO, "asking again what the firmware refused")) == 1
    finally:
        for bus in buses.values():
            await bus.close()
