"""Costs, monthly bills, demand and CO₂ of scopes, from their quarter-hour energies.

A building (and the meters in no building) is an account: its bill carries energy,
standing and demand charges on its tariff. Energy billed is measured import plus, unless
`billing.include_estimated` is false, the estimated import of gaps the meters' registers
bridged, on lines of its own; exported energy is stated, not priced (no feed-in tariff);
the meter events of the month (a register replaced, reset, rolled over) are listed where
the logger's store can be read. A meter or a virtual meter is priced
at its building's energy rates only: standing and demand charges belong to the
account. The campus bill is the sum of the accounts' bills — every kWh is billed
once, on the account whose total holds it — and states the campus's own
coincident peak beside them.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.accounts.scopes import (
    UNASSIGNED,
    Scope,
    accounts,
    meter_site,
    resolve,
    zone_of,
)
from campus_energy.config import Config
from campus_energy.core.answers import ScopeHour, ScopePeak
from campus_energy.core.billing import Cost, cost, history_start, kwh, money
from campus_energy.core.days import local_date, midnight_ms
from campus_energy.core.demand import (
    DemandPoint,
    Month,
    Peak,
    month_after,
    month_bounds,
    peak,
    peaks_of_hours,
    previous_months,
    ratchet_floor,
    series,
)
from campus_energy.core.emissions import Footprint, footprint
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.tariffs import Tariff

# (start_ms, end_ms, terms) -> the scope's hours: a window source's `scope_hours`
HoursOf = Callable[[int, int, Mapping[str, float]], list[ScopeHour]]
# (bounds, terms, interval_min, min_members) -> each range's peak: a window source's `scope_peaks`
PeaksOf = Callable[[Sequence[int], Mapping[str, float], int, int], list[ScopePeak]]
# (first local day, last local day, meter ids) -> each meter's energy (Wh) over those days
EnergyOf = Callable[[date, date, Collection[str]], Mapping[str, float]]
DEFAULT_INTERVAL_MIN = 15


@dataclass(frozen=True)
class Flows:
    """A meter's energy over a range, by direction and kind (Wh)."""

    import_wh: float = 0.0  # measured
    export_wh: float = 0.0  # measured
    estimated_wh: float = 0.0  # estimated import
    estimated_export_wh: float = 0.0


# (first local day, last local day, meter ids) -> each meter's Flows over those days
FlowsOf = Callable[[date, date, Collection[str]], Mapping[str, Flows]]
# (start_ms, end_ms, meter ids) -> their meter events in [start, end), None: no record to read
EventsOf = Callable[[int, int, Collection[str]], Sequence[MeterEvent] | None]


def energy_only(tariff: Tariff | None) -> Tariff | None:
    """The tariff's energy rates alone: what a meter's or virtual meter's energy costs."""
    if tariff is None:
        return None
    versions = tuple(
        replace(v, standing_per_day=Decimal(0), standing_per_month=Decimal(0), demand=None)
        for v in tariff.versions
    )
    return replace(tariff, versions=versions)


def month_days(month: Month) -> tuple[date, date]:
    return date(month[0], month[1], 1), date(month[0], month[1], calendar.monthrange(*month)[1])


def parse_month(text: str) -> Month:
    """'YYYY-MM' (2000..2099). Raises ValueError."""
    parts = text.split("-")
    if len(parts) != 2 or len(parts[0]) != 4 or len(parts[1]) != 2 or not text.isascii():
        raise ValueError(f"must be a month YYYY-MM, got {text[:40]!r}")
    if not (parts[0].isdigit() and parts[1].isdigit()):
        raise ValueError(f"must be a month YYYY-MM, got {text[:40]!r}")
    year, number = int(parts[0]), int(parts[1])
    if not 2000 <= year <= 2099 or not 1 <= number <= 12:
        raise ValueError(f"must be a month between 2000-01 and 2099-12, got {text[:40]!r}")
    return year, number


@dataclass(frozen=True)
class Statement:
    """A scope's cost, CO₂ and peaks over local days."""

    scope: Scope
    cost: Cost
    footprint: Footprint
    interval_min: int  # the demand interval of the peaks
    peaks: Mapping[Month, Peak]  # every month of the hours read (from the ratchet's start)
    zone: ZoneInfo | None = None  # the zone its days were cut in (its site's)


