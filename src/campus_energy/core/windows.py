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


def contributions(reading: IncomingReading, window_ms: int) -> list[Contribution]:
    """The reading's share of every window its interval overlaps, plus its own window's samples."""
    own = window_start_ms(reading.ts_ms, window_ms)
    samples = {
        "power_w": reading.power_w,
        "voltage_v": reading.voltage_v,
        "current_a": reading.current_a,
        "power_factor": reading.power_factor,
        "frequency_hz": reading.frequency_hz,
    }
    start = reading.interval_start_ms
    if start is None or start >= reading.ts_ms:
        # Nothing integrated (or, from an older logger, an interval we cannot place):
        # the energy, if any, goes to the reading's own window, covering no known time.
        return [
            Contribution(
                reading.meter_id, own, reading.seq, reading.energy_wh, 0.0, True, **samples
            )
        ]
    span = reading.ts_ms - start
    found: list[Contribution] = []
    shared = 0.0
    window = window_start_ms(start, window_ms)
    while window < reading.ts_ms:
        overlap = min(reading.ts_ms, window + window_ms) - max(start, window)
        last = window + window_ms >= reading.ts_ms
        energy = reading.energy_wh - shared if last else reading.energy_wh * overlap / span
        shared += energy
        found.append(
            Contribution(
                reading.meter_id,
                window,
                reading.seq,
                energy,
                overlap / 1000,
                window == own,
                **(samples if window == own else {}),
            )
        )
        window += window_ms
    if not any(c.in_window for c in found):  # ts exactly on a boundary: its window starts at ts
        found.append(Contribution(reading.meter_id, own, reading.seq, 0.0, 0.0, True, **samples))
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
    energy_wh: float = 0.0
    covered_s: float = 0.0
    readings: int = 0
    power_min_w: float | None = None
    power_max_w: float | None = None
    sums: Mapping[str, tuple[float, int]] = field(default_factory=dict)

    def includes(self, seq: int) -> bool:
        return any(first <= seq <= last for first, last in self.seqs)

    def merged(self, items: Iterable[Contribution]) -> Accumulator:
        """This accumulator plus every contribution whose reading it does not hold yet."""
        ranges = [list(r) for r in self.seqs]
        energy, covered, readings = self.energy_wh, self.covered_s, self.readings
        low, high = self.power_min_w, self.power_max_w
        sums = dict(self.sums)
        for c in sorted(items, key=lambda c: c.seq):
            if not _add_seq(ranges, c.seq):
                continue  # a redelivery, a replay, or another bridge already merged it
            energy += c.energy_wh
            covered += c.covered_s
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
            tuple((a, b) for a, b in ranges), energy, covered, readings, low, high, sums
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seqs": [list(r) for r in self.seqs],
            "energy_wh": self.energy_wh,
            "covered_s": self.covered_s,
            "readings": self.readings,
            "power_min_w": self.power_min_w,
            "power_max_w": self.power_max_w,
            "sums": {k: list(v) for k, v in sorted(self.sums.items())},
        }

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

    @property
    def document_id(self) -> str:
        return document_id(self.meter_id, self.window_start_ms)

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
            "site": self.site,  # an extension of the contract: after its fields
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
    avg_power = acc.energy_wh * 3600 / covered if covered > 0 else None
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
