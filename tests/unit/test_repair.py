"""Timestamp repair: golden tables for the pieces, properties for the whole.

Stores are lists of `Row`s built the way the logger builds them (seq one after
the other, energy by the trapezoid, cumulative totals), then corrupted in the
ways stores get corrupted. A repair must put back exactly what was there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from campus_energy.core.energy import split_trapezoid_uwh, trapezoid_uwh
from campus_energy.core.repair import (
    LOCAL,
    OUT_OF_ORDER,
    Change,
    Era,
    Fmt,
    MeterPlan,
    Row,
    Rules,
    Surveyor,
    apply_plan,
    edge_before,
    interval_energies_uwh,
    interval_energy_uwh,
    interval_fix,
    local_to_utc_ms,
    plan_meter,
    read_stamp,
    retime_rows,
    typical_interval_ms,
)

KOLKATA = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
NOW = T0 + 400 * DAY


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def rules_for(zone: ZoneInfo = KOLKATA, interval_ms: int = 5_000) -> Rules:
    return Rules(interval_ms, 3.5 * interval_ms / 1000, zone, not_after_ms=NOW)


def power(k: int) -> float:
    return 800.0 + 37.5 * (k % 11)


def store(times: Sequence[int], max_gap_s: float = 17.5) -> list[Row]:
    """Readings at `times` (seq 1, 2, ...), with the logger's energies and totals."""
    rows: list[Row] = []
    total = 0
    for k, ts in enumerate(times):
        energy = 0
        if k:
            step_s = (ts - times[k - 1]) / 1000
            energy = trapezoid_uwh(power(k - 1), power(k), step_s) if step_s <= max_gap_s else 0
        total += energy
        rows.append(Row(k + 1, ts, power(k), energy, total, (power(k), 230.0)))
    return rows


def grid(n: int, start: int = T0, interval_ms: int = 5_000) -> list[int]:
    return [start + k * interval_ms for k in range(n)]


def shifted(rows: Sequence[Row], first: int, last: int, how: Callable[[int], object]) -> list[Row]:
    """`rows` with the stamps of seq first..last replaced by how(stamp)."""
    return [
        Row(r.seq, how(r.ts), r.power_w, r.energy_uwh, r.total_uwh, r.values)  # type: ignore[arg-type]
        if first <= r.seq <= last
        else r
        for r in rows
    ]


def as_local(zone: ZoneInfo) -> Callable[[int], int]:
    """A UTC stamp written as the local wall time of `zone`, as if that were UTC."""

    def convert(ts: int) -> int:
        wall = datetime.fromtimestamp(ts / 1000, UTC).astimezone(zone).replace(tzinfo=None)
        return (wall - datetime(1970, 1, 1)) // timedelta(milliseconds=1)

    return convert


def plan_of(rows: Sequence[Row], rules: Rules) -> MeterPlan:
    surveyor = Surveyor(rules)
    for row in sorted(rows, key=lambda r: (r.seq, str(r.ts))):
        surveyor.add(row)
    return plan_meter(surveyor.finish(), rules)


def repaired(rows: Sequence[Row], rules: Rules) -> tuple[MeterPlan, list[Row]]:
    plan = plan_of(rows, rules)
    assert plan.refused is None, plan.refused
    return plan, apply_plan(rows, plan, rules)


def consistent(rows: Sequence[Row]) -> bool:
    """Time order is seq order, and each total is the one before plus the reading's energy."""
    pairs = list(itertools.pairwise(rows))
    ordered = all(a.ts < b.ts for a, b in pairs)  # type: ignore[operator]
    return ordered and all(b.total_uwh == a.total_uwh + b.energy_uwh for a, b in pairs)


