"""`campus-energy read` and `campus-energy scan`: the installer's first diagnostic tools."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from campus_energy.adapters.modbus import ModbusBus
from campus_energy.config import BusConfig, Config
from campus_energy.core.models import unit_of
from campus_energy.core.planner import ReadRequest
from campus_energy.core.timestamps import epoch_ms, iso_utc, next_grid_time
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
)
from campus_energy.polling import MeterPoller


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


_TABLE_COLUMNS = (
    ("voltage_v", "V"),
    ("current_a", "A"),
    ("power_w", "W"),
    ("power_factor", "PF"),
    ("frequency_hz", "Hz"),
    ("import_energy_wh", "import kWh"),
)


def format_table(results: Iterable[ReadResult], config: Config) -> str:
    """One line per meter with the core values (the demo's and `read --all`'s view)."""
    rows = [("meter", "building", "floor", *(title for _, title in _TABLE_COLUMNS))]
    errors = []
    for result in results:
        meter = config.meter(result.meter_id)
        if result.error is not None:
            rows.append((meter.id, meter.building, meter.floor, *("—" for _ in _TABLE_COLUMNS)))
            errors.append(f"  {meter.id}: {result.error}")
            continue
        cells = []
        for name, _ in _TABLE_COLUMNS:
            value = result.values.get(name)
            if value is None:
                cells.append("")
            elif name == "import_energy_wh":
                cells.append(f"{value / 1000:,.3f}")
            else:
                cells.append(_number(value))
        rows.append((meter.id, meter.building, meter.floor, *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        left = [cell.ljust(widths[i]) for i, cell in enumerate(row[:3])]
        right = [cell.rjust(widths[i + 3]) for i, cell in enumerate(row[3:])]
        lines.append("  ".join(left + right).rstrip())
    return "\n".join(lines + errors)


def json_line(result: ReadResult) -> str:
    """One JSON object: meter_id, ts and every field by its standard name (or an error)."""
    body: dict[str, object] = {"meter_id": result.meter_id, "ts": iso_utc(result.ts_ms)}
    if result.error is not None:
        body["error"] = str(result.error)
    else:
        body.update({k: (v if math.isfinite(v) else None) for k, v in result.values.items()})
    return json.dumps(body)


async def sleep_until_grid(interval_s: float, clock: Callable[[], float] = time.time) -> None:
    """Sleep until the next wall-clock multiple of `interval_s`."""
    await asyncio.sleep(max(0.0, next_grid_time(clock(), interval_s) - clock()))


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
) -> list[ScanHit]:
    """Units on `bus_config` that answer `request` at all (with data or with an exception)."""
    bus = ModbusBus(bus_config.model_copy(update={"timeout_s": timeout_s}))
    hits: list[ScanHit] = []
    try:
        for unit in units:
            try:
                registers = await bus.read(unit, request, retries=0)
            except ModbusExceptionResponseError as exc:
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
