"""Reading the SQLite window sink (read-only; safe while the bridge writes, thanks to WAL).

Opened with `runtime.sqlite.ReadOnly`: a WAL file on a read-only mount is read too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.backends.base import (
    DIRECTED,
    WINDOW_DIRECTED,
    Bucket,
    Grain,
    MeterLatest,
    ScopeHour,
    ScopePeak,
    Total,
)
from campus_energy.backends.sqlite.schema import ROLLUP_LAYOUT
from campus_energy.core.answers import QUARTER_MS
from campus_energy.core.days import starts_day
from campus_energy.core.peaks import (
    INTERVALS,
    Quarters,
    daily_scope,
    day_range,
    intervals_of,
)
from campus_energy.errors import SourceError
from campus_energy.runtime.sqlite import ReadOnly


def _grain_sql(directed: bool) -> dict[str, str]:
    """Per grain: meter, key, import, covered seconds, readings, export, the two estimates."""
    rolled = ", ".join(DIRECTED[directed])
    windowed = ", ".join(f"sum({column})" for column in WINDOW_DIRECTED[directed])
    return {
        # windows summed per meter per 5-minute step here, so short windows send no more rows
        "window": (
            "SELECT meter_id, window_start_ms - window_start_ms % 300000 AS step, "
            "sum(total_energy_wh), sum(json_extract(accumulator, '$.covered_s')), "
            f"sum(readings_in_batch), {windowed} FROM window_aggregates "
            "WHERE window_start_ms >= ? AND window_start_ms < ?"
        ),
        "hour": (
            f"SELECT meter_id, hour_ms, energy_wh, covered_s, readings, {rolled} "
            "FROM rollup_hourly WHERE hour_ms >= ? AND hour_ms < ?"
        ),
        "day": (
            f"SELECT meter_id, day, energy_wh, covered_s, readings, {rolled} FROM rollup_daily "
            "WHERE day >= ? AND day < ?"
        ),
    }


GRAIN_SQL = {directed: _grain_sql(directed) for directed in (True, False)}

# A scope's hours in one statement, read the cheaper way. Fewer members than one meter in
# eight (`plan.few`): each member's hours through rollup_hourly_by_meter, a look-up in the
# table per row. More (the campus, a building of a small one): the primary key's range in
# hour order, every meter's rows read and the members' kept. The way not taken is given an
# empty range of hours (it ends where it starts), so it reads nothing.
SCOPE_TERMS = "t(meter_id, w) AS MATERIALIZED (SELECT key, value FROM json_each(?1))"
QUARTER_SUMS = "sum(t.w * r.q0_wh), sum(t.w * r.q1_wh), sum(t.w * r.q2_wh), sum(t.w * r.q3_wh)"


def _scope_hours_sql(directed: bool) -> str:
    guessed = "sum(t.w * r.estimated_wh)" if directed else "0"
    sums = f"r.hour_ms AS hour_ms, {QUARTER_SUMS}, min(r.covered_s), count(*), {guessed}"
    return (
        f"WITH {SCOPE_TERMS}, "
        "plan(few) AS MATERIALIZED (SELECT (SELECT count(*) FROM t) * 8 < "
        "(SELECT count(*) FROM window_meters)) "
        f"SELECT {sums} FROM t CROSS JOIN rollup_hourly r ON r.meter_id = t.meter_id "
        "WHERE r.hour_ms >= ?2 AND r.hour_ms < "
        "(SELECT CASE WHEN few THEN ?3 ELSE ?2 END FROM plan) GROUP BY r.hour_ms "
        f"UNION ALL SELECT {sums} FROM rollup_hourly r CROSS JOIN t ON r.meter_id = t.meter_id "
        "WHERE r.hour_ms >= ?2 AND r.hour_ms < "
        "(SELECT CASE WHEN few THEN ?2 ELSE ?3 END FROM plan) GROUP BY r.hour_ms ORDER BY hour_ms"
    )


SCOPE_HOURS_SQL = {directed: _scope_hours_sql(directed) for directed in (True, False)}

# Each range's peak in one statement (?1 terms, ?2 bounds, both JSON; ?3 min_members; ?4 and
# ?5 the first and last bound). The scope's hours of the ranges [lo, hi) are read one of
# three ways, the others given empty ranges: one member, its rows are the hours (each
# through rollup_hourly_by_meter, range by range); fewer than one meter in eight, each
# member's rows the same way, grouped by hour; more, the primary key's range in hour order,
# grouped as it is read, each hour's range looked up among the bounds. Of an hour its
# highest interval is kept (the earliest of equals), of a range its highest hour's.
SCOPE_PEAKS_WITH = (
    f"WITH {SCOPE_TERMS}, "
    "b(i, lo, hi) AS MATERIALIZED "
    "(SELECT key, value, lead(value) OVER (ORDER BY key) FROM json_each(?2)), "
    "plan(way) AS MATERIALIZED (SELECT CASE WHEN n = 1 THEN 'one' "
    "WHEN n * 8 < (SELECT count(*) FROM window_meters) THEN 'few' ELSE 'many' END "
    "FROM (SELECT count(*) AS n FROM t)), "
    "h(i, hour_ms, e0, e1, e2, e3) AS ("
    "SELECT b.i, r.hour_ms, t.w * r.q0_wh, t.w * r.q1_wh, t.w * r.q2_wh, t.w * r.q3_wh "
    "FROM b CROSS JOIN t CROSS JOIN rollup_hourly r ON r.meter_id = t.meter_id "
    "AND r.hour_ms >= b.lo AND r.hour_ms < (SELECT CASE way WHEN 'one' THEN b.hi ELSE b.lo END "
    "FROM plan) WHERE ?3 <= 1 "
    f"UNION ALL SELECT b.i, r.hour_ms, {QUARTER_SUMS} "
    "FROM b CROSS JOIN t CROSS JOIN rollup_hourly r ON r.meter_id = t.meter_id "
    "AND r.hour_ms >= b.lo AND r.hour_ms < (SELECT CASE way WHEN 'few' THEN b.hi ELSE b.lo END "
    "FROM plan) GROUP BY b.i, r.hour_ms HAVING count(*) >= ?3 "
    "UNION ALL SELECT (SELECT max(b.i) FROM b WHERE b.lo <= r.hour_ms), r.hour_ms, "
    f"{QUARTER_SUMS} FROM rollup_hourly r CROSS JOIN t ON r.meter_id = t.meter_id "
    "WHERE r.hour_ms >= ?4 AND r.hour_ms < (SELECT CASE way WHEN 'many' THEN ?5 ELSE ?4 END "
    "FROM plan) GROUP BY r.hour_ms HAVING count(*) >= ?3)"
)


def _scope_peaks_sql(intervals: tuple[Quarters, ...]) -> str:
    """The statement for one demand interval: an hour's intervals are sums of e0..e3."""
    energies = [" + ".join(f"e{q}" for q in quarters) for quarters in intervals]
    if len(energies) == 1:
        best, start = energies[0], "hour_ms"
    else:  # the first interval equal to the highest is the earliest
        whens = " ".join(
            f"WHEN {energy} THEN {quarters[0] * QUARTER_MS}"
            for energy, quarters in zip(energies[:-1], intervals[:-1], strict=True)
        )
        best = f"max({', '.join(energies)})"
        start = f"hour_ms + CASE e {whens} ELSE {intervals[-1][0] * QUARTER_MS} END"
    return (
        f"{SCOPE_PEAKS_WITH}, x AS (SELECT i, hour_ms, e0, e1, e2, e3, {best} AS e FROM h), "
        f"y(i, e, s) AS (SELECT i, e, {start} FROM x), "
        "z(i, e, s, n) AS (SELECT i, e, s, row_number() OVER (PARTITION BY i ORDER BY e DESC, s) "
        "FROM y) SELECT i, e, s FROM z WHERE n = 1 ORDER BY i"
    )


