"""The History tab's figures: energy per local day, and averages by weekday and clock hour.

Everything is cut on the site's clock: days run from local midnight to local
midnight (23 or 25 hours on the days the clocks change), hours are the site's
clock hours (the repeated hour of an autumn night counts twice, a skipped spring
hour not at all). An average power is a meter's energy ÷ the time its readings
covered, so an hour or a day with no readings is no data, never zero, and the
hour still under way counts for the minutes it has. A selection's average is the
sum of its meters' averages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from campus_energy.core.days import midnight_ms
from campus_energy.dashboard.store_queries import Span

HOUR_MS = 3_600_000
QUARTER_MS = 900_000  # every time zone's offset is a whole number of quarter hours
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
KWH = 6  # decimals kept of kWh: 0.001 Wh, shown with 3
SPAN_COLUMNS = ["meter", "day", "hour", "wh", "covered_ms"]


def day_length_ms(day: date, zone: ZoneInfo) -> int:
    return midnight_ms(day + timedelta(days=1), zone) - midnight_ms(day, zone)


def hour_marks(start_ms: int, end_ms: int, zone: ZoneInfo) -> list[int]:
    """`start_ms`, each instant in between at which the site's clock shows a whole hour,
    `end_ms`: the boundaries of the local clock hours (or parts of them) in the range."""
    marks = [start_ms]
    t = start_ms - start_ms % QUARTER_MS + QUARTER_MS
    while t < end_ms:
        if datetime.fromtimestamp(t / 1000, zone).minute == 0:
            marks.append(t)
        t += QUARTER_MS
    return [*marks, end_ms] if end_ms > start_ms else marks


def span_table(
    spans: Mapping[int, Sequence[Span]], marks: Sequence[int], zone: ZoneInfo
) -> pd.DataFrame:
    """One row per meter and local clock hour that holds readings: meter, day, hour, Wh,
    covered ms. Hours without readings have no row."""
    starts = [datetime.fromtimestamp(t / 1000, zone) for t in marks[:-1]]
    rows = [
        (meter, at.date(), at.hour, span.wh, span.covered_ms)
        for meter, series in spans.items()
        for at, span in zip(starts, series, strict=True)
        if span.covered_ms > 0 or span.wh != 0
    ]
    return pd.DataFrame(rows, columns=SPAN_COLUMNS)


def _mean_w(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per meter and `by`: Σ energy ÷ Σ covered time, where any time was covered."""
    sums = table.groupby(["meter", by], as_index=False)[["wh", "covered_ms"]].sum()
    sums = sums[sums["covered_ms"] > 0]
    return sums.assign(w=sums["wh"] * HOUR_MS / sums["covered_ms"])


def hourly_power(table: pd.DataFrame) -> pd.DataFrame:
    """hour, W (the selection's average power in that clock hour), meters (how many had data)."""
    per_meter = _mean_w(table, "hour")
    found = per_meter.groupby("hour", as_index=False).agg(W=("w", "sum"), meters=("meter", "size"))
    return found.assign(W=found["W"].round(1)).sort_values("hour", ignore_index=True)


def weekday_energy(table: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    """weekday, energy (kWh) per day (the selection's average power on that weekday × the mean
    length of those days), days (how many of them had readings), hours (of readings, per
    meter with any: below a day's length the figure is an estimate)."""
    table = table.assign(weekday=[WEEKDAYS[d.weekday()] for d in table["day"]])
    per_meter = _mean_w(table, "weekday")
    days = table[table["covered_ms"] > 0].groupby("weekday")["day"].unique()
    rows = []
    for weekday, group in per_meter.groupby("weekday"):
        seen = days[weekday]
        length_ms = sum(day_length_ms(d, zone) for d in seen) / len(seen)
        kwh = group["w"].sum() * length_ms / HOUR_MS / 1000
        hours = group["covered_ms"].mean() / HOUR_MS
        rows.append((weekday, round(kwh, KWH), len(seen), round(hours, 1), length_ms / HOUR_MS))
    found = pd.DataFrame(rows, columns=["weekday", "energy (kWh)", "days", "hours", "day h"])
    order = found["weekday"].map(WEEKDAYS.index)
    return found.iloc[order.argsort()].reset_index(drop=True)


def estimates(weekday: pd.DataFrame) -> list[str]:
    """'Wed (2.3 h)' for each weekday whose figure rests on less than a day of readings."""
    short = weekday[weekday["hours"] < weekday["day h"]]
    return [f"{w} ({h:.1f} h)" for w, h in zip(short["weekday"], short["hours"], strict=True)]


def daily_energy(table: pd.DataFrame) -> pd.DataFrame:
    """meter, day, energy (kWh) for each meter and local day that holds readings."""
    found = table.groupby(["meter", "day"], as_index=False)["wh"].sum()
    return found.assign(**{"energy (kWh)": (found["wh"] / 1000).round(KWH)}).drop(columns="wh")


def missing(wanted: Sequence[str], present: Sequence[str]) -> list[str]:
    return [w for w in wanted if w not in set(present)]
