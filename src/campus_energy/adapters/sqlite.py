"""One SQLite file, owned by one thread: every statement runs there (one writer per file).

The logger's store, the bridge's spool and the SQLite window sink are each a
`SqliteFile`: WAL mode, a schema created on first use and checked for its
version, and every sqlite3 failure turned into the owner's error type.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from campus_energy.errors import CampusEnergyError

T = TypeVar("T")


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


class SqliteFile:
    """Base of the project's SQLite files. Subclasses set the class attributes below."""

    label = "database"  # how errors name the file: "<label> <path>: ..."
    error: type[CampusEnergyError] = CampusEnergyError
    full_error: type[CampusEnergyError] | None = None  # raised instead when the disk is full
    schema = ""
    schema_version = 1
    synchronous = "FULL"  # a committed row survives power loss

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
            raise error(f"{self.label} {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(
                f"{self.label} {self.path}: cannot create its folder: {exc.strerror}"
            ) from None
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

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
