"""Consumption, generation, net and estimated energy in every answer of the API, against the books.

Campuses with rooftop solar (power negative around noon, each interval split at its
zero crossing) and outages bridged by the meters' registers (estimated energy),
written through the real window sink, in Europe/Berlin across both DST days with
60 s and 300 s windows (tests/figures/solar.py). Every figure the API answers —
measured import (the existing fields, unchanged in meaning), measured export, net,
estimated import and export — equals the sums of the readings computed without the
window code (tests/figures/books.py); the estimates never change coverage or any
measured figure (a twin store without them answers the same).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
from tests.figures.books import Scenario, Slot
from tests.figures.campus import Campus, campus_of, close, days_of, iso, ms_of, require
from tests.figures.solar import PV, VIRTUAL, fall, spring
from tests.support.config import campus_meters

from campus_energy.core.windows import IncomingReading

WH_TOL = 1e-6
KWH_TOL = 0.5e-6 + 1e-9  # the API gives kWh to six decimals
POWER_REL = 1e-3
SCENARIOS: dict[str, tuple[Scenario, str]] = {
    "spring-60s": (spring(60), "sqlite"),
    "fall-300s": (fall(300), "sqlite"),
    "spring-60s-postgres": (spring(60), "postgres"),
    "fall-300s-postgres": (fall(300), "postgres"),
    "fall-300s-firestore": (fall(300), "firestore"),
}
STEP_MS = {"5m": 300_000, "1h": 3_600_000}
# the answer's name of each sum, per unit style
POINT_FIELDS = {
    "energy_wh": "energy_wh",
    "export_wh": "export_wh",
    "net_wh": "net_wh",
    "estimated_wh": "estimated_wh",
    "estimated_export_wh": "estimated_export_wh",
}


def period_fields(prefix: str) -> dict[str, str]:
    """A summary's, a site's or a meter's figures of one period (answer field -> books sum)."""
    return {
        f"{prefix}_kwh": "energy_wh",
        f"{prefix}_export_kwh": "export_wh",
        f"{prefix}_net_kwh": "net_wh",
        f"{prefix}_estimated_kwh": "estimated_wh",
        f"{prefix}_estimated_export_kwh": "estimated_export_wh",
    }


AGGREGATE_FIELDS = {
    "total_energy_kwh": "energy_wh",
    "import_energy_kwh": "energy_wh",
    "export_energy_kwh": "export_wh",
    "net_energy_kwh": "net_wh",
    "estimated_energy_kwh": "estimated_wh",
    "estimated_export_kwh": "estimated_export_wh",
}


# Writing 60 s windows of three days to PostgreSQL takes ~12 s, three days to the Firestore
# emulator longer: long cases (PostgreSQL is read in short with 300 s windows, the same
# windows in short from SQLite; tests/integration/test_firestore_source.py reads Firestore).
LONG = {"spring-60s-postgres", "fall-300s-firestore"}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.long, pytest.mark.slow] if name in LONG else [])
        for name in sorted(SCENARIOS)
    ],
)
def campus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campus]:
    scenario, sink = SCENARIOS[request.param]
    folder = Path(tmp_path_factory.mktemp(request.param))
    with campus_of(scenario, sink, folder, VIRTUAL, collection=scenario.name) as found:
        yield found


def sink_of(campus: Campus) -> str:
    """The kind of window store the campus was written to."""
    return campus.config.bridge.sink


def matches(
    shown: dict[str, Any], fields: dict[str, str], sums: Slot, tol: float, kwh: bool, where: str
) -> None:
    """Each shown figure equals its books sum (kWh answers: the sum in Wh / 1000)."""
    for field, name in fields.items():
        expected = getattr(sums, name) / (1000 if kwh else 1)
        require(
            close(shown[field], expected, abs_tol=tol),
            f"{where}: {field} {shown[field]} ≠ {expected} from the books",
        )


def selections(s: Scenario) -> list[tuple[str, list[str] | None, str]]:
    """(query, meters, label): the campus, each building, each meter."""
    found: list[tuple[str, list[str] | None, str]] = [("", None, "campus")]
    for name in s.buildings():
        ids = [m for m, (b, _) in s.meters.items() if b == name]
        found.append((f"building={quote(name)}", ids, name))
    found.extend((f"meter={m}", [m], m) for m in sorted(s.meters))
    return found


def spans(s: Scenario) -> dict[str, tuple[int, int]]:
    """The range each step is asked for: the whole for hours and days, the last two local
    days (the DST day among them) for 5 minutes."""
    days = days_of(s)
    whole = (s.midnight_ms(days[0]), s.midnight_ms(days[-1] + timedelta(days=1)))
    return {"5m": (s.midnight_ms(days[-2]), whole[1]), "1h": whole, "1d": whole}


