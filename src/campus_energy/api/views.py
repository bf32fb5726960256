"""The API's endpoints and the dashboard page, as one Blueprint (billing's are another:
`billing_views`, sharing the cache helpers here).

Views only parse parameters and shape answers: the source reads rollups, the pure
builders in `queries` do the sums, the response cache keeps answers, and the app's
error handler turns the project's exceptions into statuses. Each read endpoint takes
`site=`: the request's `SiteView` (`sites`) gives the meters, the zone, the configuration
and the source it reads; without it, the whole estate (or the site `api.site` serves).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, request

from campus_energy.api.answers import UNAVAILABLE, Unrepresentable, dumps, json_response
from campus_energy.api.campus_model import virtual_meter_answer
from campus_energy.api.directions import Energy, per_meter
from campus_energy.api.openapi import openapi_document
from campus_energy.api.queries import (
    MAX_POINTS,
    MAX_RANGE_DAYS,
    STEPS,
    BadParameter,
    NotFound,
    Period,
    day_range,
    finite,
    health_detail,
    iso,
    kwh,
    last_window_ms,
    parse_instant,
    round_share,
    round_w,
    rounded,
    series_answer,
    series_span,
    summary_answer,
    virtual_answer,
)
from campus_energy.api.sites import SiteView
from campus_energy.api.state import ApiState
from campus_energy.api.zoned import ZonedSource
from campus_energy.backends.base import MeterLatest
from campus_energy.core.days import local_date, midnight_ms
from campus_energy.errors import SourceError

MAX_ROWS = 200_000  # source rows one series request may read (steps × meters)
MAX_HOUR_ROWS = 800_000  # ... and hour rows, where a site's days are summed from hours
# The parameters an answer depends on: the response cache keys answers by them.
PARAMETERS = frozenset(
    {
        "start_date",
        "end_date",
        "meter",
        "building",
        "virtual",
        "start",
        "end",
        "step",
        "month",
        "interval",
        "site",
    }
)

# The CSV's columns after `t`: the original four, then the added ones (at the end, so a
# reader of the original columns by position still finds them)
CSV_COLUMNS = (
    "energy_wh",
    "avg_power_w",
    "coverage",
    "export_wh",
    "net_wh",
    "estimated_wh",
    "estimated_export_wh",
)

views = Blueprint("api", __name__)


def api_state() -> ApiState:
    """The app's state (what every view reads through)."""
    state: ApiState = current_app.extensions["campus_energy"]
    return state


def request_view() -> SiteView:
    """The site the request asks for (`site=`), or the whole: BadParameter, NotFound."""
    return api_state().view(request.args.get("site"))


def cached(build: Callable[[], tuple[bytes, str]]) -> Response:
    """The answer from the response cache or `build`, with an ETag of the body."""
    state = api_state()
    known = [(k, request.args[k]) for k in sorted(PARAMETERS) if k in request.args]
    answer = state.cache.answer(state.source.version, request.path, known, build)
    response = Response(answer.body, mimetype=answer.mimetype)
    response.set_etag(answer.etag)
    response.headers["Cache-Control"] = f"public, max-age={int(state.config.api.cache_s)}"
    response.make_conditional(request)
    return response


def cached_json(build: Callable[[], dict[str, Any]]) -> Response:
    return cached(lambda: (dumps(build()), "application/json"))


