"""The logger's SQLite store: high-resolution readings, the MQTT outbox cursor, gaps, rejects
and meter events.

Layout (schema 3):
- `meters`: one row per meter, with a small integer key, its metadata, the
  outbox cursor (`published_seq`, `published_ts_ms`: every reading up to it was
  acknowledged by the broker), the monotonic-clock continuity of its last
  reading (`boot_id`, `mono_ms`), so energy integration can continue across a
  restart of the logger within one boot, and the span of its readings
  (`first_ts_ms`, `last_ts_ms`, kept by triggers whoever writes `samples`: a
  first no later and a last no earlier than the readings' own), which bounds
  every search for one meter's readings.
- `samples`: one compact row per reading; the core values and the meter's own
  energy registers (`import_energy`, `export_energy`) are integers at the
  resolution of `core.resolution`, fields beyond them are a JSON object in
  `extra`. Energy is in integer µWh by direction: imported over the interval
  (`energy`) and cumulative (`energy_total`), exported likewise
  (`energy_export`, `energy_export_total`), and what the registers counted
  across a gap before the reading (`estimated`, `estimated_export`; NULL: no
  estimate), which covers the time since the meter's previous reading and is
  never part of the measured columns. A file made by this version keeps them in
  time order (primary key (ts_ms, meter)): a cycle's readings go to the end of
  the table, one or two pages per commit, where the order (meter, ts_ms) of a
  file made before schema 2 wrote a page per meter — on an SD card the
  difference between a few and tens of kB/s (`benchmarks/disk.py`). Both
  orders answer the same queries; `time_ordered` says which one a file has.
- `readings`: the public view with the column names and units of the contract
  (`energy_wh`, `energy_total_wh`: import), and after them the columns added
  since: `energy_export_wh`, `energy_export_total_wh`, `estimated_energy_wh`,
  `estimated_export_wh`, `export_energy_wh` (the register).
- `latest_readings`: the newest reading of every meter.
- `gaps`, `rejects`: intervals left unintegrated, readings refused as implausible.
- `meter_events`: a meter's energy register replaced, reset, rolled over or
  jumping (`core.meter_events`), detected by the logger or confirmed by a
  person (`campus-energy meter-event add`): an audit trail, never deleted by
  retention. It names meters by id, so an event may be recorded for a meter
  the store has no reading of yet.

A file of schema 1 or 2 is upgraded when it is opened, in one transaction:
the new columns are added (a reading stored before has no estimate) and the
views made again. The logger of those schemas stored one signed energy per
interval (`energy`: import − export) and its running sum (`energy_total`), so
the readings of a meter that exported (any negative `energy`) are split by
direction: a negative energy becomes that much export and no import, and the
meter's import and export totals are summed again in `seq` order: the import
total from its total before the first kept reading, the export total from 0
(what it exported before that reading is unknown). The readings of a meter
that never exported, every reading's outbox state and every other value stay
as they are.

The readings table is the outbox: nothing is copied to publish it, so the
outbox is bounded by the disk, not by memory. When the disk is full,
`commit_making_room` deletes the oldest readings the broker has acknowledged
to keep the newest. All access goes through one thread that owns the
connection: one writer per file.

When it is opened the file is checked with `PRAGMA quick_check` for at most
`INTEGRITY_BUDGET_S` (a warm file of a few GB; the rest is left to `doctor`):
a damaged store is refused before a reading is appended to it.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.core.resolution import RESOLUTION, STEPS_PER_UNIT, from_steps, to_steps
from campus_energy.core.witness import Witness, Witnesses
from campus_energy.errors import StoreError, StoreFullError
from campus_energy.runtime.sqlite import (
    INTEGRITY_BUDGET_S,
    SqliteFile,
    statements,
    transaction,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
RETENTION_CHUNK = 10_000
MAKE_ROOM_SHARE = 0.01  # a full disk: delete this share of the published readings, until it fits

# field name -> column of `samples` (integer steps of core.resolution)
COLUMNS: dict[str, str] = {
    "voltage_v": "voltage",
    "current_a": "current",
    "power_w": "power",
    "power_factor": "pf",
    "frequency_hz": "freq",
    "import_energy_wh": "import_energy",
    "export_energy_wh": "export_energy",
}
assert set(COLUMNS) == set(RESOLUTION)
# Columns of `samples` added in schema 3, with their declarations (ALTER TABLE ADD COLUMN)
ADDED_IN_3: dict[str, str] = {
    "export_energy": "INTEGER",
    "energy_export": "INTEGER NOT NULL DEFAULT 0",
    "energy_export_total": "INTEGER NOT NULL DEFAULT 0",
    "estimated": "INTEGER",
    "estimated_export": "INTEGER",
}
_FIRST_VIEW_FIELDS = [name for name, column in COLUMNS.items() if column not in ADDED_IN_3]
_LATER_VIEW_FIELDS = [name for name, column in COLUMNS.items() if column in ADDED_IN_3]


def _view_columns(names: Iterable[str]) -> str:
    return ",\n    ".join(
        f"s.{COLUMNS[name]} / {float(STEPS_PER_UNIT[name])!r} AS {name}" for name in names
    )


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meters (
    id INTEGER PRIMARY KEY,
    meter_id TEXT NOT NULL UNIQUE,
    building TEXT NOT NULL DEFAULT '',
    floor TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT '',
    published_seq INTEGER NOT NULL DEFAULT 0,
    published_ts_ms INTEGER NOT NULL DEFAULT 0,
    boot_id TEXT,
    mono_ms INTEGER,
    first_ts_ms INTEGER,
    last_ts_ms INTEGER,
    registers_settling TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS samples (
    meter INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    {", ".join(f"{c} INTEGER" for c in COLUMNS.values())},
    energy INTEGER NOT NULL,
    energy_total INTEGER NOT NULL,
    extra TEXT,
    energy_export INTEGER NOT NULL DEFAULT 0,
    energy_export_total INTEGER NOT NULL DEFAULT 0,
    estimated INTEGER,
    estimated_export INTEGER,
    PRIMARY KEY (ts_ms, meter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    meter INTEGER NOT NULL,
    start_ts_ms INTEGER NOT NULL,
    end_ts_ms INTEGER NOT NULL,
    PRIMARY KEY (meter, start_ts_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejects (
    meter INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    power_w REAL,
    PRIMARY KEY (meter, ts_ms)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS readings AS
SELECT
    m.meter_id AS meter_id,
    s.ts_ms AS ts_ms,
    {_view_columns(_FIRST_VIEW_FIELDS)},
    CAST(s.energy / 1000000.0 AS REAL) AS energy_wh,
    CAST(s.energy_total / 1000000.0 AS REAL) AS energy_total_wh,
    s.seq AS seq,
    s.extra AS extra,
    CAST(s.energy_export / 1000000.0 AS REAL) AS energy_export_wh,
    CAST(s.energy_export_total / 1000000.0 AS REAL) AS energy_export_total_wh,
    CAST(s.estimated / 1000000.0 AS REAL) AS estimated_energy_wh,
    CAST(s.estimated_export / 1000000.0 AS REAL) AS estimated_export_wh,
    {_view_columns(_LATER_VIEW_FIELDS)}
FROM meters m JOIN samples s ON s.meter = m.id;
CREATE VIEW IF NOT EXISTS latest_readings AS
SELECT r.* FROM meters m JOIN readings r ON r.meter_id = m.meter_id
WHERE r.ts_ms = (
    SELECT ts_ms FROM samples WHERE meter = m.id AND ts_ms <= m.last_ts_ms
    ORDER BY ts_ms DESC LIMIT 1
);
CREATE TABLE IF NOT EXISTS meter_events (
    id INTEGER PRIMARY KEY,
    meter_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    register TEXT NOT NULL,
    before_wh REAL,
    after_wh REAL,
    old_final_wh REAL,
    new_start_wh REAL,
    note TEXT NOT NULL DEFAULT '',
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS meter_events_by_meter ON meter_events (meter_id, ts_ms);
"""

