"""A deterministic campus load and its exact energy.

Power is piecewise linear between knots one second apart; each knot's value
is a pure function of (seed, time): a base load, weekday occupancy in the
site's local time, HVAC cycling, occasional equipment steps and noise. Because
power is piecewise linear, its integral over any interval is computed exactly,
which makes the simulated import-energy register the ground truth that the
logger's integration is measured against.

Every part of the load is built so that its sum over any run of knots has a
closed form, which makes the integral since a fixed epoch (`EPOCH_S`) cheap
however long ago that was: a meter's register is a function of wall-clock time
alone, the same in every simulator process. The parts:

- occupancy is piecewise linear in the local second of the day, times a
  weekday factor: a sum over a run of seconds is a few arithmetic series;
- the HVAC cycles with a whole-second period dividing the day, each cycle
  switching on at a drawn second within its period (so that polls on a fixed
  grid meet every phase); the pattern repeats every UTC day, and a day's HVAC
  runs are tabulated once per UTC offset;
- the equipment steps repeat every `STEP_PERIOD_H` hours (about six weeks),
  so their count is a tabulated prefix sum;
- the noise comes in pairs of knots (2j, 2j+1) of opposite sign, so it cancels
  over any run except at its two ends.

Pure: time comes in as an argument (UTC epoch seconds), nothing reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol
from zoneinfo import ZoneInfo

from campus_energy.meters.simulator.calendar import (
    DAY_S,
    SHAPE_DAY,
    HvacDay,
    offset_runs,
    shape,
    shape_sum,
    utc_offset_s,
    weekday_factor,
    weekday_factor_sum,
)
from campus_energy.meters.simulator.calendar import occupancy as occupancy

KNOT_S = 1.0
EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z: where every simulated register starts counting
STEP_PERIOD_H = 1009  # the equipment steps repeat after this many hours (a prime: ~6 weeks)
HVAC_PERIODS_S = tuple(p for p in range(600, 1201) if DAY_S % p == 0)
LOOP_LIMIT_S = 3600.0  # energy over spans up to this long: the trapezoid knot by knot
_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """The splitmix64 finaliser: a bijective scramble of 64 bits."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def hash64(seed: int, *keys: int) -> int:
    """64 bits that depend only on `seed` and `keys`, in order: `hash64(hash64(s, a), b)` is
    `hash64(s, a, b)` less the first scramble, so a caller can keep a prefix and extend it."""
    x = _mix(seed & _MASK)
    for key in keys:
        x = _mix(x ^ (key & _MASK))
    return x


def unit_random(seed: int, *keys: int) -> float:
    """A uniform number in [0, 1) that depends only on `seed` and `keys`, in order."""
    return (hash64(seed, *keys) >> 11) / float(1 << 53)


