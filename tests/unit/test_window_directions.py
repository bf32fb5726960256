"""Both directions and the estimate, cut into windows and rolled up: nothing made or lost.

However readings are cut into windows (any window length, any batching of the merges, any
redelivery), the windows' measured import, measured export, estimated import and estimated
export add up to the readings' own, each apart; covered time comes from measured intervals
only (an estimate never adds to it); rollups hold the same sums per direction; and a stored
reading's estimate backs the windows of its gap (reconcile never takes them for orphans).
"""

from __future__ import annotations

import itertools
import math
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.readings import Reading
from campus_energy.core.reconciliation import store_span
from campus_energy.core.rollups import change, recount
from campus_energy.core.windows import (
    Accumulator,
    IncomingReading,
    WindowDoc,
    contributions,
    group,
    window_document,
)

ZONE = ZoneInfo("Asia/Kolkata")
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
METER = "pv-roof"
KINDS = ("energy_wh", "export_wh", "estimated_wh", "estimated_export_wh")


@st.composite
def readings(draw: st.DrawFn) -> list[IncomingReading]:
    """One meter's readings in time order: each integrated from the one before, or not (after a
    gap, then perhaps with an estimate of it); energy in both directions."""
    count = draw(st.integers(1, 25))
    steps = draw(st.lists(st.integers(1, 900_000), min_size=count, max_size=count))
    found = []
    ts = T0 + draw(st.integers(0, 600_000))
    previous: int | None = None
    amounts = st.floats(0, 50, allow_nan=False)
    for seq, step in enumerate(steps, start=1):
        ts += step
        integrated = previous is not None and draw(st.booleans())
        guessed = previous is not None and not integrated and draw(st.booleans())
        found.append(
            IncomingReading(
                meter_id=METER,
                ts_ms=ts,
                seq=seq,
                energy_wh=draw(amounts) if integrated else 0.0,
                power_w=draw(st.floats(-5000, 5000, allow_nan=False)),
                interval_start_ms=previous if integrated else None,
                export_wh=draw(amounts) if integrated else 0.0,
                estimated_wh=draw(amounts) if guessed else 0.0,
                estimated_export_wh=draw(amounts) if guessed else 0.0,
                estimated_start_ms=previous if guessed else None,
            )
        )
        previous = ts
    return found


def totals(items: object) -> list[float]:
    return [math.fsum(getattr(x, kind) for x in items) for kind in KINDS]  # type: ignore[attr-defined]


def merged(batches: list[list[IncomingReading]], window_s: int) -> dict[int, WindowDoc]:
    """The windows the bridge writes, merging the batches one after the other."""
    docs: dict[int, WindowDoc] = {}
    for batch in batches:
        items = [c for r in batch for c in contributions(r, window_s * 1000)]
        for delta in group(items, window_s, {METER: ("SOLAR", "0")}):
            before = docs.get(delta.window_start_ms)
            docs[delta.window_start_ms] = window_document(
                delta, before.accumulator if before else None, 0
            )
    return docs