def _interval(tariff: Tariff | None, day: date) -> int:
    version = tariff.version_on(day) if tariff else None
    return version.demand.interval_min if version and version.demand else DEFAULT_INTERVAL_MIN


def read_hours(
    config: Config,
    hours_of: HoursOf,
    scope: Scope,
    first: date,
    last: date,
    zone: ZoneInfo | None = None,
) -> list[ScopeHour]:
    """What a statement of first..last reads hour by hour: from the start of first's month
    (a demand charge bills the month's peak) to the end of `last`. `zone`: whose days
    (default: the scope's site's)."""
    zone = zone or zone_of(config, scope)
    start_ms = midnight_ms(_month_start(first), zone)
    end_ms = midnight_ms(last + timedelta(days=1), zone)
    return hours_of(start_ms, end_ms, scope.terms) if scope.terms else []


def _intervals(tariff: Tariff | None, shown: int) -> set[int]:
    found = {v.demand.interval_min for v in (tariff.versions if tariff else ()) if v.demand}
    return found | {shown}


def earlier_peaks(
    config: Config,
    hours_of: HoursOf,
    peaks_of: PeaksOf | None,
    scope: Scope,
    first: date,
    before: date,
    intervals: set[int],
    zone: ZoneInfo | None = None,
) -> dict[int, dict[Month, Peak]]:
    """Per demand interval, the peaks of the months from `first`'s to the one before
    `before`'s: computed in the store when it can (`peaks_of`: one query per interval),
    else from the hours."""
    zone = zone or zone_of(config, scope)
    months: list[Month] = []
    month = (first.year, first.month)
    while month < (before.year, before.month):
        months.append(month)
        month = month_after(month)
    if not months or not scope.terms:
        return {i: {} for i in intervals}
    bounds = month_bounds(months[0], months[-1], zone)
    if peaks_of is None or any(w < 0 for w in scope.terms.values()):
        # a scope with a negative term needs each hour's coverage (`core.demand.counts`)
        hours = hours_of(bounds[0], bounds[-1], scope.terms)
        return {i: peaks_of_hours(hours, i, scope.terms, zone) for i in intervals}
    found: dict[int, dict[Month, Peak]] = {}
    for interval in intervals:
        found[interval] = {
            months[p.index]: peak(months[p.index], p.energy_wh, p.start_ms, interval)
            for p in peaks_of(bounds, scope.terms, interval, 1)
        }
    return found


def statement(
    config: Config,
    hours_of: HoursOf,
    scope: Scope,
    first: date,
    last: date,
    hours: Sequence[ScopeHour] | None = None,
    *,
    peaks_of: PeaksOf | None = None,
    zone: ZoneInfo | None = None,
) -> Statement:
    """`hours`: read_hours of first..last or of a longer range from the same month start
    (read once for several statements); None: read here. `peaks_of`: the store's
    `scope_peaks`, for the months before (the ratchet's, last month's peak). `zone`: whose
    local days and months (default: the scope's site's)."""
    zone = zone or zone_of(config, scope)
    tariff = scope.tariff if scope.is_account else energy_only(scope.tariff)
    if hours is None:
        hours = read_hours(config, hours_of, scope, first, last, zone)
    end_ms = midnight_ms(last + timedelta(days=1), zone)
    interval = _interval(scope.tariff, last)
    month_start = _month_start(first)
    since = min(history_start(first, scope.tariff), _month_start(month_start - timedelta(days=1)))
    intervals = _intervals(scope.tariff, interval)
    earlier = earlier_peaks(config, hours_of, peaks_of, scope, since, month_start, intervals, zone)
    priced = cost(
        hours,
        scope.terms,
        zone,
        first,
        last,
        tariff,
        earlier,
        include_estimated=config.billing.include_estimated,
    )
    # the months' peaks: those the demand charges measured, else measured here
    charged = {d.month: d.peak for d in priced.demand if d.interval_min == interval}
    if set(charged) >= set(months_of(first, last)):
        measured = {m: p for m, p in charged.items() if p is not None}
    else:
        measured = peaks_of_hours(hours, interval, scope.terms, zone, end_ms)
    return Statement(
        scope,
        priced,
        footprint(hours, zone, first, last, config.emission_factors),
        interval,
        {**earlier[interval], **measured},
        zone,
    )


