"""Validating a reading that arrives over MQTT: a clean `IncomingReading` or a `Malformed` verdict.

Pure: the time it is now comes in as an argument.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campus_energy.core.readings import PAYLOAD_SCHEMA
from campus_energy.core.windows import IncomingReading

MAX_PAYLOAD_BYTES = 64 * 1024
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
FUTURE_TOLERANCE_MS = 3_600_000  # a logger's clock may run this far ahead of ours
LONGEST_INTERVAL_MS = 86_400_000  # no logger integrates across more than a day
MAX_SEQ = 2**63 - 1
OPTIONAL_NUMBERS = ("voltage_v", "current_a", "power_factor", "frequency_hz", "energy_total_wh")


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
    return round(moment.timestamp() * 1000)


def _parse(
    topic: str, raw: bytes, prefix: str, now_ms: int, meters: Collection[str] | None
) -> IncomingReading:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise _Refused("oversized", f"{len(raw)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, over-long integers
        raise _Refused("not-json", f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise _Refused("not-object", f"a JSON {type(body).__name__}, not an object")
    schema = body.get("schema")
    if type(schema) is not int or schema != PAYLOAD_SCHEMA:
        raise _Refused("schema", f"schema {body.get('schema')!r}, expected {PAYLOAD_SCHEMA}")
    meter_id = body.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise _Refused("missing", "'meter_id' is missing")
    if topic != f"{prefix}/{meter_id}/reading":
        raise _Refused("topic", f"meter {meter_id!r} published on {topic!r}")
    if meters is not None and meter_id not in meters:
        raise _Refused("unknown-meter", f"meter {meter_id!r} is not configured")
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise _Refused("types", f"'seq' must be a positive integer, got {seq!r}")
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
    if start_ms is not None and ts_ms - start_ms > LONGEST_INTERVAL_MS:
        raise _Refused("timestamp", "'interval_start' is more than a day before 'ts'")
    energy = _number(body, "energy_wh", required=True)
    assert energy is not None
    if energy < 0:
        raise _Refused("types", f"'energy_wh' is negative: {energy}")
    power = _number(body, "power_w", required=True)
    values = {key: _number(body, key, required=False) for key in OPTIONAL_NUMBERS}
    return IncomingReading(
        meter_id=meter_id,
        ts_ms=ts_ms,
        seq=seq,
        energy_wh=energy,
        interval_start_ms=start_ms,
        power_w=power,
        voltage_v=values["voltage_v"],
        current_a=values["current_a"],
        power_factor=values["power_factor"],
        frequency_hz=values["frequency_hz"],
        building=_text(body, "building"),
        floor=_text(body, "floor"),
    )


def parse_reading(
    topic: str,
    raw: bytes,
    *,
    prefix: str,
    now_ms: int,
    meters: Collection[str] | None = None,
) -> IncomingReading | Malformed:
    """Validate one `<prefix>/<meter_id>/reading` message (`meters`: the known ids, or None)."""
    try:
        return _parse(topic, raw, prefix, now_ms, meters)
    except _Refused as refused:
        return refused.verdict
    except RecursionError:
        return Malformed("not-json", "nested too deeply")
    except (ValueError, TypeError, OverflowError) as exc:  # never a crash on bad input
        return Malformed("types", str(exc)[:200])
