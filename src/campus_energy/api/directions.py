"""Energy as the answers show it: two directions and two kinds, kept apart. Pure.

Every energy figure the API has always answered (`today_kwh`, `energy_wh`,
`total_energy_kwh`, ...) is the *measured import*: energy drawn from the grid,
integrated from power over covered time, as the original deployment meant it.
Beside it each answer carries the measured export (fed into the grid: rooftop
solar at noon), the net (import − export) and the estimated import and export
(gaps the meters' own registers bridged). An estimate is never added to a
measured figure and never raises `coverage`: it is shown apart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from campus_energy.backends.base import Bucket

T = TypeVar("T")


@dataclass(frozen=True)
class Energy:
    """Sums over a scope and a span, in Wh."""

    import_wh: float = 0.0  # measured
    export_wh: float = 0.0  # measured
    estimated_wh: float = 0.0  # estimated import
    estimated_export_wh: float = 0.0

    @classmethod
    def of(cls, rows: Iterable[Bucket]) -> Energy:
        """The sums of buckets (each its own meter's, so a weighted scope uses `weighted`)."""
        found = list(rows)
        return cls(
            math.fsum(b.energy_wh for b in found),
            math.fsum(b.export_wh for b in found),
            math.fsum(b.estimated_wh for b in found),
            math.fsum(b.estimated_export_wh for b in found),
        )

    @property
    def net_wh(self) -> float:
        """Measured import − measured export."""
        return self.import_wh - self.export_wh

    def __add__(self, other: Energy) -> Energy:
        return Energy(
            self.import_wh + other.import_wh,
            self.export_wh + other.export_wh,
            self.estimated_wh + other.estimated_wh,
            self.estimated_export_wh + other.estimated_export_wh,
        )

    def scaled(self, weight: float) -> Energy:
        return Energy(
            weight * self.import_wh,
            weight * self.export_wh,
            weight * self.estimated_wh,
            weight * self.estimated_export_wh,
        )

    def added(self, kwh: Callable[[float], T], prefix: str) -> dict[str, T]:
        """The figures beside a measured import named `<prefix>_kwh` (`today_kwh`):
        `<prefix>_export_kwh`, `<prefix>_net_kwh`, `<prefix>_estimated_kwh` and
        `<prefix>_estimated_export_kwh`, each rounded by `kwh` from Wh."""
        return {
            f"{prefix}_export_kwh": kwh(self.export_wh),
            f"{prefix}_net_kwh": kwh(self.net_wh),
            f"{prefix}_estimated_kwh": kwh(self.estimated_wh),
            f"{prefix}_estimated_export_kwh": kwh(self.estimated_export_wh),
        }


def by_group(rows: Iterable[Bucket], group_of: Callable[[str], str]) -> dict[str, Energy]:
    """The sums of each group of meters (`group_of`: a meter's group, e.g. its building)."""
    found: dict[str, list[Bucket]] = defaultdict(list)
    for b in rows:
        found[group_of(b.meter_id)].append(b)
    return {group: Energy.of(rows) for group, rows in found.items()}


def per_meter(rows: Iterable[Bucket]) -> dict[str, Energy]:
    """The sums of each meter."""
    return by_group(rows, str)
