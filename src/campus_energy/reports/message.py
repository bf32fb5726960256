"""A report as an e-mail: multipart/related HTML with its charts inline (`cid:`), a plain-text
alternative, and the XLSX and CSV as attachments; and as a standalone HTML file, the
charts as data: URIs."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from campus_energy.reports.charts import charts
from campus_energy.reports.content import Report
from campus_energy.reports.html import data_uri, render_html, subject_of
from campus_energy.reports.tables import local_text, report_csv
from campus_energy.reports.workbook import report_xlsx

ATTACHMENTS = {
    "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "csv": ("text", "csv"),
}


def standalone_html(report: Report) -> str:
    """The HTML of the e-mail as one file: its charts as data: URIs."""
    return render_html(report, {name: data_uri(png) for name, png in charts(report).items()})


def attachment(report: Report, kind: str) -> tuple[str, bytes]:
    """(file name, content) of the report as `kind` ('xlsx' | 'csv')."""
    name = f"report-{report.slug}.{kind}"
    if kind == "xlsx":
        return name, report_xlsx(report)
    if kind == "csv":
        return name, report_csv(report).encode("utf-8")
    raise ValueError(f"cannot attach a report as {kind!r} (xlsx or csv)")


def plain_text(report: Report) -> str:
    """The report's figures for a mail client that shows no HTML."""
    zone = ZoneInfo(report.zone)
    period = report.period
    out = [f"{report.site} — energy report {period.label}", ""]
    out += [*report.notes, ""]
    for row in report.rows:
        costs = ", ".join(f"{v} {c}" for c, v in sorted(row.costs.items())) or "no tariff"
        peak = (
            f"{row.peak.kw} kW at {local_text(row.peak.start_ms, zone)}" if row.peak else "no peak"
        )
        out.append(f"{row.title}: {row.energy_kwh} kWh, {costs}, CO2 {row.co2_kg} kg, {peak}")
        if row.estimated_kwh:
            what = "of which estimated" if row.estimated_counted else "not counted: estimated"
            out.append(f"  {what} {row.estimated_kwh} kWh (measured {row.measured_kwh} kWh)")
        if row.export_kwh:
            out.append(f"  exported {row.export_kwh} kWh (not priced), net {row.net_kwh} kWh")
        before = "no data" if row.previous_kwh is None else f"{row.previous_kwh} kWh"
        year = "no data" if row.last_year_kwh is None else f"{row.last_year_kwh} kWh"
        out.append(f"  {period.previous().text}: {before}; {period.year_before().text}: {year}")
    out += ["", "After hours (energy while closed):"]
    for r in (*report.after_hours_buildings, *report.after_hours_meters):
        share = "" if r.share is None else f" ({r.share * 100:.1f} % of its total)"
        out.append(f"  {r.name}: {r.kwh} kWh{share}")
    low = report.low_coverage
    out += ["", f"Coverage: {len(low)} of {len(report.coverage)} meters below 95 %"]
    out += [f"  {c.meter}: {c.coverage * 100:.1f} %" for c in low]
    out += [""]
    if report.alerts is None:
        out.append("Alerts: no alerts recorded")
    else:
        out.append(f"Alerts: {len(report.alerts)} transition(s)")
        out += [
            f"  {local_text(r.at_ms, zone)} {r.event} {r.severity} {r.rule} {r.subject}"
            for r in report.alerts
        ]
    return "\n".join(out) + "\n"


def build_message(
    report: Report, *, attach: Sequence[str], sender: str | None, recipients: Sequence[str]
) -> EmailMessage:
    """The report as a message: text/plain and multipart/related (HTML and its PNG charts)
    as alternatives, then an attachment per entry of `attach` ('xlsx', 'csv')."""
    message = EmailMessage()
    message["Subject"] = subject_of(report)
    if sender is not None:
        message["From"] = sender
    if recipients:
        message["To"] = ", ".join(recipients)
    message.set_content(plain_text(report))
    images = charts(report)
    ids = {name: f"<{name}.{secrets.token_hex(8)}@campus-energy.report>" for name in images}
    html = render_html(report, {name: f"cid:{ident[1:-1]}" for name, ident in ids.items()})
    message.add_alternative(html, subtype="html")
    related = next(part for part in message.iter_parts() if part.get_content_type() != "text/plain")
    assert isinstance(related, EmailMessage)
    for name, png in images.items():
        related.add_related(png, "image", "png", cid=ids[name], filename=f"{name}.png")
    for kind in attach:
        name, data = attachment(report, kind)
        maintype, subtype = ATTACHMENTS[kind]
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message