@dataclass(frozen=True)
class CampusLoad:
    """The active power of one simulated meter as a function of UTC time."""

    seed: int
    base_w: float
    peak_w: float
    zone: ZoneInfo
    hvac_period_s: int = field(init=False)
    hvac_on_s: int = field(init=False)
    hvac_phase_s: int = field(init=False)
    _hvac_days: dict[int, HvacDay] = field(init=False, repr=False, compare=False)
    _days_before: dict[int, float] = field(init=False, repr=False, compare=False)
    _knots: dict[int, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.base_w < 0 or self.peak_w < 0:
            raise ValueError("base_w and peak_w cannot be negative")
        period = HVAC_PERIODS_S[int(len(HVAC_PERIODS_S) * unit_random(self.seed, 1))]
        duty = 0.35 + 0.3 * unit_random(self.seed, 2)
        object.__setattr__(self, "hvac_period_s", period)
        object.__setattr__(self, "hvac_on_s", round(duty * period))
        object.__setattr__(self, "hvac_phase_s", int(period * unit_random(self.seed, 3)))
        object.__setattr__(self, "_hvac_days", {})
        object.__setattr__(self, "_days_before", {})
        object.__setattr__(self, "_knots", {})  # the last few knots: reads come in clusters

    @property
    def span_w(self) -> float:
        return max(self.peak_w - self.base_w, 0.0)

    @property
    def rated_w(self) -> float:
        """The largest power it draws: what the power factor is measured against."""
        return self.peak_w

    @property
    def hvac_duty(self) -> float:
        return self.hvac_on_s / self.hvac_period_s

    # --- the knots ------------------------------------------------------------------------

    @cached_property
    def _hvac_starts(self) -> tuple[int, ...]:
        """Where each cycle of a UTC day (from hvac_phase_s) switches on, within its period:
        drawn per cycle, so that polls on a fixed grid do not always meet the same phase."""
        room = self.hvac_period_s - self.hvac_on_s
        cycles = DAY_S // self.hvac_period_s
        return tuple(int(room * unit_random(self.seed, 8, c)) for c in range(cycles))

    def _hvac_on(self, k: int) -> bool:
        cycle, position = divmod((k - self.hvac_phase_s) % DAY_S, self.hvac_period_s)
        start = self._hvac_starts[cycle]
        return start <= position < start + self.hvac_on_s

    @cached_property
    def _steps(self) -> tuple[tuple[int, int], ...]:
        """Per hour of the step period: the whole seconds [lo, hi) of the hour with a step."""
        found = []
        for hour in range(STEP_PERIOD_H):
            lo = hi = 0
            if unit_random(self.seed, 4, hour) < 0.3:
                begin = 3000 * unit_random(self.seed, 5, hour)
                length = 300 + 1500 * unit_random(self.seed, 6, hour)
                lo, hi = math.ceil(begin), min(math.ceil(begin + length), 3600)
            found.append((lo, hi))
        return tuple(found)

    @cached_property
    def _steps_before(self) -> tuple[int, ...]:
        """Seconds with a step in the hours of the period before each hour (and the total)."""
        sums = [0]
        for lo, hi in self._steps:
            sums.append(sums[-1] + hi - lo)
        return tuple(sums)

    def _step_on(self, k: int) -> bool:
        hour, second = divmod(k, 3600)
        lo, hi = self._steps[hour % STEP_PERIOD_H]
        return lo <= second < hi

    def level_w(self, k: int) -> float:
        """Power at knot k before the noise, in W."""
        span = self.span_w
        local = k + utc_offset_s(self.zone, k)
        day, second = divmod(local, DAY_S)
        occ = shape(second) * weekday_factor(day)
        hvac = 0.25 * span * (0.4 + 0.6 * occ) if self._hvac_on(k) else 0.0
        step = 0.15 * span if self._step_on(k) else 0.0
        return self.base_w + 0.6 * span * occ + hvac + step

    def _noise_w(self, j: int, first: float, second: float) -> float:
        """The noise of knot 2j; knot 2j+1 has its opposite. Never more than 3 % of either."""
        return 0.03 * min(first, second) * (2 * unit_random(self.seed, 7, j) - 1)

    def knot_w(self, k: int) -> float:
        """Power at knot k (time k × KNOT_S), in W, never negative."""
        found = self._knots.get(k)
        if found is None:
            j, odd = divmod(k, 2)
            first, second = self.level_w(2 * j), self.level_w(2 * j + 1)
            noise = self._noise_w(j, first, second)
            if len(self._knots) > 64:
                self._knots.clear()
            self._knots[2 * j], self._knots[2 * j + 1] = first + noise, second - noise
            found = second - noise if odd else first + noise
        return found

    def power_w(self, t: float) -> float:
        """Instantaneous power at UTC epoch seconds `t` (linear between knots)."""
        k = math.floor(t / KNOT_S)
        frac = t / KNOT_S - k
        a = self.knot_w(k)
        if frac == 0:
            return a
        return a + (self.knot_w(k + 1) - a) * frac

    # --- exact energy ---------------------------------------------------------------------

    def energy_wh(self, t0: float, t1: float) -> float:
        """Exact ∫ power dt over [t0, t1], in Wh (0 when t1 <= t0)."""
        if t1 <= t0:
            return 0.0
        if t1 - t0 > LOOP_LIMIT_S:
            return self.energy_since_epoch_wh(t1) - self.energy_since_epoch_wh(t0)
        joules = 0.0
        t = t0
        p = self.power_w(t0)
        while t < t1:
            next_knot = (math.floor(t / KNOT_S) + 1) * KNOT_S
            t_next = min(next_knot, t1)
            p_next = (
                self.knot_w(round(t_next / KNOT_S)) if t_next == next_knot else self.power_w(t1)
            )
            joules += (p + p_next) * (t_next - t) / 2
            t, p = t_next, p_next
        return joules / 3600.0

    def energy_since_epoch_wh(self, t: float) -> float:
        """Exact ∫ power dt over [EPOCH_S, t] in Wh (negative before the epoch), in closed form."""
        k = math.floor(t / KNOT_S)
        p_k = self.knot_w(k)
        day = k // DAY_S
        before = self._days_before.get(day)
        if before is None:  # Σ knot_w over [EPOCH_S, the UTC day's start), once per day
            before = self._days_before[day] = self._knot_sum(EPOCH_S, day * DAY_S)
        joules = before + self._knot_sum(day * DAY_S, k) + (p_k - self._epoch_knot_w) / 2
        frac = t / KNOT_S - k
        if frac > 0:
            joules += (2 * p_k + (self.knot_w(k + 1) - p_k) * frac) / 2 * frac * KNOT_S
        return joules / 3600.0

    @cached_property
    def _epoch_knot_w(self) -> float:
        return self.knot_w(EPOCH_S)

    def _knot_sum(self, a: int, b: int) -> float:
        """Σ knot_w(k) for a <= k < b (its negative when b < a)."""
        if b < a:
            return -self._knot_sum(b, a)
        span = self.span_w
        steps = self._step_count(b) - self._step_count(a)
        total = self.base_w * (b - a) + 0.15 * span * steps
        for start, end, offset in offset_runs(self.zone, a, b):
            total += self._local_sum(end + offset, offset) - self._local_sum(start + offset, offset)
        return total + self._noise_before(b) - self._noise_before(a)

    def _hvac_day(self, offset: int) -> HvacDay:
        """The HVAC's on-runs over a local day at this UTC offset (they repeat every day)."""
        found = self._hvac_days.get(offset)
        if found is None:
            runs = []
            for cycle, start in enumerate(self._hvac_starts):
                begin = (self.hvac_phase_s + cycle * self.hvac_period_s + start + offset) % DAY_S
                end = begin + self.hvac_on_s
                runs += [(begin, end)] if end <= DAY_S else [(begin, DAY_S), (0, end - DAY_S)]
            found = self._hvac_days[offset] = HvacDay.of(runs)
        return found

    def _local_sum(self, local_end: int, offset: int) -> float:
        """Σ over local seconds 0 <= m < local_end of the occupancy and HVAC parts of the load,
        at a constant UTC offset (negative below 0)."""
        day, second = divmod(local_end, DAY_S)
        hvac = self._hvac_day(offset)
        whole_days = weekday_factor_sum(day) * (0.6 * SHAPE_DAY + 0.15 * hvac.shape_total)
        this_day = weekday_factor(day) * (0.6 * shape_sum(second) + 0.15 * hvac.shape_sum(second))
        on = 0.1 * (day * hvac.on_total + hvac.on_count(second))
        return self.span_w * (whole_days + this_day + on)

    def _step_count(self, end: int) -> int:
        """How many knots k < end have an equipment step (counted from 0; negative below)."""
        hour, second = divmod(end, 3600)
        periods, i = divmod(hour, STEP_PERIOD_H)
        lo, hi = self._steps[i]
        this_hour = max(0, min(second, hi) - lo)
        return periods * self._steps_before[-1] + self._steps_before[i] + this_hour

    def _noise_before(self, end: int) -> float:
        """Σ of the noise of knots k < end: only an unpaired even knot end - 1 is left."""
        if end % 2 == 0:
            return 0.0
        j = (end - 1) // 2
        return self._noise_w(j, self.level_w(2 * j), self.level_w(2 * j + 1))


PHASE_SHARES = (0.36, 0.33, 0.31)


class Load(Protocol):
    """What a meter measures: `CampusLoad`, or `solar.SolarBuilding` (power negative while
    it exports)."""

    @property
    def seed(self) -> int: ...

    @property
    def rated_w(self) -> float: ...

    def power_w(self, t: float) -> float: ...


def electrical_values(load: Load, t: float, phases: int) -> dict[str, float]:
    """What a meter displays at `t`, by standard field name.

    Voltage, current, power factor, frequency and the per-phase values are
    consistent with the power: current and power factor with its magnitude
    (a meter exporting 5 kW carries the current of one importing 5 kW), the
    per-phase powers with its sign.
    """
    power = load.power_w(t)
    magnitude = abs(power)
    second = int(t)
    fraction = magnitude / load.rated_w if load.rated_w > 0 else 0.0
    pf = min(0.99, 0.82 + 0.15 * fraction + 0.01 * unit_random(load.seed, 11, second))
    frequency = 50.0 + 0.06 * (unit_random(load.seed, 12, second) - 0.5)
    daily = math.sin(2 * math.pi * (t % 86400) / 86400)
    values: dict[str, float] = {"power_w": power, "frequency_hz": frequency}
    if phases == 1:
        voltage = 230.0 + 3.0 * daily + 2.0 * (unit_random(load.seed, 13, second) - 0.5)
        values |= {
            "voltage_v": voltage,
            "current_a": magnitude / (voltage * pf),
            "power_factor": pf,
        }
        return values
    apparent = 0.0
    volts = []
    currents = []
    for n, share in enumerate(PHASE_SHARES, start=1):
        voltage = 230.0 + 3.0 * daily + 2.0 * (unit_random(load.seed, 13 + n, second) - 0.5)
        phase_pf = min(0.99, pf + 0.01 * (n - 2))
        current = magnitude * share / (voltage * phase_pf)
        volts.append(voltage)
        currents.append(current)
        apparent += voltage * current
        values |= {
            f"voltage_l{n}_v": voltage,
            f"current_l{n}_a": current,
            f"power_l{n}_w": power * share,
            f"power_factor_l{n}": phase_pf,
        }
    values |= {
        "voltage_v": sum(volts) / 3,
        "current_a": sum(currents),
        "power_factor": magnitude / apparent if apparent > 0 else 1.0,
    }
    return values
