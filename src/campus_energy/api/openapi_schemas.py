"""Building blocks of the OpenAPI description (`openapi`): the shared pieces, and the answers
of costs, demand, bills and the campus model. Money and billed quantities are decimal
strings ("12.30"), as `accounts.documents` writes them."""

from __future__ import annotations

from typing import Any

DATE = {"type": "string", "format": "date", "example": "2026-11-27"}
ERROR = {
    "description": "a bad parameter (named in the message), an unknown site, meter, building "
    "or virtual meter, or the data source unavailable",
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
TIME = {"type": ["string", "null"], "format": "date-time"}
SITE = {
    "name": "site",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": "^[a-z0-9_-]+$", "example": "main"},
    "description": "one site of the estate (GET /api/sites), as if the others did not exist: "
    "its meters only, its days cut in its own time zone (default: the whole estate, or the "
    "site api.site serves); a malformed id is a 400, a site not served a 404",
}
NUMBER = {"type": ["number", "null"]}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


ADDED = ("export", "net", "estimated", "estimated_export")  # the added figures' words


def ok(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"description": "OK", "content": {media: {"schema": schema}}}


def schema_object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object with these properties, all required unless `required` says which."""
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def directions(names: tuple[str, str, str, str] | str, nullable: bool = False) -> dict[str, Any]:
    """The figures added beside a measured import (whose field keeps its meaning): measured
    export, net (import − export), estimated import and export, by these `names` (a prefix
    `p`: `p_export_kwh`, `p_net_kwh`, `p_estimated_kwh`, `p_estimated_export_kwh`)."""
    found = names if isinstance(names, tuple) else tuple(f"{names}_{k}_kwh" for k in ADDED)
    kind = ["number", "null"] if nullable else "number"
    said = (
        "measured export: energy fed into the grid (e.g. by rooftop solar)",
        "measured import − measured export (negative: a net exporter)",
        "estimated import: gaps the meters' own registers bridged; never added to the "
        "measured figures, never counted in coverage",
        "estimated export",
    )
    return {
        name: {"type": kind, "description": text} for name, text in zip(found, said, strict=True)
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


_STRING = {"type": "string"}
_TEXT = _nullable(_STRING)
_DAY = {"type": "string", "format": "date"}
_DECIMAL = {"type": "string", "description": "a decimal number as text, e.g. '12.30'"}
_MONEY = _nullable(_DECIMAL)
_INTEGER = {"type": "integer"}
_PER_CURRENCY = {
    "type": "object",
    "additionalProperties": _DECIMAL,
    "description": "an amount per currency (ISO 4217 code)",
}
_TERMS = {
    "type": "object",
    "additionalProperties": {"type": "number"},
    "description": "meter id -> weight (+1 or -1)",
}
_MONTH = {"type": "string", "example": "2026-11"}
_INSTANT = {"type": "string", "format": "date-time"}
_SITE_ID = {"type": "string", "description": "the site answered for (with site=, or api.site)"}

PEAK = {
    "type": ["object", "null"],
    "description": "a month's highest demand and when its interval started",
    "properties": {
        "month": _MONTH,
        "kw": _DECIMAL,
        "start": {"type": "string", "format": "date-time"},
        "start_local": {"type": "string", "description": "local time, e.g. 2026-10-25T02:30+01:00"},
    },
    "required": ["month", "kw", "start", "start_local"],
}
LINE = schema_object(
    {
        "kind": {"type": "string", "enum": ["energy", "standing", "demand"]},
        "description": _STRING,
        "period": _TEXT,
        "tariff_version": _DAY,
        "quantity": _DECIMAL,
        "unit": _STRING,
        "rate": _DECIMAL,
        "days": _nullable(_INTEGER),
        "month_days": _nullable(_INTEGER),
        "amount": _DECIMAL,
        "estimated": {
            "type": "boolean",
            "description": "an energy line of estimated energy (gaps the meters' registers "
            "bridged), e.g. 'Energy, peak (estimated)'",
        },
    }
)
DEMAND_MONTH = schema_object(
    {
        "month": _MONTH,
        "interval_min": _INTEGER,
        "peak_kw": _MONEY,
        "peak_start": _TEXT,
        "ratchet_floor_kw": _MONEY,
        "minimum_kw": _MONEY,
        "billed_kw": _MONEY,
    }
)
EMISSIONS = schema_object(
    {
        "co2_kg": _DECIMAL,
        "kwh_hourly_factor": _DECIMAL,
        "kwh_annual_factor": _DECIMAL,
        "kwh_without_factor": _DECIMAL,
        "fallback_share": {"type": "number"},
    }
)
SCOPE = schema_object(
    {
        "kind": {"type": "string", "enum": ["campus", "building", "meter", "virtual"]},
        "name": _TEXT,
        "building": _TEXT,
        "site": {**_TEXT, "description": "the site it is in (null: the estate)"},
        "basis": _STRING,
        "meters": _TERMS,
    }
)
ESTIMATED_COUNTED = {
    "type": "boolean",
    "description": "whether energy_kwh, the lines and the total count the estimated import "
    "(billing.include_estimated)",
}
_BILLED_ENERGY = {
    "energy_kwh": {
        **_DECIMAL,
        "description": "billed energy: measured_kwh, plus estimated_kwh when estimated_counted",
    },
    "measured_kwh": {**_DECIMAL, "description": "measured import (integrated from power)"},
    "estimated_kwh": {
        **_DECIMAL,
        "description": "estimated import (gaps the meters' registers bridged), counted or not; "
        "never in coverage, demand or CO2",
    },
    "estimated_counted": ESTIMATED_COUNTED,
}
_EXPORTED = {
    "export_kwh": {
        **_MONEY,
        "description": "measured export: stated, not priced (no feed-in tariff); null: not read",
    },
    "estimated_export_kwh": {**_MONEY, "description": "estimated export, not priced"},
}
_ESTIMATED_PART = {
    "estimated_kwh": {
        **_DECIMAL,
        "description": "the estimated import in energy_kwh (or beside it, when not counted)",
    }
}
METER_EVENT = schema_object(
    {
        "meter": _STRING,
        "at": _INSTANT,
        "at_local": {"type": "string", "example": "2026-03-18T09:30:00+01:00"},
        "kind": {"type": "string", "enum": ["replaced", "reset", "rollover", "jump"]},
        "source": {"type": "string", "enum": ["detected", "confirmed"]},
        "register": {"type": "string", "example": "import_energy_wh"},
        "before_wh": NUMBER,
        "after_wh": NUMBER,
        "old_final_wh": NUMBER,
        "new_start_wh": NUMBER,
        "note": _STRING,
    }
)
_STATEMENT_FIELDS: dict[str, Any] = {
    "scope": SCOPE,
    "first_day": _DAY,
    "last_day": _DAY,
    "tariff": _TEXT,
    "currency": _TEXT,
    **_BILLED_ENERGY,
    "coverage": {"type": "number", "minimum": 0},
    "lines": {"type": "array", "items": LINE},
    "total": _MONEY,
    "unpriced_kwh": _DECIMAL,
    "demand": {"type": "array", "items": DEMAND_MONTH},
    "emissions": EMISSIONS,
    "demand_interval_min": _INTEGER,
}
STATEMENT = schema_object(_STATEMENT_FIELDS)
COST = schema_object(
    {
        **_STATEMENT_FIELDS,
        "timezone": _STRING,
        "totals": _PER_CURRENCY,
        "accounts": {"type": "array", "items": STATEMENT},
        "site": _SITE_ID,
    },
    [k for k in _STATEMENT_FIELDS if k != "lines"] + ["timezone", "totals"],
)
BILL = schema_object(
    {
        "month": _MONTH,
        "account": _TEXT,
        **_STATEMENT_FIELDS,
        "floor_area_m2": NUMBER,
        "kwh_per_m2": _MONEY,
        "peak": PEAK,
        "previous_month_peak": PEAK,
        **_EXPORTED,
        "meter_energy": {
            "type": "array",
            "items": schema_object(
                {
                    "id": _STRING,
                    "kind": {
                        "type": "string",
                        "enum": ["main", "sub-meter", "top-level", "virtual"],
                    },
                    "energy_kwh": {**_DECIMAL, "description": "measured import"},
                    "share": {**NUMBER, "description": "of the account's measured import"},
                    "estimated_kwh": {**_DECIMAL, "description": "estimated import"},
                    "export_kwh": {**_DECIMAL, "description": "measured export, not priced"},
                    "estimated_export_kwh": {**_DECIMAL, "description": "estimated export"},
                }
            ),
        },
        "meter_events": {
            "type": ["array", "null"],
            "items": METER_EVENT,
            "description": "the month's meter events of the account's meters, from the "
            "logger's store; null: that store could not be read here (no record), [] no event",
        },
    }
)
BILLS = schema_object(
    {
        "month": _MONTH,
        "timezone": _STRING,
        "bills": {"type": "array", "items": BILL},
        "campus": schema_object(
            {
                "totals": _PER_CURRENCY,
                "energy_kwh": _DECIMAL,
                **_ESTIMATED_PART,
                **_EXPORTED,
                "co2_kg": _DECIMAL,
                "unpriced_kwh": _DECIMAL,
                "demand_interval_min": _INTEGER,
                "peak": PEAK,
                "previous_month_peak": PEAK,
            }
        ),
        "site": _SITE_ID,
    },
    ["month", "timezone", "bills", "campus"],
)
DEMAND = schema_object(
    {
        "scope": schema_object({"kind": _STRING, "name": _TEXT, "basis": _STRING}),
        "interval_min": {"type": "integer", "enum": [15, 30, 60]},
        "points": {
            "type": "array",
            "items": schema_object(
                {
                    "start": {"type": "string", "format": "date-time"},
                    "kw": {"type": "number"},
                    "counts": {"type": "boolean"},
                }
            ),
        },
        "monthly_peaks": {"type": "array", "items": PEAK},
        "ratchet_floors": {"type": "object", "additionalProperties": _DECIMAL},
        "timezone": _STRING,
        "site": _SITE_ID,
    },
    ["scope", "interval_min", "points", "monthly_peaks", "ratchet_floors", "timezone"],
)
OVERVIEW = schema_object(
    {
        "timezone": _STRING,
        "currency": _TEXT,
        "estimated_counted": ESTIMATED_COUNTED,
        "today": schema_object(
            {
                "date": _DAY,
                "energy_kwh": _DECIMAL,
                **_ESTIMATED_PART,
                "total": _MONEY,
                "totals": _PER_CURRENCY,
                "co2_kg": _DECIMAL,
                "coverage": {"type": "number", "minimum": 0},
            }
        ),
        "month": schema_object(
            {
                "first_day": _DAY,
                "last_day": _DAY,
                "energy_kwh": _DECIMAL,
                **_ESTIMATED_PART,
                "total": _MONEY,
                "totals": _PER_CURRENCY,
                "projected_total": _MONEY,
                "projected_totals": _PER_CURRENCY,
                "elapsed_share": {"type": "number", "minimum": 0, "maximum": 1},
                "co2_kg": _DECIMAL,
            }
        ),
        "campus_demand": schema_object(
            {"interval_min": _INTEGER, "peak": PEAK, "previous_month_peak": PEAK}
        ),
        "buildings": {
            "type": "array",
            "items": schema_object(
                {
                    "name": _TEXT,
                    "floor_area_m2": NUMBER,
                    "tariff": _TEXT,
                    "currency": _TEXT,
                    "basis": _STRING,
                    "energy_kwh": _DECIMAL,
                    **_ESTIMATED_PART,
                    "kwh_per_m2": _MONEY,
                    "total": _MONEY,
                    "projected_total": _MONEY,
                    "co2_kg": _DECIMAL,
                    "peak": PEAK,
                    "previous_month_peak": PEAK,
                    "ratchet_floor_kw": _MONEY,
                    "billed_kw": _MONEY,
                }
            ),
        },
        "site": _SITE_ID,
    },
    ["timezone", "currency", "estimated_counted", "today", "month", "campus_demand", "buildings"],
)
VIRTUAL_METER = schema_object(
    {
        "id": _STRING,
        "building": _STRING,
        "floor": _STRING,
        "expression": {"type": "string", "example": "ece-main - ece-f1-001 - ece-f2-001"},
        "terms": _TERMS,
    }
)
_METERS_AT = {
    "meters": {
        "type": "array",
        "items": schema_object(
            {
                "id": _STRING,
                "floor": _STRING,
                "role": _TEXT,
                "parent": _TEXT,
                "kind": {"type": "string", "enum": ["main", "sub-meter", "top-level"]},
            }
        ),
    },
    "virtual_meters": {"type": "array", "items": VIRTUAL_METER},
}
_SPANS = {"type": "array", "items": {"type": "string", "example": "08:00-18:00"}}
OCCUPANCY = {
    "type": ["object", "null"],
    "description": "opening hours per weekday (local 'HH:MM-HH:MM' spans; none: closed) and "
    "holidays (closed all day)",
    "properties": {
        **dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), _SPANS),
        "holidays": {"type": "array", "items": _DAY},
    },
    "required": ["mon", "tue", "wed", "thu", "fri", "sat", "sun", "holidays"],
}
CAMPUS_MODEL = schema_object(
    {
        "timezone": _STRING,
        "site_tariff": _TEXT,
        "buildings": {
            "type": "array",
            "items": schema_object(
                {
                    "name": _STRING,
                    "declared": {"type": "boolean"},
                    "floor_area_m2": NUMBER,
                    "tariff": _TEXT,
                    "occupancy": OCCUPANCY,
                    "basis": _STRING,
                    "main_meter": _TEXT,
                    **_METERS_AT,
                }
            ),
        },
        "no_building": schema_object({"tariff": _TEXT, "basis": _STRING, **_METERS_AT}),
    }
)


# -- alerts (`alert_views`) ----------------------------------------------------------------

SITES = schema_object(
    {
        "sites": {
            "type": "array",
            "items": schema_object(
                {
                    "id": _STRING,
                    "name": _STRING,
                    "timezone": _STRING,
                    "default": {"type": "boolean"},
                    "meters": _INTEGER,
                    "meters_online": _INTEGER,
                    "buildings": {"type": "array", "items": _STRING},
                    "power_w": {"type": "number"},
                    "today": _DAY,
                    "today_kwh": {"type": "number", "description": "measured import today"},
                    "last_window": TIME,
                    **directions("today"),
                }
            ),
        }
    }
)

_SEVERITY = {"type": "string", "enum": ["info", "warning", "critical"]}
ALERT = schema_object(
    {
        "rule": _STRING,
        "subject": {**_STRING, "description": "a meter, a building, a virtual meter or 'campus'"},
        "kind": _STRING,
        "scope": {**_STRING, "example": "building:ECE"},
        "phase": {"type": "string", "enum": ["pending", "firing", "resolved", "inactive"]},
        "severity": _SEVERITY,
        "since": {**_INSTANT, "description": "when the current phase began"},
        "fired": {**TIME, "description": "when the last firing began"},
        "value": {**NUMBER, "description": "the measured figure (seconds, kW, kWh, %, share)"},
        "detail": {**_STRING, "example": "no reading for 7 min (status offline)"},
        "acked": {
            "type": ["object", "null"],
            "properties": {"by": _TEXT, "at": _INSTANT},
            "required": ["by", "at"],
        },
        "silenced_until": TIME,
    }
)
TRANSITION = schema_object(
    {
        "rule": _STRING,
        "subject": _STRING,
        "kind": _STRING,
        "scope": _STRING,
        "event": {"type": "string", "enum": ["firing", "renotify", "resolved"]},
        "at": _INSTANT,
        "severity": _SEVERITY,
        "value": NUMBER,
        "detail": _STRING,
        "suppressed": {"type": "boolean", "description": "recorded while silenced: not sent"},
    }
)
SILENCE = schema_object(
    {
        "id": _INTEGER,
        "rule": {**_TEXT, "description": "null: every rule"},
        "subject": {**_TEXT, "description": "null: every subject"},
        "until": _INSTANT,
        "by": _STRING,
        "created": _INSTANT,
        "note": _STRING,
    }
)
ALERTS = schema_object(
    {
        "configured": {
            "type": "boolean",
            "description": "false: no book of alerts on this host (the lists are empty)",
        },
        "timezone": _STRING,
        "active": {"type": "array", "items": ALERT},
        "recent": {"type": "array", "items": TRANSITION},
        "silences": {"type": "array", "items": SILENCE},
    }
)
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_BY = {"type": "string", "minLength": 1, "maxLength": 100, "description": "default: 'api'"}
ACK_REQUEST = {
    "type": "object",
    "properties": {"rule": _NAME, "subject": _NAME, "by": _BY},
    "required": ["rule", "subject"],
    "additionalProperties": False,
}
SILENCE_REQUEST = {
    "type": "object",
    "properties": {
        "rule": {**_NAME, "type": ["string", "null"], "description": "null: every rule"},
        "subject": {
            **_NAME,
            "type": ["string", "null"],
            "description": "absent or null: every subject of the rule",
        },
        "until": {**_INSTANT, "description": "ISO 8601 with a zone; or give `for`"},
        "for": {
            "type": ["string", "number"],
            "example": "2h",
            "description": "a duration: seconds, or '90s', '30m', '2h', '1d' (at most 90 days)",
        },
        "by": _BY,
        "note": {"type": "string", "maxLength": 500},
    },
    "required": ["rule"],
    "additionalProperties": False,
}
UNSILENCE_REQUEST = schema_object({"id": {"type": "integer", "minimum": 1}})
UNSILENCE_REQUEST["additionalProperties"] = False
ACKNOWLEDGED = schema_object(
    {
        "acknowledged": {"type": "boolean", "enum": [True]},
        "rule": _STRING,
        "subject": _STRING,
        "by": _STRING,
        "at": _INSTANT,
    }
)
SILENCED = schema_object({"silence": SILENCE})
UNSILENCED = schema_object({"unsilenced": _INTEGER})
