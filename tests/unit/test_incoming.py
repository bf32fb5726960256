"""Validating MQTT readings: the logger's payload parses back; everything else is a `Malformed`
(malformed, implausible for the meter, unsigned when a key is configured)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.energy import trapezoid_uwh
from campus_energy.core.incoming import (
    DEFAULT_LIMITS,
    EARLIEST_MS,
    ENERGY_FACTOR,
    ENERGY_ROUNDING_WH,
    FUTURE_TOLERANCE_MS,
    MAX_PAYLOAD_BYTES,
    Admitted,
    Limits,
    Malformed,
    admit,
    fingerprint,
    parse_reading,
)
from campus_energy.core.readings import Reading
from campus_energy.core.signatures import canonical, signature, signed
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import IncomingReading

PREFIX = "campus/energy"
METER = "ece-f1-001"
TOPIC = f"{PREFIX}/{METER}/reading"
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VALUES: dict[str, float | None] = {
    "voltage_v": 231.5,
    "current_a": 4.25,
    "power_w": 980.5,
    "power_factor": 0.97,
    "frequency_hz": 50.01,
    "power_w_l1": 326.8,  # an extra profile field rides along
}
LOGGED = Reading(METER, NOW - 5_123, 42, 1_361_805, 9_876_543_210, VALUES, NOW - 10_123)
DROP = object()  # a change that removes the key


def body(**changes: Any) -> dict[str, Any]:
    """The logger's payload for LOGGED, with some keys changed or dropped."""
    payload = LOGGED.payload("ECE", "1") | changes
    return {k: v for k, v in payload.items() if v is not DROP}


def parse(
    payload: dict[str, Any] | bytes, topic: str = TOPIC, meters: set[str] | None = None
) -> IncomingReading | Malformed:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_reading(topic, raw, prefix=PREFIX, now_ms=NOW, meters=meters)


def test_the_loggers_payload_parses_back() -> None:
    assert parse(body()) == IncomingReading(
        meter_id=METER,
        ts_ms=NOW - 5_123,
        seq=42,
        energy_wh=1.361805,
        interval_start_ms=NOW - 10_123,
        power_w=980.5,
        voltage_v=231.5,
        current_a=4.25,
        power_factor=0.97,
        frequency_hz=50.01,
        building="ECE",
        floor="1",
    )


def within(low: float, high: float) -> st.SearchStrategy[float | None]:
    return st.floats(low, high, allow_nan=False) | st.none()


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(EARLIEST_MS + 1, NOW + FUTURE_TOLERANCE_MS),
    interval=st.none() | st.integers(1, 3_600_000),
    seq=st.integers(1, 2**62),
    energy_uwh=st.integers(0, 10**15),
    power=st.floats(-1e6, 1e6, allow_nan=False),
    others=st.tuples(
        within(0, 1e4), within(-1e4, 1e4), within(-1, 1), within(0, 100) | st.just(math.nan)
    ),
    place=st.tuples(st.text(max_size=20), st.text(max_size=5)),
)
def test_any_logged_reading_parses_back(
    ts: int,
    interval: int | None,
    seq: int,
    energy_uwh: int,
    power: float,
    others: tuple[float | None, ...],
    place: tuple[str, str],
) -> None:
    names = ("voltage_v", "current_a", "power_factor", "frequency_hz")
    values = {"power_w": power, **dict(zip(names, others, strict=True))}
    start = None if interval is None else ts - interval
    # no more than the meter's largest power can deliver over the interval
    most_uwh = DEFAULT_LIMITS.max_power_w * (interval or 3_600_000) / 3_600_000 * 1e6
    energy_uwh = min(energy_uwh, math.floor(most_uwh))
    logged = Reading(METER, ts, seq, energy_uwh, energy_uwh, values, start)
    parsed = parse(logged.payload(*place))
    assert isinstance(parsed, IncomingReading)
    assert (parsed.meter_id, parsed.ts_ms, parsed.interval_start_ms) == (METER, ts, start)
    assert (parsed.seq, parsed.energy_wh, parsed.power_w) == (seq, logged.energy_wh, power)
    published = [None if v is None or math.isnan(v) else v for v in others]  # NaN → null
    assert [getattr(parsed, n) for n in names] == published
    assert (parsed.building, parsed.floor) == place


