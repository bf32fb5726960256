"""The dashboard's reads of the logger's store: parameterised, index-friendly, bucketed in SQL.

Energy over any range comes from the cumulative `energy_total` column: the
energy of readings with ts in [a, b) is total(last reading before b) minus
total(last reading before a) — two index seeks per meter and boundary, however
many readings lie in between. The time those readings cover is found the same
way (the timestamps of the same two readings) less the gaps recorded in between,
so an average power is always energy ÷ covered time, never energy ÷ clock time.
Long power profiles are averaged per bucket in SQL; raw rows are only ever read
for short ranges or with a limit.

Energy has two directions and two kinds (schema 3 of the store): exported energy
comes from the cumulative `energy_export_total` the same way. Estimated energy (what
the meters' registers counted across a gap, `estimated`, `estimated_export`) covers the
gap, from the meter's reading before to the reading that carries it: a range holds the
part of each estimate that its time shares with the gap, in proportion to time
(`core.estimate_shares`), as the bridge's windows, the rollups, the API and the bills
count it — so a range that cuts a gap holds its part of it, wherever the reading lies.
The readings with an estimate are found through the store's partial index of them
(`samples_estimated`), each one's previous reading with one seek. The dashboard opens
the store read-only, so a store an older logger wrote keeps its older columns until a
newer logger opens it: `layout` says which it has, and what it lacks is read as none (no
export, no estimate).

The store is opened read-only with `runtime.sqlite.ReadOnly` (also on a
read-only mount); every sqlite3 failure becomes a StoreUnavailable, and
StoreDamaged when SQLite finds the file malformed.
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campus_energy.accounts.events import read_events
from campus_energy.core.estimate_shares import Gap, shares
from campus_energy.core.incoming import MAX_ESTIMATE_SPAN_S
from campus_energy.core.meter_events import MeterEvent
from campus_energy.errors import CampusEnergyError
from campus_energy.runtime.sqlite import ReadOnly, is_damage

UWH = 1_000_000


class StoreUnavailable(CampusEnergyError):
    """The logger's store cannot be read (missing, locked, not a store)."""


class StoreDamaged(StoreUnavailable):
    """SQLite finds the logger's store malformed, or no database at all."""


def _failure(what: str, exc: sqlite3.Error) -> StoreUnavailable:
    if is_damage(exc):
        return StoreDamaged(f"{what} is damaged ({exc})")
    return StoreUnavailable(f"{what} cannot be read: {exc}")


@dataclass(frozen=True)
class Span:
    """What one meter's readings with ts in [a, b) hold: energy, and the time they integrated;
    and the part in [a, b) of the estimates of the gaps that reach into it."""

    wh: float  # measured import
    covered_ms: int
    export_wh: float = 0.0  # measured export
    estimated_wh: float = 0.0  # estimated import (gaps bridged by the meter's registers)
    estimated_export_wh: float = 0.0  # (both: the parts of the estimates in [a, b))

    @property
    def net_wh(self) -> float:
        """Measured import − measured export."""
        return self.wh - self.export_wh


@dataclass(frozen=True)
class Layout:
    """What the store's `samples` hold beyond the first schema's columns."""

    export: bool  # energy_export, energy_export_total
    estimates: bool  # estimated, estimated_export


def layout(conn: sqlite3.Connection) -> Layout:
    """The store's layout (an older store, not yet opened by a newer logger, has less)."""
    have = {row[1] for row in _rows(conn, "PRAGMA table_info(samples)")}
    return Layout(
        export={"energy_export", "energy_export_total"} <= have,
        estimates={"estimated", "estimated_export"} <= have,
    )


@dataclass(frozen=True)
class Meter:
    key: int  # samples.meter
    meter_id: str
    building: str
    floor: str
    profile: str


