"""Import a database of the original deployment into the logger's store (storage.path).

Its `meter_readings` rows carry local-time text stamps (--timezone names the
zone they were written in) and power in kW with the sign inverted; they become
readings of our store: UTC milliseconds, power in W (checked against the data,
see --power-unit and --power-sign), energy recomputed with our integrator over
the time between the stamps, building and floor from `meter_hierarchy`.

The file is read twice, a few thousand rows at a time: first to count, check
and report (all that --dry-run does), then to write. Imported readings take the
sequence numbers …, -2, -1, 0 and cumulative totals that end at 0 Wh with the
newest of them, so the logger's own readings (sequence 1 on, total from 0)
continue them, and a second import of the same file adds nothing. They are
marked as delivered: the logger never publishes them (rebuild their windows
with `campus-energy reconcile`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campus_energy.config import Config, load_config
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import iso_utc
from campus_energy.errors import EXIT_FAILURE, EXIT_OK, StoreError, UsageError
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.ops.legacy_import.convert import (
    Imported,
    PowerRule,
    Skipped,
    Timed,
    decide_power,
    integrate,
    parse_meter_map,
    slug,
    timeline,
    typical_step_ms,
)
from campus_energy.ops.legacy_import.database import LegacyDatabase

HEAD = 100  # a meter's first readings, to find its interval when it is not configured
LEGACY_INTERVAL_MS = 5_000  # the original logger's poll interval
GAP_INTERVALS = 3.5  # MeterConfig.gap_limit_s's default: three intervals and a half
BATCH = 5_000


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("legacy", type=Path, metavar="OLD.db", help="the original SQLite file")
    parser.add_argument(
        "--timezone",
        required=True,
        metavar="ZONE",
        help="the zone its local-time stamps were written in (e.g. Asia/Kolkata)",
    )
    parser.add_argument(
        "--meter-map",
        type=Path,
        metavar="FILE",
        help="legacy id → our id, TOML or CSV (an empty id leaves a meter out); "
        "default: the legacy id made into one of ours (lower case, a-z 0-9 - _)",
    )
    parser.add_argument(
        "--power-unit",
        choices=["auto", "kW", "W"],
        default="auto",
        help="unit of the stored power (auto: compared with voltage × current; kW if unknown)",
    )
    parser.add_argument(
        "--power-sign",
        choices=["auto", "inverted", "as-stored"],
        default="auto",
        help="auto: inverted when most readings are negative (a campus imports energy); "
        "inverted if unknown",
    )
    parser.add_argument("--dry-run", action="store_true", help="report only; write nothing")


@dataclass
class Tally:
    """One legacy meter: what its rows become."""

    legacy_id: str
    meter_id: str
    interval_ms: int = LEGACY_INTERVAL_MS
    interval_source: str = "assumed"
    max_gap_s: float = GAP_INTERVALS * LEGACY_INTERVAL_MS / 1000
    rows: int = 0
    readings: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    overlap: int = 0  # at or after the store's own first reading of the meter
    repeated_hour: int = 0
    gaps: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    ours_uwh: int = 0  # imported
    ours_export_uwh: int = 0
    legacy_wh: float = 0.0  # the legacy logger's signed interval energies: a net
    refused: str | None = None
    inserted: int | None = None


@dataclass(frozen=True)
class Existing:
    """What the store holds of a meter already."""

    own_from_ms: int | None  # its first reading of the logger's own (seq >= 1)
    imported: int
    imported_first_ms: int | None
    imported_last_ms: int | None
    imported_first_seq: int | None


@dataclass(frozen=True)
class Job:
    """One import: the file, how to read it, and what the store holds already."""

    legacy: LegacyDatabase
    tallies: dict[str, Tally]
    zone: ZoneInfo
    rule: PowerRule
    config: Config
    existing: dict[str, Existing]
    hierarchy: dict[str, tuple[str, str]] | None


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown IANA time zone {args.timezone!r}") from None
    mapping = _read_map(args.meter_map) if args.meter_map is not None else {}
    store_path = config.storage.path
    if args.legacy.is_dir():
        raise UsageError(f"{args.legacy} is a folder: name the original deployment's database file")
    if not args.legacy.is_file():
        raise UsageError(f"{args.legacy}: no such file")
    if store_path.exists() and args.legacy.resolve() == store_path.resolve():
        raise UsageError(f"{args.legacy} is the store itself (storage.path)")
    legacy = LegacyDatabase(args.legacy)
    try:
        counts = legacy.meters()
        targets = _targets(counts, mapping)
        hierarchy = legacy.hierarchy()
        rule = decide_power(legacy.power_sample(), args.power_unit, args.power_sign)
        existing = asyncio.run(_existing(store_path)) if store_path.exists() else {}
        tallies = {
            legacy_id: Tally(legacy_id, meter_id)
            for legacy_id, meter_id in targets.items()
            if meter_id is not None
        }
        job = Job(legacy, tallies, zone, rule, config, existing, hierarchy)
        for tally, items in _streams(job):
            for _ in _count(tally, items):
                pass
            _judge(tally, existing.get(tally.meter_id))
        if not args.dry_run:
            asyncio.run(_write(store_path, job))
        print(_header(args, store_path, rule, hierarchy, zone))
        for legacy_id in counts:
            if legacy_id in tallies:
                print(_describe(tallies[legacy_id], config, hierarchy))
            else:
                why = "by --meter-map" if legacy_id in mapping else "no usable id: map it"
                print(f"legacy meter {legacy_id!r}: left out ({why})")
        print(_summary(tallies.values(), args.dry_run, config))
    finally:
        legacy.close()
    return EXIT_FAILURE if any(t.refused for t in tallies.values()) else EXIT_OK


def _read_map(path: Path) -> dict[str, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--meter-map: cannot read {path}: {reason}") from None
    try:
        return parse_meter_map(text, csv_format=path.suffix.lower() == ".csv")
    except ValueError as exc:
        raise UsageError(f"--meter-map {path}: {exc}") from None


def _targets(counts: Mapping[str, int], mapping: Mapping[str, str | None]) -> dict[str, str | None]:
    """legacy id → our id (None: left out); two legacy meters never share one of ours."""
    targets = {m: mapping[m] if m in mapping else (slug(m) or None) for m in counts}
    owners: dict[str, str] = {}
    for legacy_id, meter_id in targets.items():
        if meter_id is None:
            continue
        if meter_id in owners:
            raise UsageError(
                f"legacy meters {owners[meter_id]!r} and {legacy_id!r} would both become "
                f"{meter_id!r}: give them ids of their own in --meter-map"
            )
        owners[meter_id] = legacy_id
    return targets


async def _existing(path: Path) -> dict[str, Existing]:
    store = ReadingStore(path)
    try:
        rows = await store.query(
            "SELECT m.meter_id, "
            "(SELECT min(ts_ms) FROM samples s WHERE s.meter = m.id AND s.seq >= 1), "
            "(SELECT count(*) FROM samples s WHERE s.meter = m.id AND s.seq <= 0), "
            "(SELECT min(ts_ms) FROM samples s WHERE s.meter = m.id AND s.seq <= 0), "
            "(SELECT max(ts_ms) FROM samples s WHERE s.meter = m.id AND s.seq <= 0), "
            "(SELECT min(seq) FROM samples s WHERE s.meter = m.id AND s.seq <= 0) "
            "FROM meters m"
        )
    finally:
        await store.close()
    return {row[0]: Existing(*row[1:]) for row in rows}


def _streams(job: Job) -> Iterator[tuple[Tally, Iterator[Imported | Skipped | None]]]:
    """Each imported legacy meter with its rows as our readings (the same on every reading)."""
    for legacy_id, rows in itertools.groupby(job.legacy.rows(), key=lambda r: r.meter_id):
        tally = job.tallies.get(legacy_id)
        if tally is None:
            continue
        items = timeline(rows, job.zone)
        head = list(itertools.islice(items, HEAD))
        _settings(tally, job.config, [i.ts_ms for i in head if isinstance(i, Timed)])
        own = job.existing.get(tally.meter_id)
        cutoff = None if own is None else own.own_from_ms
        readings = integrate(itertools.chain(head, items), job.rule, tally.max_gap_s)
        yield tally, _before(readings, cutoff)


def _settings(tally: Tally, config: Config, times: list[int]) -> None:
    try:
        meter = config.meter(tally.meter_id)
    except KeyError:
        estimate = typical_step_ms(times)
        tally.interval_ms = estimate or LEGACY_INTERVAL_MS
        tally.interval_source = "estimated from its stamps" if estimate else "assumed"
        tally.max_gap_s = GAP_INTERVALS * tally.interval_ms / 1000
    else:
        tally.interval_ms = round(meter.interval_s * 1000)
        tally.interval_source = "configured"
        tally.max_gap_s = meter.gap_limit_s


def _before(
    items: Iterable[Imported | Skipped], cutoff: int | None
) -> Iterator[Imported | Skipped | None]:
    """The readings earlier than the store's own first one; None for each later one."""
    for item in items:
        yield (
            None
            if isinstance(item, Imported) and cutoff is not None and item.ts_ms >= cutoff
            else item
        )