# -- golden tables: the pieces ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1_767_225_600_123, (Fmt.MS, 1_767_225_600_123)),
        (10_000, (Fmt.MS, 10_000)),  # 1970, ten seconds after a boot without a clock
        (-5, (Fmt.MS, -5)),
        (1_767_225_600, (Fmt.SECONDS, 1_767_225_600_000)),
        (1_767_225_600.25, (Fmt.SECONDS, 1_767_225_600_250)),
        (1_767_225_600_123.9, (Fmt.REAL, 1_767_225_600_123)),
        ("2026-01-01 05:30:00", (Fmt.TEXT, ms("2026-01-01T05:30:00+00:00"))),
        ("2026-01-01T05:30:00.5+05:30", (Fmt.TEXT, ms("2026-01-01T00:00:00.5+00:00"))),
        ("2026-01-01T00:00:00Z", (Fmt.TEXT, T0)),
        ("yesterday", None),
        (float("nan"), None),
        (b"\x00", None),
    ],
)
def test_how_stored_stamps_read(raw: object, expected: tuple[Fmt, int] | None) -> None:
    assert read_stamp(raw) == expected


@pytest.mark.parametrize(
    ("zone", "local", "fold", "utc"),
    [
        (KOLKATA, "2026-01-01T05:30:00", 0, "2026-01-01T00:00:00"),
        (LONDON, "2026-01-15T12:00:00", 0, "2026-01-15T12:00:00"),  # winter: UTC itself
        (LONDON, "2026-07-15T12:00:00", 0, "2026-07-15T11:00:00"),
        (NEW_YORK, "2025-11-02T01:30:00", 0, "2025-11-02T05:30:00"),  # repeated hour, 1st pass
        (NEW_YORK, "2025-11-02T01:30:00", 1, "2025-11-02T06:30:00"),  # ... 2nd pass
        (UTC_ZONE, "2026-01-01T00:00:00", 0, "2026-01-01T00:00:00"),
    ],
)
def test_local_wall_time_to_utc(zone: ZoneInfo, local: str, fold: int, utc: str) -> None:
    assert local_to_utc_ms(ms(local + "+00:00"), zone, fold) == ms(utc + "+00:00")


@pytest.mark.parametrize(
    ("watts_a", "watts_b", "step_ms", "max_gap_s", "uwh"),
    [
        (1000.0, 1000.0, 5_000, 17.5, 1_388_889),  # 1 kW for 5 s
        (0.0, 3600.0, 60_000, 120.0, 30_000_000),  # ramp to 3.6 kW over a minute: 30 Wh
        (1000.0, 1000.0, 17_500, 17.5, 4_861_111),  # exactly the longest integrated interval
        (1000.0, 1000.0, 17_501, 17.5, 0),  # a gap: nothing invented
        (1000.0, 1000.0, 0, 17.5, 0),
        (None, 500.0, 5_000, 17.5, 347_222),  # a missing power counts as 0 W
    ],
)
def test_interval_energy_is_the_integrators(
    watts_a: float | None, watts_b: float, step_ms: int, max_gap_s: float, uwh: int
) -> None:
    assert interval_energy_uwh(watts_a, watts_b, step_ms, max_gap_s) == uwh


def test_typical_interval_from_the_newest_readings() -> None:
    points = [(k + 1, T0 + k * 5_000 + (37 if k % 3 else 0)) for k in range(50)]
    points += [(100, T0 + DAY)]  # an outage and a seq jump do not count
    assert typical_interval_ms(points) == 5_000
    assert typical_interval_ms([(1, T0)]) is None
    assert typical_interval_ms([(1, T0), (2, T0 + 250)]) == 250


def test_eras() -> None:
    rules = rules_for()
    assert rules.era(10_000) is Era.EARLY
    assert rules.era(946_684_800_000) is Era.EARLY  # 2000-01-01: an RTC's default date
    assert rules.era(T0) is Era.OK
    assert rules.era(NOW + 1) is Era.LATE


# -- golden tables: whole stores --------------------------------------------------------------

