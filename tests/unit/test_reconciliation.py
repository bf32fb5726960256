"""Reconciliation's pure parts: rebuilding windows as the bridge does, and telling them apart."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.readings import Reading
from campus_energy.core.reconciliation import (
    StoreSpan,
    Summary,
    compare,
    differences,
    recompute,
    store_span,
)
from campus_energy.core.windows import Accumulator, IncomingReading, WindowDoc, contributions, group

WINDOW_S = 300
WINDOW_MS = WINDOW_S * 1000


def readings(gaps_s: list[int], energies: list[float]) -> list[IncomingReading]:
    found, ts, previous = [], 1_800_000_000_000, None
    for seq, (gap, energy) in enumerate(zip(gaps_s, energies, strict=False), start=1):
        ts += gap * 1000
        found.append(
            IncomingReading("m", ts, seq, energy, previous, power_w=energy * 10, voltage_v=230.0)
        )
        previous = ts
    return found


@given(
    st.lists(st.integers(1, 700), min_size=2, max_size=60),
    st.lists(st.floats(0, 50), min_size=60, max_size=60),
    st.integers(0, 40),
    st.integers(1, 40),
)
def test_a_range_rebuilt_from_the_readings_around_it_is_the_bridges_windows(
    gaps: list[int], energies: list[float], skip: int, length: int
) -> None:
    every = readings(gaps, energies)
    items = [c for r in every for c in contributions(r, WINDOW_MS)]
    bridge = {(d.meter_id, d.window_start_ms): d for d in group(items, WINDOW_S, {})}
    first = min(k[1] for k in bridge)
    start = first + skip * WINDOW_MS
    end = start + length * WINDOW_MS
    # as the store frames a range: the reading before it, its readings, the first after it
    before = [r for r in every if r.ts_ms < start][-1:]
    inside = [r for r in every if start <= r.ts_ms < end]
    after = [r for r in every if r.ts_ms >= end][:1]
    rebuilt = recompute([*before, *inside, *after], WINDOW_S, start, end, {}, 0)
    expected = {k for k in bridge if start <= k[1] < end}
    assert set(rebuilt) == expected
    for key in expected:
        doc = rebuilt[key]
        assert doc.total_energy_wh == pytest.approx(
            sum(c.energy_wh for c in bridge[key].items), abs=1e-9
        )
        assert doc.readings_in_batch == sum(1 for c in bridge[key].items if c.in_window)


def doc(energy: float, readings: int = 3, **changes: object) -> WindowDoc:
    base = WindowDoc(
        "m", "B", "1", 0, WINDOW_MS, energy, 100.0, 90.0, 110.0, 230.0, 0.4, 0.95, 50.0,
        readings, 1.0, 0, Accumulator(),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("local", "sink", "named"),
    [
        (doc(10.0), doc(10.0 + 9e-7), []),  # within 1e-6 Wh
        (doc(10.0), doc(10.000002), ["total_energy_wh"]),
        (doc(10.0), doc(10.0, readings=4), ["readings_in_batch"]),
        (doc(10.0), doc(10.0, coverage=1.0 + 1e-13), []),  # float rounding
        (doc(10.0), doc(10.0, coverage=0.5), ["coverage"]),
        (doc(10.0), doc(10.0, avg_voltage_v=None), ["avg_voltage_v"]),
        (doc(10.0), doc(10.0, building="elsewhere"), []),  # where the meter was: not compared
    ],
)
def test_differences_within_their_tolerance(
    local: WindowDoc, sink: WindowDoc, named: list[str]
) -> None:
    assert [d.name for d in differences(local, sink)] == named


def test_every_window_either_side_holds_is_one_finding() -> None:
    local = {("m", 0): doc(1.0), ("m", WINDOW_MS): doc(2.0), ("m", 2 * WINDOW_MS): doc(3.0)}
    sink = {("m", 0): doc(1.5), ("m", 2 * WINDOW_MS): doc(3.0), ("m", 3 * WINDOW_MS): doc(4.0)}
    findings = compare(local, sink)
    assert [(f.window_start_ms // WINDOW_MS, f.status) for f in findings] == [
        (0, "differs"),
        (1, "missing"),
        (2, "equal"),
        (3, "extra"),
    ]
    assert [f.energy_difference_wh for f in findings] == [-0.5, 2.0, 0.0, -4.0]
    assert compare(local, sink, {"m": WINDOW_MS})[0].status == "partial"
    summary = Summary()
    summary.add(findings)
    assert summary.counts() == {
        "checked": 4,
        "equal": 1,
        "differing": 1,
        "missing": 1,
        "extra": 1,
        "partial": 0,
        "orphan": 0,
    }
    assert (summary.local_energy_wh, summary.sink_energy_wh, summary.to_rewrite) == (6.0, 8.5, 2)


def test_the_summary_balances_each_direction_and_kind_apart() -> None:
    local = {
        ("m", 0): doc(1.0, export_energy_wh=0.25),
        ("m", WINDOW_MS): doc(2.0, estimated_energy_wh=4.0, estimated_export_wh=0.5),
    }
    sink = {
        ("m", 0): doc(1.0, export_energy_wh=0.75),
        ("m", 2 * WINDOW_MS): doc(8.0, export_energy_wh=1.0, estimated_energy_wh=16.0),
    }
    summary = Summary()
    assert not summary.directed
    summary.add(compare(local, sink))
    found = {
        name: (b.local_wh, b.sink_wh, b.difference_wh) for name, b in summary.energies().items()
    }
    assert found == {
        "import": (3.0, 9.0, -6.0),
        "export": (0.25, 1.75, -1.5),
        "estimated_import": (4.0, 16.0, -12.0),
        "estimated_export": (0.5, 0.0, 0.5),
    }
    assert (summary.local_energy_wh, summary.sink_energy_wh) == (3.0, 9.0)  # as before
    assert summary.directed
    only_import = Summary()
    only_import.add(compare({("m", 0): doc(1.0)}, {("m", 0): doc(2.0)}))
    assert not only_import.directed


def test_a_rewrite_keeps_where_the_sink_says_the_meter_was() -> None:
    local, sink = doc(1.0), doc(2.0, building="Old block", floor="G")
    (finding,) = compare({("m", 0): local}, {("m", 0): sink})
    assert finding.replacement() == dataclasses.replace(local, building="Old block", floor="G")
    (extra,) = compare({}, {("m", 0): sink})
    with pytest.raises(ValueError):
        extra.replacement()


# --- orphans: windows no stored reading stands behind ------------------------------------------

T = 1_800_000_000_000 // WINDOW_MS * WINDOW_MS  # a window boundary


def stored(ts_ms: int, interval_start_ms: int | None = None) -> Reading:
    return Reading(
        "m", ts_ms, 1, 0 if interval_start_ms is None else 1000, 0, {}, interval_start_ms
    )


def test_the_span_of_the_store_and_the_windows_its_readings_touch() -> None:
    readings = [
        stored(T + 10_000),  # integrated nothing: only its own window
        stored(T + 3 * WINDOW_MS + 5_000, T + WINDOW_MS + 1_000),  # reaches back two windows
        stored(T + 9 * WINDOW_MS),  # exactly on a boundary
    ]
    span = store_span(readings, WINDOW_MS)
    assert span == StoreSpan(
        T + 10_000,
        T + 9 * WINDOW_MS,
        frozenset(T + i * WINDOW_MS for i in (0, 1, 2, 3, 9)),
    )
    assert store_span([], WINDOW_MS) is None


def test_a_long_interval_backs_only_the_part_the_bridge_keeps() -> None:
    """A reading spanning a clock step forward, spread by an earlier bridge over every window
    of its span: only the windows of its last `max_interval` are backed (the bridge puts its
    energy there), the rest are orphans, so `--apply` cannot count its energy twice."""
    readings = [stored(T), stored(T + 12 * WINDOW_MS + 5_000, T)]  # an hour's step
    span = store_span(readings, WINDOW_MS, max_interval_ms=17_675)
    # its last 17.675 s reach back from 01:00:05 into the window of 00:55
    assert span is not None and span.backed == frozenset(
        {T, T + 11 * WINDOW_MS, T + 12 * WINDOW_MS}
    )
    assert all(span.orphans(T + i * WINDOW_MS, T + (i + 1) * WINDOW_MS) for i in range(1, 11))
    uncut = store_span(readings, WINDOW_MS)
    assert uncut is not None and not uncut.orphans(T + WINDOW_MS, T + 2 * WINDOW_MS)


def test_a_window_only_the_sink_holds_is_an_orphan_only_where_the_store_speaks() -> None:
    span = StoreSpan(T + 10_000, T + 9 * WINDOW_MS, frozenset({T, T + WINDOW_MS}))
    sink = {
        ("m", T - WINDOW_MS): doc(1.0, window_start_ms=T - WINDOW_MS, window_end_ms=T),
        ("m", T): doc(1.0, window_start_ms=T, window_end_ms=T + WINDOW_MS),
        ("m", T + 4 * WINDOW_MS): doc(1.0, window_start_ms=T + 4 * WINDOW_MS,
                                      window_end_ms=T + 5 * WINDOW_MS),
        ("m", T + 8 * WINDOW_MS): doc(1.0, window_start_ms=T + 8 * WINDOW_MS,
                                      window_end_ms=T + 9 * WINDOW_MS),
        ("m", T + 9 * WINDOW_MS): doc(1.0, window_start_ms=T + 9 * WINDOW_MS,
                                      window_end_ms=T + 10 * WINDOW_MS),
        ("other", T + 4 * WINDOW_MS): doc(1.0, meter_id="other"),
    }  # fmt: skip
    found = compare({}, sink, spans={"m": span})
    assert {(f.meter_id, (f.window_start_ms - T) // WINDOW_MS): f.status for f in found} == {
        ("m", -1): "extra",  # older than the store's first reading: retention
        ("m", 0): "extra",  # a reading touches it (one the bridge refuses)
        ("m", 4): "orphan",
        ("m", 8): "orphan",  # ends exactly at the last reading
        ("m", 9): "extra",  # after the store's last reading
        ("other", 4): "extra",  # a meter the store does not hold
    }
    orphan = next(f for f in found if f.status == "orphan")
    with pytest.raises(ValueError):
        orphan.replacement()
    summary = Summary()
    summary.add(found)
    assert (summary.counts()["orphan"], summary.to_delete, summary.to_rewrite) == (2, 2, 0)


@given(
    st.lists(
        st.tuples(st.integers(1, 2000), st.booleans()), min_size=1, max_size=40
    ),  # (seconds since the previous reading, whether it integrated from it)
    st.integers(0, 3 * WINDOW_S),
)
def test_a_window_any_stored_reading_touches_is_never_an_orphan(
    steps: list[tuple[int, bool]], offset_s: int
) -> None:
    readings, ts, previous = [], T + offset_s * 1000, None
    for gap, integrated in steps:
        ts += gap * 1000
        readings.append(stored(ts, previous if integrated else None))
        previous = ts
    span = store_span(readings, WINDOW_MS)
    assert span is not None
    for start in range(T, ts + WINDOW_MS, WINDOW_MS):
        end = start + WINDOW_MS
        touched = any(
            start <= r.ts_ms < end
            or (r.interval_start_ms is not None and r.interval_start_ms < end and r.ts_ms > start)
            for r in readings
        )
        inside = readings[0].ts_ms <= start and end <= readings[-1].ts_ms
        assert span.orphans(start, end) == (inside and not touched)
