"""A book of alerts with known contents, written through `AlertBook.record` as the alerts
service writes it, for the API's, the web page's and the local dashboard's tests.

At NOW (Monday 16 November 2026, 10:00 UTC; 15:30 in Asia/Kolkata):
- `night-load` (after-hours, campus, critical) fired 30 minutes ago: 62.5 kW while closed;
- `silent` (meter-silent, building:Library, warning) fired for lib-f1-002 7 minutes ago,
  and is pending for lib-f1-001 since a minute ago;
- `coverage` (coverage-low, meter:ece-1, info) fired three days ago and resolved two days
  ago; it also fired ten days ago (outside the default seven days of `recent`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campus_energy.core.alerts import AlertState, Transition
from campus_energy.incidents.store import AlertBook

NOW_MS = round(datetime(2026, 11, 16, 10, 0, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60_000
DAY = 86_400_000
ZONE = "Asia/Kolkata"
KINDS = {  # rule: (kind, scope, severity)
    "night-load": ("after-hours", "campus", "critical"),
    "silent": ("meter-silent", "building:Library", "warning"),
    "coverage": ("coverage-low", "meter:ece-1", "info"),
}
RULES = [
    {"name": "night-load", "kind": "after-hours", "scope": "campus", "severity": "critical",
     "above_kw": 50},
    {"name": "silent", "kind": "meter-silent", "scope": "building:Library", "for": "5m"},
    {"name": "coverage", "kind": "coverage-low", "scope": "meter:ece-1", "severity": "info"},
]  # fmt: skip
METERS = {"lib-f1-001": "Library", "lib-f1-002": "Library", "ece-1": "ECE"}
SILENT_DETAIL = "no reading for 7 min (status offline)"
NIGHT_DETAIL = "62.5 kW while closed (above 50 kW)"


@dataclass(frozen=True)
class Event:
    """A transition as it was recorded."""

    rule: str
    subject: str
    event: str
    at_ms: int
    value: float | None
    detail: str

    @property
    def severity(self) -> str:
        return KINDS[self.rule][2]

    def transition(self) -> Transition:
        return Transition(
            self.rule, self.subject, self.event, self.at_ms, self.severity, self.value, self.detail
        )


# The states the book holds at NOW; the active ones in the order the API lists them.
STATES = [
    AlertState("night-load", "campus", "firing", NOW_MS - 30 * MINUTE,
               holds_since_ms=NOW_MS - 45 * MINUTE, fired_ms=NOW_MS - 30 * MINUTE,
               notified_ms=NOW_MS - 30 * MINUTE, value=62.5, detail=NIGHT_DETAIL,
               severity="critical"),
    AlertState("silent", "lib-f1-002", "firing", NOW_MS - 7 * MINUTE,
               holds_since_ms=NOW_MS - 12 * MINUTE, fired_ms=NOW_MS - 7 * MINUTE,
               notified_ms=NOW_MS - 7 * MINUTE, value=420.0, detail=SILENT_DETAIL),
    AlertState("silent", "lib-f1-001", "pending", NOW_MS - MINUTE,
               holds_since_ms=NOW_MS - MINUTE, value=60.0, detail="no reading for 1 min"),
    AlertState("coverage", "ece-1", "resolved", NOW_MS - 2 * DAY, fired_ms=NOW_MS - 3 * DAY,
               notified_ms=NOW_MS - 3 * DAY, value=0.97, detail="coverage 97 %",
               severity="info"),
]  # fmt: skip
EVENTS = [
    Event("coverage", "ece-1", "firing", NOW_MS - 10 * DAY, 0.5, "coverage 50 % for 3 windows"),
    Event("coverage", "ece-1", "firing", NOW_MS - 3 * DAY, 0.62, "coverage 62 % for 3 windows"),
    Event("coverage", "ece-1", "resolved", NOW_MS - 2 * DAY, 0.97, "coverage 97 %"),
    Event("night-load", "campus", "firing", NOW_MS - 30 * MINUTE, 62.5, NIGHT_DETAIL),
    Event("silent", "lib-f1-002", "firing", NOW_MS - 7 * MINUTE, 420.0, SILENT_DETAIL),
]
ACTIVE = STATES[:3]


def write_book(path: Path) -> None:
    """The states and the transitions above, recorded in the order they happened."""
    kinds = {rule: (kind, scope) for rule, (kind, scope, _) in KINDS.items()}
    with AlertBook(path) as book:
        for event in EVENTS:
            kind, scope, _ = KINDS[event.rule]
            book.record([], [(event.transition(), kind, scope, ())], event.at_ms, kinds=kinds)
        book.record(STATES, [], NOW_MS, kinds=kinds)


def config_data(folder: Path, **alerts: Any) -> dict[str, Any]:
    """A campus of three meters whose `[alerts]` holds the rules above and `alerts`."""
    return {
        "site": {
            "name": "Alert Campus",
            "timezone": ZONE,
            "buildings": [
                {"name": "Library", "occupancy": {"mon": "08:00-20:00", "tue": "08:00-20:00"}},
                {"name": "ECE"},
            ],
        },
        "bridge": {"sqlite": {"path": str(folder / "windows.db")}},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": [
            {"id": m, "bus": "b", "unit": i, "profile": "eastron-sdm120", "building": b}
            for i, (m, b) in enumerate(METERS.items(), start=1)
        ],
        "alerts": {"state_path": str(folder / "alerts.db"), "rules": RULES, **alerts},
    }


def iso(ms: int | None) -> str | None:
    """ISO 8601 UTC with a Z, whole seconds (every instant above is one)."""
    if ms is None:
        return None
    assert ms % 1000 == 0
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