def months_of(first: date, last: date) -> list[Month]:
    """The local months first..last touch, in order."""
    found: list[Month] = []
    month = (first.year, first.month)
    while month <= (last.year, last.month):
        found.append(month)
        month = month_after(month)
    return found


def campus_peaks(
    config: Config,
    hours_of: HoursOf,
    month: Month,
    *,
    peaks_of: PeaksOf | None = None,
    site: str | None = None,
) -> tuple[int, dict[Month, Peak]]:
    """The campus's coincident peak of `month` and of the month before, and their interval:
    what a campus bill shows beside the accounts' (no charge, so no ratchet to read).
    With `site`, that site's campus, in its time zone."""
    scope = resolve(config, "campus", None, site)
    zone = zone_of(config, scope)
    first, last = month_days(month)
    interval = _interval(scope.tariff, last)
    hours = read_hours(config, hours_of, scope, first, last)
    before = month_days(previous_months(month, 1)[0])[0]
    earlier = earlier_peaks(config, hours_of, peaks_of, scope, before, first, {interval})
    return interval, {**earlier[interval], **peaks_of_hours(hours, interval, scope.terms, zone)}


def _month_start(day: date) -> date:
    return day.replace(day=1)


@dataclass(frozen=True)
class MeterUse:
    """One meter's or virtual meter's energy on a building's bill."""

    id: str
    kind: str  # "main" | "sub-meter" | "top-level" | "virtual"
    energy_kwh: Decimal  # measured import
    share: float | None  # of the account's measured import
    estimated_kwh: Decimal = Decimal("0.000")  # estimated import
    export_kwh: Decimal = Decimal("0.000")  # measured export
    estimated_export_kwh: Decimal = Decimal("0.000")


@dataclass(frozen=True)
class Bill:
    month: Month
    statement: Statement
    meters: tuple[MeterUse, ...]
    kwh_per_m2: Decimal | None
    previous_peak: Peak | None  # last month's, for comparison
    export_kwh: Decimal | None = None  # measured export of the account (None: not read)
    events: tuple[MeterEvent, ...] | None = None  # its meters' events (None: no record read)
    estimated_export_kwh: Decimal | None = None  # estimated export (None: not read)

    @property
    def scope(self) -> Scope:
        return self.statement.scope

    @property
    def cost(self) -> Cost:
        return self.statement.cost

    @property
    def peak(self) -> Peak | None:
        return self.statement.peaks.get(self.month)


@dataclass(frozen=True)
class CampusBill:
    month: Month
    bills: tuple[Bill, ...]  # the accounts': buildings, then the meters in no building
    totals: Mapping[str, Decimal]  # per currency, the sum of the bills' totals
    energy_kwh: Decimal  # the sum of the bills' energy
    co2_kg: Decimal
    campus_peak: Peak | None  # the campus's coincident peak (not a charge)
    campus_previous_peak: Peak | None
    interval_min: int
    unpriced_kwh: Decimal  # energy of accounts without a tariff
    estimated_kwh: Decimal = Decimal("0.000")  # the bills' estimated import, counted or not
    export_kwh: Decimal | None = None  # the bills' measured export (None: not read)
    estimated_export_kwh: Decimal | None = None


