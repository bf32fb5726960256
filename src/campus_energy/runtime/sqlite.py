"""One SQLite file, owned by one thread: every statement runs there (one writer per file).

The logger's store, the bridge's spool and the SQLite window sink are each a
`SqliteFile`: WAL mode, a schema created on first use and checked for its
version, and every sqlite3 failure turned into the owner's error type. A file
whose class sets `integrity_budget_s` is checked with `PRAGMA quick_check`
when it is opened, for at most that long: a damaged file is refused before
anything is written to it, with the way to rebuild it in the message.

Readers in other processes (the API, the dashboard) open the files with
`ReadOnly`, which also reads a WAL database on a read-only mount.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from campus_energy.errors import CampusEnergyError

T = TypeVar("T")
Signature = tuple[int, int, int, bool, bool]
log = logging.getLogger("campus_energy.sqlite")
DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
PROGRESS_EVERY = 1_000  # SQLite virtual-machine steps between two looks at the clock
INTEGRITY_BUDGET_S = 10.0  # quick_check at open: ~350 MB/s from the page cache, far less cold


def is_damage(exc: BaseException) -> bool:
    """Whether an sqlite3 error says the file is damaged (malformed, or not a database)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in DAMAGED_CODES


def recovery_commands(path: Path) -> tuple[str, str]:
    """Two ways to copy what is readable of a damaged file into `<path>.recovered`: `.recover`,
    and `.dump` for a sqlite3 without `.recover` (Debian 12's; a dump that met damage ends in
    ROLLBACK, turned into COMMIT to keep what it read)."""
    where, rebuilt = shlex.quote(str(path)), shlex.quote(f"{path}.recovered")
    return (
        f"sqlite3 {where} .recover | sqlite3 {rebuilt}",
        f"sqlite3 {where} .dump | sed '$s/^ROLLBACK; -- due to errors$/COMMIT;/' "
        f"| sqlite3 {rebuilt}",
    )


def recovery_hint(path: Path) -> str:
    """How to rebuild a damaged file, for people: keep it, copy out what reads, check the copy."""
    recover, dump = recovery_commands(path)
    rebuilt = shlex.quote(f"{path}.recovered")
    return (
        f"stop what uses it, keep a copy, then rebuild it: {recover} — or, where sqlite3 has no "
        f".recover (Debian 12): {dump} — check it (sqlite3 {rebuilt} 'PRAGMA quick_check') and "
        "put it in place, or restore a backup"
    )


def quick_check(conn: sqlite3.Connection, budget_s: float | None) -> list[str] | None:
    """The problems `PRAGMA quick_check` finds (empty: none), or None when `budget_s` ran out.

    A damaged header or schema makes SQLite refuse the statement itself: that is
    reported as the one problem found.
    """
    if budget_s is not None:
        end = time.monotonic() + budget_s
        conn.set_progress_handler(lambda: int(time.monotonic() > end), PROGRESS_EVERY)
    try:
        rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError as exc:
        if budget_s is not None and "interrupted" in str(exc):
            return None
        raise
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return [str(exc)]
        raise
    finally:
        if budget_s is not None:
            conn.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return []
    return [line for row in rows for line in row.splitlines() if line.strip()]


def damage_summary(problems: list[str]) -> str:
    """The problem, or '3 problems, the first: …' (SQLite's '*** in database main ***' skipped)."""
    first = next((p for p in problems if not p.startswith("***")), problems[0])
    count = len(problems)
    return first if count == 1 else f"{count} problems, the first: {first}"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


def _signature(path: Path) -> Signature:
    """What changes when anyone writes the file: its inode, size and time, and its WAL files."""
    found = path.stat()
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    return found.st_ino, found.st_size, found.st_mtime_ns, wal.exists(), shm.exists()


