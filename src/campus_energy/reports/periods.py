"""The period a report covers: a local calendar month ("2026-11") or an ISO week, Monday to
Sunday ("2026-W47"), and the periods it is compared with (the one before, the same one a
year before)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from typing import Literal

from campus_energy.core.days import midnight_ms

_MONTH = re.compile(r"(\d{4})-(\d{2})\Z", re.ASCII)
_WEEK = re.compile(r"(\d{4})-W(\d{2})\Z", re.ASCII)


@dataclass(frozen=True)
class Period:
    kind: Literal["month", "week"]
    text: str  # "2026-11" | "2026-W47"
    first: date  # the first local day
    last: date  # the last local day (inclusive)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def bounds_ms(self, zone: tzinfo) -> tuple[int, int]:
        """UTC ms of the local midnight starting it and of the one after its last day."""
        return midnight_ms(self.first, zone), midnight_ms(self.last + timedelta(days=1), zone)

    def previous(self) -> Period:
        if self.kind == "month":
            before = self.first - timedelta(days=1)
            return month(before.year, before.month)
        year, number, _ = (self.first - timedelta(days=7)).isocalendar()
        return week(year, number)

    def year_before(self) -> Period:
        """The same month, or the ISO week of the same number (52 for a week 53), a year before."""
        if self.kind == "month":
            return month(self.first.year - 1, self.first.month)
        number = int(self.text[-2:])
        year = self.first.isocalendar()[0] - 1
        return week(year, min(number, weeks_in(year)))

    @property
    def label(self) -> str:
        """In words: 'November 2026', 'week 47 of 2026 (16–22 Nov)'."""
        if self.kind == "month":
            return f"{calendar.month_name[self.first.month]} {self.first.year}"
        span = f"{self.first.day} {self.first:%b} – {self.last.day} {self.last:%b %Y}"
        return f"Week {int(self.text[-2:])} of {self.text[:4]} ({span})"


def month(year: int, number: int) -> Period:
    first = date(year, number, 1)
    last = date(year, number, calendar.monthrange(year, number)[1])
    return Period("month", f"{year:04d}-{number:02d}", first, last)


def weeks_in(year: int) -> int:
    return date(year, 12, 28).isocalendar()[1]


def week(year: int, number: int) -> Period:
    first = date.fromisocalendar(year, number, 1)
    return Period("week", f"{year:04d}-W{number:02d}", first, first + timedelta(days=6))


def parse_period(text: str) -> Period:
    """'YYYY-MM' or 'YYYY-Www' (years 2000..2099). Raises ValueError saying what is wrong."""
    shown = text[:40]
    if found := _MONTH.match(text):
        year, number = int(found.group(1)), int(found.group(2))
        if 2000 <= year <= 2099 and 1 <= number <= 12:
            return month(year, number)
        raise ValueError(f"must be a month between 2000-01 and 2099-12, got {shown!r}")
    if found := _WEEK.match(text):
        year, number = int(found.group(1)), int(found.group(2))
        if 2000 <= year <= 2099 and 1 <= number <= weeks_in(year):
            return week(year, number)
        raise ValueError(f"{year} has ISO weeks 01..{weeks_in(year)}, got {shown!r}")
    raise ValueError(f"must be a month YYYY-MM or an ISO week YYYY-Www, got {shown!r}")
