"""The billing endpoints, as a second Blueprint: costs, the dashboard's cost overview,
demand, monthly bills (JSON, CSV, XLSX: measured and estimated energy apart, the export
stated, the meter events of the month where the logger's store is readable) and the campus
model.

As in `views`, a view checks its parameters before anything is read (a bad one is a 400
naming it, an unknown building, meter or virtual meter a 404), and the answer is built
on a cache miss from `accounts` through the source's `scope_hours`. With `site=` (or
`api.site`) every answer is that site's alone: its configuration's accounts, its zone's
days and months, its source.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, request

from campus_energy.accounts.command import energy_from, flows_from
from campus_energy.accounts.documents import (
    bills_csv,
    bills_xlsx,
    campus_bill_document,
    demand_document,
    month_text,
)
from campus_energy.accounts.events import events_of_store
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
from campus_energy.api.sites import SiteView
from campus_energy.api.views import api_state, cached, cached_json, request_view
from campus_energy.core.days import local_date
from campus_energy.core.demand import Month

MAX_COST_DAYS = 366
MAX_DEMAND_DAYS = 93  # 8,928 quarter hours
SCOPES = ("building", "meter", "virtual")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

billing = Blueprint("billing", __name__)


def _scope(view: SiteView) -> Scope:
    """The campus, or the one building, meter or virtual meter the request names."""
    given = [kind for kind in SCOPES if kind in request.args]
    if len(given) > 1:
        raise BadParameter(given[1], f"give at most one of {', '.join(SCOPES)}")
    if not given:
        return resolve(view.config, "campus", None)
    kind = given[0]
    name = request.args[kind]
    if name == "":
        raise BadParameter(kind, "must name one (omit it for the campus)")
    return resolve(view.config, kind, name)  # UnknownScope: 404


def _days(view: SiteView, max_days: int) -> tuple[date, date]:
    today = local_date(api_state().now_ms(), view.zone)
    args = request.args
    return day_range(args.get("start_date"), args.get("end_date"), today, max_days)


@billing.get("/api/cost")
def cost() -> Response:
    view = request_view()
    scope = _scope(view)
    first, last = _days(view, MAX_COST_DAYS)

    def build() -> dict[str, Any]:
        hours, peaks = HoursMemo(view.source.scope_hours), view.source.scope_peaks
        if scope.kind == "campus":
            return view.answer(campus_cost_answer(view.config, hours, first, last, peaks))
        found = statement(view.config, hours, scope, first, last, peaks_of=peaks, zone=view.zone)
        return view.answer(cost_answer(found, view.zone))

    return cached_json(build)


@billing.get("/api/cost/overview")
def cost_overview() -> Response:
    view = request_view()
    now = api_state().now_ms()
    return cached_json(
        lambda: view.answer(
            overview_answer(
                view.config, HoursMemo(view.source.scope_hours), now, view.source.scope_peaks
            )
        )
    )


@billing.get("/api/demand")
def demand_series() -> Response:
    view = request_view()
    scope = _scope(view)
    first, last = _days(view, MAX_DEMAND_DAYS)
    interval = parse_interval("interval", request.args.get("interval"))

    def build() -> dict[str, Any]:
        source = view.source
        found = demand(
            view.config,
            source.scope_hours,
            scope,
            first,
            last,
            interval,
            peaks_of=source.scope_peaks,
            zone=view.zone,
        )
        body = {**demand_document(found, view.zone), "timezone": view.zone.key}
        if scope.kind == "campus":  # its coincident peak is billed to no one: no ratchet
            body["ratchet_floors"] = {}
        return view.answer(body)

    return cached_json(build)


def _bill_request() -> tuple[SiteView, Month, str | None]:
    view = request_view()
    today = local_date(api_state().now_ms(), view.zone)
    month = parse_month_of("month", request.args.get("month"), (today.year, today.month))
    building = request.args.get("building")
    if building == "":
        raise BadParameter("building", "must name one (omit it for every account)")
    if building is not None:
        resolve(view.config, "building", building)  # UnknownScope: 404, before the cache
    return view, month, building


def _bill(view: SiteView, month: Month, building: str | None) -> CampusBill:
    return campus_bill(
        view.config,
        HoursMemo(view.source.scope_hours),
        energy_from(view.source),
        month,
        building,
        peaks_of=view.source.scope_peaks,
        flows_of=flows_from(view.source),
        # the logger's store, where this host can read it (else the bills say they could not)
        events_of=events_of_store(view.config.storage.path),
    )


@billing.get("/api/bills")
def bills() -> Response:
    view, month, building = _bill_request()
    return cached_json(
        lambda: view.answer(campus_bill_document(_bill(view, month, building), view.zone))
    )


def _attachment(response: Response, month: Month, suffix: str) -> Response:
    response.headers["Content-Disposition"] = (
        f'attachment; filename="bills-{month_text(month)}.{suffix}"'
    )
    return response


@billing.get("/api/bills.csv")
def bills_as_csv() -> Response:
    view, month, building = _bill_request()
    response = cached(lambda: (bills_csv(_bill(view, month, building)).encode(), "text/csv"))
    return _attachment(response, month, "csv")


@billing.get("/api/bills.xlsx")
def bills_as_xlsx() -> Response:
    view, month, building = _bill_request()
    response = cached(lambda: (bills_xlsx(_bill(view, month, building), view.zone), XLSX))
    return _attachment(response, month, "xlsx")


@billing.get("/api/buildings")
def buildings() -> Response:
    view = request_view()
    return cached_json(lambda: view.answer(campus_model_answer(view.config)))
