"""What the alerts service reads from the window store (`alerts.stored.StoreReader`), against a
real SQLite store of known windows (tests/support/known_windows.py: Asia/Kolkata, three meters
with a window every 20 minutes for 30 days) and sums computed here from the windows themselves:
each meter's latest window, the settled windows' coverage, a scope's hours and the month's
peak interval. Each answer is asked of the store again only when it can have changed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from tests.support.known_windows import (
    NOW_MS,
    REPORTING,
    WINDOW_S,
    ZONE,
    FixtureWindow,
    config_for,
    windows,
    write,
)

from campus_energy.alerts.stored import StoreReader
from campus_energy.backends.sqlite.source import SqliteSource

HOUR_MS = 3_600_000
MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FixtureWindow]]:
    folder = tmp_path_factory.mktemp("alerts-store")
    items = windows()
    write(config_for(folder), items)
    return folder / "windows.db", items


def reader(path: Path) -> StoreReader:
    return StoreReader(SqliteSource(path), ZONE, WINDOW_S, grace_s=60)


def test_the_store_answers_equal_the_windows(known: tuple[Path, list[FixtureWindow]]) -> None:
    path, items = known
    store = reader(path)
    try:
        latest = asyncio.run(store.last_window_starts(NOW_MS))
        coverage = asyncio.run(store.coverage(REPORTING, NOW_MS, 3))
        terms = {"ece-1": 1.0, "ece-2": 1.0, "lib-1": -1.0}
        hours = asyncio.run(store.hours("mixed", terms, NOW_MS, 4))
        ece = {"ece-1": 1.0, "ece-2": 1.0}
        peak = asyncio.run(store.month_peak_kw("mixed", ece, 15, NOW_MS))
        earlier = asyncio.run(store.earlier_peak_kw("mixed", ece, 30, 2, NOW_MS))
    finally:
        store.close()
        store.source.close()
    # latest: the window of 07:50Z for every meter
    assert latest == {m: NOW_MS - 10 * MINUTE_MS for m in REPORTING}
    # settled by now (08:00Z) with grace 60 s and the 60 s margin: windows before 07:55Z; the
    # last 3 + 2 starts are 07:30..07:50, of which 07:40 (the 20-minute grid) and 07:50 exist
    assert coverage == {
        m: ((NOW_MS - 20 * MINUTE_MS, 1.0), (NOW_MS - 10 * MINUTE_MS, 1.0)) for m in REPORTING
    }
    # hours: the last settled local hour is 12:00-13:00 IST (06:30Z), four weeks and a day back
    last_hour = NOW_MS - 90 * MINUTE_MS
    assert hours[-1].start_ms == last_hour
    assert hours[0].start_ms >= last_hour - (4 * 7 + 1) * 86_400_000
    by_hour: dict[int, float] = defaultdict(float)
    covered: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(terms, 0.0))
    for w in items:
        hour = w.start_ms - (w.start_ms - last_hour) % HOUR_MS
        by_hour[hour] += terms[w.meter_id] * w.energy_wh
        covered[hour][w.meter_id] += WINDOW_S
    assert [(h.start_ms, round(h.energy_wh, 6)) for h in hours] == [
        (h, round(by_hour[h], 6)) for h in sorted(by_hour) if hours[0].start_ms <= h <= last_hour
    ]
    # the least covered member's share of the hour: three 300 s windows (four at the midnight)
    assert [h.coverage for h in hours] == [min(covered[h.start_ms].values()) / 3600 for h in hours]
    # the month's highest quarter hour of ece-1 + ece-2 since 1 November 00:00 IST
    month_start = round(datetime(2026, 11, 1, tzinfo=ZONE).timestamp() * 1000)
    quarters: dict[int, float] = defaultdict(float)
    for w in items:
        if w.meter_id in ("ece-1", "ece-2") and w.start_ms >= month_start:
            quarters[w.start_ms - (w.start_ms - month_start) % (15 * MINUTE_MS)] += w.energy_wh
    assert peak == pytest.approx(max(quarters.values()) / 1000 * 4, rel=1e-12)
    # the ratchet's look back: the highest local half hour of the two months before November
    # (only October's last days are in the store)
    halves: dict[int, float] = defaultdict(float)
    for w in items:
        if w.meter_id in ("ece-1", "ece-2") and w.start_ms < month_start:
            halves[w.start_ms - (w.start_ms - month_start) % (30 * MINUTE_MS)] += w.energy_wh
    assert earlier == pytest.approx(max(halves.values()) / 1000 * 2, rel=1e-12)


def test_each_answer_is_asked_again_only_when_it_can_have_changed(
    known: tuple[Path, list[FixtureWindow]],
) -> None:
    path, _ = known
    store = reader(path)
    try:
        terms = {"ece-1": 1.0}
        first = asyncio.run(store.hours("ece-1", terms, NOW_MS, 4))
        # a minute later the same hour is the last settled: the same answer, not asked again
        assert asyncio.run(store.hours("ece-1", terms, NOW_MS + MINUTE_MS, 4)) is first
        # an hour later another hour has settled: asked again, one hour more at the end
        later = asyncio.run(store.hours("ece-1", terms, NOW_MS + HOUR_MS, 4))
        assert later is not first and later[-1].start_ms == first[-1].start_ms + HOUR_MS
        seen = asyncio.run(store.coverage(["ece-1"], NOW_MS, 3))
        assert asyncio.run(store.coverage(["ece-1"], NOW_MS + 30_000, 3)) is seen
        assert asyncio.run(store.coverage(["ece-1"], NOW_MS + 5 * MINUTE_MS, 3)) is not seen
    finally:
        store.close()
        store.source.close()


def test_rules_asking_for_more_windows_or_weeks_get_them(
    known: tuple[Path, list[FixtureWindow]],
) -> None:
    """Two coverage-low rules on the same meter (3 and 10 windows) and an after-hours rule
    beside a baseline rule (4 and 6 weeks): each gets what it asked for, whichever asks first."""
    path, _ = known
    store = reader(path)
    try:
        few = asyncio.run(store.coverage(["ece-1"], NOW_MS, 3))
        many = asyncio.run(store.coverage(["ece-1"], NOW_MS, 10))
        four = asyncio.run(store.hours("ECE", {"ece-1": 1.0}, NOW_MS, 4))
        six = asyncio.run(store.hours("ECE", {"ece-1": 1.0}, NOW_MS, 6))
        assert asyncio.run(store.coverage(["ece-1"], NOW_MS, 3)) is few
        assert asyncio.run(store.hours("ECE", {"ece-1": 1.0}, NOW_MS, 4)) is four
    finally:
        store.close()
        store.source.close()
    # (one window every 20 minutes: 5 starts hold 2 windows, 12 starts hold 4)
    assert [len(few["ece-1"]), len(many["ece-1"])] == [2, 4]
    assert six[-1].start_ms == four[-1].start_ms and len(six) > len(four)
