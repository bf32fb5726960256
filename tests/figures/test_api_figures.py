"""Every figure the API answers equals the books, in every configuration a user can choose.

The matrix: window lengths 10, 30, 60 and 300 s; steps 5 minutes, 1 hour and
1 day; site zones UTC, Asia/Kolkata (hours start at :30 UTC) and
America/New_York across both DST changes (a 23-hour and a 25-hour day); a
first day holding one hour of data; a month in which one meter was offline for
a day and another never reported; the campus, a building and a meter; the
SQLite and PostgreSQL sinks. Energy must agree to 1e-6 Wh, average power to
0.1 %, coverage to 1e-6; kWh figures to their last digit.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from tests.figures.books import Scenario, local_ms, utc_ms
from tests.figures.campus import Campus, campus_of, close, days_of, iso, require

WH_TOL = 1e-6
KWH_TOL = 0.5e-6 + 1e-9  # the API gives kWh to six decimals
POWER_REL = 1e-3
METERS = {
    "ece-1": ("ECE", "1"),
    "ece-2": ("ECE", "2"),
    "lib-1": ("Main Library", "G"),
    "lib-2": ("Main Library", "1"),
}


def first_hour(window_s: int) -> Scenario:
    start = local_ms("Asia/Kolkata", 2026, 12, 1, 9, 0)
    return Scenario(
        f"first-hour-{window_s}s", "Asia/Kolkata", window_s, start, start + 3_600_000, 5,
        METERS, silent=("lib-2",),
    )  # fmt: skip


def month_offline() -> Scenario:
    """A month in UTC: one meter offline for a day, another never reporting."""
    return Scenario(
        "month-offline", "UTC", 300, utc_ms(2026, 11, 1), utc_ms(2026, 12, 1, 10), 120,
        METERS, offline={"lib-1": (utc_ms(2026, 11, 10), utc_ms(2026, 11, 11))},
        silent=("lib-2",),
    )  # fmt: skip


SCENARIOS: dict[str, tuple[Scenario, str]] = {
    **{f"first-hour-{w}s": (first_hour(w), "sqlite") for w in (10, 30, 60, 300)},
    "dst-spring-60s": (
        Scenario(
            "dst-spring", "America/New_York", 60,
            local_ms("America/New_York", 2026, 3, 7), local_ms("America/New_York", 2026, 3, 10),
            30, METERS,
        ),
        "sqlite",
    ),
    "dst-fall-300s-postgres": (
        Scenario(
            "dst-fall", "America/New_York", 300,
            local_ms("America/New_York", 2026, 10, 31), local_ms("America/New_York", 2026, 11, 3),
            30, METERS,
        ),
        "postgres",
    ),
    "month-offline-300s": (month_offline(), "sqlite"),
    "month-offline-300s-postgres": (month_offline(), "postgres"),
    "first-hour-300s-firestore": (first_hour(300), "firestore"),
    "year-300s": (
        Scenario(
            "year", "Asia/Kolkata", 300,
            local_ms("Asia/Kolkata", 2025, 12, 1), local_ms("Asia/Kolkata", 2026, 12, 1, 10),
            900, {"lib-1": ("Main Library", "G")},
        ),
        "sqlite",
    ),
}  # fmt: skip
STEP_MS = {"5m": 300_000, "1h": 3_600_000}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def campus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campus]:
    scenario, sink = SCENARIOS[request.param]
    with campus_of(scenario, sink, Path(tmp_path_factory.mktemp(request.param))) as found:
        yield found


def selections(c: Campus) -> list[tuple[str, list[str] | None, str]]:
    """(query, meters, label): the campus, each building, and one meter that has a gap."""
    found: list[tuple[str, list[str] | None, str]] = [("", None, "campus")]
    for name in c.scenario.buildings():
        ids = [m for m, (b, _) in c.scenario.meters.items() if b == name]
        found.append((f"building={quote(name)}", ids, name))
    found.append(("meter=lib-1", ["lib-1"], "lib-1"))
    return found


def spans(s: Scenario) -> dict[str, tuple[int, int]]:
    """The range asked for each step: all of it, or for 5 minutes at most two days of it."""
    first, last = days_of(s)[0], days_of(s)[-1]
    whole = (s.midnight_ms(first), s.midnight_ms(last + timedelta(days=1)))
    five = (whole[0], min(whole[1], whole[0] + 2 * 86_400_000))
    if s.offline:  # the day the meter went offline and the day after
        away = next(iter(s.offline.values()))
        five = (away[0] - 86_400_000 // 2, away[1] + 86_400_000 // 2)
    return {"5m": five, "1h": whole, "1d": whole}


def step_range(c: Campus, step: str, point: dict[str, object]) -> tuple[int, int]:
    if step == "1d":
        day = date.fromisoformat(str(point["date"]))
        return c.scenario.midnight_ms(day), c.scenario.midnight_ms(day + timedelta(days=1))
    from datetime import datetime

    start = round(datetime.fromisoformat(str(point["t"]).replace("Z", "+00:00")).timestamp() * 1000)
    return start, start + STEP_MS[step]


def expected_keys(c: Campus, step: str, meters: list[str] | None, a: int, b: int) -> set[int]:
    """Step starts that hold anything of the selection, per the books."""
    slots = {
        slot for m in c.books.meters(meters) for slot in c.books.slots.get(m, {}) if a <= slot < b
    }
    if step == "1d":
        return {c.scenario.midnight_ms(c.scenario.local_day(slot)) for slot in slots}
    size = STEP_MS[step]
    if step == "1h":  # local clock hours: from the hour of the zone's offset
        return {slot - (slot - a) % size for slot in slots}
    return {slot - slot % size for slot in slots}


@pytest.mark.parametrize("step", ["5m", "1h", "1d"])
def test_series_equal_the_books(campus: Campus, step: str) -> None:
    s, books = campus.scenario, campus.books
    a, b = spans(s)[step]
    checked = 0
    for query, meters, label in selections(campus):
        params = f"step={step}&start={iso(a)}&end={iso(b)}" + (f"&{query}" if query else "")
        points = campus.get(f"/api/series?{params}")["points"]
        starts = {step_range(campus, step, p)[0] for p in points}
        require(
            starts == expected_keys(campus, step, meters, a, b),
            f"{label} {step}: steps {sorted(starts)[:3]}… differ from the books",
        )
        for p in points:
            lo, hi = step_range(campus, step, p)
            where = f"{label} {step} {p['t']}"
            energy = books.energy_wh(meters, lo, hi)
            require(
                close(p["energy_wh"], energy, abs_tol=WH_TOL),
                f"{where}: energy {p['energy_wh']} ≠ {energy}",
            )
            power = books.avg_power_w(meters, lo, hi)
            require(
                close(p["avg_power_w"], power, abs_tol=1e-6, rel_tol=POWER_REL),
                f"{where}: average power {p['avg_power_w']} ≠ {power}",
            )
            coverage = books.coverage(meters, lo, hi)
            require(
                close(p["coverage"], coverage, abs_tol=1e-6),
                f"{where}: coverage {p['coverage']} ≠ {coverage}",
            )
            checked += 1
    assert checked > 0


def test_the_books_hold_energy(campus: Campus) -> None:
    """The comparisons below mean something: every reporting meter integrated energy."""
    s = campus.scenario
    start, end = s.start_ms - s.start_ms % 300_000, s.end_ms - s.end_ms % 300_000 + 300_000
    for meter in s.meters:
        sums = campus.books.meter_sums(meter, start, end)
        if meter in s.silent:
            assert sums.readings == 0, meter
        else:  # every poll integrated, but for an offline day in a month
            assert sums.covered_s > 0.95 * (s.end_ms - s.start_ms) / 1000 - 86_400, meter
            assert sums.energy_wh > 0, meter


def test_average_power_does_not_depend_on_the_window_length(campus: Campus) -> None:
    """A 5-minute step's power is the campus's power, not Σ of its windows' powers."""
    s = campus.scenario
    a, b = spans(s)["5m"]
    points = campus.get(f"/api/series?step=5m&start={iso(a)}&end={iso(b)}")["points"]
    drawn = max(p["avg_power_w"] or 0.0 for p in points)
    ceiling = sum(campus.books.avg_power_w([m], a, b) or 0.0 for m in s.meters) * 2
    assert 0 < drawn < ceiling, f"peak {drawn} W against a campus of about {ceiling / 2:.0f} W"


