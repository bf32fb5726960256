"""Serial devices (present, a character device, readable and writable); meters (one read each)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from campus_energy.config import BusConfig, MeterConfig
from campus_energy.core.models import Profile
from campus_energy.core.planner import Refusals, plan_profile
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
    ModbusFieldRefusedError,
    ModbusFrameError,
    ModbusTimeoutError,
)
from campus_energy.meters.learned import PlanBook, learned_plans_path
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.polling import MeterPoller, describe_refusals, pollers
from campus_energy.ops.doctor.checks import (
    Context,
    Identity,
    Result,
    Status,
    group_name,
    identity,
    user_name,
)
from campus_energy.ops.doctor.checks.line import PROBE_BUDGET_S, Received, diagnose_line

MODBUS_TIMEOUT_S = 1.0  # per request, no retries: doctor asks once and reports
METER_SLACK_S = 1.0  # on top of the requests' timeouts, per meter

# --- serial devices -----------------------------------------------------------------------------


def _bits(st: os.stat_result, who: Identity) -> tuple[int, str]:
    """The permission bits that apply to `who` (as Linux picks them) and whose they are."""
    if st.st_uid == who.uid:
        return (st.st_mode >> 6) & 0o7, "the owner's"
    if st.st_gid in who.groups:
        return (st.st_mode >> 3) & 0o7, "the group's"
    return st.st_mode & 0o7, "others'"


def _permission_fix(device: str, st: os.stat_result, who: Identity, group: str) -> str:
    group_may = st.st_mode & 0o060 == 0o060
    lasting = (
        f'for a lasting fix, a udev rule: SUBSYSTEM=="tty", GROUP="{group}", MODE="0660" '
        "in /etc/udev/rules.d/"
    )
    if st.st_uid == who.uid:
        return f"let its owner read and write it: sudo chmod u+rw {device}"
    if st.st_gid in who.groups:
        return f"let group {group} read and write it: sudo chmod g+rw {device} ({lasting})"
    if not group_may:
        return (
            f"let group {group} read and write it: sudo chmod g+rw {device} ({lasting}), "
            f"and add user {who.user} to group {group}: sudo usermod -aG {group} {who.user}"
        )
    if st.st_gid in who.member_of:
        return (
            f"user {who.user} is in group {group}, but this session started before it was "
            "added: log out and in again, or restart the service"
        )
    return (
        f"add user {who.user} to group {group}: sudo usermod -aG {group} {who.user} "
        "(then log in again, or restart the service)"
    )


def analyse_serial(
    title: str,
    key: str,
    device: str,
    st: os.stat_result | None,
    who: Identity,
    group: str,
    target: str | None = None,
) -> Result:
    """Whether `who` can use the serial device `device` (stat result `st`, None if missing).

    `target` is where `device` leads when it is a symbolic link (a /dev/serial/by-id/ name).
    """
    if st is None:
        return Result(
            Status.FAIL,
            title,
            f"{device} does not exist",
            f"plug in the USB–RS-485 adapter (its stable name is in /dev/serial/by-id/), "
            f"or correct {key}",
        )
    if not stat.S_ISCHR(st.st_mode):
        return Result(
            Status.FAIL,
            title,
            f"{device} is not a character device (a serial port is one)",
            f"set {key} to the serial adapter's device, e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ "
            "link",
        )
    mode = stat.filemode(st.st_mode)
    shown = f"{device} → {target}" if target else device
    described = f"{shown} ({mode} {user_name(st.st_uid)}:{group})"
    bits, whose = _bits(st, who)
    if who.uid == 0 or bits & 0o6 == 0o6:
        return Result(Status.OK, title, f"{described}, readable and writable by {who.user}")
    return Result(
        Status.FAIL,
        title,
        f"{described} is not readable and writable by user {who.user} ({whose} permissions)",
        _permission_fix(device, st, who, group),
    )


def _inspect(index: int, bus: BusConfig, who: Identity) -> Result:
    device = str(bus.device)
    title, key = f"serial {bus.name}", f"buses[{index}].device"
    try:
        st: os.stat_result | None = os.stat(device)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        return Result(Status.FAIL, title, f"{device}: {exc.strerror}", f"check {key}")
    target = os.path.realpath(device) if st is not None and Path(device).is_symlink() else None
    group = group_name(st.st_gid) if st is not None else ""
    result = analyse_serial(title, key, device, st, who, group, target)
    if result.status is Status.OK and not os.access(device, os.R_OK | os.W_OK):
        return Result(  # an ACL, a security module or a read-only mount says no
            Status.FAIL,
            title,
            f"{device}: permissions allow it, yet user {who.user} may not open it for writing",
            "check ACLs (getfacl) and security modules (AppArmor, SELinux) for the device",
        )
    return result


async def serial_devices(ctx: Context) -> list[Result]:
    """Every rtu bus's device: present, a character device, readable and writable."""
    buses = [(i, b) for i, b in enumerate(ctx.config.buses) if b.transport == "rtu"]
    if not buses:
        return [Result(Status.SKIP, "serial", "no rtu buses configured")]
    who = identity()
    return [_inspect(i, bus, who) for i, bus in buses]