def _count(tally: Tally, items: Iterable[Imported | Skipped | None]) -> Iterator[Imported]:
    """Tally every row; pass on the readings to import."""
    for item in items:
        tally.rows += 1
        if item is None:
            tally.overlap += 1
        elif isinstance(item, Skipped):
            tally.skipped[item.reason] += 1
        else:
            tally.readings += 1
            tally.ours_uwh += item.energy_uwh
            tally.ours_export_uwh += item.export_uwh
            tally.legacy_wh += item.legacy_wh or 0.0
            tally.repeated_hour += item.repeated_hour
            tally.gaps += item.gap
            tally.first_ms = item.ts_ms if tally.first_ms is None else tally.first_ms
            tally.last_ms = item.ts_ms
            yield item


def _judge(tally: Tally, existing: Existing | None) -> None:
    """Refuse a meter that holds readings imported from other data (their seqs would clash);
    an earlier import of this same data, whole or cut short, is simply completed."""
    if existing is None or not existing.imported or not tally.readings:
        return
    assert tally.last_ms is not None and existing.imported_last_ms is not None
    same = (
        existing.imported_first_ms == tally.first_ms
        and existing.imported_first_seq == 1 - tally.readings
        and existing.imported_last_ms <= tally.last_ms
    )
    if not same:
        tally.refused = (
            f"the store holds {existing.imported:,} readings of {tally.meter_id} imported from "
            f"other data ({_when(existing.imported_first_ms)} … "
            f"{_when(existing.imported_last_ms)}); nothing imported. To replace them, delete "
            "them first: DELETE FROM samples WHERE seq <= 0 AND meter = "
            f"(SELECT id FROM meters WHERE meter_id = '{tally.meter_id}')"
        )


