"""A priced campus with estimated energy and export, and its books, for the bills' answers and
the web page (tests/integration/test_web_bills_estimated.py, the schema cases of
tests/integration/test_api_billing.py).

Europe/Berlin, March 2026 up to "now", Monday 30 March 14:00 (the clocks went forward on
the 29th). "Main" (a time-of-use tariff with standing and demand charges) has one main
meter; "Annex" (a flat tariff) a rooftop PV meter that exports from 09:00 to 16:00;
"Hall" (flat) a plain meter: no estimate, no export. Every meter has one window a quarter
hour, except across gaps the meters' registers bridged, where the window holds estimated
energy only: Main on Tuesday 10 March 10:00-11:00 (peak rate), across the missing hour
of 29 March 01:00-04:00 and today 09:00-10:00; the PV meter's estimated export on 15
March 12:00-13:00. The logger's store records one meter event this month.

The books sum each meter's measured import, export and estimates per quarter hour, from
the windows alone. Every window holds whole Wh, so each sum is exact and its kWh needs no
rounding.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.config import campus_meters
from tests.support.sinks import merge

from campus_energy.config import Config, parse_config
from campus_energy.core.windows import Contribution, WindowDelta

ZONE = ZoneInfo("Europe/Berlin")
WINDOW_S = 300
QUARTER_MS = 900_000
KWH = Decimal("0.001")
METERS = {  # id: (building, floor, role, parent)
    "main-1": ("Main", "0", "main", None),
    "roof-1": ("Annex", "R", None, None),
    "hall-1": ("Hall", "0", None, None),
}
ACCOUNTS = {"Main": "main-1", "Annex": "roof-1", "Hall": "hall-1"}
AREA = {"Main": 1000, "Annex": 300, "Hall": 500}


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=ZONE).timestamp() * 1000)


def local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZONE)


def midnight(day: date) -> int:
    return local_ms(day.year, day.month, day.day)


START_MS = local_ms(2026, 3, 1)
NOW_MS = local_ms(2026, 3, 30, 14)
TODAY = date(2026, 3, 30)
EVENT_MS = local_ms(2026, 3, 18, 9, 30)
MAIN_GAPS = {  # (start, end): estimated Wh a quarter hour
    (local_ms(2026, 3, 10, 10), local_ms(2026, 3, 10, 11)): 300.0,
    (local_ms(2026, 3, 29, 1), local_ms(2026, 3, 29, 4)): 51.0,
    (local_ms(2026, 3, 30, 9), local_ms(2026, 3, 30, 10)): 62.0,
}
PV_GAP = (local_ms(2026, 3, 15, 12), local_ms(2026, 3, 15, 13))


@dataclass(frozen=True)
class Quarter:
    meter_id: str
    start_ms: int
    import_wh: float = 0.0
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0


def quarters() -> list[Quarter]:
    found = []
    for k, quarter in enumerate(range(START_MS, NOW_MS, QUARTER_MS)):
        gap = [wh for (lo, hi), wh in MAIN_GAPS.items() if lo <= quarter < hi]
        if gap:
            found.append(Quarter("main-1", quarter, estimated_wh=gap[0]))
        else:
            found.append(Quarter("main-1", quarter, import_wh=40.0 + (k * 7 % 13) * 2))
        if PV_GAP[0] <= quarter < PV_GAP[1]:
            found.append(Quarter("roof-1", quarter, estimated_export_wh=90.0))
        elif 9 <= local(quarter).hour < 16:
            found.append(Quarter("roof-1", quarter, export_wh=100.0 + (k % 5) * 3))
        else:
            found.append(Quarter("roof-1", quarter, import_wh=20.0 + k % 4))
        found.append(Quarter("hall-1", quarter, import_wh=30.0 + k % 6))
    return found


def deltas(items: list[Quarter]) -> list[WindowDelta]:
    """Each quarter as one window at its start, as the bridge hands it to the sink."""
    return [
        WindowDelta(
            q.meter_id,
            q.start_ms,
            WINDOW_S,
            (
                Contribution(
                    q.meter_id,
                    q.start_ms,
                    1,
                    q.import_wh,
                    WINDOW_S if q.import_wh or q.export_wh else 0.0,
                    True,
                    (q.import_wh - q.export_wh) * 12,
                    export_wh=q.export_wh,
                    estimated_wh=q.estimated_wh,
                    estimated_export_wh=q.estimated_export_wh,
                ),
            ),
            METERS[q.meter_id][0],
            METERS[q.meter_id][1],
        )
        for q in items
    ]


def kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(KWH, ROUND_HALF_UP)


class Books:
    def __init__(self, items: list[Quarter]) -> None:
        self.items = items

    def total(self, meter: str, what: str, first: date, last: date) -> float:
        """A meter's `what` (import_wh, export_wh, estimated_wh, estimated_export_wh) over
        local days first..last."""
        lo, hi = midnight(first), midnight(last + timedelta(days=1))
        return sum(
            getattr(q, what) for q in self.items if q.meter_id == meter and lo <= q.start_ms < hi
        )

    def month(self, meter: str, what: str) -> float:
        """So far this month (March: the whole month's windows end by now)."""
        return self.total(meter, what, date(2026, 3, 1), date(2026, 3, 31))

    def billed_kwh(self, meter: str, first: date, last: date, counted: bool) -> Decimal:
        """What an account's bill counts: its measured import, and its estimate when counted."""
        estimated = self.total(meter, "estimated_wh", first, last) if counted else 0.0
        return kwh(self.total(meter, "import_wh", first, last) + estimated)


def config_for(folder: Path, include_estimated: bool, store: Path) -> Config:
    """The campus on the store in `folder`, its logger's store at `store`."""
    tou = {
        "id": "tou",
        "currency": "EUR",
        "versions": [
            {
                "valid_from": date(2026, 1, 1),
                "default_rate": "0.20",
                "standing_per_day": "1.50",
                "periods": [
                    {
                        "name": "peak",
                        "days": ["weekdays"],
                        "start": "08:00",
                        "end": "20:00",
                        "rate": "0.30",
                    },
                    {
                        "name": "night",
                        "days": ["all"],
                        "start": "00:00",
                        "end": "06:00",
                        "rate": "0.15",
                    },
                ],
                "demand": {"interval_min": 15, "price_per_kw": "10", "minimum_kw": "2"},
            }
        ],
    }
    flat = {
        "id": "flat",
        "currency": "EUR",
        "versions": [
            {"valid_from": date(2026, 1, 1), "default_rate": "0.25", "standing_per_day": "0.50"}
        ],
    }
    settings: dict[str, Any] = {
        "site": {
            "name": "Solar Campus",
            "timezone": ZONE.key,
            "tariff": "tou",
            "buildings": [
                {"name": "Main", "floor_area_m2": AREA["Main"]},
                {"name": "Annex", "tariff": "flat", "floor_area_m2": AREA["Annex"]},
                {"name": "Hall", "tariff": "flat", "floor_area_m2": AREA["Hall"]},
            ],
        },
        "storage": {"path": str(store)},
        "bridge": {"window_s": WINDOW_S, "sqlite": {"path": str(folder / "windows.db")}},
        "api": {"cache_s": 0},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": campus_meters(METERS),
        "tariffs": [tou, flat],
        "billing": {"include_estimated": include_estimated},
    }
    return parse_config(settings)


def logger_store_with_an_event(path: Path) -> None:
    """A logger's store whose record holds one confirmed replacement of main-1 this month."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "CREATE TABLE meter_events (id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, "
                "ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, "
                "register TEXT, before_wh REAL, after_wh REAL, old_final_wh REAL, "
                "new_start_wh REAL, note TEXT, recorded_ms INTEGER)"
            )
            conn.execute(
                "INSERT INTO meter_events (meter_id, ts_ms, kind, source, register, "
                "old_final_wh, new_start_wh, note, recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("main-1", EVENT_MS, "replaced", "confirmed", "import_energy_wh", 98_765_400.0,
                 11_500.0, "new meter SN 42", EVENT_MS),
            )  # fmt: skip
    finally:
        conn.close()


def write_campus(folder: Path) -> tuple[Config, Config, Books]:
    """The windows written once through the real SQLite sink; the campus with estimates
    counted (the logger's store readable) and without (no logger's store here)."""
    store = folder / "smart_meter.db"
    logger_store_with_an_event(store)
    counted = config_for(folder, True, store)
    excluded = config_for(folder, False, folder / "no-logger-here.db")
    items = quarters()
    merge(counted, deltas(items), NOW_MS)
    return counted, excluded, Books(items)
