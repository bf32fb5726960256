"""The REST API and the public dashboard (Flask). Serve with `campus-energy api` or
`gunicorn "campus_energy.api:create_app()"`.

Views only parse parameters and shape answers: the source reads rollups, the
pure helpers in `queries` do the sums, and one error handler turns the
project's exceptions into statuses.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from campus_energy.api.metrics import Metrics
from campus_energy.api.openapi import openapi_document
from campus_energy.api.queries import (
    MAX_POINTS,
    MAX_RANGE_DAYS,
    STEPS,
    BadParameter,
    NotFound,
    Period,
    by_building,
    day_of,
    finite,
    kwh,
    midnight_ms,
    parse_day,
    parse_instant,
    round_share,
    round_w,
    series_points,
)
from campus_energy.api.watched import WatchedSource
from campus_energy.backends import open_source
from campus_energy.backends.base import MeterLatest, WindowSource
from campus_energy.config import Config, load_config
from campus_energy.core.rollups import hour_of
from campus_energy.core.timestamps import iso_utc
from campus_energy.errors import CampusEnergyError, SourceError

log = logging.getLogger("campus_energy.api")
CACHE_ENTRIES = 256
CACHE_BODY_MAX = 256 * 1024  # larger answers are recomputed rather than kept
MAX_ROWS = 200_000  # source rows one series request may read (steps × meters)
UNAVAILABLE = "window store unavailable"  # a 503's words: the reason, with its paths, is logged
PARAMETERS = frozenset({"start_date", "end_date", "meter", "building", "start", "end", "step"})
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _rounded(value: float | None, how: Callable[[float], float]) -> float | None:
    return None if value is None else how(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_utc(ms).replace(".000Z", "Z")


class Campus:
    """What the views need: the config, the source, the clock, and a small response cache."""

    def __init__(self, config: Config, source: WindowSource, clock: Callable[[], float]) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.zone = config.site.zone
        self.intervals = {m.id: m.interval_s for m in config.meters}
        self.cache: OrderedDict[str, tuple[str, bytes, str]] = OrderedDict()
        self.lock = threading.Lock()  # Gunicorn's gthread workers share the cache

    def now_ms(self) -> int:
        return round(self.clock() * 1000)

    def fresh_ms(self, meter_id: str) -> int:
        """A meter whose latest window *ended* within this of now is reporting: the next
        window is written `grace_s` after its end, a meter polled less often than once a
        window fills only every few windows, and a source may lag by `cache_s`."""
        bridge = self.config.bridge
        lag = self.config.api.cache_s if self.source.name == "firestore" else 0.0
        polled = self.intervals.get(meter_id, 0.0)
        return round(
            (2 * bridge.window_s + max(0.0, polled - bridge.window_s) + bridge.grace_s + lag) * 1000
        )

    def meters(self) -> list[MeterLatest]:
        """The source's meters, plus configured meters that have no window yet."""
        found = {m.meter_id: m for m in self.source.meters()}
        for m in self.config.meters:
            found.setdefault(m.id, MeterLatest(m.id, m.building, m.floor, None, None, None))
        return sorted(found.values(), key=lambda m: m.meter_id)

    def online(self, meter: MeterLatest, now_ms: int) -> bool:
        last = meter.last_window_ms
        if last is None:
            return False
        return now_ms - (last + self.config.bridge.window_s * 1000) <= self.fresh_ms(meter.meter_id)

    def scope(
        self, meter: str | None, building: str | None
    ) -> tuple[str, str | None, list[str] | None]:
        """(scope, name, meter ids or None for the whole campus) of a request."""
        if meter is not None and building is not None:
            raise BadParameter("meter", "give either meter or building, not both")
        meters = self.meters()
        if meter is not None:
            if meter not in {m.meter_id for m in meters}:
                raise NotFound(f"unknown meter {meter[:80]!r}")
            return "meter", meter, [meter]
        if building is not None:
            ids = [m.meter_id for m in meters if m.building == building]
            if not ids:
                raise NotFound(f"unknown building {building[:80]!r}")
            return "building", building, ids
        return "campus", None, None


