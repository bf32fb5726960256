"""Recompute the window documents of a range from the logger's store and compare them with the
sink; with --apply, rewrite the ones that differ or are missing, and delete the orphans.

Each reading of the store goes through what the bridge does to it (the MQTT
payload, its validation, its contributions to windows), so a window is rebuilt
exactly as the bridge builds it. A window the sink holds with no stored
reading behind it, in a time the store covers (between its first and last
reading of that meter), is an orphan — forged, or left where corrupt
timestamps put readings — and --apply deletes it. Other windows without
local readings (older than the store's first reading, after its last, of a
meter the store does not hold, or of readings the bridge now refuses) are
reported, never deleted. Rewrites replace documents under their deterministic
ids and deletions remove them, both recounting the sink's rollups, so running
again reports no differences.

--start and --end take a local day (YYYY-MM-DD, in site.timezone; --end includes
its day) or an ISO 8601 time (without a zone: local time; --end excludes it);
the range is widened to whole windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.backends import open_sink
from campus_energy.backends.base import WindowSink
from campus_energy.config import Config, load_config
from campus_energy.core.days import midnight_ms
from campus_energy.core.incoming import Malformed, parse_reading
from campus_energy.core.readings import Reading
from campus_energy.core.reconciliation import (
    DELETED,
    REWRITTEN,
    Finding,
    Key,
    StoreSpan,
    Summary,
    compare,
    recompute,
    store_span,
)
from campus_energy.core.timestamps import datetime_ms, epoch_ms, iso_utc
from campus_energy.core.topics import reading_topic
from campus_energy.core.windows import IncomingReading, WindowDoc, window_start_ms
from campus_energy.errors import StoreError, UsageError
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.runtime.mqtt import encode

EARLIEST_MS = 946_684_800_000  # 2000-01-01
LATEST_MS = 4_102_444_800_000  # 2100-01-01
CHUNK_MS = 86_400_000  # the range is checked (and rewritten) a day at a time


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--start", required=True, metavar="WHEN", help="first local day, or a time (ISO 8601)"
    )
    parser.add_argument(
        "--end", required=True, metavar="WHEN", help="last local day (included), or a time"
    )
    parser.add_argument(
        "--meter",
        action="extend",
        nargs="+",
        metavar="ID",
        help="only these meters (repeatable; default: every meter)",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="rewrite the windows that differ or are missing, delete the orphans",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    parser.add_argument("--all", action="store_true", help="list equal windows too")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    zone = config.site.zone
    window_ms = config.bridge.window_s * 1000
    start = parse_when("--start", args.start, zone, end=False)
    end = parse_when("--end", args.end, zone, end=True)
    start, end = start // window_ms * window_ms, -(-end // window_ms) * window_ms
    if end <= start:
        raise UsageError(f"--end ({args.end}) must be after --start ({args.start})")
    if not config.storage.path.exists():
        raise StoreError(f"store {config.storage.path} does not exist (storage.path)")
    report = asyncio.run(
        reconcile(
            config,
            start,
            end,
            meters=args.meter,
            apply=args.apply,
            list_equal=args.all,
        )
    )
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(as_text(report))
        settled_ms = report.now_ms - round(config.bridge.grace_s * 1000)
        if end > settled_ms:
            print(
                f"note: windows ending after {iso_utc(settled_ms)} may still be waiting in the "
                "bridge's spool",
                file=sys.stderr,
            )
    return 0


def parse_when(option: str, text: str, zone: ZoneInfo, *, end: bool) -> int:
    """A local day (its first instant; with `end`, the first instant after it) or a time, in ms."""
    value = text.strip()
    try:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            ms = datetime_ms(moment)
        else:
            ms = midnight_ms(day + timedelta(days=1 if end else 0), zone)
    except (ValueError, OverflowError):
        raise UsageError(
            f"{option}: expected a day (YYYY-MM-DD) or an ISO 8601 time, got {text!r}"
        ) from None
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise UsageError(f"{option}: must lie between 2000 and 2100, got {text!r}")
    return ms


@dataclass
class Report:
    start_ms: int
    end_ms: int
    window_s: int
    sink: str
    applied: bool
    list_equal: bool
    now_ms: int
    findings: list[Finding] = field(default_factory=list)  # those listed
    summary: Summary = field(default_factory=Summary)


async def reconcile(
    config: Config,
    start_ms: int,
    end_ms: int,
    *,
    meters: Sequence[str] | None = None,
    apply: bool = False,
    list_equal: bool = False,
    now_ms: int | None = None,
) -> Report:
    """Check the windows starting in [start_ms, end_ms) (window-aligned); rewrite with `apply`."""
    now = now_ms if now_ms is not None else epoch_ms(time.time())
    window_s = config.bridge.window_s
    chunk_ms = max(1, CHUNK_MS // (window_s * 1000)) * window_s * 1000
    store = ReadingStore(config.storage.path)
    try:
        sink = open_sink(config)
        try:
            report = Report(start_ms, end_ms, window_s, sink.name, apply, list_equal, now)
            records = {r.meter_id: r for r in await store.meter_records()}
            wanted = _wanted(meters, records, config)
            chosen = [r for m, r in sorted(records.items()) if wanted is None or m in wanted]
            for chunk in range(start_ms, end_ms, chunk_ms):
                chunk_end = min(chunk + chunk_ms, end_ms)
                await _check(report, config, store, sink, chosen, wanted, chunk, chunk_end)
        finally:
            await sink.close()
    finally:
        await store.close()
    return report


async def _check(
    report: Report,
    config: Config,
    store: ReadingStore,
    sink: WindowSink,
    records: Sequence[MeterRecord],
    wanted: Collection[str] | None,
    start_ms: int,
    end_ms: int,
) -> None:
    """Check (and with `report.applied`, rewrite) the windows starting in [start_ms, end_ms)."""
    window_ms = report.window_s * 1000
    held: dict[Key, WindowDoc] = {
        (d.meter_id, d.window_start_ms): d for d in await sink.windows(start_ms, end_ms, wanted)
    }
    local: dict[Key, WindowDoc] = {}
    partial_until: dict[str, int] = {}
    spans: dict[str, StoreSpan] = {}
    limits, fallback = config.intake_limits(), config.intake_fallback()
    for record in records:
        readings = await store.readings_around(record.meter_id, start_ms, end_ms)
        longest_s = limits.get(record.meter_id, fallback).max_interval_s
        span = store_span(readings, window_ms, math.floor(longest_s * 1000))
        if span is not None:
            spans[record.meter_id] = span
        first = readings[0] if readings else None
        if first is not None and first.ts_ms >= start_ms and _covers_before(first):
            # it integrated (or estimated) from a reading the store no longer holds
            partial_until[record.meter_id] = window_start_ms(first.ts_ms, window_ms)
        received = _as_received(readings, record, config, report.now_ms)
        report.summary.refused += sum(1 for r in readings if start_ms <= r.ts_ms < end_ms) - sum(
            1 for r in received if start_ms <= r.ts_ms < end_ms
        )
        site = _site_of(config, record.meter_id)
        meta = {record.meter_id: (record.building, record.floor, site)}
        local.update(recompute(received, report.window_s, start_ms, end_ms, meta, report.now_ms))
    findings = compare(local, held, partial_until, spans)
    report.summary.add(findings)
    report.findings += [f for f in findings if report.list_equal or f.status != "equal"]
    if report.applied:
        rewrite = [f.replacement() for f in findings if f.status in REWRITTEN]
        if rewrite:
            report.summary.rewritten += await sink.replace(rewrite, report.now_ms)
        orphans = [(f.meter_id, f.window_start_ms) for f in findings if f.status in DELETED]
        if orphans:
            report.summary.deleted += await sink.delete(orphans, report.now_ms)


def _covers_before(reading: Reading) -> bool:
    """Whether the reading holds energy of a time before it (measured or estimated in either
    direction), which began at its predecessor."""
    return bool(
        reading.energy_uwh
        or reading.export_uwh
        or reading.estimated_uwh
        or reading.estimated_export_uwh
    )


def _wanted(
    meters: Sequence[str] | None, records: Collection[str], config: Config
) -> set[str] | None:
    if not meters:
        return None
    known = set(records) | {m.id for m in config.meters}
    unknown = [m for m in meters if m not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise UsageError(f"--meter: unknown meter {unknown[0]!r} (known: {listed})")
    return set(meters)


def _site_of(config: Config, meter_id: str) -> str:
    """A meter's site as the bridge records it (a meter the config lost: the default site)."""
    try:
        return config.site_of(config.meter(meter_id))
    except KeyError:
        return config.site.id