OFFSET_IST = 19_800_000
GOLDEN = [
    # name, zone, corruption (first seq, last seq, new stamp), kinds of the moving runs
    ("boot before NTP", KOLKATA, (1, 40, lambda t: t - T0 + 12_000), [("before clock sync",)]),
    ("clock far ahead", KOLKATA, (190, 200, lambda t: t + 3000 * DAY), [("ahead of the clock",)]),
    ("local time inside", KOLKATA, (80, 120, lambda t: t + OFFSET_IST), [(LOCAL,)]),
    ("local time at the start", KOLKATA, (1, 50, lambda t: t + OFFSET_IST), [(LOCAL,)]),
    ("New York local at the end", NEW_YORK, (150, 200, as_local(NEW_YORK)), [(LOCAL,)]),
    ("back three days", KOLKATA, (60, 90, lambda t: t - 3 * DAY + 123), [(OUT_OF_ORDER,)]),
    ("ahead three days", KOLKATA, (60, 90, lambda t: t + 3 * DAY - 7), [(OUT_OF_ORDER,)]),
    ("ahead at the start", KOLKATA, (1, 30, lambda t: t + DAY + 1), [(OUT_OF_ORDER,)]),
    ("seconds", KOLKATA, (100, 110, lambda t: t // 1000), [("seconds instead of milliseconds",)]),
    ("fractions", KOLKATA, (100, 110, lambda t: t + 0.5), [("fractional milliseconds",)]),
    (
        "text",
        KOLKATA,
        (5, 9, lambda t: f"{datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%d %H:%M:%S}"),
        [("text timestamps",)],
    ),
]


@pytest.mark.parametrize(
    ("zone", "corruption", "kinds"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN]
)
def test_golden_corruptions_are_undone_exactly(
    zone: ZoneInfo, corruption: tuple[int, int, Callable[[int], object]], kinds: list[tuple[str]]
) -> None:
    rules = rules_for(zone)
    original = store(grid(200))
    corrupted = shifted(original, *corruption)
    plan, result = repaired(corrupted, rules)
    assert [p.kinds for p in plan.moving] == kinds
    assert [(p.run.first.seq, p.run.last.seq) for p in plan.moving] == [corruption[:2]]
    assert result == original
    assert plan_of(result, rules).empty


def test_a_local_span_across_the_autumn_change_is_converted_reading_by_reading() -> None:
    # New York falls back at 06:00Z on 2025-11-02; minute readings, local from 04:00Z to 08:00Z
    rules = rules_for(NEW_YORK, 60_000)
    original = store(grid(400, ms("2025-11-02T03:00:00+00:00"), 60_000), rules.max_gap_s)
    corrupted = shifted(original, 60, 300, as_local(NEW_YORK))
    plan, result = repaired(corrupted, rules)
    assert {p.kinds for p in plan.moving} == {(LOCAL,)}
    assert [(p.run.first.seq, p.run.last.seq) for p in plan.moving] == [(60, 180), (181, 300)]
    assert result == original


def test_duplicates_are_removed_and_the_right_copies_kept() -> None:
    rules = rules_for()
    original = store(grid(100))
    copies = (
        [
            Row(r.seq, r.ts - 3 * DAY + 9, r.power_w, r.energy_uwh, r.total_uwh, r.values)
            for r in original[:20]  # at the very start: judged by the reading after them
        ]
        + [
            Row(r.seq, r.ts + OFFSET_IST, r.power_w, r.energy_uwh, r.total_uwh, r.values)
            for r in original[50:60]
        ]
    )
    plan, result = repaired(original + copies, rules)
    assert sorted(plan.duplicates) == sorted(c.ts for c in copies)
    assert not plan.moving
    assert result == original


def test_energy_is_recomputed_where_an_interval_changed_and_later_totals_follow() -> None:
    rules = rules_for()
    # the logger stored seq 41 as after a gap (its interval looked like 56 years) ...
    original = store(grid(100))
    corrupted = shifted(original, 1, 40, lambda t: t - T0 + 12_000)
    lost = original[40].energy_uwh
    corrupted = [
        Row(
            r.seq, r.ts, r.power_w, 0 if r.seq == 41 else r.energy_uwh, r.total_uwh - lost, r.values
        )
        if r.seq >= 41
        else r
        for r in corrupted
    ]
    # ... the repair integrates that interval again: seq 41's energy and every later total
    plan, result = repaired(corrupted, rules)
    (fix,) = plan.fixes
    assert (fix.seq, fix.old_uwh, fix.new_uwh) == (41, 0, original[40].energy_uwh)
    assert [r.total_uwh for r in result] == [r.total_uwh for r in original]
    assert consistent(result)


@pytest.mark.parametrize(
    ("watts_a", "watts_b", "step_ms", "uwh"),
    [
        (1000.0, -1000.0, 5_000, (347_222, 347_222)),  # crossing zero half-way
        (-600.0, -600.0, 6_000, (0, 1_000_000)),  # exporting throughout
        (900.0, -300.0, 4_000, (375_000, 41_667)),  # crossing at 3 s
        (-1000.0, 1000.0, 17_501, (0, 0)),  # a gap: nothing in either direction
    ],
)
def test_an_intervals_energy_is_split_by_direction(
    watts_a: float, watts_b: float, step_ms: int, uwh: tuple[int, int]
) -> None:
    assert interval_energies_uwh(watts_a, watts_b, step_ms, 17.5) == uwh
    assert interval_energy_uwh(watts_a, watts_b, step_ms, 17.5) == uwh[0]


def solar_store(times: Sequence[int]) -> list[Row]:
    """A meter with solar behind it: importing, then exporting (the power crosses zero between
    seq 20 and 21), energy split by direction as the logger splits it."""
    rows: list[Row] = []
    total = exported = 0

    def watts(k: int) -> float:
        return 600.0 - 30.5 * k

    for k, ts in enumerate(times):
        energy = export = 0
        if k:
            energy, export = split_trapezoid_uwh(watts(k - 1), watts(k), (ts - times[k - 1]) / 1000)
        total += energy
        exported += export
        rows.append(Row(k + 1, ts, watts(k), energy, total, (watts(k),), export, exported))
    return rows


def test_an_exporting_interval_is_recomputed_in_both_directions() -> None:
    rules = rules_for()
    original = solar_store(grid(60))
    # seq 1..25 stamped 56 years early: seq 26's interval looked like a gap (nothing stored)
    corrupted = [replace(r, ts=r.ts - T0 + 12_000) if r.seq <= 25 else r for r in original]
    lost, lost_export = original[25].energy_uwh, original[25].export_uwh
    assert lost_export > 0 and lost == 0  # an interval of export
    corrupted = [
        replace(
            r,
            energy_uwh=0 if r.seq == 26 else r.energy_uwh,
            total_uwh=r.total_uwh - lost,
            export_uwh=0 if r.seq == 26 else r.export_uwh,
            export_total_uwh=r.export_total_uwh - lost_export,
        )
        if r.seq >= 26
        else r
        for r in corrupted
    ]
    plan, result = repaired(corrupted, rules)
    (fix,) = plan.fixes
    assert (fix.seq, fix.old_uwh, fix.new_uwh) == (26, 0, 0)
    assert (fix.old_export_uwh, fix.new_export_uwh) == (0, lost_export)
    assert [(r.ts, r.export_uwh, r.export_total_uwh) for r in result] == [
        (r.ts, r.export_uwh, r.export_total_uwh) for r in original
    ]
    assert [r.total_uwh for r in result] == [r.total_uwh for r in original]


@pytest.mark.parametrize(
    ("estimated", "step_ms", "expected"),
    [
        (False, 5_000, (trapezoid_uwh(800.0, 837.5, 5.0), False, False)),  # integrated
        (True, 5_000, (0, True, True)),  # its estimate covers it: a gap all the same
        (True, 17_501, (0, True, False)),  # too long anyway
        (False, 17_501, (0, True, False)),
    ],
)
def test_an_interval_whose_reading_carries_an_estimate_is_not_integrated(
    estimated: bool, step_ms: int, expected: tuple[int, bool, bool]
) -> None:
    reading = Row(2, T0 + step_ms, 837.5, 0, 0, (837.5,), estimated=estimated)
    fix = interval_fix(reading, T0, T0 + step_ms, 800.0, rules_for())
    assert (fix.new_uwh, fix.gap, fix.estimated) == expected
    assert (fix.seq, fix.start_ms, fix.ts_ms, fix.new_export_uwh) == (2, T0, T0 + step_ms, 0)


@pytest.mark.parametrize(
    ("corruption", "first"),
    [
        ((1, 40, lambda t: t - T0 + 12_000), 41),  # a run shifted as a whole
        ((80, 120, lambda t: t + OFFSET_IST), 80),  # local time, one offset: shifted whole
        ((80, 120, lambda t: f"{datetime.fromtimestamp(t / 1000 - 1e9, UTC):%F %T}"), 80),
    ],
    ids=["before clock sync", "local time", "text before clock sync"],
)
def test_a_repair_leaves_the_interval_an_estimate_covers_a_gap(
    corruption: tuple[int, int, Callable[[int], object]], first: int
) -> None:
    """The logger saw a gap before seq `first` and its registers estimated it; the repair
    makes the interval 5 s again, but measured energy over it would count it twice."""
    rules = rules_for()
    original = store(grid(200))
    lost = original[first - 1].energy_uwh
    assert lost > 0
    corrupted = [
        replace(
            r,
            energy_uwh=0 if r.seq == first else r.energy_uwh,
            total_uwh=r.total_uwh - lost,
            estimated=r.seq == first,
        )
        if r.seq >= first
        else r
        for r in shifted(original, *corruption)
    ]
    plan, result = repaired(corrupted, rules)
    per_row = [p.retime.per_row for p in plan.moving]
    assert per_row == [isinstance(corrupted[first - 1].ts, str)]  # text: reading by reading
    fixes = [f for f in plan.fixes if f.seq == first] + [
        c.fix
        for c in retimed_changes(plan, corrupted, rules)
        if c.fix is not None and c.seq == first
    ]
    assert [(f.old_uwh, f.new_uwh, f.gap, f.estimated) for f in fixes] == [(0, 0, True, True)]
    # the stamps put back, the interval left unintegrated, the estimate still on its reading
    expected = [replace(r, energy_uwh=0, estimated=True) if r.seq == first else r for r in original]
    expected = [replace(r, total_uwh=r.total_uwh - lost) if r.seq >= first else r for r in expected]
    assert result == expected
    assert consistent(result)


def retimed_changes(plan: MeterPlan, rows: Sequence[Row], rules: Rules) -> list[Change]:
    """The changes of the runs that move reading by reading (what the adapter writes)."""
    found: list[Change] = []
    for index, run_plan in enumerate(plan.runs):
        if run_plan.retime.per_row:
            inside = [r for r in rows if run_plan.run.first.seq <= r.seq <= run_plan.run.last.seq]
            found.extend(retime_rows(run_plan, edge_before(plan.runs, index), inside, rules))
    return found


def test_what_cannot_be_placed_is_refused() -> None:
    rules = rules_for()
    original = store(grid(10))
    conflict = [*original, Row(5, T0 + 99, 1.0, 0, 0, (1.0,))]
    assert "different values" in (plan_of(conflict, rules).refused or "")
    unreadable = shifted(original, 3, 3, lambda t: "not a time")
    assert "unreadable" in (plan_of(unreadable, rules).refused or "")
    all_early = shifted(original, 1, 10, lambda t: t - T0)
    assert "trustworthy" in (plan_of(all_early, rules).refused or "")


def test_a_jump_by_the_offset_at_the_end_is_reported_not_guessed() -> None:
    rules = rules_for()
    original = store(grid(100))
    plan = plan_of(shifted(original, 80, 100, lambda t: t + OFFSET_IST), rules)
    assert plan.empty
    assert len(plan.notices) == 1 and "seq 80" in plan.notices[0]


def test_an_empty_meter_has_an_empty_plan() -> None:
    assert plan_of([], rules_for()).empty


# -- properties -----------------------------------------------------------------------------

ZONES = st.sampled_from([KOLKATA, LONDON, NEW_YORK, UTC_ZONE])
INTERVALS = st.sampled_from([1_000, 5_000, 60_000])


@st.composite
def clean_times(draw: st.DrawFn, interval_ms: int, n: int | None = None) -> list[int]:
    """A healthy meter: polls on the grid with response jitter, missed polls and outages."""
    count = draw(st.integers(1, 150)) if n is None else n
    start = draw(st.integers(ms("2015-01-01T00:00:00+00:00"), T0)) // 1000 * 1000
    times = [start]
    for _ in range(count - 1):
        missed = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 40, 1000]))
        jitter = draw(st.integers(0, 300))
        times.append((times[-1] // interval_ms + 1 + missed) * interval_ms + jitter)
    return times


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), zone=ZONES, interval_ms=INTERVALS)
def test_a_clean_store_yields_an_empty_plan(
    data: st.DataObject, zone: ZoneInfo, interval_ms: int
) -> None:
    rules = Rules(interval_ms, 3.5 * interval_ms / 1000, zone, not_after_ms=NOW)
    rows = store(data.draw(clean_times(interval_ms)), rules.max_gap_s)
    plan = plan_of(rows, rules)
    assert plan.empty and not plan.fixes
    assert apply_plan(rows, plan, rules) == rows