def create_app(
    config: Config | None = None,
    *,
    source: WindowSource | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The API. With no config, it is read as every command reads it (environment, file)."""
    config = config or load_config(None, os.environ)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.json = _StrictJSONProvider(app)
    app.json.sort_keys = False
    campus = Campus(config, WatchedSource(source or open_source(config), log), clock)
    metrics = Metrics()
    app.extensions["campus_energy"] = campus

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def finished(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe(endpoint, response.status_code, time.perf_counter() - g.started)
        if config.api.cors_origins:
            response.vary.add("Origin")  # shared caches must not mix answers across origins
            origin = request.headers.get("Origin")
            if origin and origin in config.api.cors_origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = "ETag"
                response.headers["Access-Control-Allow-Headers"] = "If-None-Match"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(CampusEnergyError)
    def failed(exc: CampusEnergyError) -> tuple[Response, int]:
        if isinstance(exc, BadParameter):
            return _json({"error": str(exc)}), 400
        if isinstance(exc, NotFound):
            return _json({"error": str(exc)}), 404
        if isinstance(exc, SourceError):  # its reason is logged by the source, once an outage
            metrics.source_errors.inc()
        else:
            log.error("%s: %s; answered 503", request.path[:100], exc)
        return _json({"error": UNAVAILABLE}), 503

    unrepresentable_logged: set[str] = set()  # endpoints whose failure is logged already

    @app.errorhandler(Unrepresentable)
    def unrepresentable(exc: Unrepresentable) -> tuple[Response, int]:
        endpoint = request.url_rule.rule if request.url_rule else request.path[:100]
        with campus.lock:
            first = endpoint not in unrepresentable_logged
            unrepresentable_logged.add(endpoint)
        if first:  # then quietly: every request for it would log the same
            log.error("%s: %s; answered 503", endpoint, exc)
        return _json({"error": "the answer cannot be computed from the stored windows"}), 503

    @app.errorhandler(404)
    def missing(_: Exception) -> tuple[Response, int]:
        return _json({"error": f"no such endpoint: {request.path[:100]}"}), 404

    @app.errorhandler(405)
    def read_only(exc: HTTPException) -> tuple[Response, int]:
        response = _json({"error": "this API is read-only: GET only"})
        for name, value in exc.get_headers():
            if name == "Allow":
                response.headers["Allow"] = value
        return response, 405

    def cached(build: Callable[[], tuple[bytes, str]]) -> Response:
        """Serve from the response cache, with an ETag of the body.

        An answer is reused while the data's version and the `cache_s` period are the
        same (answers such as "online" change with time alone), for the same endpoint and
        the same known parameters (unknown ones cannot force a recomputation).
        """
        cache_s = config.api.cache_s
        hit = None
        key = ""
        if cache_s > 0:
            known = [(k, request.args.get(k)) for k in sorted(PARAMETERS) if k in request.args]
            period = int(campus.clock() // cache_s)
            key = f"{campus.source.version()}|{period}|{request.path}|{urlencode(known)}"
            hit = campus.cache.get(key)
        if hit is None:
            body, mimetype = build()
            hit = (hashlib.sha1(body).hexdigest()[:20], body, mimetype)
            if key and len(body) <= CACHE_BODY_MAX:
                with campus.lock:
                    campus.cache[key] = hit
                    while len(campus.cache) > CACHE_ENTRIES:
                        campus.cache.popitem(last=False)
        else:
            metrics.cache_hits.inc()
        etag, body, mimetype = hit
        response = Response(body, mimetype=mimetype)
        response.set_etag(etag)
        response.headers["Cache-Control"] = f"public, max-age={int(config.api.cache_s)}"
        response.make_conditional(request)
        return response

    def as_json(build: Callable[[], dict[str, Any]]) -> Response:
        return cached(lambda: (_dumps(build()), "application/json"))

    # --- endpoints -----------------------------------------------------------------------------

    @app.get("/")
    def page() -> Response:
        html = resources.files("campus_energy.api").joinpath("static/index.html").read_text("utf-8")
        html = html.replace('data-refresh-s="60"', f'data-refresh-s="{config.api.refresh_s}"')
        response = Response(html, mimetype="text/html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/api/live")
    def live() -> Response:
        """The app answers (for the watchdog): no window store is read."""
        response = Response(json.dumps({"status": "alive"}), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/health")
    def health() -> Response:
        now = campus.now_ms()
        try:
            meters = campus.meters()
        except SourceError:
            metrics.source_errors.inc()
            body = {"status": "unavailable", "error": UNAVAILABLE, "source": campus.source.name}
            return Response(json.dumps(body), status=503, mimetype="application/json")
        last = max((m.last_window_ms for m in meters if m.last_window_ms is not None), default=None)
        online = [m for m in meters if campus.online(m, now)]
        reporting = len(online)
        ok = last is not None and reporting == len(meters)
        covered = [m.coverage for m in online if m.coverage is not None]
        return _json(
            {
                "status": "ok" if ok else "degraded",
                "source": campus.source.name,
                "timezone": campus.zone.key,
                "last_window": _iso(last),
                "meters": len(meters),
                "meters_reporting": reporting,
                "coverage": round(sum(covered) / len(covered), 4) if covered else None,
                "detail": _health_detail(meters, online),
                "checked_at": _iso(now - now % 1000),
                "refresh_s": config.api.refresh_s,
            }
        )

    @app.get("/api/meters")
    def meters() -> Response:
        def build() -> dict[str, Any]:
            now = campus.now_ms()
            return {
                "timezone": campus.zone.key,
                "meters": [
                    {
                        "meter_id": m.meter_id,
                        "building": m.building,
                        "floor": m.floor,
                        "last_window": _iso(m.last_window_ms),
                        "power_w": _rounded(finite(m.power_w), round_w),
                        "coverage": _rounded(m.coverage, round_share),
                        "online": campus.online(m, now),
                    }
                    for m in campus.meters()
                ],
            }

        return as_json(build)

    @app.get("/api/summary")
    def summary() -> Response:
        def build() -> dict[str, Any]:
            now = campus.now_ms()
            period = Period.at(now, campus.zone)
            meters = campus.meters()
            building_of = {m.meter_id: m.building for m in meters}
            month = campus.source.buckets(
                "day",
                period.month_start.isoformat(),
                (period.today + timedelta(days=1)).isoformat(),
                None,
            )
            today = [b for b in month if b.key == period.today.isoformat()]
            week = [b for b in month if str(b.key) >= period.week_start.isoformat()]
            if period.week_start < period.month_start:  # the week began last month
                week = campus.source.buckets(
                    "day",
                    period.week_start.isoformat(),
                    (period.today + timedelta(days=1)).isoformat(),
                    None,
                )
            online = [m for m in meters if campus.online(m, now)]
            power = {m.meter_id: finite(m.power_w) or 0.0 for m in online}
            per = {
                "today": by_building(today, building_of),
                "week": by_building(week, building_of),
                "month": by_building(month, building_of),
            }
            total_today = sum(per["today"].values())
            buildings = sorted({m.building for m in meters})
            last = max(
                (m.last_window_ms for m in meters if m.last_window_ms is not None), default=None
            )
            return {
                "timezone": campus.zone.key,
                "generated_at": _iso(now - now % 1000),
                "last_window": _iso(last),
                "power_w": round_w(sum(power.values())),
                "meters": len(meters),
                "meters_online": len(online),
                "today_kwh": kwh(total_today),
                "week_kwh": kwh(sum(per["week"].values())),
                "month_kwh": kwh(sum(per["month"].values())),
                "buildings": [
                    {
                        "building": name,
                        "power_w": round_w(
                            sum(p for mid, p in power.items() if building_of[mid] == name)
                        ),
                        "today_kwh": kwh(per["today"].get(name, 0.0)),
                        "week_kwh": kwh(per["week"].get(name, 0.0)),
                        "month_kwh": kwh(per["month"].get(name, 0.0)),
                        "share_today": round(per["today"].get(name, 0.0) / total_today, 4)
                        if total_today > 0
                        else 0.0,
                    }
                    for name in buildings
                ],
            }

        return as_json(build)

    def aggregate(scope: str, building: str | None) -> Response:
        today = day_of(campus.now_ms(), campus.zone)
        first = parse_day("start_date", request.args.get("start_date"), today)
        last = parse_day("end_date", request.args.get("end_date"), today)
        if last < first:
            raise BadParameter("end_date", "must not be before start_date")
        if (last - first).days >= MAX_RANGE_DAYS:
            raise BadParameter("end_date", f"the range may span at most {MAX_RANGE_DAYS} days")
        ids = campus.scope(None, building)[2] if building is not None else None

        def build() -> dict[str, Any]:
            total = campus.source.total(first.isoformat(), last.isoformat(), ids)
            body: dict[str, Any] = {
                "scope": scope,
                "time_range_start": _iso(midnight_ms(first, campus.zone)),
                "time_range_end": _iso(midnight_ms(last + timedelta(days=1), campus.zone)),
                "total_energy_kwh": kwh(total.energy_wh),
                "meters_found": total.meters_found,
                "readings_processed": total.readings,
                "last_reading_in_range": _iso(total.last_window_ms),
                "timezone": campus.zone.key,
            }
            if building is not None:
                body["building_name"] = building
            return body

        return as_json(build)

    @app.get("/api/aggregate/campus")
    def aggregate_campus() -> Response:
        return aggregate("campus", None)

    @app.get("/api/aggregate/building/<path:name>")
    def aggregate_building(name: str) -> Response:
        return aggregate("building", name)

    def series_request() -> tuple[dict[str, Any], Callable[[], list[dict[str, Any]]]]:
        """Check the parameters now; the points are computed only on a cache miss."""
        step = request.args.get("step", "5m")
        if step not in STEPS:
            raise BadParameter("step", f"must be one of {', '.join(STEPS)}, got {step[:20]!r}")
        grain, step_s = STEPS[step]
        end = parse_instant("end", request.args.get("end"), campus.zone) or campus.now_ms()
        start = parse_instant("start", request.args.get("start"), campus.zone)
        if start is None:  # the last 24 hours, or the 30 local days that end with end's day
            start = (
                midnight_ms(day_of(end - 1, campus.zone) - timedelta(days=29), campus.zone)
                if grain == "day"
                else end - 86_400_000
            )
        if end <= start:
            raise BadParameter("end", "must be after start")
        steps = (end - start) / 1000 / step_s
        if steps > MAX_POINTS:
            raise BadParameter("start", f"the range holds more than {MAX_POINTS} steps of {step}")
        scope, name, ids = campus.scope(request.args.get("meter"), request.args.get("building"))
        in_scope = len(ids) if ids is not None else len(campus.meters())
        if steps * max(1, in_scope) > MAX_ROWS:
            raise BadParameter(
                "start", f"too long a range for {in_scope} meters at {step}: use a larger step"
            )
        head = {
            "scope": scope,
            "name": name,
            "step": step,
            "timezone": campus.zone.key,
            "start": _iso(start),
            "end": _iso(end),
        }

        def points() -> list[dict[str, Any]]:
            if grain == "day":
                first = day_of(start, campus.zone)
                after = day_of(end - 1, campus.zone) + timedelta(days=1)
                rows = campus.source.buckets("day", first.isoformat(), after.isoformat(), ids)
            else:  # from the local hour (or 5-minute step) containing start
                aligned = (
                    hour_of(start, campus.zone) if grain == "hour" else start - start % 300_000
                )
                rows = campus.source.buckets(grain, aligned, end, ids)
                if grain == "window":  # windows of any length into 5-minute steps
                    rows = [replace(b, key=int(b.key) - int(b.key) % 300_000) for b in rows]
            found = series_points(rows, grain, step_s, in_scope, campus.zone)
            return [p.as_json() for p in found]

        return head, points

    @app.get("/api/series")
    def series() -> Response:
        head, points = series_request()  # parameters are checked before the cache is consulted
        return as_json(lambda: {**head, "points": points()})

    @app.get("/api/export.csv")
    def export() -> Response:
        head, points = series_request()

        def build() -> tuple[bytes, str]:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["t", "energy_wh", "avg_power_w", "coverage"])
            for p in points():
                numbers = [p["energy_wh"], p["avg_power_w"], p["coverage"]]
                if not all(v is None or math.isfinite(v) for v in numbers):
                    raise Unrepresentable(f"a step at {p['t']} holds {numbers}")
                power = "" if p["avg_power_w"] is None else p["avg_power_w"]
                writer.writerow([p["t"], p["energy_wh"], power, p["coverage"]])
            return out.getvalue().encode(), "text/csv"

        response = cached(build)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="campus-energy-{head["scope"]}-{head["step"]}.csv"'
        )
        return response

    @app.get("/api/openapi.json")
    def openapi() -> Response:
        return _json(openapi_document())

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype=metrics.content_type)

    return app


def _health_detail(meters: list[MeterLatest], online: list[MeterLatest]) -> str:
    """Why the status is what it is, in words."""
    if not any(m.last_window_ms is not None for m in meters):
        return "no windows yet"
    silent = sorted({m.meter_id for m in meters} - {m.meter_id for m in online})
    if not silent:
        return f"all {len(meters)} meters reporting"
    named = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5 else "")
    return f"{len(silent)} of {len(meters)} meters not reporting: {named}"


class Unrepresentable(CampusEnergyError):
    """An answer holds a number JSON cannot carry (NaN, ±Infinity): a corrupt stored window."""


class _StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and ±Infinity (which no JSON parser reads back)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def _dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON; Unrepresentable when a number is NaN or infinite."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # "Out of range float values are not JSON compliant"
        raise Unrepresentable(f"a value JSON cannot represent: {exc}") from None


def _json(body: dict[str, Any]) -> Response:
    return Response(_dumps(body), mimetype="application/json")