def test_daily_points_span_local_days_of_23_24_and_25_hours(campus: Campus) -> None:
    s = campus.scenario
    a, b = spans(s)["1d"]
    points = campus.get(f"/api/series?step=1d&start={iso(a)}&end={iso(b)}")["points"]
    assert [p["date"] for p in points] == [d.isoformat() for d in days_of(s)]
    hourly = campus.get(f"/api/series?step=1h&start={iso(a)}&end={iso(b)}")["points"]
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for h in hourly:
        by_day[s.local_day(step_range(campus, "1h", h)[0])].append(h)
    for p in points:
        lo, hi = step_range(campus, "1d", p)
        hours = by_day[date.fromisoformat(p["date"])]
        if s.start_ms <= lo and hi <= s.end_ms:  # a whole day of data: 23, 24 or 25 hours
            assert len(hours) == (hi - lo) // 3_600_000, p["date"]
        assert close(sum(h["energy_wh"] for h in hours), p["energy_wh"], abs_tol=WH_TOL * 25)


def test_export_csv_carries_the_series(campus: Campus) -> None:
    a, b = spans(campus.scenario)["1h"]
    building = quote(campus.scenario.buildings()[0])
    params = f"step=1h&start={iso(a)}&end={iso(b)}&building={building}"
    series = campus.get(f"/api/series?{params}")["points"]
    answer = campus.client.get(f"/api/export.csv?{params}")
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == len(series) > 0
    for row, p in zip(rows, series, strict=True):
        assert row["t"] == p["t"]
        assert float(row["energy_wh"]) == p["energy_wh"]
        assert (float(row["avg_power_w"]) if row["avg_power_w"] else None) == p["avg_power_w"]
        assert float(row["coverage"]) == p["coverage"]
        assert len(row["energy_wh"].partition(".")[2]) <= 6, row  # no float noise


