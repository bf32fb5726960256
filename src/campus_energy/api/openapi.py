"""The OpenAPI 3 description of the HTTP API (served at /api/openapi.json)."""

from __future__ import annotations

from typing import Any

from campus_energy import __version__
from campus_energy.api.openapi_schemas import (
    ACK_REQUEST,
    ACKNOWLEDGED,
    ALERTS,
    BILLS,
    CAMPUS_MODEL,
    COST,
    DATE,
    DEMAND,
    ERROR,
    NUMBER,
    OVERVIEW,
    SILENCE_REQUEST,
    SILENCED,
    SITE,
    SITES,
    TIME,
    UNSILENCE_REQUEST,
    UNSILENCED,
    VIRTUAL_METER,
    XLSX,
    directions,
    ok,
    schema_object,
)

_AGGREGATE = schema_object(
    {
        "scope": {"type": "string"},
        "time_range_start": TIME,
        "time_range_end": TIME,
        "total_energy_kwh": {"type": "number"},
        "meters_found": {"type": "integer"},
        "readings_processed": {"type": "integer"},
        "last_reading_in_range": TIME,
        "timezone": {"type": "string"},
        "import_energy_kwh": {
            "type": "number",
            "description": "measured import: the same as total_energy_kwh",
        },
        **directions(
            ("export_energy_kwh", "net_energy_kwh", "estimated_energy_kwh", "estimated_export_kwh")
        ),
    }
)
_PERIODS = ("today", "week", "month")
_MEASURED = {
    f"{period}_kwh": {"type": "number", "description": f"measured import ({period})"}
    for period in _PERIODS
}
_FIGURES = {**_MEASURED, **{k: v for p in _PERIODS for k, v in directions(p).items()}}
_SUMMARY = schema_object(
    {
        "timezone": {"type": "string"},
        "generated_at": TIME,
        "last_window": TIME,
        "power_w": {
            "type": "number",
            "description": "net power now (signed: negative while the campus feeds the grid)",
        },
        "meters": {"type": "integer"},
        "meters_online": {"type": "integer"},
        **_FIGURES,
        "buildings": {
            "type": "array",
            "items": schema_object(
                {
                    "building": {"type": "string"},
                    "power_w": {"type": "number"},
                    **_FIGURES,
                    "share_today": {"type": "number"},
                    "basis": {"type": "string"},
                    "site": {"type": "string"},
                },
                ["building", "power_w", *_FIGURES, "share_today"],
            ),
        },
        "site": {"type": "string"},
    },
    [
        *("timezone", "generated_at", "last_window", "power_w", "meters", "meters_online"),
        *_FIGURES,
        "buildings",
    ],
)
_METER = schema_object(
    {
        "meter_id": {"type": "string"},
        "building": {"type": "string"},
        "floor": {"type": "string"},
        "last_window": TIME,
        "power_w": {
            **NUMBER,
            "description": "average net power of the latest window (signed: negative while "
            "the meter feeds the grid)",
        },
        "coverage": NUMBER,
        "online": {"type": "boolean"},
        "today_kwh": {**NUMBER, "description": "measured import today"},
        **directions("today", nullable=True),
        "site": {"type": "string"},
    },
    [
        *("meter_id", "building", "floor", "last_window", "power_w", "coverage", "online"),
        *("today_kwh", *directions("today")),
    ],
)
_SITE = [SITE]
_DATES = [
    {
        "name": "start_date",
        "in": "query",
        "required": False,
        "schema": DATE,
        "description": "first local day, inclusive (default: today)",
    },
    {
        "name": "end_date",
        "in": "query",
        "required": False,
        "schema": DATE,
        "description": "last local day, inclusive (default: today)",
    },
]
_SERIES_PARAMS = [
    SITE,
    {"name": "meter", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "building", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "virtual",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "a virtual meter: its members' windows combined per step with their "
        "weights; coverage is the least covered member's (a member without data covers "
        "nothing and is never filled in); not with meter or building",
    },
    {
        "name": "start",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
        "description": "ISO 8601 with a zone, or a local day YYYY-MM-DD",
    },
    {
        "name": "end",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "step",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["5m", "1h", "1d"], "default": "5m"},
    },
]
_POINT_DIRECTIONS = directions(("export_wh", "net_wh", "estimated_wh", "estimated_export_wh"))
_POINT = schema_object(
    {
        "t": {"type": "string", "format": "date-time"},
        "energy_wh": {"type": "number", "description": "measured import"},
        "avg_power_w": {
            **NUMBER,
            "description": "average net power (signed: negative while feeding the grid)",
        },
        "coverage": {"type": "number", "minimum": 0, "maximum": 1},
        "date": {"type": "string", "format": "date"},
        **_POINT_DIRECTIONS,
    },
    ["t", "energy_wh", "avg_power_w", "coverage", *_POINT_DIRECTIONS],
)


