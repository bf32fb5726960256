"""The SQLite window sink (`bridge.sqlite.path`): the embedded default, read by the API."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from campus_energy.backends.base import stored_window
from campus_energy.backends.sqlite.schema import (
    ADDED_COLUMNS,
    GENERATED_COLUMNS,
    ROLLUP_LAYOUT,
    ROLLUP_TABLES,
    SCHEMA,
)
from campus_energy.core.days import day_span, local_day
from campus_energy.core.peaks import (
    DayPeaks,
    day_peaks,
    hour_peaks,
    peak_values,
    peaks_from,
    raised,
)
from campus_energy.core.rollups import RollupChange, Sums, added_window, change, recount
from campus_energy.core.timestamps import datetime_ms, iso_seconds
from campus_energy.core.windows import Accumulator, WindowDelta, WindowDoc, window_document
from campus_energy.errors import SinkError
from campus_energy.runtime.sqlite import INTEGRITY_BUDGET_S, SqliteFile, statements, transaction

# Beyond the measured import: the measured export and the estimates (see schema.py)
DIRECTED_COLUMNS = "export_wh, estimated_wh, estimated_export_wh"
DIRECTED_SUMS = (
    "export_wh = export_wh + excluded.export_wh, "
    "estimated_wh = estimated_wh + excluded.estimated_wh, "
    "estimated_export_wh = estimated_export_wh + excluded.estimated_export_wh"
)
HOURLY_COLUMNS = (
    "hour_ms, meter_id, energy_wh, covered_s, readings, windows, q0_wh, q1_wh, q2_wh, q3_wh, "
    f"{DIRECTED_COLUMNS}"
)
PEAK_COLUMNS = "peak15_wh, peak15_ms, peak30_wh, peak30_ms, peak60_wh, peak60_ms"
DAILY_COLUMNS = (
    f"day, meter_id, energy_wh, covered_s, readings, windows, last_window_ms, {PEAK_COLUMNS}, "
    f"{DIRECTED_COLUMNS}"
)
CAMPUS_COLUMNS = f"day, energy_wh, covered_s, readings, windows, last_window_ms, {DIRECTED_COLUMNS}"
PEAKS_SQL = (
    "UPDATE rollup_daily SET peak15_wh = ?, peak15_ms = ?, peak30_wh = ?, peak30_ms = ?, "
    "peak60_wh = ?, peak60_ms = ? WHERE day = ? AND meter_id = ?"
)
HOURLY_INSERT = f"INSERT INTO rollup_hourly ({HOURLY_COLUMNS}) VALUES ({', '.join('?' * 13)})"
DAILY_INSERT = f"INSERT INTO rollup_daily ({DAILY_COLUMNS}) VALUES ({', '.join('?' * 16)})"
ROLLUP_SQL = (
    f"{HOURLY_INSERT} ON CONFLICT (hour_ms, meter_id) DO UPDATE SET "
    "energy_wh = energy_wh + excluded.energy_wh, covered_s = covered_s + excluded.covered_s, "
    "readings = readings + excluded.readings, windows = windows + excluded.windows, "
    "q0_wh = q0_wh + excluded.q0_wh, q1_wh = q1_wh + excluded.q1_wh, "
    f"q2_wh = q2_wh + excluded.q2_wh, q3_wh = q3_wh + excluded.q3_wh, {DIRECTED_SUMS} "
    "RETURNING q0_wh, q1_wh, q2_wh, q3_wh",
    # a new day's peaks are its first hour's; a day's row returns the peaks it held
    f"{DAILY_INSERT} ON CONFLICT (day, meter_id) DO UPDATE SET "
    "energy_wh = energy_wh + excluded.energy_wh, covered_s = covered_s + excluded.covered_s, "
    "readings = readings + excluded.readings, windows = windows + excluded.windows, "
    f"last_window_ms = max(last_window_ms, excluded.last_window_ms), {DIRECTED_SUMS} "
    f"RETURNING {PEAK_COLUMNS}",
    f"INSERT INTO rollup_daily_campus ({CAMPUS_COLUMNS}) VALUES ({', '.join('?' * 9)}) "
    "ON CONFLICT (day) DO UPDATE SET "
    "energy_wh = energy_wh + excluded.energy_wh, covered_s = covered_s + excluded.covered_s, "
    "readings = readings + excluded.readings, windows = windows + excluded.windows, "
    f"last_window_ms = max(last_window_ms, excluded.last_window_ms), {DIRECTED_SUMS}",
)
METER_SQL = (
    "INSERT INTO window_meters (meter_id, building, floor, last_window_ms, last_avg_power_w, "
    "last_coverage, updated_ms, site) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) "
    "DO UPDATE SET building = excluded.building, floor = excluded.floor, "
    "site = excluded.site, updated_ms = excluded.updated_ms, "
    "last_window_ms = max(last_window_ms, excluded.last_window_ms), "
    "last_avg_power_w = CASE WHEN excluded.last_window_ms >= last_window_ms "
    "THEN excluded.last_avg_power_w ELSE last_avg_power_w END, "
    "last_coverage = CASE WHEN excluded.last_window_ms >= last_window_ms "
    "THEN excluded.last_coverage ELSE last_coverage END"
)

DATA_VERSION_SQL = (  # a counter: readers use it to tell whether anything changed
    "INSERT INTO meta (key, value) VALUES ('data_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)
CAMPUS_RECOUNT_SQL = (
    f"INSERT INTO rollup_daily_campus ({CAMPUS_COLUMNS}) SELECT day, sum(energy_wh), "
    "sum(covered_s), sum(readings), sum(windows), max(last_window_ms), sum(export_wh), "
    "sum(estimated_wh), sum(estimated_export_wh) FROM rollup_daily WHERE day = ? GROUP BY day"
)


class SqliteSink(SqliteFile):
    """Windows, their hourly and daily rollups and each meter's latest window, in one file."""

    name = "sqlite"
    label = "window sink"
    integrity_budget_s = INTEGRITY_BUDGET_S  # a damaged sink is refused, not written to
    error = SinkError
    schema = SCHEMA

    def __init__(self, path: Path, zone: ZoneInfo) -> None:
        super().__init__(path)
        self.zone = zone

    def _prepare(self, conn: sqlite3.Connection) -> None:
        super()._prepare(conn)
        with transaction(conn):
            for table, column, kind in ADDED_COLUMNS:  # table_xinfo: generated columns too
                have = {row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            # Rollups depend on the time zone and on their own layout: rebuild on a change.
            wanted = f"{self.zone.key}|{ROLLUP_LAYOUT}"
            row = conn.execute("SELECT value FROM meta WHERE key = 'rollup_zone'").fetchone()
            if row is None or row[0] != wanted:
                _rebuild_rollups(conn, self.zone)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('rollup_zone', ?)", (wanted,)
                )

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                for delta in deltas:
                    row = conn.execute(
                        "SELECT accumulator FROM window_aggregates WHERE id = ?",
                        (delta.document_id,),
                    ).fetchone()
                    existing = Accumulator.from_dict(json.loads(row[0])) if row else None
                    doc = window_document(delta, existing, now_ms)
                    _roll_up(conn, change(existing, doc, self.zone), self.zone)
                    _write(conn, doc, now_ms)
                conn.execute(DATA_VERSION_SQL)
            return len(deltas)

        return await self._call(work)

    async def windows(
        self, start_ms: int, end_ms: int, meters: Collection[str] | None
    ) -> list[WindowDoc]:
        where = ""
        params: list[object] = [start_ms, end_ms]
        if meters is not None:
            where = f"AND meter_id IN ({', '.join('?' for _ in meters)})"
            params += list(meters)

        def work(conn: sqlite3.Connection) -> list[WindowDoc]:
            conn.row_factory = sqlite3.Row
            try:
                rows = conn.execute(
                    "SELECT * FROM window_aggregates WHERE window_start_ms >= ? "
                    f"AND window_start_ms < ? {where} ORDER BY window_start_ms, meter_id",
                    params,
                ).fetchall()
            finally:
                conn.row_factory = None
            return [
                stored_window(
                    {**dict(row), "accumulator": json.loads(row["accumulator"])},
                    row["window_start_ms"],
                    _ms(row["window_end"]),
                    _ms(row["updated_at"]),
                )
                for row in rows
            ]

        return await self._call(work)

    async def replace(self, docs: Sequence[WindowDoc], now_ms: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                for doc in docs:
                    _write(conn, doc, now_ms)
                _recount_days(conn, [(d.meter_id, d.window_start_ms) for d in docs], self.zone)
                if docs:
                    conn.execute(DATA_VERSION_SQL)
            return len(docs)

        return await self._call(work)

    async def delete(self, keys: Sequence[tuple[str, int]], now_ms: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                deleted = sum(
                    conn.execute(
                        "DELETE FROM window_aggregates WHERE meter_id = ? AND window_start_ms = ?",
                        key,
                    ).rowcount
                    for key in keys
                )
                _recount_days(conn, keys, self.zone)
                for meter_id in sorted({m for m, _ in keys}):
                    _find_latest(conn, meter_id, now_ms)
                if deleted:
                    conn.execute(DATA_VERSION_SQL)
            return deleted

        return await self._call(work)


def _ms(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return datetime_ms(moment)


def _write(conn: sqlite3.Connection, doc: WindowDoc, now_ms: int) -> None:
    """Store `doc` in place of its window's row, and note it as its meter's latest window."""
    conn.execute(
        METER_SQL,
        (
            doc.meter_id,
            doc.building,
            doc.floor,
            doc.window_start_ms,
            doc.avg_power_w,
            doc.coverage,
            now_ms,
            doc.site,
        ),
    )
    fields = {
        name: value
        for name, value in doc.fields(iso_seconds).items()
        if name not in GENERATED_COLUMNS  # the store computes them
    }
    fields["updated_at"] = iso_seconds(now_ms)
    columns = ["id", *fields, "window_start_ms", "accumulator"]
    values = [
        doc.document_id,
        *fields.values(),
        doc.window_start_ms,
        json.dumps(doc.accumulator.to_dict()),
    ]
    conn.execute(
        f"INSERT OR REPLACE INTO window_aggregates ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})",
        values,
    )


def _recount_days(
    conn: sqlite3.Connection, windows: Sequence[tuple[str, int]], zone: ZoneInfo
) -> None:
    """Count afresh the rollups of every local day these (meter, window start) fall on."""
    touched = sorted({(meter_id, local_day(start, zone)) for meter_id, start in windows})
    for meter_id, day in touched:
        _recount(conn, meter_id, day, zone)
    for day in sorted({day for _, day in touched}):
        conn.execute("DELETE FROM rollup_daily_campus WHERE day = ?", (day,))
        conn.execute(CAMPUS_RECOUNT_SQL, (day,))


def _find_latest(conn: sqlite3.Connection, meter_id: str, now_ms: int) -> None:
    """Note the meter's latest window again from its windows (none left: forget the meter)."""
    row = conn.execute(
        "SELECT building, floor, window_start_ms, avg_power_w, coverage, site "
        "FROM window_aggregates WHERE meter_id = ? ORDER BY window_start_ms DESC LIMIT 1",
        (meter_id,),
    ).fetchone()
    if row is None:
        conn.execute("DELETE FROM window_meters WHERE meter_id = ?", (meter_id,))
        return
    conn.execute(
        "UPDATE window_meters SET building = ?, floor = ?, last_window_ms = ?, "
        "last_avg_power_w = ?, last_coverage = ?, site = ?, updated_ms = ? WHERE meter_id = ?",
        (*row, now_ms, meter_id),
    )


def _recount(conn: sqlite3.Connection, meter_id: str, day: str, zone: ZoneInfo) -> None:
    """Count a meter's hourly and daily rollups of the local `day` afresh from its windows."""
    low, high = day_span(day, zone)
    windows = [
        (start, Accumulator.from_dict(json.loads(accumulator)))
        for start, accumulator in conn.execute(
            "SELECT window_start_ms, accumulator FROM window_aggregates "
            "WHERE meter_id = ? AND window_start_ms >= ? AND window_start_ms < ?",
            (meter_id, low, high),
        )
    ]
    hourly, daily = recount(windows, day, zone)
    peaks = day_peaks((hour, s.quarters_wh) for hour, s in hourly.items())
    stale = [
        (hour, meter_id)
        for (hour,) in conn.execute(
            "SELECT hour_ms FROM rollup_hourly WHERE meter_id = ? AND hour_ms >= ? AND hour_ms < ?",
            (meter_id, low, high),
        ).fetchall()
        if local_day(hour, zone) == day
    ]
    conn.executemany("DELETE FROM rollup_hourly WHERE hour_ms = ? AND meter_id = ?", stale)
    conn.executemany(
        HOURLY_INSERT,
        [
            (
                hour,
                meter_id,
                s.energy_wh,
                s.covered_s,
                s.readings,
                s.windows,
                *s.quarters_wh,
                *_directed(s),
            )
            for hour, s in sorted(hourly.items())
        ],
    )
    conn.execute("DELETE FROM rollup_daily WHERE day = ? AND meter_id = ?", (day, meter_id))
    if daily is not None:
        conn.execute(
            DAILY_INSERT,
            (
                day,
                meter_id,
                daily.energy_wh,
                daily.covered_s,
                daily.readings,
                daily.windows,
                daily.last_window_ms,
                *peak_values(peaks),
                *_directed(daily),
            ),
        )


def _directed(s: RollupChange | Sums) -> tuple[float, float, float]:
    """The sums beyond the measured import, in DIRECTED_COLUMNS' order."""
    return s.export_wh, s.estimated_wh, s.estimated_export_wh


def _roll_up(conn: sqlite3.Connection, c: RollupChange, zone: ZoneInfo) -> None:
    """Add a window's change to its hour, its day (and the day's peaks) and the campus's day."""
    hourly, daily, campus = ROLLUP_SQL
    quarters = conn.execute(
        hourly,
        (
            c.hour_ms,
            c.meter_id,
            c.energy_wh,
            c.covered_s,
            c.readings,
            c.windows,
            *c.quarters_wh(),
            *_directed(c),
        ),
    ).fetchone()
    held = conn.execute(
        daily,
        (
            c.day,
            c.meter_id,
            c.energy_wh,
            c.covered_s,
            c.readings,
            c.windows,
            c.window_start_ms,
            *peak_values(hour_peaks(c.hour_ms, quarters)),
            *_directed(c),
        ),
    ).fetchone()
    before = peaks_from(held)
    after = raised(before, c.hour_ms, quarters)
    if after is None:  # the hour held a peak that went down: count the day's hours
        after = _day_peaks(conn, c.meter_id, c.day, zone)
    if after != before:
        conn.execute(PEAKS_SQL, (*peak_values(after), c.day, c.meter_id))
    conn.execute(
        campus,
        (c.day, c.energy_wh, c.covered_s, c.readings, c.windows, c.window_start_ms, *_directed(c)),
    )


def _rebuild_rollups(conn: sqlite3.Connection, zone: ZoneInfo) -> None:
    """Recompute every rollup from the windows (a new file, an upgrade, or a new time zone).

    The rollup tables are dropped and created anew: CREATE TABLE IF NOT EXISTS would leave
    an older layout's table as it was."""
    for table in ROLLUP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    for statement in statements(SCHEMA):
        conn.execute(statement)
    conn.execute("DELETE FROM window_meters")
    conn.execute(
        "INSERT INTO window_meters (meter_id, building, floor, last_window_ms, last_avg_power_w, "
        "last_coverage, updated_ms, site) SELECT w.meter_id, w.building, w.floor, "
        "w.window_start_ms, w.avg_power_w, w.coverage, 0, w.site FROM window_aggregates w "
        "WHERE w.window_start_ms = "
        "(SELECT max(window_start_ms) FROM window_aggregates x WHERE x.meter_id = w.meter_id)"
    )
    rows = conn.execute("SELECT meter_id, window_start_ms, accumulator FROM window_aggregates")
    for meter_id, start_ms, accumulator in rows:
        acc = Accumulator.from_dict(json.loads(accumulator))
        _roll_up(conn, added_window(meter_id, start_ms, acc, zone), zone)


def _day_peaks(conn: sqlite3.Connection, meter_id: str, day: str, zone: ZoneInfo) -> DayPeaks:
    """A meter's peaks of the local `day`, from its hourly rollups of that day."""
    low, high = day_span(day, zone)
    return day_peaks(
        (hour, quarters)
        for hour, *quarters in conn.execute(
            "SELECT hour_ms, q0_wh, q1_wh, q2_wh, q3_wh FROM rollup_hourly "
            "WHERE meter_id = ? AND hour_ms >= ? AND hour_ms < ?",
            (meter_id, low, high),
        ).fetchall()
        if local_day(hour, zone) == day
    )


def fill_day_peaks(conn: sqlite3.Connection, zone: ZoneInfo) -> None:
    """Set every daily rollup's peaks from the hourly rollups (rollups filled in bulk)."""
    days: dict[tuple[str, str], list[tuple[int, tuple[float, ...]]]] = {}
    for meter_id, hour, *quarters in conn.execute(
        "SELECT meter_id, hour_ms, q0_wh, q1_wh, q2_wh, q3_wh FROM rollup_hourly"
    ):
        days.setdefault((local_day(hour, zone), meter_id), []).append((hour, tuple(quarters)))
    conn.executemany(
        PEAKS_SQL,
        [(*peak_values(day_peaks(hours)), *key) for key, hours in days.items()],
    )
