"""What the alerts service learns from the broker as it happens: each meter's latest reading and
retained status, the energy of each UTC quarter hour (the running demand interval is made of
them: every local 15-, 30- and 60-minute interval of every zone starts on a UTC quarter hour),
and the meter's own register beside its integrated total (for register-drift).

The register is judged as the logger judges it (`core.witness`): a register that goes
backwards or jumps (a meter replaced, reset, rolled over) is an event, and register-drift
starts its comparison afresh from the new baseline, never across the event.

Readings are validated by the bridge's own rules (`core.incoming.admit`): form, known meter,
the meter's plausibility limits. A message that fails is counted and otherwise ignored here
(the bridge dead-letters it); nothing a stranger publishes can stop the service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from campus_energy.core.alerts import MeterSeen
from campus_energy.core.incoming import Limits, Malformed, admit
from campus_energy.core.timestamps import datetime_ms
from campus_energy.core.windows import IncomingReading, contributions
from campus_energy.core.witness import RegisterSpec, Witness, judge

QUARTER_MS = 900_000
KEEP_QUARTERS = 8  # two hours: the longest demand interval and the one before it
REGISTER_FIELD = "import_energy_wh"  # the profiles' name for the meter's import register
ANCHOR_EVERY_MS = 3_600_000  # one (integrated, register) pair kept per hour ...
ANCHORS_KEPT = 26  # ... for a little over a day
# The register's layout as the built-in profiles have it (float32 kWh): what its resolution is
# judged by here, where the profile is not known
REGISTER_SPEC = RegisterSpec("float32", 1000.0)
MAX_STATUS_BYTES = 4096
TAKEN_KEPT = 4096  # a meter's counted readings remembered at least (two hours at 2 s polls)


@dataclass(frozen=True)
class Anchor:
    """A meter's integrated total and register at one reading."""

    ts_ms: int
    total_wh: float
    register_wh: float