def _as_received(
    readings: Sequence[Reading], record: MeterRecord, config: Config, now_ms: int
) -> list[IncomingReading]:
    """The readings as the bridge receives them: published by the logger, then validated."""
    known = {m.id for m in config.meters} or None  # as the bridge: None accepts every meter
    site = _site_of(config, record.meter_id)
    topic = reading_topic(config.topic_root(site), record.meter_id)
    roots = config.topic_roots()
    limits = config.intake_limits()  # as the bridge: the same plausibility and span bound
    fallback = config.intake_fallback()
    found = []
    for reading in readings:
        raw = encode(reading.payload(record.building, record.floor, site))
        parsed = parse_reading(
            topic, raw, prefix=roots, now_ms=now_ms, meters=known, limits=limits, fallback=fallback
        )
        if not isinstance(parsed, Malformed):
            found.append(parsed)
    return found


# --- output ---------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _changes(finding: Finding) -> str:
    parts = []
    for d in finding.differences:
        by = d.by
        parts.append(f"{d.name} {by:+.6g}" if by is not None else f"{d.name} {d.sink}→{d.local}")
    return ", ".join(parts)


def as_text(report: Report) -> str:
    lines = [
        f"{report.sink} sink, {report.window_s} s windows starting "
        f"{iso_utc(report.start_ms)} to {iso_utc(report.end_ms)} (exclusive)"
    ]
    if report.findings:
        width = max(len(f.document_id) for f in report.findings)
        lines.append(
            f"{'window':<{width}}  {'status':<8} {'sink Wh':>16} {'local Wh':>16} "
            f"{'difference Wh':>16}  fields"
        )
        for f in report.findings:
            lines.append(
                f"{f.document_id:<{width}}  {f.status:<8} {_number(f.sink_energy_wh):>16} "
                f"{_number(f.local_energy_wh):>16} {f.energy_difference_wh:>+16.6f}  "
                f"{_changes(f)}".rstrip()
            )
    s = report.summary
    counts = s.counts()
    line = (
        f"checked {counts['checked']} windows: {counts['equal']} equal, "
        f"{counts['differing']} differing, {counts['missing']} missing, {counts['extra']} extra"
    )
    if counts["partial"]:
        line += f", {counts['partial']} partial"
    if counts["orphan"]:
        line += f", {counts['orphan']} orphan (no reading behind them)"
    line += f"; energy local {s.local_energy_wh:.6f} Wh, sink {s.sink_energy_wh:.6f} Wh"
    lines.append(line)
    if s.directed:
        lines.append(_energies_line(s))
    if s.refused:
        lines.append(f"{s.refused} stored readings are ones the bridge refuses (not counted)")
    if report.applied:
        lines.append(f"rewrote {s.rewritten} windows, deleted {s.deleted} orphan windows")
    else:
        todo = []
        if s.to_rewrite:
            todo.append(f"rewrite the {s.to_rewrite} differing or missing windows")
        if s.to_delete:
            todo.append(f"delete the {s.to_delete} orphan windows")
        if todo:
            lines.append(f"run with --apply to {' and '.join(todo)}")
    return "\n".join(lines)


