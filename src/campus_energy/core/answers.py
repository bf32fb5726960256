"""What a window source answers with: a meter's latest window, its sums per step, a total.

Values only; `backends.base.WindowSource` is the protocol that returns them,
and the sources (SQLite, PostgreSQL, Firestore's `core.window_index`) build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Grain = Literal["window", "hour", "day"]


@dataclass(frozen=True)
class MeterLatest:
    meter_id: str
    building: str
    floor: str
    last_window_ms: int | None
    power_w: float | None
    coverage: float | None


@dataclass(frozen=True)
class Bucket:
    """One meter's sums over one step: a window (or a 5-minute step of windows), a local clock
    hour of the site's zone, or a local day."""

    meter_id: str
    key: int | str  # window or hour start (epoch ms), or the local day 'YYYY-MM-DD'
    energy_wh: float
    covered_s: float
    readings: int


@dataclass(frozen=True)
class Total:
    energy_wh: float
    readings: int
    meters_found: int
    last_window_ms: int | None
