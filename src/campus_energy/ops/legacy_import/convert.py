"""Readings of the original deployment turned into ours: local times to UTC, power to W, ids.

The original logger stamped its rows with local wall-clock text
('YYYY-MM-DD HH:MM:SS'), so every autumn an hour of stamps repeats and every
spring an hour is missing. Rows come in ordered by local text, then row id; the
rows of a repeated hour are told apart by the order they were written in: where
the stamps go back within that hour, its second pass begins. A stamp inside the
spring gap is skipped, since no correct local clock shows one.

It stored power in kW with the sign inverted (the campus-legacy profile reads
the same register with scale -1000). `decide_power` checks that against the
data: |power| beside voltage × current tells kW from W, and the sign most
readings have tells whether it is inverted (a campus imports energy).

Energy is recomputed with the project's integrator over the time between the
stamps; the legacy `energy_wh_interval` (power × 5 s per successful read) is
only summed, for comparison.

Pure: rows in, readings out.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import statistics
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.resolution import quantize
from campus_energy.core.timestamps import floor_ms

ID_RULE = re.compile(r"^[a-z0-9_-]+$")
UNPARSEABLE = "unreadable timestamp"
NONEXISTENT = "local time inside the spring gap (it does not exist)"
NO_POWER = "no usable power value"
SAME_TIME = "same time as the reading before"
KW_BELOW = 0.03  # |P| / (V × I) below this: power is in kW (in W it lies between 0 and 1)


@dataclass(frozen=True)
class LegacyRow:
    """One row of `meter_readings`, as stored."""

    order: int  # rowid: the order rows were written in
    meter_id: str
    timestamp: object
    voltage: object
    current: object
    power: object
    energy_wh: object  # energy_wh_interval
    pf: object


@dataclass(frozen=True)
class Timed:
    row: LegacyRow
    ts_ms: int  # UTC
    repeated_hour: bool  # its local stamp was ambiguous (autumn)


@dataclass(frozen=True)
class Skipped:
    row: LegacyRow
    reason: str


@dataclass(frozen=True)
class Imported:
    """A legacy row as one of our readings, before it is numbered."""

    ts_ms: int
    values: dict[str, float | None]
    energy_uwh: int  # imported over the interval before it
    gap: bool  # the interval before it was not integrated (too long)
    legacy_wh: float | None
    repeated_hour: bool
    export_uwh: int = 0  # exported over the interval before it (the power below zero)


def number(value: object) -> float | None:
    """A finite number, or None (NULL, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def slug(legacy_id: str) -> str:
    """Our id for a legacy meter id: lower-case a-z, 0-9, '-' and '_' ('' when none is left)."""
    ascii_text = unicodedata.normalize("NFKD", legacy_id).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9_-]+", "-", ascii_text.lower()).strip("-")


def parse_meter_map(text: str, csv_format: bool) -> dict[str, str | None]:
    """legacy id → our id (None: leave that meter out) from a TOML or CSV text.

    TOML: `"legacy id" = "our-id"` pairs, at the top or in a [meters] table. CSV: two
    columns, legacy id and our id, an optional header row, '#' comments. An empty id
    leaves the meter out. Raises ValueError naming the bad entry.
    """
    pairs: list[tuple[str, object]]
    if csv_format:
        pairs = []
        for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
            cells = [c.strip() for c in cells]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if len(cells) > 2:
                raise ValueError(f"line {line}: expected 2 columns (legacy id, our id)")
            if line == 1 and cells[0].lower() in ("legacy_id", "legacy", "old_id"):
                continue
            pairs.append((cells[0], cells[1] if len(cells) > 1 else ""))
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not TOML: {exc}") from None
        table = data.get("meters", data)
        if not isinstance(table, dict):
            raise ValueError('expected pairs `"legacy id" = "our-id"`')
        pairs = list(table.items())
    found: dict[str, str | None] = {}
    for legacy, ours in pairs:
        if not isinstance(ours, str):
            raise ValueError(f"{legacy!r}: our id must be a string, got {ours!r}")
        if ours and not ID_RULE.match(ours):
            raise ValueError(f"{legacy!r} → {ours!r}: ids use only a-z, 0-9, '-' and '_'")
        found[legacy] = ours or None
    return found


# -- time ----------------------------------------------------------------------------------