ENERGY_LABELS = {
    "import": "measured import",
    "export": "measured export",
    "estimated_import": "estimated import",
    "estimated_export": "estimated export",
}


def _energies_line(s: Summary) -> str:
    """Each direction and kind, store against sink (a campus that only imports has no need)."""
    parts = [
        f"{ENERGY_LABELS[name]} {b.local_wh:.6f} / {b.sink_wh:.6f} / {b.difference_wh:+.6f}"
        for name, b in s.energies().items()
    ]
    return f"energy local / sink / difference, Wh: {'; '.join(parts)}"


def as_json(report: Report) -> dict[str, Any]:
    s = report.summary
    return {
        "start": iso_utc(report.start_ms),
        "end": iso_utc(report.end_ms),
        "window_s": report.window_s,
        "sink": report.sink,
        "applied": report.applied,
        "windows": [
            {
                "id": f.document_id,
                "meter_id": f.meter_id,
                "window_start": iso_utc(f.window_start_ms),
                "status": f.status,
                "sink_energy_wh": f.sink_energy_wh,
                "local_energy_wh": f.local_energy_wh,
                "difference_wh": f.energy_difference_wh,
                "fields": [
                    {"name": d.name, "sink": d.sink, "local": d.local, "by": d.by}
                    for d in f.differences
                ],
            }
            for f in report.findings
        ],
        "summary": {
            **s.counts(),
            "local_energy_wh": s.local_energy_wh,
            "sink_energy_wh": s.sink_energy_wh,
            "refused": s.refused,
            "rewritten": s.rewritten,
            "deleted": s.deleted,
            "energy": {
                name: {
                    "local_wh": b.local_wh,
                    "sink_wh": b.sink_wh,
                    "difference_wh": b.difference_wh,
                }
                for name, b in s.energies().items()
            },
        },
    }