# --- refusals -------------------------------------------------------------------------------

HOUR = 3_600_000
REFUSALS: list[tuple[str, bytes | dict[str, Any]]] = [
    ("oversized", body(padding="x" * MAX_PAYLOAD_BYTES)),
    ("not-json", b"\xff\xfe{}"),  # not UTF-8
    ("not-json", b'{"schema": 1,'),
    ("not-json", b""),
    ("not-object", b"[1, 2, 3]"),
    ("not-object", b'"a reading"'),
    ("not-object", b"null"),
    ("schema", body(schema=DROP)),
    ("schema", body(schema=2)),
    ("schema", body(schema="1")),
    ("missing", body(meter_id=DROP)),
    ("missing", body(meter_id="")),
    ("missing", body(ts=DROP)),
    ("missing", body(power_w=DROP)),
    ("missing", body(power_w=None)),
    ("missing", body(energy_wh=DROP)),
    ("missing", body(energy_wh=None)),
    ("types", body(power_w=True)),
    ("types", body(energy_wh="1.5")),
    ("types", body(voltage_v="231")),
    ("types", body(seq=0)),
    ("types", body(seq=-3)),
    ("types", body(seq=1.5)),
    ("types", body(seq="7")),
    ("types", body(seq=True)),
    ("types", body(seq=DROP)),
    ("types", body(energy_wh=-0.001)),
    ("types", body(ts=NOW)),  # epoch ms instead of ISO text
    ("types", body(building=5)),
    ("not-finite", body(power_w=float("nan"))),  # json.dumps writes NaN / Infinity literals
    ("not-finite", body(energy_wh=float("inf"))),
    ("not-finite", body(current_a=float("-inf"))),
    (
        "not-finite",
        json.dumps(body()).replace('"energy_wh": 1.361805', '"energy_wh": 1e999').encode(),
    ),
    ("timestamp", body(ts="yesterday")),
    ("timestamp", body(ts="2025-12-31T23:00:00")),  # no zone
    ("timestamp", body(ts="1999-12-31T23:59:59.999Z")),
    ("timestamp", body(ts=iso_utc(NOW + HOUR + 1))),
    ("timestamp", body(interval_start="soon")),
    ("timestamp", body(interval_start=iso_utc(LOGGED.ts_ms))),
    ("timestamp", body(interval_start=iso_utc(LOGGED.ts_ms + 1))),
]


@pytest.mark.parametrize(("kind", "payload"), REFUSALS)
def test_refusals(kind: str, payload: bytes | dict[str, Any]) -> None:
    verdict = parse(payload)
    assert isinstance(verdict, Malformed)
    assert verdict.kind == kind
    assert verdict.reason


def test_the_meter_must_match_the_topic() -> None:
    for topic in (f"{PREFIX}/ece-f1-002/reading", f"other/{METER}/reading", f"{PREFIX}/{METER}"):
        verdict = parse(body(), topic=topic)
        assert isinstance(verdict, Malformed) and verdict.kind == "topic", topic


def test_known_meters_when_given() -> None:
    refused = parse(body(), meters={"ece-f1-002"})
    assert isinstance(refused, Malformed) and refused.kind == "unknown-meter"
    assert isinstance(parse(body(), meters={METER, "ece-f1-002"}), IncomingReading)
    anyone = parse(body(meter_id="never-configured"), topic=f"{PREFIX}/never-configured/reading")
    assert isinstance(anyone, IncomingReading) and anyone.meter_id == "never-configured"