def step_range(s: Scenario, step: str, point: dict[str, Any]) -> tuple[int, int]:
    if step == "1d":
        day = date.fromisoformat(point["date"])
        return s.midnight_ms(day), s.midnight_ms(day + timedelta(days=1))
    start = ms_of(point["t"])
    return start, start + STEP_MS[step]


@pytest.mark.parametrize("step", ["5m", "1h", "1d"])
def test_series_carry_every_direction_and_kind(campus: Campus, step: str) -> None:
    s, books = campus.scenario, campus.books
    a, b = spans(s)[step]
    seen = Slot()
    for query, meters, label in selections(s):
        params = f"step={step}&start={iso(a)}&end={iso(b)}" + (f"&{query}" if query else "")
        points = campus.get(f"/api/series?{params}")["points"]
        assert points, (label, step)
        for p in points:
            lo, hi = step_range(s, step, p)
            sums = books.sums(meters, lo, hi)
            where = f"{label} {step} {p['t']}"
            matches(p, POINT_FIELDS, sums, WH_TOL, False, where)
            power = books.avg_power_w(meters, lo, hi)
            require(
                close(p["avg_power_w"], power, abs_tol=1e-6, rel_tol=POWER_REL),
                f"{where}: average (net) power {p['avg_power_w']} ≠ {power}",
            )
            require(
                close(p["coverage"], books.coverage(meters, lo, hi), abs_tol=1e-6),
                f"{where}: coverage {p['coverage']}",
            )
        # no step left out: the points add up to the whole range's books
        whole = books.sums(meters, a, b)
        for field, name in POINT_FIELDS.items():
            total = sum(p[field] for p in points)
            require(
                close(total, getattr(whole, name), abs_tol=WH_TOL * len(points)),
                f"{label} {step}: Σ {field} {total} ≠ {getattr(whole, name)}",
            )
        if meters is None:
            seen = whole
    # the comparisons meant something: the campus exported and had both estimates
    assert seen.export_wh > 0 and seen.estimated_wh > 0 and seen.estimated_export_wh > 0, seen


