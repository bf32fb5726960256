"""What `campus-energy read` and `campus-energy scan` do: the installer's first diagnostic tools.

Reading polls meters through the logger's own plans and buses and prints the values in
the units of the contract; scanning asks each unit of a bus for one register.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from campus_energy.config import BusConfig, Config, MeterConfig
from campus_energy.core.models import unit_of
from campus_energy.core.planner import ReadRequest
from campus_energy.core.timestamps import epoch_ms, iso_utc, next_grid_time
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
)
from campus_energy.meters.learned import PlanBook, learned_plans_path
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.polling import (
    MeterPoller,
    describe_plan,
    describe_refusals,
    open_buses,
    pollers,
)
from campus_energy.runtime.clock import sleep_or_stop


@dataclass(frozen=True)
class ReadResult:
    """One poll of one meter: values (SI units) or the error that stopped it."""

    meter_id: str
    ts_ms: int
    values: dict[str, float]
    error: ModbusError | None = None


async def _poll(poller: MeterPoller, clock: Callable[[], float]) -> ReadResult:
    try:
        values = await poller.poll()
    except ModbusError as exc:
        return ReadResult(poller.meter.id, epoch_ms(clock()), {}, exc)
    return ReadResult(poller.meter.id, epoch_ms(clock()), values)


async def read_all(
    pollers: Sequence[MeterPoller], clock: Callable[[], float] = time.time
) -> list[ReadResult]:
    """Poll every meter once: buses in parallel, meters on one bus in turn (the bus lock)."""
    return list(await asyncio.gather(*(_poll(p, clock) for p in pollers)))


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    digits = 3 if magnitude < 10 else 2 if magnitude < 1000 else 1
    return f"{value:,.{digits}f}"


def format_detail(result: ReadResult, poller: MeterPoller) -> str:
    meter = poller.meter
    head = (
        f"{meter.id}  ({poller.profile.name}, bus {meter.bus} unit {meter.unit})  "
        f"{iso_utc(result.ts_ms)}"
    )
    if result.error is not None:
        return f"{head}\n  error: {result.error}"
    width = max(len(name) for name in result.values)
    lines = [head]
    for name, value in result.values.items():
        lines.append(f"  {name:<{width}}  {_number(value):>14} {unit_of(name)}".rstrip())
    return "\n".join(lines)


# (field, title, divisor): kWh columns show Wh fields divided by 1000
Column = tuple[str, str, float]
TABLE_COLUMNS: tuple[Column, ...] = (
    ("voltage_v", "V", 1),
    ("current_a", "A", 1),
    ("power_w", "W", 1),
    ("power_factor", "PF", 1),
    ("frequency_hz", "Hz", 1),
    ("import_energy_wh", "import kWh", 1000),
    ("export_energy_wh", "export kWh", 1000),  # blank for a profile without the register
)


@dataclass(frozen=True)
class TableRow:
    """A meter's line in a table: its values (empty when none) and a note shown under the table."""

    meter_id: str
    values: Mapping[str, float | None]
    note: str = ""


def rows_of(results: Iterable[ReadResult]) -> list[TableRow]:
    return [
        TableRow(r.meter_id, r.values, str(r.error) if r.error is not None else "") for r in results
    ]


