"""Find and repair timestamp corruption in the logger's store.

A dry run by default: for each meter, what is wrong (readings stamped before
the clock was set or ahead of it, local time stored as UTC, seconds or text
where milliseconds belong, spans out of order, duplicates), how many readings,
where they would move and what becomes of their energy. Nothing is written.
An interval whose reading carries an estimate of the gap before it (what the
meter's registers counted) stays a gap however short the repair makes it: the
estimate covers it, and the report names those readings.

The store's pages are checked first (`PRAGMA quick_check`): a damaged file is
reported with the way to rebuild it, and nothing else is done (exit code 1).

--apply needs the logger stopped: the store is opened exclusively (refused
while any other process has it open), copied with SQLite's online backup (next
to it with a UTC time suffix, or to --backup PATH), and every change is made in
one transaction.

--reorder rewrites a store made before schema 2, which keeps its readings by
meter, in time order (after the repairs, with the same backup), so that the
logger's commits append instead of touching a page per meter: a fraction of
the bytes written to an SD card. The readings and every value stay as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campus_energy.config import Config, load_config
from campus_energy.core.days import midnight_ms
from campus_energy.core.repair.apply import Change, edge_before, retime_rows
from campus_energy.core.repair.plan import EnergyFix, RunPlan, plan_meter
from campus_energy.core.repair.stamps import NOT_BEFORE_MS, Fmt, Rules, typical_interval_ms
from campus_energy.core.repair.survey import Edge, Surveyor
from campus_energy.core.timestamps import epoch_ms, iso_seconds, iso_utc, utc_datetime
from campus_energy.errors import EXIT_FAILURE, EXIT_OK, UsageError
from campus_energy.ops.fixdb.offline_store import OfflineStore, Repair, StoredMeter, failure

AHEAD_SLACK_MS = 86_400_000  # stamps later than now + a day come from a clock set ahead
DEFAULT_INTERVAL_MS = 5_000
GAP_INTERVALS = 3.5  # MeterConfig.gap_limit_s's default: three intervals and a half


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--apply",
        action="store_true",
        help="make the changes, after a backup (the logger must be stopped); default: report only",
    )
    parser.add_argument(
        "--backup",
        type=Path,
        metavar="PATH",
        help="where --apply copies the store first (default: next to it, named with the UTC time)",
    )
    parser.add_argument(
        "--db", type=Path, metavar="PATH", help="the store file (default: storage.path)"
    )
    parser.add_argument(
        "--reorder",
        action="store_true",
        help="with --apply: rewrite a store kept by meter (made before schema 2) in time order",
    )
    parser.add_argument(
        "--timezone",
        metavar="ZONE",
        help="the zone of local-time stamps (default: site.timezone)",
    )
    parser.add_argument(
        "--not-before",
        metavar="DAY",
        default=utc_datetime(NOT_BEFORE_MS).date().isoformat(),
        help="stamps before this UTC day come from a clock never set (default: %(default)s)",
    )


@dataclass(frozen=True)
class MeterReport:
    repair: Repair
    rules: Rules
    interval_source: str
    rejects_outside: int
    directions: bool = True  # the store keeps export apart (schema 3); else signed energy

    @property
    def meter(self) -> StoredMeter:
        return self.repair.meter

    @property
    def estimated(self) -> tuple[int, ...]:
        """The readings whose interval the repair makes short enough to integrate, but whose
        estimate of the gap before them covers it: it stays a gap."""
        return tuple(f.seq for f in self.repair.fixes if f.estimated)

    @property
    def to_apply(self) -> bool:
        plan = self.repair.plan
        return plan.refused is None and not plan.empty


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    path: Path = args.db if args.db is not None else config.storage.path
    zone = _zone(args.timezone) if args.timezone else config.site.zone
    not_before = _day_ms("--not-before", args.not_before)
    if args.backup is not None and not args.apply:
        raise UsageError("--backup goes with --apply")
    if args.reorder and not args.apply:
        raise UsageError("--reorder goes with --apply (a dry run says whether it is needed)")
    now_ms = epoch_ms(time.time())
    busy = not args.apply and OfflineStore.in_use(path)
    store = OfflineStore.open(path, exclusive=args.apply)
    try:
        store.check_integrity()
        reports = [
            survey_meter(store, meter, config, zone, not_before, now_ms) for meter in store.meters()
        ]
        print(header(path, store.count(), reports, zone, args.apply, busy))
        for report in reports:
            print(describe(report))
        print(summary(reports))
        by_meter = not store.time_ordered()
        if by_meter and not args.reorder:
            print(
                "order: the store keeps its readings by meter (made before schema 2); "
                "--reorder --apply rewrites them in time order, so the logger writes a "
                "fraction of the bytes per cycle (docs/deployment.md)"
            )
        work = [r.repair for r in reports if r.to_apply]
        reorder = args.reorder and by_meter
        if args.apply and (work or reorder):
            backup: Path = args.backup or path.with_name(
                f"{path.name}.{utc_datetime(now_ms):%Y%m%dT%H%M%SZ}.bak"
            )
            store.backup(backup)
            print(f"backup: {backup} (SQLite online backup, checked)")
            if work:
                store.apply(work, note(reports, backup, now_ms))
                print(f"repaired {_count_of(len(work), 'meter')} in one transaction")
            if reorder:
                copied = store.reorder()
                print(f"reordered: {_count_of(copied, 'reading')} rewritten in time order")
        elif args.apply:
            print("nothing to repair: no backup made, nothing changed")
    except sqlite3.Error as exc:  # damage quick_check cannot see, met while reading
        raise failure(path, exc) from None
    finally:
        store.close()
    refused = any(r.repair.plan.refused for r in reports)
    return EXIT_FAILURE if args.apply and refused else EXIT_OK


def survey_meter(
    store: OfflineStore,
    meter: StoredMeter,
    config: Config,
    zone: ZoneInfo,
    not_before_ms: int,
    now_ms: int,
) -> MeterReport:
    """One meter's readings surveyed, its plan, and the readings that move one by one."""
    try:
        configured = config.meter(meter.meter_id)
    except KeyError:
        estimate = typical_interval_ms(store.recent_points(meter.key))
        interval_ms = estimate or DEFAULT_INTERVAL_MS
        max_gap_s = GAP_INTERVALS * interval_ms / 1000
        source = "estimated from its readings" if estimate else "assumed"
    else:
        interval_ms = round(configured.interval_s * 1000)
        max_gap_s = configured.gap_limit_s
        source = "configured"
    rules = Rules(interval_ms, max_gap_s, zone, not_before_ms, now_ms + AHEAD_SLACK_MS)
    surveyor = Surveyor(rules)
    for row in store.rows(meter.key):
        surveyor.add(row)
    plan = plan_meter(surveyor.finish(), rules)
    skip = frozenset(plan.duplicates)
    changes: list[Change] = []
    for index, run_plan in enumerate(plan.runs):
        if run_plan.retime.per_row:
            first, last = run_plan.run.first.seq, run_plan.run.last.seq
            rows = store.rows_between(meter.key, first, last, skip)
            changes.extend(retime_rows(run_plan, edge_before(plan.runs, index), rows, rules))
    assert rules.not_after_ms is not None
    rejects = store.rejects_outside(meter.key, not_before_ms, rules.not_after_ms)
    repair = Repair(meter, plan, tuple(changes))
    return MeterReport(repair, rules, source, rejects, store.directions)


