"""The Firestore source against the emulator: the SQLite source's answers, at a bounded read cost.

The same window deltas go through `FirestoreSink` (each layout in its own
collection) and through `SqliteSink`; `FirestoreSource` must answer exactly
what `SqliteSource` answers, read each document about once, and answer later
refreshes from memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support.clock import FakeClock
from tests.support.net import TcpProxy, free_port
from tests.support.waiting import eventually

from campus_energy.backends.base import Grain
from campus_energy.backends.firestore import source as module
from campus_energy.backends.firestore.sink import FirestoreSink
from campus_energy.backends.firestore.source import FirestoreSource
from campus_energy.backends.sqlite.sink import SqliteSink
from campus_energy.backends.sqlite.source import SqliteSource
from campus_energy.config import FirestoreSinkConfig
from campus_energy.core.days import local_day
from campus_energy.core.window_index import WindowEntry, WindowIndex
from campus_energy.core.windows import Contribution, WindowDelta, window_stamp
from campus_energy.errors import SourceError

ZONE = ZoneInfo("Asia/Kolkata")
WINDOW_S = 300
WINDOW_MS = WINDOW_S * 1000
HOUR_MS = 3_600_000
CACHE_S = 30.0
PROJECT = "demo-campus"
METERS = {"ece-f1": ("ECE", "1"), "ece-f2": ("ECE", "2"), "lib-main": ("LIB", "0")}
LAYOUTS = ["per-meter", "per-window"]


def local_ms(text: str) -> int:
    """'2026-11-20T22:00' in the site's zone, as epoch ms."""
    return round(datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp() * 1000)


# Windows of three local days, across the local midnights (IST is UTC+5:30, so some
# UTC hours hold windows of two local days).
SPANS = [
    ("2026-11-20T22:00", 48),  # 22:00 .. 02:00 on the 21st
    ("2026-11-21T12:00", 12),
    ("2026-11-22T23:00", 18),  # .. 00:30 on the 23rd
]
WRITTEN_MS = local_ms("2026-11-23T03:00")  # `updated_at` of the first writes (settled long ago)


class Seqs:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def take(self, meter: str) -> int:
        self.next[meter] = self.next.get(meter, 0) + 1
        return self.next[meter]