async def _write(store_path: Path, job: Job) -> None:
    """The second reading of the file: number the readings and insert them, a batch at a time."""
    store = ReadingStore(store_path)
    try:
        known = {r.meter_id for r in await store.meter_records()}
        await store.register(
            _record(t, job.config, job.hierarchy)
            for t in job.tallies.values()
            if t.meter_id not in known
        )
        for tally, items in _streams(job):
            if tally.refused is None and tally.readings:
                tally.inserted = await _insert(store, tally, items)
    finally:
        await store.close()


async def _insert(
    store: ReadingStore, tally: Tally, items: Iterable[Imported | Skipped | None]
) -> int:
    """Number one meter's readings (…, -1, 0; totals of import and export ending at 0 Wh)
    and insert them."""
    inserted = 0
    pending: list[Reading] = []
    gaps: list[tuple[str, int, int]] = []
    seq, total, previous = 1 - tally.readings, -tally.ours_uwh, None
    exported = -tally.ours_export_uwh
    for item in _count(Tally(tally.legacy_id, tally.meter_id), items):
        total += item.energy_uwh
        exported += item.export_uwh
        pending.append(
            Reading(
                tally.meter_id,
                item.ts_ms,
                seq,
                item.energy_uwh,
                total,
                item.values,
                export_uwh=item.export_uwh,
                export_total_uwh=exported,
            )
        )
        if item.gap and previous is not None:
            gaps.append((tally.meter_id, previous, item.ts_ms))
        seq, previous = seq + 1, item.ts_ms
        if len(pending) >= BATCH:
            inserted += await store.insert_history(pending, gaps)
            pending, gaps = [], []
    if pending:
        inserted += await store.insert_history(pending, gaps)
    if total != 0 or exported != 0 or seq != 1:
        raise StoreError(f"{tally.legacy_id}: the file changed while it was read")
    return inserted


def _record(
    tally: Tally, config: Config, hierarchy: Mapping[str, tuple[str, str]] | None
) -> MeterRecord:
    try:
        meter = config.meter(tally.meter_id)
    except KeyError:
        block, lab = (hierarchy or {}).get(tally.legacy_id, ("", ""))
        return MeterRecord(tally.meter_id, block, lab)
    return MeterRecord(meter.id, meter.building, meter.floor, meter.profile)


# -- the report ------------------------------------------------------------------------------