def _meter_uses(
    config: Config,
    scope: Scope,
    first: date,
    last: date,
    energy_of: EnergyOf,
    hours_of: HoursOf,
    flows_of: FlowsOf | None = None,
) -> tuple[tuple[MeterUse, ...], tuple[Decimal, Decimal] | None]:
    """Each meter's and virtual meter's energy on the account's bill, and the account's
    measured and estimated export (None: `flows_of` not given, or another site's days)."""
    campus = config.campus
    building = scope.building or UNASSIGNED
    meters = [m for m in campus.meters if m.building == building]
    if scope.site is not None:
        meters = [m for m in meters if meter_site(config, m.id) == scope.site]
    virtual = [v for v in campus.virtual_meters if v.building == building and building]
    wanted = {m.id for m in meters} | {m for v in virtual for m in campus.terms(v.id)}
    zone = zone_of(config, scope)
    flows: Mapping[str, Flows] | None = None
    if not wanted:
        flows = {} if flows_of is not None else None
        energy: Mapping[str, float] = {}
    elif zone.key == config.site.zone.key:  # the store's days are the scope's
        if flows_of is not None:
            flows = flows_of(first, last, sorted(wanted))
            energy = {m: f.import_wh for m, f in flows.items()}
        else:
            energy = energy_of(first, last, sorted(wanted))
    else:  # another site's days: from its meters' hours, cut at its own midnights
        start, end = midnight_ms(first, zone), midnight_ms(last + timedelta(days=1), zone)
        energy = {
            m: sum(sum(h.quarters_wh) for h in hours_of(start, end, {m: 1.0}))
            for m in sorted(wanted)
        }
    total_wh = sum(energy.get(m, 0.0) * w for m, w in scope.terms.items())
    none = Flows()

    def flow(terms: Mapping[str, float]) -> Flows:
        known = flows or {}
        return Flows(
            sum(energy.get(m, 0.0) * w for m, w in terms.items()),
            sum(known.get(m, none).export_wh * w for m, w in terms.items()),
            sum(known.get(m, none).estimated_wh * w for m, w in terms.items()),
            sum(known.get(m, none).estimated_export_wh * w for m, w in terms.items()),
        )

    def use(ident: str, kind: str, found: Flows) -> MeterUse:
        wh = found.import_wh
        share = wh / total_wh if total_wh else None
        return MeterUse(
            ident,
            kind,
            kwh(wh),
            share,
            kwh(found.estimated_wh),
            kwh(found.export_wh),
            kwh(found.estimated_export_wh),
        )

    uses = []
    for meter in meters:
        kind = "main" if meter.role == "main" else "sub-meter" if meter.parent else "top-level"
        uses.append(use(meter.id, kind, flow({meter.id: 1.0})))
    for v in virtual:
        uses.append(use(v.id, "virtual", flow(campus.terms(v.id))))
    if flows is None:
        return tuple(uses), None
    account = flow(scope.terms)
    return tuple(uses), (kwh(account.export_wh), kwh(account.estimated_export_wh))


def _events(
    config: Config, scope: Scope, month: Month, events_of: EventsOf | None
) -> tuple[MeterEvent, ...] | None:
    """The events of the month of the account's meters (its building's, and its terms')."""
    if events_of is None:
        return None
    building = scope.building or UNASSIGNED
    meters = {m.id for m in config.campus.meters if m.building == building} | set(scope.terms)
    zone = zone_of(config, scope)
    first, last = month_days(month)
    start, end = midnight_ms(first, zone), midnight_ms(last + timedelta(days=1), zone)
    found = events_of(start, end, sorted(meters)) if meters else ()
    if found is None:
        return None
    return tuple(sorted(found, key=lambda e: (e.ts_ms, e.meter_id)))


def bill(
    config: Config,
    hours_of: HoursOf,
    energy_of: EnergyOf,
    scope: Scope,
    month: Month,
    *,
    peaks_of: PeaksOf | None = None,
    flows_of: FlowsOf | None = None,
    events_of: EventsOf | None = None,
) -> Bill:
    """An account's bill for a local calendar month. `flows_of`: each meter's energy by
    direction (the bill then states the export); `events_of`: the meter events on record."""
    first, last = month_days(month)
    found = statement(config, hours_of, scope, first, last, peaks_of=peaks_of)
    area = scope.floor_area_m2
    per_m2 = (
        (Decimal(found.cost.energy_wh) / 1000 / Decimal(area)).quantize(Decimal("0.001"))
        if area
        else None
    )
    previous = found.peaks.get(previous_months(month, 1)[0])
    uses, export = _meter_uses(config, scope, first, last, energy_of, hours_of, flows_of)
    events = _events(config, scope, month, events_of)
    return Bill(
        month,
        found,
        uses,
        per_m2,
        previous,
        export[0] if export else None,
        events,
        export[1] if export else None,
    )


