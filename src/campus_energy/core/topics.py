"""MQTT topic names (the contract) and status documents."""

from __future__ import annotations

from typing import Any, Literal

from campus_energy.core.timestamps import iso_utc

MeterState = Literal["online", "offline", "error"]
LoggerState = Literal["online", "offline"]


def site_root(prefix: str, site: str | None) -> str:
    """The topic root of a site's meters: `prefix` itself for the default site (None, so a
    single-site deployment's topics are what they always were), else `<prefix>/sites/<site>`."""
    return prefix if site is None else f"{prefix}/sites/{site}"


def reading_topic(prefix: str, meter_id: str) -> str:
    return f"{prefix}/{meter_id}/reading"


def meter_status_topic(prefix: str, meter_id: str) -> str:
    return f"{prefix}/{meter_id}/status"


def logger_status_topic(prefix: str, logger_id: str) -> str:
    return f"{prefix}/logger/{logger_id}/status"


def status_document(state: str, ts_ms: int, detail: str = "") -> dict[str, Any]:
    return {"state": state, "ts": iso_utc(ts_ms), "detail": detail}
