"""What a report says: per account (each building, the meters in no building) and for the
campus, the period's energy, cost, CO₂ and peak demand against the period before and the
same period a year before; energy after hours; each meter's coverage; the alerts.

Every figure comes from the window source the API reads, through the same machinery as
the bills (`accounts.statements`): a month's cost is the month's bill; a week's is the
cost of its days — energy lines and standing charges pro rata — without demand charges,
which are billed by the month (the week's peak is shown, not charged). The campus's
figures are the sums of its accounts', so no sub-meter is counted twice; its peak is
its own coincident peak.

Energy is what the bills count: measured import, plus the estimated import of gaps the
meters' registers bridged unless `billing.include_estimated` is false (the periods
compared with it likewise); the estimated part, the measured import alone, the
measured export and the net (measured import − export) are stated beside it. The
charts (daily energy, demand) are measured energy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.accounts.scopes import Scope, accounts, resolve
from campus_energy.accounts.statements import (
    DEFAULT_INTERVAL_MIN,
    HoursOf,
    PeaksOf,
    Statement,
    read_hours,
    statement,
)
from campus_energy.backends.base import WindowSource
from campus_energy.config import Config
from campus_energy.core.alerts import CAMPUS
from campus_energy.core.answers import ScopeHour
from campus_energy.core.billing import kwh
from campus_energy.core.days import local_date
from campus_energy.core.demand import KW, series
from campus_energy.core.tariffs import Tariff
from campus_energy.incidents.values import HistoryRow
from campus_energy.reports.periods import Period
from campus_energy.reports.usage import AfterHours, MeterCoverage, after_hours, coverage

PERCENT = Decimal("0.1")
UNASSIGNED_NAME = "(meters in no building)"
WEEK_NOTE = (
    "Demand charges are billed by the month: a week's cost holds its energy and its "
    "standing charges (pro rata), and its peak is shown but not charged."
)
MONTH_NOTE = "A month's cost is the month's bill: energy, standing and demand charges."


@dataclass(frozen=True)
class PeakAt:
    kw: Decimal  # to 0.001
    start_ms: int  # the interval's start
    interval_min: int


@dataclass(frozen=True)
class ScopeRow:
    """An account's figures (kind "building"; name '' for the meters in no building) or the
    campus's (kind "campus": the sums of the accounts')."""

    kind: str  # "building" | "campus"
    name: str
    basis: str
    energy_kwh: Decimal
    costs: Mapping[str, Decimal]  # currency -> cost of the period (empty: no tariff)
    unpriced_kwh: Decimal  # energy no tariff prices
    co2_kg: Decimal
    peak: PeakAt | None
    coverage: float
    previous_kwh: Decimal | None  # None: the store has no data for it
    last_year_kwh: Decimal | None
    daily_kwh: tuple[float, ...]  # per local day of the period (for the charts)
    measured_kwh: Decimal = Decimal("0.000")  # measured import
    estimated_kwh: Decimal = Decimal("0.000")  # estimated import, counted in energy_kwh or not
    estimated_counted: bool = True  # energy_kwh = measured_kwh + (estimated_kwh if counted)
    export_kwh: Decimal | None = None  # measured export (None: not read)

    @property
    def net_kwh(self) -> Decimal | None:
        """Measured import − measured export (None when the export is not known)."""
        return None if self.export_kwh is None else self.measured_kwh - self.export_kwh

    @property
    def title(self) -> str:
        if self.kind == "campus":
            return "Campus"
        return self.name or UNASSIGNED_NAME

    @property
    def previous_change(self) -> Decimal | None:
        return change(self.energy_kwh, self.previous_kwh)

    @property
    def last_year_change(self) -> Decimal | None:
        return change(self.energy_kwh, self.last_year_kwh)


def change(now: Decimal, before: Decimal | None) -> Decimal | None:
    """The change from `before` to `now` in %, to 0.1 (None without data or from 0)."""
    if before is None or before == 0:
        return None
    return ((now - before) / before * 100).quantize(PERCENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Report:
    site: str
    zone: str  # the site's IANA zone
    period: Period
    building: str | None  # None: the whole campus
    rows: tuple[ScopeRow, ...]  # the accounts, then the campus (without `building`)
    after_hours_buildings: tuple[AfterHours, ...]
    after_hours_meters: tuple[AfterHours, ...]  # the top 10
    coverage: tuple[MeterCoverage, ...]  # every meter, the least covered first
    alerts: tuple[HistoryRow, ...] | None  # None: no book of alerts
    previous_daily_kwh: tuple[float | None, ...]  # the headline's, per day of the period before
    profile: tuple[tuple[int, float], ...]  # the headline's demand (start ms, kW) on its peak day
    notes: tuple[str, ...]

    @property
    def headline(self) -> ScopeRow:
        """The row the charts show: the campus's, or the one building's."""
        return self.rows[-1]

    @property
    def low_coverage(self) -> tuple[MeterCoverage, ...]:
        return tuple(c for c in self.coverage if c.low)

    @property
    def slug(self) -> str:
        """'2026-11', '2026-W47-ECE': what files of it are named after."""
        if self.building is None:
            return self.period.text
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.building)
        return f"{self.period.text}-{safe or 'unassigned'}"


def estimated_note(row: ScopeRow) -> str:
    """What the energy figures make of the estimated energy."""
    if row.estimated_counted:
        return (
            f"Energy counts {row.estimated_kwh} kWh estimated from the meters' own registers "
            f"across gaps in the readings (measured {row.measured_kwh} kWh + estimated "
            f"{row.estimated_kwh} kWh), as the bills do; peaks are measured only."
        )
    return (
        f"{row.estimated_kwh} kWh estimated from the meters' own registers across gaps in the "
        "readings are not counted (billing.include_estimated = false)."
    )


def interval_of(tariff: Tariff | None, day: date) -> int:
    """The demand interval of the tariff in force on `day` (15 minutes without one)."""
    version = tariff.version_on(day) if tariff else None
    return version.demand.interval_min if version and version.demand else DEFAULT_INTERVAL_MIN


def remembered(hours_of: HoursOf) -> HoursOf:
    """`hours_of` asked each question once (the bills and the report read the same hours)."""
    known: dict[tuple[Any, ...], list[ScopeHour]] = {}

    def ask(start_ms: int, end_ms: int, terms: Mapping[str, float]) -> list[ScopeHour]:
        key = (start_ms, end_ms, tuple(sorted(terms.items())))
        if key not in known:
            known[key] = hours_of(start_ms, end_ms, terms)
        return known[key]

    return ask


def highest(
    hours: Sequence[ScopeHour], interval_min: int, terms: Mapping[str, float]
) -> PeakAt | None:
    """The highest demand among the hours' intervals that count; the earliest of equals."""
    best = None
    for point in series(hours, interval_min, terms):
        if point.counts and (best is None or point.kw > best.kw):
            best = point
    if best is None:
        return None
    return PeakAt(Decimal(best.kw).quantize(KW, ROUND_HALF_UP), best.start_ms, interval_min)