def test_a_virtual_meter_weighs_every_direction_and_kind(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    a, b = spans(s)["1h"]
    points = campus.get(f"/api/series?virtual=ece-rest&step=1h&start={iso(a)}&end={iso(b)}")
    exported = 0.0
    for p in points["points"]:
        lo, hi = step_range(s, "1h", p)
        one, two = books.sums(["ece-1"], lo, hi), books.sums(["ece-2"], lo, hi)
        for field, name in POINT_FIELDS.items():
            expected = getattr(one, name) - getattr(two, name)
            require(close(p[field], expected, abs_tol=WH_TOL), f"ece-rest {p['t']} {field}")
        exported += two.export_wh
    assert exported > 0


def test_the_pv_meters_power_goes_negative_and_nothing_clamps_it(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    a, b = spans(s)["5m"]
    for meter in PV:
        points = campus.get(f"/api/series?meter={meter}&step=5m&start={iso(a)}&end={iso(b)}")
        powers = [p["avg_power_w"] for p in points["points"] if p["avg_power_w"] is not None]
        assert min(powers) < -1000 and max(powers) > 0, meter  # a day curve through zero
    shown = {m["meter_id"]: m for m in campus.get("/api/meters")["meters"]}
    summary = campus.get("/api/summary")
    for meter in s.meters:
        expected = books.latest_window_power_w(meter)
        assert close(shown[meter]["power_w"], expected, abs_tol=1e-6, rel_tol=POWER_REL), meter
    if s.local_day(s.now_ms).month == 3:  # now is 13:00: the arrays feed the grid
        assert shown["sun-1"]["power_w"] < 0 and shown["ece-2"]["power_w"] < 0
        by_name = {b["building"]: b for b in summary["buildings"]}
        assert by_name["Solar Hall"]["power_w"] == pytest.approx(shown["sun-1"]["power_w"])
        assert by_name["Solar Hall"]["power_w"] < 0


def periods(s: Scenario) -> dict[str, tuple[int, int]]:
    today = s.local_day(s.now_ms)
    tomorrow = s.midnight_ms(today + timedelta(days=1))
    return {
        "today": (s.midnight_ms(today), tomorrow),
        "week": (s.midnight_ms(today - timedelta(days=today.weekday())), tomorrow),
        "month": (s.midnight_ms(today.replace(day=1)), tomorrow),
    }


def test_the_summary_shows_every_direction_and_kind(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    summary = campus.get("/api/summary")
    ranges = periods(s)
    assert ranges["today"][1] - ranges["today"][0] in (23 * 3_600_000, 25 * 3_600_000)
    for period, (lo, hi) in ranges.items():
        matches(summary, period_fields(period), books.sums(None, lo, hi), KWH_TOL, True, period)
    by_name = {b["building"]: b for b in summary["buildings"]}
    assert sorted(by_name) == s.buildings()
    today_import = books.energy_wh(None, *ranges["today"])
    for name, shown in by_name.items():
        ids = [m for m, (b, _) in s.meters.items() if b == name]
        for period, (lo, hi) in ranges.items():
            sums = books.sums(ids, lo, hi)
            matches(shown, period_fields(period), sums, KWH_TOL, True, f"{name} {period}")
        share = books.energy_wh(ids, *ranges["today"]) / today_import
        assert close(shown["share_today"], share, abs_tol=0.5e-4), name  # of measured import
    today = books.sums(None, *ranges["today"])
    assert today.export_wh > 0 and today.estimated_export_wh > 0  # the checks can fail
    assert summary["today_net_kwh"] < summary["today_kwh"]


def test_sites_show_today_in_every_direction_and_kind(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    (site,) = campus.get("/api/sites")["sites"]
    matches(site, period_fields("today"), books.sums(None, *periods(s)["today"]), KWH_TOL, True, "")


def test_meters_show_their_energy_today(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    shown = {m["meter_id"]: m for m in campus.get("/api/meters")["meters"]}
    for meter in s.meters:
        sums = books.sums([meter], *periods(s)["today"])
        matches(shown[meter], period_fields("today"), sums, KWH_TOL, True, meter)
    assert shown["sun-1"]["today_export_kwh"] > 0


def test_aggregates_keep_total_energy_as_import_and_add_the_rest(campus: Campus) -> None:
    s, books = campus.scenario, campus.books
    days = days_of(s)
    for first, last in [(days[0], days[-1]), *((d, d) for d in days)]:
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
            matches(body, AGGREGATE_FIELDS, books.sums(ids, lo, hi), KWH_TOL, True, where)
            assert body["readings_processed"] == books.readings(ids, lo, hi), where


def test_export_csv_carries_every_direction_at_the_end(campus: Campus) -> None:
    s = campus.scenario
    a, b = spans(s)["1h"]
    params = f"step=1h&start={iso(a)}&end={iso(b)}&building=Solar%20Hall"
    series = campus.get(f"/api/series?{params}")["points"]
    answer = campus.client.get(f"/api/export.csv?{params}")
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    columns = ["t", "energy_wh", "avg_power_w", "coverage", *list(POINT_FIELDS)[1:]]
    assert rows[0] == columns
    assert len(rows) - 1 == len(series) > 0
    for row, p in zip(rows[1:], series, strict=True):
        assert row[0] == p["t"]
        for column, value in zip(columns[1:], row[1:], strict=True):
            assert (float(value) if value else None) == p[column], (p["t"], column)
    assert any(float(row[4]) > 0 for row in rows[1:])  # the hall exported


def without_estimates(items: list[IncomingReading]) -> list[IncomingReading]:
    return [
        replace(r, estimated_wh=0.0, estimated_export_wh=0.0, estimated_start_ms=None)
        for r in items
    ]


@pytest.fixture(scope="module")
def twin(campus: Campus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    """The same campus written without the registers' estimates."""
    s = campus.scenario
    folder = Path(tmp_path_factory.mktemp(f"{s.name}-twin"))
    sink = sink_of(campus)
    with campus_of(s, sink, folder, VIRTUAL, without_estimates, f"{s.name}-twin") as found:
        yield found


@pytest.mark.parametrize("step", ["5m", "1h", "1d"])
def test_estimates_change_no_measured_figure_and_no_coverage(
    campus: Campus, twin: Campus, step: str
) -> None:
    s = campus.scenario
    a, b = spans(s)[step]
    estimated = 0.0
    for query, _, label in selections(s):
        params = f"step={step}&start={iso(a)}&end={iso(b)}" + (f"&{query}" if query else "")
        with_them = {p["t"]: p for p in campus.get(f"/api/series?{params}")["points"]}
        without = {p["t"]: p for p in twin.get(f"/api/series?{params}")["points"]}
        for t, p in with_them.items():
            if t not in without:  # a step of a gap: nothing measured, nothing covered
                assert (p["energy_wh"], p["export_wh"], p["avg_power_w"], p["coverage"]) == (
                    0.0,
                    0.0,
                    None,
                    0.0,
                ), (label, t)
                assert p["estimated_wh"] + p["estimated_export_wh"] > 0, (label, t)
                continue
            other = without[t]
            for key in ("energy_wh", "export_wh", "net_wh", "avg_power_w", "coverage"):
                assert p[key] == other[key], (label, step, t, key)
            assert other["estimated_wh"] == other["estimated_export_wh"] == 0.0
            estimated += p["estimated_wh"] + p["estimated_export_wh"]
    assert estimated > 0  # the twin differs from the campus only where it matters
    summary, plain = campus.get("/api/summary"), twin.get("/api/summary")
    for period in ("today", "week", "month"):
        for key in (f"{period}_kwh", f"{period}_export_kwh", f"{period}_net_kwh"):
            assert summary[key] == plain[key], key
    health, plain_health = campus.get("/api/health"), twin.get("/api/health")
    assert health["coverage"] == plain_health["coverage"]


# -- a site in another zone: its days summed from the store's hours ---------------------------

WEST = ZoneInfo("Europe/London")  # always an hour behind Berlin: the store's hours are its own


@pytest.fixture(scope="module")
def west(campus: Campus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    """The same campus, its meters a site in Europe/London of an estate kept in Berlin."""
    s = campus.scenario
    extra = {
        **VIRTUAL,
        "sites": [{"id": "west", "name": "West", "timezone": WEST.key}],
        "meters": campus_meters(s.meters, interval_s=s.interval_s, site="west"),
    }
    folder = Path(tmp_path_factory.mktemp(f"{s.name}-west"))
    with campus_of(s, sink_of(campus), folder, extra, collection=f"{s.name}-west") as found:
        yield found


def west_midnight(day: date) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=WEST).timestamp() * 1000)


def test_a_site_in_another_zone_counts_every_direction_on_its_own_days(west: Campus) -> None:
    s, books = west.scenario, west.books
    today = datetime.fromtimestamp(s.now_ms / 1000, WEST).date()
    tomorrow = west_midnight(today + timedelta(days=1))
    ranges = {
        "today": (west_midnight(today), tomorrow),
        "week": (west_midnight(today - timedelta(days=today.weekday())), tomorrow),
        "month": (west_midnight(today.replace(day=1)), tomorrow),
    }
    summary = west.get("/api/summary?site=west")
    assert summary["site"] == "west" and summary["timezone"] == WEST.key
    for period, (lo, hi) in ranges.items():
        matches(summary, period_fields(period), books.sums(None, lo, hi), KWH_TOL, True, period)
    first = datetime.fromtimestamp(s.start_ms / 1000, WEST).date()
    days = [first + timedelta(days=k) for k in range((today - first).days + 1)]
    query = f"site=west&step=1d&start={days[0]}&end={today + timedelta(days=1)}"
    points = west.get(f"/api/series?{query}")["points"]
    assert [p["date"] for p in points] == [d.isoformat() for d in days]
    for p, day in zip(points, days, strict=True):
        sums = books.sums(None, west_midnight(day), west_midnight(day + timedelta(days=1)))
        matches(p, POINT_FIELDS, sums, WH_TOL, False, f"west {day}")
    span = urlencode({"site": "west", "start_date": days[0], "end_date": today})
    body = west.get(f"/api/aggregate/campus?{span}")
    lo, hi = west_midnight(days[0]), tomorrow
    matches(body, AGGREGATE_FIELDS, books.sums(None, lo, hi), KWH_TOL, True, "west aggregate")
    (site,) = [x for x in west.get("/api/sites")["sites"] if x["id"] == "west"]
    matches(site, period_fields("today"), books.sums(None, *ranges["today"]), KWH_TOL, True, "")
    # the books' days differ from Berlin's: the comparison is of the zone's own days
    berlin = books.sums(None, *periods(s)["today"])
    assert berlin.energy_wh != books.sums(None, *ranges["today"]).energy_wh


@pytest.mark.parametrize(
    "path",
    [
        "/api/summary",
        "/api/meters",
        "/api/sites",
        "/api/aggregate/campus",
        "/api/aggregate/building/{name}",
        "/api/series",
    ],
)
def test_every_answer_matches_its_published_schema(campus: Campus, path: str) -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    paths = campus.get("/api/openapi.json")["paths"]
    schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    body = campus.get(path.replace("{name}", "Solar%20Hall"))
    validator.validate(body)
    # the answer carries every figure the schema names, and each has something to say here
    found = str(body)
    for added in ("export", "net", "estimated"):
        assert added in found, (path, added)
