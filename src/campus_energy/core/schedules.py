"""When a scheduled report is sent, and which period it reports.

A report is sent on a local day (monthly: day 1..28 or "last"; weekly: mon..sun) at a
local minute of the day, in the site's zone. Across a daylight-saving change a minute
that does not exist that day (the spring gap) is sent at the first minute after it that
does, and a minute that happens twice (the autumn repeat) is sent once, at its first
occurrence. The report covers the period that has just ended: the month before the
run's local month, or the ISO week (Monday to Sunday) before the run's. Pure: the zone
and the instant come in as arguments.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from campus_energy.core.tariffs import WEEKDAYS

Every = Literal["week", "month"]
MINUTE_MS = 60_000
MAX_GAP_MIN = 24 * 60  # no zone skips more than a day of clock time
SEARCH_DAYS = 800  # any schedule matches within two years of a start


def _zone(zone: str | tzinfo) -> tzinfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _exists(wall: datetime, zone: tzinfo) -> bool:
    """Whether the naive local `wall` time happens in `zone` (it is not in a spring gap)."""
    aware = wall.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == wall


def local_instant(day: date, minute_of_day: int, zone: str | tzinfo) -> int:
    """UTC ms of the local `minute_of_day` on `day`: the first occurrence of a repeated
    minute, and for a minute in a spring gap the first minute after it that exists."""
    place = _zone(zone)
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute_of_day)
    for shift in range(MAX_GAP_MIN + 1):
        candidate = wall + timedelta(minutes=shift)
        if _exists(candidate, place):
            return _ms(candidate.replace(tzinfo=place, fold=0))
    raise ValueError(f"no local time exists on {day} after minute {minute_of_day}")


def _last_day(day: date) -> date:
    after = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return after - timedelta(days=1)


def _sends_on(every: str, day: int | str, candidate: date) -> bool:
    if every == "week":
        return WEEKDAYS[candidate.weekday()] == day
    if day == "last":
        return candidate == _last_day(candidate)
    return candidate.day == day


def _check(every: str, day: int | str, minute_of_day: int) -> None:
    if every == "week":
        if day not in WEEKDAYS:
            raise ValueError(
                f"a weekly report is sent on one of {', '.join(WEEKDAYS)}, got {day!r}"
            )
    elif every == "month":
        if day != "last" and not (isinstance(day, int) and 1 <= day <= 28):
            raise ValueError(f"a monthly report is sent on day 1..28 or 'last', got {day!r}")
    else:
        raise ValueError(f"every must be 'week' or 'month', got {every!r}")
    if not 0 <= minute_of_day < 24 * 60:
        raise ValueError(f"minute_of_day must be 0..1439, got {minute_of_day!r}")


def next_run_ms(
    every: str, day: int | str, minute_of_day: int, zone: str | tzinfo, after_ms: int
) -> int:
    """The first sending time of the schedule strictly after `after_ms` (UTC ms)."""
    _check(every, day, minute_of_day)
    place = _zone(zone)
    start = datetime.fromtimestamp(after_ms / 1000, UTC).astimezone(place).date()
    for offset in range(-1, SEARCH_DAYS):
        candidate = start + timedelta(days=offset)
        if not _sends_on(every, day, candidate):
            continue
        at = local_instant(candidate, minute_of_day, place)
        if at > after_ms:
            return at
    raise AssertionError("unreachable: every schedule matches within two years")


def period_of_run(every: str, run_ms: int, zone: str | tzinfo) -> str:
    """The period a run at `run_ms` reports: the local month before the run's ("2026-11"
    for a run in December 2026) or the ISO week before the run's ("2026-W47")."""
    local = datetime.fromtimestamp(run_ms / 1000, UTC).astimezone(_zone(zone)).date()
    if every == "month":
        before = local.replace(day=1) - timedelta(days=1)
        return f"{before.year:04d}-{before.month:02d}"
    if every == "week":
        monday = local - timedelta(days=local.weekday())
        year, week, _ = (monday - timedelta(days=7)).isocalendar()
        return f"{year:04d}-W{week:02d}"
    raise ValueError(f"every must be 'week' or 'month', got {every!r}")
