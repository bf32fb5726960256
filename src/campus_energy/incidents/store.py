"""The book of alerts: one SQLite file (`alerts.state_path`) shared by every process that
deals with alerts.

What it keeps, and why:
- `alerts`: each alert's (rule, subject) lifecycle, as the service last recorded it, with the
  rule's kind and scope (so the API and the CLI can list alerts without the configuration),
  and its acknowledgement. The service restarts from it without re-notifying.
- `history`: every transition, suppressed ones too (the reports and `alerts list --history`).
- `outbox`: one row per transition and channel until it is delivered (or dead-lettered), so
  a notification survives a crash or an outage of its channel. A replay after a crash adds
  nothing: history and outbox are unique on the transition's key (and channel).
- `silences`: who silenced what until when; one naming no rule covers every rule, one naming
  no subject every subject of its rule(s).
- `meters_seen` and `memo`: what the service knew when it stopped (meters, reports' last
  sendings, register anchors), for its restart.

The alerts service is the one writer of alert states; the API, the dashboard and the command
line write only acknowledgements and silences. `record` therefore never overwrites an
acknowledgement written meanwhile by another process: it drops one only when the alert is
written as over (resolved or inactive) without one, or when a new episode of it begins
(pending or firing again after it was over). Each write is one transaction
(`BEGIN IMMEDIATE`, WAL, up to `BUSY_TIMEOUT_S` waiting for another writer). Every sqlite3
failure becomes an `AlertBookError` naming the file; text people give (names, notes) is
bounded and checked here, with a `ValueError` naming the field, because the API passes it
straight on. The schema's version is `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from campus_energy.core.alerts import AlertState, MeterSeen, Transition
from campus_energy.errors import AlertBookError
from campus_energy.incidents.values import AlertRow, Delivery, HistoryRow, Notice
from campus_energy.runtime.sqlite import is_damage, recovery_hint, statements, transaction

T = TypeVar("T")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
MAX_NAME_CHARS = 200  # a rule, a subject, who acknowledged or silenced
MAX_NOTE_CHARS = 500
MAX_ERROR_CHARS = 500  # a delivery's last error
MAX_SILENCE_MS = 366 * 86_400_000  # a silence forgotten for ever is an alert never heard
ACTIVE = ("pending", "firing")
_SEVERITY_RANK = "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END"
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}

SCHEMA = """
CREATE TABLE alerts (
    rule TEXT NOT NULL, subject TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '', scope TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL, since_ms INTEGER NOT NULL,
    holds_since_ms INTEGER, clear_since_ms INTEGER, fired_ms INTEGER, notified_ms INTEGER,
    value REAL, detail TEXT NOT NULL DEFAULT '', severity TEXT NOT NULL,
    acked_ms INTEGER, acked_by TEXT, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, subject)
) WITHOUT ROWID;
CREATE TABLE history (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
    rule TEXT NOT NULL, subject TEXT NOT NULL, kind TEXT NOT NULL, scope TEXT NOT NULL,
    event TEXT NOT NULL, at_ms INTEGER NOT NULL, severity TEXT NOT NULL, value REAL,
    detail TEXT NOT NULL, suppressed INTEGER NOT NULL, recorded_ms INTEGER NOT NULL
);
CREATE INDEX history_by_time ON history (at_ms);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, channel TEXT NOT NULL,
    rule TEXT NOT NULL, subject TEXT NOT NULL, event TEXT NOT NULL, at_ms INTEGER NOT NULL,
    severity TEXT NOT NULL, value REAL, detail TEXT NOT NULL,
    kind TEXT NOT NULL, scope TEXT NOT NULL, site TEXT NOT NULL,
    created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, last_error TEXT,
    delivered_ms INTEGER, dead_ms INTEGER,
    UNIQUE (key, channel)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_ms)
    WHERE delivered_ms IS NULL AND dead_ms IS NULL;
