"""A full disk: the store keeps the newest readings by deleting the oldest the broker has."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from campus_energy.core.readings import Reading
from campus_energy.errors import StoreFullError
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

METERS = [MeterRecord("m-1"), MeterRecord("m-2")]
PER_METER = 300


def reading(meter_id: str, seq: int) -> Reading:
    values = {"power_w": 100.0 + seq, "voltage_v": 230.0, "extra_field_w": 1.5 * seq}
    return Reading(meter_id, 1_000 * seq, seq, 1_000, 1_000 * seq, values)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReadingStore]:
    s = ReadingStore(tmp_path / "store.db")
    try:
        await s.register(METERS)
        for meter in METERS:
            await s.insert_many(reading(meter.meter_id, n) for n in range(1, PER_METER + 1))
        yield s
    finally:
        await s.close()


async def seqs(store: ReadingStore, meter_id: str) -> list[int]:
    rows = await store.query(
        "SELECT seq FROM readings WHERE meter_id = ? ORDER BY seq", (meter_id,)
    )
    return [r[0] for r in rows]


async def test_a_full_store_deletes_the_oldest_published_readings_to_take_the_newest(
    store: ReadingStore,
) -> None:
    await store.mark_published([reading("m-1", 200), reading("m-2", 100)])
    await store.limit_growth(0)
    taken = 0
    while True:  # fill the last free space of the file
        seq = PER_METER + 1 + taken
        try:
            await store.commit(Cycle(readings=[reading("m-1", seq), reading("m-2", seq)]))
        except StoreFullError:
            break
        taken += 1
    newest = PER_METER + 1 + taken
    deleted = await store.commit_making_room(
        Cycle(readings=[reading("m-1", newest), reading("m-2", newest)])
    )
    assert deleted > 0
    one, two = await seqs(store, "m-1"), await seqs(store, "m-2")
    assert one[-1] == two[-1] == newest  # the newest are kept
    assert len(one) + len(two) == 2 * newest - deleted
    # only readings older than each meter's last published one went, oldest first
    assert one[0] > 1 and one == list(range(one[0], newest + 1)) and one[0] <= 200
    assert two == list(range(two[0], newest + 1)) and two[0] <= 100
    assert not await store.has_grown()  # still full
    await store.limit_growth(None)
    for seq in range(newest + 1, newest + 200):
        await store.commit(Cycle(readings=[reading("m-1", seq), reading("m-2", seq)]))
    assert await store.has_grown()
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


async def test_nothing_published_means_nothing_deleted_and_the_cycle_refused(
    store: ReadingStore,
) -> None:
    await store.limit_growth(0)
    seq = PER_METER + 1
    with pytest.raises(StoreFullError, match="every older reading waits for the broker"):
        while True:
            await store.commit_making_room(Cycle(readings=[reading("m-1", seq)]))
            seq += 1
    assert await seqs(store, "m-2") == list(range(1, PER_METER + 1))
    assert (await seqs(store, "m-1"))[:PER_METER] == list(range(1, PER_METER + 1))
