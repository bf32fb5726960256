"""Window aggregation: readings cut into aligned windows by reading time, mergeable and idempotent.

A reading's `energy_wh` covers (interval_start, ts]. Each window that interval
overlaps receives the share of the energy proportional to the overlap (the
last share takes the remainder, so the shares add up to the reading's energy
to within float rounding). The window that contains `ts` also receives the reading's sampled
values (power, voltage, ...). These per-reading, per-window *contributions*
are added to a window's `Accumulator`, which remembers which reading seqs it
holds: adding a contribution twice changes nothing. That makes every write
idempotent, lets late readings update a written window, and lets several
bridges that each see part of the stream (an MQTT shared subscription) merge
into one correct document.

Energy has two directions and two kinds. `energy_wh` is imported energy (the
contract's `total_energy_wh`, as the original deployment meant it), `export_wh`
exported energy, both measured: integrated from power over covered time.
`estimated_wh` and `estimated_export_wh` are what the meter's own registers
counted across a gap the logger could not integrate; they are spread over the
gap's windows in proportion to time, kept apart from measured energy, and never
add to covered time (so never to `coverage`).

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from campus_energy.core.timestamps import utc_datetime

AVERAGED = ("voltage_v", "current_a", "power_factor", "frequency_hz")
# The accumulator's sums beyond measured import, stored only when not zero
EXTENDED = ("export_wh", "estimated_wh", "estimated_export_wh")


def window_start_ms(ts_ms: int, window_ms: int) -> int:
    return (ts_ms // window_ms) * window_ms


def window_stamp(ms: int) -> str:
    """'20260102T030405Z': the time part of a window document's id."""
    return utc_datetime(ms).strftime("%Y%m%dT%H%M%SZ")


def document_id(meter_id: str, start_ms: int) -> str:
    return f"{meter_id}_{window_stamp(start_ms)}"


@dataclass(frozen=True)
class IncomingReading:
    """A validated reading as the bridge receives it."""

    meter_id: str
    ts_ms: int
    seq: int
    energy_wh: float
    interval_start_ms: int | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    building: str = ""
    floor: str = ""
    site: str = ""  # the site whose topic root it came under ('': a single-site deployment)
    export_wh: float = 0.0  # exported over (interval_start, ts]; energy_wh is the import
    estimated_wh: float = 0.0  # estimated import over (estimated_start, ts]: a gap
    estimated_export_wh: float = 0.0
    estimated_start_ms: int | None = None


@dataclass(frozen=True)
class Contribution:
    """What one reading adds to one window."""

    meter_id: str
    window_start_ms: int
    seq: int
    energy_wh: float
    covered_s: float
    in_window: bool  # the reading's own ts lies in this window
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0


def _shares(
    start_ms: int, end_ms: int, window_ms: int, amounts: Sequence[float]
) -> dict[int, tuple[float, list[float]]]:
    """Each window (start) that (start_ms, end_ms] overlaps: the overlap in seconds and its
    share of each of `amounts`, proportional to the overlap; the last window takes what the
    others left, so the shares add up to each amount to within float rounding."""
    span = end_ms - start_ms
    found: dict[int, tuple[float, list[float]]] = {}
    shared = [0.0] * len(amounts)
    window = window_start_ms(start_ms, window_ms)
    while window < end_ms:
        overlap = min(end_ms, window + window_ms) - max(start_ms, window)
        last = window + window_ms >= end_ms
        parts = []
        for i, amount in enumerate(amounts):
            part = amount - shared[i] if last else amount * overlap / span
            shared[i] += part
            parts.append(part)
        found[window] = (overlap / 1000, parts)
        window += window_ms
    return found


def contributions(reading: IncomingReading, window_ms: int) -> list[Contribution]:
    """The reading's share of every window its interval (and its estimated gap) overlaps, plus
    its own window's samples: one contribution per window."""
    own = window_start_ms(reading.ts_ms, window_ms)
    samples = {
        "power_w": reading.power_w,
        "voltage_v": reading.voltage_v,
        "current_a": reading.current_a,
        "power_factor": reading.power_factor,
        "frequency_hz": reading.frequency_hz,
    }
    measured: dict[int, tuple[float, list[float]]]
    start = reading.interval_start_ms
    if start is None or start >= reading.ts_ms:
        # Nothing integrated (or, from an older logger, an interval we cannot place):
        # the energy, if any, goes to the reading's own window, covering no known time.
        measured = {own: (0.0, [reading.energy_wh, reading.export_wh])}
    else:
        measured = _shares(start, reading.ts_ms, window_ms, (reading.energy_wh, reading.export_wh))
    estimated: dict[int, tuple[float, list[float]]] = {}
    gap_start = reading.estimated_start_ms
    if reading.estimated_wh or reading.estimated_export_wh:
        amounts = (reading.estimated_wh, reading.estimated_export_wh)
        if gap_start is None or gap_start >= reading.ts_ms:
            estimated = {own: (0.0, list(amounts))}
        else:
            estimated = _shares(gap_start, reading.ts_ms, window_ms, amounts)
    found: list[Contribution] = []
    for window in sorted({own, *measured, *estimated}):
        covered_s, (energy, exported) = measured.get(window, (0.0, [0.0, 0.0]))
        _, (guessed, guessed_export) = estimated.get(window, (0.0, [0.0, 0.0]))
        found.append(
            Contribution(
                reading.meter_id,
                window,
                reading.seq,
                energy,
                covered_s,
                window == own,
                **(samples if window == own else {}),
                export_wh=exported,
                estimated_wh=guessed,
                estimated_export_wh=guessed_export,
            )
        )
    return found


