"""The previous way of `/api/series?step=5m`: every window of the range read, summed per step.

Two faults of it are measured: the average power of a step was the sum of its
windows' average powers (right only when a window is as long as the step), and
every window of the day was read from SQLite and stepped in Python.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from campus_energy.api.queries import series_points
from campus_energy.backends.base import Bucket
from campus_energy.backends.sqlite.source import SqliteSource

STEP_MS = 300_000
WINDOWS_SQL = (
    "SELECT meter_id, window_start_ms, total_energy_wh, "
    "json_extract(accumulator, '$.covered_s'), readings_in_batch "
    "FROM window_aggregates WHERE window_start_ms >= ? AND window_start_ms < ?"
)


def windows(source: SqliteSource, start_ms: int, end_ms: int) -> list[Bucket]:
    """Every window of [start_ms, end_ms) as a bucket of its own."""
    rows = source._query(WINDOWS_SQL, [start_ms, end_ms])
    return [Bucket(m, k, float(e), float(c or 0.0), int(r)) for m, k, e, c, r in rows]


def step_powers(buckets: Iterable[Bucket]) -> dict[int, float]:
    """Each 5-minute step's power: its windows' average powers added up."""
    found: dict[int, float] = defaultdict(float)
    for b in buckets:
        if b.covered_s > 0:
            found[int(b.key) - int(b.key) % STEP_MS] += b.energy_wh * 3600 / b.covered_s
    return found


def series_json(source: SqliteSource, start_ms: int, end_ms: int, meters: int, tz: ZoneInfo) -> str:
    """The series' JSON from every window of the range, stepped in Python."""
    rows = source._query(WINDOWS_SQL, [start_ms, end_ms])
    buckets = [
        Bucket(m, k - k % STEP_MS, float(e), float(c or 0.0), int(r)) for m, k, e, c, r in rows
    ]
    return json.dumps([p.as_json() for p in series_points(buckets, "window", 300, meters, tz)])
