"""Tariffs: dated versions of time-of-use energy rates, standing charges and demand charges.

A tariff is a list of versions, each valid from a local date until the next one's,
so a new version prices what comes after it and never re-prices the past. A
version's energy rate at a moment is the rate of the one time-of-use period that
holds the moment (by local day kind — a weekday, or "holiday" on a holiday —,
local time of day on 15-minute steps, and optionally the month), else the
version's default rate. `check` finds what makes a version ambiguous (two periods
holding one moment) or incomplete (a moment no period holds, without a default).

Pure: local times come in as arguments; the tables are built once per version.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY = "holiday"
DAY_KINDS = (*WEEKDAYS, HOLIDAY)
# Names a period's `days` may use besides the day kinds themselves
DAY_SETS: Mapping[str, tuple[str, ...]] = {
    "weekdays": WEEKDAYS[:5],
    "weekends": WEEKDAYS[5:],
    "holidays": (HOLIDAY,),
    "all": DAY_KINDS,
}
STEP_MIN = 15  # periods start and end on local quarter hours
STEPS = 24 * 60 // STEP_MIN
MONTHS = tuple(range(1, 13))
DEMAND_INTERVALS_MIN = (15, 30, 60)


def day_kinds(names: Iterable[str]) -> frozenset[str]:
    """The day kinds named by `names` (day kinds or the sets of DAY_SETS). Raises ValueError."""
    kinds: set[str] = set()
    for name in names:
        if name in DAY_SETS:
            kinds.update(DAY_SETS[name])
        elif name in DAY_KINDS:
            kinds.add(name)
        else:
            known = ", ".join((*DAY_KINDS, *DAY_SETS))
            raise ValueError(f"unknown day {name!r} (one of: {known})")
    return frozenset(kinds)


def day_kind(day: date, holidays: frozenset[date]) -> str:
    """'holiday' on a holiday, else the weekday ('mon'..'sun')."""
    return HOLIDAY if day in holidays else WEEKDAYS[day.weekday()]


@dataclass(frozen=True)
class Period:
    """A time-of-use period: a rate for the quarter hours [start_min, end_min) of its days.

    An end at or before the start wraps past midnight (22:00-06:00 holds 23:00 and 05:00
    of the same day kind); 00:00-24:00 is the whole day. `months` empty: every month.
    """

    name: str
    rate: Decimal
    days: frozenset[str]
    start_min: int
    end_min: int
    months: frozenset[int] = frozenset()

    def holds(self, kind: str, month: int, minute: int) -> bool:
        if kind not in self.days or (self.months and month not in self.months):
            return False
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min


@dataclass(frozen=True)
class Ratchet:
    """Billed demand is at least `share` of the highest demand of the previous `months`
    billing months, and at least `minimum_kw`."""

    share: Decimal = Decimal(0)
    months: int = 11
    minimum_kw: Decimal = Decimal(0)


@dataclass(frozen=True)
class DemandCharge:
    """A price per kW of the billing month's highest mean power over `interval_min`."""

    interval_min: int
    price_per_kw: Decimal
    ratchet: Ratchet = Ratchet()


@dataclass(frozen=True)
class Rate:
    """What one quarter hour of energy costs: the period's name ('default' for the default
    rate) and its price per kWh."""

    period: str
    per_kwh: Decimal


@dataclass(frozen=True)
class TariffVersion:
    valid_from: date
    periods: tuple[Period, ...] = ()
    default_rate: Decimal | None = None
    standing_per_day: Decimal = Decimal(0)
    standing_per_month: Decimal = Decimal(0)
    demand: DemandCharge | None = None
    _table: dict[tuple[str, int], tuple[Rate | None, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rate(self, kind: str, month: int, minute: int) -> Rate | None:
        """The rate of the quarter hour starting `minute` after local midnight on a day of
        `kind` in `month` (None: no period holds it and there is no default rate)."""
        return self.day_rates(kind, month)[minute // STEP_MIN]

    def day_rates(self, kind: str, month: int) -> tuple[Rate | None, ...]:
        """The rate of each of the 96 quarter hours of a day of `kind` in `month`, the
        same objects for the same period (built once)."""
        key = (kind, month)
        table = self._table.get(key)
        if table is None:
            made: dict[str, Rate] = {}
            found = []
            for step in range(STEPS):
                rate = self._lookup(kind, month, step * STEP_MIN)
                found.append(None if rate is None else made.setdefault(rate.period, rate))
            table = self._table[key] = tuple(found)
        return table

    def _lookup(self, kind: str, month: int, minute: int) -> Rate | None:
        for period in self.periods:
            if period.holds(kind, month, minute):
                return Rate(period.name, period.rate)
        return None if self.default_rate is None else Rate("default", self.default_rate)


@dataclass(frozen=True)
class Tariff:
    id: str
    currency: str
    versions: tuple[TariffVersion, ...]  # in valid_from order, the first one valid from the start
    holidays: frozenset[date] = frozenset()
    decimals: int = 2  # the currency's minor unit: each line item is rounded to it

    _starts: tuple[date, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(v.valid_from for v in self.versions))

    def version_on(self, day: date) -> TariffVersion | None:
        """The version in force on the local `day` (None: before the first version)."""
        at = bisect.bisect_right(self._starts, day)
        return self.versions[at - 1] if at else None


def check_periods(periods: tuple[Period, ...], has_default: bool) -> list[tuple[int | None, str]]:
    """What is wrong with a version's periods: (index of the period to blame, or None for
    the version, message). Two periods holding one quarter hour overlap; a quarter hour
    no period holds is a gap unless the version has a default rate."""
    found: list[tuple[int | None, str]] = []
    overlaps: set[tuple[int, int]] = set()
    gap: str | None = None
    month_sets = {p.months for p in periods if p.months}
    months = MONTHS if month_sets else (1,)
    for kind in DAY_KINDS:
        for month in months:
            for step in range(STEPS):
                minute = step * STEP_MIN
                holding = [i for i, p in enumerate(periods) if p.holds(kind, month, minute)]
                if len(holding) > 1:
                    pair = (holding[0], holding[1])
                    if pair not in overlaps:
                        overlaps.add(pair)
                        a, b = periods[pair[0]], periods[pair[1]]
                        found.append(
                            (
                                pair[1],
                                f"period {b.name!r} overlaps period {a.name!r} "
                                f"({kind} {_clock(minute)}"
                                + (f", month {month}" if month_sets else "")
                                + ")",
                            )
                        )
                elif not holding and not has_default and gap is None:
                    gap = (
                        f"no period holds {kind} {_clock(minute)}"
                        + (f" in month {month}" if month_sets else "")
                        + ": add a period for it or a default_rate"
                    )
    if gap is not None:
        found.append((None, gap))
    return found


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_clock(text: str) -> int:
    """'HH:MM' (a quarter hour, '24:00' allowed) as minutes after midnight. Raises ValueError."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"must be a time 'HH:MM', got {text!r}")
    hours, minutes = int(parts[0]), int(parts[1])
    total = hours * 60 + minutes
    if minutes >= 60 or total > 24 * 60:
        raise ValueError(f"must be a time between 00:00 and 24:00, got {text!r}")
    if minutes % STEP_MIN:
        raise ValueError(f"must be on a quarter hour (:00, :15, :30, :45), got {text!r}")
    return total
