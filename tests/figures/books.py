"""The books from first principles: what every figure shown must equal.

A scenario is a campus of simulated meters with a deterministic load, polled on
a jittered grid. Its readings are made with the logger's integrator (so each
carries exact energy in whole µWh and the interval it covers) and become window
documents through the bridge's code and a real sink. The books below never use
that code: they split each reading's energy over time in proportion to its
interval, and sum.

Every step boundary a user can choose (5 minutes, local clock hours, local days
in any zone, including the 23- and 25-hour days of a DST change) falls on a
multiple of 300 s, so the books keep each meter's energy, covered time and
reading count per 300-second slot and add slots.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.windows import IncomingReading

SLOT_MS = 300_000


@dataclass(frozen=True)
class Scenario:
    """A campus, its configuration, and the time its readings cover."""

    name: str
    zone: str
    window_s: int
    start_ms: int
    end_ms: int
    interval_s: int
    meters: dict[str, tuple[str, str]]  # id -> (building, floor)
    offline: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> [from, to) ms
    silent: tuple[str, ...] = ()  # configured meters that never report

    @property
    def max_gap_s(self) -> float:
        """As the logger is configured: a missed poll or two is bridged, an outage is not."""
        return 2.5 * self.interval_s

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    @property
    def now_ms(self) -> int:
        """Half a window after the last reading: every reporting meter is online."""
        return self.end_ms + self.window_s * 500

    def local_day(self, ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).date()

    def midnight_ms(self, day: date) -> int:
        return round(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp() * 1000)

    def buildings(self) -> list[str]:
        return sorted({b for b, _ in self.meters.values()})


def utc_ms(*parts: int) -> int:
    return round(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def local_ms(zone: str, *parts: int) -> int:
    return round(datetime(*parts, tzinfo=ZoneInfo(zone)).timestamp() * 1000)  # type: ignore[misc]


def power_w(meter_index: int, t_ms: int) -> float:
    """A meter's load: a daily swing, a faster wobble and a base, all deterministic."""
    hours = t_ms / 3_600_000
    base = 1500.0 + 700.0 * meter_index
    daily = 0.45 * base * math.sin(2 * math.pi * (hours - 6) / 24)
    wobble = 90.0 * math.sin(2 * math.pi * hours * 7.3 + meter_index)
    return round(max(50.0, base + daily + wobble), 2)


def readings(s: Scenario) -> list[IncomingReading]:
    """Every reading of every reporting meter, as the logger would have published it."""
    found: list[IncomingReading] = []
    step_ms = s.interval_s * 1000
    for index, meter in enumerate(sorted(s.meters)):
        if meter in s.silent:
            continue
        building, floor = s.meters[meter]
        state = MeterState()
        away = s.offline.get(meter)
        k = 0
        while True:
            # a poll lands up to 0.9 s late, so intervals straddle window boundaries
            t_ms = s.start_ms + k * step_ms + (k * 7919) % 900
            k += 1
            if t_ms >= s.end_ms:
                break
            if away is not None and away[0] <= t_ms < away[1]:
                continue
            power = power_w(index, t_ms)
            previous = state.last_ts_ms
            step, state = advance(
                state, power_w=power, wall_s=t_ms / 1000, mono_s=t_ms / 1000, max_gap_s=s.max_gap_s
            )
            integrated = previous is not None and step.gap_s is None
            found.append(
                IncomingReading(
                    meter_id=meter,
                    ts_ms=step.ts_ms,
                    seq=step.seq,
                    energy_wh=step.energy_wh,
                    interval_start_ms=previous if integrated else None,
                    power_w=power,
                    voltage_v=230.0,
                    current_a=round(power / 230.0, 3),
                    power_factor=0.95,
                    frequency_hz=50.0,
                    building=building,
                    floor=floor,
                )
            )
    return found


@dataclass
class Slot:
    energy_wh: float = 0.0
    covered_s: float = 0.0
    readings: int = 0


