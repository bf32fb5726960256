"""A stored reading and its MQTT payload (schema 1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campus_energy.core.energy import UWH_PER_WH
from campus_energy.core.models import CORE_FIELDS
from campus_energy.core.timestamps import iso_utc

PAYLOAD_SCHEMA = 1


@dataclass(frozen=True)
class Reading:
    """One accepted poll of one meter, as stored and as published."""

    meter_id: str
    ts_ms: int
    seq: int
    energy_uwh: int  # imported over the interval
    total_uwh: int  # cumulative import
    values: Mapping[str, float | None] = field(default_factory=dict)
    # The timestamp of the previous reading: `energy_wh` covers (interval_start, ts].
    # None when the reading integrated nothing (the first reading, or after a gap).
    interval_start_ms: int | None = None
    export_uwh: int = 0  # exported over the interval
    export_total_uwh: int = 0  # cumulative export
    # Energy the meter's own registers counted across a gap (interval left unintegrated),
    # estimated from their difference between the reading before the gap and this one:
    # it covers (estimated_start, ts]. None: nothing estimated.
    estimated_uwh: int | None = None
    estimated_export_uwh: int | None = None
    estimated_start_ms: int | None = None

    @property
    def energy_wh(self) -> float:
        return self.energy_uwh / UWH_PER_WH

    @property
    def energy_total_wh(self) -> float:
        return self.total_uwh / UWH_PER_WH

    @property
    def export_wh(self) -> float:
        return self.export_uwh / UWH_PER_WH

    @property
    def export_total_wh(self) -> float:
        return self.export_total_uwh / UWH_PER_WH

    @property
    def estimated(self) -> bool:
        return self.estimated_start_ms is not None and (
            self.estimated_uwh is not None or self.estimated_export_uwh is not None
        )

    def payload(self, building: str, floor: str, site: str | None = None) -> dict[str, Any]:
        """The JSON document published to `<root>/<meter_id>/reading` (`site`: its site's id,
        a field added to the contract's; None leaves it out).

        `energy_wh` and `energy_total_wh` are import energy, as they always were for a meter
        that never exports; the fields added after the contract's carry the export
        (`energy_export_wh`, `energy_export_total_wh`) and, after a gap the meter's
        registers bridged, the estimate (`estimated_energy_wh`, `estimated_export_wh`,
        covering (`estimated_start`, `ts`]). Readers that know none of them see what they
        always saw. The register fields of a profile (`import_energy_wh`,
        `export_energy_wh`: the meter's own cumulative counters) follow as extra fields."""
        body: dict[str, Any] = {
            "schema": PAYLOAD_SCHEMA,
            "meter_id": self.meter_id,
            "building": building,
            "floor": floor,
            "ts": iso_utc(self.ts_ms),
            "seq": self.seq,
        }
        for name in CORE_FIELDS:
            body[name] = _number(self.values.get(name))
        body["energy_wh"] = self.energy_wh
        body["energy_total_wh"] = self.energy_total_wh
        start = self.interval_start_ms
        body["interval_start"] = iso_utc(start) if start is not None else None
        body["energy_export_wh"] = self.export_wh
        body["energy_export_total_wh"] = self.export_total_wh
        if self.estimated and self.estimated_start_ms is not None:
            body["estimated_energy_wh"] = (self.estimated_uwh or 0) / UWH_PER_WH
            body["estimated_export_wh"] = (self.estimated_export_uwh or 0) / UWH_PER_WH
            body["estimated_start"] = iso_utc(self.estimated_start_ms)
        for name, value in self.values.items():
            if name not in body:
                body[name] = _number(value)
        if site is not None:
            body["site"] = site
        return body


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
