"""Bills, costs and demand as plain documents (JSON, CSV rows, an XLSX workbook).

Money and quantities are decimal strings in JSON ("12.30"), so no figure passes
through a binary float on its way to a person; in XLSX they are numbers with
the currency's decimals as their format; in CSV they are the same strings.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from campus_energy.accounts.statements import Bill, CampusBill, DemandAnswer, Statement
from campus_energy.core.billing import Cost, Line
from campus_energy.core.demand import Month, Peak
from campus_energy.core.emissions import Footprint
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.timestamps import iso_utc, utc_datetime


def month_text(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def peak_document(peak: Peak | None, zone: tzinfo) -> dict[str, Any] | None:
    if peak is None:
        return None
    local = utc_datetime(peak.start_ms).astimezone(zone)
    return {
        "month": month_text(peak.month),
        "kw": str(peak.kw),
        "start": iso_utc(peak.start_ms),
        "start_local": local.isoformat(timespec="minutes"),
    }


def line_document(line: Line) -> dict[str, Any]:
    return {
        "kind": line.kind,
        "description": line.description,
        "period": line.period,
        "tariff_version": line.valid_from.isoformat(),
        "quantity": str(line.quantity),
        "unit": line.unit,
        "rate": str(line.rate),
        "days": line.days,
        "month_days": line.month_days,
        "amount": str(line.amount),
        "estimated": line.estimated,
    }


def _kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(Decimal("0.001"))


EVENT_COLUMNS = ("meter", "at", "at_local", "kind", "source", "register", "before_wh",
                 "after_wh", "old_final_wh", "new_start_wh", "note")  # fmt: skip


def event_document(event: MeterEvent, zone: tzinfo) -> dict[str, Any]:
    """A meter event on a bill: when (UTC and the account's local time), what, which register."""
    local = utc_datetime(event.ts_ms).astimezone(zone)
    return {
        "meter": event.meter_id,
        "at": iso_utc(event.ts_ms),
        "at_local": local.isoformat(timespec="seconds"),
        "kind": event.kind,
        "source": event.source,
        "register": event.register,
        "before_wh": event.before_wh,
        "after_wh": event.after_wh,
        "old_final_wh": event.old_final_wh,
        "new_start_wh": event.new_start_wh,
        "note": event.note,
    }


def footprint_document(found: Footprint) -> dict[str, Any]:
    return {
        "co2_kg": str(found.kg),
        "kwh_hourly_factor": str(found.kwh_hourly),
        "kwh_annual_factor": str(found.kwh_annual),
        "kwh_without_factor": str(found.kwh_unknown),
        "fallback_share": round(found.fallback_share, 6),
    }


def cost_document(cost: Cost) -> dict[str, Any]:
    return {
        "first_day": cost.first_day.isoformat(),
        "last_day": cost.last_day.isoformat(),
        "tariff": cost.tariff,
        "currency": cost.currency,
        "energy_kwh": str((Decimal(cost.energy_wh) / 1000).quantize(Decimal("0.001"))),
        # energy_kwh = measured_kwh + (estimated_kwh when estimated_counted)
        "measured_kwh": str(_kwh(cost.measured_wh)),
        "estimated_kwh": str(_kwh(cost.estimated_wh)),
        "estimated_counted": cost.estimated_counted,
        "coverage": round(cost.coverage, 6),
        "lines": [line_document(x) for x in cost.lines],
        "total": _text(cost.total),
        "unpriced_kwh": str(cost.unpriced_kwh),
        "demand": [
            {
                "month": month_text(d.month),
                "interval_min": d.interval_min,
                "peak_kw": _text(d.peak.kw) if d.peak else None,
                "peak_start": iso_utc(d.peak.start_ms) if d.peak else None,
                "ratchet_floor_kw": str(d.ratchet_floor_kw),
                "minimum_kw": str(d.minimum_kw),
                "billed_kw": str(d.billed_kw),
            }
            for d in cost.demand
        ],
    }


def scope_document(statement: Statement) -> dict[str, Any]:
    scope = statement.scope
    return {
        "kind": scope.kind,
        "name": scope.name,
        "building": scope.building,
        "site": scope.site,
        "basis": scope.basis,
        "meters": {m: w for m, w in sorted(scope.terms.items())},
    }


def statement_document(statement: Statement, zone: tzinfo) -> dict[str, Any]:
    return {
        "scope": scope_document(statement),
        **cost_document(statement.cost),
        "emissions": footprint_document(statement.footprint),
        "demand_interval_min": statement.interval_min,
    }


def bill_document(bill: Bill, zone: tzinfo) -> dict[str, Any]:
    """`zone`: the campus's; a bill of another site's account shows its peaks in its own."""
    zone = bill.statement.zone or zone
    return {
        "month": month_text(bill.month),
        "account": bill.scope.name,
        **statement_document(bill.statement, zone),
        "floor_area_m2": bill.scope.floor_area_m2,
        "kwh_per_m2": _text(bill.kwh_per_m2),
        "peak": peak_document(bill.peak, zone),
        "previous_month_peak": peak_document(bill.previous_peak, zone),
        "export_kwh": _text(bill.export_kwh),  # measured export: stated, not priced
        "estimated_export_kwh": _text(bill.estimated_export_kwh),
        "meter_energy": [
            {
                "id": m.id,
                "kind": m.kind,
                "energy_kwh": str(m.energy_kwh),
                "share": None if m.share is None else round(m.share, 6),
                "estimated_kwh": str(m.estimated_kwh),
                "export_kwh": str(m.export_kwh),
                "estimated_export_kwh": str(m.estimated_export_kwh),
            }
            for m in bill.meters
        ],
        # None: the logger's store (where the events are recorded) could not be read
        "meter_events": None
        if bill.events is None
        else [event_document(e, zone) for e in bill.events],
    }


def campus_bill_document(found: CampusBill, zone: tzinfo) -> dict[str, Any]:
    return {
        "month": month_text(found.month),
        "timezone": getattr(zone, "key", str(zone)),
        "bills": [bill_document(b, zone) for b in found.bills],
        "campus": {
            "totals": {c: str(v) for c, v in sorted(found.totals.items())},
            "energy_kwh": str(found.energy_kwh),
            "estimated_kwh": str(found.estimated_kwh),
            "export_kwh": _text(found.export_kwh),
            "estimated_export_kwh": _text(found.estimated_export_kwh),
            "co2_kg": str(found.co2_kg),
            "unpriced_kwh": str(found.unpriced_kwh),
            "demand_interval_min": found.interval_min,
            "peak": peak_document(found.campus_peak, zone),
            "previous_month_peak": peak_document(found.campus_previous_peak, zone),
        },
    }


def demand_document(found: DemandAnswer, zone: tzinfo) -> dict[str, Any]:
    return {
        "scope": {
            "kind": found.scope.kind,
            "name": found.scope.name,
            "basis": found.scope.basis,
        },
        "interval_min": found.interval_min,
        "points": [
            {"start": iso_utc(p.start_ms), "kw": round(p.kw, 6), "counts": p.counts}
            for p in found.points
        ],
        "monthly_peaks": [peak_document(p, zone) for p in found.peaks],
        "ratchet_floors": {month_text(m): str(v) for m, v in sorted(found.ratchet_floors.items())},
    }


# -- CSV and XLSX ---------------------------------------------------------------------------------

BILL_COLUMNS = (
    "month",
    "account",
    "tariff",
    "currency",
    "kind",
    "description",
    "tariff_version",
    "quantity",
    "unit",
    "rate",
    "amount",
)


def bill_rows(found: CampusBill) -> Iterable[list[str]]:
    """Every line item of every account, each account's total, then the campus's totals."""
    month = month_text(found.month)
    for one in found.bills:
        cost = one.cost
        account = one.scope.name or "(no building)"
        for x in cost.lines:
            yield [
                month,
                account,
                cost.tariff or "",
                cost.currency or "",
                x.kind,
                x.description,
                x.valid_from.isoformat(),
                str(x.quantity),
                x.unit,
                str(x.rate),
                str(x.amount),
            ]
        energy = str(kwh_of(cost))
        total = "" if cost.total is None else str(cost.total)
        yield [month, account, cost.tariff or "", cost.currency or "", "total",
               "Total", "", energy, "kWh", "", total]  # fmt: skip
        head = [month, account, cost.tariff or "", cost.currency or ""]
        if cost.estimated_wh:
            what = "of which estimated" if cost.estimated_counted else "estimated, not billed"
            yield [*head, "estimated", what, "", str(_kwh(cost.estimated_wh)), "kWh", "", ""]
        if one.export_kwh:
            yield [*head, "export", "Exported (not priced)", "", str(one.export_kwh), "kWh",
                   "", ""]  # fmt: skip
        if one.estimated_export_kwh:
            yield [*head, "export", "Exported, estimated (not priced)", "",
                   str(one.estimated_export_kwh), "kWh", "", ""]  # fmt: skip
    for currency, value in sorted(found.totals.items()):
        yield [month, "campus", "", currency, "total", "Campus total", "",
               str(found.energy_kwh), "kWh", "", str(value)]  # fmt: skip


def kwh_of(cost: Cost) -> Decimal:
    return (Decimal(cost.energy_wh) / 1000).quantize(Decimal("0.001"))


def bills_csv(found: CampusBill) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(BILL_COLUMNS)
    for row in bill_rows(found):
        writer.writerow([_safe_cell(v) for v in row])
    return out.getvalue()


def _safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "@", "\t", "\r") else value