class Books:
    """Per meter, per 300 s slot: energy, covered seconds, readings whose time lies in it."""

    def __init__(self, scenario: Scenario, items: Iterable[IncomingReading]) -> None:
        self.scenario = scenario
        self.slots: dict[str, dict[int, Slot]] = defaultdict(lambda: defaultdict(Slot))
        self.last: dict[str, IncomingReading] = {}
        self.intervals: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        self._prefixes: dict[str, tuple[list[int], list[float], list[float], list[int]]] = {}
        for r in items:
            self._add(r)

    def _add(self, r: IncomingReading) -> None:
        slots = self.slots[r.meter_id]
        slots[r.ts_ms - r.ts_ms % SLOT_MS].readings += 1
        self.last[r.meter_id] = r
        start = r.interval_start_ms
        if start is not None:
            self.intervals[r.meter_id].append((start, r.ts_ms, r.energy_wh))
        if start is None:
            slots[r.ts_ms - r.ts_ms % SLOT_MS].energy_wh += r.energy_wh
            return
        span = r.ts_ms - start
        a = start
        while a < r.ts_ms:
            slot = a - a % SLOT_MS
            b = min(r.ts_ms, slot + SLOT_MS)
            slots[slot].energy_wh += r.energy_wh * (b - a) / span
            slots[slot].covered_s += (b - a) / 1000
            a = b

    def meters(self, selection: Sequence[str] | None) -> list[str]:
        return sorted(self.scenario.meters) if selection is None else sorted(selection)

    def meter_sums(self, meter: str, start_ms: int, end_ms: int) -> Slot:
        assert start_ms % SLOT_MS == 0 and end_ms % SLOT_MS == 0, "steps fall on 300 s slots"
        keys, energy, covered, counted = self._prefix(meter)
        i, j = bisect.bisect_left(keys, start_ms), bisect.bisect_left(keys, end_ms)
        return Slot(energy[j] - energy[i], covered[j] - covered[i], counted[j] - counted[i])

    def _prefix(self, meter: str) -> tuple[list[int], list[float], list[float], list[int]]:
        """Sorted slots and running sums (exact enough: a year of a meter is ~1e8 Wh,
        whose float spacing is ~1e-8 Wh)."""
        if meter not in self._prefixes:
            slots = self.slots.get(meter, {})
            keys = sorted(slots)
            energy, covered, counted = [0.0], [0.0], [0]
            for k in keys:
                energy.append(energy[-1] + slots[k].energy_wh)
                covered.append(covered[-1] + slots[k].covered_s)
                counted.append(counted[-1] + slots[k].readings)
            self._prefixes[meter] = (keys, energy, covered, counted)
        return self._prefixes[meter]

    def energy_wh(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> float:
        return math.fsum(
            self.meter_sums(m, start_ms, end_ms).energy_wh for m in self.meters(selection)
        )

    def readings(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> int:
        return sum(self.meter_sums(m, start_ms, end_ms).readings for m in self.meters(selection))

    def avg_power_w(
        self, selection: Sequence[str] | None, start_ms: int, end_ms: int
    ) -> float | None:
        """Σ over meters of (energy ÷ covered time); None when no meter covered any time."""
        found = [self.meter_sums(m, start_ms, end_ms) for m in self.meters(selection)]
        covered = [s for s in found if s.covered_s > 0]
        if not covered:
            return None
        return math.fsum(s.energy_wh * 3600 / s.covered_s for s in covered)

    def coverage(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> float:
        meters = self.meters(selection)
        covered = math.fsum(self.meter_sums(m, start_ms, end_ms).covered_s for m in meters)
        return min(1.0, covered / ((end_ms - start_ms) / 1000 * max(1, len(meters))))

    def latest_window_power_w(self, meter: str) -> float | None:
        """The average power over the window holding the meter's last reading."""
        last = self.last.get(meter)
        if last is None:
            return None
        window_ms = self.scenario.window_s * 1000
        start = last.ts_ms - last.ts_ms % window_ms
        energy = covered = 0.0
        for a0, b0, wh in self.intervals.get(meter, ()):
            a, b = max(start, a0), min(start + window_ms, b0)
            if b > a:
                energy += wh * (b - a) / (b0 - a0)
                covered += (b - a) / 1000
        return energy * 3600 / covered if covered else None


def local_days(s: Scenario, first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
