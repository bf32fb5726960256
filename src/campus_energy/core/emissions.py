"""CO₂ of energy: an hourly grid factor where one is known, else the dated annual factor.

Hourly factors (g CO₂/kWh) are keyed by the UTC hour they hold; annual factors
(kg CO₂/kWh) by the local date from which each is valid. Each quarter hour of a
scope's energy takes its UTC hour's factor, else the annual factor in force on its
local day, else none: the answer says how much energy each way took, so a partial
hourly file is never mistaken for a whole one. Pure.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from campus_energy.core.answers import QUARTER_MS, ScopeHour

HOUR_MS = 3_600_000
KG = Decimal("0.001")
KWH = Decimal("0.001")


@dataclass(frozen=True)
class EmissionFactors:
    annual: tuple[tuple[date, Decimal], ...] = ()  # (valid from, kg/kWh), in date order
    hourly: Mapping[int, Decimal] = field(default_factory=dict)  # UTC hour start ms -> g/kWh

    def annual_on(self, day: date) -> Decimal | None:
        at = bisect.bisect_right([start for start, _ in self.annual], day)
        return self.annual[at - 1][1] if at else None


@dataclass(frozen=True)
class Footprint:
    kg: Decimal  # kg CO₂, rounded to 0.001
    kwh_hourly: Decimal  # energy that took an hourly factor
    kwh_annual: Decimal  # energy that fell back to the annual factor
    kwh_unknown: Decimal  # energy no factor covers (left out of kg)

    @property
    def fallback_share(self) -> float:
        """The share of the energy with a factor that fell back to the annual one."""
        known = self.kwh_hourly + self.kwh_annual
        return float(self.kwh_annual / known) if known else 0.0


def footprint(
    hours: Iterable[ScopeHour],
    zone: tzinfo,
    first_day: date,
    last_day: date,
    factors: EmissionFactors,
) -> Footprint:
    """The CO₂ of the energy of the local days first_day..last_day (inclusive).

    Energy is summed per factor first, then multiplied once in decimal."""
    by_hourly: dict[Decimal, float] = {}  # g/kWh -> Wh
    by_annual: dict[Decimal, float] = {}  # kg/kWh -> Wh
    wh_unknown = 0.0
    day: date | None = None
    annual: Decimal | None = None
    for hour in hours:
        local = datetime.fromtimestamp(hour.hour_ms / 1000, zone).date()
        if not first_day <= local <= last_day:
            continue
        if local != day:
            day, annual = local, factors.annual_on(local)
        if not factors.hourly:  # no hourly file: the whole hour takes the annual factor
            if annual is not None:
                by_annual[annual] = by_annual.get(annual, 0.0) + hour.energy_wh
            else:
                wh_unknown += hour.energy_wh
            continue
        for index, wh in enumerate(hour.quarters_wh):
            start = hour.hour_ms + index * QUARTER_MS
            hourly = factors.hourly.get(start - start % HOUR_MS)
            if hourly is not None:
                by_hourly[hourly] = by_hourly.get(hourly, 0.0) + wh
            elif annual is not None:
                by_annual[annual] = by_annual.get(annual, 0.0) + wh
            else:
                wh_unknown += wh
    grams = sum((Decimal(wh) / 1000 * g for g, wh in by_hourly.items()), Decimal(0))
    grams += sum((Decimal(wh) * kg for kg, wh in by_annual.items()), Decimal(0))
    return Footprint(
        kg=(grams / 1000).quantize(KG, ROUND_HALF_UP),
        kwh_hourly=_kwh(sum(by_hourly.values())),
        kwh_annual=_kwh(sum(by_annual.values())),
        kwh_unknown=_kwh(wh_unknown),
    )


def _kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(KWH, ROUND_HALF_UP)
