"""When a scheduled report is sent and which period it reports: golden tables across the
daylight-saving changes of Europe/Berlin (29 March and 25 October 2026) and
America/New_York (8 March and 1 November 2026)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from campus_energy.core.schedules import next_run_ms, period_of_run
from campus_energy.reports.periods import parse_period


def utc(text: str) -> int:
    """'2026-03-29 01:00' (UTC) as epoch ms."""
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"

# (every, day, local HH:MM, zone, after (UTC), expected (UTC))
GOLDEN = [
    # plain days
    ("month", 1, "07:00", BERLIN, "2026-11-15 12:00", "2026-12-01 06:00"),
    ("month", 1, "07:00", BERLIN, "2026-12-01 06:00", "2027-01-01 06:00"),  # strictly after
    ("month", 1, "07:00", BERLIN, "2026-12-01 05:59", "2026-12-01 06:00"),
    ("month", "last", "23:30", BERLIN, "2026-02-10 00:00", "2026-02-28 22:30"),
    ("month", "last", "23:30", BERLIN, "2028-02-10 00:00", "2028-02-29 22:30"),  # a leap year
    ("month", 28, "00:00", BERLIN, "2026-02-27 23:00", "2026-03-27 23:00"),
    ("week", "mon", "07:00", BERLIN, "2026-11-16 06:00", "2026-11-23 06:00"),
    ("week", "mon", "00:15", BERLIN, "2026-11-15 23:00", "2026-11-15 23:15"),  # local Monday
    # Berlin, spring: 02:00-03:00 on 29 March does not exist; sent at 03:00 CEST
    ("week", "sun", "02:30", BERLIN, "2026-03-27 00:00", "2026-03-29 01:00"),
    ("week", "sun", "02:00", BERLIN, "2026-03-27 00:00", "2026-03-29 01:00"),
    ("week", "sun", "03:00", BERLIN, "2026-03-27 00:00", "2026-03-29 01:00"),
    ("week", "sun", "02:30", BERLIN, "2026-03-29 01:00", "2026-04-05 00:30"),
    # Berlin, autumn: 02:00-03:00 on 25 October happens twice; sent once, the first time
    ("week", "sun", "02:30", BERLIN, "2026-10-24 00:00", "2026-10-25 00:30"),
    ("week", "sun", "02:30", BERLIN, "2026-10-25 00:30", "2026-11-01 01:30"),
    ("week", "sun", "02:30", BERLIN, "2026-10-25 01:00", "2026-11-01 01:30"),
    ("week", "sun", "03:00", BERLIN, "2026-10-24 00:00", "2026-10-25 02:00"),
    # New York, spring: 02:00-03:00 on 8 March does not exist
    ("month", 8, "02:15", NEW_YORK, "2026-03-01 00:00", "2026-03-08 07:00"),
    ("week", "sun", "01:45", NEW_YORK, "2026-03-07 00:00", "2026-03-08 06:45"),
    # New York, autumn: 01:00-02:00 on 1 November happens twice
    ("week", "sun", "01:30", NEW_YORK, "2026-10-31 00:00", "2026-11-01 05:30"),
    ("week", "sun", "01:30", NEW_YORK, "2026-11-01 05:30", "2026-11-08 06:30"),
    ("month", 1, "01:30", NEW_YORK, "2026-10-15 00:00", "2026-11-01 05:30"),
    ("month", "last", "20:00", NEW_YORK, "2026-12-31 23:00", "2027-01-01 01:00"),  # local 31 Dec
]


@pytest.mark.parametrize(("every", "day", "at", "zone", "after", "expected"), GOLDEN)
def test_the_next_sending_time(
    every: str, day: int | str, at: str, zone: str, after: str, expected: str
) -> None:
    hours, minutes = map(int, at.split(":"))
    found = next_run_ms(every, day, hours * 60 + minutes, zone, utc(after))
    assert found == utc(expected), datetime.fromtimestamp(found / 1000, UTC)


def test_a_repeated_time_is_sent_once_through_the_night() -> None:
    """Stepping from run to run through October and November sends each Sunday once."""
    runs, at = [], utc("2026-10-01 00:00")
    while at < utc("2026-11-10 00:00"):
        at = next_run_ms("week", "sun", 150, BERLIN, at)
        runs.append(at)
    assert [datetime.fromtimestamp(r / 1000, UTC).day for r in runs[:-1]] == [4, 11, 18, 25, 1, 8]


# (every, run (UTC), zone, the period it reports)
PERIODS = [
    ("month", "2026-12-01 06:00", BERLIN, "2026-11"),
    ("month", "2027-01-01 06:00", BERLIN, "2026-12"),
    ("month", "2026-11-30 23:30", BERLIN, "2026-11"),  # 00:30 on 1 December, local
    ("month", "2026-12-01 03:00", NEW_YORK, "2026-10"),  # 22:00 on 30 November, local
    ("month", "2026-11-30 22:30", BERLIN, "2026-10"),  # day "last": the month before
    ("week", "2026-11-23 06:00", BERLIN, "2026-W47"),  # a Monday
    ("week", "2026-11-22 06:00", BERLIN, "2026-W46"),  # a Sunday: its own week is not over
    ("week", "2026-01-05 06:00", BERLIN, "2026-W01"),  # week 1 of 2026 starts 29 Dec 2025
    ("week", "2027-01-04 06:00", BERLIN, "2026-W53"),
    ("week", "2026-03-29 01:00", BERLIN, "2026-W12"),
]


@pytest.mark.parametrize(("every", "run", "zone", "expected"), PERIODS)
def test_the_period_a_run_reports(every: str, run: str, zone: str, expected: str) -> None:
    assert period_of_run(every, utc(run), zone) == expected


@pytest.mark.parametrize(
    ("every", "day", "minute"),
    [("month", 29, 0), ("month", 0, 0), ("month", "mon", 0), ("week", 1, 0), ("week", "sun", 1440),
     ("day", 1, 0)],
)  # fmt: skip
def test_a_schedule_that_cannot_be_is_refused(every: str, day: int | str, minute: int) -> None:
    with pytest.raises(ValueError):
        next_run_ms(every, day, minute, BERLIN, 0)


def test_periods_read_and_compared() -> None:
    november = parse_period("2026-11")
    assert (november.first, november.last) == (date(2026, 11, 1), date(2026, 11, 30))
    assert november.previous().text == "2026-10" and november.year_before().text == "2025-11"
    assert parse_period("2026-01").previous().text == "2025-12"
    week = parse_period("2026-W47")
    assert (week.first, week.last) == (date(2026, 11, 16), date(2026, 11, 22))
    assert week.previous().text == "2026-W46" and week.year_before().text == "2025-W47"
    assert parse_period("2026-W01").previous().text == "2025-W52"
    assert parse_period("2026-W53").year_before().text == "2025-W52"  # 2025 has 52 weeks
    assert parse_period("2027-W01").previous().text == "2026-W53"
    for bad in ("2026-13", "2026-W54", "2025-W53", "26-11", "2026-11-01", "2026-w47", "２０２６-11",
                "2026-11\n", "1999-12"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_period(bad)
