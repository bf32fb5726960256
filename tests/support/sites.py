"""An estate of three sites whose windows have known sums, written through the real SQLite sink,
and its books: each site's windows summed over days cut in that site's own time zone.

- "north", the default site, Europe/Berlin (the store's zone, where its rollups are cut):
  "Hall" (a main meter and a sub-meter under it, and the virtual meter "hall-rest") and
  "Lab"; "old-1" is a meter only the store knows, its windows naming no site (so the
  default's).
- "east", America/New_York: "Dock" (two meters; declared in `[site.buildings]`), "Office"
  (one meter reporting, one configured that never reported), and "east-x", a meter only the
  store knows whose windows name "east".
- "south", Asia/Tokyo (UTC+9, no daylight-saving time: 8 hours off Berlin in winter, 7 in
  summer): "Gate".

Now is Sunday 1 November 2026, 19:50 in New York (00:50Z on 2 November): New York's day of
25 hours (its clocks went back at 02:00), Monday 2 November 01:50 in Berlin (whose clocks
went back on 25 October, within the data), 09:50 in Tokyo. Every meter writes a 300 s
window every 20 minutes from 4 October on (the latest, at 00:40Z, has just ended: every
meter that reports is online), and one at 23:55 and one at 00:00 local time around each
midnight of its site since 25 October.

`RULES` are alert rules over the estate (`config_data(alerts=…)` puts them in the book's
configuration).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.config import campus_meters
from tests.support.sinks import KnownWindow, merge

from campus_energy.config import Config, parse_config
from campus_energy.core.windows import Contribution, WindowDelta

WINDOW_S = 300
STEP_MS = 20 * 60_000
NOW_MS = round(datetime(2026, 11, 2, 0, 50, tzinfo=UTC).timestamp() * 1000)
START_MS = round(datetime(2026, 10, 4, 0, 0, tzinfo=UTC).timestamp() * 1000)
EDGES_FROM = date(2026, 10, 25)

ZONES = {
    "north": ZoneInfo("Europe/Berlin"),
    "east": ZoneInfo("America/New_York"),
    "south": ZoneInfo("Asia/Tokyo"),
}
NAMES = {"north": "North Campus", "east": "East Campus", "south": "South Campus"}
SITES = tuple(ZONES)  # the default first
STORE_ZONE = ZONES["north"]
# configured meters: id -> (site, building, floor, role, parent, size in Wh a window)
METERS: dict[str, tuple[str, str, str, str | None, str | None, float]] = {
    "hall-main": ("north", "Hall", "0", "main", None, 900.0),
    "hall-f1": ("north", "Hall", "1", None, "hall-main", 400.0),
    "lab-1": ("north", "Lab", "0", None, None, 310.0),
    "dock-1": ("east", "Dock", "0", None, None, 520.0),
    "dock-2": ("east", "Dock", "1", None, None, 260.0),
    "office-1": ("east", "Office", "2", None, None, 145.0),
    "office-2": ("east", "Office", "3", None, None, 0.0),  # configured, never reported
    "gate-1": ("south", "Gate", "0", None, None, 205.0),
}
# meters only the store knows: id -> (the site its windows name, building, size)
STORE_ONLY: dict[str, tuple[str, str, float]] = {
    "east-x": ("east", "Dock", 75.0),
    "old-1": ("", "", 33.0),
}
SUB_METERS = frozenset({"hall-f1"})  # inside hall-main's total: no campus sum adds it
RULES = [
    {"name": "silent", "kind": "meter-silent", "scope": "campus"},
    {"name": "dock-hours", "kind": "baseline-deviation", "scope": "building:Dock"},
    {"name": "estate-load", "kind": "baseline-deviation", "scope": "campus"},
    {"name": "gate-cover", "kind": "coverage-low", "scope": "meter:gate-1"},
]


def site_of(meter: str) -> str:
    if meter in METERS:
        return METERS[meter][0]
    return STORE_ONLY[meter][0] or "north"


def meters_of(site: str, *, counted: bool = False) -> frozenset[str]:
    """A site's meters (configured and store-only); `counted`: those its totals add."""
    every = {m for m in (*METERS, *STORE_ONLY) if site_of(m) == site}
    return frozenset(every - SUB_METERS if counted else every)


def buildings_of(site: str) -> list[str]:
    named = {b for m, (s, b, *_) in METERS.items() if s == site}
    named |= {b for m, (s, b, _) in STORE_ONLY.items() if (s or "north") == site}
    return sorted(named - {""})


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def midnight(day: date, zone: ZoneInfo) -> int:
    return ms(datetime(day.year, day.month, day.day, tzinfo=zone))


def iso(at_ms: int | None) -> str | None:
    """An instant as the API writes it (whole seconds, a Z)."""
    if at_ms is None:
        return None
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instant(text: str) -> int:
    return ms(datetime.fromisoformat(text))


def local_day(at_ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone).date()


# -- the windows ----------------------------------------------------------------------------------


def _size(meter: str) -> float:
    return METERS[meter][5] if meter in METERS else STORE_ONLY[meter][2]


def _energy(meter: str, start_ms: int) -> float:
    """A window's Wh: the meter's size, a swing over the UTC day and a wobble."""
    k = start_ms // STEP_MS
    hour = (start_ms % 86_400_000) / 3_600_000
    swing = 1 + 0.35 * math.sin(2 * math.pi * (hour - 6 + len(meter)) / 24)
    return round(_size(meter) * swing * (1 + 0.05 * (k * (len(meter) + 3) % 17) / 17), 6)


