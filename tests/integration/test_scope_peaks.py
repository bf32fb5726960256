"""`WindowSource.scope_peaks` against every store: each local month's highest demand interval.

Windows are merged through the real sinks (a temp SQLite file, a throw-away PostgreSQL
schema, the Firestore emulator) over three local months in Europe/Berlin, across the
end of summer time (the local hour 02:00 of 2026-10-25 comes twice: two hours), and in
Asia/Kolkata (local hours and months start at :30 UTC). The bounds are the local month
starts from a month before the data to the end of its last month. Every answer, for 15, 30 and 60
minutes, is compared with a brute force over `scope_hours` of the same range: every
interval of every hour with enough members, its range found by walking the bounds.

Built in: spikes either side of a local month start and in both 02:00 hours, so a month
cut in UTC or a repeated hour folded into one moves a peak; `sub` misses hours in which
`main` runs high, so the remainder main − sub (every member required) peaks elsewhere,
and has no hour at all in the last month; twins whose quarters and hours tie exactly
(dyadic energies, exact in any order), so only "the earliest wins" picks their peak.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support.scope_stores import KINDS, answering, store_of

from campus_energy.backends.base import ScopePeak, WindowSource
from campus_energy.core.windows import Contribution, WindowDelta

HOUR_MS = 3_600_000
QUARTER_MS = 900_000
WRITTEN_MS = 1_790_000_000_000
FILLERS = [f"other-{n:02d}" for n in range(20)]  # so that two members are "few" in SQLite

# zone -> (first bounded month, the three months with data); the bounds run from the first
# month's start to the start of the month after the data
MONTHS = {
    "Europe/Berlin": ((2026, 8), [(2026, 9), (2026, 10), (2026, 11)]),
    "Asia/Kolkata": ((2026, 1), [(2026, 2), (2026, 3), (2026, 4)]),
}
# per zone: local hours (year, month, day, hour, fold) of main's spikes, each with the
# month index it belongs to; the later the spike in this list, the higher
SPIKES = {
    "Europe/Berlin": [
        ((2026, 10, 25, 2, 0), 2),  # 02:00 CEST (00:00Z)
        ((2026, 10, 25, 2, 1), 2),  # 02:00 CET (01:00Z): October's peak
        ((2026, 11, 1, 0, 0), 3),  # the first hour of November (31 October 23:00Z)
    ],
    "Asia/Kolkata": [
        ((2026, 2, 28, 23, 0), 1),  # the last hour of February (17:30Z)
        ((2026, 3, 1, 0, 0), 2),  # the first hour of March (18:30Z)
    ],
}
SCOPES: list[tuple[dict[str, float], int]] = [  # (terms, min_members)
    ({"main": 1.0}, 1),
    ({"main": 1.0}, 2),  # one member never makes two: nothing
    ({"main": 1.0, "sub": -1.0}, 2),  # the remainder: only hours in which both report
    ({"main": 1.0, "sub": 1.0, "ghost": 1.0}, 1),  # a sum: any hour a member reports
    ({"main": 1.0, "sub": 1.0, "ghost": 1.0}, 2),  # the hours in which main and sub report
    ({"twin-a": 1.0}, 1),
    ({"twin-a": 1.0, "twin-b": 1.0}, 2),
    ({"ghost": 1.0}, 1),  # never reported: nothing
]
INTERVALS = (15, 30, 60)


def ms_of(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def local_hour_ms(zone: ZoneInfo, year: int, month: int, day: int, hour: int, fold: int) -> int:
    return ms_of(datetime(year, month, day, hour, tzinfo=zone, fold=fold))


def month_starts(zone: ZoneInfo, first: tuple[int, int], count: int) -> list[int]:
    """The starts of `count` local months from `first`, and of the month after them."""
    year, month = first
    found = []
    for _ in range(count + 1):
        found.append(ms_of(datetime(year, month, 1, tzinfo=zone)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


# --- the windows ---------------------------------------------------------------------------------


def window(meter: str, start: int, energy: float, window_s: int, seq: int) -> WindowDelta:
    item = Contribution(meter, start, seq, energy, float(window_s), True, power_w=energy)
    return WindowDelta(meter, start, window_s, (item,), "B", "0")


def hour_windows(
    meter: str, hour: int, energies: Sequence[float | None], window_s: int
) -> list[WindowDelta]:
    """A meter's windows of one local hour, one per energy (None: no window there)."""
    step = window_s * 1000
    return [
        window(meter, hour + k * step, energy, window_s, hour // 1000 + k)
        for k, energy in enumerate(energies)
        if energy is not None
    ]


def campus(zone_name: str) -> list[WindowDelta]:
    """main (300 s windows) and sub (900 s) on five days a month at 10:00 and 19:00 local;
    sub misses a few of those hours, in which main runs higher than in any other ordinary
    hour, and in the last month reports only at 14:00, when main does not; main's spikes;
    the twins' tie in the first month; the other meters, a window now and then."""
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    _, months = MONTHS[zone_name]
    found: list[WindowDelta] = []
    for n, (year, month) in enumerate(months):
        last = n == len(months) - 1
        for day in (3, 9, 15, 21, 27):
            for local in (10, 19):
                hour = local_hour_ms(zone, year, month, day, local, 0)
                sub_missing = last or rng.random() < 0.3
                low, high = (1000.0, 1500.0) if sub_missing else (20.0, 400.0)
                main = [rng.uniform(low, high) if rng.random() < 0.85 else None for _ in range(12)]
                found += hour_windows("main", hour, main, 300)
                if not sub_missing:
                    found += hour_windows("sub", hour, [rng.uniform(10.0, 100.0)] * 4, 900)
            if last:
                hour = local_hour_ms(zone, year, month, day, 14, 0)
                found += hour_windows("sub", hour, [rng.uniform(10.0, 100.0)] * 4, 900)
        for k, meter in enumerate(FILLERS):
            hour = local_hour_ms(zone, year, month, 1 + k, 12, 0)
            found += hour_windows(meter, hour, [rng.uniform(1.0, 90.0)], 300)
    for level, (moment, index) in enumerate(SPIKES[zone_name]):
        hour = local_hour_ms(zone, *moment)
        low = 3000.0 * (level + 1)
        found += hour_windows("main", hour, [rng.uniform(low, low + 500.0) for _ in range(12)], 300)
        if index < len(months):  # (sub never reports with main in the last month)
            found += hour_windows("sub", hour, [rng.uniform(10.0, 100.0)] * 4, 900)
    found += twins(zone, months[0])
    return found


# The twins' hours in the first month: (day, local hour, twin-a's quarters); twin-b has 0.5 in
# each quarter of each. The 6th and the 12th tie (so do their quarters 1 and 3, and their
# halves): the 6th's interval wins, its second quarter for 15 minutes.
TWIN_HOURS = [
    (2, 8, (1.0, 1.0, 1.0, 1.0)),
    (6, 8, (2.5, 7.25, 2.5, 7.25)),
    (12, 8, (2.5, 7.25, 2.5, 7.25)),
    (20, 8, (3.0, 1.0, 0.25, 0.5)),
]
TWIN_PEAKS = {  # (interval, scope) -> (energy, offset of the start from the 6th 08:00)
    (15, "a"): (7.25, QUARTER_MS),
    (30, "a"): (9.75, 0),
    (60, "a"): (19.5, 0),
    (15, "a+b"): (7.75, QUARTER_MS),
    (30, "a+b"): (10.75, 0),
    (60, "a+b"): (21.5, 0),
}


def twins(zone: ZoneInfo, month: tuple[int, int]) -> list[WindowDelta]:
    found = []
    for day, local, quarters in TWIN_HOURS:
        hour = local_hour_ms(zone, *month, day, local, 0)
        found += hour_windows("twin-a", hour, quarters, 900)
        found += hour_windows("twin-b", hour, [0.5] * 4, 900)
    return found


# --- what the peaks must be ----------------------------------------------------------------------


def brute_force(
    source: WindowSource,
    bounds: Sequence[int],
    terms: Mapping[str, float],
    interval_min: int,
    min_members: int,
) -> list[tuple[int, float, int]]:
    """(index, energy, start) per range: every interval of every hour the source's
    scope_hours gives that has enough members, compared one by one."""
    parts = {15: [[0], [1], [2], [3]], 30: [[0, 1], [2, 3]], 60: [[0, 1, 2, 3]]}[interval_min]
    best: dict[int, tuple[float, int]] = {}
    for hour in source.scope_hours(bounds[0], bounds[-1], terms):
        if hour.members < min_members:
            continue
        index = next(i for i in range(len(bounds) - 1) if bounds[i] <= hour.hour_ms < bounds[i + 1])
        for quarters in parts:
            energy = 0.0
            for q in quarters:
                energy += hour.quarters_wh[q]
            start = hour.hour_ms + quarters[0] * QUARTER_MS
            held = best.get(index)
            if held is None or energy > held[0] or (energy == held[0] and start < held[1]):
                best[index] = (energy, start)
    return [(i, energy, start) for i, (energy, start) in sorted(best.items())]


def assert_peaks(
    got: list[ScopePeak], expected: list[tuple[int, float, int]], what: object
) -> None:
    assert all(isinstance(p, ScopePeak) for p in got), what
    assert [(p.index, p.start_ms) for p in got] == [(i, s) for i, _, s in expected], what
    for peak, (_, energy, _) in zip(got, expected, strict=True):
        assert peak.energy_wh == pytest.approx(energy, rel=1e-9, abs=1e-12), (what, peak)


def local_hour(ms: int, zone: ZoneInfo) -> int:
    """The start of the local clock hour holding `ms` (by the zone's offset at that instant)."""
    offset = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return ms - (ms + round(offset.total_seconds() * 1000)) % HOUR_MS


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("zone_name", list(MONTHS))
@pytest.mark.parametrize("kind", KINDS)
async def test_each_months_peak_is_the_highest_interval_of_the_hours_that_count(
    kind: str, zone_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    zone = ZoneInfo(zone_name)
    first, months = MONTHS[zone_name]
    bounds = month_starts(zone, first, len(months) + 1)  # a month before the data, and the data's
    written = campus(zone_name)
    async with store_of(kind, zone, tmp_path, request) as store:
        for i in range(0, len(written), 400):
            await store.sink.merge(written[i : i + 400], WRITTEN_MS + i)
        with answering(store) as source:
            # (SQLite reads one member's hours alone, two of 24 meters as few, three as many)
            assert len(source.meters()) == 4 + len(FILLERS)
            answers = {
                (interval, tuple(terms), need): source.scope_peaks(bounds, terms, interval, need)
                for terms, need in SCOPES
                for interval in INTERVALS
            }
            for terms, need in SCOPES:
                for interval in INTERVALS:
                    expected = brute_force(source, bounds, terms, interval, need)
                    assert_peaks(answers[interval, tuple(terms), need], expected, (terms, interval))
            both = {
                h.hour_ms
                for h in source.scope_hours(bounds[0], bounds[-1], {"main": 1.0, "sub": 1.0})
                if h.members == 2
            }
            assert source.scope_peaks(bounds[1:2], {"main": 1.0}, 15, 1) == []
            assert source.scope_peaks(bounds, {}, 60, 1) == []
            for wrong in (0, 45, 120):
                with pytest.raises(ValueError, match="15, 30 or 60"):
                    source.scope_peaks(bounds, {"main": 1.0}, wrong, 1)
            with pytest.raises(ValueError, match="ascend"):
                source.scope_peaks(bounds[::-1], {"main": 1.0}, 15, 1)

    # the month before the data is left out, main's months are the three with data, and each
    # month's highest spike is its peak: months cut at local midnight, 02:00 counted twice
    spiked = {index: moment for moment, index in SPIKES[zone_name]}
    for interval in INTERVALS:
        single = answers[interval, ("main",), 1]
        assert [p.index for p in single] == [1, 2, 3]
        for peak in single:
            if peak.index in spiked:
                assert local_hour(peak.start_ms, zone) == local_hour_ms(zone, *spiked[peak.index])
        assert all(
            (p.start_ms - local_hour(p.start_ms, zone)) % (interval * 60_000) == 0 for p in single
        )
        assert answers[interval, ("main",), 2] == []
        assert answers[interval, ("ghost",), 1] == []
        # the remainder counts only hours in which sub reports too: none in the last month,
        # and main's highest ordinary hours (those without sub) never win
        remainder = answers[interval, ("main", "sub"), 2]
        assert [p.index for p in remainder] == [1, 2]
        assert all(local_hour(p.start_ms, zone) in both for p in remainder)
        assert [p.index for p in answers[interval, ("main", "sub", "ghost"), 1]] == [1, 2, 3]
        two = answers[interval, ("main", "sub", "ghost"), 2]
        assert [p.index for p in two] == [1, 2]
        assert all(local_hour(p.start_ms, zone) in both for p in two)
        # the twins: equal intervals, the earliest wins
        sixth = local_hour_ms(zone, *months[0], 6, 8, 0)
        for scope, members in (("a", ("twin-a",)), ("a+b", ("twin-a", "twin-b"))):
            energy, offset = TWIN_PEAKS[interval, scope]
            assert answers[interval, members, len(members)] == [
                ScopePeak(1, energy, sixth + offset)
            ]
