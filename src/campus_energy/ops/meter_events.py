"""`campus-energy meter-event`: a meter's energy register replaced, reset, rolled over or jumping,
on the record.

  campus-energy meter-event add METER --kind replaced|reset|rollover|jump --at TIME
                                [--register import|export] [--old-final-kwh X]
                                [--new-start-kwh Y] [--note TEXT]
  campus-energy meter-event list [METER] [--since TIME] [--json]

The logger detects an event when a register goes backwards or jumps, records it in its store
(`storage.path`, table `meter_events`) and logs it once. `add` records one a person confirms,
with what they know: when it happened, the old meter's final count and the new one's first
(read off the meters), and a note. When the event lies in a gap of the meter's readings and
gives the old and new counts, the gap is estimated from them (`ops.event_gaps`) and the
estimate put on the reading after it; `reconcile --apply` writes it into the windows. A
running logger reads confirmed events within a minute:
a new start given for a register it has not read since sets where that register counts from
(no event is detected then). `add` may run while the logger runs (the store takes a second
writer; it waits while the logger commits).

TIME is ISO 8601: with an offset or a Z, or without one in the site's local time
(`site.timezone`), e.g. 2026-03-14T09:30 or 2026-03-14T04:00:00Z. The table shows the site's
local time; --json ISO 8601 UTC and Wh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.config import Config, load_config
from campus_energy.core.meter_events import EVENT_KINDS, MeterEvent
from campus_energy.core.timestamps import datetime_ms, iso_utc
from campus_energy.core.witness import REGISTER_FIELDS
from campus_energy.errors import EXIT_OK, StoreError, UsageError
from campus_energy.logger.store import ReadingStore
from campus_energy.ops.event_gaps import Bridged, NotBridged, bridge_gap

WH_PER_KWH = 1000.0
FUTURE_SLACK_MS = 60_000  # a clock a little ahead of this machine's is no reason to refuse


class EventBook(ReadingStore):
    """The logger's store, opened for its meter events: no integrity check of its readings
    (doctor's job), so a command stays quick on a store of gigabytes."""

    integrity_budget_s = None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _action(sub, "add", "record a meter event a person confirms")
    add.add_argument("meter", metavar="METER", help="a configured meter's id")
    add.add_argument("--kind", required=True, choices=EVENT_KINDS, help="what happened")
    add.add_argument(
        "--at", required=True, metavar="TIME", help="when: ISO 8601; without an offset: local time"
    )
    add.add_argument(
        "--register",
        choices=tuple(REGISTER_FIELDS),
        default="import",
        help="the register whose count starts again (default: import)",
    )
    add.add_argument("--old-final-kwh", type=str, metavar="X", help="the old meter's last count")
    add.add_argument("--new-start-kwh", type=str, metavar="Y", help="the new meter's first count")
    add.add_argument("--note", default="", help="anything else (serial numbers, who, why)")
    listing = _action(sub, "list", "the detected and confirmed meter events")
    listing.add_argument("meter", nargs="?", metavar="METER", help="one meter's (default: all)")
    listing.add_argument("--since", metavar="TIME", help="those at or after TIME only")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")


def _action(sub: Any, name: str, line: str) -> argparse.ArgumentParser:
    """An action's parser; `-c` and `-v` are taken after it too (suppressed defaults leave
    those given before it alone)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=line, description=line)
    parser.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                        help="configuration file")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    now_ms = int(time.time() * 1000)
    if args.action == "add":
        event = confirmed_event(args, config, now_ms)
        path = config.storage.path
        if not path.is_file():
            raise StoreError(
                f"store {path} does not exist: the logger (`campus-energy logger`) creates it"
            )
        (stored,) = asyncio.run(_record(path, event))
        print(stored.id)
        print(f"recorded: {_line(stored, config.site.zone)}", file=sys.stderr)
        bridged = asyncio.run(bridge_gap(config, stored))
        if bridged is not None:
            print(_bridged(bridged, stored.meter_id, config.site.zone), file=sys.stderr)
        return EXIT_OK
    since_ms = at_ms(args.since, config.site.zone, "--since") if args.since else None
    events = asyncio.run(_events(config.storage.path, args.meter, since_ms))
    if args.json:
        print(json.dumps([document(e) for e in events], indent=2, ensure_ascii=False))
    elif events:
        print(table(events, config.site.zone))
    else:
        print("No meter events.")
    return EXIT_OK


def confirmed_event(args: argparse.Namespace, config: Config, now_ms: int) -> MeterEvent:
    """The event the options describe, checked (UsageError naming the option)."""
    known = {m.id for m in config.meters}
    if args.meter not in known:
        raise UsageError(
            f"METER: no meter {args.meter!r} in the configuration (meters: "
            f"{', '.join(sorted(known)) or 'none'})"
        )
    ts_ms = at_ms(args.at, config.site.zone, "--at")
    if ts_ms > now_ms + FUTURE_SLACK_MS:
        raise UsageError(f"--at: {args.at} is in the future: an event records what happened")
    return MeterEvent(
        meter_id=args.meter,
        ts_ms=ts_ms,
        kind=args.kind,
        source="confirmed",
        register=REGISTER_FIELDS[args.register],
        old_final_wh=_kwh(args.old_final_kwh, "--old-final-kwh"),
        new_start_wh=_kwh(args.new_start_kwh, "--new-start-kwh"),
        note=args.note,
        recorded_ms=now_ms,
    )


def at_ms(text: str, zone: ZoneInfo, option: str) -> int:
    """Epoch ms of an ISO 8601 time; one without an offset is the site's local time (refused
    when the clocks skip it)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option}: not an ISO 8601 time: {text[:80]!r}") from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone)
        if local.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != moment:
            raise UsageError(f"{option}: {text} does not exist in {zone.key} (the clocks skip it)")
        moment = local
    return datetime_ms(moment)