@views.get("/")
def page() -> Response:
    refresh_s = api_state().config.api.refresh_s
    html = resources.files("campus_energy.api").joinpath("static/index.html").read_text("utf-8")
    html = html.replace('data-refresh-s="60"', f'data-refresh-s="{refresh_s}"')
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@views.get("/api/live")
def live() -> Response:
    """The app answers (for the watchdog): no window store is read."""
    response = Response(json.dumps({"status": "alive"}), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@views.get("/api/health")
def health() -> Response:
    state = api_state()
    view = request_view()
    now = state.now_ms()
    try:
        meters = state.meters(view)
    except SourceError:
        state.metrics.source_errors.inc()
        body = {"status": "unavailable", "error": UNAVAILABLE, "source": state.source.name}
        return Response(json.dumps(body), status=503, mimetype="application/json")
    last = last_window_ms(meters)
    online = [m for m in meters if state.online(m, now)]
    reporting = len(online)
    ok = last is not None and reporting == len(meters)
    covered = [m.coverage for m in online if m.coverage is not None]
    return json_response(
        view.answer(
            {
                "status": "ok" if ok else "degraded",
                "source": state.source.name,
                "timezone": view.zone.key,
                "last_window": iso(last),
                "meters": len(meters),
                "meters_reporting": reporting,
                "coverage": round(sum(covered) / len(covered), 4) if covered else None,
                "detail": health_detail(meters, online),
                "checked_at": iso(now - now % 1000),
                "refresh_s": state.config.api.refresh_s,
            }
        )
    )


def finite_kwh(wh: float) -> float | None:
    """kWh as answers give them; None for a sum JSON cannot carry."""
    return rounded(finite(wh), kwh)


@views.get("/api/meters")
def meters() -> Response:
    state = api_state()
    view = request_view()
    campus = view.config.campus
    # the whole of several sites names each meter's
    sited = view.id is None and state.estate.several

    def answer(m: MeterLatest, now: int, today: Energy) -> dict[str, Any]:
        body = {
            "meter_id": m.meter_id,
            "building": m.building,
            "floor": m.floor,
            "last_window": iso(m.last_window_ms),
            "power_w": rounded(finite(m.power_w), round_w),
            "coverage": rounded(m.coverage, round_share),
            "online": state.online(m, now),
            # added: the meter's energy today (a corrupt window's sum is null, not an error:
            # the list of meters is what shows which meter is wrong)
            "today_kwh": finite_kwh(today.import_wh),
            **today.added(finite_kwh, "today"),
        }
        return {**body, "site": state.estate.site_of(m)} if sited else body

    def build() -> dict[str, Any]:
        now = state.now_ms()
        meters = state.meters(view)
        today = local_date(now, view.zone)
        ids = None if view.id is None else [m.meter_id for m in meters]
        after = (today + timedelta(days=1)).isoformat()
        rows = view.source.buckets("day", today.isoformat(), after, ids)
        by_meter = per_meter(b for b in rows if b.key == today.isoformat())
        return view.answer(
            {
                "timezone": view.zone.key,
                "meters": [answer(m, now, by_meter.get(m.meter_id, Energy())) for m in meters],
                "virtual_meters": [virtual_meter_answer(campus, v) for v in campus.virtual_meters],
            }
        )

    return cached_json(build)


@views.get("/api/summary")
def summary() -> Response:
    state = api_state()
    view = request_view()

    def build() -> dict[str, Any]:
        now = state.now_ms()
        period = Period.at(now, view.zone)
        meters = state.meters(view)
        ids = None if view.id is None else [m.meter_id for m in meters]
        after = (period.today + timedelta(days=1)).isoformat()
        month = view.source.buckets("day", period.month_start.isoformat(), after, ids)
        week = month
        if period.week_start < period.month_start:  # the week began last month
            week = view.source.buckets("day", period.week_start.isoformat(), after, ids)
        online = [m for m in meters if state.online(m, now)]
        return view.answer(
            summary_answer(
                meters, online, month, week, now, view.zone, view.uncounted, state.basis(view)
            )
        )

    return cached_json(build)


@views.get("/api/sites")
def sites() -> Response:
    """Every site served, the default first: its meters and buildings, power now and
    today's energy on its own clock."""
    state = api_state()

    def build() -> dict[str, Any]:
        now = state.now_ms()
        every = state.every_meter()
        return {"sites": [_site(state, view, every, now) for view in state.estate.sites()]}

    return cached_json(build)


def _site(state: ApiState, view: SiteView, every: list[MeterLatest], now: int) -> dict[str, Any]:
    meters = state.estate.within(view, every)
    online = [m for m in meters if state.online(m, now)]
    counted = [m.meter_id for m in meters if m.meter_id not in view.uncounted]
    today = local_date(now, view.zone)
    after = today + timedelta(days=1)
    rows = view.source.buckets("day", today.isoformat(), after.isoformat(), counted)
    power = [finite(m.power_w) or 0.0 for m in online if m.meter_id not in view.uncounted]
    buildings = {m.building for m in meters} | set(view.config.campus.building_names())
    energy = Energy.of(b for b in rows if b.key == today.isoformat())
    return {
        "id": view.id,
        "name": view.name,
        "timezone": view.zone.key,
        "default": view.id == state.estate.ids[0],
        "meters": len(meters),
        "meters_online": len(online),
        "buildings": sorted(buildings - {""}),
        "power_w": round_w(sum(power)),
        "today": today.isoformat(),
        "today_kwh": kwh(energy.import_wh),
        "last_window": iso(last_window_ms(meters)),
        **energy.added(kwh, "today"),
    }


def _aggregate(scope: str, building: str | None) -> Response:
    state = api_state()
    view = request_view()
    zone = view.zone
    today = local_date(state.now_ms(), zone)
    args = request.args
    first, last = day_range(args.get("start_date"), args.get("end_date"), today, MAX_RANGE_DAYS)
    # the original deployment's answer: every meter named with the building (or the site)
    ids = None
    if building is not None or view.id is not None:
        ids = state.scope(view, None, building, totals=False)[2]

    def build() -> dict[str, Any]:
        total = view.source.total(first.isoformat(), last.isoformat(), ids)
        body: dict[str, Any] = {
            "scope": scope,
            "time_range_start": iso(midnight_ms(first, zone)),
            "time_range_end": iso(midnight_ms(last + timedelta(days=1), zone)),
            "total_energy_kwh": kwh(total.energy_wh),
            "meters_found": total.meters_found,
            "readings_processed": total.readings,
            "last_reading_in_range": iso(total.last_window_ms),
            "timezone": zone.key,
            # added to the original's keys: total_energy_kwh is the measured import
            "import_energy_kwh": kwh(total.energy_wh),
            "export_energy_kwh": kwh(total.export_wh),
            "net_energy_kwh": kwh(total.energy_wh - total.export_wh),
            "estimated_energy_kwh": kwh(total.estimated_wh),
            "estimated_export_kwh": kwh(total.estimated_export_wh),
        }
        if building is not None:
            body["building_name"] = building
        return view.answer(body)

    return cached_json(build)


@views.get("/api/aggregate/campus")
def aggregate_campus() -> Response:
    return _aggregate("campus", None)


@views.get("/api/aggregate/building/<path:name>")
def aggregate_building(name: str) -> Response:
    return _aggregate("building", name)


def _series_request() -> tuple[dict[str, Any], Callable[[], list[dict[str, Any]]]]:
    """Check the parameters now; the points are computed only on a cache miss."""
    state = api_state()
    view = request_view()
    zone = view.zone
    step = request.args.get("step", "5m")
    if step not in STEPS:
        raise BadParameter("step", f"must be one of {', '.join(STEPS)}, got {step[:20]!r}")
    grain, step_s = STEPS[step]
    end = parse_instant("end", request.args.get("end"), zone) or state.now_ms()
    start = parse_instant("start", request.args.get("start"), zone)
    if start is None:  # the last 24 hours, or the 30 local days that end with end's day
        start = (
            midnight_ms(local_date(end - 1, zone) - timedelta(days=29), zone)
            if grain == "day"
            else end - 86_400_000
        )
    if end <= start:
        raise BadParameter("end", "must be after start")
    steps = (end - start) / 1000 / step_s
    if steps > MAX_POINTS:
        raise BadParameter("start", f"the range holds more than {MAX_POINTS} steps of {step}")
    scope, name, ids, in_scope, terms = _series_scope(state, view)
    rows = steps * max(1, in_scope)
    # a site whose midnights are not the store's has its days summed from hours: 24 rows a day
    source = view.source
    days = local_date(start, zone), local_date(end, zone)
    if grain == "day" and isinstance(source, ZonedSource) and not source.same_days(*days):
        if rows * 24 > MAX_HOUR_ROWS:
            raise BadParameter(
                "start",
                f"too long a range for {in_scope} meters at {step} in {zone.key}: use fewer days",
            )
    elif rows > MAX_ROWS:
        raise BadParameter(
            "start", f"too long a range for {in_scope} meters at {step}: use a larger step"
        )
    head = view.answer(
        {
            "scope": scope,
            "name": name,
            "step": step,
            "timezone": zone.key,
            "start": iso(start),
            "end": iso(end),
        }
    )

    def points() -> list[dict[str, Any]]:
        first, after = series_span(grain, start, end, zone)
        if terms is not None:
            rows = view.source.buckets(grain, first, after, ids) if terms else []
            return virtual_answer(rows, grain, step_s, terms, zone)
        rows = view.source.buckets(grain, first, after, ids)
        return series_answer(rows, grain, step_s, in_scope, zone)

    return head, points


def _series_scope(
    state: ApiState, view: SiteView
) -> tuple[str, str | None, list[str] | None, int, dict[str, float] | None]:
    """(scope, name, meter ids or None for the campus, how many meters, a virtual meter's
    terms or None) of a series request: a meter, a building, a virtual meter or the campus."""
    virtual = request.args.get("virtual")
    if virtual is None:
        meter, building = request.args.get("meter"), request.args.get("building")
        return (*state.scope(view, meter, building), None)
    if "meter" in request.args or "building" in request.args:
        raise BadParameter("virtual", "give one of meter, building and virtual, not several")
    campus = view.config.campus
    try:
        campus.virtual(virtual)
    except KeyError:
        raise NotFound(f"unknown virtual meter {virtual[:80]!r}") from None
    terms = campus.terms(virtual)
    return "virtual", virtual, sorted(terms), len(terms), terms


@views.get("/api/series")
def series() -> Response:
    head, points = _series_request()  # parameters are checked before the cache is consulted
    return cached_json(lambda: {**head, "points": points()})


@views.get("/api/export.csv")
def export() -> Response:
    head, points = _series_request()

    def build() -> tuple[bytes, str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["t", *CSV_COLUMNS])
        for p in points():
            numbers = [p[name] for name in CSV_COLUMNS]
            if not all(v is None or math.isfinite(v) for v in numbers):
                raise Unrepresentable(f"a step at {p['t']} holds {numbers}")
            writer.writerow([p["t"], *("" if v is None else v for v in numbers)])
        return out.getvalue().encode(), "text/csv"

    response = cached(build)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="campus-energy-{head["scope"]}-{head["step"]}.csv"'
    )
    return response


@views.get("/api/openapi.json")
def openapi() -> Response:
    return json_response(openapi_document())


@views.get("/metrics")
def prometheus() -> Response:
    metrics = api_state().metrics
    return Response(metrics.render(), mimetype=metrics.content_type)
