"""Stamps: how a stored `ts_ms` reads, what a meter's stamps are judged by, and how a run's
stamps are corrected.

A stored value may be integer milliseconds (right), fractional milliseconds,
seconds, or ISO 8601 text; `read_stamp` says which and the UTC epoch ms it
stands for. `Rules` judge the result: before `NOT_BEFORE_MS` a clock was never
set, after `not_after_ms` it was set ahead, and a step between two readings is
plausible when it is about their seq distance × the poll interval. `Retime`
is the correction a plan gives a run: read the stored value, convert local
time stored as UTC, then shift.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import Enum

from campus_energy.core.timestamps import ONE_MS, floor_ms

Raw = int | float | str  # a `ts_ms` value as the store holds it

NOT_BEFORE_MS = 1_262_304_000_000  # 2010-01-01Z: earlier stamps come from a clock never set
SECONDS_FROM = 946_684_800  # 2000-01-01Z in epoch seconds ...
SECONDS_BELOW = 100_000_000_000  # ... up to here (1973 as ms), a stored value is seconds
MIN_TOLERANCE_MS = 30_000
_EPOCH = datetime(1970, 1, 1)


class Fmt(Enum):
    """How a timestamp is written in the store."""

    MS = "integer milliseconds"
    REAL = "fractional milliseconds"
    SECONDS = "seconds instead of milliseconds"
    TEXT = "text timestamps"


class Era(Enum):
    OK = "ok"
    EARLY = "before clock sync"
    LATE = "ahead of the clock"


def parse_text(text: str) -> int | None:
    """UTC epoch ms of an ISO 8601 text; without a zone it is read as UTC (local time shows later
    by its jumps). None when it is not a time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return floor_ms(moment)


def read_stamp(raw: object) -> tuple[Fmt, int] | None:
    """How a stored `ts_ms` is written and the UTC epoch ms it stands for (None: unreadable)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        if SECONDS_FROM <= raw < SECONDS_BELOW:
            return Fmt.SECONDS, raw * 1000
        return Fmt.MS, raw
    if isinstance(raw, float):
        if not math.isfinite(raw) or abs(raw) >= 2.0**61:
            return None
        if SECONDS_FROM <= raw < SECONDS_BELOW:
            return Fmt.SECONDS, math.floor(raw * 1000)
        return Fmt.REAL, math.floor(raw)
    if isinstance(raw, str):
        ms = parse_text(raw)
        return None if ms is None else (Fmt.TEXT, ms)
    return None


def local_to_utc_ms(ms: int, zone: tzinfo, fold: int = 0) -> int:
    """The UTC epoch ms of a local wall time that was stored as if it were UTC."""
    naive = _EPOCH + ms * ONE_MS
    offset = naive.replace(tzinfo=zone, fold=fold).utcoffset()
    return ms if offset is None else ms - offset // ONE_MS


def typical_interval_ms(points: Iterable[tuple[int, int]]) -> int | None:
    """The usual step between readings one seq apart, from `(seq, ts_ms)` points (any order)."""
    ordered = sorted(points)
    steps = [
        b_ts - a_ts
        for (a_seq, a_ts), (b_seq, b_ts) in itertools.pairwise(ordered)
        if b_seq - a_seq == 1 and b_ts > a_ts
    ]
    if not steps:
        return None
    median = statistics.median_low(steps)
    return round(median / 1000) * 1000 if median >= 1000 else median


@dataclass(frozen=True)
class Rules:
    """What a meter's timestamps are judged by."""

    interval_ms: int
    max_gap_s: float
    zone: tzinfo
    not_before_ms: int = NOT_BEFORE_MS
    not_after_ms: int | None = None  # later stamps come from a clock set ahead (e.g. now + 1 day)

    @property
    def tolerance_ms(self) -> int:
        return max(2 * self.interval_ms, MIN_TOLERANCE_MS)

    def era(self, ms: int) -> Era:
        if ms < self.not_before_ms:
            return Era.EARLY
        if self.not_after_ms is not None and ms > self.not_after_ms:
            return Era.LATE
        return Era.OK

    def span(self, seq_a: int, seq_b: int) -> int:
        """The time `seq_b - seq_a` readings take at the meter's poll interval."""
        return (seq_b - seq_a) * self.interval_ms

    def follows(self, a_ms: int, a_seq: int, b_ms: int, b_seq: int) -> bool:
        """Whether a reading at b_ms can come after one at a_ms, seq distance considered."""
        step = b_ms - a_ms
        return step > 0 and step >= self.span(a_seq, b_seq) - self.tolerance_ms

    def utc(self, ms: int, fold: int = 0) -> int:
        return local_to_utc_ms(ms, self.zone, fold)


@dataclass(frozen=True)
class Retime:
    """Where a run's readings go: read the stored value, convert local time, then shift."""

    fmt: Fmt = Fmt.MS
    zone: tzinfo | None = None  # per reading (the offset changes within the run)
    fold: int = 0  # which of a repeated local hour (0: the first)
    shift_ms: int = 0

    @property
    def per_row(self) -> bool:
        """Whether readings move by different amounts (else: one shift for the whole run)."""
        return self.fmt is not Fmt.MS or self.zone is not None

    @property
    def changes(self) -> bool:
        return self.per_row or self.shift_ms != 0

    def apply(self, ms: int) -> int:
        """The new ts_ms of a reading whose stored value reads as `ms`."""
        if self.zone is not None:
            ms = local_to_utc_ms(ms, self.zone, self.fold)
        return ms + self.shift_ms
