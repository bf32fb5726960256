"""The local dashboard's campus for a figures test: a store written by the logger's own code,
and the books the dashboard must agree with, summed from its `readings` rows alone.

(tests/integration/test_dashboard_figures.py checks every figure against them through
AppTest; tests/integration/test_dashboard_browser.py in a real browser.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.config import write_toml

from campus_energy.core.readings import Reading
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

HOUR_MS = 3_600_000
METERS = {"ece-1": ("ECE", "1"), "ece-2": ("ECE", "2"), "lib-1": ("Library", "G")}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
REASON = "power 99999 W beyond ±50000 W"


@dataclass(frozen=True)
class Scenario:
    """Readings every `step_s` from `first` to `now` (site-local), meters offline for a while."""

    zone: str
    first: tuple[int, ...]  # (y, m, d, H, M) on the site's clock
    now: tuple[int, ...]
    step_s: int = 300
    offline: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    days: tuple[date, date] | None = None  # the sidebar's range; None: its default

    def at(self, parts: tuple[int, ...]) -> int:
        return round(datetime(*parts, tzinfo=ZoneInfo(self.zone)).timestamp() * 1000)


def power_w(index: int, ts_ms: int) -> float:
    return 900.0 * (index + 1) + 350.0 * (ts_ms // HOUR_MS % 5) + 0.5 * (ts_ms // 60_000 % 11)


def meter_readings(meter: str, index: int, s: Scenario) -> tuple[list[Reading], list[Any]]:
    """A logger's rows: trapezoid energy in whole mWh; after an outage none, and a gap."""
    off = [s.at(t) for t in s.offline.get(meter, ((1970, 1, 2), (1970, 1, 2)))]
    stamps = range(s.at(s.first), s.at(s.now) - 10_000 + 1, s.step_s * 1000)
    readings: list[Reading] = []
    gaps = []
    total = 0
    for seq, ts in enumerate((t for t in stamps if not off[0] <= t < off[1]), start=1):
        power, energy = power_w(index, ts), 0
        if readings and ts - readings[-1].ts_ms > s.step_s * 1000:
            gaps.append((meter, readings[-1].ts_ms, ts))
        elif readings:
            last = readings[-1]
            exact_uwh = (last.values["power_w"] + power) / 2 * (ts - last.ts_ms) / 3.6
            energy = round(exact_uwh / 1000) * 1000
        total += energy
        register = round(500_000 + total / 1e6 * 1.0003, 1)  # the meter's own, a little off
        values = {"voltage_v": 231.5, "power_factor": 0.98, "frequency_hz": 50.0}
        values |= {"power_w": power, "current_a": round(power / 226.87, 3)}
        readings.append(
            Reading(meter, ts, seq, energy, total, values | {"import_energy_wh": register})
        )
    return readings, gaps


def write_store(path: Path, s: Scenario) -> None:
    cycle = Cycle(rejects=[("lib-1", s.at(s.now) - 400_000, REASON, 99999.0)])
    for index, meter in enumerate(METERS):
        readings, gaps = meter_readings(meter, index, s)
        cycle.readings.extend(readings)
        cycle.gaps.extend(gaps)

    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register(
                MeterRecord(m, b, f, "eastron-sdm120") for m, (b, f) in METERS.items()
            )
            await store.insert_many(cycle.readings)
            await store.commit(Cycle(gaps=cycle.gaps, rejects=cycle.rejects))
        finally:
            await store.close()

    asyncio.run(go())


def write_config(folder: Path, store: Path, zone: str, port: int = 8501) -> Path:
    return write_toml(
        folder / "campus-energy.toml",
        {
            "site": {"name": "Figures campus", "timezone": zone},
            "storage": {"path": store},
            "dashboard": {"port": port},
        },
    )


class Books:
    """The store's `readings` rows and the sums the dashboard must agree with."""

    def __init__(self, store: Path, zone: ZoneInfo, now_ms: int) -> None:
        conn = sqlite3.connect(store)
        try:
            self.rows = conn.execute(
                "SELECT meter_id, ts_ms, power_w, voltage_v, current_a, power_factor, "
                "frequency_hz, energy_wh, import_energy_wh FROM readings ORDER BY meter_id, ts_ms"
            ).fetchall()
            gap_rows = conn.execute(
                "SELECT m.meter_id, g.start_ts_ms, g.end_ts_ms FROM gaps g JOIN meters m "
                "ON m.id = g.meter"
            ).fetchall()
        finally:
            conn.close()
        self.zone, self.now_ms, self.gaps = zone, now_ms, gap_rows
        ends = {(m, b) for m, _, b in gap_rows}
        self.dt: dict[tuple[str, int], int] = {}  # the time each reading integrated
        for (m0, t0, *_), (m1, t1, *_) in zip(self.rows, self.rows[1:], strict=False):
            self.dt[(m1, t1)] = t1 - t0 if m0 == m1 and (m1, t1) not in ends else 0

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def midnight(self, day: date) -> int:
        return round(datetime(day.year, day.month, day.day, tzinfo=self.zone).timestamp() * 1000)

    def day_ms(self, day: date) -> int:
        return self.midnight(day + timedelta(days=1)) - self.midnight(day)

    def day(self, row: tuple[Any, ...]) -> date:
        return self.local(row[1]).date()

    def weekday(self, row: tuple[Any, ...]) -> str:
        return WEEKDAYS[self.local(row[1]).weekday()]

    def wh(self, meters: set[str], start: int, end: int) -> float:
        return sum(r[7] for r in self.rows if r[0] in meters and start <= r[1] < end)

    def sums(self, meters: set[str], start: int, end: int, key: Any) -> dict[Any, list[float]]:
        """(meter, key(row)): [Σ Wh, Σ integrated ms] over the rows with ts in [start, end)."""
        found: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0])
        for row in (r for r in self.rows if r[0] in meters and start <= r[1] < end):
            entry = found[(row[0], key(row))]
            entry[0] += row[7]
            entry[1] += self.dt.get((row[0], row[1]), 0)
        return found

    def mean_w(self, meters: set[str], start: int, end: int, key: Any) -> dict[Any, float]:
        """key: Σ over meters of each meter's Σ Wh ÷ Σ integrated time (W), where it has any."""
        found: dict[Any, float] = defaultdict(float)
        for (_, k), (wh, ms) in self.sums(meters, start, end, key).items():
            if ms > 0:
                found[k] += wh * HOUR_MS / ms
        return dict(found)