# --- meters ---------------------------------------------------------------------------------------


def _no_answer(meter: MeterConfig, bus: BusConfig, profile: Profile | None = None) -> str:
    if bus.transport == "tcp":
        return (
            f"check that the meter is powered and answers as device id {meter.unit} "
            f"at {bus.host}:{bus.port}"
        )
    settings = f"{bus.baudrate} baud {bus.bytesize}{bus.parity}{bus.stopbits}"
    fix = (
        f"check that the meter is powered, set to address {meter.unit} at {settings}, and wired "
        "A to A, B to B (with the line terminated)"
    )
    if profile is not None and profile.factory_baudrate not in (None, bus.baudrate):
        fix += (
            f"; a new {profile.name} answers at {profile.factory_baudrate} baud until its "
            f"front panel is set to {bus.baudrate}"
        )
    return fix


def _unreachable(meter: MeterConfig, bus: BusConfig, profile: Profile | None = None) -> str:
    if bus.transport == "rtu":
        return f"the bus cannot be opened: see the line 'serial {bus.name}'"
    return f"check that {bus.host}:{bus.port} is reachable (the gateway's power and network)"


def _refused(meter: MeterConfig, bus: BusConfig, profile: Profile | None = None) -> str:
    return (
        f"the meter refused the read: check that profile {meter.profile!r} is its model "
        f"(see: campus-energy profiles show {meter.profile})"
    )


def _field_refused(meter: MeterConfig, bus: BusConfig, profile: Profile | None = None) -> str:
    return (
        f"the meter refuses a field every reading needs: check that profile {meter.profile!r} "
        f"is its model (campus-energy profiles show {meter.profile}) and that no other device "
        f"answers as unit {meter.unit}"
    )


def _garbled(meter: MeterConfig, bus: BusConfig, profile: Profile | None = None) -> str:
    return (
        "answers arrive garbled: check the baud rate and parity, the line's termination, and "
        "that no other program (a running logger) uses the bus"
    )


# Modbus failure -> what to do about it
METER_FIXES: dict[type[ModbusError], Callable[[MeterConfig, BusConfig, Profile | None], str]] = {
    ModbusTimeoutError: _no_answer,
    ModbusConnectionError: _unreachable,
    ModbusFieldRefusedError: _field_refused,
    ModbusExceptionResponseError: _refused,
    ModbusFrameError: _garbled,
    ModbusError: _no_answer,
}


def _fix_for(exc: ModbusError, meter: MeterConfig, bus: BusConfig, profile: Profile | None) -> str:
    fix = next(METER_FIXES[k] for k in type(exc).__mro__ if k in METER_FIXES)
    return fix(meter, bus, profile)


def _power(values: dict[str, float]) -> str:
    power = values.get("power_w")
    return "power_w missing" if power is None else f"power_w {power:,.1f} W"


def _failed(title: str, where: str, exc: ModbusError, poller: MeterPoller) -> Result:
    reason = f"{exc.reason} ({exc.detail})" if exc.detail else exc.reason
    fix = _fix_for(exc, poller.meter, poller.bus.config, poller.profile)
    return Result(Status.FAIL, title, f"{where}: {reason}", fix)