def _add_seq(ranges: list[list[int]], seq: int) -> bool:
    """Insert `seq` into sorted, disjoint [first, last] ranges; False if already present."""
    firsts = [r[0] for r in ranges]
    i = bisect.bisect_right(firsts, seq) - 1
    if i >= 0 and ranges[i][0] <= seq <= ranges[i][1]:
        return False
    joins_left = i >= 0 and ranges[i][1] == seq - 1
    joins_right = i + 1 < len(ranges) and ranges[i + 1][0] == seq + 1
    if joins_left and joins_right:
        ranges[i][1] = ranges[i + 1][1]
        del ranges[i + 1]
    elif joins_left:
        ranges[i][1] = seq
    elif joins_right:
        ranges[i + 1][0] = seq
    else:
        ranges.insert(i + 1, [seq, seq])
    return True


@dataclass(frozen=True)
class Accumulator:
    """Everything needed to (re)compute a window document and to merge more readings into it."""

    seqs: tuple[tuple[int, int], ...] = ()
    energy_wh: float = 0.0  # measured import
    covered_s: float = 0.0
    readings: int = 0
    power_min_w: float | None = None
    power_max_w: float | None = None
    sums: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import (a gap bridged by the meter's registers)
    estimated_export_wh: float = 0.0

    @property
    def net_wh(self) -> float:
        """Measured import − measured export."""
        return self.energy_wh - self.export_wh

    def includes(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.seqs)

    def merged(self, items: Iterable[Contribution]) -> Accumulator:
        """This accumulator plus every contribution whose reading it does not hold yet."""
        ranges = [list(r) for r in self.seqs]
        energy, covered, readings = self.energy_wh, self.covered_s, self.readings
        exported, guessed, guessed_export = (
            self.export_wh,
            self.estimated_wh,
            self.estimated_export_wh,
        )
        low, high = self.power_min_w, self.power_max_w
        sums = dict(self.sums)
        for c in sorted(items, key=lambda c: c.seq):
            if not _add_seq(ranges, c.seq):
                continue  # a redelivery, a replay, or another bridge already merged it
            energy += c.energy_wh
            covered += c.covered_s
            exported += c.export_wh
            guessed += c.estimated_wh
            guessed_export += c.estimated_export_wh
            if not c.in_window:
                continue
            readings += 1
            if c.power_w is not None:
                low = c.power_w if low is None else min(low, c.power_w)
                high = c.power_w if high is None else max(high, c.power_w)
            for name in AVERAGED:
                value = getattr(c, name)
                if value is not None:
                    total, count = sums.get(name, (0.0, 0))
                    sums[name] = (total + value, count + 1)
        return Accumulator(
            tuple((a, b) for a, b in ranges),
            energy,
            covered,
            readings,
            low,
            high,
            sums,
            exported,
            guessed,
            guessed_export,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form; a direction or kind with nothing in it is left out, so a window of
        a meter that never exported and never had a gap bridged is stored as it always was."""
        found: dict[str, Any] = {
            "seqs": [list(r) for r in self.seqs],
            "energy_wh": self.energy_wh,
            "covered_s": self.covered_s,
            "readings": self.readings,
            "power_min_w": self.power_min_w,
            "power_max_w": self.power_max_w,
            "sums": {k: list(v) for k, v in sorted(self.sums.items())},
        }
        for name in EXTENDED:
            value = getattr(self, name)
            if value:
                found[name] = value
        return found

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Accumulator:
        if not data:
            return cls()
        return cls(
            seqs=tuple((int(a), int(b)) for a, b in data.get("seqs", [])),
            energy_wh=float(data.get("energy_wh", 0.0)),
            covered_s=float(data.get("covered_s", 0.0)),
            readings=int(data.get("readings", 0)),
            power_min_w=data.get("power_min_w"),
            power_max_w=data.get("power_max_w"),
            sums={k: (float(v[0]), int(v[1])) for k, v in (data.get("sums") or {}).items()},
            export_wh=float(data.get("export_wh", 0.0)),
            estimated_wh=float(data.get("estimated_wh", 0.0)),
            estimated_export_wh=float(data.get("estimated_export_wh", 0.0)),
        )


@dataclass(frozen=True)
class WindowDelta:
    """New contributions for one meter's window, on their way to the sink."""

    meter_id: str
    window_start_ms: int
    window_s: int
    items: Sequence[Contribution]
    building: str = ""
    floor: str = ""
    site: str = ""

    @property
    def document_id(self) -> str:
        return document_id(self.meter_id, self.window_start_ms)


@dataclass(frozen=True)
class WindowDoc:
    """One meter's window as written to every sink (the contract's fields, plus the accumulator)."""

    meter_id: str
    building: str
    floor: str
    window_start_ms: int
    window_end_ms: int
    total_energy_wh: float
    avg_power_w: float | None
    min_power_w: float | None
    max_power_w: float | None
    avg_voltage_v: float | None
    avg_current_a: float | None
    avg_power_factor: float | None
    avg_frequency_hz: float | None
    readings_in_batch: int
    coverage: float
    updated_at_ms: int
    accumulator: Accumulator
    site: str = ""  # the meter's site (older windows: '', read as the default site)
    export_energy_wh: float = 0.0  # measured export; total_energy_wh is the measured import
    estimated_energy_wh: float = 0.0  # estimated import (never counted in coverage)
    estimated_export_wh: float = 0.0

    @property
    def document_id(self) -> str:
        return document_id(self.meter_id, self.window_start_ms)

    @property
    def import_energy_wh(self) -> float:
        return self.total_energy_wh

    @property
    def net_energy_wh(self) -> float:
        """Measured import − measured export."""
        return self.total_energy_wh - self.export_energy_wh

    def fields(self, timestamp: Any = None) -> dict[str, Any]:
        """The document's fields; `timestamp(ms)` turns times into the sink's own type."""
        as_time = timestamp or utc_datetime
        return {
            "meter_id": self.meter_id,
            "building": self.building,
            "floor": self.floor,
            "window_start": as_time(self.window_start_ms),
            "window_end": as_time(self.window_end_ms),
            "timestamp": as_time(self.window_start_ms),
            "total_energy_wh": self.total_energy_wh,
            "avg_power_w": self.avg_power_w,
            "min_power_w": self.min_power_w,
            "max_power_w": self.max_power_w,
            "avg_voltage_v": self.avg_voltage_v,
            "avg_current_a": self.avg_current_a,
            "avg_power_factor": self.avg_power_factor,
            "avg_frequency_hz": self.avg_frequency_hz,
            "readings_in_batch": self.readings_in_batch,
            "coverage": self.coverage,
            "updated_at": as_time(self.updated_at_ms),
            "site": self.site,  # extensions of the contract: after its fields
            "import_energy_wh": self.total_energy_wh,
            "export_energy_wh": self.export_energy_wh,
            "net_energy_wh": self.net_energy_wh,
            "estimated_energy_wh": self.estimated_energy_wh,
            "estimated_export_wh": self.estimated_export_wh,
        }


def _average(acc: Accumulator, name: str) -> float | None:
    total, count = acc.sums.get(name, (0.0, 0))
    return total / count if count else None


def window_document(
    delta: WindowDelta, existing: Accumulator | None, updated_at_ms: int
) -> WindowDoc:
    """The window's document after merging `delta` into what the sink already holds."""
    acc = (existing or Accumulator()).merged(delta.items)
    window_ms = delta.window_s * 1000
    covered = acc.covered_s
    avg_power = acc.net_wh * 3600 / covered if covered > 0 else None
    if avg_power is not None and not math.isfinite(avg_power):
        avg_power = None
    return WindowDoc(
        meter_id=delta.meter_id,
        building=delta.building,
        floor=delta.floor,
        window_start_ms=delta.window_start_ms,
        window_end_ms=delta.window_start_ms + window_ms,
        total_energy_wh=acc.energy_wh,
        avg_power_w=avg_power,
        min_power_w=acc.power_min_w,
        max_power_w=acc.power_max_w,
        avg_voltage_v=_average(acc, "voltage_v"),
        avg_current_a=_average(acc, "current_a"),
        avg_power_factor=_average(acc, "power_factor"),
        avg_frequency_hz=_average(acc, "frequency_hz"),
        readings_in_batch=acc.readings,
        coverage=min(1.0, covered / delta.window_s),
        updated_at_ms=updated_at_ms,
        accumulator=acc,
        site=delta.site,
        export_energy_wh=acc.export_wh,
        estimated_energy_wh=acc.estimated_wh,
        estimated_export_wh=acc.estimated_export_wh,
    )


def group(
    items: Iterable[Contribution],
    window_s: int,
    meta: Mapping[str, tuple[str, str] | tuple[str, str, str]],
) -> list[WindowDelta]:
    """One delta per (meter, window); `meta` maps a meter to its (building, floor[, site])."""
    buckets: dict[tuple[str, int], list[Contribution]] = {}
    for c in items:
        buckets.setdefault((c.meter_id, c.window_start_ms), []).append(c)
    return [
        WindowDelta(meter, start, window_s, tuple(found), *meta.get(meter, ("", "")))
        for (meter, start), found in sorted(buckets.items())
    ]