# The span of each meter's readings, kept whoever writes `samples` (the logger, an import,
# fix-db, a person with sqlite3): widened by every row added or moved, never narrowed by a
# deletion, so that it bounds a meter's readings however they were written.
SPAN_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS samples_span_insert AFTER INSERT ON samples BEGIN
    UPDATE meters SET
        first_ts_ms = min(coalesce(first_ts_ms, NEW.ts_ms), NEW.ts_ms),
        last_ts_ms = max(coalesce(last_ts_ms, NEW.ts_ms), NEW.ts_ms)
    WHERE id = NEW.meter; END;
CREATE TRIGGER IF NOT EXISTS samples_span_update AFTER UPDATE OF ts_ms, meter ON samples BEGIN
    UPDATE meters SET
        first_ts_ms = min(coalesce(first_ts_ms, NEW.ts_ms), NEW.ts_ms),
        last_ts_ms = max(coalesce(last_ts_ms, NEW.ts_ms), NEW.ts_ms)
    WHERE id = NEW.meter; END;
"""


# The readings that carry an estimate (a few a day at most): what the dashboards' estimated
# figures look up, instead of a pass over every reading of their range. Made after the
# columns exist (a file of an older schema gains them on open first).
ESTIMATES_INDEX = (
    "CREATE INDEX IF NOT EXISTS samples_estimated ON samples (ts_ms, meter) "
    "WHERE estimated IS NOT NULL OR estimated_export IS NOT NULL"
)


def time_ordered(conn: sqlite3.Connection) -> bool:
    """Whether the file keeps `samples` in time order (primary key (ts_ms, meter))."""
    # the primary key's columns in key order (WITHOUT ROWID: the table's own b-tree)
    keys = sorted((row[5], row[1]) for row in conn.execute("PRAGMA table_info(samples)") if row[5])
    return bool(keys) and keys[0][1] == "ts_ms"


def respan(conn: sqlite3.Connection, meters: Iterable[int] | None = None) -> None:
    """Each meter's span set to its readings' own ends (all meters, or the keys `meters`), in
    the caller's transaction: after the triggers widened it to readings since moved."""
    query = (
        "UPDATE meters SET "
        "first_ts_ms = (SELECT min(ts_ms) FROM samples WHERE meter = meters.id), "
        "last_ts_ms = (SELECT max(ts_ms) FROM samples WHERE meter = meters.id)"
    )
    if meters is None:
        conn.execute(query)
    else:
        conn.executemany(query + " WHERE id = ?", [(meter,) for meter in meters])


