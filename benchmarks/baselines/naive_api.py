"""The legacy API's way: every window of a range streamed from SQLite and summed in Python.

A Flask app answering `/api/aggregate/campus` and `/api/summary` as the original
API did, per request, with no rollups and no cache; served by the very Gunicorn
class `campus-energy api` uses (`serve`), so that only the app differs:

    python benchmarks/baselines/naive_api.py CONFIG_TOML
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, request

from campus_energy.api.queries import Period
from campus_energy.config import load_config
from campus_energy.core.days import local_date, midnight_ms
from campus_energy.core.timestamps import iso_seconds

SCAN_SQL = (
    "SELECT meter_id, total_energy_wh, readings_in_batch, window_start_ms FROM window_aggregates "
    "WHERE window_start_ms BETWEEN ? AND ?"
)
SUMMARY_SCAN_SQL = (
    "SELECT meter_id, building, window_start_ms, total_energy_wh, avg_power_w "
    "FROM window_aggregates WHERE window_start_ms BETWEEN ? AND ?"
)


def now_ms() -> int:
    return round(time.time() * 1000)


def naive_app(path: Path, zone: ZoneInfo, fresh_ms: int) -> Flask:
    """The legacy API's way: stream every window in range, sum in Python, per request."""
    app = Flask("naive")
    local = threading.local()

    def conn() -> sqlite3.Connection:
        found: sqlite3.Connection | None = getattr(local, "conn", None)
        if found is None:
            found = local.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        return found

    def reply(body: dict[str, Any]) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return reply({"status": "ok"})

    @app.get("/api/aggregate/campus")
    def aggregate() -> Response:
        today = local_date(now_ms(), zone)
        first = date.fromisoformat(request.args.get("start_date") or today.isoformat())
        last = date.fromisoformat(request.args.get("end_date") or today.isoformat())
        start, end = midnight_ms(first, zone), midnight_ms(last + timedelta(days=1), zone)
        energy, readings, meters, newest = 0.0, 0, set(), None
        for meter_id, energy_wh, count, start_ms in conn().execute(SCAN_SQL, (start, end - 1)):
            energy += energy_wh
            readings += count
            meters.add(meter_id)
            if newest is None or start_ms > newest:
                newest = start_ms
        return reply(
            {
                "scope": "campus",
                "time_range_start": iso_seconds(start),
                "time_range_end": iso_seconds(end),
                "total_energy_kwh": round(energy / 1000, 6),
                "meters_found": len(meters),
                "readings_processed": readings,
                "last_reading_in_range": None if newest is None else iso_seconds(newest),
                "timezone": zone.key,
            }
        )

    @app.get("/api/summary")
    def summary() -> Response:
        now = now_ms()
        period = Period.at(now, zone)
        today_ms = midnight_ms(period.today, zone)
        week_ms = midnight_ms(period.week_start, zone)
        month_ms = midnight_ms(period.month_start, zone)
        per: dict[str, dict[str, float]] = {
            "today": defaultdict(float),
            "week": defaultdict(float),
            "month": defaultdict(float),
        }
        latest: dict[str, tuple[int, float, str]] = {}
        rows = conn().execute(SUMMARY_SCAN_SQL, (min(week_ms, month_ms), now))
        for meter_id, building, start_ms, energy_wh, power_w in rows:
            if start_ms >= month_ms:
                per["month"][building] += energy_wh
            if start_ms >= week_ms:
                per["week"][building] += energy_wh
            if start_ms >= today_ms:
                per["today"][building] += energy_wh
            if start_ms >= latest.get(meter_id, (0, 0.0, ""))[0]:
                latest[meter_id] = (start_ms, power_w or 0.0, building)
        online = {m: v for m, v in latest.items() if now - v[0] <= fresh_ms}
        total_today = sum(per["today"].values())
        return reply(
            {
                "timezone": zone.key,
                "power_w": sum(v[1] for v in online.values()),
                "meters": len(latest),
                "meters_online": len(online),
                "today_kwh": round(total_today / 1000, 6),
                "week_kwh": round(sum(per["week"].values()) / 1000, 6),
                "month_kwh": round(sum(per["month"].values()) / 1000, 6),
                "buildings": [
                    {
                        "building": name,
                        "today_kwh": round(per["today"][name] / 1000, 6),
                        "week_kwh": round(per["week"][name] / 1000, 6),
                        "month_kwh": round(per["month"][name] / 1000, 6),
                    }
                    for name in sorted({v[2] for v in latest.values()})
                ],
            }
        )

    return app


def serve(config_path: str) -> None:
    """Child process: the naive app under the very Gunicorn settings `campus-energy api` uses."""
    from campus_energy.api.server import Gunicorn

    config = load_config(Path(config_path), {})
    fresh_ms = round((2 * config.bridge.window_s + config.bridge.grace_s) * 1000)

    class NaiveGunicorn(Gunicorn):  # type: ignore[misc]
        def load(self) -> Flask:
            return naive_app(self.config.bridge.sqlite.path, self.config.site.zone, fresh_ms)

    NaiveGunicorn(config).run()


if __name__ == "__main__":
    serve(sys.argv[1])
