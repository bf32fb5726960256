"""A gap across a meter event a person confirmed, estimated from their record.

When a meter is replaced during an outage, the registers read on either side
of the gap belong to two meters: the logger sees its register go back, records
the event and estimates nothing. A person who confirms the replacement with
the old meter's final count and the new one's first (`campus-energy
meter-event add … --old-final-kwh X --new-start-kwh Y`) gives what the
registers lacked: the gap counted (X − the read before) + (the read after − Y).
That estimate is put on the reading after the gap in the logger's store, where
it would have been had the meter not been replaced, under the same rules as
the logger's own estimates (`core.witness.across_event`: nothing backwards
beyond a register step, at most the meter's largest power over the gap, a gap
no longer than `max_estimate_gap_s`, import and export together). The
reading was published long ago: `campus-energy reconcile --apply` over the
gap's days writes the estimate into its windows.

A direction whose register has no confirmed counts in the gap is estimated
from its plain difference when that is plausible (a replacement with an
export register that counted nothing); otherwise nothing is estimated, and the
reason says which counts are missing.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from campus_energy.config import Config
from campus_energy.core.energy import UWH_PER_WH
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.resolution import from_steps
from campus_energy.core.witness import REGISTER_FIELDS, across_event, most_wh, register_specs
from campus_energy.logger.store import ReadingStore

# The register columns of `samples`, by direction (steps of core.resolution)
REGISTER_COLUMNS = {"import": "import_energy", "export": "export_energy"}


@dataclass(frozen=True)
class Gap:
    """A meter's unintegrated interval (start_ms, end_ms] and its two readings' registers."""

    start_ms: int
    end_ms: int
    seq: int  # the reading after the gap
    before: dict[str, float | None]  # direction -> the register read before the gap (Wh)
    after: dict[str, float | None]
    estimated: bool  # the reading after it carries an estimate already


@dataclass(frozen=True)
class Bridged:
    """The estimate put on the reading after the gap."""

    gap: Gap
    estimated_uwh: int
    estimated_export_uwh: int | None


@dataclass(frozen=True)
class NotBridged:
    """Why a gap that holds the event is not estimated."""

    gap: Gap | None
    reason: str


class GapBook(ReadingStore):
    """The logger's store, opened for one gap's estimate (no integrity check: doctor's job)."""

    integrity_budget_s = None

    async def gap_holding(self, meter_id: str, ts_ms: int) -> Gap | None:
        """The meter's gap whose interval holds `ts_ms`, with its two readings' registers."""
        columns = ", ".join(f"s.{c}" for c in REGISTER_COLUMNS.values())

        def work(conn: sqlite3.Connection) -> Gap | None:
            found = conn.execute(
                "SELECT g.start_ts_ms, g.end_ts_ms, m.id FROM gaps g JOIN meters m "
                "ON m.id = g.meter WHERE m.meter_id = ? AND g.start_ts_ms < ? "
                "AND g.end_ts_ms >= ? ORDER BY g.start_ts_ms DESC LIMIT 1",
                (meter_id, ts_ms, ts_ms),
            ).fetchone()
            if found is None:
                return None
            start, end, meter = found
            rows = {
                row[0]: row[1:]
                for row in conn.execute(
                    f"SELECT s.ts_ms, s.seq, s.estimated IS NOT NULL OR s.estimated_export IS "
                    f"NOT NULL, {columns} FROM samples s WHERE s.meter = ? AND s.ts_ms IN (?, ?)",
                    (meter, start, end),
                )
            }
            if start not in rows or end not in rows:
                return None  # a reading of it is gone (retention)
            names = list(REGISTER_COLUMNS)
            return Gap(
                start,
                end,
                int(rows[end][0]),
                _registers(names, rows[start][2:]),
                _registers(names, rows[end][2:]),
                bool(rows[end][1]),
            )

        return await self._call(work)

    async def put_estimate(
        self, meter_id: str, gap: Gap, imported: int, exported: int | None
    ) -> bool:
        """Put the estimate on the reading after the gap, unless it carries one already."""

        def work(conn: sqlite3.Connection) -> bool:
            with conn:
                changed = conn.execute(
                    "UPDATE samples SET estimated = ?, estimated_export = ? WHERE meter = "
                    "(SELECT id FROM meters WHERE meter_id = ?) AND ts_ms = ? "
                    "AND estimated IS NULL AND estimated_export IS NULL",
                    (imported, exported, meter_id, gap.end_ms),
                ).rowcount
            return bool(changed)

        return await self._call(work)


def _registers(names: Sequence[str], steps: Sequence[int | None]) -> dict[str, float | None]:
    return {
        name: from_steps(REGISTER_FIELDS[name], value)
        for name, value in zip(names, steps, strict=True)
    }


def _counts(events: Sequence[MeterEvent], gap: Gap, direction: str) -> MeterEvent | None:
    """The latest confirmed event in the gap with both counts for the direction's register."""
    found = [
        e
        for e in events
        if e.source == "confirmed"
        and e.register == REGISTER_FIELDS[direction]
        and gap.start_ms < e.ts_ms <= gap.end_ms
        and e.old_final_wh is not None
        and e.new_start_wh is not None
    ]
    return found[-1] if found else None


def estimate_gap(
    config: Config, meter_id: str, gap: Gap, events: Sequence[MeterEvent]
) -> Bridged | NotBridged:
    """The gap's estimate from the people's records of it and the registers around it."""
    meter = next(m for m in config.meters if m.id == meter_id)
    limit_w = config.power_limit_w(meter)
    specs = register_specs(config.profile_of(meter))
    span_s = (gap.end_ms - gap.start_ms) / 1000
    if gap.estimated:
        return NotBridged(gap, "the reading after the gap carries an estimate already")
    if not meter.estimate_gaps:
        return NotBridged(gap, f"meters.estimate_gaps is off for {meter_id}")
    if span_s > meter.max_estimate_gap_s:
        return NotBridged(
            gap,
            f"the gap is {span_s:g} s, longer than max_estimate_gap_s "
            f"({meter.max_estimate_gap_s:g})",
        )
    if limit_w is None:
        return NotBridged(gap, f"{meter_id} has no largest power (max_power_w) to judge a count by")
    counted: dict[str, float] = {}
    confirmed = False
    for direction, spec in specs.items():
        before, after = gap.before.get(direction), gap.after.get(direction)
        if before is None or after is None:
            continue  # not read on both sides: this direction says nothing
        record = _counts(events, gap, direction)
        if record is not None:
            assert record.old_final_wh is not None and record.new_start_wh is not None
            found = across_event(
                before,
                record.old_final_wh,
                record.new_start_wh,
                after,
                span_s=span_s,
                spec=spec,
                max_power_w=limit_w,
            )
            if found is None:
                return NotBridged(
                    gap,
                    f"{REGISTER_FIELDS[direction]}: {before:.1f} Wh before the gap, the old "
                    f"meter's final {record.old_final_wh:.1f} Wh, the new one's start "
                    f"{record.new_start_wh:.1f} Wh and {after:.1f} Wh after it do not add up to "
                    f"a count {limit_w:g} W can make in {span_s:g} s",
                )
            counted[direction] = found
            confirmed = True
            continue
        step = max(spec.resolution_wh(before), spec.resolution_wh(after))
        delta = after - before
        if not -step <= delta <= most_wh(limit_w, span_s) + 2 * step:
            return NotBridged(
                gap,
                f"{REGISTER_FIELDS[direction]} went from {before:.1f} Wh to {after:.1f} Wh across "
                f"the gap: record its counts too (--register {direction} --old-final-kwh X "
                "--new-start-kwh Y)",
            )
        counted[direction] = max(delta, 0.0)
    if not confirmed:
        return NotBridged(gap, "no confirmed event in the gap gives the old and new counts")
    total = sum(counted.values())
    if total > most_wh(limit_w, span_s) + 4 * max(
        specs[d].resolution_wh(gap.after[d] or 0.0) for d in counted
    ):
        return NotBridged(
            gap, f"{total:.1f} Wh is more than {limit_w:g} W can count in {span_s:g} s"
        )
    # held to what the meter can count in the gap, as the logger holds its own estimates (the
    # bridge refuses more): a count beyond it is the registers' rounding
    most = most_wh(limit_w, span_s)
    share = min(1.0, most / total) if total > 0 else 1.0
    imported = math.floor(counted.get("import", 0.0) * share * UWH_PER_WH)
    exported = math.floor(counted["export"] * share * UWH_PER_WH) if "export" in counted else None
    return Bridged(gap, imported, exported)


async def bridge_gap(config: Config, event: MeterEvent) -> Bridged | NotBridged | None:
    """Estimate the gap of the event's meter that holds its time, and put the estimate on the
    reading after it (None: no gap holds the event's time, so the meter's power was integrated
    throughout and nothing is to be estimated)."""
    book = GapBook(config.storage.path)
    try:
        gap = await book.gap_holding(event.meter_id, event.ts_ms)
        if gap is None:
            return None
        events = await book.meter_events(event.meter_id, since_ms=gap.start_ms, source="confirmed")
        found = estimate_gap(config, event.meter_id, gap, events)
        if isinstance(found, Bridged) and not await book.put_estimate(
            event.meter_id, gap, found.estimated_uwh, found.estimated_export_uwh
        ):
            return NotBridged(gap, "the reading after the gap carries an estimate already")
        return found
    finally:
        await book.close()
