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

Both directions and both kinds: a meter in `Scenario.pv` carries a rooftop array
whose deterministic sun curve outweighs its load around local noon, so its power
goes negative and the logger's integrator splits each interval at the zero
crossing into import and export. An outage in `Scenario.bridged` loses the
meter's polls, but its registers bridged it: the first reading after it carries
the register's delta as estimated import and export over the gap, which the
books spread in proportion to time and never count as covered.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from campus_energy.core.energy import UWH_PER_WH, MeterState, advance
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
    pv: tuple[str, ...] = ()  # meters behind which a solar array feeds the grid at noon
    bridged: dict[str, tuple[int, int]] = field(default_factory=dict)  # outages with estimates

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


PV_PEAK_W = 12_000.0


def solar_w(t_ms: int, zone: ZoneInfo) -> float:
    """A solar array's output: a sine from 06:00 to 18:00 local time, a passing cloud."""
    local = datetime.fromtimestamp(t_ms / 1000, UTC).astimezone(zone)
    hours = local.hour + local.minute / 60 + local.second / 3600
    if not 6 <= hours <= 18:
        return 0.0
    cloud = 0.8 + 0.2 * math.cos(2 * math.pi * hours * 1.7)
    return PV_PEAK_W * math.sin(math.pi * (hours - 6) / 12) * cloud


def net_power_w(s: Scenario, meter_index: int, meter: str, t_ms: int) -> float:
    """What the meter reads: its load, less its solar array's output (negative: exporting)."""
    load = power_w(meter_index, t_ms)
    return round(load - solar_w(t_ms, s.tz), 2) if meter in s.pv else load


def register_delta(
    s: Scenario, index: int, meter: str, a_ms: int, b_ms: int
) -> tuple[float, float]:
    """What the meter's own import and export registers counted over (a, b]: its power
    integrated in 10-second steps, each step's energy to its direction."""
    imported = exported = 0.0
    t = a_ms
    while t < b_ms:
        u = min(b_ms, t + 10_000)
        wh = (net_power_w(s, index, meter, t) + net_power_w(s, index, meter, u)) / 2
        wh *= (u - t) / 3_600_000
        if wh >= 0:
            imported += wh
        else:
            exported -= wh
        t = u
    return round(imported, 6), round(exported, 6)


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
        bridged = s.bridged.get(meter)
        k = 0
        while True:
            # a poll lands up to 0.9 s late, so intervals straddle window boundaries
            t_ms = s.start_ms + k * step_ms + (k * 7919) % 900
            k += 1
            if t_ms >= s.end_ms:
                break
            if any(o is not None and o[0] <= t_ms < o[1] for o in (away, bridged)):
                continue
            power = net_power_w(s, index, meter, t_ms)
            previous = state.last_ts_ms
            step, state = advance(
                state, power_w=power, wall_s=t_ms / 1000, mono_s=t_ms / 1000, max_gap_s=s.max_gap_s
            )
            integrated = previous is not None and step.gap_s is None
            guessed, guessed_export, gap_start = 0.0, 0.0, None
            if bridged is not None and previous is not None and previous < bridged[0] <= t_ms:
                guessed, guessed_export = register_delta(s, index, meter, previous, t_ms)
                gap_start = previous
            found.append(
                IncomingReading(
                    meter_id=meter,
                    ts_ms=step.ts_ms,
                    seq=step.seq,
                    energy_wh=step.energy_wh,
                    interval_start_ms=previous if integrated else None,
                    power_w=power,
                    voltage_v=230.0,
                    current_a=round(abs(power) / 230.0, 3),
                    power_factor=0.95,
                    frequency_hz=50.0,
                    building=building,
                    floor=floor,
                    export_wh=step.export_uwh / UWH_PER_WH,
                    estimated_wh=guessed,
                    estimated_export_wh=guessed_export,
                    estimated_start_ms=gap_start,
                )
            )
    return found


SUMS = ("energy_wh", "covered_s", "readings", "export_wh", "estimated_wh", "estimated_export_wh")


@dataclass
class Slot:
    energy_wh: float = 0.0  # measured import
    covered_s: float = 0.0
    readings: int = 0
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import: never covers time
    estimated_export_wh: float = 0.0

    @property
    def net_wh(self) -> float:
        return self.energy_wh - self.export_wh


def spread(start_ms: int, end_ms: int) -> Iterator[tuple[int, float]]:
    """Each 300 s slot (start_ms, end_ms] overlaps, with its share of the span."""
    a = start_ms
    while a < end_ms:
        slot = a - a % SLOT_MS
        b = min(end_ms, slot + SLOT_MS)
        yield slot, (b - a) / (end_ms - start_ms)
        a = b


