"""The API's JSON: compact, and never NaN or ±Infinity (which no JSON parser reads back)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from flask.json.provider import DefaultJSONProvider

from campus_energy.errors import CampusEnergyError

UNAVAILABLE = "window store unavailable"  # a 503's words: the reason, with its paths, is logged


class Unrepresentable(CampusEnergyError):
    """An answer holds a number JSON cannot carry (NaN, ±Infinity): a corrupt stored window."""


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and ±Infinity."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON; Unrepresentable when a number is NaN or infinite."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # "Out of range float values are not JSON compliant"
        raise Unrepresentable(f"a value JSON cannot represent: {exc}") from None


def json_response(body: dict[str, Any]) -> Response:
    return Response(dumps(body), mimetype="application/json")
