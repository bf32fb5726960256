"""The bridge's spool: duplicates ignored, due windows, removal after the sink, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from campus_energy.adapters.spool import DeadLetter, Spool
from campus_energy.core.windows import IncomingReading, contributions

W = 300_000
T0 = 1_764_230_400_000  # a window boundary


def reading(seq: int, ts_ms: int, start_ms: int | None) -> IncomingReading:
    return IncomingReading("m1", ts_ms, seq, 1.0, start_ms, 1000.0, building="ECE", floor="2")


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
    assert {c.seq for c in items} == {1, 2} and meta == {"m1": ("ECE", "2")}
    await spool.remove(items)
    assert await spool.due(None, W, 10) == [("m1", T0 + W)]


async def test_dead_letters_keep_their_bytes_and_expire(spool: Spool) -> None:
    await spool.add([], [], [DeadLetter(1_000, "t", b"\xff\x00raw", "not-json", "bad")])
    await spool.add([], [], [DeadLetter(9_000, "t", b"{}", "schema", "schema None")])
    assert await spool.dead_letter_counts() == {"not-json": 1, "schema": 1}
    assert await spool.prune_dead_letters(5_000) == 1
    assert await spool.dead_letter_counts() == {"schema": 1}