def period_ranges(s: Scenario) -> dict[str, tuple[int, int]]:
    today = s.local_day(s.now_ms)
    tomorrow = s.midnight_ms(today + timedelta(days=1))
    return {
        "today": (s.midnight_ms(today), tomorrow),
        "week": (s.midnight_ms(today - timedelta(days=today.weekday())), tomorrow),
        "month": (s.midnight_ms(today.replace(day=1)), tomorrow),
    }


def test_summary_equals_the_books(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    summary = campus.get("/api/summary")
    ranges = period_ranges(s)
    for period, (lo, hi) in ranges.items():
        expected = books.energy_wh(None, lo, hi) / 1000
        assert close(summary[f"{period}_kwh"], expected, abs_tol=KWH_TOL), period
    reporting = [m for m in s.meters if m not in s.silent]
    power = {m: books.latest_window_power_w(m) or 0.0 for m in reporting}
    assert close(summary["power_w"], sum(power.values()), abs_tol=0.01, rel_tol=POWER_REL)
    assert summary["meters_online"] == len(reporting)
    by_name = {b["building"]: b for b in summary["buildings"]}
    assert sorted(by_name) == s.buildings()
    today_total = books.energy_wh(None, *ranges["today"])
    for name, shown in by_name.items():
        ids = [m for m, (b, _) in s.meters.items() if b == name]
        for period, (lo, hi) in ranges.items():
            expected = books.energy_wh(ids, lo, hi) / 1000
            assert close(shown[f"{period}_kwh"], expected, abs_tol=KWH_TOL), (name, period)
        assert close(
            shown["power_w"], sum(power.get(m, 0.0) for m in ids), abs_tol=0.01, rel_tol=POWER_REL
        )
        share = books.energy_wh(ids, *ranges["today"]) / today_total if today_total else 0.0
        assert close(shown["share_today"], share, abs_tol=0.5e-4), name


def test_aggregates_equal_the_books(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    days = days_of(s)
    ranges = [(days[0], days[-1]), *((d, d) for d in days[:3])]
    for first, last in ranges:
        lo, hi = s.midnight_ms(first), s.midnight_ms(last + timedelta(days=1))
        query = urlencode({"start_date": first.isoformat(), "end_date": last.isoformat()})
        for path, ids in [
            ("campus", None),
            *(
                (f"building/{quote(b)}", [m for m, (x, _) in s.meters.items() if x == b])
                for b in s.buildings()
            ),
        ]:
            body = campus.get(f"/api/aggregate/{path}?{query}")
            where = f"{path} {first}..{last}"
            expected = books.energy_wh(ids, lo, hi) / 1000
            assert close(body["total_energy_kwh"], expected, abs_tol=KWH_TOL), where
            assert body["readings_processed"] == books.readings(ids, lo, hi), where
            found = [m for m in books.meters(ids) if books.meter_sums(m, lo, hi).readings]
            assert body["meters_found"] == len(found), where


def test_meters_show_their_latest_window(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    shown = {m["meter_id"]: m for m in campus.get("/api/meters")["meters"]}
    assert sorted(shown) == sorted(s.meters)
    for meter in s.meters:
        expected = books.latest_window_power_w(meter)
        assert close(shown[meter]["power_w"], expected, abs_tol=1e-6, rel_tol=POWER_REL), meter
        assert shown[meter]["online"] is (meter not in s.silent), meter
