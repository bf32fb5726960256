"""What a scope's energy costs over local days: line items a finance office can check by hand.

Energy is priced quarter hour by quarter hour at the rate of the tariff version in
force on its local day (a new version never re-prices the past) and of the
time-of-use period holding it; standing charges come per local day, and monthly
ones pro rata by the days of the month in the range; a demand charge is the billing
month's billed demand — the month's highest demand (up to the range's last day),
raised to the ratchet floor and the minimum — times its price, pro rata by the days
of the month each version is in force.

Estimated energy (what the meters' own registers counted across a gap the logger could
not integrate, `ScopeHour.estimated_wh`) is billed by default, on lines of its own
("Energy, peak (estimated)"), priced like measured energy at the rates of the hour
it fell in, spread evenly over its four quarter hours (an estimate is an even spread
over its gap); `include_estimated=False` leaves it off the bill, still stated. It never
sets a demand peak: a demand is measured power, and an even spread over a gap is not
one. Nor does it raise coverage.

Rounding, once per line item: the quantity first (kWh and kW to 0.001, a count of
days or one month as it is), then amount = quantity × rate (× days / days of the
month for a part of a month), rounded half up to the currency's minor unit; the
total is the sum of the rounded amounts, so the lines always add up to it.
Pure: the zone and the windows' sums come in as arguments.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from campus_energy.core.answers import ScopeHour
from campus_energy.core.days import midnight_ms
from campus_energy.core.demand import (
    KW,
    Month,
    Peak,
    peaks_of_hours,
    previous_months,
    ratchet_floor,
)
from campus_energy.core.tariffs import Rate, Tariff, TariffVersion, day_kind

KWH = Decimal("0.001")


@dataclass(frozen=True)
class Line:
    """One line item: amount = quantity × rate × part (part: days / days of the month)."""

    kind: str  # "energy" | "standing" | "demand"
    description: str
    valid_from: date  # the tariff version priced by
    quantity: Decimal
    unit: str  # "kWh" | "day" | "month" | "kW"
    rate: Decimal
    amount: Decimal
    period: str | None = None  # energy: the time-of-use period
    days: int | None = None  # a part of a month: its days in the range ...
    month_days: int | None = None  # ... of this many
    estimated: bool = False  # energy: estimated (a gap bridged by the meters' registers)


@dataclass(frozen=True)
class MonthDemand:
    month: Month
    interval_min: int
    peak: Peak | None  # the month's highest demand up to the range's last day
    ratchet_floor_kw: Decimal
    minimum_kw: Decimal
    billed_kw: Decimal


@dataclass(frozen=True)
class Cost:
    first_day: date
    last_day: date
    tariff: str | None
    currency: str | None
    energy_wh: float  # billed: measured, plus estimated when counted; priced or not
    lines: tuple[Line, ...]
    total: Decimal | None  # None: no tariff
    unpriced_kwh: Decimal  # energy on days before the tariff's first version
    coverage: float  # covered share of the range (a member without data covers nothing)
    demand: tuple[MonthDemand, ...]
    estimated_wh: float = 0.0  # the estimated import of the range, counted or not
    estimated_counted: bool = True  # whether energy_wh (and the lines) count estimated_wh

    @property
    def measured_wh(self) -> float:
        """The measured import of the range (integrated from power)."""
        return self.energy_wh - self.billed_estimated_wh

    @property
    def billed_estimated_wh(self) -> float:
        """The part of energy_wh that is estimated (0 when estimates are not counted)."""
        return self.estimated_wh if self.estimated_counted else 0.0


def money(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)


def kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(KWH, ROUND_HALF_UP)


def days_of(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def history_start(first_day: date, tariff: Tariff | None) -> date:
    """The first local day whose energy `cost` needs for a range starting `first_day`: the
    start of the earliest month a ratchet of any version looks back to."""
    back = max(
        (v.demand.ratchet.months for v in (tariff.versions if tariff else ()) if v.demand),
        default=0,
    )
    months = previous_months((first_day.year, first_day.month), back)
    year, month = months[-1] if months else (first_day.year, first_day.month)
    return date(year, month, 1)


def cost(
    hours: Sequence[ScopeHour],
    terms: Mapping[str, float],
    zone: tzinfo,
    first_day: date,
    last_day: date,
    tariff: Tariff | None,
    earlier: Mapping[int, Mapping[Month, Peak]] | None = None,
    *,
    include_estimated: bool = True,
) -> Cost:
    """The cost of the scope (`terms`) over the local days first_day..last_day (inclusive).

    `hours` are the scope's hours from the start of first_day's month (a demand charge
    bills the month's peak) to the range's end, and may reach back to `history_start`:
    earlier months feed the ratchet, unless `earlier` gives their peaks (per demand
    interval, per month), as a store computes them (`scope_peaks`). Hours outside the
    range are used for nothing else. `include_estimated`: whether the hours' estimated
    energy is billed (it is stated either way)."""
    start_ms = midnight_ms(first_day, zone)
    end_ms = midnight_ms(last_day + timedelta(days=1), zone)
    in_range = [h for h in hours if start_ms <= h.hour_ms < end_ms]
    estimated_wh = sum(h.estimated_wh for h in in_range)
    energy_wh = sum(h.energy_wh for h in in_range) + (estimated_wh if include_estimated else 0.0)
    covered = sum(h.min_covered_s for h in in_range if h.members >= len(terms))
    coverage = covered / ((end_ms - start_ms) / 1000)
    if tariff is None:
        return Cost(
            first_day,
            last_day,
            None,
            None,
            energy_wh,
            (),
            None,
            kwh(0),
            coverage,
            (),
            estimated_wh,
            include_estimated,
        )
    energy_lines, unpriced_wh = _energy_lines(in_range, zone, tariff)
    if include_estimated and any(h.estimated_wh for h in in_range):
        estimated_lines, unpriced_estimate = _energy_lines(in_range, zone, tariff, estimated=True)
        energy_lines += estimated_lines
        unpriced_wh += unpriced_estimate
    demand_lines, demand = _demand(hours, terms, zone, first_day, last_day, end_ms, tariff, earlier)
    lines = (*energy_lines, *_standing_lines(first_day, last_day, tariff), *demand_lines)
    total = sum((line.amount for line in lines), Decimal(0))
    return Cost(
        first_day,
        last_day,
        tariff.id,
        tariff.currency,
        energy_wh,
        lines,
        money(total, tariff.decimals),
        kwh(unpriced_wh),
        coverage,
        demand,
        estimated_wh,
        include_estimated,
    )


def _energy_lines(
    hours: Sequence[ScopeHour], zone: tzinfo, tariff: Tariff, *, estimated: bool = False
) -> tuple[list[Line], float]:
    """The energy lines of the measured energy of `hours`, or of their estimated energy (a
    quarter of each hour's in each of its quarter hours), and the energy left unpriced."""
    # per (version, rate object) the energy; a day's rates come from the version's table
    sums: dict[tuple[date, int], float] = {}
    rates: dict[tuple[date, int], Rate] = {}
    unpriced = 0.0
    day: date | None = None
    version: TariffVersion | None = None
    table: tuple[Rate | None, ...] = ()
    for hour in hours:
        local = datetime.fromtimestamp(hour.hour_ms / 1000, zone)
        if local.date() != day:  # a day's version and rates, looked up once
            day = local.date()
            version = tariff.version_on(day)
            if version is not None:
                table = version.day_rates(day_kind(day, tariff.holidays), local.month)
        quarters = (hour.estimated_wh / 4,) * 4 if estimated else hour.quarters_wh
        if version is None:
            unpriced += sum(quarters)
            continue
        step = local.hour * 4 + local.minute // 15
        for index, wh in enumerate(quarters):
            found = table[step + index]
            if found is None:  # a gap with no default: configuration checks refuse it
                unpriced += wh
                continue
            key = (version.valid_from, id(found))
            rates[key] = found
            sums[key] = sums.get(key, 0.0) + wh
    order = {(v.valid_from, p.name): i for v in tariff.versions for i, p in enumerate(v.periods)}
    merged: dict[tuple[date, str, Decimal], float] = {}
    for key, wh in sums.items():
        rate_of = rates[key]
        named = (key[0], rate_of.period, rate_of.per_kwh)
        merged[named] = merged.get(named, 0.0) + wh
    lines = []
    for (valid_from, period, rate), wh in sorted(
        merged.items(), key=lambda item: (item[0][0], order.get(item[0][:2], 1_000), item[0][1])
    ):
        if estimated and not wh:
            continue  # no estimate at this rate: no line
        quantity = kwh(wh)
        lines.append(
            Line(
                "energy",
                f"Energy, {period} (estimated)" if estimated else f"Energy, {period}",
                valid_from,
                quantity,
                "kWh",
                rate,
                money(quantity * rate, tariff.decimals),
                period=period,
                estimated=estimated,
            )
        )
    return lines, unpriced


def _standing_lines(first_day: date, last_day: date, tariff: Tariff) -> list[Line]:
    per_day: dict[date, int] = {}
    per_month: dict[tuple[date, Month], int] = {}
    versions: dict[date, TariffVersion] = {}
    for day in days_of(first_day, last_day):
        version = tariff.version_on(day)
        if version is None:
            continue
        versions[version.valid_from] = version
        if version.standing_per_day:
            per_day[version.valid_from] = per_day.get(version.valid_from, 0) + 1
        if version.standing_per_month:
            key = (version.valid_from, (day.year, day.month))
            per_month[key] = per_month.get(key, 0) + 1
    lines = []
    for valid_from, count in sorted(per_day.items()):
        rate = versions[valid_from].standing_per_day
        lines.append(
            Line(
                "standing",
                "Standing charge per day",
                valid_from,
                Decimal(count),
                "day",
                rate,
                money(count * rate, tariff.decimals),
            )
        )
    for (valid_from, month), count in sorted(per_month.items()):
        rate = versions[valid_from].standing_per_month
        lines.append(
            _monthly(
                "standing",
                "Standing charge per month",
                valid_from,
                month,
                count,
                Decimal(1),
                "month",
                rate,
                tariff.decimals,
            )
        )
    return lines


def _monthly(
    kind: str,
    description: str,
    valid_from: date,
    month: Month,
    count: int,
    quantity: Decimal,
    unit: str,
    rate: Decimal,
    decimals: int,
) -> Line:
    """A monthly charge for `count` days of `month`: whole, or pro rata by days."""
    month_days = calendar.monthrange(*month)[1]
    whole = count == month_days
    label = f"{month[0]:04d}-{month[1]:02d}"
    return Line(
        kind,
        f"{description} ({label})"
        if whole
        else f"{description} ({label}, {count} of {month_days} days)",
        valid_from,
        quantity,
        unit,
        rate,
        money(quantity * rate * count / month_days, decimals),
        days=None if whole else count,
        month_days=None if whole else month_days,
    )


def _demand(
    hours: Sequence[ScopeHour],
    terms: Mapping[str, float],
    zone: tzinfo,
    first_day: date,
    last_day: date,
    end_ms: int,
    tariff: Tariff,
    earlier: Mapping[int, Mapping[Month, Peak]] | None,
) -> tuple[list[Line], tuple[MonthDemand, ...]]:
    # per month of the range: the days each version with a demand charge is in force
    spans: dict[Month, dict[date, int]] = {}
    for day in days_of(first_day, last_day):
        version = tariff.version_on(day)
        if version is not None and version.demand is not None:
            days = spans.setdefault((day.year, day.month), {})
            days[version.valid_from] = days.get(version.valid_from, 0) + 1
    if not spans:
        return [], ()
    by_date = {v.valid_from: v for v in tariff.versions}
    peaks_by_interval: dict[int, dict[Month, Peak]] = {}
    lines: list[Line] = []
    demands: list[MonthDemand] = []
    for month, counts in sorted(spans.items()):
        for valid_from, count in sorted(counts.items()):
            charge = by_date[valid_from].demand
            assert charge is not None
            peaks = peaks_by_interval.get(charge.interval_min)
            if peaks is None:
                measured = peaks_of_hours(hours, charge.interval_min, terms, zone, end_ms)
                before = (earlier or {}).get(charge.interval_min, {})
                peaks = peaks_by_interval[charge.interval_min] = {**before, **measured}
            peak = peaks.get(month)
            ratchet = charge.ratchet
            floor = ratchet_floor(peaks, month, ratchet.share, ratchet.months)
            minimum = ratchet.minimum_kw.quantize(KW, ROUND_HALF_UP)
            billed = max(peak.kw if peak else Decimal(0), floor, minimum)
            demands.append(MonthDemand(month, charge.interval_min, peak, floor, minimum, billed))
            lines.append(
                _monthly(
                    "demand",
                    f"Demand charge, {charge.interval_min}-minute peak",
                    valid_from,
                    month,
                    count,
                    billed,
                    "kW",
                    charge.price_per_kw,
                    tariff.decimals,
                )
            )
    return lines, tuple(demands)