def upgrade(conn: sqlite3.Connection) -> None:
    """A file of schema 1 or 2 to schema 3, in the caller's transaction; its readings stay
    in the order they have.

    From schema 1: each meter's span of readings (a seek at either end of its readings in a
    file of that version) and the triggers that keep it. From schema 2: the columns of
    export, estimates and the export register (a reading stored before has no estimate),
    and the `meter_events` table; the signed energy of meters that exported split by
    direction (`_split_directions`). The views are made again."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(meters)")}
    spans = [c for c in ("first_ts_ms", "last_ts_ms") if c not in have]
    for column in spans:
        conn.execute(f"ALTER TABLE meters ADD COLUMN {column} INTEGER")
    if spans:
        respan(conn)
    have = {row[1] for row in conn.execute("PRAGMA table_info(samples)")}
    for column, declaration in ADDED_IN_3.items():
        if column not in have:
            conn.execute(f"ALTER TABLE samples ADD COLUMN {column} {declaration}")
    if "energy_export" not in have:  # its energy is the signed trapezoid of a logger before 3
        _split_directions(conn)
    for view in ("latest_readings", "readings"):
        conn.execute(f"DROP VIEW IF EXISTS {view}")
    for statement in statements(SCHEMA):
        if statement.startswith(
            ("CREATE VIEW", "CREATE TABLE IF NOT EXISTS meter_events", "CREATE INDEX")
        ):
            conn.execute(statement)


# A meter's running totals by direction after the split, in seq order: import from the
# total before its first kept reading (that reading's old total minus its old signed energy),
# export from 0. Window functions (SQLite 3.25) into a keyed table, read back per row by the
# UPDATE: no `UPDATE … FROM` (SQLite 3.33), and a pass over the meter's rows, not one a row.
# The keys have the affinity of samples' own: a stamp as stored (text too) matches, by a seek.
SPLIT_TABLE = (
    "CREATE TEMP TABLE split_totals (meter INTEGER, ts_ms INTEGER, total INTEGER, "
    "export_total INTEGER, PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID"
)
SPLIT_UPDATE = (
    "UPDATE samples SET (energy_total, energy_export_total) = ("
    "SELECT t.total, t.export_total FROM temp.split_totals t "
    "WHERE t.meter = samples.meter AND t.ts_ms = samples.ts_ms) WHERE meter = ?"
)
_SPLIT_TOTALS = """
INSERT INTO temp.split_totals (meter, ts_ms, total, export_total)
SELECT meter, ts_ms,
    first_value(energy_total - energy) OVER running + sum(max(energy, 0)) OVER running,
    sum(max(-energy, 0)) OVER running
