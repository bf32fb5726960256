"""Print the month's bills: every building's (or one building's) and the campus's.

  campus-energy bill --month 2026-11 [--building ECE] [--format table|csv|xlsx|json]

Reads the window store the API reads (`api.source`, else `bridge.sink`), and the meter
events of the month from the logger's store (`storage.path`) where it can be read. XLSX
is written to --output (or to standard output when that is not a terminal).
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
from campus_energy.accounts.events import events_of_store
from campus_energy.accounts.scopes import UnknownScope
from campus_energy.accounts.statements import (
    CampusBill,
    EnergyOf,
    Flows,
    FlowsOf,
    campus_bill,
    parse_month,
)
from campus_energy.backends import open_source
from campus_energy.backends.base import WindowSource
from campus_energy.config import load_config
from campus_energy.core.billing import kwh
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.timestamps import iso_utc
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


def flows_from(source: WindowSource) -> FlowsOf:
    """Each meter's energy by direction and kind over local days, from the daily rollups."""

    def flows(first: date, last: date, meters: Collection[str]) -> Mapping[str, Flows]:
        after = (last + timedelta(days=1)).isoformat()
        sums: dict[str, Flows] = {}
        for b in source.buckets("day", first.isoformat(), after, list(meters)):
            f = sums.get(b.meter_id, Flows())
            sums[b.meter_id] = Flows(
                f.import_wh + b.energy_wh,
                f.export_wh + b.export_wh,
                f.estimated_wh + b.estimated_wh,
                f.estimated_export_wh + b.estimated_export_wh,
            )
        return sums

    return flows


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
            flows_of=flows_from(source),
            events_of=events_of_store(config.storage.path),
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
        if cost.estimated_wh:
            what = "of which estimated" if cost.estimated_counted else "estimated, not billed"
            out.append(f"  {what:<52} {kwh(cost.estimated_wh):>12} kWh")
        if one.export_kwh:
            out.append(
                f"  {'Exported (not priced: no feed-in tariff)':<52} {one.export_kwh:>12} kWh"
            )
        if one.estimated_export_kwh:
            out.append(
                f"  {'Exported, estimated (not priced)':<52} {one.estimated_export_kwh:>12} kWh"
            )
        peak = f"{one.peak.kw} kW" if one.peak else "—"
        extra = f", {one.kwh_per_m2} kWh/m²" if one.kwh_per_m2 is not None else ""
        out.append(f"  peak {peak}, CO₂ {one.statement.footprint.kg} kg{extra}")
        for event in one.events or ():
            out.append(f"  meter event: {event_line(event)}")
        out.append("")
    totals = ", ".join(f"{v} {c}" for c, v in sorted(found.totals.items())) or "—"
    out.append(f"Campus: {found.energy_kwh} kWh, {totals}, CO₂ {found.co2_kg} kg")
    if found.estimated_kwh:
        out.append(f"Campus estimated energy: {found.estimated_kwh} kWh")
    if found.export_kwh:
        out.append(f"Campus exported: {found.export_kwh} kWh (not priced)")
    if any(one.events is None for one in found.bills):
        out.append("Meter events: the logger's store (storage.path) could not be read")
    if found.campus_peak is not None:
        out.append(f"Campus peak ({found.interval_min} min): {found.campus_peak.kw} kW")
    return "\n".join(out) + "\n"


def event_line(event: MeterEvent) -> str:
    """'ece-main replaced (confirmed) at 2026-03-29T02:30:00.000Z: old final 12.5 kWh, new
    start 0.0 kWh — note'."""
    facts = [
        f"{label} {value / 1000:,.3f} kWh"
        for label, value in (
            ("before", event.before_wh),
            ("after", event.after_wh),
            ("old final", event.old_final_wh),
            ("new start", event.new_start_wh),
        )
        if value is not None
    ]
    text = f"{event.meter_id} {event.kind} ({event.source}) at {iso_utc(event.ts_ms)}"
    text += f": {', '.join(facts)}" if facts else ""
    return text + (f" — {event.note}" if event.note else "")