def campus_bill(
    config: Config,
    hours_of: HoursOf,
    energy_of: EnergyOf,
    month: Month,
    building: str | None = None,
    *,
    peaks_of: PeaksOf | None = None,
    site: str | None = None,
    flows_of: FlowsOf | None = None,
    events_of: EventsOf | None = None,
) -> CampusBill:
    """Every account's bill for the month (or only `building`'s) and their sums; with
    `site`, that site's accounts and its campus peak. Each account's month is its site's
    local month. `flows_of`, `events_of`: as for `bill`."""
    scopes = (
        accounts(config, site)
        if building is None
        else [resolve(config, "building", building, site)]
    )
    first, last = month_days(month)
    every = sorted(m.id for m in config.campus.meters)
    month_energy = dict(energy_of(first, last, every)) if every else {}

    def energy_once(since: date, until: date, meters: Collection[str]) -> Mapping[str, float]:
        """Each meter's month, read once for every account's bill."""
        if (since, until) != (first, last):
            return energy_of(since, until, meters)
        return {m: month_energy[m] for m in meters if m in month_energy}

    flows_once: FlowsOf | None = None
    if flows_of is not None:
        month_flows = dict(flows_of(first, last, every)) if every else {}
        reader = flows_of

        def read_flows(since: date, until: date, meters: Collection[str]) -> Mapping[str, Flows]:
            if (since, until) != (first, last):
                return reader(since, until, meters)
            return {m: month_flows[m] for m in meters if m in month_flows}

        flows_once = read_flows
    bills = tuple(
        bill(
            config,
            hours_of,
            energy_once,
            s,
            month,
            peaks_of=peaks_of,
            flows_of=flows_once,
            events_of=events_of,
        )
        for s in scopes
    )
    totals: dict[str, Decimal] = {}
    unpriced = Decimal(0)
    for one in bills:
        if one.cost.total is not None and one.cost.currency is not None:
            totals[one.cost.currency] = totals.get(one.cost.currency, Decimal(0)) + one.cost.total
        else:
            unpriced += kwh(one.cost.energy_wh)
    interval, peaks = campus_peaks(config, hours_of, month, peaks_of=peaks_of, site=site)
    return CampusBill(
        month,
        bills,
        totals,
        sum((kwh(b.cost.energy_wh) for b in bills), Decimal(0)),
        sum((b.statement.footprint.kg for b in bills), Decimal(0)),
        peaks.get(month),
        peaks.get(previous_months(month, 1)[0]),
        interval,
        unpriced,
        sum((kwh(b.cost.estimated_wh) for b in bills), Decimal(0)),
        _total([b.export_kwh for b in bills]),
        _total([b.estimated_export_kwh for b in bills]),
    )


def _total(values: Sequence[Decimal | None]) -> Decimal | None:
    """The sum, None when any is unknown."""
    if any(v is None for v in values):
        return None
    return sum((v or Decimal(0) for v in values), Decimal(0))


@dataclass(frozen=True)
class Projection:
    """A month so far: its cost to date, and the month's total if energy goes on as so far."""

    to_date: Statement
    elapsed_share: float  # of the month's duration
    projected_total: Decimal | None
    ratchet_floor_kw: Decimal | None
    demand_billed_kw: Decimal | None


