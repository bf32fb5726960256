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
    energy_uwh: int
    total_uwh: int
    values: Mapping[str, float | None] = field(default_factory=dict)
    # The timestamp of the previous reading: `energy_wh` covers (interval_start, ts].
    # None when the reading integrated nothing (the first reading, or after a gap).
    interval_start_ms: int | None = None

    @property
    def energy_wh(self) -> float:
        return self.energy_uwh / UWH_PER_WH

    @property
    def energy_total_wh(self) -> float:
        return self.total_uwh / UWH_PER_WH

    def payload(self, building: str, floor: str, site: str | None = None) -> dict[str, Any]:
        """The JSON document published to `<root>/<meter_id>/reading` (`site`: its site's id,
        a field added to the contract's; None leaves it out)."""
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
        for name, value in self.values.items():
            if name not in body:
                body[name] = _number(value)
        if site is not None:
            body["site"] = site
        return body


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
