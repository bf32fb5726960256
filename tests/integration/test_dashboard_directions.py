"""The local dashboard in both directions, against the books: a store written through the
logger's own store code, every figure recomputed from its `readings` rows.

Berlin, across the night the clocks go forward (Sunday 29 March 2026, a 23-hour day):
"roof-1" (building "Lab") is a main meter with rooftop PV behind it — it imports at night
and exports around noon — and "hall-1" (building "Hall") only imports. Readings every
minute, integrated by the logger's own trapezoid (split at the zero crossing); each meter
loses its polls for a while and the reading after the gap carries what its registers
counted meanwhile (estimated import, and for the PV meter estimated export). The store
holds two meter events of hall-1, detected and confirmed.

The books: Σ energy_wh (consumption), Σ energy_export_wh (generation), their difference
(net), Σ estimated_energy_wh and Σ estimated_export_wh, over the `readings` rows of the
sidebar's range; the day's curve is Σ net energy ÷ integrated time per minute.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from tests.support.config import campus_meters, write_toml

from campus_energy.core.energy import MeterState, advance
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.dashboard.app import NOW_ENV
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
ZONE = ZoneInfo("Europe/Berlin")
METERS = {"roof-1": ("Lab", "R"), "hall-1": ("Hall", "0")}
STEP_S = 60
HOUR_MS = 3_600_000


def local_ms(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return round(datetime(2026, 3, day, hour, minute, second, tzinfo=ZONE).timestamp() * 1000)


FIRST_MS = local_ms(28)
NOW_MS = local_ms(29, 20, 0, 10)  # the evening of the 23-hour day
DAY = datetime(2026, 3, 29).date()
OUTAGES = {  # no polls in [a, b): the reading at b carries the registers' estimate (Wh)
    "roof-1": ((local_ms(29, 10), local_ms(29, 10, 30)), 12.5, 1234.5),
    "hall-1": ((local_ms(28, 15), local_ms(28, 15, 20)), 333.25, None),
}
EVENT_MS = local_ms(29, 9, 0)


def power_w(meter: str, ts_ms: int) -> float:
    """roof-1: a 600 W load less a PV array's 3 kW peak at local noon (exporting around it);
    hall-1: a load of about 1 kW."""
    moment = datetime.fromtimestamp(ts_ms / 1000, ZONE)
    hours = moment.hour + moment.minute / 60
    if meter == "roof-1":
        sun = max(0.0, math.sin(math.pi * (hours - 7) / 10)) if 7 <= hours <= 17 else 0.0
        return round(600.0 - 3000.0 * sun, 1)
    return 1000.0 + 20.0 * (moment.minute % 7)


def readings_of(meter: str) -> tuple[list[Reading], list[tuple[str, int, int]]]:
    (off_from, off_to), estimate, estimate_export = OUTAGES[meter]
    state, found, gaps = MeterState(), [], []
    for ts in range(FIRST_MS, NOW_MS - 5_000, STEP_S * 1000):
        if off_from <= ts < off_to:
            continue
        previous = state.last_ts_ms
        step, state = advance(
            state,
            power_w=power_w(meter, ts),
            wall_s=ts / 1000,
            mono_s=ts / 1000,
            max_gap_s=STEP_S * 2.5,
        )
        bridged = step.gap_s is not None and previous is not None
        if bridged:
            assert previous is not None
            gaps.append((meter, previous, ts))
        found.append(
            Reading(
                meter,
                step.ts_ms,
                step.seq,
                step.energy_uwh,
                step.total_uwh,
                {"power_w": power_w(meter, ts), "voltage_v": 230.0},
                interval_start_ms=previous if step.energy_uwh or step.export_uwh else None,
                export_uwh=step.export_uwh,
                export_total_uwh=step.export_total_uwh,
                estimated_uwh=round(estimate * 1e6) if bridged else None,
                estimated_export_uwh=round(estimate_export * 1e6)
                if bridged and estimate_export is not None
                else None,
                estimated_start_ms=previous if bridged else None,
            )
        )
    return found, gaps


EVENTS = (
    MeterEvent("hall-1", EVENT_MS, "replaced", "detected", before_wh=98_765_432.0, after_wh=7.0),
    MeterEvent(
        "hall-1",
        EVENT_MS,
        "replaced",
        "confirmed",
        old_final_wh=98_765_500.0,
        new_start_wh=0.0,
        note="new meter",
        recorded_ms=EVENT_MS + 3_600_000,
    ),
)


def write_store(path: Path) -> None:
    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register(
                MeterRecord(m, b, f, "eastron-sdm120") for m, (b, f) in METERS.items()
            )
            gaps = []
            for meter in METERS:
                found, meter_gaps = readings_of(meter)
                await store.insert_many(found)
                gaps += meter_gaps
            await store.commit(Cycle(gaps=gaps))
            await store.record_events(EVENTS)
        finally:
            await store.close()

    asyncio.run(go())


class Books:
    """The `readings` rows of the store, summed."""

    def __init__(self, store: Path) -> None:
        conn = sqlite3.connect(store)
        try:
            self.rows = conn.execute(
                "SELECT meter_id, ts_ms, energy_wh, energy_export_wh, estimated_energy_wh, "
                "estimated_export_wh FROM readings ORDER BY meter_id, ts_ms"
            ).fetchall()
            ends = {
                (m, b)
                for m, b in conn.execute(
                    "SELECT m.meter_id, g.end_ts_ms FROM gaps g JOIN meters m ON m.id = g.meter"
                )
            }
        finally:
            conn.close()
        self.dt: dict[tuple[str, int], int] = {}
        for (m0, t0, *_), (m1, t1, *_) in zip(self.rows, self.rows[1:], strict=False):
            self.dt[(m1, t1)] = t1 - t0 if m0 == m1 and (m1, t1) not in ends else 0

    def total(self, meters: set[str], column: int, start: int, end: int) -> float:
        return sum(r[column] or 0.0 for r in self.rows if r[0] in meters and start <= r[1] < end)

    def minutes(self, meter: str, start: int, end: int) -> dict[int, float]:
        """Per minute from `start`: Σ (import − export) ÷ Σ integrated time (W)."""
        sums: dict[int, list[float]] = {}
        for m, ts, wh, out, *_ in self.rows:
            if m == meter and start <= ts < end and self.dt.get((m, ts), 0) > 0:
                key = start + (ts - start) // 60_000 * 60_000
                entry = sums.setdefault(key, [0.0, 0.0])
                entry[0] += wh - out
                entry[1] += self.dt[(m, ts)]
        return {k: wh * HOUR_MS / ms for k, (wh, ms) in sums.items()}


IMPORT, EXPORT, ESTIMATED, ESTIMATED_EXPORT = 2, 3, 4, 5


@dataclass(frozen=True)
class Campus:
    store: Path
    config: Path
    books: Books


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Campus:
    folder = tmp_path_factory.mktemp("directions")
    store = folder / "store.db"
    write_store(store)
    flat = {
        "id": "flat",
        "currency": "EUR",
        "versions": [{"valid_from": "2026-01-01", "default_rate": "0.25"}],
    }
    config = write_toml(
        folder / "campus-energy.toml",
        {
            "site": {
                "name": "Solar campus",
                "timezone": "Europe/Berlin",
                "tariff": "flat",
                "buildings": [{"name": "Lab"}, {"name": "Hall"}],
            },
            "storage": {"path": store},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters({m: (b, f, "main") for m, (b, f) in METERS.items()}),
            "tariffs": [flat],
        },
    )
    return Campus(store, config, Books(store))


@pytest.fixture
def at(campus: Campus, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(campus.config))
    monkeypatch.setenv(NOW_ENV, datetime.fromtimestamp(NOW_MS / 1000, ZONE).isoformat())
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    yield app


def tab(at: AppTest, label: str) -> Any:
    return next(t for t in at.tabs if t.label == label)


def chart_data(chart: Any) -> pd.DataFrame:
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()


def range_ms() -> tuple[int, int]:
    """The sidebar's default range: the last seven local days up to now."""
    first = DAY - timedelta(days=6)
    start = round(datetime(first.year, first.month, first.day, tzinfo=ZONE).timestamp() * 1000)
    return start, NOW_MS + 1


