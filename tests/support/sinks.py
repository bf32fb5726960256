"""Sinks for a test: the settings of one of each kind, and its window documents read back.

`sink_settings(kind, folder)` gives the `bridge` keys of a fresh sink ("sqlite",
"postgres", "firestore", "firestore-per-meter", "firestore-per-window"), its
store started and dropped around the block; `merge(config, deltas, now_ms)`
writes windows through it as the bridge does (`window_deltas` makes them);
`docs_of(config)` reads back what the bridge wrote, the way a test checks the
books.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.emulator import emulator_environment
from tests.support.stores import emulator_or_skip, postgres_schema

from campus_energy.backends import open_sink
from campus_energy.config import Config
from campus_energy.core.windows import Contribution, WindowDelta

# the `sink_for` fixture: sink_for(kind, **options) -> the settings (see sink_settings)
SinkFor = Callable[..., dict[str, Any]]


def sqlite_sink(folder: Path) -> dict[str, Any]:
    return {"sink": "sqlite", "sqlite": {"path": str(folder / "windows.db")}}


@contextlib.contextmanager
def sink_settings(
    kind: str,
    folder: Path,
    *,
    project: str = "demo-campus",
    collection: str = "windows",
    shared: bool = False,
) -> Iterator[dict[str, Any]]:
    """The bridge settings of a fresh sink of `kind` for the block.

    PostgreSQL: a throw-away schema. Firestore: an emulator of its own, with
    FIRESTORE_EMULATOR_HOST pointing at it (`shared`: kept for a module's tests).
    """
    if kind == "sqlite":
        yield sqlite_sink(folder)
    elif kind == "postgres":
        with postgres_schema() as (dsn, schema):
            yield {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
    elif kind == "firestore" or kind.startswith("firestore-"):
        firestore = {"project": project, "collection": collection}
        if kind != "firestore":
            firestore["layout"] = kind.removeprefix("firestore-")
        with emulator_or_skip(shared=shared) as host, emulator_environment(host):
            yield {"sink": "firestore", "firestore": firestore}
    else:
        raise ValueError(f"no sink of kind {kind!r}")


@dataclass(frozen=True)
class KnownWindow:
    """A window of a test's campus, its figures known: what one reading inside it left."""

    meter_id: str
    start_ms: int
    energy_wh: float
    covered_s: float
    power_w: float


def window_deltas(
    items: Iterable[KnownWindow], window_s: int, places: Mapping[str, Sequence[Any]]
) -> list[WindowDelta]:
    """Each window as the bridge hands it to the sink: one contribution, the meter's building
    and floor the first two of its `places` entry."""
    return [
        WindowDelta(
            w.meter_id,
            w.start_ms,
            window_s,
            (Contribution(w.meter_id, w.start_ms, 1, w.energy_wh, w.covered_s, True, w.power_w),),
            places[w.meter_id][0],
            places[w.meter_id][1],
        )
        for w in items
    ]


def merge(
    config: Config, deltas: Sequence[WindowDelta], now_ms: int, *, batch: int | None = None
) -> None:
    """`deltas` merged through the sink `config` names, as the bridge writes them at `now_ms`
    (`batch`: so many a merge, as a busy bridge flushes them; all at once unless said)."""
    size = batch or max(len(deltas), 1)

    async def go() -> None:
        sink = open_sink(config)
        try:
            for i in range(0, len(deltas), size):
                await sink.merge(deltas[i : i + size], now_ms)
        finally:
            await sink.close()

    # in a thread of its own: the caller may hold an event loop (Playwright's sync API does)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, go()).result()


@dataclass(frozen=True)
class Doc:
    id: str
    meter_id: str
    window_start_ms: int
    total_energy_wh: float
    readings_in_batch: int
    coverage: float


def _ms(value: Any) -> int:
    return round(value.timestamp() * 1000)


def sqlite_docs(path: Path) -> list[Doc]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, meter_id, window_start_ms, total_energy_wh, readings_in_batch, coverage "
            "FROM window_aggregates"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [Doc(*row) for row in rows]


def postgres_docs(dsn: str, schema: str) -> list[Doc]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        exists = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'window_aggregates'",
            (schema,),
        ).fetchone()
        if not exists:
            return []
        rows = conn.execute(
            f"SELECT id, meter_id, window_start, total_energy_wh, readings_in_batch, coverage "
            f"FROM {schema}.window_aggregates"
        ).fetchall()
    return [Doc(r[0], r[1], _ms(r[2]), r[3], r[4], r[5]) for r in rows]


def firestore_docs(project: str, collection: str, layout: str) -> list[Doc]:
    from google.cloud import firestore

    client = firestore.Client(project=project)
    try:
        found = []
        for snap in client.collection(collection).stream():
            data = snap.to_dict()
            if layout == "per-window":
                for meter_id, entry in data["meters"].items():
                    found.append(
                        Doc(
                            f"{meter_id}_{snap.id}",
                            meter_id,
                            _ms(data["window_start"]),
                            entry["total_energy_wh"],
                            entry["readings_in_batch"],
                            entry["coverage"],
                        )
                    )
            else:
                found.append(
                    Doc(
                        snap.id,
                        data["meter_id"],
                        _ms(data["window_start"]),
                        data["total_energy_wh"],
                        data["readings_in_batch"],
                        data["coverage"],
                    )
                )
        return found
    finally:
        client.close()


def docs_of(config: Config) -> list[Doc]:
    bridge = config.bridge
    if bridge.sink == "sqlite":
        return sqlite_docs(bridge.sqlite.path)
    if bridge.sink == "postgres":
        assert bridge.postgres.dsn is not None
        return postgres_docs(bridge.postgres.dsn, bridge.postgres.schema_name)
    assert bridge.firestore.project is not None
    return firestore_docs(
        bridge.firestore.project, bridge.firestore.collection, bridge.firestore.layout
    )


def rollup_totals(config: Config) -> dict[str, tuple[float, float, int, int]] | None:
    """meter -> (Σ daily energy, Σ hourly energy, Σ daily readings, Σ daily windows); None for
    sinks without stored rollups (Firestore: the API keeps them in memory)."""
    bridge = config.bridge
    queries = (
        "SELECT meter_id, sum(energy_wh), sum(readings), sum(windows) FROM {p}rollup_daily "
        "GROUP BY meter_id",
        "SELECT meter_id, sum(energy_wh) FROM {p}rollup_hourly GROUP BY meter_id",
        "SELECT '', sum(energy_wh) FROM {p}rollup_daily_campus",
    )
    if bridge.sink == "sqlite":
        conn = sqlite3.connect(f"file:{bridge.sqlite.path}?mode=ro", uri=True)
        try:
            daily = conn.execute(queries[0].format(p="")).fetchall()
            hourly = dict(conn.execute(queries[1].format(p="")).fetchall())
            hourly |= dict(conn.execute(queries[2].format(p="")).fetchall())
        finally:
            conn.close()
    elif bridge.sink == "postgres":
        import psycopg

        assert bridge.postgres.dsn is not None
        prefix = f"{bridge.postgres.schema_name}."
        with psycopg.connect(bridge.postgres.dsn) as pg:
            daily = pg.execute(queries[0].format(p=prefix)).fetchall()
            hourly = dict(pg.execute(queries[1].format(p=prefix)).fetchall())
            hourly |= dict(pg.execute(queries[2].format(p=prefix)).fetchall())
    else:
        return None
    found = {m: (e, hourly[m], int(r), int(w)) for m, e, r, w in daily}
    found[""] = (hourly[""], hourly[""], 0, 0)  # the campus rollup, as one more "meter"
    return found
