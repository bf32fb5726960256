"""Write a period's report: energy, cost, CO₂, peak demand, after hours, coverage and alerts
per building and for the campus.

  campus-energy report --period 2026-11|2026-W47 [--building ECE] [--format csv|html|xlsx|json]
                       [-o FILE]

Reads the window store the API reads (`api.source`, else `bridge.sink`) and the book of
alerts (`alerts.state_path`, when it exists). CSV and JSON go to standard output unless
--output names a file; HTML and XLSX are written to --output, else to
report-<period>[-<building>].<html|xlsx> in the current folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from campus_energy.accounts.scopes import UnknownScope
from campus_energy.backends import open_source
from campus_energy.config import Config, load_config
from campus_energy.errors import UsageError
from campus_energy.incidents.values import HistoryRow
from campus_energy.reports.content import Report, build_report
from campus_energy.reports.message import standalone_html
from campus_energy.reports.periods import Period, parse_period
from campus_energy.reports.tables import document, report_csv
from campus_energy.reports.workbook import report_xlsx

FORMATS = ("csv", "html", "xlsx", "json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True,
                        help="a local calendar month YYYY-MM or an ISO week YYYY-Www")  # fmt: skip
    parser.add_argument("--building", help="only this building ('' : the meters in none)")
    parser.add_argument("--site", help="only this site's accounts, in its own time zone")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    parser.add_argument(
        "-o", "--output", type=Path, help="write here (html, xlsx: else report-<period>.<ext>)"
    )


def alert_history(
    config: Config, period: Period, zone: ZoneInfo | None = None
) -> Sequence[HistoryRow] | None:
    """The period's transitions from the book of alerts; None when there is no book."""
    path = config.alerts.state_path
    if not path.exists():
        return None
    from campus_energy.incidents.store import AlertBook

    with AlertBook(path) as book:
        return book.history(*period.bounds_ms(zone or config.site.zone), limit=100_000)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    try:
        period = parse_period(args.period)
    except ValueError as exc:
        raise UsageError(f"--period {exc}") from None
    building = args.building
    if building and building not in config.campus.building_names():
        raise UsageError(f"--building: unknown building {building[:80]!r}")
    if args.site is not None and args.site not in config.site_ids:
        raise UsageError(
            f"--site: unknown site {args.site[:80]!r} (sites: {', '.join(config.site_ids)})"
        )
    report = make(config, period, building, args.site)
    if args.format in ("csv", "json"):
        text = report_csv(report) if args.format == "csv" else _json(report)
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text, encoding="utf-8", newline="")
        return 0
    target: Path = args.output or Path(f"report-{report.slug}.{args.format}")
    if args.format == "html":
        target.write_text(standalone_html(report), encoding="utf-8")
    else:
        target.write_bytes(report_xlsx(report))
    print(f"wrote {target}")
    return 0


def make(config: Config, period: Period, building: str | None, site: str | None = None) -> Report:
    history = alert_history(config, period, config.report_zone(site, building))
    source = open_source(config)
    try:
        return build_report(config, source, period, building, alerts=history, site=site)
    except UnknownScope as exc:
        raise UsageError(f"--building: {exc}") from None
    finally:
        source.close()


def _json(report: Report) -> str:
    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"