def close(found: list[float], wanted: list[float]) -> bool:
    return all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9) for a, b in zip(found, wanted, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(
    readings(),
    st.sampled_from([60, 300, 900, 3600]),
    st.lists(st.integers(0, 30), max_size=4),
    st.lists(st.integers(0, 30), max_size=3),
)
def test_splitting_readings_into_windows_keeps_every_direction_and_kind(
    found: list[IncomingReading], window_s: int, cuts: list[int], again: list[int]
) -> None:
    wanted = totals(found)
    # the contributions alone
    items = [c for r in found for c in contributions(r, window_s * 1000)]
    assert close(totals(items), wanted)
    # merged in batches (cut anywhere), some readings delivered again in a later batch
    bounds = sorted({0, len(found), *(min(c, len(found)) for c in cuts)})
    batches = [found[a:b] for a, b in itertools.pairwise(bounds)]
    batches.append([found[i % len(found)] for i in again])
    docs = merged(batches, window_s)
    accumulators = [d.accumulator for d in docs.values()]
    assert close(totals(accumulators), wanted)
    assert close(
        [
            math.fsum(d.total_energy_wh for d in docs.values()),
            math.fsum(d.export_energy_wh for d in docs.values()),
            math.fsum(d.estimated_energy_wh for d in docs.values()),
            math.fsum(d.estimated_export_wh for d in docs.values()),
        ],
        wanted,
    )
    # the same documents as merging everything at once
    whole = merged([found], window_s)
    assert sorted(whole) == sorted(docs)
    for start, doc in whole.items():
        assert close(totals([doc.accumulator]), totals([docs[start].accumulator]))
    # covered time: the measured intervals only, never the estimates' gaps
    measured_s = math.fsum(
        (r.ts_ms - r.interval_start_ms) / 1000 for r in found if r.interval_start_ms is not None
    )
    assert math.isclose(
        math.fsum(a.covered_s for a in accumulators), measured_s, rel_tol=1e-12, abs_tol=1e-9
    )
    for doc in docs.values():
        assert doc.coverage <= 1 + 1e-12
        assert math.isclose(doc.net_energy_wh, doc.total_energy_wh - doc.export_energy_wh)


@settings(max_examples=100, deadline=None)
@given(readings(), st.sampled_from([300, 900]))
def test_rollups_hold_every_direction_and_kind_of_their_windows(
    found: list[IncomingReading], window_s: int
) -> None:
    docs = merged([found], window_s)
    windows = [(start, doc.accumulator) for start, doc in docs.items()]
    days = {change(None, doc, ZONE).day for doc in docs.values()}
    hours_total = [0.0] * 4
    days_total = [0.0] * 4
    for day in days:
        hourly, daily = recount(windows, day, ZONE)
        assert daily is not None
        for i, kind in enumerate(("energy_wh", *KINDS[1:])):
            days_total[i] += getattr(daily, kind)
            hours_total[i] += math.fsum(getattr(s, kind) for s in hourly.values())
    wanted = totals(found)
    assert close(days_total, wanted)
    assert close(hours_total, wanted)
    # a window written afresh adds to its hour and day exactly what it holds
    changes = [change(None, doc, ZONE) for doc in docs.values()]
    assert close(totals(changes), wanted)


def test_a_rewrite_adds_only_what_changed_per_direction() -> None:
    first = IncomingReading(
        METER, T0 + 60_000, 1, 1.0, interval_start_ms=T0, power_w=100.0, export_wh=2.0
    )
    later = IncomingReading(
        METER,
        T0 + 240_000,
        2,
        0.0,
        power_w=-100.0,
        estimated_wh=0.5,
        estimated_export_wh=3.0,
        estimated_start_ms=T0 + 60_000,
    )
    (delta,) = group(contributions(first, 300_000), 300, {})
    doc = window_document(delta, None, 0)
    (delta,) = group(contributions(later, 300_000), 300, {})
    rewritten = window_document(delta, doc.accumulator, 0)
    step = change(doc.accumulator, rewritten, ZONE)
    assert (step.energy_wh, step.export_wh, step.estimated_wh, step.estimated_export_wh) == (
        0.0,
        0.0,
        0.5,
        3.0,
    )
    assert (step.covered_s, step.windows) == (0.0, 0)
    assert rewritten.coverage == doc.coverage == 60 / 300  # the estimate raised nothing
    # and a redelivery adds nothing at all
    again = window_document(delta, rewritten.accumulator, 0)
    assert again.accumulator == rewritten.accumulator


def test_an_estimate_backs_the_windows_of_its_gap() -> None:
    """A stored reading after a gap its registers bridged: every window of the gap has a
    reading behind it (reconcile deletes none of them as an orphan)."""
    before = Reading(METER, T0 + 10_000, 1, 0, 0)
    after = Reading(
        METER,
        T0 + 1_210_000,
        2,
        0,
        0,
        estimated_uwh=4_000_000,
        estimated_export_uwh=0,
        estimated_start_ms=T0 + 10_000,
    )
    span = store_span([before, after], 300_000)
    assert span is not None
    assert sorted(span.backed) == [T0 + k * 300_000 for k in range(5)]
    assert not any(span.orphans(T0 + k * 300_000, T0 + (k + 1) * 300_000) for k in range(4))


def test_an_older_windows_accumulator_reads_as_import_only() -> None:
    stored = {"seqs": [[1, 3]], "energy_wh": 2.5, "covered_s": 300.0, "readings": 3}
    acc = Accumulator.from_dict(stored)
    assert (acc.energy_wh, acc.export_wh, acc.estimated_wh, acc.estimated_export_wh) == (
        2.5,
        0.0,
        0.0,
        0.0,
    )
    assert acc.to_dict() == {**stored, "power_min_w": None, "power_max_w": None, "sums": {}}
