"""`WindowSource.scope_hours` against every store: quarter-hour energies equal to the windows'.

Real readings of meters with 60 s, 300 s and 900 s windows are cut into window
deltas (`core.windows.contributions` and `group`) and merged through the real
sinks (a temp SQLite file, a throw-away PostgreSQL schema, the Firestore
emulator), in UTC, in Asia/Kolkata (local hours start at :30 UTC) and in
Europe/Berlin across the autumn change (the local hour 02:00 comes twice: two
hours here). Then windows are rewritten — readings redelivered, late readings
merged in, documents replaced and deleted the way reconcile does — and after
each step every quarter of every hour a source answers is compared with a sum
made here from the windows written: the local hour and quarter of each window
worked out from the zone's offset, the signed sum over the scope's meters.
A store whose rollups have the previous layout gains its quarters when a sink of
this version opens it.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support.scope_stores import KINDS, Store, answering, sink_of, store_of

from campus_energy.backends.base import ScopeHour, WindowSource
from campus_energy.core.windows import (
    Contribution,
    IncomingReading,
    WindowDelta,
    WindowDoc,
    contributions,
    group,
    window_document,
)
from campus_energy.errors import SourceError

HOUR_MS = 3_600_000
QUARTER_MS = 900_000
WINDOW_S = {"main": 60, "sub": 300, "aux": 900}  # the scope's meters
READING_S = {"main": 10, "sub": 25, "aux": 40}  # readings straddle window boundaries
FILLERS = [f"other-{n:02d}" for n in range(20)]  # the rest of the campus, one window an hour
EVERY_METER = [*WINDOW_S, *FILLERS]
WRITTEN_MS = 1_790_000_000_000  # updated_at of the first writes (2026-09-21)
SPAN_HOURS = 5

# (zone, first reading): five hours of readings across a local midnight; Berlin's across the
# end of summer time (2026-10-25 01:00Z: 03:00 CEST becomes 02:00 CET).
ZONES = {
    "UTC": "2026-03-10T22:00:00",
    "Asia/Kolkata": "2026-03-10T17:00:00",
    "Europe/Berlin": "2026-10-24T22:00:00",
}

# Scopes: a meter; a remainder (main − sub); meters of which one never reports; the campus.
SCOPES: list[dict[str, float]] = [
    {"main": 1.0},
    {"main": 1.0, "sub": -1.0},
    {"sub": 1.0, "aux": 1.0, "ghost": 1.0},
    {meter: 1.0 for meter in EVERY_METER},
]


def utc_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# --- what the windows hold, and what a scope's hours must be -------------------------------------


@dataclass
class Books:
    """Every window written, as (energy, covered seconds), by (meter, window start)."""

    windows: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    seqs: dict[tuple[str, int], set[int]] = field(default_factory=dict)

    def merged(self, deltas: list[WindowDelta]) -> None:
        """What merging `deltas` adds: each reading's share once, however often delivered."""
        for d in deltas:
            key = (d.meter_id, d.window_start_ms)
            held = self.seqs.setdefault(key, set())
            energy, covered = self.windows.get(key, (0.0, 0.0))
            for c in d.items:
                if c.seq not in held:
                    held.add(c.seq)
                    energy += c.energy_wh
                    covered += c.covered_s
            self.windows[key] = (energy, covered)

    def replaced(self, docs: list[WindowDoc]) -> None:
        for doc in docs:
            acc = doc.accumulator
            self.windows[(doc.meter_id, doc.window_start_ms)] = (acc.energy_wh, acc.covered_s)

    def deleted(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            del self.windows[key]


def local_hour(ms: int, zone: ZoneInfo) -> int:
    """The start of the local clock hour holding `ms`: the local time's minutes and seconds
    before it (by the zone's offset at that instant)."""
    offset = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    local_ms = ms + round(offset.total_seconds() * 1000)
    return ms - local_ms % HOUR_MS


def expected_hours(
    books: Books, zone: ZoneInfo, start_ms: int, end_ms: int, terms: Mapping[str, float]
) -> list[tuple[int, list[float], float, int]]:
    """(hour, quarters, least covered, members) per hour a member has a window in."""
    quarters: dict[int, list[float]] = {}
    covered: dict[int, dict[str, float]] = {}
    for (meter, start), (energy, seconds) in books.windows.items():
        if meter not in terms:
            continue
        hour = local_hour(start, zone)
        if not start_ms <= hour < end_ms:
            continue
        quarter = (start - hour) // QUARTER_MS
        assert 0 <= quarter < 4 and start + WINDOW_S.get(meter, 300) * 1000 <= hour + HOUR_MS
        quarters.setdefault(hour, [0.0] * 4)[quarter] += terms[meter] * energy
        by_meter = covered.setdefault(hour, {})
        by_meter[meter] = by_meter.get(meter, 0.0) + seconds
    return [
        (hour, quarters[hour], min(covered[hour].values()), len(covered[hour]))
        for hour in sorted(quarters)
    ]


def magnitude(books: Books, zone: ZoneInfo, terms: Mapping[str, float]) -> dict[int, float]:
    """Per hour, the sum of |weight × energy| (what a rounding error is measured against)."""
    found: dict[int, float] = {}
    for (meter, start), (energy, _) in books.windows.items():
        if meter in terms:
            hour = local_hour(start, zone)
            found[hour] = found.get(hour, 0.0) + abs(terms[meter] * energy)
    return found


def assert_scope_hours(
    got: list[ScopeHour],
    books: Books,
    zone: ZoneInfo,
    start_ms: int,
    end_ms: int,
    terms: Mapping[str, float],
) -> None:
    expected = expected_hours(books, zone, start_ms, end_ms, terms)
    sizes = magnitude(books, zone, terms)
    assert [h.hour_ms for h in got] == [e[0] for e in expected], terms
    for hour, (_, quarters, least, members) in zip(got, expected, strict=True):
        tolerance = 1e-9 * max(1.0, sizes[hour.hour_ms])
        for i in range(4):
            assert hour.quarters_wh[i] == pytest.approx(quarters[i], rel=1e-9, abs=tolerance), (
                hour,
                i,
                quarters,
                terms,
            )
        assert hour.min_covered_s == pytest.approx(least, rel=1e-9, abs=1e-9), (hour, terms)
        assert hour.members == members, (hour, terms)
        assert isinstance(hour.quarters_wh, tuple) and len(hour.quarters_wh) == 4


def check_every_scope(source: WindowSource, books: Books, zone: ZoneInfo, t0: int) -> None:
    """Every scope over the whole span, over a span that cuts hours, and over nothing."""
    ranges = [
        (t0 - 2 * HOUR_MS, t0 + (SPAN_HOURS + 2) * HOUR_MS),
        (t0 + 90 * 60_000 + 1, t0 + 210 * 60_000),
        (t0 + HOUR_MS, t0 + HOUR_MS),
    ]
    for terms in SCOPES:
        for start_ms, end_ms in ranges:
            got = source.scope_hours(start_ms, end_ms, terms)
            assert_scope_hours(got, books, zone, start_ms, end_ms, terms)
    assert source.scope_hours(*ranges[0], {}) == []
    assert source.scope_hours(*ranges[0], {"ghost": 1.0}) == []


# --- readings, cut into windows ------------------------------------------------------------------


def readings(meter: str, t0: int, rng: random.Random) -> list[IncomingReading]:
    """A meter's readings over the span, each integrating the energy since the one before.

    `sub` is off for two hours and then restarts (its first reading integrates nothing), so
    no window of it lies in a local hour of the middle of the span.
    """
    step_ms = READING_S[meter] * 1000
    gap = range(t0 + 105 * 60_000, t0 + 225 * 60_000) if meter == "sub" else range(0)
    found: list[IncomingReading] = []
    previous: int | None = None
    ts = t0 + 3_700  # off the window grid
    seq = 0
    while ts < t0 + SPAN_HOURS * HOUR_MS:
        if ts in gap:
            previous = None
            ts += step_ms
            continue
        seq += 1
        power = rng.uniform(200.0, 4000.0)
        energy = 0.0 if previous is None else power * (ts - previous) / 3_600_000
        found.append(IncomingReading(meter, ts, seq, energy, previous, power_w=power))
        previous = ts
        ts += step_ms
    return found


def filler_deltas(t0: int, rng: random.Random) -> list[WindowDelta]:
    """The other meters: one 300 s window each local-ish hour (a campus around the scope)."""
    found = []
    for meter in FILLERS:
        for hour in range(SPAN_HOURS):
            start = t0 + hour * HOUR_MS + rng.randrange(12) * 300_000
            energy = rng.uniform(1.0, 90.0)
            item = Contribution(meter, start, hour + 1, energy, 300.0, True, power_w=energy * 12)
            found.append(WindowDelta(meter, start, 300, (item,), "B", "1"))
    return found


def scope_deltas(t0: int, rng: random.Random) -> tuple[list[WindowDelta], list[WindowDelta]]:
    """The scope meters' windows: (written first, late readings of some written windows)."""
    first: list[WindowDelta] = []
    late: list[WindowDelta] = []
    for meter, window_s in WINDOW_S.items():
        found = readings(meter, t0, rng)
        held_back = {r.seq for r in found if r.seq % 17 == 5}  # arrive late
        on_time = [
            c for r in found if r.seq not in held_back for c in contributions(r, window_s * 1000)
        ]
        later = [c for r in found if r.seq in held_back for c in contributions(r, window_s * 1000)]
        meta = {meter: ("B", "0")}
        first += group(on_time, window_s, meta)
        late += group(later, window_s, meta)
    return first, late


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("zone_name", list(ZONES))
@pytest.mark.parametrize("kind", KINDS)
async def test_quarters_are_the_windows_through_merges_rewrites_replacements_and_deletions(
    kind: str, zone_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    zone = ZoneInfo(zone_name)
    t0 = utc_ms(ZONES[zone_name])
    rng = random.Random(f"{kind}-{zone_name}")
    first, late = scope_deltas(t0, rng)
    books = Books()
    async with store_of(kind, zone, tmp_path, request) as store:
        # written in batches as a bridge flushes them, the campus's meters with them
        written = first + filler_deltas(t0, rng)
        for i in range(0, len(written), 400):
            await store.sink.merge(written[i : i + 400], WRITTEN_MS + i)
        books.merged(written)
        with answering(store) as source:
            check_every_scope(source, books, zone, t0)
            hours = {h.hour_ms for h in source.scope_hours(0, 2**42, {"main": 1.0})}
            sub_hours = {h.hour_ms for h in source.scope_hours(0, 2**42, {"sub": 1.0})}
        assert len(hours) >= SPAN_HOURS and len(sub_hours) < len(hours)  # sub missing an hour
        if zone_name == "Asia/Kolkata":
            assert {h % HOUR_MS for h in hours} == {HOUR_MS // 2}
        if zone_name == "Europe/Berlin":
            # 02:00 CEST (00:00Z) and 02:00 CET (01:00Z): one local label, two hours
            assert {utc_ms("2026-10-25T00:00:00"), utc_ms("2026-10-25T01:00:00")} <= hours

        # a source kept open sees what follows as rewrites of what it has read (Firestore:
        # its index takes each rewritten window in place of the old one)
        with answering(store) as kept:
            kept.scope_hours(0, 1, {"main": 1.0})

            # redelivered readings change nothing; late readings add to written windows
            redelivered = [d for d in first if d.window_start_ms % (7 * 60_000) == 0]
            await store.sink.merge(redelivered, WRITTEN_MS + HOUR_MS)
            await store.sink.merge(late, WRITTEN_MS + 2 * HOUR_MS)
            books.merged(redelivered)
            books.merged(late)
            rewritten = {(d.meter_id, d.window_start_ms) for d in late}
            assert rewritten & {(d.meter_id, d.window_start_ms) for d in first}
            check_every_scope(kept, books, zone, t0)

            # reconcile's replacements: aux's windows of the second hour with other energies,
            # and a window of sub in the hour it has none
            held = await store.sink.windows(t0 + HOUR_MS, t0 + 2 * HOUR_MS, ["aux"])
            assert held
            replacements = [halved(doc) for doc in held]
            missing_at = t0 + 160 * 60_000
            ghost = Contribution("sub", missing_at, 10**6, 12.5, 45.0, True, power_w=1000.0)
            replacements.append(
                window_document(
                    WindowDelta("sub", missing_at, 300, (ghost,), "B", "0"), None, WRITTEN_MS
                )
            )
            await store.sink.replace(replacements, WRITTEN_MS + 3 * HOUR_MS)
            books.replaced(replacements)
            check_every_scope(kept, books, zone, t0)

        # reconcile's deletions: every window of aux in the fourth hour and a few of main's
        doomed = [
            key
            for key in books.windows
            if (key[0] == "aux" and t0 + 3 * HOUR_MS <= key[1] < t0 + 4 * HOUR_MS)
            or (key[0] == "main" and key[1] % (11 * 60_000) == 0)
        ]
        assert await store.sink.delete(doomed, WRITTEN_MS + 4 * HOUR_MS) == len(doomed)
        books.deleted(doomed)
        # (a running Firestore source sees deletions only when it reads everything again)
        with answering(store) as source:
            check_every_scope(source, books, zone, t0)
        stored = await store.sink.windows(t0 - HOUR_MS, t0 + (SPAN_HOURS + 1) * HOUR_MS, None)
        assert {(d.meter_id, d.window_start_ms) for d in stored} == set(books.windows)


def halved(doc: WindowDoc) -> WindowDoc:
    acc = dataclasses.replace(doc.accumulator, energy_wh=doc.accumulator.energy_wh / 2)
    return dataclasses.replace(doc, total_energy_wh=acc.energy_wh, accumulator=acc)


# --- a store of the previous rollup layout -------------------------------------------------------

OLD_HOURLY = """
CREATE TABLE rollup_hourly (
    hour_ms INTEGER NOT NULL,
    meter_id TEXT NOT NULL,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, meter_id)
) WITHOUT ROWID
"""


def to_previous_layout(store: Store, zone: ZoneInfo) -> None:
    """Make the store's hourly rollups what layout 3 wrote: no quarters, no meter index."""
    if store.kind == "sqlite":
        conn = sqlite3.connect(store.where["path"])
        try:
            with conn:
                conn.execute(
                    "CREATE TABLE old_hourly AS SELECT hour_ms, meter_id, energy_wh, covered_s, "
                    "readings, windows FROM rollup_hourly"
                )
                conn.execute("DROP TABLE rollup_hourly")
                conn.execute(OLD_HOURLY)
                conn.execute("INSERT INTO rollup_hourly SELECT * FROM old_hourly")
                conn.execute("DROP TABLE old_hourly")
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'rollup_zone'", (f"{zone.key}|3",)
                )
        finally:
            conn.close()
        return
    import psycopg

    schema = store.where["schema"]
    with psycopg.connect(store.where["dsn"], autocommit=True) as pg:
        pg.execute(f"DROP INDEX {schema}.rollup_hourly_by_meter")
        pg.execute(
            f"ALTER TABLE {schema}.rollup_hourly DROP COLUMN q0_wh, DROP COLUMN q1_wh, "
            "DROP COLUMN q2_wh, DROP COLUMN q3_wh"
        )
        pg.execute(
            f"UPDATE {schema}.sink_meta SET value = %s WHERE key = 'rollup_zone'",
            (f"{zone.key}|3",),
        )


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "Asia/Kolkata"])
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_store_of_the_previous_layout_gains_its_quarters_when_a_sink_opens_it(
    kind: str, zone_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    zone = ZoneInfo(zone_name)
    t0 = utc_ms(ZONES[zone_name])
    rng = random.Random(zone_name)
    first, late = scope_deltas(t0, rng)
    written = first + filler_deltas(t0, rng)
    books = Books()
    async with store_of(kind, zone, tmp_path, request) as store:
        # a merge holds one delta per window, as the bridge groups them: late ones come after
        await store.sink.merge(written, WRITTEN_MS)
        await store.sink.merge(late, WRITTEN_MS + 1)
        books.merged(written + late)
    to_previous_layout(store, zone)
    with answering(store) as source, pytest.raises(SourceError, match="q0_wh"):
        source.scope_hours(0, 2**42, {"main": 1.0})  # what the old layout cannot answer

    reopened = sink_of(kind, store.where, zone)
    try:
        assert len(await reopened.windows(0, 2**42, None)) == len(books.windows)  # opens it
        # and it is written on in the new layout
        more = Contribution("aux", t0 + 45 * 60_000, 10**6, 7.25, 30.0, True, power_w=870.0)
        extra = [WindowDelta("aux", t0 + 45 * 60_000, 900, (more,), "B", "0")]
        await reopened.merge(extra, WRITTEN_MS + HOUR_MS)
        books.merged(extra)
    finally:
        await reopened.close()
    with answering(store) as source:
        check_every_scope(source, books, zone, t0)


def test_the_index_takes_a_rewritten_window_out_of_its_quarter() -> None:
    """The Firestore source's index: a rewrite replaces the window's share of its quarter, and
    a window written again in another document changes nothing twice."""
    from campus_energy.core.window_index import WindowEntry, WindowIndex

    zone = ZoneInfo("Asia/Kolkata")
    hour = utc_ms("2026-03-10T17:30:00")

    def entry(meter: str, start: int, energy: float) -> WindowEntry:
        return WindowEntry(meter, "B", "0", start, energy, 60.0, 1, None, 1.0)

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    index = WindowIndex(zone)
    index.load("a", at("2026-03-11T00:00:00"), [entry("m", hour + 14 * 60_000, 5.0)])
    index.load("b", at("2026-03-11T00:00:00"), [entry("m", hour + 15 * 60_000, 7.0)])
    index.load("c", at("2026-03-11T00:00:00"), [entry("n", hour + 59 * 60_000, 3.0)])
    assert index.scope_hours(hour, hour + 1, {"m": 1.0, "n": -1.0}) == [
        ScopeHour(hour, (5.0, 7.0, 0.0, -3.0), 60.0, 2)
    ]
    outcome = index.update("a", at("2026-03-11T01:00:00"), [entry("m", hour + 14 * 60_000, 2.0)])
    assert outcome == "applied"
    assert index.scope_hours(hour, hour + 1, {"m": 1.0}) == [
        ScopeHour(hour, (2.0, 7.0, 0.0, 0.0), 120.0, 1)
    ]
    assert index.scope_hours(hour + 1, hour + HOUR_MS, {"m": 1.0}) == []
    assert index.scope_hours(hour, hour + 1, {}) == []