async def _read_bus(group: list[MeterPoller], received: Received) -> list[Result]:
    """Each meter of one bus in turn (one request at a time on a line); when none of an RTU
    bus's meters answers, what the bytes on the line say."""
    results = []
    silent: list[tuple[int, bytes]] = []  # each meter that failed: its unit, the bytes it drew
    down: ModbusConnectionError | None = None  # the bus could not be opened: no more attempts
    for poller in group:
        meter, bus = poller.meter, poller.bus.config
        title = f"meter {meter.id}"
        where = f"bus {bus.name} unit {meter.unit}"
        if down is not None:
            results.append(_failed(title, where, down, poller))
            continue
        deadline = len(poller.plan) * bus.timeout_s + METER_SLACK_S
        started = time.monotonic()
        mark = received.mark(bus.name)
        try:
            values = await asyncio.wait_for(poller.poll(), deadline)
        except ModbusError as exc:
            if isinstance(exc, ModbusConnectionError):
                down = exc
            elif isinstance(exc, ModbusTimeoutError | ModbusFrameError):
                silent.append((meter.unit, received.since(bus.name, mark)))
            results.append(_failed(title, where, exc, poller))
            continue
        except TimeoutError:
            silent.append((meter.unit, received.since(bus.name, mark)))
            detail = f"{where}: no answer within {deadline:g} s"
            results.append(
                Result(Status.FAIL, title, detail, _no_answer(meter, bus, poller.profile))
            )
            continue
        latency_ms = (time.monotonic() - started) * 1000
        detail = f"{where}: {_power(values)}, answered in {latency_ms:.0f} ms"
        results.append(_learned(title, detail, poller))
    if group[0].bus.config.transport == "rtu" and len(silent) == len(group):
        line = await diagnose_line(group, silent)
        if line is not None:
            see = f"the line garbles every answer: see the line '{line.title}'"
            results = [replace(r, fix=see) for r in results]
            results.append(line)
    return results


def _learned(title: str, detail: str, poller: MeterPoller) -> Result:
    """A meter that answered; what this read learned it refuses, when it learned something
    (what the logger learned before is the 'plan' lines' business)."""
    if poller.refusals == poller.learned_before:
        return Result(Status.OK, title, detail)
    new = poller.refusals.without_fields(poller.learned_before.fields)
    avoided = new.without_fields(new.fields)
    if avoided:
        detail += (
            f"; the firmware refuses {describe_refusals(avoided, poller.profile)}: "
            "the plan avoids them"
        )
    if not new.fields:
        return Result(Status.OK, title, detail)
    left_out = describe_refusals(Refusals(fields=new.fields), poller.profile)
    return Result(
        Status.WARN,
        title,
        f"{detail}; the firmware refuses {left_out}: left out of its readings",
        refused_fields_fix(poller.meter),
    )


def refused_fields_fix(meter: MeterConfig) -> str:
    return (
        f"check that profile {meter.profile!r} is the meter's model (campus-energy profiles "
        f"show {meter.profile}); if it is, this firmware lacks the field: the other fields "
        "are read, and a profile without it quiets this warning"
    )


async def meters(ctx: Context) -> list[Result]:
    """One read of every meter through the logger's own polling code, with a short timeout."""
    if ctx.skip_meters:
        return [Result(Status.SKIP, "meters", "skipped (--skip-meters)")]
    config = ctx.config
    if not config.meters:
        return [Result(Status.SKIP, "meters", "no meters configured")]
    received = Received()
    buses = {b.name: ModbusBus(_quick(b), trace=received) for b in config.buses}
    # What the logger learned the meters refuse is not asked again (the file is only read).
    book = PlanBook(learned_plans_path(config.storage.path))
    planned = pollers(config, buses, config.meters, book)
    by_bus: dict[str, list[MeterPoller]] = {}
    for poller in planned:
        by_bus.setdefault(poller.meter.bus, []).append(poller)
    try:
        found = await asyncio.gather(*(_read_bus(group, received) for group in by_bus.values()))
    finally:
        for bus in buses.values():
            await bus.close()
    by_title = {r.title: r for group in found for r in group}
    lines = [r for group in found for r in group if not r.title.startswith("meter ")]
    return [by_title[f"meter {m.id}"] for m in config.meters] + lines


def _quick(bus: BusConfig) -> BusConfig:
    """The bus with doctor's short timeout and no retries."""
    return bus.model_copy(update={"timeout_s": min(bus.timeout_s, MODBUS_TIMEOUT_S), "retries": 0})


def meters_budget(ctx: Context) -> float:
    """How long the meter check may take: on the busiest bus, one meter after another."""
    per_bus: dict[str, float] = {}
    for meter in ctx.config.meters:
        bus = _quick(ctx.config.bus(meter.bus))
        requests = len(plan_profile(ctx.config.profile_of(meter), bus.cost_model))
        cost = requests * bus.timeout_s + METER_SLACK_S
        if meter.bus not in per_bus and bus.transport == "rtu":
            cost += PROBE_BUDGET_S  # the other speeds, when no meter of the line answers
        per_bus[meter.bus] = per_bus.get(meter.bus, 0.0) + cost
    return max(per_bus.values(), default=0.0) + 2.0
