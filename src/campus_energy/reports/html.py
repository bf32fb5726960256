"""A report as HTML for a mail client: one self-contained document, at most 640 px wide,
tables with inline styles (mail clients drop <style> in places), no scripts. Images are
referenced by the source the caller gives each chart: `cid:` in an e-mail, a data: URI
in a standalone file."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from campus_energy.core.timestamps import utc_datetime
from campus_energy.reports.content import Report, ScopeRow
from campus_energy.reports.usage import AfterHours

FONT = "font-family:Helvetica,Arial,sans-serif;"
INK, MUTED, LINE, TINT = "#1d2731", "#5b6770", "#dde2e6", "#f3f6f8"
CELL = f"padding:6px 8px;border-bottom:1px solid {LINE};font-size:13px;color:{INK};"
NUMBER = CELL + "text-align:right;white-space:nowrap;"
HEAD = f"padding:6px 8px;border-bottom:2px solid {INK};font-size:12px;color:{MUTED};"
HEAD_NUMBER = HEAD + "text-align:right;"
H2 = f"{FONT}font-size:17px;color:{INK};margin:26px 0 8px 0;"
P = f"{FONT}font-size:13px;color:{MUTED};margin:4px 0 10px 0;line-height:1.45;"
TABLE = f'width="100%" cellpadding="0" cellspacing="0" style="{FONT}border-collapse:collapse;"'


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _number(value: Decimal | None, places: int | None = None) -> str:
    if value is None:
        return "—"
    shown = value if places is None else value.quantize(Decimal(1).scaleb(-places))
    return f"{shown:,}"


def _money(row: ScopeRow) -> str:
    if not row.costs:
        return "no tariff"
    return "<br>".join(f"{_number(v)} {escape(c)}" for c, v in sorted(row.costs.items()))


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    sign = "+" if value > 0 else "−" if value < 0 else "±"
    return f"{sign}{abs(value)} %"


def _share(value: Decimal | None) -> str:
    return "—" if value is None else f"{(value * 100).quantize(Decimal('0.1'))} %"


def _table(heads: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]) -> str:
    """`heads`: (title, numeric); cells are HTML already escaped."""
    top = "".join(f'<th align="{"right" if n else "left"}" style="{HEAD_NUMBER if n else HEAD}">'
                  f"{escape(t)}</th>" for t, n in heads)  # fmt: skip
    body = []
    for i, row in enumerate(rows):
        shade = f"background:{TINT};" if i % 2 else ""
        cells = "".join(
            f'<td align="{"right" if n else "left"}" style="{(NUMBER if n else CELL) + shade}">'
            f"{v}</td>"
            for (_, n), v in zip(heads, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table {TABLE}><tr>{top}</tr>{''.join(body)}</table>"


def _card(label: str, value: str, detail: str) -> str:
    return (
        f'<td width="50%" valign="top" style="padding:10px 12px;background:{TINT};'
        f'border:4px solid #ffffff;{FONT}">'
        f'<div style="font-size:12px;color:{MUTED};">{escape(label)}</div>'
        f'<div style="font-size:22px;font-weight:bold;color:{INK};margin-top:2px;">{value}</div>'
        f'<div style="font-size:12px;color:{MUTED};margin-top:2px;">{detail}</div></td>'
    )


def _clock(ms: int, zone: ZoneInfo) -> str:
    return f"{utc_datetime(ms).astimezone(zone):%a %d %b %H:%M}"


def _headline(report: Report, zone: ZoneInfo) -> str:
    row = report.headline
    peak = row.peak
    previous = report.period.previous().text
    peak_value = f"{_number(peak.kw)} kW" if peak else "—"
    peak_detail = f"{peak.interval_min}-min, {escape(_clock(peak.start_ms, zone))}" if peak else ""
    cards = [
        _card("Energy", f"{_number(row.energy_kwh, 0)} kWh",
              f"{_percent(row.previous_change)} vs {escape(previous)}"),
        _card("Cost", _money(row), "month's bill" if report.period.kind == "month"
              else "energy + standing, no demand charge"),
        _card("CO₂", f"{_number(row.co2_kg, 0)} kg", "grid factor"),
        _card("Peak demand", peak_value, peak_detail),
    ]  # fmt: skip
    return (
        f'<table width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;">'
        f"<tr>{cards[0]}{cards[1]}</tr><tr>{cards[2]}{cards[3]}</tr></table>"
    )


def _image(src: str | None, alt: str) -> str:
    if src is None:
        return ""
    return (
        f'<img src="{escape(src)}" alt="{escape(alt)}" width="620" '
        f'style="display:block;width:100%;max-width:620px;height:auto;border:0;margin:6px 0;">'
    )


def _buildings(report: Report, zone: ZoneInfo) -> str:
    rows = []
    for row in report.rows:
        name = f"<b>{escape(row.title)}</b>" if row.kind == "campus" else escape(row.title)
        peak = (
            f'{_number(row.peak.kw)}<br><span style="color:{MUTED};font-size:11px;">'
            f"{escape(_clock(row.peak.start_ms, zone))}</span>"
            if row.peak
            else "—"
        )
        rows.append([name, _number(row.energy_kwh), _money(row), _number(row.co2_kg), peak])
    heads = [("", False), ("kWh", True), ("Cost", True), ("CO₂ kg", True), ("Peak kW", True)]
    # the estimate and the export, where there are any: after the kWh they qualify
    if any(row.estimated_kwh for row in report.rows):
        heads.insert(2, ("of which estimated" if report.headline.estimated_counted
                         else "estimated, not counted", True))  # fmt: skip
        for cells, row in zip(rows, report.rows, strict=True):
            cells.insert(2, _number(row.estimated_kwh))
    if any(row.export_kwh for row in report.rows):
        at = len(heads) - 3
        heads.insert(at, ("Exported kWh", True))
        for cells, row in zip(rows, report.rows, strict=True):
            cells.insert(at, "—" if row.export_kwh is None else _number(row.export_kwh))
    return _table(heads, rows)


def _comparison(report: Report) -> str:
    period = report.period
    rows = []
    for row in report.rows:
        name = f"<b>{escape(row.title)}</b>" if row.kind == "campus" else escape(row.title)
        rows.append(
            [
                name,
                _number(row.energy_kwh),
                "no data" if row.previous_kwh is None else _number(row.previous_kwh),
                _percent(row.previous_change),
                "no data" if row.last_year_kwh is None else _number(row.last_year_kwh),
                _percent(row.last_year_change),
            ]
        )
    heads = [("kWh", False), (period.text, True), (period.previous().text, True),
             ("change", True), (period.year_before().text, True), ("change", True)]  # fmt: skip
    return _table(heads, rows)


def _after_hours(report: Report) -> str:
    def rows(found: Sequence[AfterHours], meters: bool) -> list[list[str]]:
        return [
            [escape(r.name), *([escape(r.building)] if meters else []), _number(r.kwh),
             _share(r.share)]
            for r in found
        ]  # fmt: skip

    if not report.after_hours_buildings:
        return f'<p style="{P}">No building has opening hours configured.</p>'
    parts = [
        _table([("Building", False), ("kWh closed", True), ("of its total", True)],
               rows(report.after_hours_buildings, False)),
        f'<p style="{P}margin-top:14px;">Top meters while their building is closed:</p>',
        _table([("Meter", False), ("Building", False), ("kWh closed", True),
                ("of its total", True)], rows(report.after_hours_meters, True)),
    ]  # fmt: skip
    return "".join(parts)


def _coverage(report: Report) -> str:
    low = report.low_coverage
    count = len(report.coverage)
    if not low:
        return f'<p style="{P}">All {count} meters covered at least 95 % of the period.</p>'
    lead = f'<p style="{P}">{len(low)} of {count} meters covered less than 95 % of the period:</p>'
    rows = [[escape(c.meter), escape(c.building or "—"), _share(c.coverage)] for c in low]
    return lead + _table([("Meter", False), ("Building", False), ("Coverage", True)], rows)


def _alerts(report: Report, zone: ZoneInfo) -> str:
    if report.alerts is None:
        return f'<p style="{P}">No alerts recorded (there is no book of alerts).</p>'
    if not report.alerts:
        return f'<p style="{P}">No alert fired or resolved in this period.</p>'
    colours = {"firing": "#b5446e", "renotify": "#c2603a", "resolved": "#6a9e3f"}
    rows = []
    for r in report.alerts:
        event = (
            f'<span style="color:{colours.get(r.event, INK)};font-weight:bold;">'
            f"{escape(r.event)}</span>"
        )
        what = f'{escape(r.rule)}<br><span style="color:{MUTED};">{escape(r.subject)}</span>'
        rows.append([escape(_clock(r.at_ms, zone)), what, event, escape(r.severity)])
    return _table([("When", False), ("Alert", False), ("Event", False), ("Severity", False)], rows)


def render_html(report: Report, images: Mapping[str, str]) -> str:
    """The report as one HTML document; `images` maps a chart's id ('daily', 'profile') to
    the `src` of its <img> (a `cid:` or a data: URI)."""
    zone = ZoneInfo(report.zone)
    period = report.period
    scope = (
        "the whole campus"
        if report.building is None
        else (report.building or "meters in no building")
    )
    title = f"{report.site} — energy report {period.text}"
    if report.building is not None:
        title += f" — {report.building or 'meters in no building'}"
    sections = [
        f'<div style="{FONT}font-size:12px;color:{MUTED};text-transform:uppercase;'
        f'letter-spacing:0.06em;">{escape(report.site)}</div>',
        f'<h1 style="{FONT}font-size:22px;color:{INK};margin:4px 0 2px 0;">'
        f"Energy report · {escape(period.label)}</h1>",
        f'<p style="{P}">{escape(scope.capitalize())}, {period.first:%d %b %Y} – '
        f"{period.last:%d %b %Y}, local time ({escape(report.zone)}).</p>",
        _headline(report, zone),
        *(f'<p style="{P}">{escape(note)}</p>' for note in report.notes),
        f'<h2 style="{H2}">Energy per day</h2>',
        f'<p style="{P}">Bars: this period by building. Dashed line: the period before '
        f"({escape(period.previous().text)}), day by day.</p>",
        _image(images.get("daily"), "Daily energy per building"),
        f'<h2 style="{H2}">Buildings</h2>',
        _buildings(report, zone),
        f'<h2 style="{H2}">Compared with</h2>',
        _comparison(report),
        f'<h2 style="{H2}">Peak demand</h2>',
        _image(images.get("profile"), "Demand on the peak day"),
        f'<h2 style="{H2}">After hours</h2>',
        f'<p style="{P}">Energy while the building is closed by its opening hours.</p>',
        _after_hours(report),
        f'<h2 style="{H2}">Data coverage</h2>',
        _coverage(report),
        f'<h2 style="{H2}">Alerts</h2>',
        _alerts(report, zone),
        f'<p style="{P}margin-top:28px;border-top:1px solid {LINE};padding-top:10px;'
        f'font-size:11px;">Figures are sums of the stored windows, priced as the bills '
        f"are. Sub-meters are counted once, in their building's total. Campus Energy.</p>",
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>"
        f'<body style="margin:0;padding:0;background:#ffffff;">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" '
        f'style="border-collapse:collapse;"><tr><td align="center" style="padding:12px 8px;">'
        f'<table role="presentation" width="640" cellpadding="0" cellspacing="0" '
        f'style="width:100%;max-width:640px;border-collapse:collapse;"><tr>'
        f'<td style="padding:0 10px;{FONT}">\n{body}\n</td></tr></table></td></tr></table>'
        "</body></html>\n"
    )


def subject_of(report: Report) -> str:
    period = report.period
    where = "" if report.building is None else f" — {report.building or 'meters in no building'}"
    return f"{report.site}: energy report {period.text}{where}"
