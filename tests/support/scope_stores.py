"""A window store of each kind for one test, written through its sink and read through its
source: a temp SQLite file, a throw-away PostgreSQL schema, a project on the Firestore
emulator (the module's shared one). What the scope tests (`scope_hours`, `scope_peaks`)
run against.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from campus_energy.backends.base import WindowSink, WindowSource
from campus_energy.config import FirestoreSinkConfig, PostgresSinkConfig

KINDS = ["sqlite", "postgres", "firestore"]


@dataclass
class Store:
    sink: WindowSink
    open_source: Callable[[], WindowSource]
    kind: str
    where: dict[str, Any]


@contextlib.contextmanager
def answering(store: Store) -> Iterator[WindowSource]:
    source = store.open_source()
    try:
        yield source
    finally:
        source.close()


def sink_of(kind: str, where: dict[str, Any], zone: ZoneInfo) -> WindowSink:
    if kind == "sqlite":
        from campus_energy.backends.sqlite.sink import SqliteSink

        return SqliteSink(where["path"], zone)
    if kind == "postgres":
        from campus_energy.backends.postgres.sink import PostgresSink

        return PostgresSink(where["config"], zone)
    from campus_energy.backends.firestore.sink import FirestoreSink

    return FirestoreSink(where["config"], 300)


def source_of(kind: str, where: dict[str, Any], zone: ZoneInfo) -> Callable[[], WindowSource]:
    if kind == "sqlite":
        from campus_energy.backends.sqlite.source import SqliteSource

        return lambda: SqliteSource(where["path"])
    if kind == "postgres":
        from campus_energy.backends.postgres.source import PostgresSource

        return lambda: PostgresSource(where["config"])
    from campus_energy.backends.firestore.source import FirestoreSource

    return lambda: FirestoreSource(where["config"], zone, cache_s=0)


@contextlib.asynccontextmanager
async def store_of(
    kind: str, zone: ZoneInfo, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """A new store of `kind` (the fixtures `postgres_dsn` and `shared_firestore_emulator`
    are taken from `request` as needed); its sink is closed after."""
    if kind == "sqlite":
        where: dict[str, Any] = {"path": tmp_path / "windows.db"}
    elif kind == "postgres":
        dsn, schema = request.getfixturevalue("postgres_dsn")
        where = {"config": PostgresSinkConfig(dsn=dsn, schema=schema), "dsn": dsn, "schema": schema}
    else:
        request.getfixturevalue("shared_firestore_emulator")
        project = f"scope-{uuid.uuid4().hex[:10]}"
        where = {"config": FirestoreSinkConfig(project=project, collection="windows")}
    sink = sink_of(kind, where, zone)
    try:
        yield Store(sink, source_of(kind, where, zone), kind, where)
    finally:
        await sink.close()