# -- the report ------------------------------------------------------------------------------


def header(
    path: Path, count: int, reports: Sequence[MeterReport], zone: ZoneInfo, apply: bool, busy: bool
) -> str:
    lines = [f"store {path}: {_count_of(len(reports), 'meter')}, {_count_of(count, 'reading')}"]
    if reports:
        rules = reports[0].rules
        assert rules.not_after_ms is not None
        lines.append(
            f"  site zone {zone.key}; stamps before {_when(rules.not_before_ms)} or after "
            f"{_when(rules.not_after_ms)} count as wrong"
        )
    if not apply:
        lines.append("  dry run: nothing is changed (--apply makes the changes, after a backup)")
    if busy:
        lines.append(
            "  note: another process has the store open (the logger?): this is a snapshot, and "
            "--apply refuses until it is stopped"
        )
    return "\n".join(lines)


def describe(report: MeterReport) -> str:
    repair, rules, plan = report.repair, report.rules, report.repair.plan
    lines = [
        f"meter {report.meter.meter_id} (poll interval {rules.interval_ms / 1000:g} s, "
        f"{report.interval_source}; max gap {rules.max_gap_s:g} s):"
    ]
    if plan.refused is not None:
        lines[0] += f" cannot be repaired automatically: {plan.refused}; left as it is"
        return "\n".join(lines)
    if plan.empty:
        lines[0] += " no problems found"
    for run_plan in plan.moving:
        lines.extend(_run_lines(run_plan, rules))
    if plan.duplicates:
        lines.append(f"  - duplicates: {len(plan.duplicates):,} extra copies of readings, removed")
    if repair.fixes:
        lines.extend(_energy_lines(repair.fixes, report.directions))
    lines.extend(f"  note: {notice}" for notice in plan.notices)
    if report.estimated:
        seqs = ", ".join(str(seq) for seq in report.estimated[:5])
        more = " …" if len(report.estimated) > 5 else ""
        lines.append(
            f"  note: the readings at seq {seqs}{more} carry an estimate of the gap before "
            "them (the registers' difference); the repair makes that interval short enough to "
            "integrate, but leaves it a gap, which the estimate covers: measured energy over it "
            "would count it twice. Check whether the outage was as short as the repair puts it"
        )
    if report.rejects_outside:
        lines.append(
            f"  note: {report.rejects_outside:,} refused readings (table rejects) carry wrong "
            "stamps too; they are left as they are"
        )
    lines.extend(_outbox_lines(report))
    return "\n".join(lines)