def _kwh(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option}: not a number of kWh: {text[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option}: must be a finite count of kWh of at least 0, got {text}")
    return value * WH_PER_KWH


async def _record(path: Path, event: MeterEvent) -> list[MeterEvent]:
    book = EventBook(path)
    try:
        return await book.record_events([event])
    finally:
        await book.close()


async def _events(path: Path, meter_id: str | None, since_ms: int | None) -> list[MeterEvent]:
    if not path.is_file():
        return []  # no logger has run here: nothing was recorded
    book = EventBook(path)
    try:
        return await book.meter_events(meter_id, since_ms=since_ms)
    finally:
        await book.close()


# -- words ---------------------------------------------------------------------------------


def _bridged(found: Bridged | NotBridged, meter_id: str, zone: ZoneInfo) -> str:
    """What became of the gap the event lies in, in words."""
    gap = found.gap
    span = "" if gap is None else f" {_local(gap.start_ms, zone)} – {_local(gap.end_ms, zone)}"
    if isinstance(found, NotBridged):
        return f"the gap{span} is not estimated: {found.reason}"
    assert gap is not None
    exported = (
        ""
        if found.estimated_export_uwh is None
        else f", {found.estimated_export_uwh / 1e6:.1f} Wh exported"
    )
    day = datetime.fromtimestamp(gap.start_ms / 1000, zone).date().isoformat()
    last = datetime.fromtimestamp(gap.end_ms / 1000, zone).date().isoformat()
    return (
        f"the gap{span} across it is estimated: {found.estimated_uwh / 1e6:.1f} Wh imported"
        f"{exported}, put on its reading (seq {gap.seq}); write it into the windows with "
        f"`campus-energy reconcile --start {day} --end {last} --meter {meter_id} --apply`"
    )


def _local(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _kwh_text(wh: float | None) -> str:
    return "—" if wh is None else f"{wh / WH_PER_KWH:.3f}"


def _line(event: MeterEvent, zone: ZoneInfo) -> str:
    known = [
        f"{name} {_kwh_text(wh)} kWh"
        for name, wh in (("old final", event.old_final_wh), ("new start", event.new_start_wh))
        if wh is not None
    ]
    details = f" ({', '.join(known)})" if known else ""
    return (
        f"meter event {event.id}: {event.meter_id} {event.register} {event.kind} at "
        f"{_local(event.ts_ms, zone)}{details}, {event.source}"
    )


COLUMNS = (
    "ID",
    "AT",
    "METER",
    "KIND",
    "SOURCE",
    "REGISTER",
    "BEFORE kWh",
    "AFTER kWh",
    "OLD FINAL kWh",
    "NEW START kWh",
    "NOTE",
)


def table(events: Sequence[MeterEvent], zone: ZoneInfo) -> str:
    cells = [
        [
            str(e.id),
            _local(e.ts_ms, zone),
            e.meter_id,
            e.kind,
            e.source,
            e.register,
            _kwh_text(e.before_wh),
            _kwh_text(e.after_wh),
            _kwh_text(e.old_final_wh),
            _kwh_text(e.new_start_wh),
            e.note,
        ]
        for e in events
    ]
    rows = [list(COLUMNS), *cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def document(event: MeterEvent) -> dict[str, Any]:
    """An event as JSON: times ISO 8601 UTC, counts in Wh."""
    return {
        "id": event.id,
        "meter_id": event.meter_id,
        "at": iso_utc(event.ts_ms),
        "kind": event.kind,
        "source": event.source,
        "register": event.register,
        "before_wh": event.before_wh,
        "after_wh": event.after_wh,
        "old_final_wh": event.old_final_wh,
        "new_start_wh": event.new_start_wh,
        "note": event.note,
        "recorded": iso_utc(event.recorded_ms) if event.recorded_ms is not None else None,
    }
