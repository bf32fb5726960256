"""The PostgreSQL window sink (psycopg 3): the self-hosted path; Grafana can read it directly.

Table `<schema>.window_aggregates`, primary key (meter_id, window_start),
partitioned by UTC month (see `schema`). A merge first makes sure the partitions
of its windows' months exist (remembering which do), then runs in one
transaction: missing rows are created empty (`ON CONFLICT DO NOTHING`), every
row is then locked with `SELECT … FOR UPDATE`, so two bridges merging the same
window take turns and neither overwrites the other. Every merge takes its row
locks in one order (windows, then hours, days and campus days, each sorted), so
bridges merging at once wait for each other but never deadlock. Replacing
documents (`campus-energy reconcile --apply`) locks the table against writers
for its transaction and counts the rollups it touches afresh; so does deleting
windows (`delete`). Once a UTC day, at its first merge, the sink creates this
and next month's partitions and, with `retention_months`, drops the months that
ended longer ago than that, with their rollups (`upkeep`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from campus_energy.backends.base import stored_window
from campus_energy.backends.postgres import hypertable, partitions
from campus_energy.backends.postgres.connection import endpoint, error_text
from campus_energy.backends.postgres.partitions import add_months, month_of, month_start
from campus_energy.backends.postgres.schema import COLUMNS, Layout, create_schema, table_names
from campus_energy.config import PostgresSinkConfig
from campus_energy.core.days import day_span, local_date, local_day, midnight_ms
from campus_energy.core.peaks import DayPeaks, day_peaks, peak_values, peaks_from, raised
from campus_energy.core.rollups import RollupChange, Sums, change, recount
from campus_energy.core.timestamps import datetime_ms, utc_datetime
from campus_energy.core.windows import Accumulator, WindowDelta, WindowDoc, window_document
from campus_energy.errors import SinkError

T = TypeVar("T")
W = TypeVar("W", WindowDelta, WindowDoc)
log = logging.getLogger("campus_energy.sinks")
DAY_MS = 86_400_000
METERS_SQL = (  # each meter's latest window
    "INSERT INTO {} AS m (meter_id, building, floor, last_window, last_avg_power_w, "
    "last_coverage, updated_at, site) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (meter_id) DO UPDATE SET building = excluded.building, "
    "floor = excluded.floor, site = excluded.site, updated_at = excluded.updated_at, "
    "last_window = greatest(m.last_window, excluded.last_window), "
    "last_avg_power_w = CASE WHEN excluded.last_window >= m.last_window "
    "THEN excluded.last_avg_power_w ELSE m.last_avg_power_w END, "
    "last_coverage = CASE WHEN excluded.last_window >= m.last_window "
    "THEN excluded.last_coverage ELSE m.last_coverage END"
)
DATA_VERSION_SQL = (  # a counter: readers use it to tell whether anything changed
    "INSERT INTO {} AS m (key, value) VALUES ('data_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = (m.value::bigint + 1)::text"
)

# A rollup row absorbs a change: its sums grow by the change's (the rows are named r and excluded).
ADD_TO_ROLLUP = (
    "energy_wh = r.energy_wh + excluded.energy_wh, "
    "covered_s = r.covered_s + excluded.covered_s, "
    "readings = r.readings + excluded.readings, windows = r.windows + excluded.windows, "
    "export_wh = r.export_wh + excluded.export_wh, "
    "estimated_wh = r.estimated_wh + excluded.estimated_wh, "
    "estimated_export_wh = r.estimated_export_wh + excluded.estimated_export_wh"
)
# Beyond the measured import: the measured export and the estimates (see schema)
DIRECTED_COLUMNS = "export_wh, estimated_wh, estimated_export_wh"
# An hour's row also adds the change to the quarter hour its window lies in (0 to the others).
ADD_TO_QUARTERS = (
    "q0_wh = r.q0_wh + excluded.q0_wh, q1_wh = r.q1_wh + excluded.q1_wh, "
    "q2_wh = r.q2_wh + excluded.q2_wh, q3_wh = r.q3_wh + excluded.q3_wh"
)
PEAK_COLUMNS = "peak15_wh, peak15_start, peak30_wh, peak30_start, peak60_wh, peak60_start"
HOURLY_INSERT = (
    "INSERT INTO {} AS r (hour_start, meter_id, energy_wh, covered_s, readings, windows, "
    f"q0_wh, q1_wh, q2_wh, q3_wh, {DIRECTED_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})"
)


class PostgresSink:
    name = "postgres"

    def __init__(self, config: PostgresSinkConfig, zone: ZoneInfo) -> None:
        if not config.dsn:
            raise SinkError("postgres sink: bridge.postgres.dsn is not set")
        self.config = config
        self.zone = zone
        self.names = table_names(config.schema_name)
        self.where = endpoint(config.dsn)
        self.table = self.names["windows"]
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._layout: Layout = "partitions"
        self._months: set[date] = set()  # months whose partitions are known to exist
        self._upkept_day: int | None = None  # the UTC day (epoch days) of the last upkeep
        self._told_day: int | None = None  # the day windows before the retention were last logged

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        assert self.config.dsn is not None
        conn = await psycopg.AsyncConnection.connect(self.config.dsn, connect_timeout=10)
        try:
            self._layout = await create_schema(conn, self.config.schema_name, self.zone)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _transaction(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work(conn)` in one transaction; every failure becomes a SinkError."""
        try:
            conn = await self._connection()
            async with conn.transaction():
                return await work(conn)
        except psycopg.Error as exc:
            await self._drop()
            raise SinkError(
                f"{self.where}: {type(exc).__name__}: {error_text(exc, self.config.dsn)}"
            ) from None
        except OSError as exc:
            await self._drop()
            raise SinkError(f"{self.where}: {error_text(exc, self.config.dsn)}") from None

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        if not deltas:
            return 0
        if self._upkept_day != now_ms // DAY_MS:
            await self.upkeep(now_ms)
        kept = self._retained(deltas, now_ms)
        if kept:
            await self._partitions_for(d.window_start_ms for d in kept)
            await self._transaction(lambda conn: self._merge(conn, kept, now_ms))
        return len(kept)

    async def upkeep(self, now_ms: int) -> int:
        """This month's and next month's partitions, made ahead; with `retention_months`, the
        months that ended longer ago than that dropped with their rollups (never this month
        or a later one). Returns how many partitions (or chunks) went. `merge` calls it once
        a UTC day."""
        this_month = month_of(now_ms)
        await self._partitions_for([], ahead=(this_month, add_months(this_month, 1)))
        gone = 0
        months = self.config.retention_months
        if months is not None:
            cutoff = partitions.retention_cutoff(now_ms, months)
            gone = await self._transaction(lambda conn: self._expire(conn, cutoff))
            if gone:
                self._months = {m for m in self._months if m >= cutoff}
                log.info(
                    "%s: dropped %d %s of windows before %s (retention_months = %d)",
                    self.where,
                    gone,
                    "chunks" if self._layout == "hypertable" else "monthly partitions",
                    cutoff.isoformat(),
                    months,
                )
        self._upkept_day = now_ms // DAY_MS
        return gone

    def _retained(self, items: Sequence[W], now_ms: int) -> list[W]:
        """The windows retention keeps: those of months it has dropped (or would drop) are not
        written, as they would make partitions and rollups again for a day (logged once a day)."""
        if self.config.retention_months is None:
            return list(items)
        cutoff = partitions.retention_cutoff(now_ms, self.config.retention_months)
        first_ms = datetime_ms(month_start(cutoff))
        kept = [item for item in items if item.window_start_ms >= first_ms]
        if len(kept) < len(items) and self._told_day != now_ms // DAY_MS:
            self._told_day = now_ms // DAY_MS
            log.warning(
                "%s: %d windows before %s not written: bridge.postgres.retention_months = %d "
                "drops them (logged once a day)",
                self.where,
                len(items) - len(kept),
                cutoff.isoformat(),
                self.config.retention_months,
            )
        return kept

    async def _partitions_for(self, starts: Iterable[int], ahead: Collection[date] = ()) -> None:
        """Make sure the partitions of these windows' months (and of the months `ahead`) exist:
        a look at the catalogue and, for those missing, their creation, under the schema's
        lock; only for months not known to exist already."""
        missing = ({month_of(ms) for ms in starts} | set(ahead)) - self._months
        if not missing:
            return

        async def work(conn: psycopg.AsyncConnection[Any]) -> None:
            if self._layout == "partitions":
                async with conn.cursor() as cur:
                    await cur.execute(partitions.SCHEMA_LOCK)
                    await partitions.create(cur, self.config.schema_name, missing)

        await self._transaction(work)  # (a hypertable makes its chunks itself)
        self._months |= missing

    async def _expire(self, conn: psycopg.AsyncConnection[Any], cutoff: date) -> int:
        """Drop the windows of the months before `cutoff` (whole partitions, or chunks) and the
        rollups they made; a local day the cutoff cuts is counted afresh from what is left.
        Returns how many partitions (chunks) went."""
        async with conn.cursor() as cur:
            await cur.execute(partitions.SCHEMA_LOCK)
            if self._layout == "hypertable":
                chunks, rows = await hypertable.drop_before(
                    cur, self.config.schema_name, month_start(cutoff)
                )
                if chunks or rows:
                    await self._forget_before(cur, month_start(cutoff))
                return chunks
            held = await partitions.existing(cur, self.config.schema_name)
            if not any(add_months(m, 1) <= cutoff for m in held):
                return 0
            # Merges wait from here to the commit: the rollups trimmed below are those of
            # exactly the windows dropped.
            await cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(self.table))
            gone = await partitions.drop_before(cur, self.config.schema_name, cutoff)
            await self._forget_before(cur, month_start(cutoff))
        return len(gone)

    async def _forget_before(self, cur: psycopg.AsyncCursor[Any], cutoff: datetime) -> None:
        """Trim the rollups to the windows left, all of which start at or after `cutoff`: the
        hours and days wholly before it go, the local day it falls in is counted afresh (when
        the cut is not its midnight), a meter with no window left is forgotten."""
        cutoff_ms = datetime_ms(cutoff)
        day = local_date(cutoff_ms, self.zone)
        midnight = midnight_ms(day, self.zone)
        await cur.execute(
            sql.SQL("DELETE FROM {} WHERE hour_start < %s").format(self.names["hourly"]),
            (utc_datetime(midnight),),
        )
        for role in ("daily", "campus"):
            await cur.execute(
                sql.SQL("DELETE FROM {} WHERE day < %s").format(self.names[role]), (day,)
            )
        if midnight < cutoff_ms:
            await cur.execute(
                sql.SQL("SELECT meter_id FROM {} WHERE day = %s ORDER BY meter_id").format(
                    self.names["daily"]
                ),
                (day,),
            )
            await self._recount_days(cur, [(m, cutoff_ms) for (m,) in await cur.fetchall()])
        await cur.execute(
            sql.SQL("DELETE FROM {} WHERE last_window < %s").format(self.names["meters"]),
            (cutoff,),
        )
        await cur.execute(sql.SQL(DATA_VERSION_SQL).format(self.names["meta"]))

    async def windows(
        self, start_ms: int, end_ms: int, meters: Collection[str] | None
    ) -> list[WindowDoc]:
        where = sql.SQL("AND meter_id = ANY(%s)" if meters is not None else "")
        params: list[Any] = [utc_datetime(start_ms), utc_datetime(end_ms)]
        if meters is not None:
            params.append(list(meters))

        async def work(conn: psycopg.AsyncConnection[Any]) -> list[WindowDoc]:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    sql.SQL(
                        "SELECT * FROM {} WHERE window_start >= %s AND window_start < %s {} "
                        "ORDER BY window_start, meter_id"
                    ).format(self.table, where),
                    params,
                )
                rows = await cur.fetchall()
            return [
                stored_window(
                    row,
                    datetime_ms(row["window_start"]),
                    datetime_ms(row["window_end"]),
                    datetime_ms(row["updated_at"]),
                )
                for row in rows
            ]

        return await self._transaction(work)

    async def replace(self, docs: Sequence[WindowDoc], now_ms: int) -> int:
        kept = self._retained(docs, now_ms)
        if not kept:
            return 0
        await self._partitions_for(d.window_start_ms for d in kept)
        await self._transaction(lambda conn: self._replace(conn, kept, now_ms))
        return len(kept)

    async def _replace(
        self, conn: psycopg.AsyncConnection[Any], docs: Sequence[WindowDoc], now_ms: int
    ) -> None:
        # Bridges merging meanwhile wait (their INSERT needs ROW EXCLUSIVE): the rollups
        # are counted from windows nobody changes until this transaction ends.
        await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self.table))
        columns = [c for c in COLUMNS if c != "accumulator"]
        rows = []
        for doc in docs:
            fields = {
                **doc.fields(utc_datetime),
                "id": doc.document_id,
                "updated_at": utc_datetime(now_ms),
            }
            rows.append((*(fields[c] for c in columns), json.dumps(doc.accumulator.to_dict())))
        names = [*columns, "accumulator"]
        async with conn.cursor() as cur:
            await cur.executemany(
                sql.SQL(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (meter_id, window_start) "
                    "DO UPDATE SET {}"
                ).format(
                    self.table,
                    sql.SQL(", ").join(sql.Identifier(c) for c in names),
                    sql.SQL(", ").join(sql.Placeholder() for _ in names),
                    sql.SQL(", ").join(
                        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in names[2:]
                    ),
                ),
                rows,
            )
            await cur.executemany(
                sql.SQL(METERS_SQL).format(self.names["meters"]),
                [
                    (
                        d.meter_id,
                        d.building,
                        d.floor,
                        utc_datetime(d.window_start_ms),
                        d.avg_power_w,
                        d.coverage,
                        utc_datetime(now_ms),
                        d.site,
                    )
                    for d in sorted(docs, key=lambda d: d.meter_id)
                ],
            )
            await self._recount_days(cur, [(d.meter_id, d.window_start_ms) for d in docs])
            await cur.execute(sql.SQL(DATA_VERSION_SQL).format(self.names["meta"]))

    async def delete(self, keys: Sequence[tuple[str, int]], now_ms: int) -> int:
        if not keys:
            return 0
        return await self._transaction(lambda conn: self._delete(conn, keys, now_ms))

    async def _delete(
        self, conn: psycopg.AsyncConnection[Any], keys: Sequence[tuple[str, int]], now_ms: int
    ) -> int:
        # As in _replace: bridges wait, so the rollups count windows nobody changes meanwhile.
        await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self.table))
        async with conn.cursor() as cur:
            await cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE (meter_id, window_start) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))"
                ).format(self.table),
                ([m for m, _ in keys], [utc_datetime(start) for _, start in keys]),
            )
            deleted = cur.rowcount
            await self._recount_days(cur, keys)
            for meter_id in sorted({m for m, _ in keys}):
                await self._find_latest(cur, meter_id, now_ms)
            if deleted:
                await cur.execute(sql.SQL(DATA_VERSION_SQL).format(self.names["meta"]))
        return deleted

    async def _recount_days(
        self, cur: psycopg.AsyncCursor[Any], windows: Sequence[tuple[str, int]]
    ) -> None:
        """Count afresh the rollups of every local day these (meter, window start) fall on."""
        touched = sorted({(meter_id, local_day(start, self.zone)) for meter_id, start in windows})
        for meter_id, day in touched:
            await self._recount(cur, meter_id, day)
        for day in sorted({day for _, day in touched}):
            await cur.execute(
                sql.SQL("DELETE FROM {} WHERE day = %s").format(self.names["campus"]),
                (date.fromisoformat(day),),
            )
            await cur.execute(
                sql.SQL(
                    "INSERT INTO {} (day, energy_wh, covered_s, readings, windows, "
                    f"last_window, {DIRECTED_COLUMNS}) SELECT day, sum(energy_wh), "
                    "sum(covered_s), sum(readings), sum(windows), max(last_window), "
                    "sum(export_wh), sum(estimated_wh), sum(estimated_export_wh) FROM {} "
                    "WHERE day = %s GROUP BY day"
                ).format(self.names["campus"], self.names["daily"]),
                (date.fromisoformat(day),),
            )

    async def _find_latest(self, cur: psycopg.AsyncCursor[Any], meter_id: str, now_ms: int) -> None:
        """Note the meter's latest window again from its windows (none left: forget the meter)."""
        await cur.execute(
            sql.SQL(
                "SELECT building, floor, window_start, avg_power_w, coverage, site FROM {} "
                "WHERE meter_id = %s ORDER BY window_start DESC LIMIT 1"
            ).format(self.table),
            (meter_id,),
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(
                sql.SQL("DELETE FROM {} WHERE meter_id = %s").format(self.names["meters"]),
                (meter_id,),
            )
            return
        await cur.execute(
            sql.SQL(
                "UPDATE {} SET building = %s, floor = %s, last_window = %s, "
                "last_avg_power_w = %s, last_coverage = %s, site = %s, updated_at = %s "
                "WHERE meter_id = %s"
            ).format(self.names["meters"]),
            (*row, utc_datetime(now_ms), meter_id),
        )

    async def _recount(self, cur: psycopg.AsyncCursor[Any], meter_id: str, day: str) -> None:
        """Count a meter's hourly and daily rollups of the local `day` afresh from its windows."""
        low, high = (utc_datetime(ms) for ms in day_span(day, self.zone))
        await cur.execute(
            sql.SQL(
                "SELECT window_start, accumulator FROM {} WHERE meter_id = %s "
                "AND window_start >= %s AND window_start < %s"
            ).format(self.table),
            (meter_id, low, high),
        )
        windows = [
            (datetime_ms(start), Accumulator.from_dict(acc)) for start, acc in await cur.fetchall()
        ]
        hourly, daily = recount(windows, day, self.zone)
        peaks = day_peaks((hour, s.quarters_wh) for hour, s in hourly.items())
        await cur.execute(
            sql.SQL(
                "SELECT hour_start FROM {} WHERE meter_id = %s AND hour_start >= %s "
                "AND hour_start < %s"
            ).format(self.names["hourly"]),
            (meter_id, low, high),
        )
        stale = [h for (h,) in await cur.fetchall() if local_day(datetime_ms(h), self.zone) == day]
        if stale:
            await cur.execute(
                sql.SQL("DELETE FROM {} WHERE meter_id = %s AND hour_start = ANY(%s)").format(
                    self.names["hourly"]
                ),
                (meter_id, stale),
            )
        await cur.executemany(
            sql.SQL(HOURLY_INSERT).format(self.names["hourly"]),
            [
                (
                    utc_datetime(hour),
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
        await cur.execute(
            sql.SQL("DELETE FROM {} WHERE day = %s AND meter_id = %s").format(self.names["daily"]),
            (date.fromisoformat(day), meter_id),
        )
        if daily is not None:
            await cur.execute(
                sql.SQL(
                    "INSERT INTO {} (day, meter_id, energy_wh, covered_s, readings, windows, "
                    f"last_window, {PEAK_COLUMNS}, {DIRECTED_COLUMNS}) "
                    f"VALUES ({', '.join(['%s'] * 16)})"
                ).format(self.names["daily"]),
                (
                    date.fromisoformat(day),
                    meter_id,
                    daily.energy_wh,
                    daily.covered_s,
                    daily.readings,
                    daily.windows,
                    utc_datetime(daily.last_window_ms),
                    *_peak_values(peaks),
                    *_directed(daily),
                ),
            )

    async def _merge(
        self, conn: psycopg.AsyncConnection[Any], deltas: Sequence[WindowDelta], now_ms: int
    ) -> None:
        # In (meter, window) order: so are the rows of every rollup table but the campus's
        # (sorted by day below), and merges that lock rows in one order never deadlock.
        deltas = sorted(deltas, key=lambda d: (d.meter_id, d.window_start_ms))
        async with conn.cursor() as cur:
            await cur.executemany(
                sql.SQL(
                    'INSERT INTO {} (meter_id, window_start, id, window_end, "timestamp") '
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(self.table),
                [
                    (
                        d.meter_id,
                        utc_datetime(d.window_start_ms),
                        d.document_id,
                        utc_datetime(d.window_start_ms + d.window_s * 1000),
                        utc_datetime(d.window_start_ms),
                    )
                    for d in deltas
                ],
            )
            keys = [(d.meter_id, utc_datetime(d.window_start_ms)) for d in deltas]
            await cur.execute(
                sql.SQL(
                    "SELECT meter_id, window_start, accumulator FROM {} "
                    "WHERE (meter_id, window_start) IN (SELECT * FROM unnest(%s::text[], "
                    "%s::timestamptz[])) ORDER BY meter_id, window_start FOR UPDATE"
                ).format(self.table),
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
            held = {(m, w): acc for m, w, acc in await cur.fetchall()}
            rows = []
            changes = []
            latest = []
            for d in deltas:
                raw = held.get((d.meter_id, utc_datetime(d.window_start_ms)))
                existing = Accumulator.from_dict(raw) if raw else None
                doc = window_document(d, existing, now_ms)
                changes.append(change(existing, doc, self.zone))
                latest.append(
                    (
                        doc.meter_id,
                        doc.building,
                        doc.floor,
                        utc_datetime(doc.window_start_ms),
                        doc.avg_power_w,
                        doc.coverage,
                        utc_datetime(now_ms),
                        doc.site,
                    )
                )
                fields = doc.fields(utc_datetime)
                rows.append(
                    (
                        *(fields[c] for c in COLUMNS[3:-1] if c in fields),
                        json.dumps(doc.accumulator.to_dict()),
                        d.meter_id,
                        utc_datetime(d.window_start_ms),
                    )
                )
            updated = list(COLUMNS[3:-1])
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in [*updated, "accumulator"]
            )
            # One plan for every row's UPDATE (its partition found as it runs): planned afresh
            # for each row, as PostgreSQL otherwise does on a partitioned table, a merge's
            # UPDATEs took 2.7 times as long. (Not for the SELECT above: a generic plan of
            # its unnest took 3 times as long.)
            await cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await cur.executemany(
                sql.SQL("UPDATE {} SET {} WHERE meter_id = %s AND window_start = %s").format(
                    self.table, assignments
                ),
                rows,
            )
            await self._roll_up(cur, changes, latest, now_ms)

    async def _roll_up(
        self,
        cur: psycopg.AsyncCursor[Any],
        changes: list[RollupChange],
        latest: list[tuple[Any, ...]],
        now_ms: int,
    ) -> None:
        await cur.executemany(
            sql.SQL(
                HOURLY_INSERT
                + " ON CONFLICT (hour_start, meter_id) DO UPDATE SET "
                + ADD_TO_ROLLUP
                + ", "
                + ADD_TO_QUARTERS
            ).format(self.names["hourly"]),
            [
                (
                    utc_datetime(c.hour_ms),
                    c.meter_id,
                    c.energy_wh,
                    c.covered_s,
                    c.readings,
                    c.windows,
                    *c.quarters_wh(),
                    *_directed(c),
                )
                for c in changes
            ],
        )
        await cur.executemany(
            sql.SQL(
                "INSERT INTO {} AS r (day, meter_id, energy_wh, covered_s, readings, windows, "
                f"last_window, {DIRECTED_COLUMNS}) VALUES ({', '.join(['%s'] * 10)}) "
                "ON CONFLICT (day, meter_id) DO UPDATE SET "
                + ADD_TO_ROLLUP
                + ", last_window = greatest(r.last_window, excluded.last_window)"
            ).format(self.names["daily"]),
            [
                (
                    date.fromisoformat(c.day),
                    c.meter_id,
                    c.energy_wh,
                    c.covered_s,
                    c.readings,
                    c.windows,
                    utc_datetime(c.window_start_ms),
                    *_directed(c),
                )
                for c in changes
            ],
        )
        await self._raise_peaks(cur, changes)
        await cur.executemany(
            sql.SQL(
                "INSERT INTO {} AS r (day, energy_wh, covered_s, readings, windows, last_window, "
                f"{DIRECTED_COLUMNS}) VALUES ({', '.join(['%s'] * 9)}) "
                "ON CONFLICT (day) DO UPDATE SET "
                + ADD_TO_ROLLUP
                + ", last_window = greatest(r.last_window, excluded.last_window)"
            ).format(self.names["campus"]),
            [
                (
                    date.fromisoformat(c.day),
                    c.energy_wh,
                    c.covered_s,
                    c.readings,
                    c.windows,
                    utc_datetime(c.window_start_ms),
                    *_directed(c),
                )
                for c in sorted(changes, key=lambda c: c.day)
            ],
        )
        await cur.executemany(sql.SQL(METERS_SQL).format(self.names["meters"]), latest)
        await cur.execute(sql.SQL(DATA_VERSION_SQL).format(self.names["meta"]))

    async def _raise_peaks(
        self, cur: psycopg.AsyncCursor[Any], changes: list[RollupChange]
    ) -> None:
        """Bring the peaks of the days these changes touched up to date with their hours (as
        now summed): each touched hour raises a day's peak it beats; a day whose peak lay in
        a touched hour that went down is counted afresh from its hours."""
        hours = sorted({(c.meter_id, c.day, c.hour_ms) for c in changes})
        days = sorted({(meter_id, day) for meter_id, day, _ in hours})
        await cur.execute(
            sql.SQL(
                "SELECT meter_id, hour_start, q0_wh, q1_wh, q2_wh, q3_wh FROM {} "
                "WHERE (meter_id, hour_start) IN (SELECT * FROM unnest(%s::text[], "
                "%s::timestamptz[]))"
            ).format(self.names["hourly"]),
            ([m for m, _, _ in hours], [utc_datetime(h) for _, _, h in hours]),
        )
        quarters = {(m, datetime_ms(h)): q for m, h, *q in await cur.fetchall()}
        await cur.execute(
            sql.SQL(
                f"SELECT meter_id, day, {PEAK_COLUMNS} FROM {{}} WHERE (meter_id, day) IN "
                "(SELECT * FROM unnest(%s::text[], %s::date[]))"
            ).format(self.names["daily"]),
            ([m for m, _ in days], [date.fromisoformat(d) for _, d in days]),
        )
        held = {(m, d.isoformat()): _peaks_of(values) for m, d, *values in await cur.fetchall()}
        found: dict[tuple[str, str], DayPeaks] = {}
        afresh: set[tuple[str, str]] = set()
        for meter_id, day, hour in hours:
            key = (meter_id, day)
            if key not in afresh:
                after = raised(found.get(key, held[key]), hour, quarters[(meter_id, hour)])
                if after is None:
                    afresh.add(key)
                else:
                    found[key] = after
        updates = []
        for key in days:
            after = await self._day_peaks(cur, *key) if key in afresh else found[key]
            if after != held[key]:
                updates.append((*_peak_values(after), date.fromisoformat(key[1]), key[0]))
        await cur.executemany(
            sql.SQL(
                "UPDATE {} SET peak15_wh = %s, peak15_start = %s, peak30_wh = %s, "
                "peak30_start = %s, peak60_wh = %s, peak60_start = %s "
                "WHERE day = %s AND meter_id = %s"
            ).format(self.names["daily"]),
            updates,
        )

    async def _day_peaks(self, cur: psycopg.AsyncCursor[Any], meter_id: str, day: str) -> DayPeaks:
        """A meter's peaks of the local `day`, from its hourly rollups of that day."""
        low, high = (utc_datetime(ms) for ms in day_span(day, self.zone))
        await cur.execute(
            sql.SQL(
                "SELECT hour_start, q0_wh, q1_wh, q2_wh, q3_wh FROM {} WHERE meter_id = %s "
                "AND hour_start >= %s AND hour_start < %s"
            ).format(self.names["hourly"]),
            (meter_id, low, high),
        )
        return day_peaks(
            (datetime_ms(h), q)
            for h, *q in await cur.fetchall()
            if local_day(datetime_ms(h), self.zone) == day
        )

    async def _drop(self) -> None:
        # Another bridge may have dropped a partition meanwhile: look again before writing.
        self._months.clear()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._drop()


def _directed(s: RollupChange | Sums) -> tuple[float, float, float]:
    """The sums beyond the measured import, in DIRECTED_COLUMNS' order."""
    return s.export_wh, s.estimated_wh, s.estimated_export_wh


def _peaks_of(values: Sequence[Any]) -> DayPeaks:
    """A daily row's peak columns (energy, start as a timestamp) as peaks."""
    return peaks_from(
        [v if k % 2 == 0 or v is None else datetime_ms(v) for k, v in enumerate(values)]
    )


def _peak_values(peaks: DayPeaks) -> list[Any]:
    """Peaks as a daily row's columns (energy, start as a timestamp)."""
    return [v if k % 2 == 0 else utc_datetime(int(v)) for k, v in enumerate(peak_values(peaks))]
