"""Print the month's bills: every building's (or one building's) and the campus's.

  campus-energy bill --month 2026-11 [--building ECE] [--format table|csv|xlsx|json]

Reads the window store the API reads (`api.source`, else `bridge.sink`). XLSX is
written to --output (or to standard output when that is not a terminal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Collection, Mapping
from datetime import date, timedelta
from pathlib import Path

from campus_energy.accounts.documents import (
    bills_csv,
    bills_xlsx,
    campus_bill_document,
    kwh_of,
    month_text,
)
from campus_energy.accounts.scopes import UnknownScope
from campus_energy.accounts.statements import CampusBill, EnergyOf, campus_bill, parse_month
from campus_energy.backends import open_source
from campus_energy.backends.base import WindowSource
from campus_energy.config import load_config
from campus_energy.errors import UsageError

FORMATS = ("table", "csv", "xlsx", "json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--month", required=True, help="the local calendar month, YYYY-MM")
    parser.add_argument("--building", help="only this building's bill ('' : meters in none)")
    parser.add_argument("--site", help="only this site's accounts, over its own local month")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument("-o", "--output", type=Path, help="write to this file (xlsx: needed "
                        "when standard output is a terminal)")  # fmt: skip


def energy_from(source: WindowSource) -> EnergyOf:
    """Each meter's energy over local days, from the source's daily rollups."""

    def energy(first: date, last: date, meters: Collection[str]) -> Mapping[str, float]:
        after = (last + timedelta(days=1)).isoformat()
        sums: dict[str, float] = {}
        for bucket in source.buckets("day", first.isoformat(), after, list(meters)):
            sums[bucket.meter_id] = sums.get(bucket.meter_id, 0.0) + bucket.energy_wh
        return sums

    return energy


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    try:
        month = parse_month(args.month)
    except ValueError as exc:
        raise UsageError(f"--month {exc}") from None
    if args.site is not None and args.site not in config.site_ids:
        raise UsageError(
            f"--site: unknown site {args.site[:80]!r} (sites: {', '.join(config.site_ids)})"
        )
    if args.format == "xlsx" and args.output is None and sys.stdout.isatty():
        raise UsageError("--format xlsx writes a workbook: name a file with --output")
    source = open_source(config)
    try:
        found = campus_bill(
            config,
            source.scope_hours,
            energy_from(source),
            month,
            args.building,
            peaks_of=source.scope_peaks,
            site=args.site,
        )
    except UnknownScope as exc:
        raise UsageError(f"--building: {exc}") from None
    finally:
        source.close()
    zone = config.site_zone(args.site) if args.site else config.site.zone
    if args.format == "xlsx":
        data = bills_xlsx(found, zone)
        if args.output is not None:
            args.output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    if args.format == "csv":
        text = bills_csv(found)
    elif args.format == "json":
        text = json.dumps(campus_bill_document(found, zone), indent=2) + "\n"
    else:
        text = as_table(found)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def as_table(found: CampusBill) -> str:
    out: list[str] = [f"Bills for {month_text(found.month)}", ""]
    for one in found.bills:
        cost = one.cost
        name = one.scope.name or "(meters in no building)"
        tariff = f"tariff {cost.tariff} ({cost.currency})" if cost.tariff else "no tariff"
        out.append(f"{name} — {tariff} — {one.scope.basis}")
        for x in cost.lines:
            part = f" × {x.days}/{x.month_days}" if x.days is not None else ""
            out.append(
                f"  {x.description:<52} {x.quantity:>12} {x.unit:<5} × {x.rate:>9}{part:<8} "
                f"{x.amount:>12}"
            )
        total = "—" if cost.total is None else f"{cost.total} {cost.currency}"
        out.append(f"  {'Total':<52} {kwh_of(cost):>12} kWh   {'':>20} {total:>12}")
        peak = f"{one.peak.kw} kW" if one.peak else "—"
        extra = f", {one.kwh_per_m2} kWh/m²" if one.kwh_per_m2 is not None else ""
        out.append(f"  peak {peak}, CO₂ {one.statement.footprint.kg} kg{extra}")
        out.append("")
    totals = ", ".join(f"{v} {c}" for c, v in sorted(found.totals.items())) or "—"
    out.append(f"Campus: {found.energy_kwh} kWh, {totals}, CO₂ {found.co2_kg} kg")
    if found.campus_peak is not None:
        out.append(f"Campus peak ({found.interval_min} min): {found.campus_peak.kw} kW")
    return "\n".join(out) + "\n"
