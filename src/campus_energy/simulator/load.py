"""A deterministic campus load and its exact energy.

Power is piecewise linear between knots one second apart; each knot's value
is a pure function of (seed, time): a base load, weekday occupancy in the
site's local time, HVAC cycling, occasional equipment steps and noise. Because
power is piecewise linear, its integral over any interval is computed exactly,
which makes the simulated import-energy register the ground truth that the
logger's integration is measured against.

Pure: time comes in as an argument (UTC epoch seconds), nothing reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

KNOT_S = 1.0
_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """The splitmix64 finaliser: a bijective scramble of 64 bits."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def unit_random(seed: int, *keys: int) -> float:
    """A uniform number in [0, 1) that depends only on `seed` and `keys`, in order."""
    x = _mix(seed & _MASK)
    for key in keys:
        x = _mix(x ^ (key & _MASK))
    return (x >> 11) / float(1 << 53)


def _ramp(x: float, start: float, end: float) -> float:
    """0 before `start`, 1 after `end`, linear in between."""
    if x <= start:
        return 0.0
    if x >= end:
        return 1.0
    return (x - start) / (end - start)


def occupancy(local: datetime) -> float:
    """Share of the daytime load in use: weekday working hours, a lunch dip, quiet weekends."""
    hour = local.hour + local.minute / 60 + local.second / 3600
    day = _ramp(hour, 7.5, 8.5) * (1 - _ramp(hour, 17.5, 18.5))
    lunch = 1 - 0.2 * _ramp(hour, 12.25, 12.5) * (1 - _ramp(hour, 13.25, 13.5))
    evening = 0.15 * _ramp(hour, 17.5, 18.5) * (1 - _ramp(hour, 21.5, 22.5))
    weekday = local.weekday() < 5
    return (day * lunch + evening) * (1.0 if weekday else 0.25)


@dataclass(frozen=True)
class CampusLoad:
    """The active power of one simulated meter as a function of UTC time."""

    seed: int
    base_w: float
    peak_w: float
    zone: ZoneInfo
    hvac_period_s: float = field(init=False)
    hvac_duty: float = field(init=False)
    hvac_phase_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hvac_period_s", 600 + 600 * unit_random(self.seed, 1))
        object.__setattr__(self, "hvac_duty", 0.35 + 0.3 * unit_random(self.seed, 2))
        object.__setattr__(self, "hvac_phase_s", self.hvac_period_s * unit_random(self.seed, 3))

    @property
    def span_w(self) -> float:
        return max(self.peak_w - self.base_w, 0.0)

    def knot_w(self, k: int) -> float:
        """Power at knot k (time k × KNOT_S), in W, never negative."""
        t = k * KNOT_S
        span = self.span_w
        occ = occupancy(datetime.fromtimestamp(t, self.zone))
        cycle = (t + self.hvac_phase_s) % self.hvac_period_s
        hvac_on = cycle < self.hvac_duty * self.hvac_period_s
        hvac = 0.25 * span * (0.4 + 0.6 * occ) if hvac_on else 0.0
        hour = int(t // 3600)
        step = 0.0
        if unit_random(self.seed, 4, hour) < 0.3:
            begin = 3600 * hour + 3000 * unit_random(self.seed, 5, hour)
            length = 300 + 1500 * unit_random(self.seed, 6, hour)
            if begin <= t < begin + length:
                step = 0.15 * span
        level = self.base_w + 0.6 * span * occ + hvac + step
        noise = 0.03 * level * (2 * unit_random(self.seed, 7, k) - 1)
        return max(level + noise, 0.0)

    def power_w(self, t: float) -> float:
        """Instantaneous power at UTC epoch seconds `t` (linear between knots)."""
        k = math.floor(t / KNOT_S)
        frac = t / KNOT_S - k
        a = self.knot_w(k)
        if frac == 0:
            return a
        return a + (self.knot_w(k + 1) - a) * frac

    def energy_wh(self, t0: float, t1: float) -> float:
        """Exact ∫ power dt over [t0, t1], in Wh (0 when t1 <= t0)."""
        if t1 <= t0:
            return 0.0
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


PHASE_SHARES = (0.36, 0.33, 0.31)


def electrical_values(load: CampusLoad, t: float, phases: int) -> dict[str, float]:
    """What a meter displays at `t`, by standard field name.

    Voltage, current, power factor, frequency and the per-phase values are
    consistent with the power.
    """
    power = load.power_w(t)
    second = int(t)
    fraction = power / load.peak_w if load.peak_w > 0 else 0.0
    pf = min(0.99, 0.82 + 0.15 * fraction + 0.01 * unit_random(load.seed, 11, second))
    frequency = 50.0 + 0.06 * (unit_random(load.seed, 12, second) - 0.5)
    daily = math.sin(2 * math.pi * (t % 86400) / 86400)
    values: dict[str, float] = {"power_w": power, "frequency_hz": frequency}
    if phases == 1:
        voltage = 230.0 + 3.0 * daily + 2.0 * (unit_random(load.seed, 13, second) - 0.5)
        values |= {
            "voltage_v": voltage,
            "current_a": power / (voltage * pf),
            "power_factor": pf,
        }
        return values
    apparent = 0.0
    volts = []
    currents = []
    for n, share in enumerate(PHASE_SHARES, start=1):
        voltage = 230.0 + 3.0 * daily + 2.0 * (unit_random(load.seed, 13 + n, second) - 0.5)
        phase_pf = min(0.99, pf + 0.01 * (n - 2))
        current = power * share / (voltage * phase_pf)
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
        "power_factor": power / apparent if apparent > 0 else 1.0,
    }
    return values