def kwh(wh: float) -> str:
    return f"{wh / 1000:,.3f}"


def test_the_store_holds_both_directions_and_estimates(campus: Campus) -> None:
    b, (start, end) = campus.books, range_ms()
    assert b.total({"roof-1"}, EXPORT, start, end) > 1000  # Wh exported around noon
    assert b.total({"roof-1"}, ESTIMATED_EXPORT, start, end) == pytest.approx(1234.5)
    assert b.total({"hall-1"}, ESTIMATED, start, end) == pytest.approx(333.25)
    assert b.total({"hall-1"}, EXPORT, start, end) == 0
    assert (NOW_MS - local_ms(29)) < 20 * HOUR_MS + 11_000  # 29 March lost an hour


def test_consumption_generation_and_net_are_the_sums_of_the_readings(
    at: AppTest, campus: Campus
) -> None:
    b, (start, end) = campus.books, range_ms()
    overview = tab(at, "Overview")
    shown = {m.label: m.value for m in overview.metric}
    every = set(METERS)
    imported = b.total(every, IMPORT, start, end)
    exported = b.total(every, EXPORT, start, end)
    assert shown["Consumption (kWh)"] == kwh(imported)
    assert shown["Generation (kWh)"] == kwh(exported)
    assert shown["Net (kWh)"] == kwh(imported - exported)
    captions = [c.value for c in overview.caption]
    estimated = b.total(every, ESTIMATED, start, end)
    estimated_export = b.total(every, ESTIMATED_EXPORT, start, end)
    assert f"Consumption: measured {kwh(imported)} kWh + estimated {kwh(estimated)} kWh" in (
        captions
    )
    assert (
        f"Generation: measured {kwh(exported)} kWh + estimated {kwh(estimated_export)} kWh"
        in captions
    )


