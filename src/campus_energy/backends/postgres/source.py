"""Reading the PostgreSQL window sink (its rollup tables and each meter's latest window)."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

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
from campus_energy.backends.postgres.connection import endpoint, error_text
from campus_energy.backends.postgres.schema import ROLLUP_LAYOUT, TABLES, table_names
from campus_energy.config import PostgresSinkConfig
from campus_energy.core.days import starts_day
from campus_energy.core.peaks import INTERVALS, Quarters, daily_scope, day_range, intervals_of
from campus_energy.core.timestamps import datetime_ms, utc_datetime
from campus_energy.errors import SourceError


def _grain_sql(directed: bool) -> dict[str, str]:
    """Per grain: meter, key, import, covered seconds, readings, export, the two estimates."""
    rolled = ", ".join(DIRECTED[directed])
    windowed = ", ".join(f"sum({column})" for column in WINDOW_DIRECTED[directed])
    return {
        # windows summed per meter per 5-minute step here, so short windows send no more rows
        "window": (
            "SELECT meter_id, date_bin('5 minutes', window_start, TIMESTAMPTZ '2000-01-01Z') "
            "AS step, sum(total_energy_wh), "
            "sum(coalesce((accumulator->>'covered_s')::float8, 0)), sum(readings_in_batch), "
            f"{windowed} FROM {{windows}} WHERE window_start >= %s AND window_start < %s"
        ),
        "hour": (
            f"SELECT meter_id, hour_start, energy_wh, covered_s, readings, {rolled} "
            "FROM {hourly} WHERE hour_start >= %s AND hour_start < %s"
        ),
        "day": (
            f"SELECT meter_id, day, energy_wh, covered_s, readings, {rolled} FROM {{daily}} "
            "WHERE day >= %s AND day < %s"
        ),
    }


GRAIN_SQL = {directed: _grain_sql(directed) for directed in (True, False)}
# A scope's hours: its members (the arrays, unnested) joined to their hours' rows; the
# planner reads a few meters' hours through rollup_hourly_by_meter and many by hour.
SCOPE_HOURS_SQL = {
    directed: (
        "SELECT r.hour_start, sum(t.w * r.q0_wh), sum(t.w * r.q1_wh), sum(t.w * r.q2_wh), "
        "sum(t.w * r.q3_wh), min(r.covered_s), count(*), "
        f"{'sum(t.w * r.estimated_wh)' if directed else '0'} "
        "FROM unnest(%s::text[], %s::float8[]) AS t(meter_id, w) "
        "JOIN {hourly} r ON r.meter_id = t.meter_id "
        "WHERE r.hour_start >= %s AND r.hour_start < %s "
        "GROUP BY r.hour_start ORDER BY r.hour_start"
    )
    for directed in (True, False)
}
# Each range's peak in one statement: the scope's hours from the first bound to the last
# with at least the members asked for (read as scope_hours reads them), each reduced to its
# highest interval (the earliest of equals) and put in its range (width_bucket: how many
# bounds lie at or before it, less one), and per range the first by energy, highest
# first, then by start.
SCOPE_PEAKS_SQL_OF = (
    "SELECT DISTINCT ON (i) i, e, s FROM (SELECT width_bucket(hour_start, %s::timestamptz[]) - 1 "
    "AS i, e, hour_start + ({first}) * interval '15 minutes' AS s "
    "FROM (SELECT h.*, {best} AS e FROM "
    "(SELECT r.hour_start, sum(t.w * r.q0_wh) AS e0, sum(t.w * r.q1_wh) AS e1, "
    "sum(t.w * r.q2_wh) AS e2, sum(t.w * r.q3_wh) AS e3 "
    "FROM unnest(%s::text[], %s::float8[]) AS t(meter_id, w) "
    "JOIN {{hourly}} r ON r.meter_id = t.meter_id "
    "WHERE r.hour_start >= %s AND r.hour_start < %s "
    "GROUP BY r.hour_start HAVING count(*) >= %s) AS h) AS x) AS y "
    "ORDER BY i, e DESC, s"
)


def _scope_peaks_sql(intervals: tuple[Quarters, ...]) -> str:
    """The statement for one demand interval: an hour's intervals are sums of e0..e3; the
    highest, and its first quarter (that of the first interval equal to it)."""
    energies = [" + ".join(f"e{q}" for q in quarters) for quarters in intervals]
    if len(energies) == 1:
        return SCOPE_PEAKS_SQL_OF.format(best=energies[0], first=intervals[0][0])
    whens = " ".join(
        f"WHEN {energy} THEN {quarters[0]}"
        for energy, quarters in zip(energies[:-1], intervals[:-1], strict=True)
    )
    return SCOPE_PEAKS_SQL_OF.format(
        best=f"greatest({', '.join(energies)})",
        first=f"CASE e {whens} ELSE {intervals[-1][0]} END",
    )


SCOPE_PEAKS_SQL = {minutes: _scope_peaks_sql(intervals) for minutes, intervals in INTERVALS.items()}

# One meter's peaks from its days': each day's peak put in its range, per range the highest,
# the earliest of equals (bounds; weight; meter; the first and last day that may hold a peak
# between the first and the last bound). Exact when the bounds are local midnights (a day
# lies in one range) and scaling by the weight keeps every sum and order
# (`core.peaks.daily_scope`).
DAILY_PEAKS_SQL = {
    minutes: (
        f"SELECT DISTINCT ON (i) width_bucket(peak{minutes}_start, %s::timestamptz[]) - 1 AS i, "
        f"%s::float8 * peak{minutes}_wh AS e, peak{minutes}_start AS s FROM {{daily}} "
        "WHERE meter_id = %s AND day >= %s AND day <= %s "
        f"AND peak{minutes}_start >= %s AND peak{minutes}_start < %s ORDER BY i, e DESC, s"
    )
    for minutes in INTERVALS
}


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else datetime_ms(moment)


class PostgresSource:
    name = "postgres"
    lag_s = 0.0  # every answer queries the database

    def __init__(self, config: PostgresSinkConfig) -> None:
        if not config.dsn:
            raise SourceError("postgres source: bridge.postgres.dsn is not set")
        self.config = config
        self.where = endpoint(config.dsn)
        self.names = table_names(config.schema_name)
        self._local = threading.local()
        self._sited = False  # the latest windows' table has its site column (once seen, always)
        self._directed = False  # the rollups have their export and estimate columns (the same)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        try:
            if conn is None or conn.closed:
                assert self.config.dsn is not None
                conn = psycopg.connect(self.config.dsn, connect_timeout=5, autocommit=True)
                self._local.conn = conn
            return conn.execute(sql.SQL(statement).format(**self.names), params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # the bridge has not written anything yet
        except (psycopg.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            self._local.conn = None
            raise SourceError(
                f"{self.where}: {type(exc).__name__}: {error_text(exc, self.config.dsn)}"
            ) from None

    def version(self) -> str:
        rows = self._query("SELECT value FROM {meta} WHERE key = 'data_version'")
        return str(rows[0][0]) if rows else "0"

    def meters(self) -> list[MeterLatest]:
        if not self._sited:  # a store no bridge of this release has opened: no column yet
            self._sited = bool(
                self._query(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s AND column_name = 'site'",
                    (self.config.schema_name, TABLES["meters"]),
                )
            )
        site = "site" if self._sited else "''"
        return [
            MeterLatest(m, b, f, _ms(last), power, coverage, site)
            for m, b, f, last, power, coverage, site in self._query(
                "SELECT meter_id, building, floor, last_window, last_avg_power_w, last_coverage, "
                f"{site} FROM {{meters}} ORDER BY meter_id"
            )
        ]

    def directed(self) -> bool:
        """The rollups have their export and estimate columns: a store a bridge has opened
        since they came (rollups and windows gain them in one transaction)."""
        if not self._directed:
            self._directed = bool(
                self._query(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s AND column_name = 'export_wh'",
                    (self.config.schema_name, TABLES["daily"]),
                )
            )
        return self._directed

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        sums = ", ".join(f"coalesce(sum({c}), 0)" for c in DIRECTED[self.directed()])
        if meters is None:  # the campus: one rollup row per day, however many meters
            first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
            rows = self._query(
                "SELECT coalesce(sum(energy_wh), 0), coalesce(sum(readings), 0), "
                "max(last_window), (SELECT count(*) FROM {meters} m WHERE EXISTS "
                "(SELECT 1 FROM {daily} d WHERE d.meter_id = m.meter_id "
                f"AND d.day >= %s AND d.day <= %s)), {sums} FROM {{campus}} "
                "WHERE day >= %s AND day <= %s",
                [first, last, first, last],
            )
            if not rows:
                return Total(0.0, 0, 0, None)
            energy, readings, last_window, found, *directed = rows[0]
            return _total(energy, readings, found, _ms(last_window), directed)
        where, params = _meter_filter(meters)
        rows = self._query(
            "SELECT coalesce(sum(energy_wh), 0), coalesce(sum(readings), 0), "
            f"count(DISTINCT meter_id), max(last_window), {sums} FROM {{daily}} "
            f"WHERE day >= %s AND day <= %s {where}",
            [date.fromisoformat(first_day), date.fromisoformat(last_day), *params],
        )
        if not rows:
            return Total(0.0, 0, 0, None)
        energy, readings, found, last, *directed = rows[0]
        return _total(energy, readings, found, _ms(last), directed)

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        where, params = _meter_filter(meters)
        if grain == "day":
            bounds: list[Any] = [date.fromisoformat(str(start)), date.fromisoformat(str(end))]
        else:
            bounds = [utc_datetime(int(start)), utc_datetime(int(end))]
        group = " GROUP BY meter_id, step" if grain == "window" else ""
        sql_of = GRAIN_SQL[self.directed()][grain]
        rows = self._query(f"{sql_of} {where}{group}", [*bounds, *params])
        found = []
        for meter_id, key, energy, covered, readings, exported, guessed, guessed_export in rows:
            k: int | str = key.isoformat() if grain == "day" else datetime_ms(key)
            found.append(
                Bucket(
                    meter_id,
                    k,
                    float(energy),
                    float(covered or 0.0),
                    int(readings),
                    float(exported),
                    float(guessed),
                    float(guessed_export),
                )
            )
        return found

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        if not terms:
            return []
        meters = list(terms)
        rows = self._query(
            SCOPE_HOURS_SQL[self.directed()],
            [
                meters,
                [float(terms[m]) for m in meters],
                utc_datetime(start_ms),
                utc_datetime(end_ms),
            ],
        )
        return [
            ScopeHour(
                datetime_ms(hour),
                (float(q0), float(q1), float(q2), float(q3)),
                float(c),
                int(n),
                float(g),
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
            rows = self._query(
                DAILY_PEAKS_SQL[interval_min],
                [
                    [utc_datetime(b) for b in bounds],
                    weight,
                    meter,
                    date.fromisoformat(first),
                    date.fromisoformat(last),
                    utc_datetime(bounds[0]),
                    utc_datetime(bounds[-1]),
                ],
            )
            return [ScopePeak(int(i), float(e), datetime_ms(s)) for i, e, s in rows]
        meters = list(terms)
        rows = self._query(
            SCOPE_PEAKS_SQL[interval_min],
            [
                [utc_datetime(b) for b in bounds],
                meters,
                [float(terms[m]) for m in meters],
                utc_datetime(bounds[0]),
                utc_datetime(bounds[-1]),
                min_members,
            ],
        )
        return [ScopePeak(int(i), float(e), datetime_ms(s)) for i, e, s in rows]

    def _by_days(self, bounds: Sequence[int]) -> bool:
        """The daily rollups hold peaks (their layout) and every bound starts a local day."""
        rows = self._query("SELECT value FROM {meta} WHERE key = 'rollup_zone'")
        if not rows:
            return False
        zone, _, layout = str(rows[0][0]).partition("|")
        return layout == str(ROLLUP_LAYOUT) and all(starts_day(b, ZoneInfo(zone)) for b in bounds)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


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


def _meter_filter(meters: Collection[str] | None) -> tuple[str, list[Any]]:
    if meters is None:
        return "", []
    return "AND meter_id = ANY(%s)", [list(meters)]
