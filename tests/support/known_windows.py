"""A deterministic campus of windows with known sums, written through a real sink (`write`).

Site time zone Asia/Kolkata (UTC+5:30). "Now" is Friday 2026-11-27 13:30 local
(08:00Z). Three meters report a 300 s window every 20 minutes for 30 days; a
fourth is configured but has never reported. Two windows sit either side of a
local midnight (23:55 and 00:00 local) to check day cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.config import campus_meters
from tests.support.sinks import merge, window_deltas

from campus_energy.config import Config, parse_config
from campus_energy.core.windows import WindowDelta

ZONE = ZoneInfo("Asia/Kolkata")
NOW_MS = round(datetime(2026, 11, 27, 8, 0, tzinfo=UTC).timestamp() * 1000)
WINDOW_S = 300
METERS = {  # id: (building, floor)
    "ece-1": ("ECE", "1"),
    "ece-2": ("ECE", "2"),
    "lib-1": ("Library", "1"),
    "lib-2": ("Library", "2"),  # configured, never reported
}
REPORTING = ("ece-1", "ece-2", "lib-1")
STEP_MS = 20 * 60 * 1000
START_MS = NOW_MS - 30 * 86_400_000
# either side of the local midnight between 26 and 27 November (18:30Z)
EDGE_MS = (
    round(datetime(2026, 11, 26, 18, 25, tzinfo=UTC).timestamp() * 1000),
    round(datetime(2026, 11, 26, 18, 30, tzinfo=UTC).timestamp() * 1000),
)


@dataclass(frozen=True)
class FixtureWindow:
    meter_id: str
    start_ms: int
    energy_wh: float
    power_w: float
    covered_s: float = WINDOW_S


def windows() -> list[FixtureWindow]:
    found = []
    for n, meter in enumerate(REPORTING):
        starts = list(range(START_MS, NOW_MS - 20 * 60_000 + 1, STEP_MS))
        starts = [s for s in starts if s not in EDGE_MS] + [*EDGE_MS, NOW_MS - 10 * 60_000]
        for k, start in enumerate(sorted(starts)):
            energy = 100.0 * (n + 1) + (k % 7)  # Wh over a fully covered 300 s window
            found.append(FixtureWindow(meter, start, energy, energy * 3600 / WINDOW_S))
    # every meter's latest window (07:50Z) ended five minutes before now: all are online
    return found


def deltas(items: list[FixtureWindow]) -> list[WindowDelta]:
    return window_deltas(items, WINDOW_S, METERS)


def local_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZONE).date()


def energy_wh(
    items: list[FixtureWindow], first: date, last: date, meters: set[str] | None = None
) -> float:
    """The fixture's energy over local days first..last, computed independently of the code."""
    return sum(
        w.energy_wh
        for w in items
        if first <= local_day(w.start_ms) <= last and (meters is None or w.meter_id in meters)
    )


def config_for(tmp_path: Path, sink: dict[str, Any] | None = None) -> Config:
    return parse_config(
        {
            "site": {"name": "Fixture Campus", "timezone": "Asia/Kolkata"},
            "bridge": {
                "window_s": WINDOW_S,
                "grace_s": 60,
                **(sink or {"sqlite": {"path": str(tmp_path / "windows.db")}}),
            },
            "api": {"cache_s": 30, "cors_origins": ["https://energy.example.edu"]},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters(METERS),
        }
    )


TODAY = local_day(NOW_MS)
WEEK_START = TODAY - timedelta(days=TODAY.weekday())
MONTH_START = TODAY.replace(day=1)


def write(config: Config, items: list[FixtureWindow]) -> None:
    """`items` merged into the sink `config` names, as the bridge would write them at NOW_MS."""
    merge(config, deltas(items), NOW_MS)
