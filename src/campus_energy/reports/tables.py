"""A report as tables: the rows every format shows (HTML, XLSX, CSV, JSON), with the same
figures. Quantities and money stay `Decimal` here; JSON and CSV carry them as decimal
strings ("12.30"), XLSX as numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.core.timestamps import iso_utc, utc_datetime
from campus_energy.reports.content import Report, ScopeRow

Cell = Decimal | str | int | float | bool | None
SECTIONS = ("buildings", "after_hours", "coverage", "alerts")
SCOPE_COLUMNS = (
    "scope", "basis", "energy_kwh", "cost", "currency", "unpriced_kwh", "co2_kg", "peak_kw",
    "peak_interval_min", "peak_start_local", "coverage", "previous_period", "previous_kwh",
    "previous_change_pct", "last_year_period", "last_year_kwh", "last_year_change_pct",
    "measured_kwh", "estimated_kwh", "estimated_counted", "export_kwh", "net_kwh",
)  # fmt: skip
AFTER_HOURS_COLUMNS = ("building", "meter", "after_hours_kwh", "total_kwh", "after_hours_share")
COVERAGE_COLUMNS = ("meter", "building", "coverage", "below_95_percent")
ALERT_COLUMNS = (
    "at_local", "at", "rule", "subject", "kind", "scope", "event", "severity", "value",
    "detail", "suppressed",
)  # fmt: skip
COLUMNS = {
    "buildings": SCOPE_COLUMNS,
    "after_hours": AFTER_HOURS_COLUMNS,
    "coverage": COVERAGE_COLUMNS,
    "alerts": ALERT_COLUMNS,
}


def local_text(ms: int, zone: tzinfo) -> str:
    return utc_datetime(ms).astimezone(zone).isoformat(timespec="minutes")


def cost_cells(row: ScopeRow) -> tuple[Cell, Cell]:
    """(cost, currency): one currency's amount; several joined in words; none: no tariff."""
    if not row.costs:
        return None, None
    if len(row.costs) == 1:
        ((currency, amount),) = row.costs.items()
        return amount, currency
    return " + ".join(f"{v} {c}" for c, v in sorted(row.costs.items())), None


def scope_rows(report: Report) -> list[list[Cell]]:
    zone = ZoneInfo(report.zone)
    previous, last_year = report.period.previous().text, report.period.year_before().text
    found: list[list[Cell]] = []
    for row in report.rows:
        cost, currency = cost_cells(row)
        peak = row.peak
        found.append(
            [
                row.title, row.basis, row.energy_kwh, cost, currency, row.unpriced_kwh,
                row.co2_kg, peak.kw if peak else None, peak.interval_min if peak else None,
                local_text(peak.start_ms, zone) if peak else None, round(row.coverage, 4),
                previous, row.previous_kwh, row.previous_change, last_year, row.last_year_kwh,
                row.last_year_change, row.measured_kwh, row.estimated_kwh, row.estimated_counted,
                row.export_kwh, row.net_kwh,
            ]
        )  # fmt: skip
    return found


def after_hours_rows(report: Report) -> list[list[Cell]]:
    return [
        [r.building, r.meter, r.kwh, r.total_kwh, r.share]
        for r in (*report.after_hours_buildings, *report.after_hours_meters)
    ]


def coverage_rows(report: Report) -> list[list[Cell]]:
    return [[c.meter, c.building, c.coverage, c.low] for c in report.coverage]


def alert_rows(report: Report) -> list[list[Cell]]:
    zone = ZoneInfo(report.zone)
    return [
        [
            local_text(r.at_ms, zone), iso_utc(r.at_ms), r.rule, r.subject, r.kind, r.scope,
            r.event, r.severity, r.value, r.detail, r.suppressed,
        ]
        for r in report.alerts or ()
    ]  # fmt: skip


def section_rows(report: Report, section: str) -> list[list[Cell]]:
    return {
        "buildings": scope_rows,
        "after_hours": after_hours_rows,
        "coverage": coverage_rows,
        "alerts": alert_rows,
    }[section](report)


def text(value: Cell) -> str | None:
    """A cell as JSON and CSV carry it: decimal strings, never binary floats of money."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def document(report: Report) -> dict[str, Any]:
    """The report as JSON: its period, notes and each section's rows as objects."""
    period = report.period
    body: dict[str, Any] = {
        "site": report.site,
        "timezone": report.zone,
        "period": period.text,
        "label": period.label,
        "first_day": period.first.isoformat(),
        "last_day": period.last.isoformat(),
        "building": report.building,
        "notes": list(report.notes),
        "alerts_recorded": report.alerts is not None,
    }
    for section in SECTIONS:
        columns = COLUMNS[section]
        body[section] = [
            {c: _json(v) for c, v in zip(columns, row, strict=True)}
            for row in section_rows(report, section)
        ]
    return body


def _json(value: Cell) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def csv_columns() -> list[str]:
    """`section`, then every section's columns once, in order."""
    found: list[str] = ["section"]
    for section in SECTIONS:
        found += [c for c in COLUMNS[section] if c not in found]
    return found


def report_csv(report: Report) -> str:
    """One table: a `section` column (buildings, after_hours, coverage, alerts) and the
    columns of every section (a row fills its own section's)."""
    columns = csv_columns()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for section in SECTIONS:
        for row in section_rows(report, section):
            cells = dict(zip(COLUMNS[section], row, strict=True))
            writer.writerow(
                [section if c == "section" else safe_cell(text(cells.get(c))) for c in columns]
            )
    return out.getvalue()


def safe_cell(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula ('' for none)."""
    if value is None:
        return ""
    return "'" + value if value[:1] in ("=", "+", "@", "\t", "\r") else value


def numbers(row: Sequence[Cell]) -> list[Cell]:
    """Cells for a workbook: numbers stay numbers, text is made safe."""
    return [safe_cell(v) if isinstance(v, str) else v for v in row]