class ReadOnly:
    """A read-only connection to an SQLite file, in WAL mode too, also on a read-only mount.

    A WAL database is read through its shared-memory index, the `-shm` file beside
    it: SQLite creates it when the first connection opens the file, and removes it
    with the `-wal` file when the last one closes. Where the folder cannot be
    written (a read-only mount, a snapshot) and no `-shm` is there, `mode=ro`
    cannot open the file at all ("unable to open database file").

    Then, and only then, the file is opened with `immutable=1` (no locks, no
    index), which is safe because of what the missing files prove: without a
    `-shm` no connection has the database open, so no writer is changing it, and
    with no `-wal` (or an empty one) every commit is in the database file itself.
    Should a writer open it later, its `-wal` and `-shm` appear and the file's
    size or time changes: the next `connection()` sees that and opens the file
    again, in the normal read-only mode. A `-wal` with commits in it but no
    `-shm` (a writer that crashed, a copy taken while it wrote) cannot be read
    that way — `immutable` would not see those commits — and is refused with the
    way out: open it once where its folder is writable.
    """

    def __init__(self, path: Path, *, timeout_s: float = 5.0, check_same_thread: bool = True):
        self.path = path
        self.timeout_s = timeout_s
        self.check_same_thread = check_same_thread
        self._conn: sqlite3.Connection | None = None
        self._immutable_at: Signature | None = None  # the file as it was when opened immutable

    @property
    def immutable(self) -> bool:
        return self._immutable_at is not None

    def connection(self) -> sqlite3.Connection:
        """The connection, opened on first use, and again when an immutable file has changed."""
        if self._conn is not None and self._immutable_at is not None:
            try:
                changed = _signature(self.path) != self._immutable_at
            except OSError:
                changed = True
            if changed:
                self.close()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _connect(self, mode: str) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?{mode}"  # a path with '#' or '?' stays this path
        return sqlite3.connect(
            uri, uri=True, timeout=self.timeout_s, check_same_thread=self.check_same_thread
        )

    def _open(self) -> sqlite3.Connection:
        conn = self._connect("mode=ro")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # reads the WAL index
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_CANTOPEN:
                raise
            if not self.path.is_file():
                raise
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        pending = wal.exists() and wal.stat().st_size > 0
        if pending or shm.exists():
            why = (
                "its -wal file holds commits not in the database yet"
                if pending
                else ("its -shm file cannot be opened")
            )
            raise sqlite3.OperationalError(
                f"unable to open {self.path} read-only: its folder cannot be written and {why}; "
                "open it once where its folder is writable, or read a copy made there with "
                f"sqlite3 {shlex.quote(str(self.path))} '.backup COPY'"
            )
        signature = _signature(self.path)
        conn = self._connect("immutable=1")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except BaseException:
            conn.close()
            raise
        self._immutable_at = signature
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._immutable_at = None


class SqliteFile:
    """Base of the project's SQLite files. Subclasses set the class attributes below."""

    label = "database"  # how errors name the file: "<label> <path>: ..."
    error: type[CampusEnergyError] = CampusEnergyError
    full_error: type[CampusEnergyError] | None = None  # raised instead when the disk is full
    schema = ""
    schema_version = 1
    synchronous = "FULL"  # a committed row survives power loss
    integrity_budget_s: float | None = None  # quick_check at open for at most this long (None: no)
    # A new file's page size (None: SQLite's 4096). A commit writes each page it touches whole,
    # so a file whose commits touch many pages a little (a page per meter) writes less with
    # small ones.
    page_size: int | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.label)
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise self.error(f"{self.label} {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, fn)

    def _guarded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            error = self.error
            if self.full_error and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                error = self.full_error
            if is_damage(exc):
                raise error(
                    f"{self.label} {self.path} is damaged ({exc}): {recovery_hint(self.path)}"
                ) from None
            raise error(f"{self.label} {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(
                f"{self.label} {self.path}: cannot create its folder: {exc.strerror}"
            ) from None
        existed = self.path.is_file() and self.path.stat().st_size > 0
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            if existed and self.integrity_budget_s is not None:
                self._check(conn, self.integrity_budget_s)
            if not existed and self.page_size is not None:
                conn.execute(f"PRAGMA page_size = {self.page_size:d}")
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check(self, conn: sqlite3.Connection, budget_s: float) -> None:
        """Refuse a damaged file before anything is written to it (at most `budget_s` spent)."""
        problems = quick_check(conn, budget_s)
        if problems is None:
            log.warning(
                "%s %s: its integrity check (PRAGMA quick_check) did not finish within %g s and "
                "was left there; run `campus-energy doctor` to check the whole file",
                self.label,
                self.path,
                budget_s,
            )
        elif problems:
            raise self.error(
                f"{self.label} {self.path} is damaged (PRAGMA quick_check: "
                f"{damage_summary(problems)}); nothing was written to it: "
                f"{recovery_hint(self.path)}"
            )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        with transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            for statement in statements(self.schema):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(self.schema_version),),
                )
            elif int(row[0]) > self.schema_version:
                raise self.error(
                    f"{self.label} {self.path} has schema {row[0]}, "
                    "newer than this version understands"
                )

    async def close(self) -> None:
        if self._closed:
            return
        if self._conn is not None:
            conn = self._conn
            await self._call(lambda _: conn.close())
            self._conn = None
        self._closed = True
        self._executor.shutdown(wait=True)