def month_to_date(
    config: Config,
    hours_of: HoursOf,
    scope: Scope,
    now_ms: int,
    *,
    peaks_of: PeaksOf | None = None,
    zone: ZoneInfo | None = None,
) -> Projection:
    """Energy charges projected linearly over the rest of the month; standing and demand
    charges of the whole month at today's billed demand. `zone`: whose today and month
    (default: the scope's site's)."""
    zone = zone or zone_of(config, scope)
    today = local_date(now_ms, zone)
    first, last = month_days((today.year, today.month))
    hours = read_hours(config, hours_of, scope, first, last, zone)
    peaks_of = None if peaks_of is None else _once(peaks_of)  # both statements read the same
    so_far = statement(config, hours_of, scope, first, today, hours, peaks_of=peaks_of, zone=zone)
    start_ms = midnight_ms(first, zone)
    end_ms = midnight_ms(last + timedelta(days=1), zone)
    elapsed = min(1.0, max(0.0, (now_ms - start_ms) / (end_ms - start_ms)))
    whole = statement(
        config, hours_of, scope, first, last, hours, peaks_of=peaks_of, zone=zone
    )  # standing, demand: all month
    projected = None
    tariff = scope.tariff if scope.is_account else energy_only(scope.tariff)
    if whole.cost.total is not None and tariff is not None:
        energy = sum((x.amount for x in whole.cost.lines if x.kind == "energy"), Decimal(0))
        rest = energy * Decimal((1 - elapsed) / elapsed) if elapsed > 0 else Decimal(0)
        projected = money(whole.cost.total + rest, tariff.decimals)
    demand = whole.cost.demand[-1] if whole.cost.demand else None
    return Projection(
        so_far,
        elapsed,
        projected,
        demand.ratchet_floor_kw if demand else None,
        demand.billed_kw if demand else None,
    )


def _once(peaks_of: PeaksOf) -> PeaksOf:
    """`peaks_of` asked each question once."""
    known: dict[tuple[Any, ...], list[ScopePeak]] = {}

    def ask(
        bounds: Sequence[int], terms: Mapping[str, float], interval: int, members: int
    ) -> list[ScopePeak]:
        key = (tuple(bounds), tuple(sorted(terms.items())), interval, members)
        if key not in known:
            known[key] = peaks_of(bounds, terms, interval, members)
        return known[key]

    return ask


@dataclass(frozen=True)
class DemandAnswer:
    scope: Scope
    interval_min: int
    points: Sequence[DemandPoint]
    peaks: Sequence[Peak]  # per month of the range
    ratchet_floors: Mapping[Month, Decimal]  # per month of the range, where the tariff has one


def demand(
    config: Config,
    hours_of: HoursOf,
    scope: Scope,
    first: date,
    last: date,
    interval_min: int | None = None,
    *,
    peaks_of: PeaksOf | None = None,
    zone: ZoneInfo | None = None,
) -> DemandAnswer:
    """The demand series of local days first..last and each month's peak (whole months'
    peaks over the month, also past the range's ends) and ratchet floor. `zone`: whose
    days (default: the scope's site's)."""
    zone = zone or zone_of(config, scope)
    interval = interval_min or _interval(scope.tariff, last)
    months: list[Month] = []
    month = (first.year, first.month)
    while month <= (last.year, last.month):
        months.append(month)
        month = month_after(month)
    start = month_days(months[0])[0]
    end_ms = midnight_ms(month_days(months[-1])[1] + timedelta(days=1), zone)
    hours = hours_of(midnight_ms(start, zone), end_ms, scope.terms) if scope.terms else []
    points = series(hours, interval, scope.terms)
    intervals = _intervals(scope.tariff, interval)
    earlier = earlier_peaks(
        config,
        hours_of,
        peaks_of,
        scope,
        history_start(first, scope.tariff),
        start,
        intervals,
        zone,
    )
    peaks = {i: {**earlier[i], **peaks_of_hours(hours, i, scope.terms, zone)} for i in intervals}
    lo, hi = midnight_ms(first, zone), midnight_ms(last + timedelta(days=1), zone)
    floors: dict[Month, Decimal] = {}
    for month in months:
        version = scope.tariff.version_on(month_days(month)[1]) if scope.tariff else None
        if version is not None and version.demand is not None and scope.is_account:
            ratchet = version.demand.ratchet
            charged = peaks[version.demand.interval_min]  # the floor: of the peaks billed
            floors[month] = max(
                ratchet_floor(charged, month, ratchet.share, ratchet.months), ratchet.minimum_kw
            )
    return DemandAnswer(
        scope,
        interval,
        [p for p in points if lo <= p.start_ms < hi],
        [peaks[interval][m] for m in months if m in peaks[interval]],
        floors,
    )
