"""Baselines: what an hour's energy usually is, and how far from it is unusual.

A baseline is the median of comparable hours and a robust spread: 1.4826 × the median
absolute deviation (MAD), which equals the standard deviation for normally distributed
samples but is not moved by a few odd ones. An hour deviates when it lies further from the
median than `max(k × spread, floor)` — the floor keeps a very regular load (a spread near
zero) from alarming on trifles.

Comparable hours are the same local wall-clock hour on the same kind of local day in the
weeks before: the same weekday, or — for a holiday — Sundays and other holidays; a weekday
that was a holiday is left out of its weekday's samples. Local hours are compared by their
wall clock, so the 23- and 25-hour days of daylight saving never shift "the same hour last
week". Pure: the zone and the holidays come in as arguments.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from campus_energy.core.alerts import HourEnergy
from campus_energy.core.tariffs import WEEKDAYS
from campus_energy.core.timestamps import datetime_ms, utc_datetime

MAD_SCALE = 1.4826  # MAD × this estimates the standard deviation of a normal sample
MIN_SAMPLES = 4  # fewer comparable hours than this: no baseline
MIN_COVERAGE = 0.9  # an hour counts as a sample only when this much of it was measured
HOLIDAY_LIKE = "sun"  # a holiday is compared with Sundays (and other holidays)


def median(values: Iterable[float]) -> float:
    """The median (the mean of the middle two of an even count). ValueError when empty."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("the median of no values")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def mad(values: Sequence[float]) -> float:
    """The median absolute deviation from the median (unscaled). ValueError when empty."""
    centre = median(values)
    return median(abs(v - centre) for v in values)


@dataclass(frozen=True)
class Baseline:
    """The median of the samples, their robust spread (MAD_SCALE × MAD) and their count."""

    median: float
    spread: float
    samples: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Baseline:
        """ValueError when there are no values."""
        return cls(median(values), MAD_SCALE * mad(values), len(values))

    def threshold(self, k: float, floor: float) -> float:
        """How far from the median is unusual: max(k × spread, floor)."""
        return max(k * self.spread, floor)

    def deviates(self, x: float, k: float, floor: float) -> bool:
        return abs(x - self.median) > self.threshold(k, floor)


def local_hour(start_ms: int, zone: tzinfo) -> datetime:
    """The local wall-clock time of a UTC instant (its fold set in the repeated hour)."""
    return utc_datetime(start_ms).astimezone(zone)


def day_kind(day: date, holidays: Collection[date]) -> str:
    """The kind of day a baseline compares with: its weekday, or a Sunday for a holiday."""
    return HOLIDAY_LIKE if day in holidays else WEEKDAYS[day.weekday()]


def same_hour_samples(
    hours: Iterable[HourEnergy],
    target_ms: int,
    zone: tzinfo,
    weeks: int,
    holidays: Collection[date] = frozenset(),
    min_coverage: float = MIN_COVERAGE,
) -> list[float]:
    """The energies (Wh) of the hours comparable with the local hour starting at `target_ms`,
    oldest first: the same local wall-clock hour on each day of the same kind (`day_kind`)
    within the `weeks` weeks before the target's day, measured for at least
    `min_coverage`. A day without that hour (the spring change) gives none; the 25-hour
    day gives the first of its two."""
    target = local_hour(target_ms, zone)
    kind = day_kind(target.date(), holidays)
    by_start = {h.start_ms: h for h in hours}
    found = []
    for back in range(7 * weeks, 0, -1):
        day = target.date() - timedelta(days=back)
        if day_kind(day, holidays) != kind:
            continue
        start = datetime(day.year, day.month, day.day, target.hour, tzinfo=zone)
        ms = datetime_ms(start)
        hour = by_start.get(ms)
        if hour is None or hour.coverage < min_coverage:
            continue
        if local_hour(ms, zone).hour == target.hour:  # not a wall-clock hour that never was
            found.append(hour.energy_wh)
    return found


def hour_baseline(
    hours: Iterable[HourEnergy],
    target_ms: int,
    zone: tzinfo,
    weeks: int,
    holidays: Collection[date] = frozenset(),
    min_samples: int = MIN_SAMPLES,
) -> Baseline | None:
    """The baseline of the local hour starting at `target_ms`; None with too few samples."""
    samples = same_hour_samples(hours, target_ms, zone, weeks, holidays)
    return Baseline.of(samples) if len(samples) >= min_samples else None
