"""Exact energy from power readings, and monotonic timestamps that survive wall-clock steps.

Energy between two readings is the trapezoid of their powers over the time
between them as measured by a monotonic clock, never a nominal interval. A
longer interval than `max_gap_s` adds no energy (the first value after an
outage is not applied to the whole outage) and is reported as a gap. Energy is
counted in integer microwatt-hours so that a meter's cumulative total is
exactly the sum of its readings' energies, forever.

Energy has two directions. Power is signed (positive: drawn from the grid,
negative: fed into it, as a building with rooftop solar does at noon), and an
interval's trapezoid is split into its import (the area above zero) and its
export (the area below), exactly at the zero crossing of the straight line
between the two powers. Each direction is counted and totalled on its own;
import − export is the interval's net energy, the signed trapezoid.

Pure: every time and value comes in as an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

UWH_PER_WH = 1_000_000
SLEW = 0.5  # while the wall clock is behind the last timestamp, timestamps advance at half speed


def trapezoid_uwh(power_a_w: float, power_b_w: float, seconds: float) -> int:
    """∫ power dt of a straight line from a to b over `seconds`, in whole µWh."""
    return round((power_a_w + power_b_w) / 2 * seconds / 3600 * UWH_PER_WH)


def split_trapezoid_uwh(power_a_w: float, power_b_w: float, seconds: float) -> tuple[int, int]:
    """The trapezoid of a straight line from a to b over `seconds`, split by direction:
    (import, export) in whole µWh, both ≥ 0. Where the line crosses zero, at
    seconds × a / (a − b), the part before and the part after go to their own direction."""
    if power_a_w >= 0 and power_b_w >= 0:
        return trapezoid_uwh(power_a_w, power_b_w, seconds), 0
    if power_a_w <= 0 and power_b_w <= 0:
        return 0, trapezoid_uwh(-power_a_w, -power_b_w, seconds)
    crossing_s = seconds * power_a_w / (power_a_w - power_b_w)
    if power_a_w > 0:  # importing, then exporting
        return trapezoid_uwh(power_a_w, 0.0, crossing_s), trapezoid_uwh(
            0.0, -power_b_w, seconds - crossing_s
        )
    return trapezoid_uwh(0.0, power_b_w, seconds - crossing_s), trapezoid_uwh(
        -power_a_w, 0.0, crossing_s
    )


@dataclass(frozen=True)
class Implausible:
    """Why a power reading cannot be true."""

    kind: str  # one of IMPLAUSIBLE_KINDS: a label for counting
    reason: str  # in words, for the log and the `rejects` table


IMPLAUSIBLE_KINDS = ("nan", "infinite", "beyond-limit")


def implausibility(power_w: float, max_abs_w: float | None) -> Implausible | None:
    """Why a power reading cannot be true (None when it is plausible)."""
    if math.isnan(power_w):
        return Implausible("nan", "power is NaN")
    if math.isinf(power_w):
        return Implausible("infinite", "power is infinite")
    if max_abs_w is not None and abs(power_w) > max_abs_w:
        return Implausible("beyond-limit", f"power {power_w:g} W beyond ±{max_abs_w:g} W")
    return None


def implausible(power_w: float, max_abs_w: float | None) -> str | None:
    """Why a power reading cannot be true, in words (None when it is plausible)."""
    found = implausibility(power_w, max_abs_w)
    return None if found is None else found.reason


@dataclass(frozen=True)
class MeterState:
    """What the integrator remembers of a meter between readings."""

    seq: int = 0
    total_uwh: int = 0  # cumulative import
    export_total_uwh: int = 0  # cumulative export
    last_ts_ms: int | None = None
    last_power_w: float | None = None
    last_mono_s: float | None = None  # None: the previous reading's monotonic time is unknown


@dataclass(frozen=True)
class Step:
    """The outcome of one accepted reading."""

    ts_ms: int
    seq: int
    energy_uwh: int  # imported over the interval
    total_uwh: int  # cumulative import
    gap_s: float | None  # the interval left unintegrated because it was too long (or unknown)
    export_uwh: int = 0  # exported over the interval
    export_total_uwh: int = 0  # cumulative export

    @property
    def energy_wh(self) -> float:
        return self.energy_uwh / UWH_PER_WH

    @property
    def total_wh(self) -> float:
        return self.total_uwh / UWH_PER_WH


def stamp(last_ts_ms: int | None, last_mono_s: float | None, wall_s: float, mono_s: float) -> int:
    """The UTC timestamp (ms) of a reading: the wall clock, kept strictly increasing per meter.

    When the wall clock has been stepped back behind the meter's last timestamp,
    timestamps continue from it at half the monotonic rate until the wall clock
    catches up, so a meter's rows never go out of time order and stay spaced
    sensibly. A forward step is taken as it is (energy uses the monotonic clock).
    """
    wall_ms = math.floor(wall_s * 1000)
    if last_ts_ms is None or wall_ms > last_ts_ms:
        return wall_ms
    elapsed_ms = (mono_s - last_mono_s) * 1000 if last_mono_s is not None else 0.0
    return last_ts_ms + max(1, math.floor(elapsed_ms * (1 - SLEW)))


def advance(
    state: MeterState, *, power_w: float, wall_s: float, mono_s: float, max_gap_s: float
) -> tuple[Step, MeterState]:
    """Account for one plausible reading of `power_w` that arrived at (wall_s, mono_s)."""
    ts_ms = stamp(state.last_ts_ms, state.last_mono_s, wall_s, mono_s)
    energy = exported = 0
    gap_s: float | None = None
    if state.last_power_w is not None:
        if state.last_mono_s is None:
            gap_s = (ts_ms - state.last_ts_ms) / 1000 if state.last_ts_ms is not None else None
        else:
            elapsed = mono_s - state.last_mono_s
            if 0 < elapsed <= max_gap_s:
                energy, exported = split_trapezoid_uwh(state.last_power_w, power_w, elapsed)
            else:
                gap_s = elapsed
    total = state.total_uwh + energy
    export_total = state.export_total_uwh + exported
    seq = state.seq + 1
    step = Step(
        ts_ms=ts_ms,
        seq=seq,
        energy_uwh=energy,
        total_uwh=total,
        gap_s=gap_s,
        export_uwh=exported,
        export_total_uwh=export_total,
    )
    new_state = replace(
        state,
        seq=seq,
        total_uwh=total,
        export_total_uwh=export_total,
        last_ts_ms=ts_ms,
        last_power_w=power_w,
        last_mono_s=mono_s,
    )
    return step, new_state