class _Reader:
    """A period's hours of scopes, and of the periods compared with it."""

    def __init__(
        self,
        config: Config,
        hours_of: HoursOf,
        period: Period,
        zone: ZoneInfo,
        source: WindowSource | None = None,
    ) -> None:
        self.config = config
        self.hours_of = hours_of
        self.period = period
        self.zone = zone  # the report's: its days and months
        self.source = source  # for the export (None: not read)

    def hours(self, terms: Mapping[str, float], period: Period) -> list[ScopeHour]:
        start, end = period.bounds_ms(self.zone)
        return self.hours_of(start, end, terms) if terms else []

    def energy(self, terms: Mapping[str, float], period: Period) -> Decimal | None:
        """The energy bills count: measured, plus estimated unless billing excludes it."""
        hours = self.hours(terms, period)
        counted = self.config.billing.include_estimated
        return (
            kwh(sum(h.energy_wh + (h.estimated_wh if counted else 0.0) for h in hours))
            if hours
            else None
        )

    def export(self, terms: Mapping[str, float], period: Period) -> Decimal | None:
        """The scope's measured export over the period (None: no source to read it from)."""
        if self.source is None or not terms:
            return None if self.source is None else kwh(0)
        ids = sorted(terms)
        if self.zone.key == self.config.site.zone.key:  # the store's days are the report's
            after = (period.last + timedelta(days=1)).isoformat()
            buckets = self.source.buckets("day", period.first.isoformat(), after, ids)
        else:  # another site's days: its hours, cut at its own midnights
            start, end = period.bounds_ms(self.zone)
            buckets = self.source.buckets("hour", start, end, ids)
        return kwh(sum(terms.get(b.meter_id, 0.0) * b.export_wh for b in buckets))

    def daily(self, hours: Sequence[ScopeHour], period: Period) -> tuple[float, ...]:
        """kWh per local day of `period` (0 for a day without data)."""
        return tuple(0.0 if v is None else v for v in self.known_daily(hours, period))

    def known_daily(self, hours: Sequence[ScopeHour], period: Period) -> tuple[float | None, ...]:
        """kWh per local day of `period`, None for a day without data."""
        zone = self.zone
        sums: dict[date, float | None] = dict.fromkeys(period.days)
        for hour in hours:
            day = local_date(hour.hour_ms, zone)
            if day in sums:
                sums[day] = (sums[day] or 0.0) + hour.energy_wh / 1000
        return tuple(sums.values())