@dataclass
class LiveState:
    """The service's picture of every configured meter, updated message by message."""

    prefix: str | Mapping[str, str]  # the topic root, or every site's root -> its id
    intervals_s: Mapping[str, float]  # meter id -> poll interval
    limits: Mapping[str, Limits]
    key: bytes | None = None  # the readings' signing key (None: signatures are not checked)
    meters: dict[str, MeterSeen] = field(default_factory=dict)
    quarters: dict[str, dict[int, float]] = field(default_factory=dict)  # meter -> start -> Wh
    anchors: dict[str, list[Anchor]] = field(default_factory=dict)
    registers: dict[str, Witness] = field(default_factory=dict)  # meter -> its register judged
    # meter -> its import register's layout (from its profile; REGISTER_SPEC where unknown)
    register_specs: Mapping[str, RegisterSpec] = field(default_factory=dict)
    register_events: int = 0  # registers seen going backwards or jumping
    # meter -> since when its energy is known here without a break (its first reading's
    # interval start, or after a gap the reading's ts)
    known_from: dict[str, int] = field(default_factory=dict)
    taken: dict[str, set[int]] = field(default_factory=dict)  # meter -> ts of readings counted
    refused: int = 0
    readings: int = 0
    sites: Mapping[str, str] = field(default_factory=dict)  # meter -> its site (`admit`)

    def __post_init__(self) -> None:
        for meter_id, interval_s in self.intervals_s.items():
            self.meters.setdefault(meter_id, MeterSeen(meter_id, interval_s))

    def restore(self, seen: Mapping[str, MeterSeen], anchors: Mapping[str, list[Anchor]]) -> None:
        """What the service knew before a restart (its book), for meters still configured."""
        for meter_id, before in seen.items():
            if meter_id in self.meters:
                interval_s = self.intervals_s[meter_id]
                self.meters[meter_id] = replace(before, interval_s=interval_s)
        for meter_id, kept in anchors.items():
            if meter_id in self.meters:
                self.anchors[meter_id] = list(kept)[-ANCHORS_KEPT:]
                if kept:  # the register is judged from the last anchor on
                    last = kept[-1]
                    self.registers[meter_id] = Witness(last.register_wh, last.ts_ms, trusted=True)

    def seed_from_store(self, last_window_start_ms: Mapping[str, int]) -> None:
        """A meter of which nothing is known (no reading heard, none in the book): its last
        window's start stands in for its last reading (the store's cross-check), so a meter
        silent before the service started is told as silent for that long. The start, not the
        end: the meter's last reading is no earlier than it, and a later window never makes
        a silent meter look alive."""
        for meter_id, start_ms in last_window_start_ms.items():
            seen = self.meters.get(meter_id)
            if seen is not None and seen.last_reading_ms is None:
                self.meters[meter_id] = replace(seen, last_reading_ms=start_ms)

    # -- messages ---------------------------------------------------------------------------

    def message(self, topic: str, payload: bytes, now_ms: int) -> bool:
        """Take one message; False when it was refused (counted)."""
        parts = topic.split("/")
        roots = {self.prefix: ""} if isinstance(self.prefix, str) else self.prefix
        root = "/".join(parts[:-2])
        if topic.endswith("/status") and len(parts) > 2 and root in roots:
            meter_id = parts[-2]
            if self.sites.get(meter_id, roots[root]) != roots[root]:  # under another site's root
                self.refused += 1
                return False
            return self._status(meter_id, payload)
        verdict = admit(
            topic,
            payload,
            prefix=self.prefix,
            now_ms=now_ms,
            meters=self.meters.keys(),
            limits=self.limits,
            key=self.key,
            sites=self.sites,
        )
        if isinstance(verdict, Malformed):
            self.refused += 1
            return False
        total_wh, register_wh = _witnesses(payload)
        self._reading(verdict.reading, total_wh, register_wh)
        return True

    def _reading(
        self, reading: IncomingReading, total_wh: float | None, register_wh: float | None
    ) -> None:
        seen = self.meters[reading.meter_id]
        if seen.last_reading_ms is not None and reading.ts_ms <= seen.last_reading_ms:
            if reading.ts_ms < seen.last_reading_ms - QUARTER_MS:
                return  # a replay of old readings (an outbox draining): not news
        else:
            self.meters[reading.meter_id] = replace(
                seen, last_reading_ms=reading.ts_ms, power_w=reading.power_w
            )
        taken = self.taken.setdefault(reading.meter_id, set())
        if reading.ts_ms in taken:
            return  # a redelivery (QoS 1, an outbox replaying): its energy is counted already
        taken.add(reading.ts_ms)
        self.readings += 1
        start = reading.interval_start_ms
        if start is None:  # nothing integrated: a gap, known only from this reading on
            self.known_from[reading.meter_id] = reading.ts_ms
        else:
            self.known_from.setdefault(reading.meter_id, start)
        quarters = self.quarters.setdefault(reading.meter_id, {})
        for part in contributions(reading, QUARTER_MS):
            quarters[part.window_start_ms] = quarters.get(part.window_start_ms, 0.0) + (
                part.energy_wh
            )
        for old in sorted(quarters)[:-KEEP_QUARTERS]:
            del quarters[old]
        if len(taken) > TAKEN_KEPT:  # the readings of the quarters kept, and a margin
            oldest = min(quarters) if quarters else reading.ts_ms
            taken.intersection_update({ts for ts in taken if ts >= oldest})
        if register_wh is not None and total_wh is not None:
            self._anchor(reading, total_wh, register_wh)

    def _anchor(self, reading: IncomingReading, total: float, register_wh: float) -> None:
        kept = self.anchors.setdefault(reading.meter_id, [])
        if kept and reading.ts_ms <= kept[-1].ts_ms:
            return
        limits = self.limits.get(reading.meter_id)
        judged = judge(
            self.registers.get(reading.meter_id, Witness()),
            register_wh,
            reading.ts_ms,
            spec=self.register_specs.get(reading.meter_id, REGISTER_SPEC),
            max_power_w=limits.max_power_w if limits is not None else Limits().max_power_w,
            register=REGISTER_FIELD,
            gap=False,
        )
        self.registers[reading.meter_id] = judged.witness
        if judged.event is not None:
            self.register_events += 1
        if judged.event is not None or not judged.witness.trusted:
            kept.clear()  # replaced, reset, rolled over or jumped: no comparison across it
            return
        anchor = Anchor(reading.ts_ms, total, register_wh)
        if len(kept) > 1 and kept[-1].ts_ms - kept[-2].ts_ms < ANCHOR_EVERY_MS:
            kept[-1] = anchor  # the newest anchor follows the latest reading until an hour on
        else:
            kept.append(anchor)
        del kept[:-ANCHORS_KEPT]

    def _status(self, meter_id: str, payload: bytes) -> bool:
        seen = self.meters.get(meter_id)
        if seen is None or len(payload) > MAX_STATUS_BYTES:
            self.refused += seen is not None
            return False
        if not payload:  # a retained status cleared
            self.meters[meter_id] = replace(seen, status=None, status_ms=None, status_detail="")
            return True
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise TypeError("not an object")
            state = doc["state"]
            ts_ms = _iso_ms(doc["ts"]) if doc.get("ts") else None
            detail = str(doc.get("detail") or "")[:200]
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):
            self.refused += 1
            return False
        if state not in ("online", "offline", "error"):
            self.refused += 1
            return False
        self.meters[meter_id] = replace(seen, status=state, status_ms=ts_ms, status_detail=detail)
        return True

    # -- what an evaluation reads -----------------------------------------------------------

    def power_of(self, terms: Mapping[str, float], now_ms: int) -> float | None:
        """Σ weight × each member's latest power; None when a member has none or is stale
        (no reading within 3 polls)."""
        total = 0.0
        for meter_id, weight in terms.items():
            seen = self.meters.get(meter_id)
            if seen is None or seen.power_w is None or seen.last_reading_ms is None:
                return None
            if now_ms - seen.last_reading_ms > 3 * seen.interval_s * 1000:
                return None
            total += weight * seen.power_w
        return total

    def energy_of(self, terms: Mapping[str, float], start_ms: int, end_ms: int) -> float:
        """Σ weight × the members' energy in the quarters of [start, end)."""
        return sum(
            weight * wh
            for meter_id, weight in terms.items()
            for quarter, wh in self.quarters.get(meter_id, {}).items()
            if start_ms <= quarter < end_ms
        )

    def reported_since(self, terms: Mapping[str, float], start_ms: int) -> bool:
        """Every member has a reading at or after `start_ms`."""
        return all(
            (self.meters[m].last_reading_ms or 0) >= start_ms for m in terms if m in self.meters
        )

    def unknown_ms(self, terms: Mapping[str, float], start_ms: int, now_ms: int) -> dict[str, int]:
        """Per member, how much of [start, now) its energy is not known here (it came before
        this service heard of the meter, or before a gap)."""
        found = {}
        for meter_id in terms:
            known = self.known_from.get(meter_id, now_ms)
            if known > start_ms:
                found[meter_id] = min(known, now_ms) - start_ms
        return found

    def drift_anchors(self, meter_id: str) -> tuple[Anchor, Anchor] | None:
        """The oldest kept anchor and the newest, when they are a day apart (≥ 23 h)."""
        kept = self.anchors.get(meter_id, [])
        if len(kept) < 2 or kept[-1].ts_ms - kept[0].ts_ms < 23 * 3_600_000:
            return None
        return kept[0], kept[-1]


def _witnesses(payload: bytes) -> tuple[float | None, float | None]:
    """The logger's integrated total and the meter's import register, from a reading already
    admitted (valid JSON, its total bounded by `admit`)."""
    try:
        doc: Any = json.loads(payload)
    except ValueError:
        return None, None
    return _finite(doc.get("energy_total_wh")), _finite(doc.get(REGISTER_FIELD))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value < 1e15 else None


def _iso_ms(text: Any) -> int:
    """A status's time; ValueError unless it is an ISO 8601 time of years 2000..2199."""
    moment = datetime.fromisoformat(str(text)[:40].replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 2000 <= moment.year <= 2199:
        raise ValueError(f"a status time of the year {moment.year}")
    return datetime_ms(moment.astimezone(UTC))
