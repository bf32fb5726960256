"""The app factory: Flask with strict JSON, request metrics, CORS and security headers, the
one place that turns the project's exceptions into statuses, and the views."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from campus_energy.accounts.scopes import UnknownScope
from campus_energy.api.alert_views import (
    ACTIONS,
    Forbidden,
    NotJSON,
    TokenUnreadable,
    TooLarge,
    Unauthorized,
    alert_views,
)
from campus_energy.api.answers import (
    UNAVAILABLE,
    StrictJSONProvider,
    Unrepresentable,
    json_response,
)
from campus_energy.api.billing_views import billing
from campus_energy.api.metrics import Metrics
from campus_energy.api.queries import BadParameter, NotFound
from campus_energy.api.state import ApiState
from campus_energy.api.views import views
from campus_energy.api.watched import WatchedSource
from campus_energy.backends import open_source
from campus_energy.backends.base import WindowSource
from campus_energy.config import Config, load_config
from campus_energy.errors import AlertBookError, CampusEnergyError, SourceError

log = logging.getLogger("campus_energy.api")
# The alert actions' refusals and their statuses (401, with its challenge, apart).
REFUSALS: dict[type[CampusEnergyError], int] = {
    Forbidden: 403,
    TooLarge: 413,
    NotJSON: 415,
    TokenUnreadable: 503,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    config: Config | None = None,
    *,
    source: WindowSource | None = None,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The API. With no config, it is read as every command reads it (environment, file)."""
    config = config or load_config(None, os.environ)
    # Named for the package: Flask's logger and the static folder beside this module.
    app = Flask("campus_energy.api", static_folder="static", static_url_path="/static")
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False
    watched = WatchedSource(source or open_source(config), log)
    state = ApiState(config, watched, clock, Metrics())
    app.extensions["campus_energy"] = state
    _watch_requests(app, state)
    _map_errors(app, state)
    app.register_blueprint(views)
    app.register_blueprint(billing)
    app.register_blueprint(alert_views)
    return app


def _watch_requests(app: Flask, state: ApiState) -> None:
    """Each answer is measured and carries the security headers (and CORS's, when asked,
    except for the alert actions: no other origin may write)."""
    origins = state.config.api.cors_origins

    @app.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def finished(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        state.metrics.observe(endpoint, response.status_code, time.perf_counter() - g.started)
        if origins and request.path not in ACTIONS:
            response.vary.add("Origin")  # shared caches must not mix answers across origins
            origin = request.headers.get("Origin")
            if origin and origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = "ETag"
                response.headers["Access-Control-Allow-Headers"] = "If-None-Match"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _map_errors(app: Flask, state: ApiState) -> None:
    """The project's exceptions and Flask's 404 and 405 as JSON answers with their statuses."""

    @app.errorhandler(CampusEnergyError)
    def failed(exc: CampusEnergyError) -> tuple[Response, int]:
        if isinstance(exc, BadParameter):
            return json_response({"error": str(exc)}), 400
        if isinstance(exc, NotFound | UnknownScope):
            return json_response({"error": str(exc)}), 404
        if isinstance(exc, Unauthorized):
            response = json_response({"error": str(exc)})
            response.headers["WWW-Authenticate"] = exc.challenge
            return response, 401
        for kind, status in REFUSALS.items():
            if isinstance(exc, kind):
                return json_response({"error": str(exc)}), status
        if isinstance(exc, AlertBookError):
            log.error("%s: %s; answered 503", request.path[:100], exc)
            return json_response({"error": "the book of alerts is unavailable"}), 503
        if isinstance(exc, SourceError):  # its reason is logged by the source, once an outage
            state.metrics.source_errors.inc()
        else:
            log.error("%s: %s; answered 503", request.path[:100], exc)
        return json_response({"error": UNAVAILABLE}), 503

    logged: set[str] = set()  # endpoints whose unrepresentable answer is logged already
    lock = threading.Lock()  # Gunicorn's gthread workers answer at once

    @app.errorhandler(Unrepresentable)
    def unrepresentable(exc: Unrepresentable) -> tuple[Response, int]:
        endpoint = request.url_rule.rule if request.url_rule else request.path[:100]
        with lock:
            first = endpoint not in logged
            logged.add(endpoint)
        if first:  # then quietly: every request for it would log the same
            log.error("%s: %s; answered 503", endpoint, exc)
        return json_response(
            {"error": "the answer cannot be computed from the stored windows"}
        ), 503

    @app.errorhandler(404)
    def missing(_: Exception) -> tuple[Response, int]:
        return json_response({"error": f"no such endpoint: {request.path[:100]}"}), 404

    @app.errorhandler(405)
    def read_only(exc: HTTPException) -> tuple[Response, int]:
        allowed = dict(exc.get_headers()).get("Allow", "")
        words = "this API is read-only: GET only"
        if "POST" in allowed.split(", "):  # an alert action
            words = "this endpoint takes POST only"
        response = json_response({"error": words})
        if allowed:
            response.headers["Allow"] = allowed
        return response, 405