def test_limits_are_inclusive() -> None:
    padded = json.dumps(body(padding="")).encode()
    exact = padded.replace(b'"padding": ""', b'"padding": "' + b"x" * 10 + b'"')
    exact = exact.replace(b"x" * 10, b"x" * (10 + MAX_PAYLOAD_BYTES - len(exact)))
    assert len(exact) == MAX_PAYLOAD_BYTES
    assert isinstance(parse(exact), IncomingReading)
    assert isinstance(parse(body(ts=iso_utc(NOW + HOUR), interval_start=None)), IncomingReading)
    first = parse(body(ts="2000-01-01T00:00:00Z", interval_start=None))
    assert isinstance(first, IncomingReading) and first.ts_ms == EARLIEST_MS
    shifted = parse(body(ts="2026-01-01T05:30:00+05:30", interval_start=None))
    assert isinstance(shifted, IncomingReading) and shifted.ts_ms == NOW


def test_null_values_other_than_power_are_none() -> None:
    nulls = ("voltage_v", "current_a", "power_factor", "frequency_hz", "energy_total_wh")
    for change in ({k: None for k in nulls}, {k: DROP for k in nulls}):
        parsed = parse(body(**change, interval_start=None, building=None, floor=DROP))
        assert isinstance(parsed, IncomingReading)
        assert (parsed.voltage_v, parsed.current_a, parsed.power_factor) == (None, None, None)
        assert (parsed.frequency_hz, parsed.interval_start_ms) == (None, None)
        assert (parsed.building, parsed.floor, parsed.power_w) == ("", "", 980.5)


# --- never an exception ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_random_bytes_are_refused(raw: bytes) -> None:
    assert isinstance(parse(raw), Malformed)


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(), json_values, max_size=8))
def test_random_objects_are_refused(obj: dict[str, Any]) -> None:
    assert isinstance(parse(obj), Malformed)


@settings(max_examples=500, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(body())), json_values, max_size=4))
def test_a_payload_with_random_values_is_parsed_or_refused(changes: dict[str, Any]) -> None:
    verdict = parse(body(**changes))
    assert isinstance(verdict, IncomingReading | Malformed)
    if isinstance(verdict, IncomingReading):
        assert verdict.seq >= 1 and verdict.energy_wh >= 0
        assert EARLIEST_MS <= verdict.ts_ms <= NOW + HOUR


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "oversized"),
        (b"[" * 30_000 + b"]" * 30_000, "not-json"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "not-json"),
        (b'{"schema": 1, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "not-json"),
    ],
)
def test_deep_nesting_is_refused(raw: bytes, kind: str) -> None:
    verdict = parse(raw)
    assert isinstance(verdict, Malformed) and verdict.kind == kind


@pytest.mark.parametrize(
    "raw",
    [
        # an integer too large for a float: math.isfinite raises OverflowError
        json.dumps(body(energy_wh=10**400)).encode(),
        # more than 4300 digits: json.loads raises ValueError (int max str digits), anywhere
        b'{"schema": 1, "x": ' + b"7" * 5000 + b"}",
    ],
)
def test_huge_integers_are_refused_not_raised(raw: bytes) -> None:
    assert isinstance(parse(raw), Malformed)


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"seq": 2**63}, "types"),
        ({"schema": True}, "schema"),
        ({"schema": 1.0}, "schema"),
    ],
)
def test_values_beyond_what_the_pipeline_can_hold_are_refused(
    changes: dict[str, object], kind: str
) -> None:
    verdict = parse(json.dumps(body(**changes)).encode())
    assert isinstance(verdict, Malformed) and verdict.kind == kind


# --- plausibility: the meter's limits ---------------------------------------------------------

SDM120 = Limits.of(20_000.0, 17.5, None)  # a 20 kW meter polled every 5 s
SPAN_MS = LOGGED.ts_ms - NOW + 10_123  # LOGGED's interval: 5 s


def within_limits(
    payload: dict[str, Any] | bytes, limits: Limits = SDM120
) -> IncomingReading | Malformed:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_reading(
        TOPIC, raw, prefix=PREFIX, now_ms=NOW, meters={METER}, limits={METER: limits}
    )