def _cost(found: Statement, period: Period) -> dict[str, Decimal]:
    cost = found.cost
    if cost.total is None or cost.currency is None:
        return {}
    if period.kind == "month":
        return {cost.currency: cost.total}
    return {cost.currency: sum((x.amount for x in cost.lines if x.kind != "demand"), Decimal(0))}


def account_row(
    config: Config, reader: _Reader, scope: Scope, peaks_of: PeaksOf
) -> tuple[ScopeRow, list[ScopeHour]]:
    period, zone = reader.period, reader.zone
    hours = read_hours(config, reader.hours_of, scope, period.first, period.last, zone)
    found = statement(
        config,
        reader.hours_of,
        scope,
        period.first,
        period.last,
        hours,
        peaks_of=peaks_of,
        zone=zone,
    )
    start, end = period.bounds_ms(zone)
    mine = [h for h in hours if start <= h.hour_ms < end]
    row = ScopeRow(
        "building",
        scope.name or "",
        scope.basis,
        kwh(found.cost.energy_wh),
        _cost(found, period),
        found.cost.unpriced_kwh if found.cost.total is not None else kwh(found.cost.energy_wh),
        found.footprint.kg,
        highest(mine, found.interval_min, scope.terms),
        found.cost.coverage,
        reader.energy(scope.terms, period.previous()),
        reader.energy(scope.terms, period.year_before()),
        reader.daily(mine, period),
        kwh(found.cost.measured_wh),
        kwh(found.cost.estimated_wh),
        found.cost.estimated_counted,
        reader.export(scope.terms, period),
    )
    return row, mine