CREATE TABLE silences (
    id INTEGER PRIMARY KEY, rule TEXT, subject TEXT, until_ms INTEGER NOT NULL,
    by TEXT NOT NULL, created_ms INTEGER NOT NULL, note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE meters_seen (
    meter_id TEXT PRIMARY KEY, interval_s REAL NOT NULL, last_reading_ms INTEGER,
    power_w REAL, status TEXT, status_ms INTEGER, status_detail TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE TABLE memo (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID
"""
# Each version's changes, applied in order to a book of the version before (none yet).
MIGRATIONS: dict[int, str] = {}

_STATE_COLUMNS = (
    "rule, subject, kind, scope, phase, since_ms, holds_since_ms, clear_since_ms, fired_ms, "
    "notified_ms, value, detail, severity, acked_ms, acked_by, updated_ms"
)
# An acknowledgement belongs to one episode of an alert (pending, firing): one written
# meanwhile by another process is kept while the alert stays active, a new episode starts
# without one, and an alert written as over (resolved, inactive) without one drops it.
_KEPT_ACK = (
    "CASE WHEN excluded.phase IN ('pending', 'firing') THEN CASE WHEN alerts.phase IN "
    "('pending', 'firing') THEN alerts.{column} END "
    "WHEN excluded.acked_ms IS NOT NULL THEN alerts.{column} END"
)
_UPSERT_STATE = (
    f"INSERT INTO alerts ({_STATE_COLUMNS}) VALUES ({', '.join('?' * 16)}) "
    "ON CONFLICT (rule, subject) DO UPDATE SET "
    "kind = CASE excluded.kind WHEN '' THEN alerts.kind ELSE excluded.kind END, "
    "scope = CASE excluded.scope WHEN '' THEN alerts.scope ELSE excluded.scope END, "
    "phase = excluded.phase, since_ms = excluded.since_ms, "
    "holds_since_ms = excluded.holds_since_ms, clear_since_ms = excluded.clear_since_ms, "
    "fired_ms = excluded.fired_ms, notified_ms = excluded.notified_ms, "
    "value = excluded.value, detail = excluded.detail, severity = excluded.severity, "
    "updated_ms = excluded.updated_ms, "
    f"acked_ms = {_KEPT_ACK.format(column='acked_ms')}, "
    f"acked_by = {_KEPT_ACK.format(column='acked_by')}"
)
# the latest end of the silences in force at ? that cover the alert `a`
_SILENCED_UNTIL = (
    "(SELECT max(s.until_ms) FROM silences AS s WHERE s.until_ms > ? "
    "AND (s.rule IS NULL OR s.rule = a.rule) AND (s.subject IS NULL OR s.subject = a.subject))"
)
_OUTBOX_NOTICE = "rule, subject, event, at_ms, severity, value, detail, kind, scope, site"
_PENDING = "delivered_ms IS NULL AND dead_ms IS NULL"
# The due deliveries, at most :limit a channel, less those behind an earlier pending one of
# their channel whose next attempt is after :now (each channel's first such one: `held_from`).
_DUE = f"""
    WITH held AS (
        SELECT channel, min(id) AS held_from FROM outbox
        WHERE {_PENDING} AND next_attempt_ms > :now GROUP BY channel
    ), ready AS (
        SELECT o.*, row_number() OVER (PARTITION BY o.channel ORDER BY o.id) AS place
        FROM outbox AS o LEFT JOIN held AS h ON h.channel = o.channel
        WHERE o.delivered_ms IS NULL AND o.dead_ms IS NULL AND o.next_attempt_ms <= :now
            AND (h.held_from IS NULL OR o.id < h.held_from)
    )
    SELECT id, channel, attempts, created_ms, {_OUTBOX_NOTICE} FROM ready
    WHERE place <= :limit ORDER BY id
"""


@dataclass(frozen=True)
class Silence:
    """Notifications of the alerts it covers are held back until `until_ms`.

    `rule` None: every rule; `subject` None: every subject (of its rule, or of every rule)."""

    id: int
    rule: str | None
    subject: str | None
    until_ms: int
    by: str
    created_ms: int
    note: str = ""

    def covers(self, rule: str, subject: str) -> bool:
        return self.rule in (None, rule) and self.subject in (None, subject)


def silenced_until(silences: Sequence[Silence], rule: str, subject: str) -> int | None:
    """The latest end of these silences that cover the alert (None: none covers it); for an
    alert the book holds no state of yet (`AlertBook.states` fills its own)."""
    ends = [s.until_ms for s in silences if s.covers(rule, subject)]
    return max(ends) if ends else None


def checked_text(
    field: str, value: str, limit: int = MAX_NAME_CHARS, *, empty: bool = False
) -> str:
    """`value` when people may write it here: at most `limit` characters, no control
    characters (nor bidirectional overrides); raises ValueError naming the field."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be text")
    if not empty and not value.strip():
        raise ValueError(f"{field}: must not be empty")
    if len(value) > limit:
        raise ValueError(f"{field}: at most {limit} characters, got {len(value)}")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI:
            raise ValueError(f"{field}: must not hold control characters (found {char!r})")
    return value


class AlertBook:
    """The book of alerts at `path` (created with its folder on first use). Usable from any
    thread: its calls are serialised on one connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with self._guard("cannot be opened"):
            self._conn = self._open()

    # -- opening and failing ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AlertBookError(
                f"book of alerts {self.path}: cannot create its folder: {exc.strerror}"
            ) from None
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a recorded notification survives
            if _version(conn) != SCHEMA_VERSION:
                with transaction(conn):  # again inside: another process may have done it
                    self._upgrade(conn, _version(conn))
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Create the schema in a new file, or migrate an older one to `SCHEMA_VERSION`."""
        if version > SCHEMA_VERSION:
            raise AlertBookError(
                f"book of alerts {self.path} has schema {version}, newer than this version "
                f"understands ({SCHEMA_VERSION})"
            )
        if version == 0:
            for statement in statements(SCHEMA):
                conn.execute(statement)
        for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            for statement in statements(MIGRATIONS[step]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @contextmanager
    def _guard(self, doing: str = "") -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OverflowError) as exc:
            if is_damage(exc):
                raise AlertBookError(
                    f"book of alerts {self.path} is damaged ({exc}): {recovery_hint(self.path)}"
                ) from None
            what = f" {doing}" if doing else ""
            raise AlertBookError(f"book of alerts {self.path}{what}: {exc}") from None

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        with self._lock, self._guard():
            if self._conn is None:
                raise AlertBookError(f"book of alerts {self.path} is closed")
            if not write:
                return work(self._conn)
            with transaction(self._conn):
                return work(self._conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> AlertBook:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the service's states and transitions ----------------------------------------------

    def states(self, now_ms: int) -> dict[tuple[str, str], AlertState]:
        """Every stored alert, its acknowledgement and the silences in force at `now_ms`."""

        def work(conn: sqlite3.Connection) -> dict[tuple[str, str], AlertState]:
            found = conn.execute(
                "SELECT rule, subject, phase, since_ms, holds_since_ms, clear_since_ms, "
                "fired_ms, notified_ms, value, detail, severity, acked_ms, acked_by, "
                f"{_SILENCED_UNTIL} FROM alerts AS a",
                (now_ms,),
            )
            return {(row[0], row[1]): AlertState(*row) for row in found}

        return self._run(work)

    def record(
        self,
        states: Sequence[AlertState],
        transitions: Sequence[tuple[Transition, str, str, tuple[str, ...]]],
        now_ms: int,
        *,
        kinds: Mapping[str, tuple[str, str]] | None = None,
        site: str = "",
    ) -> None:
        """In one transaction: the states' lifecycles, and for each (transition, kind, scope,
        channels) a history row and (unless suppressed) one outbox row per channel. The same
        transition recorded again adds nothing. `kinds`: rule -> (kind, scope), for states
        without a transition."""
        rules = dict(kinds or {})
        rules.update({t.rule: (kind, scope) for t, kind, scope, _ in transitions})
        state_rows = [_state_row(s, *rules.get(s.rule, ("", "")), now_ms) for s in states]
        history = [_history_row(t, kind, scope, now_ms) for t, kind, scope, _ in transitions]
        outbox = [
            (t.key, channel, *_notice_columns(t, kind, scope, site), now_ms, now_ms)
            for t, kind, scope, channels in transitions
            if not t.suppressed
            for channel in dict.fromkeys(channels)
        ]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(_UPSERT_STATE, state_rows)
            conn.executemany(
                "INSERT INTO history (key, rule, subject, kind, scope, event, at_ms, severity, "
                "value, detail, suppressed, recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?) ON CONFLICT (key) DO NOTHING",
                history,
            )
            conn.executemany(
                f"INSERT INTO outbox (key, channel, {_OUTBOX_NOTICE}, created_ms, "
                "next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key, channel) DO NOTHING",
                outbox,
            )

        self._run(work, write=True)

    # -- the outbox --------------------------------------------------------------------------

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        """Deliveries neither delivered nor dead whose next attempt is due, oldest first: at
        most `limit` of each channel, and none behind an earlier pending one of its channel
        that is not due yet (a failed notice waiting for its retry), so that a "resolved"
        never overtakes its "firing", even after a restart."""

        def work(conn: sqlite3.Connection) -> list[Delivery]:
            found = conn.execute(_DUE, {"now": now_ms, "limit": limit})
            return [_delivery(row) for row in found]

        return self._run(work)

    def delivered(self, delivery_id: int, now_ms: int) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE outbox SET delivered_ms = ? WHERE id = ? AND delivered_ms IS NULL",
                (now_ms, delivery_id),
            ),
            write=True,
        )

    def retry(self, delivery_id: int, now_ms: int, error: str, next_attempt_ms: int) -> None:
        """A failed attempt: tried again at `next_attempt_ms`."""
        self._run(
            lambda c: c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ? "
                "WHERE id = ? AND delivered_ms IS NULL AND dead_ms IS NULL",
                (error[:MAX_ERROR_CHARS], next_attempt_ms, delivery_id),
            ),
            write=True,
        )

    def dead(self, delivery_id: int, now_ms: int, error: str) -> None:
        """A delivery given up: kept (with its error), never tried again."""
        self._run(
            lambda c: c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, dead_ms = ? "
                "WHERE id = ? AND delivered_ms IS NULL AND dead_ms IS NULL",
                (error[:MAX_ERROR_CHARS], now_ms, delivery_id),
            ),
            write=True,
        )

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per channel: {"pending": n, "dead": n, "delivered": n}."""

        def work(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            found = conn.execute(
                "SELECT channel, count(*) FILTER (WHERE delivered_ms IS NULL AND dead_ms IS NULL), "
                "count(dead_ms), count(delivered_ms) FROM outbox GROUP BY channel ORDER BY channel"
            )
            return {c: {"pending": p, "dead": d, "delivered": s} for c, p, d, s in found}

        return self._run(work)

    def next_due_ms(self) -> int | None:
        """When `due` next has something (None: nothing pending): the earliest next attempt
        of each channel's oldest pending delivery, which the others of its channel wait for."""
        row = self._run(
            lambda c: c.execute(
                "SELECT min(o.next_attempt_ms) FROM outbox AS o JOIN (SELECT min(id) AS id "
                f"FROM outbox WHERE {_PENDING} GROUP BY channel) AS oldest ON o.id = oldest.id"
            ).fetchone()
        )
        return None if row[0] is None else int(row[0])

    # -- what people write: acknowledgements and silences ----------------------------------

    def acknowledge(self, rule: str, subject: str, by: str, now_ms: int) -> bool:
        """Acknowledge a pending or firing alert (no more re-notifications of this firing);
        False when there is no such alert."""
        values = (now_ms, checked_text("by", by), checked_text("rule", rule), subject)
        checked_text("subject", subject)
        changed = self._run(
            lambda c: (
                c.execute(
                    "UPDATE alerts SET acked_ms = ?, acked_by = ? WHERE rule = ? AND subject = ? "
                    "AND phase IN ('pending', 'firing')",
                    values,
                ).rowcount
            ),
            write=True,
        )
        return bool(changed)

    def silence(
        self,
        rule: str | None,
        subject: str | None,
        until_ms: int,
        by: str,
        now_ms: int,
        note: str = "",
    ) -> int:
        """Silence a rule's subject, a rule (subject None), a subject of every rule (rule None)
        or everything (both None) until `until_ms`; its id. Raises ValueError for an end not
        after now, or more than a year away, and for text people may not write."""
        if rule is not None:
            checked_text("rule", rule)
        if subject is not None:
            checked_text("subject", subject)
        checked_text("by", by)
        checked_text("note", note, MAX_NOTE_CHARS, empty=True)
        if isinstance(until_ms, bool) or not isinstance(until_ms, int) or until_ms <= now_ms:
            raise ValueError("until: must be a time after now")
        if until_ms - now_ms > MAX_SILENCE_MS:
            raise ValueError("until: a silence lasts at most a year")
        row = (rule, subject, until_ms, by, now_ms, note)
        found = self._run(
            lambda c: (
                c.execute(
                    "INSERT INTO silences (rule, subject, until_ms, by, created_ms, note) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                ).lastrowid
            ),
            write=True,
        )
        assert found is not None
        return found

    def unsilence(self, silence_id: int, now_ms: int) -> bool:
        """End a silence now; False when it is unknown or over already."""
        changed = self._run(
            lambda c: (
                c.execute(
                    "UPDATE silences SET until_ms = ? WHERE id = ? AND until_ms > ?",
                    (now_ms, silence_id, now_ms),
                ).rowcount
            ),
            write=True,
        )
        return bool(changed)

    def silences(self, now_ms: int) -> list[Silence]:
        """The silences in force at `now_ms`, the one ending first first."""
        found = self._run(
            lambda c: c.execute(
                "SELECT id, rule, subject, until_ms, by, created_ms, note FROM silences "
                "WHERE until_ms > ? ORDER BY until_ms, id",
                (now_ms,),
            ).fetchall()
        )
        return [Silence(*row) for row in found]

    # -- what people read ------------------------------------------------------------------

    def alerts(self, active_only: bool = True, *, now_ms: int | None = None) -> list[AlertRow]:
        """Pending and firing alerts (`active_only`), else all; most severe first, then newest.
        Silences are those in force at `now_ms` (None: the wall clock's now)."""
        at = int(time.time() * 1000) if now_ms is None else now_ms
        where = "WHERE phase IN ('pending', 'firing')" if active_only else ""
        found = self._run(
            lambda c: c.execute(
                "SELECT rule, subject, kind, scope, phase, severity, since_ms, fired_ms, value, "
                f"detail, acked_ms, acked_by, {_SILENCED_UNTIL} FROM alerts AS a {where} "
                f"ORDER BY {_SEVERITY_RANK}, since_ms DESC, rule, subject",
                (at,),
            ).fetchall()
        )
        return [AlertRow(*row) for row in found]

    def history(
        self, start_ms: int, end_ms: int, limit: int = 1000, rule: str | None = None
    ) -> list[HistoryRow]:
        """Transitions in [start_ms, end_ms) (of one rule), oldest first; beyond `limit`, the
        latest `limit` of them."""
        wanted = "AND rule = ?" if rule is not None else ""
        values: tuple[object, ...] = (start_ms, end_ms, *([rule] if rule is not None else []))
        found = self._run(
            lambda c: c.execute(
                "SELECT rule, subject, kind, scope, event, at_ms, severity, value, detail, "
                f"suppressed FROM history WHERE at_ms >= ? AND at_ms < ? {wanted} "
                "ORDER BY at_ms DESC, id DESC LIMIT ?",
                (*values, limit),
            ).fetchall()
        )
        return [_history(row) for row in reversed(found)]

    # -- the service's memory --------------------------------------------------------------

    def save_seen(self, meters: Mapping[str, MeterSeen]) -> None:
        """What the service knows of each meter, for its restart (one row per meter)."""
        rows = [
            (i, m.interval_s, m.last_reading_ms, m.power_w, m.status, m.status_ms, m.status_detail)
            for i, m in meters.items()
        ]
        self._run(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO meters_seen (meter_id, interval_s, last_reading_ms, "
                "power_w, status, status_ms, status_detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            ),
            write=True,
        )

    def seen(self) -> dict[str, MeterSeen]:
        found = self._run(
            lambda c: c.execute(
                "SELECT meter_id, interval_s, last_reading_ms, power_w, status, status_ms, "
                "status_detail FROM meters_seen ORDER BY meter_id"
            ).fetchall()
        )
        return {row[0]: MeterSeen(*row) for row in found}

    def memo(self, key: str) -> Any | None:
        """What was remembered under `key` (JSON values), None when nothing is."""
        row = self._run(
            lambda c: c.execute("SELECT value FROM memo WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else json.loads(row[0])

    def remember(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))
        self._run(
            lambda c: c.execute(
                "INSERT INTO memo (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, text),
            ),
            write=True,
        )

    def prune(self, before_ms: int) -> int:
        """Forget transitions, finished deliveries and silences over before `before_ms`;
        returns how many rows went. Alert states and pending deliveries stay."""

        def work(conn: sqlite3.Connection) -> int:
            gone = conn.execute("DELETE FROM history WHERE at_ms < ?", (before_ms,)).rowcount
            gone += conn.execute(
                "DELETE FROM outbox WHERE coalesce(delivered_ms, dead_ms) < ?", (before_ms,)
            ).rowcount
            gone += conn.execute("DELETE FROM silences WHERE until_ms < ?", (before_ms,)).rowcount
            return gone

        return self._run(work, write=True)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    delivery_id, channel, attempts, created_ms = row[:4]
    rule, subject, event, at_ms, severity, value, detail, kind, scope, site = row[4:]
    transition = Transition(rule, subject, event, at_ms, severity, value, detail)
    return Delivery(
        delivery_id, channel, Notice(transition, kind, scope, site), attempts, created_ms
    )


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _state_row(s: AlertState, kind: str, scope: str, now_ms: int) -> tuple[object, ...]:
    lifecycle = (s.phase, s.since_ms, s.holds_since_ms, s.clear_since_ms, s.fired_ms)
    seen = (s.notified_ms, s.value, s.detail, s.severity, s.acked_ms, s.acked_by)
    return (s.rule, s.subject, kind, scope, *lifecycle, *seen, now_ms)


def _notice_columns(t: Transition, kind: str, scope: str, site: str) -> tuple[object, ...]:
    """The outbox's columns `_OUTBOX_NOTICE` of a transition."""
    return (t.rule, t.subject, t.event, t.at_ms, t.severity, t.value, t.detail, kind, scope, site)


def _history_row(t: Transition, kind: str, scope: str, now_ms: int) -> tuple[object, ...]:
    said = (t.event, t.at_ms, t.severity, t.value, t.detail, int(t.suppressed))
    return (t.key, t.rule, t.subject, kind, scope, *said, now_ms)


def _history(row: tuple[Any, ...]) -> HistoryRow:
    rule, subject, kind, scope, event, at_ms, severity, value, detail, suppressed = row
    return HistoryRow(
        rule, subject, kind, scope, event, at_ms, severity, value, detail, bool(suppressed)
    )
