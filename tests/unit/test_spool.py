"""The bridge's spool: duplicates ignored, conflicts kept, due windows, removal after the sink,
bounded dead letters."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from campus_energy.bridge.spool import (
    DEAD_LETTER_PREFIX_BYTES,
    DEAD_LETTER_REASON_CHARS,
    DEAD_LETTER_TOPIC_CHARS,
    Arrival,
    DeadLetter,
    Spool,
)
from campus_energy.core.incoming import fingerprint
from campus_energy.core.windows import IncomingReading, contributions

W = 300_000
T0 = 1_764_230_400_000  # a window boundary


def reading(seq: int, ts_ms: int, start_ms: int | None) -> IncomingReading:
    return IncomingReading("m1", ts_ms, seq, 1.0, start_ms, 1000.0, building="ECE", floor="2")


def rows(spool: Spool, sql: str) -> list[tuple[Any, ...]]:
    """Read the spool file as another process would."""
    conn = sqlite3.connect(spool.path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = Spool(tmp_path / "spool.db")
    try:
        yield s
    finally:
        await s.close()


async def test_a_redelivered_reading_adds_nothing(spool: Spool) -> None:
    r = reading(2, T0 + W + 5_000, T0 + W - 5_000)  # straddles a boundary: two contributions
    items = contributions(r, W)
    assert await spool.add([r], items) == 2
    assert await spool.add([r], items) == 0
    assert await spool.pending() == 2


async def test_due_windows_and_removal(spool: Spool) -> None:
    first = reading(1, T0 + 10_000, None)
    second = reading(2, T0 + W + 10_000, T0 + W - 10_000)
    await spool.add([first, second], contributions(first, W) + contributions(second, W))
    assert await spool.due(T0 + W, W, 10) == [("m1", T0)]  # the first window has ended
    assert await spool.due(T0 + W - 1, W, 10) == []
    assert await spool.due(None, W, 10) == [("m1", T0), ("m1", T0 + W)]
    items, meta = await spool.load([("m1", T0)])
    assert {c.seq for c in items} == {1, 2} and meta == {"m1": ("ECE", "2", "")}
    await spool.remove(items)
    assert await spool.due(None, W, 10) == [("m1", T0 + W)]


async def test_dead_letters_keep_their_bytes_and_expire(spool: Spool) -> None:
    await spool.add([], [], [DeadLetter(1_000, "t", b"\xff\x00raw", "not-json", "bad")])
    await spool.add([], [], [DeadLetter(9_000, "t", b"{}", "schema", "schema None")])
    assert await spool.dead_letter_counts() == {"not-json": 1, "schema": 1}
    assert await spool.prune_dead_letters(5_000) == 1
    assert await spool.dead_letter_counts() == {"schema": 1}


# --- conflicts: one (meter, seq), two different readings ---------------------------------------


def arrival(r: IncomingReading, payload: bytes = b"{}") -> Arrival:
    return Arrival(r, contributions(r, W), "campus/energy/m1/reading", payload)


async def test_the_same_reading_again_is_a_silent_duplicate(spool: Spool) -> None:
    r = reading(2, T0 + W + 5_000, T0 + W - 5_000)
    first = await spool.record([arrival(r)], [], 1_000)
    again = await spool.record([arrival(r), arrival(r)], [], 2_000)
    assert (first.added, first.duplicates, first.conflicts) == (2, 0, [])
    assert (again.added, again.duplicates, again.conflicts) == (0, 4, [])
    assert await spool.pending() == 2 and await spool.dead_letter_counts() == {}


async def test_a_different_reading_with_a_seen_seq_is_kept_as_a_conflict(spool: Spool) -> None:
    forged = reading(7, T0 + 20_000, T0 + 15_000)
    real = IncomingReading("m1", T0 + 20_000, 7, 1.39, T0 + 15_000, 1000.0)
    await spool.record([arrival(forged, b"forged")], [], 1_000)
    done = await spool.record([arrival(real, b"real"), arrival(real, b"real")], [], 9_000)
    again = await spool.record([arrival(real, b"real")], [], 9_500)  # redelivered: kept once
    assert done.added == 0 and [c.kind for c in done.conflicts] == ["conflict"]
    assert (again.conflicts, again.duplicates, done.duplicates) == ([], 1, 1)
    assert "seq 7 of meter m1" in done.conflicts[0].reason
    items, _ = await spool.load([("m1", T0)])
    assert [c.energy_wh for c in items] == [1.0]  # the first one counts
    assert await spool.dead_letter_counts() == {"conflict": 1}
    kept = rows(spool, "SELECT payload FROM dead_letters")
    assert kept == [(b"real",)]


async def test_a_conflict_is_told_after_its_window_left_the_spool(spool: Spool) -> None:
    first = reading(3, T0 + 20_000, T0 + 15_000)
    await spool.record([arrival(first)], [], 1_000)
    items, _ = await spool.load([("m1", T0)])
    await spool.remove(items)  # written to the sink
    other = IncomingReading("m1", T0 + 21_000, 3, 2.0, T0 + 15_000, 900.0)
    done = await spool.record([arrival(other)], [], 2_000)
    assert len(done.conflicts) == 1 and await spool.pending() == 0


async def test_a_reused_seq_in_other_windows_is_no_conflict(spool: Spool) -> None:
    """A logger whose store was replaced counts seqs from 1 again, in later windows."""
    old = reading(1, T0 + 10_000, None)
    new = reading(1, T0 + 5 * W + 10_000, None)
    await spool.record([arrival(old)], [], 1_000)
    done = await spool.record([arrival(new)], [], 2_000)
    assert (done.added, done.conflicts) == (1, [])


async def test_seen_readings_are_forgotten_after_their_time(spool: Spool) -> None:
    r = reading(4, T0 + 20_000, T0 + 15_000)
    await spool.record([arrival(r)], [], 1_000)
    assert await spool.prune_seen(2_000) == 0  # pending: its contribution rows remember it
    again = await spool.record([arrival(r)], [], 2_000)
    assert (again.added, again.duplicates) == (0, 1)
    items, _ = await spool.load([("m1", T0)])
    await spool.remove(items)  # written: remembered in readings_seen from now on
    assert await spool.prune_seen(1_000) == 0
    assert await spool.prune_seen(1_001) == 1


# --- dead letters: bounded rows, a bounded table ------------------------------------------------


async def test_an_oversized_payload_keeps_its_prefix_size_and_hash(spool: Spool) -> None:
    huge = bytes(range(256)) * 65_536  # 16 MiB
    await spool.add([], [], [DeadLetter(1_000, "t" * 70_000, huge, "oversized", "r" * 9_000)])
    row = rows(spool, "SELECT topic, payload, reason, size, sha256 FROM dead_letters")[0]
    assert row[1] == huge[:DEAD_LETTER_PREFIX_BYTES]
    assert (row[3], row[4]) == (len(huge), hashlib.sha256(huge).hexdigest())
    assert len(row[0]) == DEAD_LETTER_TOPIC_CHARS and len(row[2]) == DEAD_LETTER_REASON_CHARS


async def test_the_dead_letter_table_is_capped_oldest_first(tmp_path: Path) -> None:
    cap = 64 * 1024
    spool = Spool(tmp_path / "capped.db", max_dead_letter_bytes=cap)
    try:
        evicted = 0
        for n in range(100):
            letter = DeadLetter(n, "t", b"x" * 3_000 + str(n).encode(), "oversized", "big")
            evicted += (await spool.record([], [letter], n)).evicted
        held = await spool.dead_letter_bytes()
        ids = rows(spool, "SELECT received_ms FROM dead_letters")
    finally:
        await spool.close()
    assert held <= cap
    assert evicted == 100 - len(ids) > 0
    assert [i for (i,) in ids] == list(range(100 - len(ids), 100))  # the newest are kept


async def test_a_spool_made_before_the_new_columns_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
            topic TEXT NOT NULL, payload BLOB NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);
        INSERT INTO dead_letters (received_ms, topic, payload, kind, reason)
            VALUES (5, 't', x'00ff', 'not-json', 'old');
        """
    )
    old.close()
    spool = Spool(path)
    try:
        await spool.add([], [], [DeadLetter(6, "t", b"{}", "schema", "new")])
        kept = rows(spool, "SELECT payload, size FROM dead_letters ORDER BY id")
        r = reading(1, T0 + 10_000, None)
        assert (await spool.record([arrival(r)], [], 7)).added == 1
    finally:
        await spool.close()
    assert kept == [(b"\x00\xff", None), (b"{}", 2)]


