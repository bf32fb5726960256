"""A report as an XLSX workbook: Summary, Buildings, After hours, Coverage, Alerts — the same
figures as the HTML and the CSV, numbers as numbers."""

from __future__ import annotations

import io

from campus_energy.reports.content import Report
from campus_energy.reports.tables import COLUMNS, numbers, section_rows, text

SHEETS = {
    "buildings": "Buildings",
    "after_hours": "After hours",
    "coverage": "Coverage",
    "alerts": "Alerts",
}
MONEY_FORMAT = "#,##0.00"
KWH_FORMAT = "#,##0.000"


def report_xlsx(report: Report) -> bytes:
    from openpyxl import Workbook  # type: ignore[import-untyped]  # only XLSX needs it
    from openpyxl.styles import Font  # type: ignore[import-untyped]

    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    period = report.period
    facts: list[tuple[str, object]] = [
        ("Site", report.site),
        ("Period", period.text),
        ("", period.label),
        ("First day", period.first.isoformat()),
        ("Last day", period.last.isoformat()),
        ("Time zone", report.zone),
        ("Building", report.building if report.building is not None else "(whole campus)"),
    ]
    head = report.headline
    for currency, amount in sorted(head.costs.items()):
        facts.append((f"Cost ({currency})", amount))
    facts += [
        ("Energy (kWh)", head.energy_kwh),
        ("Measured import (kWh)", head.measured_kwh),
        ("Estimated import (kWh)", head.estimated_kwh),
        ("Export (kWh)", head.export_kwh),
        ("Net (kWh)", head.net_kwh),
        ("CO2 (kg)", head.co2_kg),
        ("Peak (kW)", head.peak.kw if head.peak else None),
        ("Meters below 95 % coverage", len(report.low_coverage)),
        ("Alerts", "no alerts recorded" if report.alerts is None else len(report.alerts)),
    ]
    facts += [("Note", note) for note in report.notes]
    for key, value in facts:
        summary.append([key, value])
    summary.column_dimensions["A"].width = 28
    summary.column_dimensions["B"].width = 60
    for section, title in SHEETS.items():
        sheet = book.create_sheet(title)
        columns = COLUMNS[section]
        sheet.append(list(columns))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in section_rows(report, section):
            sheet.append([text(v) if isinstance(v, bool) else v for v in numbers(row)])
        for index, name in enumerate(columns, start=1):
            letter = sheet.cell(row=1, column=index).column_letter
            sheet.column_dimensions[letter].width = max(12, len(name) + 2)
            fmt = MONEY_FORMAT if name == "cost" else KWH_FORMAT if name.endswith("kwh") else None
            if fmt:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    if not isinstance(cell.value, str):
                        cell.number_format = fmt
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