FROM samples WHERE meter = ?
WINDOW running AS (ORDER BY seq, ts_ms ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""


def _split_directions(conn: sqlite3.Connection) -> None:
    """The signed energy of a logger before schema 3 split by direction, in the caller's
    transaction, for each meter with a negative `energy` (found in one pass; a meter that
    never exported is not touched): a negative energy becomes that much export and no
    import, and the meter's cumulative import and export are summed again in `seq` order.

    The import total keeps its base, the total before the meter's first kept reading (its
    old `energy_total` minus its old `energy`: retention may have deleted earlier readings),
    which was the net of what came before; the export total starts at 0 there, the export
    before the first kept reading being unknown. Each reading's stamp, values and outbox
    state stay as they are."""
    exporting = [
        row[0] for row in conn.execute("SELECT DISTINCT meter FROM samples WHERE energy < 0")
    ]
    if not exporting:
        return
    conn.execute(SPLIT_TABLE)
    for meter in exporting:
        conn.execute(_SPLIT_TOTALS, (meter,))
        conn.execute(
            "UPDATE samples SET energy_export = -energy, energy = 0 WHERE meter = ? AND energy < 0",
            (meter,),
        )
        conn.execute(SPLIT_UPDATE, (meter,))
    conn.execute("DROP TABLE temp.split_totals")


_SAMPLE_COLUMNS = (
    "meter",
    "ts_ms",
    "seq",
    *COLUMNS.values(),
    "energy",
    "energy_total",
    "extra",
    "energy_export",
    "energy_export_total",
    "estimated",
    "estimated_export",
)
_INSERT_SAMPLE = (
    f"INSERT INTO samples ({', '.join(_SAMPLE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _SAMPLE_COLUMNS)})"
)


def reorder(conn: sqlite3.Connection) -> int:
    """Rewrite `samples` in time order, in the caller's transaction (the store opened by one
    process alone: `fix-db --reorder --apply`); a file of schema 1 becomes schema 2. Returns
    the number of readings copied. Every value is copied as it is."""
    version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if version < SCHEMA_VERSION:
        upgrade(conn)
    columns = ", ".join(_SAMPLE_COLUMNS)
    table = next(t for t in statements(SCHEMA) if "CREATE TABLE IF NOT EXISTS samples" in t)
    for view in ("latest_readings", "readings"):
        conn.execute(f"DROP VIEW IF EXISTS {view}")
    for trigger in ("samples_span_insert", "samples_span_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute(table.replace(" samples (", " samples_in_time_order (", 1))
    copied = conn.execute(
        f"INSERT INTO samples_in_time_order ({columns}) SELECT {columns} FROM samples "
        "ORDER BY ts_ms, meter"
    ).rowcount
    conn.execute("DROP TABLE samples")
    conn.execute("ALTER TABLE samples_in_time_order RENAME TO samples")
    for statement in (*statements(SCHEMA), *statements(SPAN_TRIGGERS)):
        if statement.startswith(("CREATE VIEW", "CREATE TRIGGER")):
            conn.execute(statement)
    conn.execute(ESTIMATES_INDEX)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    return int(copied)


# Per meter: the readings the broker has not acknowledged yet, and the oldest one's time.
# Read by doctor too. A range of each meter's readings where they are clustered by meter;
# one pass over the time range the cursors leave where they are in time order.
OUTBOX_SQL_BY_METER = (
    "SELECT m.meter_id, count(s.ts_ms), min(s.ts_ms) FROM meters m "
    "LEFT JOIN samples s ON s.meter = m.id AND s.ts_ms > m.published_ts_ms GROUP BY m.id"
)
OUTBOX_SQL_BY_TIME = (
    "SELECT m.meter_id, coalesce(o.n, 0), o.first FROM meters m LEFT JOIN ("
    "SELECT s.meter AS meter, count(*) AS n, min(s.ts_ms) AS first FROM samples s "
    "JOIN meters c ON c.id = s.meter WHERE s.ts_ms > (SELECT min(published_ts_ms) FROM meters "
    "WHERE last_ts_ms > published_ts_ms) "
    "AND s.ts_ms > c.published_ts_ms GROUP BY s.meter) o ON o.meter = m.id ORDER BY m.id"
)


def outbox_sql(conn: sqlite3.Connection) -> str:
    """The outbox query for this file's order of `samples`."""
    return OUTBOX_SQL_BY_TIME if time_ordered(conn) else OUTBOX_SQL_BY_METER


@dataclass(frozen=True)
class MeterRecord:
    """What the store keeps of a meter."""

    meter_id: str
    building: str = ""
    floor: str = ""
    profile: str = ""


@dataclass(frozen=True)
class Restored:
    """A meter's last stored reading, to continue its sequence, its energy and the witness of
    its registers (what the last reading read of them)."""

    seq: int
    ts_ms: int
    total_uwh: int
    power_w: float | None
    boot_id: str | None
    mono_ms: int | None
    export_total_uwh: int = 0
    registers: Witnesses = field(default_factory=Witnesses)


@dataclass
class Cycle:
    """Everything one poll cycle writes, committed in one transaction."""

    readings: list[Reading] = field(default_factory=list)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # meter_id, start, end ts_ms
    rejects: list[tuple[str, int, str, float | None]] = field(default_factory=list)
    continuity: list[tuple[str, str | None, int]] = field(default_factory=list)  # id, boot, mono_ms
    events: list[MeterEvent] = field(default_factory=list)
    # meter id, its energy registers still settling after an event (comma-separated names):
    # what a restart must not trust
    settling: list[tuple[str, str]] = field(default_factory=list)


def _encode(reading: Reading, meter: int) -> tuple[Any, ...]:
    extra = {k: v for k, v in reading.values.items() if k not in COLUMNS and v is not None}
    return (
        meter,
        reading.ts_ms,
        reading.seq,
        *(to_steps(name, reading.values.get(name)) for name in COLUMNS),
        reading.energy_uwh,
        reading.total_uwh,
        json.dumps(extra, separators=(",", ":")) if extra else None,
        reading.export_uwh,
        reading.export_total_uwh,
        reading.estimated_uwh,
        reading.estimated_export_uwh,
    )


def _decode(meter_id: str, row: Sequence[Any]) -> Reading:
    # row: ts_ms, seq, <columns...>, energy, energy_total, extra, energy_export,
    # energy_export_total, estimated, estimated_export
    values: dict[str, float | None] = {}
    for offset, name in enumerate(COLUMNS, start=2):
        value = from_steps(name, row[offset])
        if value is not None:
            values[name] = value
    n = 2 + len(COLUMNS)
    if row[n + 2]:
        values.update(json.loads(row[n + 2]))
    return Reading(
        meter_id,
        row[0],
        row[1],
        row[n],
        row[n + 1],
        values,
        export_uwh=row[n + 3],
        export_total_uwh=row[n + 4],
        estimated_uwh=row[n + 5],
        estimated_export_uwh=row[n + 6],
    )


def _framed(readings: Iterable[Reading], previous: int | None) -> Iterator[Reading]:
    """Readings of one meter in time order with the starts of what they cover: the interval
    (when energy was integrated) and the estimate (when there is one), both the previous
    reading's time (`previous`: the one before the first, None when it is not known)."""
    for reading in readings:
        integrated = reading.energy_uwh or reading.export_uwh
        estimated = reading.estimated_uwh is not None or reading.estimated_export_uwh is not None
        yield replace(
            reading,
            interval_start_ms=previous if integrated else None,
            estimated_start_ms=previous if estimated else None,
        )
        previous = reading.ts_ms


_EVENT_COLUMNS = (
    "meter_id, ts_ms, kind, source, register, before_wh, after_wh, old_final_wh, new_start_wh, "
    "note, recorded_ms, id"
)
_INSERT_EVENT = f"INSERT INTO meter_events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 12)})"


def _event_row(event: MeterEvent) -> tuple[Any, ...]:
    recorded = event.recorded_ms if event.recorded_ms is not None else event.ts_ms
    return (
        event.meter_id,
        event.ts_ms,
        event.kind,
        event.source,
        event.register,
        event.before_wh,
        event.after_wh,
        event.old_final_wh,
        event.new_start_wh,
        event.note,
        recorded,
        event.id,
    )


def _event_of(row: Sequence[Any]) -> MeterEvent:
    return MeterEvent(*row)


def _page_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA page_count").fetchone()[0])


# Below its outbox cursor, a reading's meter has had it acknowledged (the cursor's own reading
# is kept: the next reading's interval starts there).
_ACKNOWLEDGED = "ts_ms < (SELECT m.published_ts_ms FROM meters m WHERE m.id = samples.meter)"


def _delete_oldest_published(conn: sqlite3.Connection, share: float, by_time: bool) -> int:
    """Delete the oldest acknowledged readings: a `share` (at least one) of each meter's where
    they are kept by meter; in time order, those of the oldest `share` of the time the
    acknowledged readings cover (more, step by step, until one goes), each a range of the
    key, never a pass over the whole table per meter.

    A meter's last acknowledged reading is kept: the next one's interval starts there.
    """
    if by_time:
        return _delete_oldest_published_by_time(conn, share)
    deleted = 0
    with transaction(conn):
        for meter, published in conn.execute("SELECT id, published_ts_ms FROM meters").fetchall():
            older = conn.execute(
                "SELECT count(*) FROM samples WHERE meter = ? AND ts_ms < ?", (meter, published)
            ).fetchone()[0]
            if not older:
                continue
            last = conn.execute(
                "SELECT ts_ms FROM samples WHERE meter = ? ORDER BY ts_ms LIMIT 1 OFFSET ?",
                (meter, min(older, math.ceil(older * share)) - 1),
            ).fetchone()[0]
            deleted += conn.execute(
                "DELETE FROM samples WHERE meter = ? AND ts_ms <= ?", (meter, last)
            ).rowcount
    return deleted


def _delete_oldest_published_by_time(conn: sqlite3.Connection, share: float) -> int:
    with transaction(conn):
        oldest = conn.execute("SELECT ts_ms FROM samples ORDER BY ts_ms LIMIT 1").fetchone()
        horizon = conn.execute("SELECT max(published_ts_ms) FROM meters").fetchone()[0]
        if oldest is None or horizon is None or oldest[0] >= horizon:
            return 0
        span = horizon - oldest[0]
        step = max(1, math.ceil(span * share))
        while True:
            end = min(horizon, oldest[0] + step)
            deleted = conn.execute(
                f"DELETE FROM samples WHERE ts_ms <= ? AND {_ACKNOWLEDGED}", (end,)
            ).rowcount
            if deleted or end >= horizon:
                return int(deleted)
            step *= 2


class ReadingStore(SqliteFile):
    """The logger's SQLite file. Every call runs on the store's own thread."""

    label = "store"
    error = StoreError
    full_error = StoreFullError
    schema = SCHEMA
    schema_version = SCHEMA_VERSION
    integrity_budget_s: float | None = INTEGRITY_BUDGET_S
    page_size = 1024  # a commit writes each page it touches whole: small pages, fewer bytes

    def __init__(self, path: Path, *, cursor_with_commits: bool = False) -> None:
        super().__init__(path)
        # With `cursor_with_commits` (the logger's) an acknowledgement moves the outbox
        # cursor in memory, and the next commit (or closing) writes it: a crash before that
        # makes the logger publish those readings again, which the bridge recognises as ones
        # it has (QoS 1 allows that already), instead of a fsync'd commit of its own per
        # publication. Without it (tools, tests) each acknowledgement is written at once.
        self.cursor_with_commits = cursor_with_commits
        self._acknowledged: dict[int, tuple[int, int]] = {}  # meter key -> (seq, ts_ms)
        self._full_at_pages: int | None = None  # the file's size when it last made room
        self._unlimited_pages: int | None = None  # SQLite's own page limit (`limit_growth`)
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self.time_ordered = True  # what a new file gets; the file's own order once it is open

    def _prepare(self, conn: sqlite3.Connection) -> None:
        super()._prepare(conn)
        with transaction(conn):
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            if int(version.fetchone()[0]) < SCHEMA_VERSION:
                upgrade(conn)
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
            for statement in statements(SPAN_TRIGGERS):
                conn.execute(statement)
            conn.execute(ESTIMATES_INDEX)
            have = {row[1] for row in conn.execute("PRAGMA table_info(meters)")}
            if "registers_settling" not in have:  # a file of schema 3 made before it
                conn.execute(
                    "ALTER TABLE meters ADD COLUMN registers_settling TEXT NOT NULL DEFAULT ''"
                )
        self.time_ordered = time_ordered(conn)

    # -- meters -----------------------------------------------------------------------------

    async def register(self, meters: Iterable[MeterRecord]) -> None:
        """Insert or update the meters' metadata (their readings are kept)."""
        records = list(meters)

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            with transaction(conn):
                for m in records:
                    conn.execute(
                        "INSERT INTO meters (meter_id, building, floor, profile) "
                        "VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (meter_id) DO UPDATE SET building = excluded.building, "
                        "floor = excluded.floor, profile = excluded.profile",
                        (m.meter_id, m.building, m.floor, m.profile),
                    )
                return dict(conn.execute("SELECT meter_id, id FROM meters").fetchall())

        self._ids = await self._call(work)
        self._names = {v: k for k, v in self._ids.items()}

    def _id(self, meter_id: str) -> int:
        try:
            return self._ids[meter_id]
        except KeyError:
            raise StoreError(f"meter {meter_id!r} is not registered in {self.path}") from None

    async def meter_ids(self) -> list[str]:
        """Every meter the store has registered, configured today or not."""

        def work(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute("SELECT meter_id FROM meters ORDER BY meter_id")]

        return await self._call(work)

    async def restore(self) -> dict[str, Restored]:
        """The last reading of every registered meter that has one.

        The registers it read are the witnesses' baselines, trusted unless the logger had them
        still settling after an event when it committed that reading (`registers_settling`,
        or a detected event at that very reading)."""

        def work(conn: sqlite3.Connection) -> dict[str, Restored]:
            found = {}
            for meter_id, meter, boot_id, mono_ms, last, still in conn.execute(
                "SELECT meter_id, id, boot_id, mono_ms, last_ts_ms, registers_settling FROM meters"
            ).fetchall():
                row = conn.execute(
                    "SELECT seq, ts_ms, energy_total, power, energy_export_total, "
                    "import_energy, export_energy FROM samples "
                    "WHERE meter = ? AND ts_ms <= ? ORDER BY ts_ms DESC LIMIT 1",
                    (meter, last),
                ).fetchone()
                if row is None:
                    continue
                ts_ms = row[1]
                settling = {name for name in str(still or "").split(",") if name} | {
                    register
                    for (register,) in conn.execute(
                        "SELECT register FROM meter_events WHERE meter_id = ? AND ts_ms = ? "
                        "AND source = 'detected'",
                        (meter_id, ts_ms),
                    )
                }

                def witness(name: str, steps: int | None) -> Witness:
                    value = from_steps(name, steps)
                    if value is None:
                        return Witness()
                    return Witness(value, ts_ms, trusted=name not in settling)  # noqa: B023

                found[meter_id] = Restored(
                    seq=row[0],
                    ts_ms=ts_ms,
                    total_uwh=row[2],
                    power_w=from_steps("power_w", row[3]),
                    boot_id=boot_id,
                    mono_ms=mono_ms,
                    export_total_uwh=row[4],
                    registers=Witnesses(
                        witness("import_energy_wh", row[5]), witness("export_energy_wh", row[6])
                    ),
                )
            return found

        return await self._call(work)

    # -- writing ----------------------------------------------------------------------------

    async def commit(self, cycle: Cycle) -> None:
        """Write one poll cycle in one transaction."""

        def work(conn: sqlite3.Connection) -> None:
            samples = [_encode(r, self._id(r.meter_id)) for r in cycle.readings]
            gaps = [(self._id(m), a, b) for m, a, b in cycle.gaps]
            rejects = [(self._id(m), t, why, p) for m, t, why, p in cycle.rejects]
            continuity = [(boot, mono, self._id(m)) for m, boot, mono in cycle.continuity]
            events = [_event_row(e) for e in cycle.events]
            settling = [(names, self._id(m)) for m, names in cycle.settling]
            with transaction(conn):
                conn.executemany(_INSERT_SAMPLE, samples)
                conn.executemany(_INSERT_EVENT, events)
                conn.executemany("UPDATE meters SET registers_settling = ? WHERE id = ?", settling)
                conn.executemany("INSERT OR REPLACE INTO gaps VALUES (?, ?, ?)", gaps)
                conn.executemany("INSERT OR IGNORE INTO rejects VALUES (?, ?, ?, ?)", rejects)
                conn.executemany(
                    "UPDATE meters SET boot_id = ?, mono_ms = ? WHERE id = ?", continuity
                )
                self._write_cursor(conn)
            self._acknowledged.clear()

        await self._call(work)

    def _write_cursor(self, conn: sqlite3.Connection) -> None:
        """The acknowledgements held in memory, written in the caller's transaction."""
        conn.executemany(
            "UPDATE meters SET published_seq = ?, published_ts_ms = ? "
            "WHERE id = ? AND published_ts_ms < ?",
            [(seq, ts, meter, ts) for meter, (seq, ts) in self._acknowledged.items()],
        )

    def _cursor(self, meter: int, stored: int) -> int:
        """A meter's outbox cursor: what is written, or the acknowledgement held, if newer."""
        held = self._acknowledged.get(meter)
        return max(stored, held[1]) if held is not None else stored

    async def commit_making_room(self, cycle: Cycle, share: float = MAKE_ROOM_SHARE) -> int:
        """Commit one poll cycle; when the disk is full, make room for it first.

        Room is made by deleting the oldest readings the broker has acknowledged, a
        `share` of each meter's at a time, until the cycle fits. Returns how many
        readings were deleted; raises StoreFullError when no more may be deleted.
        """
        try:
            await self.commit(cycle)
            return 0
        except StoreFullError:
            pass
        deleted = 0
        by_time = self.time_ordered
        while True:
            removed = await self._call(lambda c: _delete_oldest_published(c, share, by_time))
            if not removed:
                raise StoreFullError(
                    f"store {self.path}: the disk is full and every older reading waits for "
                    "the broker"
                )
            deleted += removed
            try:
                await self.commit(cycle)
            except StoreFullError:
                continue
            self._full_at_pages = await self._call(_page_count)
            return deleted

    async def has_grown(self) -> bool:
        """Whether the file grew past its size when it last had to make room (the disk has room)."""
        if self._full_at_pages is None:
            return True
        try:
            grown = await self._call(_page_count) > self._full_at_pages
        except StoreError:
            return False
        if grown:
            self._full_at_pages = None
        return grown

    async def insert_many(self, readings: Iterable[Reading], batch: int = 10_000) -> None:
        """Bulk insert (imports, benchmarks, fixtures): one transaction per `batch` readings."""
        pending = list(readings)

        def work(conn: sqlite3.Connection) -> None:
            rows = [_encode(r, self._id(r.meter_id)) for r in pending]
            for start in range(0, len(rows), batch):
                with transaction(conn):
                    conn.executemany(_INSERT_SAMPLE, rows[start : start + batch])

        await self._call(work)

    async def insert_history(
        self, readings: Sequence[Reading], gaps: Sequence[tuple[str, int, int]] = ()
    ) -> int:
        """Insert past readings (an import) in one transaction; the number inserted.

        A reading whose (meter, ts_ms) is stored already is left as it is, so importing
        twice adds nothing. Each meter's outbox cursor moves up to the newest of
        `readings` when it is behind it: they never enter the MQTT outbox.
        """
        newest: dict[str, Reading] = {}
        for r in readings:
            if r.meter_id not in newest or r.ts_ms > newest[r.meter_id].ts_ms:
                newest[r.meter_id] = r

        def work(conn: sqlite3.Connection) -> int:
            rows = [_encode(r, self._id(r.meter_id)) for r in readings]
            with transaction(conn):
                added = conn.executemany(
                    _INSERT_SAMPLE.replace("INSERT", "INSERT OR IGNORE", 1), rows
                )
                inserted = added.rowcount  # the rows added, not the spans the triggers widened
                conn.executemany(
                    "INSERT OR IGNORE INTO gaps VALUES (?, ?, ?)",
                    [(self._id(m), a, b) for m, a, b in gaps],
                )
                conn.executemany(
                    "UPDATE meters SET published_seq = ?, published_ts_ms = ? "
                    "WHERE id = ? AND published_ts_ms < ?",
                    [(r.seq, r.ts_ms, self._id(m), r.ts_ms) for m, r in newest.items()],
                )
            return inserted

        return await self._call(work)

    # -- the outbox -------------------------------------------------------------------------

    async def unpublished(self, limit: int = 500) -> list[Reading]:
        """The oldest readings the broker has not acknowledged, in time order (per meter: seq)."""

        def work(conn: sqlite3.Connection) -> list[Reading]:
            found: list[Reading] = []
            meters = conn.execute(
                "SELECT meter_id, id, published_ts_ms, last_ts_ms FROM meters"
            ).fetchall()
            per_meter = max(16, limit // max(1, len(meters)))  # bounded work however many meters
            for meter_id, meter, stored, last in meters:
                cursor = self._cursor(meter, stored)
                if last is None or last <= cursor:
                    continue  # nothing after the cursor: no search through others' readings
                # From the last published reading (kept by retention) to know each interval's start.
                rows = conn.execute(
                    f"SELECT {', '.join(_SAMPLE_COLUMNS[1:])} FROM samples "
                    "WHERE meter = ? AND ts_ms >= ? AND ts_ms <= ? ORDER BY ts_ms LIMIT ?",
                    (meter, cursor, last, per_meter + 1),
                ).fetchall()
                # the cursor's own reading (when it is kept) frames the first one after it
                framed = _framed((_decode(meter_id, row) for row in rows), None)
                found.extend(r for r in framed if r.ts_ms > cursor)
            found.sort(key=lambda r: (r.ts_ms, r.meter_id))
            return found[:limit]

        return await self._call(work)

    async def mark_published(self, readings: Iterable[Reading]) -> None:
        """Advance each meter's outbox cursor to the newest of `readings` (all acknowledged)."""
        newest: dict[str, Reading] = {}
        for r in readings:
            if r.meter_id not in newest or r.seq > newest[r.meter_id].seq:
                newest[r.meter_id] = r
        updates = {self._id(m): (r.seq, r.ts_ms) for m, r in newest.items()}

        def work(conn: sqlite3.Connection) -> None:
            for meter, (seq, ts) in updates.items():
                if ts > self._acknowledged.get(meter, (0, -1))[1]:
                    self._acknowledged[meter] = (seq, ts)
            if not self.cursor_with_commits:
                with transaction(conn):
                    self._write_cursor(conn)
                self._acknowledged.clear()

        await self._call(work)

    async def outbox_depth(self) -> dict[str, int]:
        """Readings not yet acknowledged by the broker, per meter."""

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            query = OUTBOX_SQL_BY_TIME if self.time_ordered else OUTBOX_SQL_BY_METER
            depth = {meter_id: count for meter_id, count, _ in conn.execute(query)}
            for meter, (_, ts) in self._acknowledged.items():
                (count,) = conn.execute(
                    "SELECT count(*) FROM samples WHERE meter = ? AND ts_ms > ?", (meter, ts)
                ).fetchone()
                depth[self._names[meter]] = min(depth.get(self._names[meter], 0), int(count))
            return depth

        return await self._call(work)

    async def close(self) -> None:
        """Write the acknowledgements held (the low-write mode), then close the file."""
        if self._acknowledged and not self._closed:
            try:
                await self._call(self._commit_cursor)
            except StoreError as exc:  # the next start publishes those readings again
                log.warning("store %s: the outbox cursor was not written: %s", self.path, exc)
        await super().close()

    def _commit_cursor(self, conn: sqlite3.Connection) -> None:
        with transaction(conn):
            self._write_cursor(conn)
        self._acknowledged.clear()

    # -- reading back -----------------------------------------------------------------------

    async def meter_records(self) -> list[MeterRecord]:
        """Every meter the store knows, with the metadata the logger registered."""

        def work(conn: sqlite3.Connection) -> list[MeterRecord]:
            return [
                MeterRecord(*row)
                for row in conn.execute(
                    "SELECT meter_id, building, floor, profile FROM meters ORDER BY meter_id"
                )
            ]

        return await self._call(work)

    async def readings_around(self, meter_id: str, start_ms: int, end_ms: int) -> list[Reading]:
        """A meter's readings with start_ms <= ts_ms < end_ms, in time order, framed by its last
        reading before start_ms and its first at or after end_ms (when there are such).

        Each carries its interval start as `unpublished` gives it (the previous reading's
        ts_ms when it integrated energy), and its estimate's start likewise; the first has
        None, its predecessor not being read.
        """
        columns = ", ".join(_SAMPLE_COLUMNS[1:])

        def work(conn: sqlite3.Connection) -> list[Reading]:
            found = conn.execute(
                "SELECT id, first_ts_ms, last_ts_ms FROM meters WHERE meter_id = ?", (meter_id,)
            ).fetchone()
            if found is None or found[1] is None:
                return []
            meter, first, last = found
            before = conn.execute(  # one bound each way: a seek, however long the meter is gone
                f"SELECT {columns} FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms < ? "
                "ORDER BY ts_ms DESC LIMIT 1",
                (meter, first, min(start_ms, last + 1) if isinstance(last, int) else start_ms),
            ).fetchall()
            inside = conn.execute(
                f"SELECT {columns} FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms < ? "
                "ORDER BY ts_ms",
                (meter, start_ms, end_ms),
            ).fetchall()
            after = conn.execute(
                f"SELECT {columns} FROM samples WHERE meter = ? AND ts_ms >= ? AND ts_ms <= ? "
                "ORDER BY ts_ms LIMIT 1",
                (meter, end_ms, last),
            ).fetchall()
            rows = [*before, *inside, *after]
            return list(_framed((_decode(meter_id, row) for row in rows), None))

        return await self._call(work)

    # -- meter events -----------------------------------------------------------------------

    async def record_events(self, events: Iterable[MeterEvent]) -> list[MeterEvent]:
        """Record meter events in one transaction (`campus-energy meter-event add`); they come
        back with their ids."""
        pending = list(events)

        def work(conn: sqlite3.Connection) -> list[MeterEvent]:
            stored = []
            with transaction(conn):
                for event in pending:
                    cursor = conn.execute(_INSERT_EVENT, _event_row(event))
                    recorded = event.recorded_ms if event.recorded_ms is not None else event.ts_ms
                    stored.append(replace(event, id=cursor.lastrowid, recorded_ms=recorded))
            return stored

        return await self._call(work)

    async def meter_events(
        self,
        meter_id: str | None = None,
        *,
        since_ms: int | None = None,
        source: str | None = None,
        after_id: int | None = None,
    ) -> list[MeterEvent]:
        """Meter events in time order: of one meter (None: all), at or after `since_ms`, of one
        source (detected or confirmed), recorded after the event of id `after_id`."""
        where, params = [], []
        for clause, value in (
            ("meter_id = ?", meter_id),
            ("ts_ms >= ?", since_ms),
            ("source = ?", source),
            ("id > ?", after_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        query = f"SELECT {_EVENT_COLUMNS} FROM meter_events"
        if where:
            query += " WHERE " + " AND ".join(where)

        def work(conn: sqlite3.Connection) -> list[MeterEvent]:
            rows = conn.execute(query + " ORDER BY ts_ms, id", params).fetchall()
            return [_event_of(row) for row in rows]

        return await self._call(work)

    # -- maintenance ------------------------------------------------------------------------

    async def apply_retention(self, cutoff_ms: int, chunk: int = RETENTION_CHUNK) -> int:
        """Delete readings older than `cutoff_ms` that the broker has acknowledged.

        A meter's newest reading is always kept: it carries the meter's sequence
        and cumulative total across restarts. Deletes run in transactions of at
        most `chunk` rows, so the logger's commits are never held up for long.
        """

        def bounds(conn: sqlite3.Connection) -> list[tuple[int, int]]:
            found = []
            for meter, published, last in conn.execute(
                "SELECT id, published_ts_ms, last_ts_ms FROM meters"
            ).fetchall():
                row = conn.execute(
                    "SELECT ts_ms FROM samples WHERE meter = ? AND ts_ms <= ? "
                    "ORDER BY ts_ms DESC LIMIT 1",
                    (meter, last),
                ).fetchone()
                if row is not None:
                    newest = row[0]
                    # strictly older than the last published reading, which is kept: it
                    # tells the next unpublished reading where its interval starts
                    found.append((meter, min(cutoff_ms, published, newest)))
            return found

        def delete_some(meter: int, bound: int) -> Callable[[sqlite3.Connection], int]:
            def work(conn: sqlite3.Connection) -> int:
                with transaction(conn):
                    row = conn.execute(
                        "SELECT ts_ms FROM samples WHERE meter = ? AND ts_ms < ? "
                        "ORDER BY ts_ms LIMIT 1 OFFSET ?",
                        (meter, bound, chunk),
                    ).fetchone()
                    end = bound if row is None else row[0]
                    cur = conn.execute(
                        "DELETE FROM samples WHERE meter = ? AND ts_ms < ?", (meter, end)
                    )
                    return cur.rowcount

            return work

        def tidy(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM gaps WHERE end_ts_ms < ?", (cutoff_ms,))
                conn.execute("DELETE FROM rejects WHERE ts_ms < ?", (cutoff_ms,))

        def delete_by_time(low: int) -> Callable[[sqlite3.Connection], tuple[int, int]]:
            """The acknowledged readings older than the cutoff among the next `chunk` from
            `low` in time order: (how many went, where the next chunk starts)."""

            def work(conn: sqlite3.Connection) -> tuple[int, int]:
                with transaction(conn):
                    row = conn.execute(
                        "SELECT ts_ms FROM samples WHERE ts_ms >= ? AND ts_ms < ? "
                        "ORDER BY ts_ms LIMIT 1 OFFSET ?",
                        (low, cutoff_ms, chunk),
                    ).fetchone()
                    end = cutoff_ms if row is None else int(row[0])
                    cur = conn.execute(
                        f"DELETE FROM samples WHERE ts_ms >= ? AND ts_ms < ? AND {_ACKNOWLEDGED}",
                        (low, end),
                    )
                    # no reading of a meter below min(end, its cursor) is left
                    conn.execute(
                        "UPDATE meters SET first_ts_ms = "
                        "max(first_ts_ms, min(?, published_ts_ms, last_ts_ms)) "
                        "WHERE first_ts_ms IS NOT NULL",
                        (end,),
                    )
                    return cur.rowcount, end

            return work

        deleted = 0
        if self.time_ordered:
            low = -(2**62)
            while low < cutoff_ms:
                removed, low = await self._call(delete_by_time(low))
                deleted += removed
        else:
            for meter, bound in await self._call(bounds):
                while True:
                    removed = await self._call(delete_some(meter, bound))
                    deleted += removed
                    if removed < chunk:
                        break
        await self._call(tidy)
        return deleted

    async def limit_growth(self, pages: int | None) -> int:
        """Let the file grow by at most `pages` more database pages (None: lift the limit).

        Writes that need more fail with SQLITE_FULL, the error of a full disk: a
        fault-injection hook for drills and tests. Returns the page limit now in effect.
        """

        def work(conn: sqlite3.Connection) -> int:
            if self._unlimited_pages is None:
                self._unlimited_pages = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
            limit = self._unlimited_pages
            if pages is not None:
                limit = int(conn.execute("PRAGMA page_count").fetchone()[0]) + pages
            return int(conn.execute(f"PRAGMA max_page_count = {limit:d}").fetchone()[0])

        return await self._call(work)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the store's thread (diagnostics and tests)."""

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return await self._call(work)