def openapi_document() -> dict[str, Any]:
    """The whole description: the original endpoints, then billing's (`billing_paths`)."""
    errors = {"400": ERROR, "404": ERROR, "503": ERROR}
    refused = {"400": ERROR, "404": ERROR}  # a malformed site, an unknown one
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Campus Energy API",
            "version": __version__,
            "description": "Campus electricity data, windows of exact energy, read-only; "
            "the alert actions (acknowledge, silence) are its only writes, with a bearer token.",
        },
        "components": {
            "securitySchemes": {
                "alertToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in the file alerts.api_token_file names",
                }
            }
        },
        "paths": {
            "/api/live": {
                "get": {
                    "summary": "Does the app answer? (reads no window store)",
                    "responses": {
                        "200": ok(schema_object({"status": {"type": "string", "enum": ["alive"]}}))
                    },
                }
            },
            "/api/sites": {
                "get": {
                    "summary": "The sites served, the default first: meters, buildings, power "
                    "now and today's energy on each site's own clock",
                    "responses": {"200": ok(SITES), "503": ERROR},
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Is data flowing?",
                    "parameters": _SITE,
                    "responses": {
                        **refused,
                        "200": ok(
                            schema_object(
                                {
                                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                                    "source": {"type": "string"},
                                    "timezone": {"type": "string"},
                                    "last_window": TIME,
                                    "meters": {"type": "integer"},
                                    "meters_reporting": {"type": "integer"},
                                    "coverage": NUMBER,
                                    "detail": {"type": "string"},
                                    "checked_at": TIME,
                                    "refresh_s": {"type": "integer"},
                                }
                            )
                        ),
                        "503": ERROR,
                    },
                }
            },
            "/api/meters": {
                "get": {
                    "summary": "Every meter with its latest window, and the virtual meters",
                    "parameters": _SITE,
                    "responses": {
                        **refused,
                        "200": ok(
                            schema_object(
                                {
                                    "timezone": {"type": "string"},
                                    "meters": {"type": "array", "items": _METER},
                                    "virtual_meters": {"type": "array", "items": VIRTUAL_METER},
                                }
                            )
                        ),
                        "503": ERROR,
                    },
                }
            },
            "/api/summary": {
                "get": {
                    "summary": "The campus now: power, today, this week, this month, per building",
                    "parameters": _SITE,
                    "responses": {"200": ok(_SUMMARY), **errors},
                }
            },
            "/api/aggregate/campus": {
                "get": {
                    "summary": "Campus energy over local days (the original deployment's endpoint)",
                    "parameters": [*_DATES, SITE],
                    "responses": {"200": ok(_AGGREGATE), **errors},
                }
            },
            "/api/aggregate/building/{name}": {
                "get": {
                    "summary": "A building's energy over local days (the original endpoint)",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        *_DATES,
                        SITE,
                    ],
                    "responses": {"200": ok(_AGGREGATE), **errors},
                }
            },
            "/api/series": {
                "get": {
                    "summary": "Energy and average power per step for a meter, building or campus",
                    "parameters": _SERIES_PARAMS,
                    "responses": {
                        "200": ok(
                            {
                                "type": "object",
                                "properties": {"points": {"type": "array", "items": _POINT}},
                                "required": ["points"],
                            }
                        ),
                        **errors,
                    },
                }
            },
            "/api/export.csv": {
                "get": {
                    "summary": "The series as CSV",
                    "parameters": _SERIES_PARAMS,
                    "responses": {"200": ok({"type": "string"}, "text/csv"), **errors},
                }
            },
            **_billing_paths(errors),
            **_alerts_paths(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": ok({"type": "string"}, "text/plain")},
                }
            },
        },
    }


