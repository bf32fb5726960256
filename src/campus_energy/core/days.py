"""The site's local calendar days and clock hours, for instants in UTC epoch ms.

Days are cut where people cut them: at local midnight in the site's zone, so a
day lasts 23, 24 or 25 hours across a daylight-saving change. Local hours, not
UTC hours: in a zone such as Asia/Kolkata (+05:30) they start at :30 UTC, and
only local hours add up to local days. Pure: the zone comes in as an argument.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from campus_energy.core.timestamps import datetime_ms, utc_datetime

HOUR_MS = 3_600_000


def local_date(ms: int, zone: tzinfo) -> date:
    """The site-local calendar day of a UTC instant."""
    return utc_datetime(ms).astimezone(zone).date()


def local_day(ms: int, zone: tzinfo) -> str:
    """The site-local calendar day ('YYYY-MM-DD') of a UTC instant."""
    return utc_datetime(ms).astimezone(zone).strftime("%Y-%m-%d")


def hour_of(ms: int, zone: tzinfo) -> int:
    """The start (UTC epoch ms) of the site-local clock hour containing `ms`."""
    local = utc_datetime(ms).astimezone(zone)
    return datetime_ms(local.replace(minute=0, second=0, microsecond=0))


def midnight_ms(day: date, zone: tzinfo) -> int:
    """UTC epoch ms of the local midnight that starts `day`."""
    return datetime_ms(datetime(day.year, day.month, day.day, tzinfo=zone))


def day_span(day: str, zone: tzinfo) -> tuple[int, int]:
    """A UTC range (epoch ms, end exclusive) holding every instant of the local `day`, padded."""
    first = date.fromisoformat(day)
    pad = 3 * HOUR_MS  # wider than any daylight-saving shift
    return midnight_ms(first, zone) - pad, midnight_ms(first + timedelta(days=1), zone) + pad


def starts_day(ms: int, zone: tzinfo) -> bool:
    """`ms` is the local midnight that starts its local day (as `midnight_ms` cuts days)."""
    return midnight_ms(local_date(ms, zone), zone) == ms