def _header(
    args: argparse.Namespace,
    store_path: Path,
    rule: PowerRule,
    hierarchy: Mapping[str, tuple[str, str]] | None,
    zone: ZoneInfo,
) -> str:
    sign = "sign inverted" if rule.inverted else "sign as stored"
    lines = [
        f"import {args.legacy} into store {store_path}"
        + (" (dry run: nothing is written)" if args.dry_run else ""),
        f"  stamps: local time in {zone.key}, turned into UTC",
        f"  power: in {rule.unit}, {sign} ({rule.evidence})",
        "  meter_hierarchy: "
        + (
            f"{len(hierarchy)} meters (block_name → building, lab_name → floor)"
            if hierarchy is not None
            else "not in the file (building and floor from the configuration, else empty)"
        ),
    ]
    return "\n".join(lines)


def _describe(tally: Tally, config: Config, hierarchy: Mapping[str, tuple[str, str]] | None) -> str:
    legacy_id, meter_id = tally.legacy_id, tally.meter_id
    record = _record(tally, config, hierarchy)
    where = f"building {record.building!r}, floor {record.floor!r}"
    configured = "configured" if tally.interval_source == "configured" else "not configured"
    lines = [
        f"legacy meter {legacy_id!r} → {meter_id} ({where}; {configured}; interval "
        f"{tally.interval_ms / 1000:g} s {tally.interval_source}, max gap {tally.max_gap_s:g} s)"
    ]
    skipped = sum(tally.skipped.values()) + tally.overlap
    line = f"  rows {tally.rows:,}: {tally.readings:,} to import, {skipped:,} skipped"
    reasons = [f"{n:,} {why}" for why, n in sorted(tally.skipped.items())]
    if tally.overlap:
        reasons.append(f"{tally.overlap:,} at or after the store's own readings of the meter")
    lines.append(line + (f" ({'; '.join(reasons)})" if reasons else ""))
    if tally.readings:
        lines.append(
            f"  UTC {_when(tally.first_ms)} … {_when(tally.last_ms)}; {tally.gaps:,} gaps longer "
            f"than {tally.max_gap_s:g} s (no energy across them)"
        )
        if tally.repeated_hour:
            lines.append(
                f"  {tally.repeated_hour:,} stamps in a repeated autumn hour, placed by the order "
                "they were written in"
            )
        ours = (tally.ours_uwh - tally.ours_export_uwh) / 1e6  # a net, as the legacy's
        diff = (
            f"{(ours - tally.legacy_wh) / abs(tally.legacy_wh):+.2%}" if tally.legacy_wh else "n/a"
        )
        lines.append(
            f"  energy: legacy Σ energy_wh_interval {tally.legacy_wh:,.3f} Wh, ours (trapezoid "
            f"over the time between stamps) {ours:,.3f} Wh, difference {diff}"
        )
        if tally.ours_export_uwh:
            lines.append(
                f"  of ours, import {tally.ours_uwh / 1e6:,.3f} Wh and export "
                f"{tally.ours_export_uwh / 1e6:,.3f} Wh (the power below zero)"
            )
    if tally.refused is not None:
        lines.append(f"  refused: {tally.refused}")
    elif tally.inserted is not None:
        stored = tally.readings - tally.inserted
        lines.append(f"  written: {tally.inserted:,} readings ({stored:,} were stored already)")
    return "\n".join(lines)


def _summary(tallies: Iterable[Tally], dry_run: bool, config: Config) -> str:
    done = [t for t in tallies if t.refused is None and t.readings]
    readings = sum(t.readings for t in done)
    verb = "to import" if dry_run else "imported"
    lines = [f"summary: {_count_of(len(done), 'meter')}, {_count_of(readings, 'reading')} {verb}"]
    if not done:
        return lines[0]
    first = min(t.first_ms for t in done if t.first_ms is not None)
    last = max(t.last_ms for t in done if t.last_ms is not None)
    lines += [
        "imported readings are marked as delivered, so the logger never publishes them; "
        "to build their windows in the sink" + (" after the import" if dry_run else "") + ", run:",
        f"  campus-energy reconcile --start {iso_utc(first)[:19]}Z "
        f"--end {iso_utc(last + 1000)[:19]}Z --apply",
    ]
    days = config.storage.retention_days
    if days is not None and first < (time.time() - days * 86_400) * 1000:
        lines.append(
            f"note: storage.retention_days = {days}: the logger deletes readings older than that, "
            "imported ones included"
        )
    return "\n".join(lines)


def _count_of(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(ms: int | None) -> str:
    return "—" if ms is None else iso_utc(ms)