def _scope_parameters(what: str) -> list[dict[str, Any]]:
    described = {
        "building": "a building (its account: its main meter, else its top-level meters)",
        "meter": "a meter (priced at its building's energy rates only)",
        "virtual": "a virtual meter (priced at its building's energy rates only)",
    }
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "string", "minLength": 1},
            "description": f"{text}; at most one of building, meter and virtual; none: {what}",
        }
        for name, text in described.items()
    ]


def _days_up_to(days: int) -> list[dict[str, Any]]:
    last = f"last local day, inclusive (default: today); the range spans at most {days} days"
    return [_DATES[0], {**_DATES[1], "description": last}]


_MONTH_PARAMETER = {
    "name": "month",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$", "example": "2026-11"},
    "description": "the local calendar month YYYY-MM (default: this month)",
}
_BILL_PARAMETERS = [
    _MONTH_PARAMETER,
    {
        "name": "building",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "minLength": 1},
        "description": "only this building's bill (default: every account's)",
    },
    SITE,
]


def _billing_paths(errors: dict[str, Any]) -> dict[str, Any]:
    """Costs, demand, bills and the campus model (`billing_views`)."""
    return {
        "/api/cost": {
            "get": {
                "summary": "What a scope's energy cost over local days, with CO2 and demand",
                "description": "A building's statement carries energy (time-of-use), standing "
                "and demand charges on its tariff; a meter's or a virtual meter's only its "
                "energy at its building's rates. Without a scope, the campus: the sum of its "
                "accounts (each building, and the meters in no building), so no sub-meter is "
                "counted twice. `accounts` then lists each account's statement, `totals` sums "
                "money per currency, `total` and `currency` are set only when one currency "
                "holds every amount, `demand` states the campus's coincident peak per month "
                "(no charge: each account's demand charge is in its statement), and "
                "`unpriced_kwh` adds the energy no tariff prices. Money and billed quantities "
                "are decimal strings. Estimated import (gaps the meters' registers bridged) "
                "is stated apart (`estimated_kwh`) and counted in `energy_kwh`, on energy lines "
                "of its own (`estimated`), when `estimated_counted` (billing.include_estimated); "
                "it never sets demand, coverage or CO2.",
                "parameters": [*_scope_parameters("the campus"), *_days_up_to(366), SITE],
                "responses": {"200": ok(COST), **errors},
            }
        },
        "/api/cost/overview": {
            "get": {
                "summary": "The dashboard's cost cards: today, the month so far, peaks, buildings",
                "description": "Today's and this month's energy, cost and CO2 (the accounts' "
                "sums; a range's cost as /api/cost states it: its energy, its days' standing "
                "charges and their share of the month's demand charges), the month's "
                "projected total (energy at its pace so far, standing and demand charges of "
                "the whole month), the campus's coincident peak against last "
                "month's, and per account its month to date, sorted by kWh/m² (accounts "
                "without a floor area last; name '' is the meters in no building). `currency` "
                "and the totals are set when one currency holds every amount, else null beside "
                "the per-currency maps.",
                "parameters": _SITE,
                "responses": {"200": ok(OVERVIEW), **errors},
            }
        },
        "/api/demand": {
            "get": {
                "summary": "Demand (mean kW per interval) and each month's peak and ratchet floor",
                "description": "Each month's peak is of the whole local month (also past the "
                "range's ends); `ratchet_floors` holds, for an account billed a demand charge, "
                "the floor of each month of the range (of the peaks at the tariff's interval). "
                "The campus's coincident demand is no charge: it has no floors, and a meter's "
                "or a virtual meter's neither.",
                "parameters": [
                    *_scope_parameters("the campus's coincident demand"),
                    *_days_up_to(93),
                    {
                        "name": "interval",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "enum": [15, 30, 60]},
                        "description": "minutes (default: the tariff's demand interval, or 15)",
                    },
                    SITE,
                ],
                "responses": {"200": ok(DEMAND), **errors},
            }
        },
        "/api/bills": {
            "get": {
                "summary": "The month's bills: every account's (or one building's) and the sums",
                "description": "Each bill states its measured and estimated import apart "
                "(`measured_kwh`, `estimated_kwh`, `estimated_counted`), the account's export "
                "(`export_kwh`, `estimated_export_kwh`: stated, never priced), each meter's "
                "share of them (`meter_energy`), and the month's meter events of its meters "
                "(`meter_events`: null where the logger's store cannot be read here).",
                "parameters": _BILL_PARAMETERS,
                "responses": {"200": ok(BILLS), **errors},
            }
        },
        "/api/bills.csv": {
            "get": {
                "summary": "The bills' line items and totals as CSV (bills-YYYY-MM.csv)",
                "parameters": _BILL_PARAMETERS,
                "responses": {"200": ok({"type": "string"}, "text/csv"), **errors},
            }
        },
        "/api/bills.xlsx": {
            "get": {
                "summary": "The bills as a workbook: Bills, Accounts, Meters (bills-YYYY-MM.xlsx)",
                "parameters": _BILL_PARAMETERS,
                "responses": {"200": ok({"type": "string", "format": "binary"}, XLSX), **errors},
            }
        },
        "/api/buildings": {
            "get": {
                "summary": "The campus model: buildings, their meters and virtual meters",
                "description": "Each building (declared, or only named by its meters) with its "
                "floor area, tariff, opening hours, the basis of its total, its meters (main, "
                "sub-meter or top-level) and virtual meters; then the meters in no building.",
                "parameters": _SITE,
                "responses": {"200": ok(CAMPUS_MODEL), **errors},
            }
        },
    }