SCOPE_PEAKS_SQL = {minutes: _scope_peaks_sql(intervals) for minutes, intervals in INTERVALS.items()}

# One meter's peaks from its days' (?1 meter, ?2 weight, ?3 bounds as JSON, ?4 and ?5 the
# first and last day that may hold a peak between ?6 and ?7, the first and last bound):
# each day's peak put in its range, per range the highest, the earliest of equals. Exact
# when the bounds are local midnights (a day lies in one range) and scaling by the weight
# keeps every sum and order (`core.peaks.daily_weight`).
DAILY_PEAKS_SQL = {
    minutes: (
        "WITH b(i, lo) AS MATERIALIZED (SELECT key, value FROM json_each(?3)), "
        f"y(i, e, s) AS (SELECT (SELECT max(b.i) FROM b WHERE b.lo <= d.peak{minutes}_ms), "
        f"?2 * d.peak{minutes}_wh, d.peak{minutes}_ms FROM rollup_daily d "
        "WHERE d.meter_id = ?1 AND d.day >= ?4 AND d.day <= ?5 "
        f"AND d.peak{minutes}_ms >= ?6 AND d.peak{minutes}_ms < ?7), "
        "z(i, e, s, n) AS (SELECT i, e, s, row_number() OVER (PARTITION BY i ORDER BY e DESC, s) "
        "FROM y) SELECT i, e, s FROM z WHERE n = 1 ORDER BY i"
    )
    for minutes in INTERVALS
}