def test_each_meter_and_building_by_direction(at: AppTest, campus: Campus) -> None:
    b, (start, end) = campus.books, range_ms()
    overview = tab(at, "Overview")
    per_building = next(
        t.value
        for t in overview.dataframe
        if list(t.value.columns)[:2] == ["building", "consumption (kWh)"]
    ).set_index("building")
    per_meter = next(
        t.value
        for t in overview.dataframe
        if "net (kWh)" in t.value.columns and "meter" in t.value.columns
    ).set_index("meter")
    for meter, (building, _) in METERS.items():
        expected = {
            "consumption (kWh)": b.total({meter}, IMPORT, start, end),
            "generation (kWh)": b.total({meter}, EXPORT, start, end),
            "estimated consumption (kWh)": b.total({meter}, ESTIMATED, start, end),
            "estimated generation (kWh)": b.total({meter}, ESTIMATED_EXPORT, start, end),
        }
        expected["net (kWh)"] = expected["consumption (kWh)"] - expected["generation (kWh)"]
        for column, wh in expected.items():
            for table, key in ((per_meter, meter), (per_building, building)):
                assert table.loc[key, column] * 1000 == pytest.approx(wh, abs=1e-3), (
                    key,
                    column,
                )
    assert per_meter.loc["roof-1", "net (kWh)"] < per_meter.loc["roof-1", "consumption (kWh)"]


def test_the_pv_meters_day_curve_goes_negative_at_noon(at: AppTest, campus: Campus) -> None:
    b = campus.books
    detail = tab(at, "Day detail")
    [chart] = detail.get("vega_lite_chart")
    shown = chart_data(chart)
    roof = shown[shown["meter"] == "roof-1"].set_index("ts_ms")["W"]
    start = local_ms(29)
    expected = b.minutes("roof-1", start, local_ms(30))
    assert len(roof) == len(expected)
    for ts, w in roof.items():
        assert abs(w - expected[ts]) <= 0.05 + 1e-6, ts  # shown to 0.1 W
    noon = local_ms(29, 12)
    assert roof.loc[noon] < -2000  # exporting: 600 W load, about 3 kW of sun
    assert roof.loc[local_ms(29, 3)] > 0  # importing at night (03:00 CEST, after the change)
    assert any("exports" in c.value for c in detail.caption)


