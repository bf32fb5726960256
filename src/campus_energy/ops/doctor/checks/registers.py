"""The meters' energy registers as the logger's store records them: meter events no person has
confirmed, and how much of each meter's recent energy was estimated across gaps.

A register replaced, reset, rolled over or jumping is detected by the logger and kept in the
store's `meter_events`; a person confirms it with `campus-energy meter-event add`, which puts
the old meter's final count and the new one's first on the record. A detected event without a
confirmation within `CONFIRMED_WITHIN_S` of it is a warning. Estimated energy (a gap bridged by
the registers) is fine in small amounts; a meter with more than `ESTIMATED_WARN_SHARE` of its
last day's import estimated is losing polls.

Read-only, with a deadline, as every file check.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from campus_energy.config import Config
from campus_energy.core.timestamps import iso_utc
from campus_energy.ops.doctor.checks import Context, Result, Status, plural
from campus_energy.ops.doctor.checks.files import QUERY_DEADLINE_S, open_read_only

EVENTS_SHOWN = 3
EVENTS_LOOKBACK_S = 90 * 86_400.0  # detected events older than this are not raised again
CONFIRMED_WITHIN_S = 86_400.0  # a confirmation within a day of a detected event confirms it
ESTIMATED_LOOKBACK_S = 86_400.0
ESTIMATED_WARN_SHARE = 0.05


@dataclass(frozen=True)
class Detected:
    meter_id: str
    ts_ms: int
    kind: str
    register: str
    before_wh: float | None
    after_wh: float | None


def unconfirmed(
    detected: Sequence[Detected], confirmed: Sequence[tuple[str, str, int]]
) -> list[Detected]:
    """The detected events no confirmation of the same meter and register lies within a day of
    (`confirmed`: meter, register, ts_ms)."""
    window_ms = CONFIRMED_WITHIN_S * 1000
    return [
        d
        for d in detected
        if not any(
            meter == d.meter_id and register == d.register and abs(ts - d.ts_ms) <= window_ms
            for meter, register, ts in confirmed
        )
    ]


def _kwh(value: float | None) -> str:
    return "?" if value is None else f"{value / 1000:,.1f} kWh"


def _events(config: Config, now: float) -> Result:
    path, title = config.storage.path.absolute(), "meter events"
    if not path.exists():
        return Result(Status.SKIP, title, f"{path}: not created yet (the logger has not run)")
    since_ms = round((now - EVENTS_LOOKBACK_S) * 1000)
    try:
        with open_read_only(path, deadline_s=QUERY_DEADLINE_S) as conn:
            has = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meter_events'"
            ).fetchone()
            if has is None:
                return Result(Status.SKIP, title, "the store has no meter events yet")
            detected = [
                Detected(*row)
                for row in conn.execute(
                    "SELECT meter_id, ts_ms, kind, register, before_wh, after_wh FROM meter_events "
                    "WHERE source = 'detected' AND ts_ms >= ? ORDER BY ts_ms",
                    (since_ms,),
                )
            ]
            confirmed = [
                (str(m), str(r), int(t))
                for m, r, t in conn.execute(
                    "SELECT meter_id, register, ts_ms FROM meter_events WHERE source = 'confirmed'"
                )
            ]
    except sqlite3.Error as exc:
        return Result(Status.FAIL, title, f"cannot read {path}: {exc}", "see the line 'integrity'")
    open_events = unconfirmed(detected, confirmed)
    if not open_events:
        detail = (
            f"{plural(len(detected), 'detected event')} in the last 90 days, each confirmed"
            if detected
            else "no register replaced, reset, rolled over or jumping in the last 90 days"
        )
        return Result(Status.OK, title, detail)
    shown = "; ".join(
        f"{e.meter_id}: {e.register} {e.kind} at {iso_utc(e.ts_ms)} "
        f"({_kwh(e.before_wh)} → {_kwh(e.after_wh)})"
        for e in open_events[-EVENTS_SHOWN:]
    )
    first = open_events[-1]
    return Result(
        Status.WARN,
        title,
        f"{plural(len(open_events), 'event')} not confirmed: {shown}",
        "the logger estimates nothing across an event; a person's record of what happened, "
        "with the old meter's final count and the new one's first, estimates a gap it lies in "
        "and is the audit trail bills and reconcile read: "
        f"campus-energy meter-event add {first.meter_id} --kind {first.kind} "
        f"--at {iso_utc(first.ts_ms)} --old-final-kwh X --new-start-kwh Y "
        "(see docs/directions.md)",
    )


def _estimated(config: Config, now: float) -> Result:
    path, title = config.storage.path.absolute(), "estimated energy"
    if not path.exists():
        return Result(Status.SKIP, title, f"{path}: not created yet (the logger has not run)")
    since_ms = round((now - ESTIMATED_LOOKBACK_S) * 1000)
    try:
        with open_read_only(path, deadline_s=QUERY_DEADLINE_S) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(samples)")}
            if "estimated" not in columns:
                return Result(Status.SKIP, title, "the store keeps no estimates yet")
            rows = conn.execute(
                "SELECT m.meter_id, sum(s.energy), sum(coalesce(s.estimated, 0)) "
                "FROM samples s JOIN meters m ON m.id = s.meter WHERE s.ts_ms >= ? "
                "GROUP BY s.meter",
                (since_ms,),
            ).fetchall()
    except sqlite3.Error as exc:
        return Result(Status.FAIL, title, f"cannot read {path}: {exc}", "see the line 'integrity'")
    measured = sum(int(r[1] or 0) for r in rows)
    guessed = sum(int(r[2] or 0) for r in rows)
    shares = sorted(
        ((r[2] / (r[1] + r[2]), str(r[0])) for r in rows if r[2] and (r[1] or 0) + r[2] > 0),
        reverse=True,
    )
    total = f"{guessed / 1e9:,.3f} kWh estimated beside {measured / 1e9:,.3f} kWh measured"
    high = [(share, meter) for share, meter in shares if share > ESTIMATED_WARN_SHARE]
    if not high:
        return Result(Status.OK, title, f"last 24 h: {total}")
    worst = ", ".join(f"{meter} {share:.0%}" for share, meter in high[:EVENTS_SHOWN])
    return Result(
        Status.WARN,
        title,
        f"last 24 h: {total}; estimated beyond {ESTIMATED_WARN_SHARE:.0%} of import: {worst}",
        "those meters' polls fail often enough that their registers bridge the gaps: see the "
        "line 'meters' and the logger's log for timeouts",
    )


async def registers(ctx: Context) -> list[Result]:
    """Meter events to confirm, and the share of recent energy estimated across gaps."""
    return await asyncio.to_thread(
        lambda: [_events(ctx.config, ctx.now), _estimated(ctx.config, ctx.now)]
    )
