"""Each meter's daily rollup keeps the day's highest 15-, 30- and 60-minute interval, and a
one-meter scope's monthly peaks are read from them: both stay exact on every write path.

Windows are merged through the real sinks (a temp SQLite file, a throw-away PostgreSQL
schema) on days in Europe/Berlin around the end of summer time (2026-10-25 has 25 hours,
its 02:00 twice) and in Asia/Kolkata (hours and days start at :30 UTC), with energies of
a few dyadic values, so quarters, halves and hours tie exactly and only "the earliest
wins" picks a peak. After every step (merges in batches, a redelivery, readings that raise
a quarter, corrections that lower the quarter holding the day's peak, `replace`,
`delete`, an old-layout store rebuilt on open) the stored peaks of every (meter, day)
equal `core.peaks.day_peaks` over the meter's hours of that local day (as `scope_hours`
answers them), and `scope_peaks` of one meter (read from the days) equals that of the
same meter beside a meter with no rows (read from the hours, the path the daily one must
match) for weights 1, 0.5 and 2, every interval, and both equal `core.peaks.peaks_of`.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support.scope_stores import Store, answering, sink_of, store_of

from campus_energy.core.days import local_day
from campus_energy.core.peaks import DayPeaks, day_peaks, peaks_from, peaks_of
from campus_energy.core.windows import Contribution, WindowDelta, WindowDoc

HOUR_MS = 3_600_000
WRITTEN_MS = 1_790_000_000_000
METERS = {"m": 300, "n": 900}  # meter -> window length (s)
ENERGIES = (1.0, 2.0, 3.0, 0.5)
# zone -> the local days with data, and the local months bounding them
DAYS = {
    "Europe/Berlin": [(2026, 9, 30), (2026, 10, 24), (2026, 10, 25), (2026, 10, 26), (2026, 11, 1)],
    "Asia/Kolkata": [(2026, 2, 28), (2026, 3, 1), (2026, 3, 15), (2026, 4, 30)],
}
MONTHS = {
    "Europe/Berlin": [(2026, m, 1) for m in (8, 9, 10, 11, 12)],
    "Asia/Kolkata": [(2026, m, 1) for m in (1, 2, 3, 4, 5)],
}
KINDS = ["sqlite", "postgres"]
ZONES = list(DAYS)


def ms_of(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def bounds_of(zone: ZoneInfo) -> list[int]:
    return [ms_of(datetime(*day, tzinfo=zone)) for day in MONTHS[zone.key]]


def delta(meter: str, start: int, energy: float, seq: int) -> WindowDelta:
    window_s = METERS[meter]
    item = Contribution(meter, start, seq, energy, float(window_s), True, power_w=energy)
    return WindowDelta(meter, start, window_s, (item,), "B", "0")


def deltas(zone: ZoneInfo, rng: random.Random) -> list[WindowDelta]:
    """Every window of every hour of the days with data, for both meters (a few missing)."""
    found = []
    for day in DAYS[zone.key]:
        start = ms_of(datetime(*day, tzinfo=zone))
        end = ms_of(datetime.fromordinal(datetime(*day).toordinal() + 1).replace(tzinfo=zone))
        for meter, window_s in METERS.items():
            for k, at in enumerate(range(start, end, window_s * 1000)):
                if rng.random() < 0.9:
                    found.append(delta(meter, at, rng.choice(ENERGIES), at // 1000 + k))
    return found


# --- what must hold --------------------------------------------------------------------------


def stored_peaks(store: Store) -> dict[tuple[str, str], DayPeaks]:
    """The peaks each daily rollup row holds, by (meter, day)."""
    if store.kind == "sqlite":
        conn = sqlite3.connect(store.where["path"])
        try:
            rows = conn.execute(
                "SELECT meter_id, day, peak15_wh, peak15_ms, peak30_wh, peak30_ms, peak60_wh, "
                "peak60_ms FROM rollup_daily"
            ).fetchall()
        finally:
            conn.close()
        return {(m, d): peaks_from(values) for m, d, *values in rows}
    import psycopg

    with psycopg.connect(store.where["dsn"]) as pg:
        rows = pg.execute(
            "SELECT meter_id, day, peak15_wh, peak15_start, peak30_wh, peak30_start, peak60_wh, "
            f"peak60_start FROM {store.where['schema']}.rollup_daily"
        ).fetchall()
    return {
        (m, d.isoformat()): peaks_from(
            [v if k % 2 == 0 else ms_of(v) for k, v in enumerate(values)]
        )
        for m, d, *values in rows
    }


def check(store: Store, zone: ZoneInfo) -> dict[tuple[str, str], DayPeaks]:
    """The stored peaks are the hours' and one meter's peaks are the hourly path's; the
    stored peaks, for the steps to look at."""
    bounds = bounds_of(zone)
    expected: dict[tuple[str, str], DayPeaks] = {}
    with answering(store) as source:
        for meter in METERS:
            hours = source.scope_hours(0, 2**42, {meter: 1.0})
            by_day: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
            for hour in hours:
                by_day.setdefault(local_day(hour.hour_ms, zone), []).append(
                    (hour.hour_ms, hour.quarters_wh)
                )
            expected |= {(meter, day): day_peaks(found) for day, found in by_day.items()}
            for weight in (1.0, 0.5, 2.0):
                scaled = source.scope_hours(0, 2**42, {meter: weight})
                for minutes in (15, 30, 60):
                    daily = source.scope_peaks(bounds, {meter: weight}, minutes, 1)
                    hourly = source.scope_peaks(bounds, {meter: weight, "ghost": 1.0}, minutes, 1)
                    assert daily == hourly, (meter, weight, minutes)
                    assert daily == peaks_of(scaled, bounds, minutes, 1)
    stored = stored_peaks(store)
    assert stored == expected
    return stored


# --- the steps -------------------------------------------------------------------------------


def corrections(
    store_peak: tuple[float, int], meter: str, minutes: int, by: float, seq: int
) -> list[WindowDelta]:
    """Readings that add `by` (negative: take away) to every window of the interval."""
    _, start = store_peak
    window_ms = METERS[meter] * 1000
    return [
        delta(meter, at, by, seq + k)
        for k, at in enumerate(range(start, start + minutes * 60_000, window_ms))
    ]


def halved(doc: WindowDoc) -> WindowDoc:
    acc = dataclasses.replace(doc.accumulator, energy_wh=doc.accumulator.energy_wh / 2)
    return dataclasses.replace(doc, total_energy_wh=acc.energy_wh, accumulator=acc)


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("kind", KINDS)
async def test_daily_peaks_stay_exact_through_every_write(
    kind: str, zone_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    written = deltas(zone, rng)
    rng.shuffle(written)
    long_day = "-".join(f"{n:02d}" for n in DAYS[zone_name][2])  # Berlin: the 25-hour day
    async with store_of(kind, zone, tmp_path, request) as store:
        # merges in batches, out of order, one delta per window in a batch
        third = len(written) // 3
        for n, batch in enumerate(
            (written[:third], written[third : 2 * third], written[2 * third :])
        ):
            await store.sink.merge(batch, WRITTEN_MS + n)
            check(store, zone)
        # redelivered readings change nothing
        await store.sink.merge(written[:50], WRITTEN_MS + 10)
        before = check(store, zone)

        # readings that raise the day's 12:00 half hour above its 30-minute peak
        assert before[("m", long_day)][30][0] < 30.0
        raised_at = (0.0, ms_of(datetime(*DAYS[zone_name][2], 12, tzinfo=zone)))
        await store.sink.merge(corrections(raised_at, "m", 30, 5.0, 10**7), WRITTEN_MS + 11)
        after = check(store, zone)
        assert after[("m", long_day)][30][1] == raised_at[1]

        # corrections that lower the quarter, the half and the hour holding the day's peaks:
        # each peak moves to the next highest
        for n, minutes in enumerate((15, 30, 60)):
            for meter in METERS:
                peak = after[(meter, long_day)][minutes]
                lowered = corrections(peak, meter, minutes, -2.0, 10**8 + 1000 * n)
                await store.sink.merge(lowered, WRITTEN_MS + 20 + n)
                after = check(store, zone)
                assert after[(meter, long_day)][minutes] != peak

        # replacing windows (reconcile): the long day's windows of m halved, its peak too
        docs = await store.sink.windows(0, 2**42, ["m"])
        chosen = [halved(d) for d in docs if local_day(d.window_start_ms, zone) == long_day]
        peak = after[("m", long_day)][15]
        await store.sink.replace(chosen[: len(chosen) // 2], WRITTEN_MS + 30)
        after = check(store, zone)
        await store.sink.replace(
            [halved(d) for d in docs if peak[1] <= d.window_start_ms < peak[1] + 900_000],
            WRITTEN_MS + 31,
        )
        after = check(store, zone)
        assert after[("m", long_day)][15] != peak

        # deleting windows (reconcile): the hour holding n's 60-minute peak of each day, and
        # every window of a day (its row goes)
        keys = [
            ("n", start)
            for (meter, _), peaks in after.items()
            if meter == "n"
            for start in range(peaks[60][1], peaks[60][1] + HOUR_MS, 900_000)
        ]
        held = {(d.meter_id, d.window_start_ms) for d in await store.sink.windows(0, 2**42, None)}
        await store.sink.delete([k for k in keys if k in held], WRITTEN_MS + 40)
        check(store, zone)
        first_day = "-".join(f"{n:02d}" for n in DAYS[zone_name][0])
        gone = [k for k in held if k[0] == "m" and local_day(k[1], zone) == first_day]
        await store.sink.delete(gone, WRITTEN_MS + 41)
        assert ("m", first_day) not in check(store, zone)


def to_layout_4(store: Store, zone: ZoneInfo) -> None:
    """Make the store's daily rollups what layout 4 wrote: no peaks."""
    columns = ["peak15_wh", "peak30_wh", "peak60_wh"]
    if store.kind == "sqlite":
        conn = sqlite3.connect(store.where["path"])
        try:
            with conn:
                for name in [*columns, *(c.replace("_wh", "_ms") for c in columns)]:
                    conn.execute(f"ALTER TABLE rollup_daily DROP COLUMN {name}")
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'rollup_zone'", (f"{zone.key}|4",)
                )
        finally:
            conn.close()
        return
    import psycopg

    schema = store.where["schema"]
    with psycopg.connect(store.where["dsn"], autocommit=True) as pg:
        for name in [*columns, *(c.replace("_wh", "_start") for c in columns)]:
            pg.execute(f"ALTER TABLE {schema}.rollup_daily DROP COLUMN {name}")
        pg.execute(
            f"UPDATE {schema}.sink_meta SET value = %s WHERE key = 'rollup_zone'",
            (f"{zone.key}|4",),
        )


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_store_of_the_previous_layout_gains_its_peaks_when_a_sink_opens_it(
    kind: str, zone_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    zone = ZoneInfo(zone_name)
    written = deltas(zone, random.Random(zone_name))
    async with store_of(kind, zone, tmp_path, request) as store:
        await store.sink.merge(written, WRITTEN_MS)
        expected = check(store, zone)
    to_layout_4(store, zone)
    with answering(store) as source:  # the old layout is read from its hours
        bounds = bounds_of(zone)
        assert source.scope_peaks(bounds, {"m": 1.0}, 15, 1) == source.scope_peaks(
            bounds, {"m": 1.0, "ghost": 1.0}, 15, 1
        )
    reopened = sink_of(kind, store.where, zone)
    try:
        assert len(await reopened.windows(0, 2**42, None)) == len(written)  # opens it
    finally:
        await reopened.close()
    assert check(store, zone) == expected


def test_a_day_of_ties_keeps_its_earliest_interval() -> None:
    """Pure: equal quarters, halves and hours on one day; the earliest start of each wins."""
    hour = ms_of(datetime(2026, 10, 25, 2, tzinfo=ZoneInfo("Europe/Berlin"), fold=1))
    hours = [(hour, (1.0, 2.0, 1.0, 2.0)), (hour - HOUR_MS, (2.0, 1.0, 2.0, 1.0))]
    assert day_peaks(hours) == {
        15: (2.0, hour - HOUR_MS),
        30: (3.0, hour - HOUR_MS),
        60: (6.0, hour - HOUR_MS),
    }
    assert datetime.fromtimestamp((hour - HOUR_MS) / 1000, UTC).hour == 0  # 02:00 CEST