def open_store(path: Path) -> ReadOnly:
    """The store opened read-only (safe while the logger writes: WAL), checked to be a store."""
    if not path.exists():
        raise StoreUnavailable(f"the logger's store {path} does not exist yet")
    store = ReadOnly(path, timeout_s=2, check_same_thread=False)
    try:
        store.connection().execute("SELECT 1 FROM samples LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        store.close()
        raise _failure(f"the logger's store {path}", exc) from None
    return store


def connection(store: ReadOnly) -> sqlite3.Connection:
    """The store's connection (opened again when a file read as immutable has changed)."""
    try:
        return store.connection()
    except sqlite3.Error as exc:
        raise _failure(f"the logger's store {store.path}", exc) from None


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection (safe while the logger writes: WAL)."""
    return open_store(path).connection()


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise _failure("the logger's store", exc) from None


def meters(conn: sqlite3.Connection) -> list[Meter]:
    return [
        Meter(*row)
        for row in _rows(
            conn, "SELECT id, meter_id, building, floor, profile FROM meters ORDER BY meter_id"
        )
    ]


def has_readings(conn: sqlite3.Connection) -> bool:
    return bool(_rows(conn, "SELECT 1 FROM samples LIMIT 1"))


_FAR_MS = 2**62
# a cumulative total -> the column it is read from, and the reading's own step of it
TOTALS = {"energy_total": "energy_total", "energy_export_total": "energy_export_total"}
STEPS = {"energy_total": "energy", "energy_export_total": "energy_export"}


def _after(last: Any) -> Any:
    """The first moment after `last` (an integer ms; anything else, as a store of fix-db's
    waiting areas might hold: no bound)."""
    return last + 1 if isinstance(last, int) else _FAR_MS


def _from(first: Any) -> int:
    """`first` as a lower bound (an integer ms; anything else: no bound)."""
    return first if isinstance(first, int) else -_FAR_MS


def _span(conn: sqlite3.Connection, meter: int) -> tuple[Any, Any] | None:
    """Bounds (first, last ts_ms) of a meter's readings, None when it has none: every search
    for one meter's readings stays inside them (in a store kept in time order, a search
    past them would read every other meter's readings to the end of the table). A store of
    schema 1 not yet opened by a newer logger has no span: the whole table."""
    try:
        row = conn.execute(
            "SELECT first_ts_ms, last_ts_ms FROM meters WHERE id = ?", (meter,)
        ).fetchone()
    except sqlite3.OperationalError:
        return (-_FAR_MS, _FAR_MS)
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def edges(
    conn: sqlite3.Connection,
    meter: int,
    boundaries: Sequence[int],
    column: str = "energy_total",
) -> list[Any]:
    """(ts, total µWh) of the meter's last reading before each boundary (None, None: none);
    `column`: which cumulative total (`energy_total`: import, `energy_export_total`).

    One seek per boundary inside the meter's span of readings: a boundary at or before its
    first reading has none before it, and every boundary past its last reading has that
    one (a single seek). The boundaries go to SQLite as one JSON array, however many."""
    span = _span(conn, meter)
    if span is None:
        return [(None, None) for _ in boundaries]
    first, after = _from(span[0]), _after(span[1])
    inside = sorted({min(b, after) for b in boundaries if b > first})
    rows = _rows(
        conn,
        "WITH b(t) AS (SELECT value FROM json_each(?)), last(t, ts) AS (SELECT t, (SELECT ts_ms "
        "FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms < b.t "  # one bound each way: a seek
        "ORDER BY ts_ms DESC LIMIT 1) FROM b) "
        f"SELECT last.t, s.ts_ms, s.{TOTALS[column]} FROM last LEFT JOIN samples s "
        "ON s.meter = ? AND s.ts_ms = last.ts",
        (json.dumps(inside), meter, first, meter),
    )
    found = {t: (ts, total) for t, ts, total in rows}
    return [found[min(b, after)] if b > first else (None, None) for b in boundaries]


def first_edge(
    conn: sqlite3.Connection, meter: int, t_ms: int, column: str = "energy_total"
) -> tuple[Any, Any]:
    """(ts, total before it) of the first reading at or after `t_ms`: where a meter began."""
    span = _span(conn, meter)
    if span is None:
        return (None, None)
    row = _rows(
        conn,
        f"SELECT ts_ms, {TOTALS[column]} - {STEPS[column]} FROM samples WHERE meter = ? "
        "AND ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms LIMIT 1",
        (meter, t_ms, span[1]),
    )
    return (row[0][0], row[0][1]) if row else (None, None)


def gaps_ending(
    conn: sqlite3.Connection, meter: int, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    return [
        (int(a), int(b))
        for a, b in _rows(
            conn,
            "SELECT start_ts_ms, end_ts_ms FROM gaps WHERE meter = ? AND end_ts_ms >= ? "
            "AND end_ts_ms < ?",
            (meter, start_ms, end_ms),
        )
    ]


def spans(
    conn: sqlite3.Connection,
    meter_keys: Sequence[int],
    boundaries: Sequence[int],
    *,
    estimated: bool = False,
) -> dict[int, list[Span]]:
    """Per meter, the Span of each [boundaries[i], boundaries[i+1]) (ascending boundaries):
    measured import and export, covered time, and with `estimated` each range's part of the
    estimated import and export of the gaps that reach into it, in proportion to time
    (`estimates`: asked for only where they are shown)."""
    if len(boundaries) < 2:
        return {m: [] for m in meter_keys}
    has = layout(conn)
    guessed = (
        estimates(conn, meter_keys, boundaries[0], boundaries[-1])
        if estimated and has.estimates
        else []
    )
    found: dict[int, list[Span]] = {}
    for meter in meter_keys:
        imported = _steps(conn, meter, boundaries, "energy_total")
        exported = _steps(conn, meter, boundaries, "energy_export_total") if has.export else None
        gaps_ms = [0] * (len(boundaries) - 1)
        for a, b in gaps_ending(conn, meter, boundaries[0], boundaries[-1]):
            gaps_ms[bisect.bisect_right(boundaries, b) - 1] += b - a
        est = [[0, 0] for _ in gaps_ms]
        for estimate in guessed:
            if estimate.key == meter:
                for index, (uwh, export_uwh) in estimate.within(boundaries).items():
                    est[index][0] += uwh
                    est[index][1] += export_uwh
        series: list[Span] = []
        for i, (step, gap_ms) in enumerate(zip(imported, gaps_ms, strict=True)):
            out = exported[i][1] if exported is not None else 0
            covered = max(0, step[0] - gap_ms) if step[0] is not None else 0
            series.append(Span(step[1] / UWH, covered, out / UWH, est[i][0] / UWH, est[i][1] / UWH))
        found[meter] = series
    return found


def _steps(
    conn: sqlite3.Connection, meter: int, boundaries: Sequence[int], column: str
) -> list[tuple[int | None, int]]:
    """Per [boundaries[i], boundaries[i+1]): (ms from the last reading before the range's
    start, or the first in it, to the last before its end — None: no reading to measure
    from; the change of the cumulative `column` in µWh)."""
    edges_of = edges(conn, meter, boundaries, column)
    if edges_of[0][0] is None:  # nothing before the range: start from its first reading
        edges_of[0] = first_edge(conn, meter, boundaries[0], column)
    found: list[tuple[int | None, int]] = []
    base_ts, base_total = edges_of[0]
    for ts, total in edges_of[1:]:
        if ts is None or base_ts is None:
            found.append((None, 0))
            continue
        found.append((ts - base_ts, total - base_total))
        base_ts, base_total = ts, total
    return found


MAX_ESTIMATE_SPAN_MS = round(MAX_ESTIMATE_SPAN_S * 1000)  # the longest gap an estimate bridges


@dataclass(frozen=True)
class Estimate:
    """One reading's estimate: what its meter's registers counted over `gap`, (the meter's
    reading before, the reading's own ts]."""

    key: int  # samples.meter
    gap: Gap
    uwh: int  # estimated import
    export_uwh: int  # estimated export

    @property
    def ts_ms(self) -> int:
        """The time of the reading that carries it."""
        return self.gap.end_ms

    def within(self, boundaries: Sequence[int]) -> dict[int, tuple[int, int]]:
        """i -> its part (import, export µWh) in [boundaries[i], boundaries[i + 1]), in
        proportion to time, for each range that gets a part."""
        imported = shares(self.gap, self.uwh, boundaries)
        exported = shares(self.gap, self.export_uwh, boundaries)
        return {i: (imported.get(i, 0), exported.get(i, 0)) for i in sorted({*imported, *exported})}


def estimates(
    conn: sqlite3.Connection, meter_keys: Sequence[int], start_ms: int, end_ms: int
) -> list[Estimate]:
    """The estimates of the meters whose gap reaches into [start_ms, end_ms), in the time
    order of their readings (a store without estimates: none).

    Their readings lie in [start_ms, end_ms + the longest gap an estimate bridges): one read
    of the store's partial index of the readings with an estimate; each one's gap starts at
    the meter's reading before it, one seek each (none within that longest gap: the gap is
    not known, and the estimate counts at its reading's time, as a window counts it)."""
    if not meter_keys or not layout(conn).estimates:
        return []
    marks = ", ".join("?" for _ in meter_keys)
    rows = _rows(
        conn,
        "SELECT e.meter, (SELECT p.ts_ms FROM samples p WHERE p.meter = e.meter "
        "AND p.ts_ms >= e.ts_ms - ? AND p.ts_ms < e.ts_ms ORDER BY p.ts_ms DESC LIMIT 1), "
        "e.ts_ms, e.estimated, e.estimated_export FROM samples e "
        f"WHERE e.ts_ms >= ? AND e.ts_ms < ? AND e.meter IN ({marks}) "
        "AND (e.estimated IS NOT NULL OR e.estimated_export IS NOT NULL) ORDER BY e.ts_ms",
        (MAX_ESTIMATE_SPAN_MS, start_ms, end_ms + MAX_ESTIMATE_SPAN_MS, *meter_keys),
    )
    found = [
        Estimate(int(m), Gap(None if p is None else int(p), int(t)), int(a or 0), int(b or 0))
        for m, p, t, a, b in rows
    ]
    return [e for e in found if e.gap.overlaps(start_ms, end_ms)]


def latest(conn: sqlite3.Connection, meter_keys: Sequence[int]) -> list[dict[str, Any]]:
    found = []
    for meter in meter_keys:
        span = _span(conn, meter)
        if span is None:
            continue
        row = _rows(
            conn,
            "SELECT s.ts_ms, s.power, s.voltage, s.current, s.pf, s.freq, m.meter_id "
            "FROM samples s JOIN meters m ON m.id = s.meter WHERE s.meter = ? "
            "AND s.ts_ms <= ? ORDER BY s.ts_ms DESC LIMIT 1",
            (meter, span[1]),
        )
        if row:
            ts, p, v, i, pf, hz, meter_id = row[0]
            found.append(
                {
                    "meter_id": meter_id,
                    "ts_ms": ts,
                    "power_w": None if p is None else p / 100,
                    "voltage_v": None if v is None else v / 100,
                    "current_a": None if i is None else i / 1000,
                    "power_factor": None if pf is None else pf / 10000,
                    "frequency_hz": None if hz is None else hz / 1000,
                }
            )
    return found


def mean_power(
    conn: sqlite3.Connection,
    meter_keys: Sequence[int],
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
) -> list[tuple[str, int, float]]:
    """(meter_id, bucket start ms, W) per bucket that integrated anything: Σ net energy
    (import − export: negative while a meter exports) ÷ Σ time of the readings in it (each
    reading's interval since the one before, gaps left out).

    One pass over the range for every meter asked (each from its last reading before the
    range, so that its first interval inside it counts): in a store kept in time order, a
    query per meter would read every meter's readings once per meter."""
    since: list[tuple[int, int]] = []
    until = start_ms
    for meter in meter_keys:
        span = _span(conn, meter)
        if span is None or (isinstance(span[1], int) and span[1] < start_ms):
            continue  # no reading in the range: nothing to read
        before = _rows(
            conn,
            "SELECT ts_ms FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms < ? "
            "ORDER BY ts_ms DESC LIMIT 1",
            (meter, span[0], min(start_ms, _after(span[1]))),
        )
        since.append((meter, before[0][0] if before else start_ms))
        until = max(until, min(end_ms, _after(span[1])))
    if not since:
        return []
    marks = ", ".join("?" for _ in since)
    net = "energy - energy_export" if layout(conn).export else "energy"
    # From the earliest of those last readings: each meter's first interval in the range takes
    # its start from the meter's own previous reading, which is in what is read.
    rows = _rows(
        conn,
        f"WITH r AS (SELECT meter, ts_ms, {net} AS energy, "
        "ts_ms - lag(ts_ms) OVER (PARTITION BY meter ORDER BY ts_ms) AS dt "
        f"FROM samples WHERE ts_ms >= ? AND ts_ms < ? AND meter IN ({marks})) "
        "SELECT m.meter_id, ? + ((r.ts_ms - ?) / ?) * ?, sum(r.energy), sum(r.dt) "
        "FROM r JOIN meters m ON m.id = r.meter "
        "LEFT JOIN gaps g ON g.meter = r.meter AND g.end_ts_ms = r.ts_ms "
        "WHERE r.ts_ms >= ? AND r.dt IS NOT NULL AND g.end_ts_ms IS NULL "
        "GROUP BY r.meter, 2",
        (
            min(t for _, t in since),
            until,
            *(meter for meter, _ in since),
            start_ms,
            start_ms,
            bucket_ms,
            bucket_ms,
            start_ms,
        ),
    )
    found = [(m, int(t), uwh / UWH * 3_600_000 / dt) for m, t, uwh, dt in rows if dt > 0]
    return sorted(found, key=lambda row: (row[1], row[0]))


RAW_COLUMNS = (
    "meter_id",
    "ts_ms",
    "seq",
    "voltage_v",
    "current_a",
    "power_w",
    "power_factor",
    "frequency_hz",
    "energy_wh",
    "energy_total_wh",
    "import_energy_wh",
    # a store before directions has none of these: read as NULL
    "energy_export_wh",
    "energy_export_total_wh",
    "estimated_energy_wh",
    "estimated_export_wh",
    "export_energy_wh",
)


def raw_readings(
    conn: sqlite3.Connection, meter_ids: Sequence[str], start_ms: int, end_ms: int, limit: int
) -> list[tuple[Any, ...]]:
    """The newest readings in the range (the `readings` view), at most `limit` (of readings
    taken at the same moment, the first meters by id): RAW_COLUMNS."""
    if not meter_ids:
        return []
    have = {row[1] for row in _rows(conn, "PRAGMA table_info(readings)")}
    columns = ", ".join(c if c in have else f"NULL AS {c}" for c in RAW_COLUMNS)
    marks = ", ".join("?" for _ in meter_ids)
    return _rows(
        conn,
        f"SELECT {columns} FROM readings WHERE meter_id IN ({marks}) "
        "AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms DESC, meter_id LIMIT ?",
        (*meter_ids, start_ms, end_ms, limit),
    )


def gaps(
    conn: sqlite3.Connection, meter_keys: Sequence[int], start_ms: int, end_ms: int
) -> list[tuple[str, int, int]]:
    if not meter_keys:
        return []
    marks = ", ".join("?" for _ in meter_keys)
    return [
        (m, a, b)
        for m, a, b in _rows(
            conn,
            "SELECT m.meter_id, g.start_ts_ms, g.end_ts_ms FROM gaps g JOIN meters m "
            f"ON m.id = g.meter WHERE g.meter IN ({marks}) AND g.end_ts_ms >= ? "
            "AND g.start_ts_ms < ? ORDER BY g.start_ts_ms DESC",
            (*meter_keys, start_ms, end_ms),
        )
    ]


def rejects(
    conn: sqlite3.Connection, meter_keys: Sequence[int], start_ms: int, end_ms: int
) -> list[tuple[str, int, str, float | None]]:
    if not meter_keys:
        return []
    marks = ", ".join("?" for _ in meter_keys)
    return [
        (m, t, why, p)
        for m, t, why, p in _rows(
            conn,
            "SELECT m.meter_id, r.ts_ms, r.reason, r.power_w FROM rejects r JOIN meters m "
            f"ON m.id = r.meter WHERE r.meter IN ({marks}) AND r.ts_ms >= ? AND r.ts_ms < ? "
            "ORDER BY r.ts_ms DESC",
            (*meter_keys, start_ms, end_ms),
        )
    ]


def register_step_wh(value_kwh: float) -> float:
    """The step in Wh of a float32 kWh register at `value_kwh` (its unit in the last place)."""
    _, exponent = math.frexp(max(value_kwh, 1.0))  # value = m × 2**exponent, 0.5 ≤ m < 1
    return 2.0 ** (exponent - 24) * 1000  # a float32 has 24 significant bits


def register_drift(
    conn: sqlite3.Connection, meter_keys: Sequence[int], start_ms: int, end_ms: int
) -> list[tuple[str, float, float, float]]:
    """(meter_id, integrated Wh, the meter's own register Wh, the register's value at the end
    Wh) between its first and last reading in the range that carry the register."""
    found = []
    for meter in meter_keys:
        span = _span(conn, meter)
        if span is None:
            continue
        edge = (
            "SELECT ts_ms FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms < ? "
            "AND import_energy IS NOT NULL ORDER BY ts_ms {} LIMIT 1"
        )  # key-order seeks from either end (within the meter's span), not a scan of the range
        low, high = max(start_ms, span[0]), min(end_ms, _after(span[1]))
        found_first = _rows(conn, edge.format("ASC"), (meter, low, high))
        found_last = _rows(conn, edge.format("DESC"), (meter, low, high))
        first = found_first[0][0] if found_first else None
        last = found_last[0][0] if found_last else None
        if first is None or last is None or first == last:
            continue
        pair = _rows(
            conn,
            "SELECT m.meter_id, s.ts_ms, s.import_energy, s.energy_total FROM samples s "
            "JOIN meters m ON m.id = s.meter WHERE s.meter = ? AND s.ts_ms IN (?, ?) "
            "ORDER BY s.ts_ms",
            (meter, first, last),
        )
        (meter_id, _, reg_a, tot_a), (_, _, reg_b, tot_b) = pair
        found.append((meter_id, (tot_b - tot_a) / UWH, (reg_b - reg_a) / 10, reg_b / 10))
    return found


def meter_events(
    conn: sqlite3.Connection, meter_ids: Sequence[str], start_ms: int, end_ms: int
) -> list[MeterEvent] | None:
    """The meters' events with ts in [start_ms, end_ms), in time order; None: the store keeps
    no record of them (made before the table was)."""
    try:
        return read_events(conn, start_ms, end_ms, meter_ids)
    except sqlite3.Error as exc:
        raise _failure("the logger's store", exc) from None