def format_table(
    entries: Iterable[TableRow], config: Config, columns: Sequence[Column] = TABLE_COLUMNS
) -> str:
    """One line per meter with its core values (`read --all` and the demo)."""
    rows = [("meter", "building", "floor", *(title for _, title, _ in columns))]
    notes = []
    for entry in entries:
        meter = config.meter(entry.meter_id)
        cells = []
        for name, _, divisor in columns:
            value = entry.values.get(name)
            if value is None:
                cells.append("—" if not entry.values else "")
            elif divisor != 1:
                cells.append(f"{value / divisor:,.3f}")
            else:
                cells.append(_number(value))
        rows.append((meter.id, meter.building, meter.floor, *cells))
        if entry.note:
            notes.append(f"  {meter.id}: {entry.note}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        left = [cell.ljust(widths[i]) for i, cell in enumerate(row[:3])]
        right = [cell.rjust(widths[i + 3]) for i, cell in enumerate(row[3:])]
        lines.append("  ".join(left + right).rstrip())
    return "\n".join(lines + notes)


def json_line(result: ReadResult) -> str:
    """One JSON object: meter_id, ts and every field by its standard name (or an error)."""
    body: dict[str, object] = {"meter_id": result.meter_id, "ts": iso_utc(result.ts_ms)}
    if result.error is not None:
        body["error"] = str(result.error)
    else:
        body.update({k: (v if math.isfinite(v) else None) for k, v in result.values.items()})
    return json.dumps(body)


def seconds_to_grid(interval_s: float, clock: Callable[[], float] = time.time) -> float:
    """How long until the next wall-clock multiple of `interval_s`."""
    return max(0.0, next_grid_time(clock(), interval_s) - clock())


NOBODY_THERE = frozenset({10, 11})  # gateway path unavailable / target failed to respond


@dataclass(frozen=True)
class ScanHit:
    unit: int
    registers: list[int] | None
    exception_code: int | None = None


async def scan(
    bus_config: BusConfig,
    units: Iterable[int],
    *,
    request: ReadRequest,
    timeout_s: float,
    on_unit: Callable[[int, int, int], None] | None = None,
) -> list[ScanHit]:
    """Units on `bus_config` that answer `request` at all (with data or with an exception).

    An exception 10 or 11 is a gateway answering for a unit that did not (path unavailable,
    target failed to respond): nobody is there.

    `on_unit(position, unit, found)` is called before each unit is asked: its 1-based
    position in `units` and the number of units found so far.
    """
    bus = ModbusBus(bus_config.model_copy(update={"timeout_s": timeout_s}))
    hits: list[ScanHit] = []
    try:
        for position, unit in enumerate(units, 1):
            if on_unit is not None:
                on_unit(position, unit, len(hits))
            try:
                registers = await bus.read(unit, request, retries=0)
            except ModbusExceptionResponseError as exc:
                if exc.code in NOBODY_THERE:
                    continue  # a gateway's word for "no device answered at that unit"
                hits.append(ScanHit(unit, None, exc.code))
            except ModbusConnectionError:
                raise  # the bus itself is unusable: no point trying the other units
            except ModbusError:
                continue
            else:
                hits.append(ScanHit(unit, registers))
    finally:
        await bus.close()
    return hits


def format_plan(poller: MeterPoller, title: str = "plan") -> str:
    """A meter's requests, marking what they avoid because the device refuses it."""
    lines = [f"{title} for {poller.meter.id}: {describe_plan(poller.plan)}"]
    now, before = poller.refusals, poller.learned_before
    if now == before:
        source = "learned earlier"
    else:
        source = "learned by this read" if not before else "learned earlier and by this read"
    avoided = now.without_fields(now.fields)
    if avoided:
        lines.append(
            f"  avoids what the firmware refuses ({source}): "
            f"{describe_refusals(avoided, poller.profile)}"
        )
    for spec in poller.refused_fields:
        lines.append(
            f"  leaves out {spec.name}: the firmware refuses it "
            f"(FC{poller.profile.function_code:02d} address {spec.address}, {source})"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class ReadOptions:
    """How `campus-energy read` shows what it reads, and whether it repeats."""

    as_json: bool = False  # one JSON object per meter per line
    as_table: bool = False  # one table for all meters (`--all`), else a block per meter
    verbose: bool = False  # the plan, and every frame on stderr
    watch: bool = False  # repeat on the polling grid until stopped
    interval_s: float = 1.0


async def read_meters(
    config: Config,
    meters: Sequence[MeterConfig],
    options: ReadOptions,
    stop: asyncio.Event,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> bool:
    """Poll `meters` once (or on the grid until `stop`), printing each round; True when the last
    round had a meter that failed."""
    out = out or sys.stdout
    err = err or sys.stderr

    def trace(bus: str, sending: bool, frame: bytes) -> None:
        print(f"  {bus} {'->' if sending else '<-'} {frame.hex(' ')}", file=err)

    buses = open_buses(config, trace=trace if options.verbose else None)
    # What the logger learned its meters refuse (read only: what a read learns stays here).
    book = PlanBook(learned_plans_path(config.storage.path))
    planned = pollers(config, buses, meters, book)
    by_id = {p.meter.id: p for p in planned}
    if options.verbose:
        for p in planned:
            print(format_plan(p), file=err)
    failed = False
    try:
        while True:
            shown = {p.meter.id: p.plan for p in planned}
            results = await read_all(planned)
            failed = any(r.error is not None for r in results)
            if options.verbose:
                for p in planned:
                    if p.plan != shown[p.meter.id]:
                        print(format_plan(p, "learned plan"), file=err)
            if options.as_json:
                for r in results:
                    print(json_line(r), file=out, flush=True)
            elif options.as_table:
                print(format_table(rows_of(results), config), file=out, flush=True)
            else:
                for r in results:
                    print(format_detail(r, by_id[r.meter_id]), file=out, flush=True)
            if not options.watch:
                break
            if await sleep_or_stop(seconds_to_grid(options.interval_s), stop):
                break
            if not options.as_json:
                print(file=out, flush=True)
    finally:
        for bus in buses.values():
            await bus.close()
    return failed
