"""What the API answers about money, from `accounts`: a scope's cost over local days, the
campus's (the sum of its accounts' statements), and the dashboard's cost overview.

The campus is billed as its accounts — each building, and the meters in no building —
so its cost is their sum, every kWh counted once on the account whose total holds it
(a sub-meter is inside its building's main meter, never added again). Money is summed
per currency; an answer names one `currency` and `total` only when every priced
account shares it, and always carries the per-currency `totals`.

No Flask: the scope's hours come through a `HoursOf` (a window source's `scope_hours`),
wrapped in a `HoursMemo` so that one request reads each scope's hours once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.accounts.documents import (
    footprint_document,
    kwh_of,
    month_text,
    peak_document,
    scope_document,
    statement_document,
)
from campus_energy.accounts.scopes import accounts, resolve
from campus_energy.accounts.statements import (
    HoursOf,
    PeaksOf,
    Projection,
    Statement,
    month_days,
    month_to_date,
    months_of,
    statement,
)
from campus_energy.config import Config
from campus_energy.core.answers import ScopeHour
from campus_energy.core.billing import Cost, kwh
from campus_energy.core.days import local_date, midnight_ms
from campus_energy.core.demand import Month, previous_months
from campus_energy.core.emissions import Footprint
from campus_energy.core.timestamps import iso_utc

KWH_PER_M2 = Decimal("0.001")


class HoursMemo:
    """A request's `HoursOf`: a read of the same start and terms that ends no later than one
    made already is answered from it (a day of a month, after the month)."""

    def __init__(self, hours_of: HoursOf) -> None:
        self._read = hours_of
        self._kept: dict[tuple[int, tuple[tuple[str, float], ...]], tuple[int, list[ScopeHour]]]
        self._kept = {}

    def __call__(self, start_ms: int, end_ms: int, terms: Mapping[str, float]) -> list[ScopeHour]:
        key = (start_ms, tuple(sorted(terms.items())))
        kept = self._kept.get(key)
        if kept is not None and end_ms <= kept[0]:
            return [h for h in kept[1] if h.hour_ms < end_ms]
        found = self._read(start_ms, end_ms, terms)
        self._kept[key] = (end_ms, found)
        return found


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def totals_of(priced: Iterable[tuple[str | None, Decimal | None]]) -> dict[str, Decimal]:
    """(currency, amount) pairs summed per currency; unpriced ones (None) left out."""
    found: dict[str, Decimal] = {}
    for currency, amount in priced:
        if currency is not None and amount is not None:
            found[currency] = found.get(currency, Decimal(0)) + amount
    return found


def money_answer(totals: Mapping[str, Decimal], name: str = "total") -> dict[str, Any]:
    """`currency` and `<name>` when one currency holds every amount (else null), and the
    per-currency `<name>s`."""
    one = next(iter(totals.items())) if len(totals) == 1 else None
    return {
        name: None if one is None else str(one[1]),
        f"{name}s": {c: str(v) for c, v in sorted(totals.items())},
    }


def currency_of(totals: Mapping[str, Decimal]) -> str | None:
    return next(iter(totals)) if len(totals) == 1 else None


def cost_answer(found: Statement, zone: ZoneInfo) -> dict[str, Any]:
    """`/api/cost` of a building, meter or virtual meter: its statement."""
    cost = found.cost
    return {
        **statement_document(found, zone),
        "timezone": zone.key,
        "totals": {c: str(v) for c, v in totals_of([(cost.currency, cost.total)]).items()},
    }


def _footprint_sum(found: Sequence[Footprint]) -> Footprint:
    return Footprint(
        sum((f.kg for f in found), Decimal(0)),
        sum((f.kwh_hourly for f in found), Decimal(0)),
        sum((f.kwh_annual for f in found), Decimal(0)),
        sum((f.kwh_unknown for f in found), Decimal(0)),
    )


def _unpriced_kwh(cost: Cost) -> Decimal:
    """Energy no tariff prices: all of it without a tariff, else the days before its start."""
    return cost.unpriced_kwh if cost.total is not None else kwh_of(cost)


def campus_cost_answer(
    config: Config,
    hours_of: HoursOf,
    first: date,
    last: date,
    peaks_of: PeaksOf | None = None,
) -> dict[str, Any]:
    """`/api/cost` of the campus: each account's statement (`accounts`) and their sums. Its
    `demand` holds the campus's coincident peak per month, which is no charge (each
    account's demand charge is in its statement); `coverage` is the campus's own."""
    zone = config.site.zone  # the view's: every account's days are cut here
    found = [
        statement(config, hours_of, s, first, last, peaks_of=peaks_of, zone=zone)
        for s in accounts(config)
    ]
    campus_scope = resolve(config, "campus", None)
    campus = statement(config, hours_of, campus_scope, first, last, peaks_of=peaks_of, zone=zone)
    totals = totals_of((s.cost.currency, s.cost.total) for s in found)
    demand = []
    for month in months_of(first, last):
        peak = campus.peaks.get(month)
        demand.append(
            {
                "month": month_text(month),
                "interval_min": campus.interval_min,
                "peak_kw": None if peak is None else str(peak.kw),
                "peak_start": None if peak is None else iso_utc(peak.start_ms),
                "ratchet_floor_kw": None,
                "minimum_kw": None,
                "billed_kw": None,
            }
        )
    return {
        "scope": scope_document(campus),
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "tariff": None,
        "currency": currency_of(totals),
        **money_answer(totals),
        "energy_kwh": str(sum((kwh_of(s.cost) for s in found), Decimal(0))),
        # energy_kwh = measured_kwh + (estimated_kwh when estimated_counted), as each account's
        "measured_kwh": str(sum((kwh(s.cost.measured_wh) for s in found), Decimal(0))),
        "estimated_kwh": str(sum((kwh(s.cost.estimated_wh) for s in found), Decimal(0))),
        "estimated_counted": config.billing.include_estimated,
        "coverage": round(campus.cost.coverage, 6),
        "unpriced_kwh": str(sum((_unpriced_kwh(s.cost) for s in found), Decimal(0))),
        "demand": demand,
        "emissions": footprint_document(_footprint_sum([s.footprint for s in found])),
        "demand_interval_min": campus.interval_min,
        "timezone": zone.key,
        "accounts": [statement_document(s, zone) for s in found],
    }


def overview_answer(
    config: Config, hours_of: HoursOf, now_ms: int, peaks_of: PeaksOf | None = None
) -> dict[str, Any]:
    """`/api/cost/overview`: today and this month so far (with the month's projection), the
    campus's coincident peak, and each account's month — what the dashboard's cost cards
    show. Campus figures are the accounts' sums."""
    zone = config.site.zone
    today = local_date(now_ms, zone)
    month: Month = (today.year, today.month)
    previous = previous_months(month, 1)[0]
    first, last = month_days(month)
    start_ms, end_ms = midnight_ms(first, zone), midnight_ms(last + timedelta(days=1), zone)
    rows = []
    for scope in accounts(config):
        projection = month_to_date(config, hours_of, scope, now_ms, peaks_of=peaks_of, zone=zone)
        today_only = statement(config, hours_of, scope, today, today, peaks_of=peaks_of, zone=zone)
        rows.append((projection, today_only))
    campus_scope = resolve(config, "campus", None)
    campus_month = statement(
        config, hours_of, campus_scope, first, today, peaks_of=peaks_of, zone=zone
    )
    campus_today = statement(
        config, hours_of, campus_scope, today, today, peaks_of=peaks_of, zone=zone
    )
    day_totals = totals_of((d.cost.currency, d.cost.total) for _, d in rows)
    month_totals = totals_of((p.to_date.cost.currency, p.to_date.cost.total) for p, _ in rows)
    projected = totals_of((p.to_date.cost.currency, p.projected_total) for p, _ in rows)
    currencies = {**day_totals, **month_totals, **projected}
    return {
        "timezone": zone.key,
        "currency": currency_of(currencies),
        # whether energy_kwh, the totals and the projection count each estimated_kwh
        "estimated_counted": config.billing.include_estimated,
        "today": {
            "date": today.isoformat(),
            "energy_kwh": str(sum((kwh_of(d.cost) for _, d in rows), Decimal(0))),
            "estimated_kwh": str(sum((kwh(d.cost.estimated_wh) for _, d in rows), Decimal(0))),
            **money_answer(day_totals),
            "co2_kg": str(sum((d.footprint.kg for _, d in rows), Decimal(0))),
            "coverage": round(campus_today.cost.coverage, 6),
        },
        "month": {
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            "energy_kwh": str(sum((kwh_of(p.to_date.cost) for p, _ in rows), Decimal(0))),
            "estimated_kwh": str(
                sum((kwh(p.to_date.cost.estimated_wh) for p, _ in rows), Decimal(0))
            ),
            **money_answer(month_totals),
            **money_answer(projected, "projected_total"),
            "elapsed_share": round(_share(now_ms - start_ms, end_ms - start_ms), 6),
            "co2_kg": str(sum((p.to_date.footprint.kg for p, _ in rows), Decimal(0))),
        },
        "campus_demand": {
            "interval_min": campus_month.interval_min,
            "peak": peak_document(campus_month.peaks.get(month), zone),
            "previous_month_peak": peak_document(campus_month.peaks.get(previous), zone),
        },
        "buildings": sorted(
            (_building_month(p.to_date, p, month, previous, zone) for p, _ in rows),
            key=_by_intensity,
        ),
    }


def _share(part: float, whole: float) -> float:
    return min(1.0, max(0.0, part / whole))


def _building_month(
    found: Statement, projection: Projection, month: Month, previous: Month, zone: ZoneInfo
) -> dict[str, Any]:
    scope, cost = found.scope, found.cost
    area = scope.floor_area_m2
    per_m2 = (Decimal(cost.energy_wh) / 1000 / Decimal(area)).quantize(KWH_PER_M2) if area else None
    return {
        "name": scope.name,
        "floor_area_m2": area,
        "tariff": cost.tariff,
        "currency": cost.currency,
        "basis": scope.basis,
        "energy_kwh": str(kwh_of(cost)),
        "estimated_kwh": str(kwh(cost.estimated_wh)),
        "kwh_per_m2": _text(per_m2),
        "total": _text(cost.total),
        "projected_total": _text(projection.projected_total),
        "co2_kg": str(found.footprint.kg),
        "peak": peak_document(found.peaks.get(month), zone),
        "previous_month_peak": peak_document(found.peaks.get(previous), zone),
        "ratchet_floor_kw": _text(projection.ratchet_floor_kw),
        "billed_kw": _text(projection.demand_billed_kw),
    }


def _by_intensity(building: dict[str, Any]) -> tuple[bool, Decimal, str]:
    """kWh/m² descending, buildings without an area last, then by name."""
    per_m2 = building["kwh_per_m2"]
    return per_m2 is None, -Decimal(per_m2 or 0), building["name"] or ""