def window_delta(meter: str, start: int, rng: random.Random, seqs: Seqs, n: int) -> WindowDelta:
    items = []
    for k in range(n):
        energy = rng.uniform(0.5, 40.0)
        covered = rng.choice([WINDOW_S / n, 90.0, 0.0])
        in_window = k > 0 or rng.random() < 0.7  # some shares of a reading of the window before
        items.append(
            Contribution(
                meter,
                start,
                seqs.take(meter),
                energy,
                covered,
                in_window,
                power_w=energy * 3600 / covered if in_window and covered else None,
                voltage_v=rng.uniform(225, 235) if in_window else None,
                # both directions and the estimates, in a pattern (the stream of rng unchanged)
                export_wh=energy * ((start // WINDOW_MS + k) % 3) / 4,
                estimated_wh=0.25 if (start // WINDOW_MS + k) % 5 == 0 else 0.0,
                estimated_export_wh=0.5 if (start // WINDOW_MS) % 7 == 0 else 0.0,
            )
        )
    return WindowDelta(meter, start, WINDOW_S, tuple(items), *METERS[meter])


def fixture_deltas(seed: int = 7) -> tuple[list[WindowDelta], Seqs]:
    rng = random.Random(seed)
    seqs = Seqs()
    deltas = []
    for first, count in SPANS:
        for i in range(count):
            start = local_ms(first) + i * WINDOW_MS
            for meter in METERS:
                if meter == "lib-main" and (i % 4 == 3 or first.startswith("2026-11-21")):
                    continue  # a meter with gaps, absent for a whole day
                deltas.append(window_delta(meter, start, rng, seqs, rng.randint(1, 3)))
    return deltas, seqs


def late_deltas(deltas: list[WindowDelta], seqs: Seqs) -> list[WindowDelta]:
    """Late readings for a few written windows (one each side of the first local midnight)."""
    rng = random.Random(11)
    midnight = local_ms("2026-11-21T00:00")
    chosen = [
        d
        for d in deltas
        if d.window_start_ms in (midnight - WINDOW_MS, midnight, midnight + 6 * WINDOW_MS)
    ]
    return [window_delta(d.meter_id, d.window_start_ms, rng, seqs, 2) for d in chosen]


def config_for(layout: str) -> FirestoreSinkConfig:
    return FirestoreSinkConfig(project=PROJECT, collection=f"windows-{layout}", layout=layout)


async def write(tmp_path: Path, layouts: list[str], deltas: list[WindowDelta], now_ms: int) -> None:
    """The same deltas through every sink: SQLite and each Firestore layout."""
    sinks: list[Any] = [SqliteSink(tmp_path / "windows.db", ZONE)]
    sinks += [FirestoreSink(config_for(layout), WINDOW_S) for layout in layouts]
    try:
        for sink in sinks:
            await sink.merge(deltas, now_ms)
    finally:
        for sink in sinks:
            await sink.close()


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Iterator[SqliteSource]:
    source = SqliteSource(tmp_path / "windows.db")
    try:
        yield source
    finally:
        source.close()


def bucket_rows(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(astuple(r) for r in rows)


def same(got: tuple[Any, ...], expected: tuple[Any, ...]) -> bool:
    """Equal, floats to within rounding (the sums are added up in another order)."""
    return len(got) == len(expected) and all(
        g == pytest.approx(e, rel=1e-9, abs=1e-9) if isinstance(e, float) else g == e
        for g, e in zip(got, expected, strict=True)
    )


def assert_rows_equal(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert same(g, e), (g, e)


DAY_RANGES = [
    ("2026-11-20", "2026-11-22"),
    ("2026-11-20", "2026-11-20"),
    ("2026-11-21", "2026-11-21"),
    ("2026-11-22", "2026-11-23"),
    ("2026-11-23", "2026-11-23"),
    ("2026-11-19", "2026-11-19"),  # no data
    ("2000-01-01", "2100-12-31"),
]
SUBSETS: list[list[str] | None] = [
    None,
    ["ece-f1"],
    ["ece-f2", "lib-main"],
    ["lib-main"],
    ["ghost"],
    [],
]


def grain_ranges() -> list[tuple[Grain, Any, Any]]:
    start = local_ms("2026-11-20T22:00")
    midnight = local_ms("2026-11-21T00:00")
    return [
        ("window", 0, 2**62),
        ("window", midnight - 3 * WINDOW_MS, midnight + 4 * WINDOW_MS),
        ("window", start, start),  # empty
        ("hour", 0, 2**62),
        ("hour", midnight - HOUR_MS, midnight + 2 * HOUR_MS),
        ("day", "2000-01-01", "2100-01-01"),
        ("day", "2026-11-21", "2026-11-22"),  # the end is exclusive
        ("day", "2026-11-22", "2026-11-24"),
    ]


def assert_same_answers(fs: FirestoreSource, sq: SqliteSource) -> None:
    assert_rows_equal([astuple(m) for m in fs.meters()], [astuple(m) for m in sq.meters()])
    assert [m.meter_id for m in fs.meters()] == sorted(METERS)
    for first, last in DAY_RANGES:
        for subset in SUBSETS:
            got, expected = fs.total(first, last, subset), sq.total(first, last, subset)
            assert same(astuple(got), astuple(expected)), (first, last, subset, got, expected)
    for grain, start, end in grain_ranges():
        for subset in SUBSETS:
            assert_rows_equal(
                bucket_rows(fs.buckets(grain, start, end, subset)),
                bucket_rows(sq.buckets(grain, start, end, subset)),
            )


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_the_firestore_source_answers_as_the_sqlite_source_and_reads_each_document_once(
    layout: str, tmp_path: Path, firestore_emulator: str, sqlite_source: SqliteSource
) -> None:
    deltas, seqs = fixture_deltas()
    await write(tmp_path, [layout], deltas, WRITTEN_MS)
    documents = len(deltas) if layout == "per-meter" else len({d.window_start_ms for d in deltas})
    clock = FakeClock(step=CACHE_S)
    fs = FirestoreSource(config_for(layout), ZONE, CACHE_S, clock=clock)
    try:
        assert_same_answers(fs, sqlite_source)
        # the data crosses local midnights: three local days with data, and a fourth
        assert {b.key for b in fs.buckets("day", "2026-01-01", "2027-01-01", None)} == {
            "2026-11-20",
            "2026-11-21",
            "2026-11-22",
            "2026-11-23",
        }
        assert fs.documents_read == documents
        assert fs.queries == 1
        version = fs.version()

        # within cache_s: no query at all
        clock.tick(CACHE_S / 2)
        assert_same_answers(fs, sqlite_source)
        assert (fs.documents_read, fs.queries) == (documents, 1)

        # a hundred refreshes without writes: a query each, no document
        for _ in range(100):
            clock.tick()
            assert fs.version() == version
        assert fs.queries <= 101
        assert fs.documents_read == documents

        # late readings rewrite some windows: read once each, counted once
        before = fs.total("2026-11-20", "2026-11-23", None)
        late = late_deltas(deltas, seqs)
        added = sum(c.energy_wh for d in late for c in d.items)
        await write(tmp_path, [layout], late, WRITTEN_MS + 3_600_000)
        rewritten = len(late) if layout == "per-meter" else len({d.window_start_ms for d in late})
        assert fs.version() == version  # still cached
        clock.tick()
        assert fs.version() != version
        assert fs.documents_read == documents + rewritten
        after = fs.total("2026-11-20", "2026-11-23", None)
        assert after.energy_wh == pytest.approx(before.energy_wh + added, rel=1e-12)
        assert after.readings == before.readings + sum(c.in_window for d in late for c in d.items)
        assert_same_answers(fs, sqlite_source)
        hourly = fs.buckets("hour", 0, 2**62, None)
        assert sum(b.energy_wh for b in hourly) == pytest.approx(after.energy_wh, rel=1e-12)

        # and nothing more to read afterwards
        queries = fs.queries
        clock.tick()
        fs.meters()
        assert (fs.documents_read, fs.queries) == (documents + rewritten, queries + 1)
        assert fs.reloads == 0
    finally:
        fs.close()


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_flush_split_across_transactions_is_read_whole(
    layout: str, tmp_path: Path, firestore_emulator: str, sqlite_source: SqliteSource
) -> None:
    """Transactions of one flush carry the same updated_at; a refresh may fall between them.

    Per window, the second transaction rewrites documents of the first (the
    meters of one window split between them) with the same updated_at.
    """
    deltas, _ = fixture_deltas()
    first = [d for d in deltas if d.meter_id != "lib-main"]
    second = [d for d in deltas if d.meter_id == "lib-main"]
    now_ms = round(time.time() * 1000)  # a flush of just now: not settled yet
    clock = FakeClock(step=CACHE_S)
    fs = FirestoreSource(config_for(layout), ZONE, CACHE_S, clock=clock)
    windows = len({d.window_start_ms for d in deltas})
    try:
        await write(tmp_path, [layout], first, now_ms)
        fs.meters()
        loaded = len(first) if layout == "per-meter" else windows
        assert fs.documents_read == loaded
        await write(tmp_path, [layout], second, now_ms)  # the same updated_at
        clock.tick()
        assert_same_answers(fs, sqlite_source)
        assert fs.total("2000-01-01", "2100-01-01", None).readings == sum(
            c.in_window for d in deltas for c in d.items
        )
        # the boundary was read again (per meter: because a count showed it grew)
        boundary = len(deltas) if layout == "per-meter" else windows
        assert fs.documents_read == loaded + boundary
        clock.tick()
        reads, queries = fs.documents_read, fs.queries
        assert_same_answers(fs, sqlite_source)  # nothing applied twice
        if layout == "per-meter":  # a count and an empty query: no document
            assert (fs.documents_read, fs.queries) == (reads, queries + 2)
        else:  # until it settles, the last flush's few documents are read again
            assert (fs.documents_read, fs.queries) == (reads + boundary, queries + 1)
    finally:
        fs.close()


async def test_a_rewrite_older_than_the_windows_kept_reloads_instead_of_double_counting(
    tmp_path: Path, firestore_emulator: str, sqlite_source: SqliteSource
) -> None:
    rng, seqs = random.Random(3), Seqs()
    old = local_ms("2026-09-01T10:00")
    recent = local_ms("2026-11-20T10:00")
    deltas = [
        window_delta(m, start + i * WINDOW_MS, rng, seqs, 2)
        for start in (old, recent)
        for i in range(3)
        for m in METERS
    ]
    await write(tmp_path, ["per-meter"], deltas, WRITTEN_MS)
    clock = FakeClock(step=CACHE_S)
    fs = FirestoreSource(config_for("per-meter"), ZONE, CACHE_S, clock=clock)
    try:
        assert fs.buckets("window", 0, recent, None) == []  # older than the 40 days kept
        assert len(fs.buckets("window", recent, 2**62, None)) == 9
        late = [window_delta("ece-f1", old, rng, seqs, 1)]
        await write(tmp_path, ["per-meter"], late, WRITTEN_MS + 1000)
        clock.tick()
        for first, last in [*DAY_RANGES, ("2026-09-01", "2026-09-01")]:
            for subset in SUBSETS:
                got, expected = (
                    fs.total(first, last, subset),
                    sqlite_source.total(first, last, subset),
                )
                assert same(astuple(got), astuple(expected)), (first, last, subset)
        assert_rows_equal(
            bucket_rows(fs.buckets("hour", 0, 2**62, None)),
            bucket_rows(sqlite_source.buckets("hour", 0, 2**62, None)),
        )
        assert fs.reloads == 1
        assert fs.documents_read == len(deltas) + 1 + len(deltas)  # the rewrite, then all
    finally:
        fs.close()


async def test_an_outage_serves_the_last_index_and_a_fresh_source_fails(
    tmp_path: Path, firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "RETRY_DEADLINE_S", 1.0)
    deltas, _ = fixture_deltas()
    await write(tmp_path, ["per-window"], deltas, WRITTEN_MS)
    host, port = firestore_emulator.split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    clock = FakeClock(step=CACHE_S)
    try:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{proxy.port}")
        fs = FirestoreSource(config_for("per-window"), ZONE, CACHE_S, clock=clock)
        try:
            # the source blocks: run it off the loop that relays its connection
            meters = await asyncio.to_thread(fs.meters)
            version = await asyncio.to_thread(fs.version)
            await proxy.cut()
            clock.tick()
            assert await asyncio.to_thread(fs.meters) == meters  # stale, not an error
            assert fs.last_error is not None and "windows-per-window" in fs.last_error
            assert await asyncio.to_thread(fs.version) == version
            await proxy.restore()

            async def recovered() -> bool:  # at a later refresh (gRPC backs off reconnecting)
                clock.tick()
                assert await asyncio.to_thread(fs.meters) == meters
                return fs.last_error is None

            await eventually(recovered, timeout=30, interval=0.2)
        finally:
            await asyncio.to_thread(fs.close)
    finally:
        await proxy.close()

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    fresh = FirestoreSource(config_for("per-window"), ZONE, CACHE_S, clock=clock)
    try:
        with pytest.raises(SourceError, match="firestore windows-per-window"):
            fresh.meters()
        with pytest.raises(SourceError, match="firestore windows-per-window"):
            fresh.version()  # within cache_s: the same error, without a new attempt
        assert fresh.queries == 1
    finally:
        fresh.close()


# --- the index alone (no Firestore) ------------------------------------------------------------


def entry(meter: str, start: int, energy: float, readings: int = 1) -> WindowEntry:
    return WindowEntry(meter, "B", "1", start, energy, 60.0, readings, energy * 60, 0.2)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_the_index_replaces_a_rewritten_window_and_skips_what_it_has_seen() -> None:
    index = WindowIndex(ZONE)
    start = local_ms("2026-11-21T00:00")
    index.load("a", at(1000), [entry("m", start, 5.0)])
    index.load("b", at(1000), [entry("m", start + WINDOW_MS, 7.0)])
    assert index.update("b", at(1000), [entry("m", start + WINDOW_MS, 7.0)]) == "seen"
    assert index.update("a", at(2000), [entry("m", start, 6.0, 2)]) == "applied"
    assert index.update("a", at(2000), [entry("m", start, 6.0, 2)]) == "seen"
    assert index.update("c", at(1500), [entry("m", start, 99.0)]) == "seen"  # behind the cursor
    total = index.total("2026-11-21", "2026-11-21", None)
    assert (total.energy_wh, total.readings, total.meters_found) == (13.0, 3, 1)
    assert total.last_window_ms == start + WINDOW_MS
    assert index.daily[local_day(start, ZONE)]["m"].windows == 2


def test_the_index_asks_for_a_rebuild_only_for_a_rewrite_it_cannot_subtract() -> None:
    index = WindowIndex(ZONE, keep_ms=10 * WINDOW_MS)
    start = local_ms("2026-11-21T00:00")
    index.load("old", at(1), [entry("m", start, 1.0)])
    index.load("new", at(1), [entry("m", start + 100 * WINDOW_MS, 1.0)])
    index.prune()
    assert start not in index.recent
    assert index.update("old", at(2), [entry("m", start, 2.0)]) == "rebuild"
    assert index.update("x", at(2), [entry("m", start, 2.0)], first_version=True) == "applied"
    other_hour = start - 24 * HOUR_MS
    assert index.update("y", at(3), [entry("m", other_hour, 2.0)]) == "applied"  # no data there
    assert index.total("2000-01-01", "2100-01-01", None).energy_wh == 6.0


async def test_threads_share_one_index_and_one_refresh_at_a_time(
    tmp_path: Path, firestore_emulator: str, sqlite_source: SqliteSource
) -> None:
    deltas, _ = fixture_deltas()
    await write(tmp_path, ["per-meter"], deltas, WRITTEN_MS)
    fs = FirestoreSource(config_for("per-meter"), ZONE, 0.0)  # every call refreshes
    expected = sqlite_source.total("2026-11-20", "2026-11-23", None)
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(10):
                assert same(astuple(fs.total("2026-11-20", "2026-11-23", None)), astuple(expected))
                assert len(fs.buckets("hour", 0, 2**62, ["ece-f1"])) > 0
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        assert fs.documents_read == len(deltas)  # one load, then empty refreshes
        assert fs.queries == 6 * 10 * 2  # one per call: the first loads, the others are empty
    finally:
        fs.close()


async def test_per_window_documents_are_one_per_site_and_window(
    tmp_path: Path, firestore_emulator: str, sqlite_source: SqliteSource
) -> None:
    """A site's meters share a window's document, not the estate's (1 MiB a document): the
    default site's keep their plain ids, another site's are `<site>_<stamp>`."""
    from google.cloud import firestore

    rng, seqs = random.Random(5), Seqs()
    start = local_ms("2026-11-21T00:00")
    sites = {"ece-f1": "main", "ece-f2": "main", "lib-main": "north"}
    deltas = [
        dataclasses.replace(window_delta(m, start + i * WINDOW_MS, rng, seqs, 2), site=site)
        for i in range(3)
        for m, site in sites.items()
    ]
    config = config_for("per-window")
    sinks: list[Any] = [
        SqliteSink(tmp_path / "windows.db", ZONE),
        FirestoreSink(config, WINDOW_S, default_site="main", sites=sites),
    ]
    try:
        for sink in sinks:
            await sink.merge(deltas, WRITTEN_MS)
        stamps = [window_stamp(start + i * WINDOW_MS) for i in range(3)]
        client = firestore.Client(project=PROJECT)
        try:
            held = {s.id: s.to_dict() for s in client.collection(config.collection).stream()}
        finally:
            client.close()
        assert sorted(held) == sorted([*stamps, *(f"north_{s}" for s in stamps)])
        assert sorted(held[stamps[0]]["meters"]) == ["ece-f1", "ece-f2"]
        assert sorted(held[f"north_{stamps[0]}"]["meters"]) == ["lib-main"]
        assert held[f"north_{stamps[0]}"]["site"] == "north"
        # read back whole, with each meter's site
        got = await sinks[1].windows(start, start + 3 * WINDOW_MS, None)
        assert sorted((d.meter_id, d.window_start_ms, d.site) for d in got) == sorted(
            (d.meter_id, d.window_start_ms, d.site) for d in deltas
        )
        fs = FirestoreSource(config, ZONE, CACHE_S, clock=FakeClock(WRITTEN_MS / 1000 + 3600))
        try:
            assert_rows_equal(
                [astuple(m) for m in fs.meters()], [astuple(m) for m in sqlite_source.meters()]
            )
            assert {m.meter_id: m.site for m in fs.meters()} == sites
        finally:
            fs.close()
        # deleting the other site's meter's window empties that site's document only
        for sink in sinks:
            assert await sink.delete([("lib-main", start)], WRITTEN_MS) == 1
        client = firestore.Client(project=PROJECT)
        try:
            ids = {s.id for s in client.collection(config.collection).stream()}
        finally:
            client.close()
        assert f"north_{stamps[0]}" not in ids and stamps[0] in ids
        # a window written before its meter was north's is in the default site's document,
        # and is found there
        earlier = start - WINDOW_MS
        older = window_delta("lib-main", earlier, rng, seqs, 1)  # site '': before sites
        await sinks[1].merge([older], WRITTEN_MS)
        assert await sinks[1].delete([("lib-main", earlier)], WRITTEN_MS) == 1
        assert await sinks[1].windows(earlier, start, None) == []
    finally:
        for sink in sinks:
            await sink.close()