def _energy_lines(fixes: Sequence[EnergyFix], directions: bool) -> list[str]:
    """What becomes of the energy of the readings whose interval changed, by direction (a
    store made before schema 3 keeps the net, as its logger integrated it)."""
    before = sum(f.old_uwh for f in fixes) / 1e6
    if directions:
        after = sum(f.new_uwh for f in fixes) / 1e6
    else:
        after = sum(f.new_uwh - f.new_export_uwh for f in fixes) / 1e6
    moved = (
        f"cumulative totals from seq {fixes[0].seq} on move by {after - before:+.6f} Wh"
        if after != before
        else "cumulative totals unchanged"
    )
    lines = [
        f"  energy: recomputed for {_count_of(len(fixes), 'reading')} whose interval changed: "
        f"{before:.6f} Wh before, {after:.6f} Wh after; {moved}"
    ]
    export_before = sum(f.old_export_uwh for f in fixes) / 1e6
    export_after = sum(f.new_export_uwh for f in fixes) / 1e6
    if directions and (export_before or export_after):
        moved = (
            f"cumulative export from seq {fixes[0].seq} on moves by "
            f"{export_after - export_before:+.6f} Wh"
            if export_after != export_before
            else "cumulative export unchanged"
        )
        lines.append(
            f"  export: {export_before:.6f} Wh before, {export_after:.6f} Wh after; {moved}"
        )
    return lines


