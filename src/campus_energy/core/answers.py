"""What a window source answers with: a meter's latest window, its sums per step, a total.

Values only; `backends.base.WindowSource` is the protocol that returns them,
and the sources (SQLite, PostgreSQL, Firestore's `core.window_index`) build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Grain = Literal["window", "hour", "day"]
QUARTER_MS = 900_000  # every zone's clock hour starts on a UTC quarter hour, so its quarters do


@dataclass(frozen=True)
class MeterLatest:
    meter_id: str
    building: str
    floor: str
    last_window_ms: int | None
    power_w: float | None
    coverage: float | None
    site: str = ""  # as the store holds it ('': written before sites, the default site)


@dataclass(frozen=True)
class Bucket:
    """One meter's sums over one step: a window (or a 5-minute step of windows), a local clock
    hour of the site's zone, or a local day."""

    meter_id: str
    key: int | str  # window or hour start (epoch ms), or the local day 'YYYY-MM-DD'
    energy_wh: float  # measured import
    covered_s: float
    readings: int
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import: gaps bridged by the meter's registers
    estimated_export_wh: float = 0.0


@dataclass(frozen=True)
class Total:
    energy_wh: float  # measured import
    readings: int
    meters_found: int
    last_window_ms: int | None
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import
    estimated_export_wh: float = 0.0


@dataclass(frozen=True)
class ScopeHour:
    """A signed sum of meters (a scope: a building's total, a virtual meter, the campus) over
    one local clock hour of the site's zone, with the energy of each quarter hour in it.

    Quarter i covers [hour_ms + i × 15 min, hour_ms + (i + 1) × 15 min): a window (whose
    length divides 15 minutes) lies in exactly one. `members` counts the scope's meters
    that have a rollup row in this hour; `min_covered_s` is the least covered seconds
    among those, so the scope's coverage of the hour is min_covered_s / 3600 when every
    member has a row, else 0 — a member without data is never filled in.
    """

    hour_ms: int
    quarters_wh: tuple[float, float, float, float]  # measured import (signed sum of members)
    min_covered_s: float
    members: int
    estimated_wh: float = 0.0  # the hour's estimated import (signed sum of members)

    @property
    def energy_wh(self) -> float:
        return sum(self.quarters_wh)


@dataclass(frozen=True)
class ScopePeak:
    """A scope's highest demand-interval energy within one range of a partition of time."""

    index: int  # the range: [bounds[index], bounds[index + 1])
    energy_wh: float  # the interval's energy (the signed sum of its members')
    start_ms: int  # the interval's start; the earliest of intervals with equal energy
