"""Local days and hours of the site's zone, and epoch ms <-> datetime: golden tables across
daylight-saving changes and half-hour zones, and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.days import HOUR_MS, day_span, hour_of, local_date, local_day, midnight_ms
from campus_energy.core.timestamps import datetime_ms, floor_ms, iso_seconds, utc_datetime

KOLKATA = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
ZONES = (KOLKATA, LONDON, NEW_YORK, UTC)


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("day", "zone", "midnight", "hours"),
    [
        (date(2026, 1, 1), KOLKATA, "2025-12-31T18:30:00+00:00", 24),
        (date(2026, 3, 29), LONDON, "2026-03-29T00:00:00+00:00", 23),  # clocks go forward
        (date(2026, 10, 25), LONDON, "2026-10-24T23:00:00+00:00", 25),  # and back
        (date(2026, 3, 8), NEW_YORK, "2026-03-08T05:00:00+00:00", 23),
        (date(2026, 11, 1), NEW_YORK, "2026-11-01T04:00:00+00:00", 25),
        (date(2026, 6, 1), UTC, "2026-06-01T00:00:00+00:00", 24),
    ],
)
def test_a_local_day_starts_at_its_midnight_and_lasts_23_24_or_25_hours(
    day: date, zone: ZoneInfo, midnight: str, hours: int
) -> None:
    start = midnight_ms(day, zone)
    end = midnight_ms(day + timedelta(days=1), zone)
    assert start == ms(midnight)
    assert end - start == hours * HOUR_MS
    assert day_span(day.isoformat(), zone) == (start - 3 * HOUR_MS, end + 3 * HOUR_MS)
    assert local_day(start, zone) == day.isoformat() == local_day(end - 1, zone)
    assert local_day(end, zone) != day.isoformat()


@pytest.mark.parametrize(
    ("instant", "zone", "hour", "day"),
    [
        ("2026-01-01T00:10:00+00:00", KOLKATA, "2025-12-31T23:30:00+00:00", "2026-01-01"),
        ("2026-01-01T18:29:59+00:00", KOLKATA, "2026-01-01T17:30:00+00:00", "2026-01-01"),
        ("2026-01-01T18:30:00+00:00", KOLKATA, "2026-01-01T18:30:00+00:00", "2026-01-02"),
        ("2026-03-29T01:00:00+00:00", LONDON, "2026-03-29T01:00:00+00:00", "2026-03-29"),  # 02:00
        ("2026-10-25T00:30:00+00:00", LONDON, "2026-10-25T00:00:00+00:00", "2026-10-25"),  # 01:30
        ("2026-10-25T01:30:00+00:00", LONDON, "2026-10-25T01:00:00+00:00", "2026-10-25"),  # again
    ],
)
def test_an_instant_falls_in_its_local_clock_hour_and_day(
    instant: str, zone: ZoneInfo, hour: str, day: str
) -> None:
    assert hour_of(ms(instant), zone) == ms(hour)
    assert local_day(ms(instant), zone) == day
    assert local_date(ms(instant), zone) == date.fromisoformat(day)


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.sampled_from(ZONES))
def test_an_hour_and_a_day_hold_the_instant(instant: int, zone: tzinfo) -> None:
    hour = hour_of(instant, zone)
    assert hour <= instant < hour + HOUR_MS
    day = local_date(instant, zone)
    assert day.isoformat() == local_day(instant, zone)
    assert midnight_ms(day, zone) <= instant < midnight_ms(day + timedelta(days=1), zone)


def test_epoch_ms_and_datetimes() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_900, tzinfo=UTC)
    assert datetime_ms(moment) == ms("2026-01-02T03:04:05.679+00:00")  # to the nearest ms
    assert floor_ms(moment) == ms("2026-01-02T03:04:05.678+00:00")  # rounded down, exactly
    assert floor_ms(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == 253_402_300_799_999
    assert utc_datetime(ms("2026-01-02T03:04:05.678+00:00")) == moment.replace(microsecond=678_000)
    assert iso_seconds(ms("2026-01-02T03:04:05.999+00:00")) == "2026-01-02T03:04:05Z"
