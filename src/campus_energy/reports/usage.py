"""Energy while buildings are closed, and how much of each meter's period the store covers.

After hours: each quarter hour of a meter's energy whose local start the building's
`Occupancy` says is closed (opening hours are on quarter hours, so a quarter is wholly
open or closed). A building's figure is its total's (main meter, else its top-level
meters), so a sub-meter is never counted twice.

Coverage: a meter's covered seconds over the period's seconds — the share of the
period's windows present times their coverage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from campus_energy.accounts.scopes import Scope, meter_site, zone_of
from campus_energy.accounts.statements import HoursOf
from campus_energy.backends.base import WindowSource
from campus_energy.config import Config
from campus_energy.core.answers import QUARTER_MS, ScopeHour
from campus_energy.core.billing import kwh
from campus_energy.core.campus import Occupancy
from campus_energy.core.timestamps import utc_datetime
from campus_energy.reports.periods import Period

SHARE = Decimal("0.0001")
LOW_COVERAGE = Decimal("0.95")
TOP = 10


def share(part_wh: float, whole_wh: float) -> Decimal | None:
    """part / whole to 0.0001 (None when the whole is 0)."""
    if not whole_wh:
        return None
    return (Decimal(part_wh) / Decimal(whole_wh)).quantize(SHARE, ROUND_HALF_UP)


@dataclass(frozen=True)
class AfterHours:
    """Energy while closed: a building's total (`meter` None) or one of its meters."""

    building: str
    meter: str | None
    kwh: Decimal  # while closed
    total_kwh: Decimal  # the whole period
    share: Decimal | None  # of the total

    @property
    def name(self) -> str:
        return self.meter or self.building


@dataclass(frozen=True)
class MeterCoverage:
    meter: str
    building: str
    coverage: Decimal  # 0..1, to 0.0001

    @property
    def low(self) -> bool:
        return self.coverage < LOW_COVERAGE


class _Closed:
    """Whether a quarter hour (UTC ms of its start) is closed, each asked of the zone once."""

    def __init__(self, occupancy: Occupancy, zone: tzinfo) -> None:
        self.occupancy = occupancy
        self.zone = zone
        self.known: dict[int, bool] = {}

    def __call__(self, quarter_ms: int) -> bool:
        found = self.known.get(quarter_ms)
        if found is None:
            local: datetime = utc_datetime(quarter_ms).astimezone(self.zone)
            found = self.known[quarter_ms] = not self.occupancy.is_open(local)
        return found


def _closed_wh(hours: Sequence[ScopeHour], closed: Callable[[int], bool]) -> float:
    return sum(
        wh
        for hour in hours
        for index, wh in enumerate(hour.quarters_wh)
        if closed(hour.hour_ms + index * QUARTER_MS)
    )


def after_hours(
    config: Config, hours_of: HoursOf, scopes: Sequence[Scope], period: Period, zone: ZoneInfo
) -> tuple[list[AfterHours], list[AfterHours]]:
    """(buildings, meters): every building of `scopes` with opening hours, and the meters of
    those buildings, each by its energy while closed, the most first (meters: the top 10).
    `zone`: the report's days; a building is closed by its own site's clock."""
    start, end = period.bounds_ms(zone)
    campus = config.campus
    buildings: list[AfterHours] = []
    meters: list[AfterHours] = []
    for scope in scopes:
        name = scope.building
        occupancy = campus.building(name).occupancy if name else None
        if name is None or occupancy is None:
            continue
        closed = _Closed(occupancy, zone_of(config, scope))
        per_meter: dict[str, tuple[float, float]] = {}
        for meter in (m.id for m in campus.meters if m.building == name):
            hours = hours_of(start, end, {meter: 1.0})
            per_meter[meter] = (_closed_wh(hours, closed), sum(h.energy_wh for h in hours))
            meters.append(_row(name, meter, *per_meter[meter]))
        night = sum(w * per_meter.get(m, (0.0, 0.0))[0] for m, w in scope.terms.items())
        whole = sum(w * per_meter.get(m, (0.0, 0.0))[1] for m, w in scope.terms.items())
        buildings.append(_row(name, None, night, whole))
    order = lambda row: (-row.kwh, row.name)  # noqa: E731
    return sorted(buildings, key=order), sorted(meters, key=order)[:TOP]


def _row(building: str, meter: str | None, closed_wh: float, total_wh: float) -> AfterHours:
    return AfterHours(building, meter, kwh(closed_wh), kwh(total_wh), share(closed_wh, total_wh))


def coverage(
    config: Config,
    source: WindowSource,
    period: Period,
    building: str | None,
    zone: ZoneInfo,
    site: str | None = None,
) -> list[MeterCoverage]:
    """Every meter's coverage of the period cut in `zone` (only `building`'s when one is
    named, only `site`'s when one is), the least covered first."""
    start, end = period.bounds_ms(zone)
    seconds = (end - start) / 1000
    meters = [
        m
        for m in config.campus.meters
        if (building is None or m.building == building)
        and (site is None or meter_site(config, m.id) == site)
    ]
    if not meters:
        return []
    ids = [m.id for m in meters]
    if zone.key == config.site.zone.key:  # the store's days are the report's
        after = (period.last + timedelta(days=1)).isoformat()
        buckets = source.buckets("day", period.first.isoformat(), after, ids)
    else:  # another site's days: its hours, cut at its own midnights
        buckets = source.buckets("hour", start, end, ids)
    covered: dict[str, float] = {}
    for bucket in buckets:
        covered[bucket.meter_id] = covered.get(bucket.meter_id, 0.0) + bucket.covered_s
    found = [
        MeterCoverage(
            m.id,
            m.building,
            min(
                Decimal(1), Decimal(covered.get(m.id, 0.0) / seconds).quantize(SHARE, ROUND_HALF_UP)
            ),
        )
        for m in meters
    ]
    return sorted(found, key=lambda c: (c.coverage, c.meter))