def bills_xlsx(found: CampusBill, zone: tzinfo) -> bytes:
    """A workbook: 'Bills' (the line items and totals), 'Accounts' (per account: energy,
    kWh/m², CO₂, peak, total, measured and estimated energy, export), 'Meters' (each
    meter's energy and share) and 'Meter events' (the month's, where they were read)."""
    from openpyxl import Workbook  # type: ignore[import-untyped]  # only XLSX needs it

    book = Workbook()
    lines = book.active
    assert lines is not None
    lines.title = "Bills"
    lines.append(list(BILL_COLUMNS))
    numeric = {"quantity", "rate", "amount"}
    for row in bill_rows(found):
        lines.append(
            [
                Decimal(v) if name in numeric and v else _safe_cell(v)
                for name, v in zip(BILL_COLUMNS, row, strict=True)
            ]
        )
    accounts = book.create_sheet("Accounts")
    accounts.append(
        [
            "month",
            "account",
            "basis",
            "energy_kwh",
            "floor_area_m2",
            "kwh_per_m2",
            "co2_kg",
            "peak_kw",
            "peak_start_local",
            "currency",
            "total",
            "measured_kwh",
            "estimated_kwh",
            "estimated_counted",
            "export_kwh",
            "estimated_export_kwh",
        ]
    )
    for one in found.bills:
        peak = peak_document(one.peak, one.statement.zone or zone)
        accounts.append(
            [
                month_text(found.month),
                _safe_cell(one.scope.name or "(no building)"),
                one.scope.basis,
                kwh_of(one.cost),
                one.scope.floor_area_m2,
                one.kwh_per_m2,
                one.statement.footprint.kg,
                Decimal(peak["kw"]) if peak else None,
                peak["start_local"] if peak else None,
                one.cost.currency,
                one.cost.total,
                _kwh(one.cost.measured_wh),
                _kwh(one.cost.estimated_wh),
                "yes" if one.cost.estimated_counted else "no",
                one.export_kwh,
                one.estimated_export_kwh,
            ]
        )
    meters = book.create_sheet("Meters")
    meters.append(
        ["month", "account", "meter", "kind", "energy_kwh", "share", "estimated_kwh", "export_kwh"]
    )
    for one in found.bills:
        for use in one.meters:
            meters.append(
                [
                    month_text(found.month),
                    _safe_cell(one.scope.name or "(no building)"),
                    use.id,
                    use.kind,
                    use.energy_kwh,
                    use.share,
                    use.estimated_kwh,
                    use.export_kwh,
                ]
            )
    events = book.create_sheet("Meter events")
    events.append(["month", "account", *EVENT_COLUMNS])
    for one in found.bills:
        for event in one.events or ():
            cells = event_document(event, one.statement.zone or zone)
            events.append(
                [
                    month_text(found.month),
                    _safe_cell(one.scope.name or "(no building)"),
                    *(_safe_cell(v) if isinstance(v, str) else v for v in cells.values()),
                ]
            )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
