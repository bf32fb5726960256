"""Window aggregation: contributions, accumulators and documents — golden cases and properties."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import (
    Accumulator,
    Contribution,
    IncomingReading,
    WindowDelta,
    WindowDoc,
    contributions,
    document_id,
    group,
    window_document,
    window_stamp,
    window_start_ms,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary
W = 300_000  # 5-minute windows, in ms
NOW = T0 + 3_600_000
METER = "ece-f1-001"
SAMPLES = {"power_w": 1200.0, "voltage_v": 231.0, "current_a": 5.2, "power_factor": 0.98,
           "frequency_hz": 50.0}  # fmt: skip
NO_SAMPLES = dict.fromkeys(SAMPLES)


def reading(
    seq: int,
    ts_ms: int,
    energy_wh: float,
    start_ms: int | None,
    power_w: float | None = SAMPLES["power_w"],
    voltage_v: float | None = SAMPLES["voltage_v"],
    current_a: float | None = SAMPLES["current_a"],
) -> IncomingReading:
    return IncomingReading(
        METER, ts_ms, seq, energy_wh, start_ms, power_w, voltage_v, current_a, 0.98, 50.0
    )


def cut(reading: IncomingReading, window_ms: int = W) -> list[tuple[int, float, float, bool]]:
    """(window offset from T0, energy, covered s, in_window) of each contribution."""
    return [
        (c.window_start_ms - T0, c.energy_wh, c.covered_s, c.in_window)
        for c in contributions(reading, window_ms)
    ]


# --- contributions: golden cases ---------------------------------------------------------------

# (interval start, ts, window ms, energy) relative to T0 → (window, energy, covered s, in_window)
GOLDEN_CUTS = [
    # inside one window: everything, covering the whole interval
    ((10_000, 20_000, W, 10.0), [(0, 10.0, 10.0, True)]),
    # 295 s → 305 s across the 300 s boundary: half and half
    ((295_000, 305_000, W, 10.0), [(0, 5.0, 5.0, False), (W, 5.0, 5.0, True)]),
    # 5 ms → 25 ms over 10 ms windows: 5 + 10 + 5 ms of 8 Wh
    ((5, 25, 10, 8.0), [(0, 2.0, 0.005, False), (10, 4.0, 0.01, False), (20, 2.0, 0.005, True)]),
    # ts exactly on a boundary: the energy stays before it, the samples go to the window at ts
    ((295_000, 300_000, W, 10.0), [(0, 10.0, 5.0, False), (W, 0.0, 0.0, True)]),
    # an interval starting on a boundary belongs to that window only
    ((W, W + 5_000, W, 3.0), [(W, 3.0, 5.0, True)]),
    # no interval: the energy goes to the reading's own window, covering no known time
    ((None, 20_000, W, 7.5), [(0, 7.5, 0.0, True)]),
]


@pytest.mark.parametrize(("case", "expected"), GOLDEN_CUTS)
def test_golden_cuts(
    case: tuple[int | None, int, int, float], expected: list[tuple[int, float, float, bool]]
) -> None:
    start, ts, window_ms, energy = case
    r = reading(1, T0 + ts, energy, None if start is None else T0 + start)
    assert cut(r, window_ms) == expected


def test_only_the_window_holding_ts_gets_the_samples() -> None:
    first, second = contributions(reading(9, T0 + 305_000, 10.0, T0 + 295_000), W)
    assert (first.seq, second.seq) == (9, 9)
    assert {k: getattr(first, k) for k in SAMPLES} == NO_SAMPLES
    assert {k: getattr(second, k) for k in SAMPLES} == SAMPLES
    on_boundary = contributions(reading(2, T0 + W, 10.0, T0 + 295_000), W)
    assert [c.power_w for c in on_boundary] == [None, SAMPLES["power_w"]]


def test_an_empty_or_backward_interval_is_treated_as_no_interval() -> None:
    assert cut(reading(1, T0 + 20_000, 4.0, T0 + 20_000)) == [(0, 4.0, 0.0, True)]
    assert cut(reading(1, T0 + 20_000, 4.0, T0 + 30_000)) == [(0, 4.0, 0.0, True)]


def test_window_ids_are_utc_stamps_of_the_window_start() -> None:
    assert window_start_ms(T0 + W - 1, W) == T0
    assert window_start_ms(T0 + W, W) == T0 + W
    assert window_stamp(T0) == "20260101T000000Z"
    later = T0 + 86_400_000 + 3 * 3_600_000 + 5 * 60_000  # 2026-01-02T03:05:00Z
    assert document_id(METER, later) == "ece-f1-001_20260102T030500Z"
    delta = WindowDelta(METER, later, 300, ())
    assert delta.document_id == window_document(delta, None, NOW).document_id
    assert delta.document_id == "ece-f1-001_20260102T030500Z"


@settings(max_examples=300, deadline=None)
@given(
    window_ms=st.integers(1, 600_000),
    start=st.integers(0, 10**9),
    windows=st.floats(0.001, 40),
    energy=st.floats(0, 1e7, allow_nan=False, allow_infinity=False),
)
def test_shares_cover_the_interval(
    window_ms: int, start: int, windows: float, energy: float
) -> None:
    length = max(1, round(windows * window_ms))
    parts = contributions(reading(1, T0 + start + length, energy, T0 + start), window_ms)
    assert abs(sum(c.energy_wh for c in parts) - energy) <= len(parts) * math.ulp(energy)
    assert all(c.energy_wh >= 0 for c in parts)
    assert sum(c.covered_s for c in parts) == pytest.approx(length / 1000, rel=1e-12)
    starts = [c.window_start_ms for c in parts]
    assert starts == list(range(starts[0], starts[-1] + 1, window_ms))
    own = window_start_ms(T0 + start + length, window_ms)
    assert [c.window_start_ms for c in parts if c.in_window] == [own]


# --- Accumulator ----------------------------------------------------------------------------------


def item(seq: int, energy: float = 1.0, **values: float | None) -> Contribution:
    return Contribution(METER, T0, seq, energy, 10.0, True, **{**SAMPLES, **values})


@pytest.mark.parametrize(
    ("seqs", "seq", "expected"),
    [
        (((1, 3), (5, 5)), 4, ((1, 5),)),  # joins both neighbours
        (((1, 3), (6, 6)), 4, ((1, 4), (6, 6))),  # extends the left one
        (((1, 3), (6, 6)), 5, ((1, 3), (5, 6))),  # extends the right one
        (((3, 4),), 1, ((1, 1), (3, 4))),  # before everything
        (((3, 4),), 9, ((3, 4), (9, 9))),  # after everything
        ((), 7, ((7, 7),)),
    ],
)
def test_seq_ranges_coalesce(
    seqs: tuple[tuple[int, int], ...], seq: int, expected: tuple[tuple[int, int], ...]
) -> None:
    acc = Accumulator(seqs=seqs)
    assert not acc.includes(seq)
    merged = acc.merged([item(seq)])
    assert merged.seqs == expected
    assert merged.includes(seq)
    assert (merged.readings, merged.energy_wh) == (1, 1.0)


def test_merging_twice_changes_nothing() -> None:
    items = [item(1, 2.0), item(2, 3.0, power_w=900.0, voltage_v=None), item(3, 0.5)]
    once = Accumulator().merged(items)
    assert once.merged(items) == once
    assert once.merged(items[1:2]) == once
    assert Accumulator().merged(items + items[::-1]) == once
    assert (once.readings, once.energy_wh) == (3, 5.5)
    assert (once.power_min_w, once.power_max_w) == (900.0, 1200.0)
    assert once.sums["voltage_v"] == (462.0, 2)


def test_the_accumulator_survives_a_round_trip_through_json() -> None:
    acc = Accumulator().merged([item(1, 2.5), item(2, 0.1, frequency_hz=None), item(4, 1e-3)])
    assert Accumulator.from_dict(acc.to_dict()) == acc
    assert Accumulator.from_dict(json.loads(json.dumps(acc.to_dict()))) == acc
    assert Accumulator.from_dict(None) == Accumulator() == Accumulator.from_dict({})
    assert Accumulator.from_dict(None).seqs == ()


# --- window documents -------------------------------------------------------------------------

# Every 60 s from T0 + 60 s, then one reading straddling into the next window.
LATE = reading(5, T0 + 330_000, 45.0, T0 + 240_000, power_w=5000.0)
STREAM = [
    reading(1, T0 + 60_000, 10.0, T0, power_w=600.0, voltage_v=230.0),
    reading(2, T0 + 120_000, 20.0, T0 + 60_000, voltage_v=232.0, current_a=None),
    reading(3, T0 + 180_000, 30.0, T0 + 120_000, power_w=1800.0, voltage_v=None),
    reading(4, T0 + 240_000, 0.0, T0 + 180_000, power_w=None, voltage_v=234.0),
    LATE,
]


def documents(
    readings: list[IncomingReading], window_s: int = 300, now: int = NOW
) -> dict[str, WindowDoc]:
    items = [c for r in readings for c in contributions(r, window_s * 1000)]
    deltas = group(items, window_s, {METER: ("ECE", "1")})
    return {d.document_id: window_document(d, None, now) for d in deltas}


def test_golden_window_document() -> None:
    first, second = documents(STREAM).values()
    # 60 Wh over 240 s, plus 60 s / 90 s of the straddling reading's 45 Wh
    assert (first.total_energy_wh, first.avg_power_w) == (90.0, 1080.0)
    assert (first.min_power_w, first.max_power_w) == (600.0, 1800.0)  # the 5 kW is not in it
    assert first.avg_voltage_v == pytest.approx(232.0)
    assert first.avg_current_a == pytest.approx(SAMPLES["current_a"])  # None skipped
    assert first.avg_power_factor == pytest.approx(SAMPLES["power_factor"])
    assert first.avg_frequency_hz == pytest.approx(50.0)
    assert (first.readings_in_batch, first.coverage) == (4, 1.0)
    assert (first.building, first.floor, first.window_end_ms) == ("ECE", "1", T0 + W)
    assert (second.total_energy_wh, second.avg_power_w, second.coverage) == (15.0, 1800.0, 0.1)
    assert (second.min_power_w, second.max_power_w, second.readings_in_batch) == (5000.0, 5000.0, 1)


def test_average_power_needs_covered_time() -> None:
    (doc,) = documents([reading(1, T0 + 5_000, 2.0, None)]).values()
    assert (doc.total_energy_wh, doc.avg_power_w) == (2.0, None)
    assert (doc.coverage, doc.readings_in_batch) == (0.0, 1)
    empty = window_document(WindowDelta(METER, T0, 300, ()), None, NOW)
    assert (empty.avg_power_w, empty.min_power_w, empty.avg_voltage_v) == (None, None, None)
    assert (empty.total_energy_wh, empty.readings_in_batch, empty.coverage) == (0.0, 0, 0.0)


def test_coverage_is_capped_at_one() -> None:
    twice = [reading(1, T0 + 299_000, 1.0, T0), reading(2, T0 + 299_500, 1.0, T0 + 500)]
    (doc,) = documents(twice).values()
    assert doc.accumulator.covered_s == 598.0
    assert doc.coverage == 1.0


def test_a_late_reading_updates_a_written_window() -> None:
    key = document_id(METER, T0)
    early = documents(STREAM[:3])[key]
    late = group(contributions(STREAM[3], W), 300, {METER: ("ECE", "1")})[0]
    updated = window_document(late, early.accumulator, NOW + 1)
    assert (early.readings_in_batch, updated.readings_in_batch) == (3, 4)
    assert updated == replace(documents(STREAM[:4])[key], updated_at_ms=NOW + 1)
    again = WindowDelta(METER, T0, 300, tuple(contributions(STREAM[0], W)), "ECE", "1")
    redelivered = window_document(again, updated.accumulator, NOW)
    assert redelivered == replace(updated, updated_at_ms=NOW)


CONTRACT_FIELDS = [
    "meter_id", "building", "floor", "window_start", "window_end", "timestamp",
    "total_energy_wh", "avg_power_w", "min_power_w", "max_power_w", "avg_voltage_v",
    "avg_current_a", "avg_power_factor", "avg_frequency_hz", "readings_in_batch", "coverage",
    "updated_at",
]  # fmt: skip


def test_document_fields_are_the_contracts() -> None:
    doc = documents(STREAM)[document_id(METER, T0)]
    fields = doc.fields()
    # the contract, then its extensions
    assert list(fields) == [
        *CONTRACT_FIELDS,
        "site",
        "import_energy_wh",
        "export_energy_wh",
        "net_energy_wh",
        "estimated_energy_wh",
        "estimated_export_wh",
    ]
    assert fields["import_energy_wh"] == fields["net_energy_wh"] == fields["total_energy_wh"]
    assert fields["window_start"] == fields["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert fields["window_end"] == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert fields["updated_at"] == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert all(fields[k].tzinfo is UTC for k in ("window_start", "window_end", "updated_at"))
    assert (fields["meter_id"], fields["total_energy_wh"], fields["coverage"]) == (METER, 90.0, 1.0)
    converted = doc.fields(iso_utc)
    assert converted == fields | {
        "window_start": "2026-01-01T00:00:00.000Z",
        "window_end": "2026-01-01T00:05:00.000Z",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T01:00:00.000Z",
    }


# --- properties: a whole stream --------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.integers(1, 1_000_000),  # ms since the previous reading
        st.booleans(),  # after a gap: no interval
        st.floats(0, 1000, allow_nan=False),  # energy, Wh
        st.floats(0, 20_000, allow_nan=False),  # power, W
    ),
    min_size=1,
    max_size=40,
)


def stream(drawn: list[tuple[int, bool, float, float]]) -> list[IncomingReading]:
    readings: list[IncomingReading] = []
    ts = T0 + 123_456
    for seq, (gap, broken, energy, power) in enumerate(drawn, start=1):
        start = None if broken or not readings else ts
        ts += gap
        readings.append(reading(seq, ts, energy, start, power_w=power))
    return readings


def assert_same(a: dict[str, WindowDoc], b: dict[str, WindowDoc]) -> None:
    assert a.keys() == b.keys()
    for key, doc in a.items():
        mine, theirs = doc.fields(), b[key].fields()
        for name, value in mine.items():
            if isinstance(value, float):
                assert theirs[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, name)
            else:
                assert theirs[name] == value, (key, name)
        assert doc.accumulator.seqs == b[key].accumulator.seqs


def merge_in_order(chunks: list[list[Contribution]], window_s: int) -> dict[str, WindowDoc]:
    """Each chunk merged into what the sink already holds, as successive flushes do."""
    held: dict[str, WindowDoc] = {}
    for chunk in chunks:
        for delta in group(chunk, window_s, {METER: ("ECE", "1")}):
            old = held.get(delta.document_id)
            existing = old.accumulator if old else None
            held[delta.document_id] = window_document(delta, existing, NOW)
    return held


@settings(max_examples=150, deadline=None)
@given(drawn=steps, window_s=st.sampled_from([10, 60, 300, 900]), data=st.data())
def test_a_stream_keeps_every_wh_and_every_reading(
    drawn: list[tuple[int, bool, float, float]], window_s: int, data: st.DataObject
) -> None:
    readings = stream(drawn)
    docs = documents(readings, window_s)
    total = sum(r.energy_wh for r in readings)
    assert math.isclose(sum(d.total_energy_wh for d in docs.values()), total, rel_tol=1e-9)
    assert sum(d.readings_in_batch for d in docs.values()) == len(readings)
    spans = sum(r.ts_ms - r.interval_start_ms for r in readings if r.interval_start_ms is not None)
    covered = sum(d.accumulator.covered_s for d in docs.values())
    assert covered == pytest.approx(spans / 1000, rel=1e-9, abs=1e-9)
    assert all(0.0 <= d.coverage <= 1.0 for d in docs.values())
    # two bridges on a shared subscription: each sees some readings, merged one after the other
    mine = data.draw(st.lists(st.booleans(), min_size=len(readings), max_size=len(readings)))
    halves: list[list[Contribution]] = [[], []]
    for r, first in zip(readings, mine, strict=True):
        halves[0 if first else 1].extend(contributions(r, window_s * 1000))
    assert_same(docs, merge_in_order(halves, window_s))


@settings(max_examples=150, deadline=None)
@given(drawn=steps, window_s=st.sampled_from([60, 300]), data=st.data())
def test_order_and_duplicates_do_not_matter(
    drawn: list[tuple[int, bool, float, float]], window_s: int, data: st.DataObject
) -> None:
    readings = stream(drawn)
    items = [c for r in readings for c in contributions(r, window_s * 1000)]
    again = data.draw(st.lists(st.sampled_from(items), max_size=len(items)))
    shuffled = data.draw(st.permutations(items + again))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=5)))
    chunks = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    assert_same(documents(readings, window_s), merge_in_order(chunks, window_s))


def test_firestore_transactions_keep_every_meter_of_a_window_together() -> None:
    from campus_energy.backends.firestore.sink import PER_TRANSACTION, transactions
    from campus_energy.core.windows import group

    items = [
        Contribution(f"m{i:03d}", w * 300_000, 1, 1.0, 300.0, True)
        for i in range(100)
        for w in range(6)
    ]
    deltas = group(items, 300, {})
    chunks = transactions(deltas, "per-window")
    windows = [{d.window_start_ms for d in chunk} for chunk in chunks]
    assert sum(len(w) for w in windows) == 6  # each window's document in exactly one chunk
    assert all(len(c) <= PER_TRANSACTION * 100 for c in chunks)
    assert [len(c) for c in transactions(deltas, "per-meter")] == [250, 250, 100]