class SqliteSource:
    name = "sqlite"
    lag_s = 0.0  # every answer reads the file

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()  # one connection per thread (Gunicorn threads, tests)
        self._sited = False  # window_meters has its site column (once seen, always)
        self._directed = False  # the rollups have their export and estimate columns (the same)

    def _conn(self) -> sqlite3.Connection:
        file: ReadOnly | None = getattr(self._local, "file", None)
        if file is None:
            if not self.path.exists():
                raise SourceError(f"window store {self.path} does not exist yet")
            file = self._local.file = ReadOnly(self.path, timeout_s=5)
        return file.connection()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if getattr(self._local, "file", None) is None and self._not_written_yet():
            return []  # a new installation: the bridge has not written its first window
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) and not self._has_windows():
                return []  # the bridge has not written anything yet
            raise SourceError(f"window store {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise SourceError(f"window store {self.path}: {exc}") from None

    def _not_written_yet(self) -> bool:
        """The file is missing but its folder is there (a missing folder is a wrong path)."""
        return not self.path.exists() and self.path.parent.is_dir()

    def _has_windows(self) -> bool:
        try:
            return bool(
                self._conn()
                .execute("SELECT 1 FROM sqlite_master WHERE name = 'window_aggregates'")
                .fetchall()
            )
        except sqlite3.Error:
            return False

    def version(self) -> str:
        rows = self._query("SELECT value FROM meta WHERE key = 'data_version'")
        return rows[0][0] if rows else "0"

    def meters(self) -> list[MeterLatest]:
        if not self._sited:  # a file the sink has not opened since sites came: no column yet
            columns = self._query("PRAGMA table_info(window_meters)")
            self._sited = any(row[1] == "site" for row in columns)
        site = "site" if self._sited else "''"
        return [
            MeterLatest(*row)
            for row in self._query(
                "SELECT meter_id, building, floor, last_window_ms, last_avg_power_w, "
                f"last_coverage, {site} FROM window_meters ORDER BY meter_id"
            )
        ]

    def directed(self) -> bool:
        """The rollups have their export and estimate columns: a store the bridge has opened
        since they came (rollups and windows gain them in one transaction)."""
        if not self._directed:
            columns = self._query("PRAGMA table_info(rollup_daily)")
            self._directed = any(row[1] == "export_wh" for row in columns)
        return self._directed

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        sums = ", ".join(f"coalesce(sum({c}), 0)" for c in DIRECTED[self.directed()])
        if meters is None:  # the campus: one rollup row per day, however many meters
            rows = self._query(
                "SELECT coalesce(sum(energy_wh), 0), coalesce(sum(readings), 0), "
                "max(last_window_ms), (SELECT count(*) FROM window_meters m WHERE EXISTS "
                "(SELECT 1 FROM rollup_daily d WHERE d.meter_id = m.meter_id "
                f"AND d.day >= ?1 AND d.day <= ?2)), {sums} FROM rollup_daily_campus "
                "WHERE day >= ?1 AND day <= ?2",
                [first_day, last_day],
            )
            if not rows:
                return Total(0.0, 0, 0, None)
            energy, readings, last, found, *directed = rows[0]
            return _total(energy, readings, found, last, directed)
        where, params = _meter_filter(meters)
        rows = self._query(
            "SELECT coalesce(sum(energy_wh), 0), coalesce(sum(readings), 0), "
            f"count(DISTINCT meter_id), max(last_window_ms), {sums} FROM rollup_daily "
            f"WHERE day >= ? AND day <= ? {where}",
            [first_day, last_day, *params],
        )
        if not rows:
            return Total(0.0, 0, 0, None)
        energy, readings, found, last, *directed = rows[0]
        return _total(energy, readings, found, last, directed)

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        where, params = _meter_filter(meters)
        group = " GROUP BY meter_id, step" if grain == "window" else ""
        sql = GRAIN_SQL[self.directed()][grain]
        rows = self._query(f"{sql} {where}{group}", [start, end, *params])
        return [
            Bucket(m, k, float(e), float(c or 0.0), int(r), float(x), float(g), float(gx))
            for m, k, e, c, r, x, g, gx in rows
        ]

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        if not terms:
            return []
        weights = json.dumps({meter: float(w) for meter, w in terms.items()})
        rows = self._query(SCOPE_HOURS_SQL[self.directed()], [weights, start_ms, end_ms])
        return [
            ScopeHour(
                int(hour), (float(q0), float(q1), float(q2), float(q3)), float(c), int(n), float(g)
            )
            for hour, q0, q1, q2, q3, c, n, g in rows
        ]

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        intervals_of(bounds, interval_min)
        if not terms or len(bounds) < 2:
            return []
        lone = daily_scope(terms, min_members)
        if lone is not None and self._by_days(bounds):
            meter, weight = lone
            first, last = day_range(bounds)
            ends = json.dumps([int(b) for b in bounds])
            rows = self._query(
                DAILY_PEAKS_SQL[interval_min],
                [meter, weight, ends, first, last, bounds[0], bounds[-1]],
            )
            return [ScopePeak(int(i), float(e), int(s)) for i, e, s in rows]
        weights = json.dumps({meter: float(w) for meter, w in terms.items()})
        rows = self._query(
            SCOPE_PEAKS_SQL[interval_min],
            [weights, json.dumps([int(b) for b in bounds]), min_members, bounds[0], bounds[-1]],
        )
        return [ScopePeak(int(i), float(e), int(s)) for i, e, s in rows]

    def _by_days(self, bounds: Sequence[int]) -> bool:
        """The daily rollups hold peaks (their layout) and every bound starts a local day."""
        rows = self._query("SELECT value FROM meta WHERE key = 'rollup_zone'")
        if not rows:
            return False
        zone, _, layout = str(rows[0][0]).partition("|")
        return layout == str(ROLLUP_LAYOUT) and all(starts_day(b, ZoneInfo(zone)) for b in bounds)

    def close(self) -> None:
        file = getattr(self._local, "file", None)
        if file is not None:
            file.close()
            self._local.file = None


def _total(
    energy: float, readings: int, found: int, last: int | None, directed: Sequence[float]
) -> Total:
    exported, guessed, guessed_export = (float(value) for value in directed)
    return Total(
        float(energy),
        int(readings),
        int(found),
        last,
        export_wh=exported,
        estimated_wh=guessed,
        estimated_export_wh=guessed_export,
    )


def _meter_filter(meters: Collection[str] | None) -> tuple[str, list[str]]:
    if meters is None:
        return "", []
    if not meters:
        return "AND 0", []
    return f"AND meter_id IN ({', '.join('?' for _ in meters)})", list(meters)