# --- a spool of the first layout, converted when opened -----------------------------------------

FIRST_LAYOUT = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE contributions (
    meter_id TEXT NOT NULL, window_start_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    energy_wh REAL NOT NULL, covered_s REAL NOT NULL, in_window INTEGER NOT NULL,
    power_w REAL, voltage_v REAL, current_a REAL, power_factor REAL, frequency_hz REAL,
    PRIMARY KEY (meter_id, window_start_ms, seq)
) WITHOUT ROWID;
CREATE INDEX contributions_by_window ON contributions (window_start_ms);
CREATE TABLE meters (meter_id TEXT PRIMARY KEY, building TEXT NOT NULL DEFAULT '',
    floor TEXT NOT NULL DEFAULT '');
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE readings_seen (
    meter_id TEXT NOT NULL, seq INTEGER NOT NULL, fingerprint BLOB NOT NULL,
    first_window_ms INTEGER NOT NULL, last_window_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL, PRIMARY KEY (meter_id, seq)
) WITHOUT ROWID;
CREATE INDEX readings_seen_by_time ON readings_seen (received_ms);
"""


async def test_a_first_layout_spool_keeps_its_contributions_and_seen_readings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.db"
    written = reading(1, T0 + 10_000, None)  # its window was written: only remembered
    pending = [reading(2, T0 + W + 5_000, T0 + W - 5_000), reading(3, T0 + W + 15_000, None)]
    conn = sqlite3.connect(path)
    try:
        conn.executescript(FIRST_LAYOUT)
        for r, received in [(written, 1_000), (pending[0], 2_000), (pending[1], 3_000)]:
            windows = [c.window_start_ms for c in contributions(r, W)]
            conn.execute(
                "INSERT INTO readings_seen VALUES (?, ?, ?, ?, ?, ?)",
                (r.meter_id, r.seq, fingerprint(r), min(windows), max(windows), received),
            )
        for c in [c for r in pending for c in contributions(r, W)]:
            conn.execute(
                "INSERT INTO contributions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.meter_id,
                    c.window_start_ms,
                    c.seq,
                    c.energy_wh,
                    c.covered_s,
                    int(c.in_window),
                    c.power_w,
                    c.voltage_v,
                    c.current_a,
                    c.power_factor,
                    c.frequency_hz,
                ),
            )
        conn.execute("INSERT INTO meters VALUES ('m1', 'ECE', '2')")
        conn.commit()
        seen_before = conn.execute("SELECT * FROM readings_seen ORDER BY 1, 2").fetchall()
    finally:
        conn.close()

    spool = Spool(path)
    try:
        assert await spool.pending() == 3
        items, meta = await spool.load([("m1", T0), ("m1", T0 + W)])
        assert items == sorted(
            (c for r in pending for c in contributions(r, W)),
            key=lambda c: (c.meter_id, c.window_start_ms, c.seq),
        )
        assert meta == {"m1": ("ECE", "2", "")}  # site unknown: written before sites
        assert rows(spool, "SELECT * FROM readings_seen ORDER BY 1, 2") == seen_before
        assert rows(spool, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
        # what it held counts once, and a different reading with a held (meter, seq) conflicts
        again = await spool.record([arrival(r) for r in [written, *pending]], [], 9_000)
        assert (again.added, again.duplicates, again.conflicts) == (0, 4, [])
        other = IncomingReading("m1", T0 + W + 5_000, 2, 7.0, T0 + W - 5_000, 900.0)
        done = await spool.record([arrival(other, b"other")], [], 9_500)
        assert len(done.conflicts) == 1 and "received at" in done.conflicts[0].reason
        await spool.remove(items)
        assert await spool.pending() == 0
    finally:
        await spool.close()
    reopened = Spool(path)  # opened again: converted once, nothing changes
    try:
        assert await reopened.pending() == 0
        assert rows(reopened, "SELECT count(*) FROM readings_seen") == [(3,)]
    finally:
        await reopened.close()