def _action(summary: str, description: str, body: dict[str, Any], answer: dict[str, Any]) -> Any:
    refused = {
        "400": ERROR,
        "401": ERROR,
        "403": ERROR,
        "404": ERROR,
        "413": ERROR,
        "415": ERROR,
        "503": ERROR,
    }
    return {
        "post": {
            "summary": summary,
            "description": description + " Refused: 403 when the API has no "
            "alerts.api_token_file, 401 without the bearer token, 415 for a body not "
            "declared JSON, 413 for one over 4 kB, 400 naming a bad field.",
            "security": [{"alertToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok(answer), **refused},
        }
    }


def _alerts_paths() -> dict[str, Any]:
    """The book of alerts and its actions (`alert_views`)."""
    return {
        "/api/alerts": {
            "get": {
                "summary": "Active alerts, the transitions of the last days, the silences",
                "description": "From the alerts service's book on this host; `configured` is "
                "false (and the lists empty) when there is none. `active`: firing before "
                "pending, the most severe first, then the oldest; `recent`: the newest first.",
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 90, "default": 7},
                        "description": "how many days of transitions `recent` holds",
                    },
                    SITE,
                ],
                "responses": {"200": ok(ALERTS), "400": ERROR, "404": ERROR, "503": ERROR},
            }
        },
        "/api/alerts/ack": _action(
            "Acknowledge a pending or firing alert: it is not notified again until it resolves",
            "404 when the rule has no pending or firing alert for the subject.",
            ACK_REQUEST,
            ACKNOWLEDGED,
        ),
        "/api/alerts/silence": _action(
            "Silence a rule's alerts (or every rule's), for one subject or all, until a time",
            "Give `until` or `for`. Transitions while silenced are recorded, not sent; a "
            "firing not sent is sent when the silence ends if it still fires. 404 for a rule "
            "neither configured nor in the book.",
            SILENCE_REQUEST,
            SILENCED,
        ),
        "/api/alerts/unsilence": _action(
            "Lift a silence before its end",
            "404 when no active silence has the id.",
            UNSILENCE_REQUEST,
            UNSILENCED,
        ),
    }