class Books:
    """Per meter, per 300 s slot: energy of each direction and kind, covered seconds, readings
    whose time lies in it."""

    def __init__(self, scenario: Scenario, items: Iterable[IncomingReading]) -> None:
        self.scenario = scenario
        self.slots: dict[str, dict[int, Slot]] = defaultdict(lambda: defaultdict(Slot))
        self.last: dict[str, IncomingReading] = {}
        self.intervals: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
        self._prefixes: dict[str, tuple[list[int], dict[str, list[float]]]] = {}
        for r in items:
            self._add(r)

    def _add(self, r: IncomingReading) -> None:
        slots = self.slots[r.meter_id]
        own = slots[r.ts_ms - r.ts_ms % SLOT_MS]
        own.readings += 1
        self.last[r.meter_id] = r
        gap = r.estimated_start_ms
        if r.estimated_wh or r.estimated_export_wh:
            if gap is None or gap >= r.ts_ms:
                own.estimated_wh += r.estimated_wh
                own.estimated_export_wh += r.estimated_export_wh
            else:
                for slot, share in spread(gap, r.ts_ms):
                    slots[slot].estimated_wh += r.estimated_wh * share
                    slots[slot].estimated_export_wh += r.estimated_export_wh * share
        start = r.interval_start_ms
        if start is None:
            own.energy_wh += r.energy_wh
            own.export_wh += r.export_wh
            return
        self.intervals[r.meter_id].append((start, r.ts_ms, r.energy_wh, r.export_wh))
        for slot, share in spread(start, r.ts_ms):
            slots[slot].energy_wh += r.energy_wh * share
            slots[slot].export_wh += r.export_wh * share
            slots[slot].covered_s += (r.ts_ms - start) * share / 1000

    def meters(self, selection: Sequence[str] | None) -> list[str]:
        return sorted(self.scenario.meters) if selection is None else sorted(selection)

    def meter_sums(self, meter: str, start_ms: int, end_ms: int) -> Slot:
        assert start_ms % SLOT_MS == 0 and end_ms % SLOT_MS == 0, "steps fall on 300 s slots"
        keys, running = self._prefix(meter)
        i, j = bisect.bisect_left(keys, start_ms), bisect.bisect_left(keys, end_ms)
        found = {name: running[name][j] - running[name][i] for name in SUMS}
        return Slot(**{**found, "readings": round(found["readings"])})

    def _prefix(self, meter: str) -> tuple[list[int], dict[str, list[float]]]:
        """Sorted slots and running sums (exact enough: a year of a meter is ~1e8 Wh,
        whose float spacing is ~1e-8 Wh)."""
        if meter not in self._prefixes:
            slots = self.slots.get(meter, {})
            keys = sorted(slots)
            running: dict[str, list[float]] = {name: [0.0] for name in SUMS}
            for k in keys:
                for name in SUMS:
                    running[name].append(running[name][-1] + getattr(slots[k], name))
            self._prefixes[meter] = (keys, running)
        return self._prefixes[meter]

    def sums(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> Slot:
        """Every sum of the selection over [start_ms, end_ms)."""
        found = [self.meter_sums(m, start_ms, end_ms) for m in self.meters(selection)]
        return Slot(
            **{
                name: math.fsum(getattr(f, name) for f in found)
                for name in SUMS
                if name != "readings"
            },
            readings=sum(f.readings for f in found),
        )

    def energy_wh(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> float:
        """Measured import."""
        return math.fsum(
            self.meter_sums(m, start_ms, end_ms).energy_wh for m in self.meters(selection)
        )

    def readings(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> int:
        return sum(self.meter_sums(m, start_ms, end_ms).readings for m in self.meters(selection))

    def avg_power_w(
        self, selection: Sequence[str] | None, start_ms: int, end_ms: int
    ) -> float | None:
        """Σ over meters of (net energy ÷ covered time); None when no meter covered any time."""
        found = [self.meter_sums(m, start_ms, end_ms) for m in self.meters(selection)]
        covered = [s for s in found if s.covered_s > 0]
        if not covered:
            return None
        return math.fsum(s.net_wh * 3600 / s.covered_s for s in covered)

    def coverage(self, selection: Sequence[str] | None, start_ms: int, end_ms: int) -> float:
        meters = self.meters(selection)
        covered = math.fsum(self.meter_sums(m, start_ms, end_ms).covered_s for m in meters)
        return min(1.0, covered / ((end_ms - start_ms) / 1000 * max(1, len(meters))))

    def latest_window_power_w(self, meter: str) -> float | None:
        """The average (net) power over the window holding the meter's last reading."""
        last = self.last.get(meter)
        if last is None:
            return None
        window_ms = self.scenario.window_s * 1000
        start = last.ts_ms - last.ts_ms % window_ms
        energy = covered = 0.0
        for a0, b0, wh, exported in self.intervals.get(meter, ()):
            a, b = max(start, a0), min(start + window_ms, b0)
            if b > a:
                energy += (wh - exported) * (b - a) / (b0 - a0)
                covered += (b - a) / 1000
        return energy * 3600 / covered if covered else None


def local_days(s: Scenario, first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