def test_the_data_quality_view_shows_estimates_and_meter_events(
    at: AppTest, campus: Campus
) -> None:
    b, (start, end) = campus.books, range_ms()
    quality = tab(at, "Data quality")
    headings = [s.value for s in quality.subheader]
    assert "Estimated energy (gaps bridged by the meters' registers)" in headings
    assert "Meter events (2)" in headings
    estimates = next(t.value for t in quality.dataframe if "estimates" in t.value.columns)
    estimates = estimates.set_index("meter")
    for meter in METERS:
        assert estimates.loc[meter, "estimates"] == 1
        assert estimates.loc[meter, "estimated import (kWh)"] * 1000 == pytest.approx(
            b.total({meter}, ESTIMATED, start, end), abs=1e-3
        )
        assert estimates.loc[meter, "estimated export (kWh)"] * 1000 == pytest.approx(
            b.total({meter}, ESTIMATED_EXPORT, start, end), abs=1e-3
        )
    events = next(t.value for t in quality.dataframe if "kind" in t.value.columns)
    assert list(events["source"]) == ["detected", "confirmed"]
    assert set(events["meter"]) == {"hall-1"}
    assert set(events["kind"]) == {"replaced"}
    assert set(events["time"]) == {"2026-03-29 09:00:00"}
    confirmed = events.iloc[1]
    assert confirmed["old final (kWh)"] == pytest.approx(98_765.5)
    assert confirmed["new start (kWh)"] == 0
    assert confirmed["note"] == "new meter"
    assert events.iloc[0]["before (kWh)"] == pytest.approx(98_765.432)


def test_the_cost_tab_counts_the_estimate_and_shows_it_apart(at: AppTest, campus: Campus) -> None:
    """As bills do: measured import plus estimated import, each account's kWh rounded."""
    b, (start, end) = campus.books, range_ms()
    cost = tab(at, "Cost & demand")
    shown = {m.label: m.value for m in cost.metric}
    measured = {m: b.total({m}, IMPORT, start, end) for m in METERS}
    estimated = {m: b.total({m}, ESTIMATED, start, end) for m in METERS}
    billed = sum(
        (Decimal(measured[m] + estimated[m]) / 1000).quantize(Decimal("0.001"), ROUND_HALF_UP)
        for m in METERS
    )
    assert shown["Energy (kWh)"] == f"{billed:,}"
    note = next(c.value for c in cost.caption if c.value.startswith("Readings cover"))
    assert (
        f"Energy: measured {kwh(sum(measured.values()))} kWh + estimated "
        f"{kwh(sum(estimated.values()))} kWh" in note
    )


def test_an_older_store_without_directions_shows_import_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of schema 2 (no export, no estimates, no meter events) opened read-only, as
    the dashboard opens it before a newer logger upgraded it."""
    store = tmp_path / "old.db"
    write_store(store)
    conn = sqlite3.connect(store)
    try:
        wh = conn.execute("SELECT sum(energy_wh) FROM readings").fetchone()[0]
        for view in ("latest_readings", "readings"):
            conn.execute(f"DROP VIEW {view}")
        conn.execute("DROP INDEX samples_estimated")
        for column in ("energy_export", "energy_export_total", "estimated", "estimated_export",
                       "export_energy"):  # fmt: skip
            conn.execute(f"ALTER TABLE samples DROP COLUMN {column}")
        conn.execute("DROP TABLE meter_events")
        conn.execute(
            "CREATE VIEW readings AS SELECT m.meter_id AS meter_id, s.ts_ms AS ts_ms, "
            "s.voltage / 100.0 AS voltage_v, s.current / 1000.0 AS current_a, "
            "s.power / 100.0 AS power_w, s.pf / 10000.0 AS power_factor, "
            "s.freq / 1000.0 AS frequency_hz, s.import_energy / 10.0 AS import_energy_wh, "
            "CAST(s.energy / 1000000.0 AS REAL) AS energy_wh, "
            "CAST(s.energy_total / 1000000.0 AS REAL) AS energy_total_wh, s.seq AS seq, "
            "s.extra AS extra FROM meters m JOIN samples s ON s.meter = m.id"
        )
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        conn.commit()
    finally:
        conn.close()
    config = write_toml(
        tmp_path / "campus-energy.toml",
        {"site": {"name": "Old", "timezone": "Europe/Berlin"}, "storage": {"path": store}},
    )
    monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(config))
    monkeypatch.setenv(NOW_ENV, datetime.fromtimestamp(NOW_MS / 1000, ZONE).isoformat())
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in tab(at, "Overview").metric}
    assert shown["Consumption (kWh)"] == kwh(wh)
    assert shown["Generation (kWh)"] == "0.000"
    quality = tab(at, "Data quality")
    assert "No estimated energy: no gap was bridged by a meter's registers." in [
        m.value for m in quality.markdown
    ]
    assert "Meter events" in [s.value for s in quality.subheader]
    raw = tab(at, "Raw data").dataframe[0].value
    assert raw["energy_export_wh"].isna().all()
    assert raw["energy_wh"].notna().all()