def windows() -> list[KnownWindow]:
    """Every window of the estate, each once, in start order."""
    reporting = [m for m in (*METERS, *STORE_ONLY) if _size(m) > 0]
    starts: dict[str, set[int]] = {m: set(range(START_MS, NOW_MS, STEP_MS)) for m in reporting}
    for meter in reporting:
        zone = ZONES[site_of(meter)]
        day = EDGES_FROM
        while midnight(day, zone) < NOW_MS:
            at = midnight(day, zone)
            starts[meter] |= {at - WINDOW_S * 1000, at}
            day += timedelta(days=1)
    found = []
    for meter in reporting:
        for start in sorted(s for s in starts[meter] if s + WINDOW_S * 1000 <= NOW_MS):
            wh = _energy(meter, start)
            found.append(KnownWindow(meter, start, wh, WINDOW_S, wh * 3600 / WINDOW_S))
    return sorted(found, key=lambda w: (w.start_ms, w.meter_id))


def deltas(items: Iterable[KnownWindow]) -> list[WindowDelta]:
    """The windows as the bridge hands them to the sink, each with its meter's site."""

    def place(meter: str) -> tuple[str, str, str]:
        if meter in METERS:
            site, building, floor, *_ = METERS[meter]
            return building, floor, site
        site, building, _ = STORE_ONLY[meter]
        return building, "", site

    return [
        WindowDelta(
            w.meter_id,
            w.start_ms,
            WINDOW_S,
            (Contribution(w.meter_id, w.start_ms, 1, w.energy_wh, w.covered_s, True, w.power_w),),
            *place(w.meter_id),
        )
        for w in items
    ]


# -- the configuration ----------------------------------------------------------------------------


def config_data(
    db: Path | dict[str, Any], alerts: Path | None = None, **api: Any
) -> dict[str, Any]:
    """The estate on the SQLite file `db` or the sink of the `bridge` keys `db` (`alerts`:
    the book of alerts, with `RULES`; `api`: keys of `[api]`)."""
    sink = db if isinstance(db, dict) else {"sqlite": {"path": str(db)}}
    meters = campus_meters({m: (b, f, r, p) for m, (_, b, f, r, p, _) in METERS.items()})
    for meter in meters:
        if METERS[meter["id"]][0] != "north":
            meter["site"] = METERS[meter["id"]][0]
    return {
        "site": {
            "id": "north",
            "name": NAMES["north"],
            "timezone": ZONES["north"].key,
            "tariff": "flat",
            "buildings": [
                {"name": "Hall", "floor_area_m2": 1200},
                {"name": "Lab"},
                {"name": "Dock", "floor_area_m2": 800},  # east's: its meters are there
                {"name": "Office"},
                {"name": "Gate"},
            ],
        },
        "sites": [
            {"id": site, "name": NAMES[site], "timezone": ZONES[site].key}
            for site in ("east", "south")
        ],
        "bridge": {"window_s": WINDOW_S, "grace_s": 60, **sink},
        "api": {"cache_s": 0, **api},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": meters,
        "virtual_meters": [
            {"id": "hall-rest", "building": "Hall", "terms": "hall-main - hall-f1"},
            {"id": "dock-sum", "building": "Dock", "terms": "dock-1 + dock-2"},
        ],
        "tariffs": [
            {
                "id": "flat",
                "currency": "EUR",
                "versions": [{"valid_from": date(2026, 1, 1), "default_rate": "0.25"}],
            }
        ],
        **({"alerts": {"state_path": str(alerts), "rules": RULES}} if alerts else {}),
    }


def config_for(db: Path | dict[str, Any], alerts: Path | None = None, **api: Any) -> Config:
    """The estate's configuration (`api`: keys of `[api]`, e.g. site="east")."""
    return parse_config(config_data(db, alerts, **api))


def write(db: Path | dict[str, Any]) -> list[KnownWindow]:
    """The estate's windows, written through its sink (`config_data`) as the bridge does."""
    items = windows()
    merge(config_for(db), deltas(items), NOW_MS, batch=5000)
    return items


# -- the books ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sums:
    energy_wh: float
    readings: int
    meters: frozenset[str]
    last_ms: int | None


class Books:
    """The windows, summed by hand over instants, local days and local hours."""

    def __init__(self, items: list[KnownWindow]) -> None:
        self.items = items

    def sums(self, meters: Collection[str], start_ms: int, end_ms: int) -> Sums:
        found = [w for w in self.items if w.meter_id in meters and start_ms <= w.start_ms < end_ms]
        return Sums(
            math.fsum(w.energy_wh for w in found),
            len(found),
            frozenset(w.meter_id for w in found),
            max((w.start_ms for w in found), default=None),
        )

    def days(self, meters: Collection[str], first: date, last: date, zone: ZoneInfo) -> Sums:
        """Over the local days first..last of `zone`."""
        return self.sums(meters, midnight(first, zone), midnight(last + timedelta(days=1), zone))

    def per_day(self, meters: Collection[str], zone: ZoneInfo) -> dict[date, float]:
        found: dict[date, float] = {}
        for w in self.items:
            if w.meter_id in meters:
                day = local_day(w.start_ms, zone)
                found[day] = found.get(day, 0.0) + w.energy_wh
        return found

    def per_step(self, meters: Collection[str], step: Mapping[str, Any]) -> dict[int, float]:
        """Energy per step start (`step`: "ms" a length, or "zone" for local hours)."""
        found: dict[int, float] = {}
        for w in self.items:
            if w.meter_id in meters:
                if "zone" in step:
                    local = datetime.fromtimestamp(w.start_ms / 1000, UTC).astimezone(step["zone"])
                    key = ms(local.replace(minute=0))
                else:
                    key = w.start_ms - w.start_ms % step["ms"]
                found[key] = found.get(key, 0.0) + w.energy_wh
        return found

    def latest(self, meter: str) -> KnownWindow | None:
        return max(
            (w for w in self.items if w.meter_id == meter), key=lambda w: w.start_ms, default=None
        )
