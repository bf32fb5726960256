"""The OpenAPI 3 description of the HTTP API (served at /api/openapi.json)."""

from __future__ import annotations

from typing import Any

from campus_energy import __version__

_DATE = {"type": "string", "format": "date", "example": "2026-11-27"}
_ERROR = {
    "description": "a bad parameter (named in the message), an unknown meter or building, "
    "or the data source unavailable",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_NUMBER = {"type": ["number", "null"]}


def _ok(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"description": "OK", "content": {media: {"schema": schema}}}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


_AGGREGATE = _object(
    {
        "scope": {"type": "string"},
        "time_range_start": _TIME,
        "time_range_end": _TIME,
        "total_energy_kwh": {"type": "number"},
        "meters_found": {"type": "integer"},
        "readings_processed": {"type": "integer"},
        "last_reading_in_range": _TIME,
        "timezone": {"type": "string"},
    }
)
_DATES = [
    {
        "name": "start_date",
        "in": "query",
        "required": False,
        "schema": _DATE,
        "description": "first local day, inclusive (default: today)",
    },
    {
        "name": "end_date",
        "in": "query",
        "required": False,
        "schema": _DATE,
        "description": "last local day, inclusive (default: today)",
    },
]
_SERIES_PARAMS = [
    {"name": "meter", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "building", "in": "query", "required": False, "schema": {"type": "string"}},
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
_POINT = _object(
    {
        "t": {"type": "string", "format": "date-time"},
        "energy_wh": {"type": "number"},
        "avg_power_w": _NUMBER,
        "coverage": {"type": "number", "minimum": 0, "maximum": 1},
        "date": {"type": "string", "format": "date"},
    },
    ["t", "energy_wh", "avg_power_w", "coverage"],
)


def openapi_document() -> dict[str, Any]:
    errors = {"400": _ERROR, "404": _ERROR, "503": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Campus Energy API",
            "version": __version__,
            "description": "Read-only campus electricity data: windows of exact energy.",
        },
        "paths": {
            "/api/live": {
                "get": {
                    "summary": "Does the app answer? (reads no window store)",
                    "responses": {
                        "200": _ok(_object({"status": {"type": "string", "enum": ["alive"]}}))
                    },
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Is data flowing?",
                    "responses": {
                        "200": _ok(
                            _object(
                                {
                                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                                    "source": {"type": "string"},
                                    "timezone": {"type": "string"},
                                    "last_window": _TIME,
                                    "meters": {"type": "integer"},
                                    "meters_reporting": {"type": "integer"},
                                    "coverage": _NUMBER,
                                    "detail": {"type": "string"},
                                    "checked_at": _TIME,
                                    "refresh_s": {"type": "integer"},
                                }
                            )
                        ),
                        "503": _ERROR,
                    },
                }
            },
            "/api/meters": {
                "get": {
                    "summary": "Every meter with its latest window",
                    "responses": {"200": _ok({"type": "object"}), "503": _ERROR},
                }
            },
            "/api/summary": {
                "get": {
                    "summary": "The campus now: power, today, this week, this month, per building",
                    "responses": {"200": _ok({"type": "object"}), "503": _ERROR},
                }
            },
            "/api/aggregate/campus": {
                "get": {
                    "summary": "Campus energy over local days (the original deployment's endpoint)",
                    "parameters": _DATES,
                    "responses": {"200": _ok(_AGGREGATE), **errors},
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
                    ],
                    "responses": {"200": _ok(_AGGREGATE), **errors},
                }
            },
            "/api/series": {
                "get": {
                    "summary": "Energy and average power per step for a meter, building or campus",
                    "parameters": _SERIES_PARAMS,
                    "responses": {
                        "200": _ok(
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
                    "responses": {"200": _ok({"type": "string"}, "text/csv"), **errors},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": _ok({"type": "string"}, "text/plain")},
                }
            },
        },
    }