def test_limits_of_a_meter() -> None:
    assert Limits(20_000.0, 17.5 * 1.01) == SDM120
    assert Limits.of(None, 17.5, None).max_power_w == 1e9  # no limit in config or profile
    assert Limits.of(20_000.0, 17.5, 60.0).max_interval_s == 60.0  # bridge.max_interval_s
    # a bound shorter than the meter's own longest interval does not shorten it
    assert Limits.of(20_000.0, 17.5, 5.0).max_interval_s == SDM120.max_interval_s


def test_a_bridge_bound_below_max_gap_s_keeps_a_real_reading_after_missed_polls() -> None:
    """A 15 s interval at 19 kW (two polls missed) is real; a 5 s bound once refused it."""
    start = iso_utc(LOGGED.ts_ms - 15_000)
    verdict = within_limits(
        body(energy_wh=19_000 * 15 / 3600, power_w=19_000.0, interval_start=start),
        Limits.of(20_000.0, 17.5, 5.0),
    )
    assert isinstance(verdict, IncomingReading), verdict
    assert verdict.interval_start_ms == LOGGED.ts_ms - 15_000  # not cut either


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"energy_wh": 1e300}, "implausible"),
        ({"energy_wh": 1.7e308}, "implausible"),
        ({"power_w": 20_000.01}, "implausible"),
        ({"power_w": -20_000.01}, "implausible"),
        ({"power_w": 1e300}, "implausible"),
        ({"energy_wh": 200.0, "interval_start": None}, "implausible"),  # 20 kW × 17.7 s ≈ 98 Wh
        ({"voltage_v": -1.0}, "implausible"),
        ({"voltage_v": 1e300}, "implausible"),
        ({"current_a": -1e7}, "implausible"),
        ({"power_factor": 1.0001}, "implausible"),
        ({"power_factor": -1.5}, "implausible"),
        ({"frequency_hz": 5e3}, "implausible"),
        ({"energy_total_wh": -0.5}, "implausible"),
        ({"energy_total_wh": 1e300}, "implausible"),
        ({"energy_wh": 200.0, "interval_start": iso_utc(LOGGED.ts_ms - 86_399_000)}, "implausible"),
    ],
)
def test_implausible_readings_are_refused(changes: dict[str, Any], kind: str) -> None:
    verdict = within_limits(body(**changes))
    assert isinstance(verdict, Malformed), changes
    assert verdict.kind == kind and verdict.reason


def test_the_limits_themselves_are_plausible() -> None:
    span_s = SPAN_MS / 1000
    most = 20_000 * span_s / 3600 * ENERGY_FACTOR + ENERGY_ROUNDING_WH
    edges = [
        {"power_w": 20_000.0},
        {"power_w": -20_000.0},
        {"energy_wh": most},
        {"energy_wh": 0.0, "interval_start": iso_utc(LOGGED.ts_ms - 17_675)},
        {"energy_wh": 20_000 * 17.675 / 3600 * ENERGY_FACTOR, "interval_start": None},
        {"power_factor": -1.0, "voltage_v": 0.0, "frequency_hz": 0.0, "energy_total_wh": 0.0},
    ]
    for changes in edges:
        assert isinstance(within_limits(body(**changes)), IncomingReading), changes
    above = within_limits(body(energy_wh=math.nextafter(most, math.inf)))
    assert isinstance(above, Malformed) and above.kind == "implausible"


def test_a_logger_behind_a_stepped_back_clock_is_plausible() -> None:
    """Stamps advance at half speed then: full power over 5 s may span 2.5 s of stamps."""
    full = trapezoid_uwh(20_000, 20_000, 5.0) / 1e6
    half = body(energy_wh=full, interval_start=iso_utc(LOGGED.ts_ms - 2_500))
    assert isinstance(within_limits(half), IncomingReading)