def _run_lines(plan: RunPlan, rules: Rules) -> list[str]:
    run = plan.run
    lines = [
        f"  - {', '.join(plan.kinds)}: {_count_of(run.count, 'reading')} "
        f"(seq {run.first.seq}–{run.last.seq})",
        f"      stamped {_stamp(run.first, run.fmt)} … {_stamp(run.last, run.fmt)}",
    ]
    how: list[str] = []
    if plan.retime.per_row:
        how.append("converted reading by reading")
    if plan.zone_shift_ms is not None:
        how.append(f"{_duration(plan.zone_shift_ms)}: the site zone's UTC offset taken off")
    shift = plan.new_first - run.first.ms
    if plan.anchor_seq is not None:
        how.append(
            f"{_duration(shift)}: re-anchored to seq {plan.anchor_seq} at "
            f"{rules.interval_ms / 1000:g} s per reading"
        )
    elif not how:
        how.append(_duration(shift))
    lines.append(
        f"      moves to {_when(plan.new_first)} … {_when(plan.new_last)} ({'; '.join(how)})"
    )
    return lines


def _outbox_lines(report: MeterReport) -> list[str]:
    meter, plan = report.meter, report.repair.plan
    published = [p for p in plan.moving if p.run.first.seq <= meter.published_seq]
    if not published:
        if plan.moving:
            return ["  outbox: none of these readings was published yet: they go out as repaired"]
        return []
    spans = [(p.new_first, p.new_last) for p in published]
    spans += [(f.start_ms, f.ts_ms) for f in report.repair.fixes]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    end_s = -(-(end + 1) // 1000)
    return [
        f"  outbox: readings up to seq {meter.published_seq} were published with their old stamps,",
        "    so the windows they went into are wrong; after --apply rebuild the repaired span:",
        f"      campus-energy reconcile --start {iso_seconds(start)} "
        f"--end {iso_seconds(end_s * 1000)} --meter {meter.meter_id} --apply",
        "    (windows at the old stamps: reconcile --apply deletes those inside the store's span",
        "    that no reading is behind, and lists the rest)",
    ]


def summary(reports: Sequence[MeterReport]) -> str:
    work = [r for r in reports if r.to_apply]
    refused = [r for r in reports if r.repair.plan.refused is not None]
    retimed = sum(p.run.count for r in work for p in r.repair.plan.moving)
    removed = sum(len(r.repair.plan.duplicates) for r in work)
    fixed = sum(len(r.repair.fixes) for r in work)
    text = (
        f"summary: {len(work)} of {_count_of(len(reports), 'meter')} to repair: "
        f"{_count_of(retimed, 'reading')} retimed, {removed:,} removed, "
        f"energy recomputed for {fixed:,}"
    )
    if refused:
        text += f"; {len(refused)} cannot be repaired automatically"
    return text


def note(reports: Sequence[MeterReport], backup: Path, now_ms: int) -> str:
    """What the store's meta table keeps of the repair."""
    return json.dumps(
        {
            "at": iso_utc(now_ms),
            "backup": str(backup),
            "meters": {
                r.meter.meter_id: {
                    "kinds": sorted({k for p in r.repair.plan.moving for k in p.kinds}),
                    "retimed": sum(p.run.count for p in r.repair.plan.moving),
                    "removed": len(r.repair.plan.duplicates),
                }
                for r in reports
                if r.to_apply
            },
        },
        sort_keys=True,
    )


def _count_of(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _stamp(edge: Edge, fmt: Fmt) -> str:
    return _when(edge.ms) if fmt is Fmt.MS else repr(edge.raw)


def _when(ms: int) -> str:
    try:
        return iso_utc(ms)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def _duration(ms: int) -> str:
    sign = "−" if ms < 0 else "+"
    rest, milli = divmod(abs(ms), 1000)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}" + (f".{milli:03d}" if milli else "")
    return f"{sign}{days} d {text}" if days else f"{sign}{text}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown IANA time zone {name!r}") from None


def _day_ms(option: str, text: str) -> int:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: expected a day (YYYY-MM-DD), got {text!r}") from None
    return midnight_ms(day, UTC)
