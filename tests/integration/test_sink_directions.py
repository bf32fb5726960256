"""Both directions and the estimate through every sink, read back as the bridge and the API do.

Readings with measured import and export, a redelivery, and an estimate (a gap the meter's
registers bridged) spread over several windows and across a local hour are merged through
each sink; its `windows()` and its source's `total`, `buckets` and `scope_hours` must give
the sums worked out by hand below, per direction and per kind, to 1e-9 Wh. An estimate never
raises coverage; `replace` and `delete` recount the rollups of every direction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import campus_meters
from tests.support.sinks import SinkFor, merge

from campus_energy.backends import open_sink, open_source
from campus_energy.backends.base import WindowSource
from campus_energy.config import Config, parse_config
from campus_energy.core.windows import IncomingReading, WindowDoc, contributions, group

KINDS = ["sqlite", "postgres", "firestore-per-meter", "firestore-per-window"]
WINDOW_S = 300
S = 1000  # ms
METERS = {"m1": ("SOLAR", "0"), "m2": ("ECE", "1")}
# 01:15 UTC = 06:45 in Asia/Kolkata: the local hour 06:00..07:00 ends at B + 900 s
B = round(datetime(2026, 3, 2, 1, 15, tzinfo=UTC).timestamp() * 1000)
HOUR_1 = B - 2700 * S  # 00:30 UTC, 06:00 local
HOUR_2 = B + 900 * S
DAY = "2026-03-02"
NOW_MS = B + 86_400 * S
TOLERANCE = 1e-9


def reading(meter: str, seq: int, ts_s: int, start_s: int | None, **energy: Any) -> IncomingReading:
    return IncomingReading(
        meter_id=meter,
        ts_ms=B + ts_s * S,
        seq=seq,
        energy_wh=energy.pop("imported", 0.0),
        power_w=100.0,
        interval_start_ms=None if start_s is None else B + start_s * S,
        **{k: (B + v * S if k == "estimated_start_ms" else v) for k, v in energy.items()},
    )


R1 = reading("m1", 1, 60, 0, imported=1.5, export_wh=0.25)
R2 = reading("m1", 2, 420, 60, imported=2.0, export_wh=3.0)  # 240 s in w0, 120 s in w1
# after a gap: nothing integrated, the registers' delta over (420 s, 1800 s] (1380 s) estimated
R3 = reading("m1", 3, 1800, None, estimated_wh=7.0, estimated_export_wh=1.0, estimated_start_ms=420)
R4 = reading("m1", 4, 1900, 1800, imported=0.5)
M2_R1 = reading("m2", 1, 100, 40, imported=0.3, export_wh=0.1)
M2_R2 = reading(
    "m2", 2, 250, None, estimated_wh=0.2, estimated_export_wh=0.05, estimated_start_ms=100
)

# By hand: (meter, window offset s) -> (import, export, estimated, estimated export, covered s)
G = 7.0 / 1380  # the estimate per second of its gap
GX = 1.0 / 1380
EXPECTED = {
    ("m1", 0): (1.5 + 2.0 * 240 / 360, 0.25 + 3.0 * 240 / 360, 0.0, 0.0, 300.0),
    ("m1", 300): (2.0 * 120 / 360, 3.0 * 120 / 360, 180 * G, 180 * GX, 120.0),
    ("m1", 600): (0.0, 0.0, 300 * G, 300 * GX, 0.0),
    ("m1", 900): (0.0, 0.0, 300 * G, 300 * GX, 0.0),
    ("m1", 1200): (0.0, 0.0, 300 * G, 300 * GX, 0.0),
    ("m1", 1500): (0.0, 0.0, 300 * G, 300 * GX, 0.0),
    ("m1", 1800): (0.5, 0.0, 0.0, 0.0, 100.0),
    ("m2", 0): (0.3, 0.1, 0.2, 0.05, 60.0),
}


def config_for(tmp_path: Path, sink: dict[str, Any]) -> Config:
    return parse_config(
        {
            "site": {"name": "Solar Campus", "timezone": "Asia/Kolkata"},
            "bridge": {"window_s": WINDOW_S, "grace_s": 60, **sink},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters(METERS),
        }
    )


def write(config: Config, *readings: IncomingReading) -> None:
    found = [c for r in readings for c in contributions(r, WINDOW_S * 1000)]
    merge(config, group(found, WINDOW_S, METERS), NOW_MS)


def sink_call(config: Config, method: str, *args: Any) -> Any:
    async def go() -> Any:
        sink = open_sink(config)
        try:
            return await getattr(sink, method)(*args)
        finally:
            await sink.close()

    return asyncio.run(go())


def stored(config: Config) -> dict[tuple[str, int], WindowDoc]:
    docs = sink_call(config, "windows", B - 3600 * S, B + 7200 * S, None)
    return {(d.meter_id, (d.window_start_ms - B) // S): d for d in docs}


@pytest.fixture
def source_of() -> Iterator[Any]:
    opened: list[WindowSource] = []

    def open_one(config: Config) -> WindowSource:
        source = open_source(config)  # a fresh one: the Firestore source's index read anew
        opened.append(source)
        return source

    yield open_one
    for source in opened:
        source.close()


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE


def sums(expected: dict[tuple[str, int], tuple[float, ...]], meters: set[str]) -> list[float]:
    return [sum(v[i] for k, v in expected.items() if k[0] in meters) for i in range(4)]


def assert_windows(config: Config, expected: dict[tuple[str, int], tuple[float, ...]]) -> None:
    docs = stored(config)
    assert sorted(docs) == sorted(expected)
    for key, (imported, exported, guessed, guessed_export, covered) in expected.items():
        doc = docs[key]
        found = (
            doc.total_energy_wh,
            doc.export_energy_wh,
            doc.estimated_energy_wh,
            doc.estimated_export_wh,
            doc.accumulator.covered_s,
        )
        wanted = (imported, exported, guessed, guessed_export, covered)
        assert all(close(a, b) for a, b in zip(found, wanted, strict=True)), (key, found, wanted)
        assert close(doc.coverage, covered / WINDOW_S), key  # never raised by the estimate
        assert close(doc.net_energy_wh, imported - exported)
        fields = doc.fields()
        assert close(fields["import_energy_wh"], imported)
        assert close(fields["net_energy_wh"], imported - exported)


def assert_answers(
    config: Config, source: WindowSource, expected: dict[tuple[str, int], tuple[float, ...]]
) -> None:
    for meters in ({"m1", "m2"}, {"m1"}, {"m2"}):
        total = source.total(DAY, DAY, None if len(meters) == 2 else meters)
        found = [total.energy_wh, total.export_wh, total.estimated_wh, total.estimated_export_wh]
        wanted = sums(expected, meters)
        assert all(close(a, b) for a, b in zip(found, wanted, strict=True)), (meters, found)
    days = {b.meter_id: b for b in source.buckets("day", DAY, "2026-03-03", None)}
    for meter in METERS:
        day = days[meter]
        found = [day.energy_wh, day.export_wh, day.estimated_wh, day.estimated_export_wh]
        assert all(close(a, b) for a, b in zip(found, sums(expected, {meter}), strict=True))
    hours = {
        (b.meter_id, b.key): b for b in source.buckets("hour", HOUR_1, HOUR_2 + 3600 * S, None)
    }
    for meter, hour, first, last in (("m1", HOUR_1, 0, 900), ("m1", HOUR_2, 900, 3600)):
        part = {k: v for k, v in expected.items() if k[0] == meter and first <= k[1] < last}
        bucket = hours[(meter, hour)]
        found = [
            bucket.energy_wh,
            bucket.export_wh,
            bucket.estimated_wh,
            bucket.estimated_export_wh,
        ]
        assert all(close(a, b) for a, b in zip(found, sums(part, {meter}), strict=True)), (
            hour,
            found,
        )
    steps = {
        (b.meter_id, (int(b.key) - B) // S): b
        for b in source.buckets("window", B, B + 2100 * S, None)
    }
    for key, (_, exported, guessed, guessed_export, covered) in expected.items():
        step = steps[key]
        assert close(step.export_wh, exported) and close(step.estimated_wh, guessed), key
        assert close(step.estimated_export_wh, guessed_export) and close(step.covered_s, covered)
    # a scope's hours: the estimated import of its members, signed by their weights
    scope = {
        h.hour_ms: h for h in source.scope_hours(HOUR_1, HOUR_2 + 3600 * S, {"m1": 1.0, "m2": -1.0})
    }
    for hour, first, last in ((HOUR_1, 0, 900), (HOUR_2, 900, 3600)):
        guessed = sum(v[2] for k, v in expected.items() if k[0] == "m1" and first <= k[1] < last)
        guessed -= sum(v[2] for k, v in expected.items() if k[0] == "m2" and first <= k[1] < last)
        assert close(scope[hour].estimated_wh, guessed), hour
        imported = sum(v[0] for k, v in expected.items() if k[0] == "m1" and first <= k[1] < last)
        imported -= sum(v[0] for k, v in expected.items() if k[0] == "m2" and first <= k[1] < last)
        assert close(scope[hour].energy_wh, imported)


@pytest.mark.parametrize("kind", KINDS)
def test_directions_and_estimates_read_back_per_sink(
    tmp_path: Path, sink_for: SinkFor, source_of: Any, kind: str
) -> None:
    config = config_for(tmp_path, sink_for(kind))
    write(config, R1, R2, M2_R1)
    write(config, R2, R3, M2_R2)  # R2 again: a redelivery adds nothing
    write(config, R4, R3)  # and R3 again, with a reading after it
    assert_windows(config, EXPECTED)
    assert_answers(config, source_of(config), EXPECTED)


@pytest.mark.parametrize("kind", KINDS)
def test_replace_and_delete_recount_every_direction(
    tmp_path: Path, sink_for: SinkFor, source_of: Any, kind: str
) -> None:
    config = config_for(tmp_path, sink_for(kind))
    write(config, R1, R2, R3, R4, M2_R1, M2_R2)
    docs = stored(config)
    # w1 rebuilt with more export and a smaller estimate (as reconcile would write it)
    old = docs[("m1", 300)]
    acc = dataclasses.replace(old.accumulator, export_wh=4.0, estimated_wh=0.5)
    new = dataclasses.replace(old, accumulator=acc, export_energy_wh=4.0, estimated_energy_wh=0.5)
    assert sink_call(config, "replace", [new], NOW_MS) == 1
    # w3 (only an estimate) deleted: no reading stands behind it
    assert sink_call(config, "delete", [("m1", B + 900 * S)], NOW_MS) == 1
    expected = dict(EXPECTED)
    imported, _, _, guessed_export, covered = expected[("m1", 300)]
    expected[("m1", 300)] = (imported, 4.0, 0.5, guessed_export, covered)
    del expected[("m1", 900)]
    assert_windows(config, expected)
    assert_answers(config, source_of(config), expected)


def run_sql(config: Config, statements: Sequence[str]) -> list[tuple[Any, ...]]:
    """Run statements against the sink's store ({p}: the tables' prefix); the last one's rows."""
    rows: list[tuple[Any, ...]] = []
    if config.bridge.sink == "sqlite":
        conn = sqlite3.connect(config.bridge.sqlite.path)
        try:
            for statement in statements:
                rows = conn.execute(statement.format(p="")).fetchall()
            conn.commit()
        finally:
            conn.close()
        return rows
    import psycopg

    assert config.bridge.postgres.dsn is not None
    with psycopg.connect(config.bridge.postgres.dsn) as pg:
        for statement in statements:
            cur = pg.execute(statement.format(p=f"{config.bridge.postgres.schema_name}."))
            rows = cur.fetchall() if cur.description else []
    return rows


