"""Both directions and the estimate, from the logger's reading through its payload to windows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from campus_energy.core.incoming import (
    MAX_ESTIMATE_SPAN_S,
    Admitted,
    Limits,
    Malformed,
    admit,
    parse_reading,
)
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import (
    IncomingReading,
    contributions,
    group,
    window_document,
)

PREFIX = "campus/energy"
METER = "pv-roof"
TOPIC = f"{PREFIX}/{METER}/reading"
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VALUES = {"power_w": -1200.0, "import_energy_wh": 5_000_000.0, "export_energy_wh": 812_345.6}


def parse(body: dict[str, Any], limits: Limits | None = None) -> IncomingReading | Malformed:
    return parse_reading(
        TOPIC,
        json.dumps(body).encode(),
        prefix=PREFIX,
        now_ms=NOW,
        limits={METER: limits} if limits else None,
    )


def test_a_consuming_meters_payload_is_what_it_always_was_plus_zero_export() -> None:
    reading = Reading(METER, NOW - 5_000, 7, 1_250_000, 9_000_000, {"power_w": 900.0}, NOW - 10_000)
    body = reading.payload("ECE", "1")
    assert (body["energy_wh"], body["energy_total_wh"]) == (1.25, 9.0)
    assert (body["energy_export_wh"], body["energy_export_total_wh"]) == (0.0, 0.0)
    assert not any(key.startswith("estimated") for key in body)
    keys = list(body)
    assert keys.index("interval_start") < keys.index("energy_export_wh")  # added after


def test_export_and_the_estimate_travel_to_the_bridge() -> None:
    reading = Reading(
        METER,
        NOW - 5_000,
        8,
        250_000,  # imported over the interval
        9_250_000,
        VALUES,
        None,  # after a gap: nothing integrated...
        export_uwh=0,
        export_total_uwh=4_000_000,
        estimated_uwh=1_000_000,  # ...but the registers counted across it
        estimated_export_uwh=30_000_000,
        estimated_start_ms=NOW - 125_000,
    )
    body = reading.payload("ECE", "R")
    assert body["estimated_energy_wh"] == 1.0
    assert body["estimated_export_wh"] == 30.0
    assert body["estimated_start"] == iso_utc(NOW - 125_000)
    # the register fields ride along under the profiles' names
    assert body["export_energy_wh"] == 812_345.6
    parsed = parse(body)
    assert isinstance(parsed, IncomingReading)
    assert (parsed.energy_wh, parsed.export_wh) == (0.25, 0.0)
    assert (parsed.estimated_wh, parsed.estimated_export_wh) == (1.0, 30.0)
    assert parsed.estimated_start_ms == NOW - 125_000


def test_an_older_loggers_negative_energy_is_export() -> None:
    body = {
        "schema": 1,
        "meter_id": METER,
        "ts": iso_utc(NOW - 5_000),
        "seq": 3,
        "power_w": -800.0,
        "energy_wh": -1.5,
        "energy_total_wh": 10.0,
        "interval_start": iso_utc(NOW - 10_000),
    }
    parsed = parse(body)
    assert isinstance(parsed, IncomingReading)
    assert (parsed.energy_wh, parsed.export_wh) == (0.0, 1.5)


def _gap_body(**changes: Any) -> dict[str, Any]:
    reading = Reading(
        METER,
        NOW - 5_000,
        9,
        0,
        0,
        {"power_w": 100.0},
        None,
        estimated_uwh=2_000_000,
        estimated_export_uwh=0,
        estimated_start_ms=NOW - 65_000,
    )
    return reading.payload("", "") | changes


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"estimated_energy_wh": -1.0}, "types"),
        ({"estimated_start": None}, "missing"),
        ({"estimated_start": iso_utc(NOW - 5_000)}, "timestamp"),  # no span
        (
            {"estimated_start": iso_utc(NOW - 5_000 - int(MAX_ESTIMATE_SPAN_S * 1000) - 1)},
            "implausible",
        ),
        # 60 s at most 1 kW is 16.8 Wh with slack: 20 Wh cannot be
        ({"estimated_energy_wh": 20.0}, "implausible"),
        # nor 10 Wh of import with 10 Wh of export: |power| bounds both together
        ({"estimated_energy_wh": 10.0, "estimated_export_wh": 10.0}, "implausible"),
        ({"estimated_energy_wh": "2"}, "types"),
    ],
)
def test_a_wrong_estimate_is_dropped_and_the_reading_kept(
    changes: dict[str, Any], kind: str
) -> None:
    body = _gap_body(**changes)
    verdict = admit(
        TOPIC, json.dumps(body).encode(), prefix=PREFIX, now_ms=NOW,
        limits={METER: Limits(max_power_w=1000.0)},
    )  # fmt: skip
    assert isinstance(verdict, Admitted)
    assert verdict.estimate_refused is not None and verdict.estimate_refused.kind == kind
    reading = verdict.reading
    assert (reading.estimated_wh, reading.estimated_export_wh) == (0.0, 0.0)
    assert reading.estimated_start_ms is None
    assert reading.power_w == 100.0 and reading.seq == 9  # the rest of it stands


def test_negative_export_is_refused() -> None:
    verdict = parse(_gap_body(energy_export_wh=-0.1), Limits(max_power_w=1000.0))
    assert isinstance(verdict, Malformed) and verdict.kind == "types"


def test_a_plausible_estimate_is_admitted() -> None:
    parsed = parse(_gap_body(), Limits(max_power_w=1000.0))
    assert isinstance(parsed, IncomingReading)
    assert parsed.estimated_wh == 2.0


def test_an_estimate_longer_than_the_meters_max_estimate_gap_is_dropped() -> None:
    # the gap is 60 s; a meter that estimates across at most 30 s cannot have sent it
    limits = Limits.of(1000.0, 17.5, None, max_estimate_s=30.0)
    verdict = admit(
        TOPIC, json.dumps(_gap_body()).encode(), prefix=PREFIX, now_ms=NOW,
        limits={METER: limits},
    )  # fmt: skip
    assert isinstance(verdict, Admitted) and verdict.estimate_refused is not None
    assert verdict.estimate_refused.kind == "implausible"
    assert "max_estimate_gap_s" in verdict.estimate_refused.reason
    assert verdict.reading.estimated_wh == 0.0
    parsed = parse(_gap_body(), Limits.of(1000.0, 17.5, None, 60.0))
    assert isinstance(parsed, IncomingReading) and parsed.estimated_wh == 2.0


def test_the_estimate_spreads_over_the_gap_without_covering_time() -> None:
    # 10:00:55 → 10:06:05 gap, 310 s, estimated 31 Wh import and 3.1 Wh export
    start = 1_767_261_655_000
    reading = IncomingReading(
        METER,
        start + 310_000,
        11,
        energy_wh=0.0,
        estimated_wh=31.0,
        estimated_export_wh=3.1,
        estimated_start_ms=start,
        power_w=50.0,
    )
    found = contributions(reading, 60_000)
    by_window = {c.window_start_ms: c for c in found}
    assert len(found) == len(by_window) == 7  # one contribution per window
    assert sum(c.covered_s for c in found) == 0.0
    assert sum(c.estimated_wh for c in found) == pytest.approx(31.0, abs=1e-12)
    assert sum(c.estimated_export_wh for c in found) == pytest.approx(3.1, abs=1e-12)
    first = by_window[start - start % 60_000]
    assert first.estimated_wh == pytest.approx(31.0 * 5 / 310)
    docs = [window_document(d, None, NOW) for d in group(found, 60, {})]
    assert all(d.coverage == 0.0 and d.total_energy_wh == 0.0 for d in docs)
    assert sum(d.estimated_energy_wh for d in docs) == pytest.approx(31.0, abs=1e-12)


def test_a_reading_with_measured_and_estimated_energy_is_one_contribution_per_window() -> None:
    start = 1_767_261_600_000
    reading = IncomingReading(
        METER,
        start + 125_000,
        12,
        energy_wh=0.5,
        export_wh=0.25,
        interval_start_ms=start + 115_000,
        estimated_wh=6.0,
        estimated_start_ms=start + 5_000,
        power_w=-90.0,
    )
    found = contributions(reading, 60_000)
    assert [c.window_start_ms for c in found] == [start, start + 60_000, start + 120_000]
    doc = {
        d.window_start_ms: d for d in (window_document(x, None, NOW) for x in group(found, 60, {}))
    }
    last = doc[start + 120_000]
    assert last.total_energy_wh == pytest.approx(0.5 * 5 / 10)
    assert last.export_energy_wh == pytest.approx(0.25 * 5 / 10)
    assert last.net_energy_wh == pytest.approx(0.25 * 5 / 10)
    assert last.coverage == pytest.approx(5 / 60)
    assert sum(d.estimated_energy_wh for d in doc.values()) == pytest.approx(6.0)
    # merging it again (a redelivery) changes nothing
    again = window_document(group(found, 60, {})[2], last.accumulator, NOW)
    assert again.accumulator == last.accumulator