KINDS = ["early", "local", "back", "ahead", "seconds", "copies"]


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[Rules, list[Row], list[Row]]:
    """(rules, original, corrupted): a span of a healthy store stamped wrongly in one known way,
    where the surrounding readings can tell (the span's edges are one interval from their
    neighbours, the span is the minority)."""
    zone = draw(ZONES)
    interval_ms = draw(INTERVALS)
    n = draw(st.integers(8, 120))
    first = draw(st.integers(1, n))
    last = draw(st.integers(first, min(n, first + (n - 1) // 2 - 1)))
    assume(last - first + 1 < n / 2)
    times = [t // interval_ms * interval_ms for t in draw(clean_times(interval_ms, n))]
    for k in (first - 1, last):  # edges on the grid, one interval apart
        if 0 < k < n:
            delta = times[k - 1] + interval_ms - times[k]
            times[k:] = [t + delta for t in times[k:]]
    times = [t // 1000 * 1000 if interval_ms >= 1000 else t for t in times]
    original = store(times, 3.5 * interval_ms / 1000)
    kind = draw(st.sampled_from(KINDS))
    days = draw(st.integers(1, 60)) * DAY
    if kind == "early":
        base = draw(st.sampled_from([12_000, 946_684_800_000]))  # 1970, or an RTC's 2000
        how: Callable[[int], object] = lambda t: t - times[first - 1] + base  # noqa: E731
    elif kind == "local":
        offsets = {as_local(zone)(times[k]) - times[k] for k in range(first - 1, last)}
        assume(0 not in offsets)
        # a forward jump alone proves nothing: the span needs its backward edge
        if max(offsets) > 0:
            assume(last < n)
        else:
            assume(first > 1)
        how = as_local(zone)
    elif kind == "back":
        assume(first > 1)  # a backward shift at the very start looks like an outage
        how = lambda t: t - days - 7  # noqa: E731
    elif kind == "ahead":
        assume(last < n)  # a forward shift at the very end looks like an outage
        how = lambda t: t + days + 7  # noqa: E731
    elif kind == "seconds":
        how = lambda t: t // 1000  # noqa: E731
    else:
        copies = [
            Row(r.seq, r.ts + days + 3, r.power_w, r.energy_uwh, r.total_uwh, r.values)
            for r in original[first - 1 : last]
        ]
        return rules_of(zone, interval_ms), original, original + copies
    return rules_of(zone, interval_ms), original, shifted(original, first, last, how)


def rules_of(zone: ZoneInfo, interval_ms: int) -> Rules:
    return Rules(interval_ms, 3.5 * interval_ms / 1000, zone, not_after_ms=NOW + 100 * DAY)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=corruptions())
def test_a_known_corruption_is_undone_exactly(case: tuple[Rules, list[Row], list[Row]]) -> None:
    rules, original, corrupted = case
    _, result = repaired(corrupted, rules)
    assert [r.ts for r in result] == [r.ts for r in original]
    assert result == original  # energies and cumulative totals as the logger wrote them


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=corruptions(), data=st.data())
def test_repairing_twice_changes_nothing_the_second_time(
    case: tuple[Rules, list[Row], list[Row]], data: st.DataObject
) -> None:
    rules, _, corrupted = case
    # also on stores a repair cannot fully explain: a second span shifted anyhow
    if data.draw(st.booleans()):
        seq = data.draw(st.integers(1, len(corrupted)))
        amount = data.draw(st.integers(-50 * DAY, 50 * DAY))
        taken = {r.ts for r in corrupted}
        corrupted = [
            Row(r.seq, r.ts + amount, r.power_w, r.energy_uwh, r.total_uwh, r.values)
            if r.seq >= seq and isinstance(r.ts, int) and r.ts + amount not in taken
            else r
            for r in corrupted
        ]
    plan = plan_of(corrupted, rules)
    assume(plan.refused is None)
    once = apply_plan(corrupted, plan, rules)
    assert consistent(once)
    again = plan_of(once, rules)
    assert again.empty and not again.fixes
    assert apply_plan(once, again, rules) == once
