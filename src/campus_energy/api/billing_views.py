"""The billing endpoints, as a second Blueprint: costs, the dashboard's cost overview,
demand, monthly bills (JSON, CSV, XLSX) and the campus model.

As in `views`, a view checks its parameters before anything is read (a bad one is a 400
naming it, an unknown building, meter or virtual meter a 404), and the answer is built
on a cache miss from `accounts` through the source's `scope_hours`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, request

from campus_energy.accounts.command import energy_from
from campus_energy.accounts.documents import (
    bills_csv,
    bills_xlsx,
    campus_bill_document,
    demand_document,
    month_text,
)
from campus_energy.accounts.scopes import Scope, resolve
from campus_energy.accounts.statements import CampusBill, campus_bill, demand, statement
from campus_energy.api.campus_model import campus_model_answer
from campus_energy.api.costs import HoursMemo, campus_cost_answer, cost_answer, overview_answer
from campus_energy.api.queries import (
    BadParameter,
    day_range,
    parse_interval,
    parse_month_of,
)
from campus_energy.api.views import api_state, cached, cached_json
from campus_energy.core.days import local_date
from campus_energy.core.demand import Month

MAX_COST_DAYS = 366
MAX_DEMAND_DAYS = 93  # 8,928 quarter hours
SCOPES = ("building", "meter", "virtual")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

billing = Blueprint("billing", __name__)


def _scope() -> Scope:
    """The campus, or the one building, meter or virtual meter the request names."""
    given = [kind for kind in SCOPES if kind in request.args]
    if len(given) > 1:
        raise BadParameter(given[1], f"give at most one of {', '.join(SCOPES)}")
    if not given:
        return resolve(api_state().config, "campus", None)
    kind = given[0]
    name = request.args[kind]
    if name == "":
        raise BadParameter(kind, "must name one (omit it for the campus)")
    return resolve(api_state().config, kind, name)  # UnknownScope: 404


def _days(max_days: int) -> tuple[date, date]:
    state = api_state()
    today = local_date(state.now_ms(), state.zone)
    args = request.args
    return day_range(args.get("start_date"), args.get("end_date"), today, max_days)


@billing.get("/api/cost")
def cost() -> Response:
    scope = _scope()
    first, last = _days(MAX_COST_DAYS)
    state = api_state()

    def build() -> dict[str, Any]:
        hours, peaks = HoursMemo(state.source.scope_hours), state.source.scope_peaks
        if scope.kind == "campus":
            return campus_cost_answer(state.config, hours, first, last, peaks)
        found = statement(state.config, hours, scope, first, last, peaks_of=peaks)
        return cost_answer(found, state.zone)

    return cached_json(build)


@billing.get("/api/cost/overview")
def cost_overview() -> Response:
    state = api_state()
    now = state.now_ms()
    return cached_json(
        lambda: overview_answer(
            state.config, HoursMemo(state.source.scope_hours), now, state.source.scope_peaks
        )
    )


@billing.get("/api/demand")
def demand_series() -> Response:
    scope = _scope()
    first, last = _days(MAX_DEMAND_DAYS)
    interval = parse_interval("interval", request.args.get("interval"))
    state = api_state()

    def build() -> dict[str, Any]:
        source = state.source
        found = demand(
            state.config,
            source.scope_hours,
            scope,
            first,
            last,
            interval,
            peaks_of=source.scope_peaks,
        )
        body = {**demand_document(found, state.zone), "timezone": state.zone.key}
        if scope.kind == "campus":  # its coincident peak is billed to no one: no ratchet
            body["ratchet_floors"] = {}
        return body

    return cached_json(build)


def _bill_request() -> tuple[Month, str | None]:
    state = api_state()
    today = local_date(state.now_ms(), state.zone)
    month = parse_month_of("month", request.args.get("month"), (today.year, today.month))
    building = request.args.get("building")
    if building == "":
        raise BadParameter("building", "must name one (omit it for every account)")
    if building is not None:
        resolve(state.config, "building", building)  # UnknownScope: 404, before the cache
    return month, building


def _bill(month: Month, building: str | None) -> CampusBill:
    state = api_state()
    hours = HoursMemo(state.source.scope_hours)
    return campus_bill(
        state.config,
        hours,
        energy_from(state.source),
        month,
        building,
        peaks_of=state.source.scope_peaks,
    )


@billing.get("/api/bills")
def bills() -> Response:
    month, building = _bill_request()
    zone = api_state().zone
    return cached_json(lambda: campus_bill_document(_bill(month, building), zone))


def _attachment(response: Response, month: Month, suffix: str) -> Response:
    response.headers["Content-Disposition"] = (
        f'attachment; filename="bills-{month_text(month)}.{suffix}"'
    )
    return response


@billing.get("/api/bills.csv")
def bills_as_csv() -> Response:
    month, building = _bill_request()
    response = cached(lambda: (bills_csv(_bill(month, building)).encode(), "text/csv"))
    return _attachment(response, month, "csv")


@billing.get("/api/bills.xlsx")
def bills_as_xlsx() -> Response:
    month, building = _bill_request()
    zone = api_state().zone
    response = cached(lambda: (bills_xlsx(_bill(month, building), zone), XLSX))
    return _attachment(response, month, "xlsx")


@billing.get("/api/buildings")
def buildings() -> Response:
    config = api_state().config
    return cached_json(lambda: campus_model_answer(config))