OLDER_LAYOUT = [  # back to the layout before directions: no such columns, rollups of layout 5
    *(
        f"ALTER TABLE {{p}}window_aggregates DROP COLUMN {column}"
        for column in (
            "net_energy_wh",
            "import_energy_wh",
            "estimated_export_wh",
            "estimated_energy_wh",
            "export_energy_wh",
        )
    ),
    *(
        f"ALTER TABLE {{p}}{table} DROP COLUMN {column}"
        for table in ("rollup_hourly", "rollup_daily", "rollup_daily_campus")
        for column in ("export_wh", "estimated_wh", "estimated_export_wh")
    ),
]
META = {"sqlite": "meta", "postgres": "sink_meta"}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_older_store_gains_the_columns_and_keeps_its_windows(
    tmp_path: Path, sink_for: SinkFor, source_of: Any, kind: str
) -> None:
    """A store written before directions: the API reads it as it is (no export, no estimate),
    and once a bridge opens it its windows read as import only, and new readings with export
    are counted (the columns added, the old rows' import and net filled, rollups rebuilt)."""
    config = config_for(tmp_path, sink_for(kind))
    # windows as an older bridge wrote them (R4's is not written again below)
    write(config, dataclasses.replace(R1, export_wh=0.0), R4)
    run_sql(
        config,
        [
            *OLDER_LAYOUT,
            f"UPDATE {{p}}{META[kind]} SET value = 'Asia/Kolkata|5' WHERE key = 'rollup_zone'",
        ],
    )
    total = source_of(config).total(DAY, DAY, None)
    assert (total.energy_wh, total.export_wh, total.estimated_wh) == (2.0, 0.0, 0.0)
    write(config, R2, M2_R1)
    start = "window_start_ms" if kind == "sqlite" else "window_start"
    rows = run_sql(
        config,
        [
            f"SELECT total_energy_wh, import_energy_wh, export_energy_wh, net_energy_wh "
            f"FROM {{p}}window_aggregates WHERE meter_id = 'm1' ORDER BY {start}"
        ],
    )
    (rolled,) = run_sql(config, ["SELECT sum(export_wh) FROM {p}rollup_daily_campus"])
    w0_import, w0_export = 1.5 + 2.0 * 240 / 360, 3.0 * 240 / 360
    assert len(rows) == 3
    assert close(rows[0][0], w0_import) and close(rows[0][1], w0_import)
    assert close(rows[0][2], w0_export) and close(rows[0][3], w0_import - w0_export)
    assert rows[2] == (0.5, 0.5, 0.0, 0.5)  # an older window: all of it an import
    assert close(rolled[0], 3.0 + 0.1)
    total = source_of(config).total(DAY, DAY, None)
    assert close(total.energy_wh, 1.5 + 2.0 + 0.5 + 0.3) and close(total.export_wh, 3.1)