def test_the_fallback_applies_to_a_meter_without_limits() -> None:
    unlisted = parse_reading(
        TOPIC,
        json.dumps(body(energy_wh=1e300)).encode(),
        prefix=PREFIX,
        now_ms=NOW,
        limits={"another-meter": SDM120},
    )
    assert isinstance(unlisted, Malformed) and unlisted.kind == "implausible"
    hour = admit(
        TOPIC,
        json.dumps(body(interval_start=iso_utc(LOGGED.ts_ms - 3_600_001))).encode(),
        prefix=PREFIX,
        now_ms=NOW,
    )
    assert isinstance(hour, Admitted) and hour.span_s == 3600.001
    assert hour.reading.interval_start_ms == LOGGED.ts_ms - 3_600_000


@pytest.mark.parametrize("span_ms", [17_676, 120_500, 86_399_000, LOGGED.ts_ms - 1])
def test_a_longer_interval_is_cut_to_the_meters_longest(span_ms: int) -> None:
    """A logger's clock stepped forward between two polls: the energy of at most max_gap_s."""
    raw = json.dumps(body(interval_start=iso_utc(LOGGED.ts_ms - span_ms))).encode()
    found = admit(TOPIC, raw, prefix=PREFIX, now_ms=NOW, limits={METER: SDM120})
    assert isinstance(found, Admitted) and found.span_s == span_ms / 1000
    assert found.reading.interval_start_ms == LOGGED.ts_ms - 17_675  # 17.5 s + 1 %
    assert found.reading.energy_wh == LOGGED.energy_wh
    within = admit(TOPIC, json.dumps(body()).encode(), prefix=PREFIX, now_ms=NOW)
    assert isinstance(within, Admitted) and within.span_s is None


# --- signatures --------------------------------------------------------------------------------

KEY = b"k" * 32


def signed_parse(payload: dict[str, Any] | bytes, key: bytes | None = KEY) -> object:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_reading(TOPIC, raw, prefix=PREFIX, now_ms=NOW, key=key)


def test_a_signed_reading_is_accepted_however_its_json_is_written() -> None:
    payload = signed(body(), KEY)
    assert isinstance(signed_parse(payload), IncomingReading)
    reordered = dict(reversed(list(payload.items())))
    assert isinstance(signed_parse(json.dumps(reordered, indent=2).encode()), IncomingReading)
    assert isinstance(signed_parse(payload, key=None), IncomingReading)  # no key: sig ignored
    assert isinstance(signed_parse(body(sig="anything"), key=None), IncomingReading)


@pytest.mark.parametrize(
    "payload",
    [
        body(),  # unsigned
        body(sig=None),
        body(sig=42),
        body(sig="sha1:00"),
        signed(body(), b"another key of thirty-two bytes!"),
        signed(body(), KEY) | {"energy_wh": 2.0},  # changed after signing
        signed(body(), KEY) | {"building": "elsewhere"},
        signed(body(), KEY) | {"extra": 1},
        signed(body(), KEY) | {"sig": signed(body(), KEY)["sig"].upper()},
        signed(body(), KEY) | {"sig": "hmac-sha256:é"},
    ],
)
def test_unsigned_or_wrongly_signed_readings_are_refused(payload: dict[str, Any]) -> None:
    verdict = signed_parse(payload)
    assert isinstance(verdict, Malformed) and verdict.kind == "signature", payload.get("sig")


def test_the_signature_covers_the_canonical_json() -> None:
    payload = {"b": 1.5, "a": "é", "sig": "ignored"}
    assert canonical(payload) == '{"a":"é","b":1.5}'.encode()
    assert signature(payload, KEY) == signature({"a": "é", "b": 1.5}, KEY)
    assert signature(payload, KEY).startswith("hmac-sha256:") and len(signature(payload, KEY)) == 76


# --- fingerprints ------------------------------------------------------------------------------


def test_a_fingerprint_tells_readings_apart_not_their_place() -> None:
    first = parse(body())
    assert isinstance(first, IncomingReading)
    same = parse(body(building="renamed", floor="9"))
    other = parse(body(energy_wh=1.361806))
    assert isinstance(same, IncomingReading) and isinstance(other, IncomingReading)
    assert fingerprint(first) == fingerprint(same) != fingerprint(other)
    assert len(fingerprint(first)) == 16