def _sum(values: Sequence[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None


def campus_row(
    config: Config, reader: _Reader, rows: Sequence[ScopeRow], site: str | None = None
) -> ScopeRow:
    """The sums of the accounts' rows, and the campus's own coincident peak and coverage
    (with `site`: that site's)."""
    period = reader.period
    scope = resolve(config, "campus", None, site)
    hours = reader.hours(scope.terms, period)
    costs: dict[str, Decimal] = {}
    for row in rows:
        for currency, amount in row.costs.items():
            costs[currency] = costs.get(currency, Decimal(0)) + amount
    start, end = period.bounds_ms(reader.zone)
    complete = sum(h.min_covered_s for h in hours if h.members >= len(scope.terms))
    return ScopeRow(
        "campus",
        "",
        scope.basis,
        sum((r.energy_kwh for r in rows), Decimal(0)),
        costs,
        sum((r.unpriced_kwh for r in rows), Decimal(0)),
        sum((r.co2_kg for r in rows), Decimal(0)),
        highest(hours, interval_of(scope.tariff, period.last), scope.terms),
        complete / ((end - start) / 1000),
        _sum([r.previous_kwh for r in rows]),
        _sum([r.last_year_kwh for r in rows]),
        tuple(sum(day) for day in zip(*(r.daily_kwh for r in rows), strict=True)),
        sum((r.measured_kwh for r in rows), Decimal(0)),
        sum((r.estimated_kwh for r in rows), Decimal(0)),
        config.billing.include_estimated,
        None
        if any(r.export_kwh is None for r in rows)
        else sum((r.export_kwh or Decimal(0) for r in rows), Decimal(0)),
    )


def _profile(
    zone: ZoneInfo, hours: Sequence[ScopeHour], peak: PeakAt | None, terms: Mapping[str, float]
) -> tuple[tuple[int, float], ...]:
    if peak is None:
        return ()
    day = local_date(peak.start_ms, zone)
    those = [h for h in hours if local_date(h.hour_ms, zone) == day]
    return tuple((p.start_ms, p.kw) for p in series(those, peak.interval_min, terms))


def build_report(
    config: Config,
    source: WindowSource,
    period: Period,
    building: str | None = None,
    *,
    alerts: Sequence[HistoryRow] | None = None,
    site: str | None = None,
) -> Report:
    """The report of `period` for the campus (or one building: '' the meters in no building).
    `alerts`: the transitions of the period from the book of alerts (None: there is no book).
    `site`: that site's accounts and campus, in its own time zone (a building's report: its
    site's zone; the estate's: site.timezone's).
    Raises UnknownScope for an unknown building, SourceError when the store fails."""
    hours_of = remembered(source.scope_hours)
    scopes = (
        accounts(config, site)
        if building is None
        else [resolve(config, "building", building, site)]
    )
    zone = config.report_zone(site, building)
    reader = _Reader(config, hours_of, period, zone, source)
    rows: list[ScopeRow] = []
    headline_hours: list[ScopeHour] = []
    for scope in scopes:
        row, headline_hours = account_row(config, reader, scope, source.scope_peaks)
        rows.append(row)
    headline_terms = scopes[0].terms
    if building is None:
        campus = campus_row(config, reader, rows, site)
        rows.append(campus)
        headline_terms = resolve(config, "campus", None, site).terms
        headline_hours = reader.hours(headline_terms, period)
    headline = rows[-1]
    previous = period.previous()
    previous_daily = reader.known_daily(reader.hours(headline_terms, previous), previous)
    buildings, meters = after_hours(config, hours_of, scopes, period, zone)
    wanted = _alerts_of(config, alerts, building, site)
    notes: tuple[str, ...] = (WEEK_NOTE if period.kind == "week" else MONTH_NOTE,)
    if headline.estimated_kwh:
        notes += (estimated_note(headline),)
    return Report(
        site=config.site_name(site) if site is not None else config.site.name,
        zone=zone.key,
        period=period,
        building=building,
        rows=tuple(rows),
        after_hours_buildings=tuple(buildings),
        after_hours_meters=tuple(meters),
        coverage=tuple(coverage(config, source, period, building, zone, site)),
        alerts=wanted,
        previous_daily_kwh=previous_daily,
        profile=_profile(zone, headline_hours, headline.peak, headline_terms),
        notes=notes,
    )


def _alerts_of(
    config: Config,
    alerts: Sequence[HistoryRow] | None,
    building: str | None,
    site: str | None = None,
) -> tuple[HistoryRow, ...] | None:
    """The transitions in time order; for a site's report those of that site alone; for one
    building's report, those of its campus (of an estate: of its site), the building and
    its meters."""
    if alerts is None:
        return None
    ordered = sorted(alerts, key=lambda r: (r.at_ms, r.rule, r.subject))
    several = len(config.site_ids) > 1
    if site is not None and several:
        ordered = [r for r in ordered if config.site_has_alert(site, r.scope, r.subject)]
    if building is None:
        return tuple(ordered)
    meters = {m.id for m in config.campus.meters if m.building == building}
    meters |= {v.id for v in config.campus.virtual_meters if v.building == building}
    home = config.sites_of_name(building)

    def of_its_campus(r: HistoryRow) -> bool:
        if r.scope != CAMPUS:
            return False
        return not several or (
            len(home) == 1 and config.site_has_alert(next(iter(home)), r.scope, r.subject)
        )

    mine: Callable[[HistoryRow], bool] = lambda r: (  # noqa: E731
        of_its_campus(r)
        or r.scope == f"building:{building}"
        or r.scope.removeprefix("meter:") in meters
        or r.subject in meters
    )
    return tuple(r for r in ordered if mine(r))