def parse_local(value: object) -> datetime | None:
    """The wall-clock time of a legacy stamp (naive), or an aware time if it names its zone."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def local_kind(naive: datetime, zone: tzinfo) -> str:
    """'normal', 'repeated' (an autumn hour that happens twice) or 'missing' (spring gap)."""
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "normal"
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return "repeated" if back == naive else "missing"


def timeline(rows: Iterable[LegacyRow], zone: tzinfo) -> Iterator[Timed | Skipped]:
    """One meter's rows, ordered by (local stamp, row id), in UTC order."""
    repeated: list[tuple[LegacyRow, datetime]] = []
    last_ms: int | None = None

    def emit(row: LegacyRow, ms: int, in_repeat: bool) -> Iterator[Timed | Skipped]:
        nonlocal last_ms
        if last_ms is not None and ms <= last_ms:
            yield Skipped(row, SAME_TIME)
            return
        last_ms = ms
        yield Timed(row, ms, in_repeat)

    def flush() -> Iterator[Timed | Skipped]:
        fold, latest, timed = 0, None, []
        for row, naive in sorted(repeated, key=lambda item: item[0].order):
            if latest is not None and naive < latest:
                fold = 1  # the clock went back: the hour's second pass
            latest = naive if latest is None else max(latest, naive)
            timed.append((floor_ms(naive.replace(tzinfo=zone, fold=fold)), row.order, row))
        repeated.clear()
        for ms, _, row in sorted(timed):
            yield from emit(row, ms, True)

    for row in rows:
        moment = parse_local(row.timestamp)
        if moment is None:
            yield Skipped(row, UNPARSEABLE)
            continue
        if moment.tzinfo is not None:
            yield from flush()
            yield from emit(row, floor_ms(moment), False)
            continue
        kind = local_kind(moment, zone)
        if kind == "missing":
            yield Skipped(row, NONEXISTENT)
        elif kind == "repeated":
            repeated.append((row, moment))
        else:
            yield from flush()
            yield from emit(row, floor_ms(moment.replace(tzinfo=zone)), False)
    yield from flush()


def typical_step_ms(times: Sequence[int]) -> int | None:
    """The usual time between consecutive readings (rounded to whole seconds)."""
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    if not steps:
        return None
    return max(1000, round(statistics.median_low(steps) / 1000) * 1000)


# -- power and energy ------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerRule:
    """How a stored legacy power value becomes watts."""

    unit: str  # "kW" or "W"
    inverted: bool
    evidence: str

    @property
    def factor(self) -> float:
        return (1000.0 if self.unit == "kW" else 1.0) * (-1.0 if self.inverted else 1.0)

    def watts(self, value: object) -> float | None:
        stored = number(value)
        return None if stored is None else stored * self.factor


def decide_power(
    samples: Iterable[tuple[object, object, object]], unit: str = "auto", sign: str = "auto"
) -> PowerRule:
    """The unit and sign of legacy power, from (voltage, current, power) samples unless given.

    Where the data cannot tell (no voltage and current, no power), the original
    logger's convention holds: kW, sign inverted.
    """
    ratios: list[float] = []
    negative = positive = 0
    for v, i, p in samples:
        volts, amps, power = number(v), number(i), number(p)
        if power is None or power == 0:
            continue
        negative += power < 0
        positive += power > 0
        if volts is not None and amps is not None and volts > 50 and amps > 0.01:
            ratios.append(abs(power) / (volts * amps))
    notes: list[str] = []
    if unit == "auto":
        if ratios:
            kilo = sum(r < KW_BELOW for r in ratios)
            unit = "kW" if kilo * 2 > len(ratios) else "W"
            share = max(kilo, len(ratios) - kilo) / len(ratios)
            notes.append(
                f"{unit}: |power| / (voltage × current) is "
                f"{'below' if unit == 'kW' else 'above'} {KW_BELOW:g} in {share:.0%} of "
                f"{len(ratios):,} sampled rows"
            )
        else:
            unit = "kW"
            notes.append("kW: no voltage and current to compare with (the original convention)")
    if sign == "auto":
        if negative or positive:
            inverted = negative > positive
            share = max(negative, positive) / (negative + positive)
            notes.append(
                f"{'inverted' if inverted else 'as stored'}: {share:.0%} of "
                f"{negative + positive:,} sampled non-zero powers are "
                f"{'negative' if inverted else 'positive'}"
            )
        else:
            inverted = True
            notes.append("inverted: no non-zero power to judge by (the original convention)")
    else:
        inverted = sign == "inverted"
    return PowerRule(unit, inverted, "; ".join(notes) or "as given")


def integrate(
    timed: Iterable[Timed | Skipped], rule: PowerRule, max_gap_s: float
) -> Iterator[Imported | Skipped]:
    """Our readings of one meter: values in our units, energy by the project's integrator."""
    state = MeterState()
    start: int | None = None
    for item in timed:
        if isinstance(item, Skipped):
            yield item
            continue
        row = item.row
        watts = rule.watts(row.power)
        if watts is None:
            yield Skipped(row, NO_POWER)
            continue
        values = {
            "voltage_v": _quantized("voltage_v", row.voltage),
            "current_a": _quantized("current_a", row.current),
            "power_w": quantize("power_w", watts),
            "power_factor": _quantized("power_factor", row.pf),
        }
        start = item.ts_ms if start is None else start
        seconds = (item.ts_ms - start) / 1000  # small numbers: exact steps
        power = values["power_w"]
        assert power is not None
        previous = state.last_mono_s
        step, state = advance(
            state, power_w=power, wall_s=item.ts_ms / 1000, mono_s=seconds, max_gap_s=max_gap_s
        )
        gap = previous is not None and step.gap_s is not None
        yield Imported(
            item.ts_ms,
            values,
            step.energy_uwh,
            gap,
            number(row.energy_wh),
            item.repeated_hour,
            step.export_uwh,
        )


def _quantized(name: str, value: object) -> float | None:
    found = number(value)
    return None if found is None else quantize(name, found)
