"""Validating a reading that arrives over MQTT: a clean `IncomingReading` or a `Malformed` verdict.

Beyond its form (JSON, schema, types, timestamps), a reading must be
plausible for its meter (`Limits`, from the meter's configuration and profile),
else it is refused as "implausible":

- `|power_w|` at most the meter's `max_power_w`;
- `energy_wh` at most `max_power_w` over its interval (`ts - interval_start`),
  times `ENERGY_FACTOR`; with no `interval_start`, over the longest interval;
- every optional number within `BOUNDS`;
- `energy_export_wh` (exported energy, a field added to the contract's) bounded
  as `energy_wh` is; an older logger's negative `energy_wh` (its signed
  trapezoid, sent before directions were split) is read as export;
- an estimate (`estimated_energy_wh`, `estimated_export_wh` over
  (`estimated_start`, `ts`]: a gap the meter's registers bridged) not negative,
  import and export together at most `max_power_w` over its span (the bound
  the logger holds its estimates to), over a span of at most the meter's
  `max_estimate_gap_s`. An estimate that fails is dropped, not the reading:
  its measured energy and samples still count (`Admitted.estimate_refused`
  says why, for the bridge to count).

The span a reading's energy is split across is bounded: an interval longer
than the meter's longest integrated interval (`max_gap_s` plus `SPAN_SLACK`)
is cut to its last `max_interval_s` before `ts`, so one reading touches a
bounded number of windows. A logger's own reading spans more only when its
wall clock was stepped forward between two polls; its energy was measured on
the monotonic clock over at most `max_gap_s`, so it belongs there.

When a signing key is given, the payload must carry a valid `sig`
(`core.signatures`; kind "signature").

Pure: the time it is now, the limits and the key come in as arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campus_energy.core.energy import SLEW, UWH_PER_WH
from campus_energy.core.readings import PAYLOAD_SCHEMA
from campus_energy.core.signatures import signature_problem
from campus_energy.core.timestamps import datetime_ms
from campus_energy.core.windows import IncomingReading

MAX_PAYLOAD_BYTES = 64 * 1024
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
FUTURE_TOLERANCE_MS = 3_600_000  # a logger's clock may run this far ahead of ours
MAX_SEQ = 2**63 - 1
OPTIONAL_NUMBERS = ("voltage_v", "current_a", "power_factor", "frequency_hz", "energy_total_wh")
# Physical bounds of the optional numbers (inclusive); a value outside is implausible.
BOUNDS: Mapping[str, tuple[float, float]] = {
    "voltage_v": (0.0, 1e6),
    "current_a": (-1e6, 1e6),
    "power_factor": (-1.0, 1.0),
    "frequency_hz": (0.0, 1000.0),
    "energy_total_wh": (0.0, MAX_SEQ / UWH_PER_WH),  # the logger counts whole µWh in 64 bits
}
CEILING_POWER_W = 1e9  # |power| of a meter without a configured or profile limit
FALLBACK_INTERVAL_S = 3600.0  # longest interval of a meter the configuration does not list
SPAN_SLACK = 0.01  # ts - interval_start may exceed the meter's max_gap_s by 1 %: clock rates
# The logger measures an interval on the monotonic clock but stamps readings with the wall
# clock; after the wall clock is stepped back its stamps advance at (1 - SLEW) of real time,
# so an interval's energy may cover up to 1 / (1 - SLEW) times its span of stamps. On top:
# 1 % for clock rates and rounding, and one µWh (the logger's unit).
ENERGY_FACTOR = (1 + SPAN_SLACK) / (1 - SLEW)
ENERGY_ROUNDING_WH = 1 / UWH_PER_WH
# An estimate covers at most this long a gap (a logger estimates across no longer one: its
# meters.max_estimate_gap_s is at most this): a bound on the windows one reading can touch,
# 288 of 5 minutes, 1,440 of a minute.
MAX_ESTIMATE_SPAN_S = 86_400.0


@dataclass(frozen=True)
class Limits:
    """What one meter can plausibly send: its largest |power| and longest integrated interval."""

    max_power_w: float = CEILING_POWER_W
    max_interval_s: float = FALLBACK_INTERVAL_S
    max_estimate_s: float = MAX_ESTIMATE_SPAN_S  # the longest gap an estimate may bridge

    @classmethod
    def of(
        cls,
        max_power_w: float | None,
        max_gap_s: float,
        bound_s: float | None,
        max_estimate_s: float = MAX_ESTIMATE_SPAN_S,
    ) -> Limits:
        """A meter's limits: its power limit (None: the ceiling) and `max_gap_s` with slack,
        or `bound_s` (the bridge's `max_interval_s`) when one is configured and longer: a
        bound shorter than the meter's own longest interval would cut, and then refuse as
        implausible, the real readings of a meter that missed a poll or two."""
        own_s = max_gap_s * (1 + SPAN_SLACK)
        return cls(
            max_power_w=CEILING_POWER_W if max_power_w is None else max_power_w,
            max_interval_s=own_s if bound_s is None else max(bound_s, own_s),
            max_estimate_s=min(max_estimate_s * (1 + SPAN_SLACK), MAX_ESTIMATE_SPAN_S),
        )

    def max_energy_wh(self, span_s: float) -> float:
        """The most energy an interval of `span_s` seconds of timestamps can hold."""
        return self.max_power_w * span_s / 3600 * ENERGY_FACTOR + ENERGY_ROUNDING_WH


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Admitted:
    """A valid reading; `span_s` is set when its interval was longer and has been cut."""

    reading: IncomingReading
    span_s: float | None = None
    estimate_refused: Malformed | None = None  # the estimate it carried, dropped: why


@dataclass(frozen=True)
class Malformed:
    """Why a message was refused. `kind` is a short stable name, used to count and log once."""

    kind: str
    reason: str


class _Refused(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict = Malformed(kind, reason)


def _no_constants(name: str) -> float:
    raise _Refused("not-finite", f"{name} is not a number JSON allows")


def _number(body: dict[str, Any], key: str, *, required: bool) -> float | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _Refused("missing", f"{key!r} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused("types", f"{key!r} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise _Refused("not-finite", f"{key!r} is too large") from None
    if not math.isfinite(number):
        raise _Refused("not-finite", f"{key!r} is not finite")
    return number


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Refused("types", f"{key!r} must be a string, got {type(value).__name__}")
    return value


def parse_time_ms(value: Any, key: str) -> int:
    """ISO 8601 UTC ('2026-01-02T03:04:05.678Z') to epoch ms."""
    if not isinstance(value, str):
        raise _Refused("types", f"{key!r} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Refused("timestamp", f"{key!r} is not ISO 8601: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise _Refused("timestamp", f"{key!r} has no time zone (UTC expected)")
    return datetime_ms(moment)


def _within(key: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise _Refused("implausible", f"{key!r} is {value:g}, outside [{low:g}, {high:g}]")


def _bounded_start(start_ms: int | None, ts_ms: int, limits: Limits) -> int | None:
    """`start_ms`, or the start of the meter's longest interval before `ts_ms` if later."""
    if start_ms is None:
        return None
    return max(start_ms, ts_ms - math.floor(limits.max_interval_s * 1000))


def _plausible(
    energy: float, power: float | None, start_ms: int | None, ts_ms: int, limits: Limits
) -> None:
    ceiling = limits.max_power_w
    _within("power_w", power, -ceiling, ceiling)
    span_s = limits.max_interval_s if start_ms is None else (ts_ms - start_ms) / 1000
    most = limits.max_energy_wh(span_s)
    if energy > most:
        raise _Refused(
            "implausible",
            f"'energy_wh' is {energy:g}, more than {ceiling:g} W can deliver in {span_s:g} s "
            f"({most:g} Wh)",
        )


def _estimate(body: dict[str, Any], ts_ms: int, limits: Limits) -> tuple[float, float, int | None]:
    """The reading's estimate (import, export, start of its span), checked: (0, 0, None) when
    it has none."""
    guessed = _number(body, "estimated_energy_wh", required=False)
    guessed_export = _number(body, "estimated_export_wh", required=False)
    start = body.get("estimated_start")
    if guessed is None and guessed_export is None and start is None:
        return 0.0, 0.0, None
    if start is None:
        raise _Refused("missing", "'estimated_start' is missing")
    start_ms = parse_time_ms(start, "estimated_start")
    span_s = (ts_ms - start_ms) / 1000
    if not 0 < span_s <= limits.max_estimate_s:
        raise _Refused(
            "implausible" if span_s > 0 else "timestamp",
            f"'estimated_start' is {span_s:g} s before 'ts' "
            f"(0 < span ≤ {limits.max_estimate_s:g}: the meter's max_estimate_gap_s)",
        )
    most = limits.max_power_w * span_s / 3600 * (1 + SPAN_SLACK) + ENERGY_ROUNDING_WH
    for name, amount in (("estimated_energy_wh", guessed), ("estimated_export_wh", guessed_export)):
        if amount is not None and amount < 0:
            raise _Refused("types", f"{name!r} is negative: {amount}")
    total = (guessed or 0.0) + (guessed_export or 0.0)
    if total > most:
        raise _Refused(
            "implausible",
            f"the estimate is {total:g} Wh, more than {limits.max_power_w:g} W can deliver in "
            f"{span_s:g} s ({most:g} Wh)",
        )
    return guessed or 0.0, guessed_export or 0.0, start_ms


def _parse(
    topic: str,
    raw: bytes,
    prefix: str | Mapping[str, str],
    now_ms: int,
    meters: Collection[str] | None,
    limits: Mapping[str, Limits],
    fallback: Limits,
    key: bytes | None,
    sites: Mapping[str, str],
) -> Admitted:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise _Refused("oversized", f"{len(raw)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, over-long integers
        raise _Refused("not-json", f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise _Refused("not-object", f"a JSON {type(body).__name__}, not an object")
    if key is not None:
        problem = signature_problem(body, key)
        if problem is not None:
            raise _Refused("signature", problem)
    schema = body.get("schema")
    if type(schema) is not int or schema != PAYLOAD_SCHEMA:
        raise _Refused(
            "schema", f"schema {str(body.get('schema'))[:40]!r}, expected {PAYLOAD_SCHEMA}"
        )
    meter_id = body.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise _Refused("missing", "'meter_id' is missing")
    roots = {prefix: ""} if isinstance(prefix, str) else prefix
    tail = f"/{meter_id}/reading"
    root = topic[: -len(tail)] if topic.endswith(tail) else ""
    if not root or root not in roots:
        raise _Refused("topic", f"meter {meter_id[:80]!r} published on {topic[:200]!r}")
    site = roots[root]
    if meters is not None and meter_id not in meters:
        raise _Refused("unknown-meter", f"meter {meter_id[:80]!r} is not configured")
    if meter_id in sites and sites[meter_id] != site:
        raise _Refused(
            "site",
            f"meter {meter_id[:80]!r} of site {sites[meter_id]!r} published on {topic[:200]!r}",
        )
    # The topic decides the site; a payload naming another configured site is a reading out
    # of its place. Any other name is not one: a logger whose [site].id differs from the
    # bridge's publishes its default site's meters under the same root.
    named = body.get("site", site)
    if not isinstance(named, str) or (named != site and named in roots.values()):
        raise _Refused("site", f"'site' {str(named)[:80]!r} is not the topic's {site!r}")
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise _Refused("types", f"'seq' must be a positive integer, got {str(seq)[:40]!r}")
    if "ts" not in body:
        raise _Refused("missing", "'ts' is missing")
    ts_ms = parse_time_ms(body["ts"], "ts")
    if ts_ms < EARLIEST_MS:
        raise _Refused("timestamp", f"ts {body['ts']} is before 2000")
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise _Refused("timestamp", f"ts {body['ts']} is in the future")
    start = body.get("interval_start")
    start_ms = None if start is None else parse_time_ms(start, "interval_start")
    if start_ms is not None and start_ms >= ts_ms:
        raise _Refused("timestamp", "'interval_start' is not before 'ts'")
    energy = _number(body, "energy_wh", required=True)
    assert energy is not None
    exported = _number(body, "energy_export_wh", required=False)
    if exported is None and energy < 0:  # an older logger's signed trapezoid: an export
        energy, exported = 0.0, -energy
    exported = exported or 0.0
    for name, amount in (("energy_wh", energy), ("energy_export_wh", exported)):
        if amount < 0:
            raise _Refused("types", f"{name!r} is negative: {amount}")
    power = _number(body, "power_w", required=True)
    values = {key: _number(body, key, required=False) for key in OPTIONAL_NUMBERS}
    meter_limits = limits.get(meter_id, fallback)
    bounded = _bounded_start(start_ms, ts_ms, meter_limits)
    _plausible(energy + exported, power, bounded, ts_ms, meter_limits)
    for name, (low, high) in BOUNDS.items():
        _within(name, values[name], low, high)
    try:
        guessed, guessed_export, gap_start_ms = _estimate(body, ts_ms, meter_limits)
        dropped = None
    except _Refused as refused:  # the reading stands without it
        guessed, guessed_export, gap_start_ms = 0.0, 0.0, None
        dropped = refused.verdict
    reading = IncomingReading(
        meter_id=meter_id,
        ts_ms=ts_ms,
        seq=seq,
        energy_wh=energy,
        interval_start_ms=bounded,
        power_w=power,
        voltage_v=values["voltage_v"],
        current_a=values["current_a"],
        power_factor=values["power_factor"],
        frequency_hz=values["frequency_hz"],
        building=_text(body, "building"),
        floor=_text(body, "floor"),
        site=site,
        export_wh=exported,
        estimated_wh=guessed,
        estimated_export_wh=guessed_export,
        estimated_start_ms=gap_start_ms,
    )
    cut = None if start_ms is None or bounded == start_ms else (ts_ms - start_ms) / 1000
    return Admitted(reading, cut, dropped)


def admit(
    topic: str,
    raw: bytes,
    *,
    prefix: str | Mapping[str, str],
    now_ms: int,
    meters: Collection[str] | None = None,
    limits: Mapping[str, Limits] | None = None,
    fallback: Limits = DEFAULT_LIMITS,
    key: bytes | None = None,
    sites: Mapping[str, str] | None = None,
) -> Admitted | Malformed:
    """Validate one `<root>/<meter_id>/reading` message.

    `meters`: the known ids (None: any meter); `limits`: per meter (a meter not in it
    gets `fallback`); `key`: the signing key (None: a `sig` is ignored). `prefix`: the topic
    root, or every site's root mapped to the site's id (the reading is that site's);
    `sites`: each known meter's site (a meter publishing under another site's root is
    refused, and so is a payload whose `site` is not its topic's).
    """
    try:
        return _parse(topic, raw, prefix, now_ms, meters, limits or {}, fallback, key, sites or {})
    except _Refused as refused:
        return refused.verdict
    except RecursionError:
        return Malformed("not-json", "nested too deeply")
    except (ValueError, TypeError, OverflowError) as exc:  # never a crash on bad input
        return Malformed("types", str(exc)[:200])


def parse_reading(
    topic: str,
    raw: bytes,
    *,
    prefix: str | Mapping[str, str],
    now_ms: int,
    meters: Collection[str] | None = None,
    limits: Mapping[str, Limits] | None = None,
    fallback: Limits = DEFAULT_LIMITS,
    key: bytes | None = None,
    sites: Mapping[str, str] | None = None,
) -> IncomingReading | Malformed:
    """`admit`, for callers that need only the reading (its span already bounded)."""
    found = admit(
        topic,
        raw,
        prefix=prefix,
        now_ms=now_ms,
        meters=meters,
        limits=limits,
        fallback=fallback,
        key=key,
        sites=sites,
    )
    return found.reading if isinstance(found, Admitted) else found


def fingerprint(reading: IncomingReading) -> bytes:
    """16 bytes that differ between two readings with different values (not place names).

    Two messages with the same (meter, seq) and the same fingerprint are one reading
    delivered twice; with different fingerprints they conflict.
    """
    values = [
        reading.meter_id,
        reading.seq,
        reading.ts_ms,
        reading.interval_start_ms,
        reading.energy_wh,
        reading.power_w,
        reading.voltage_v,
        reading.current_a,
        reading.power_factor,
        reading.frequency_hz,
    ]
    # Added only when there is something in them, so a reading without them keeps the
    # fingerprint it had before they existed (a spool written by an older bridge).
    extended = [
        reading.export_wh,
        reading.estimated_wh,
        reading.estimated_export_wh,
        reading.estimated_start_ms,
    ]
    if any(extended):
        values.extend(extended)
    return hashlib.sha256(json.dumps(values).encode()).digest()[:16]
