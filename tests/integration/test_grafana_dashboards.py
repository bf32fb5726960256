"""The example Grafana dashboards: well-formed, their SQL runs on the PostgreSQL sink's schema,
and their PromQL names only metrics the services expose (all of them documented)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.support.campus import bridged_campus
from tests.support.metrics import scrape
from tests.support.net import free_port
from tests.support.sinks import sqlite_sink

from campus_energy.backends.postgres.sink import PostgresSink
from campus_energy.bridge.service import Bridge
from campus_energy.config import PostgresSinkConfig
from campus_energy.core.windows import Contribution, IncomingReading, contributions, group
from campus_energy.logger.service import MeterLogger

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
POSTGRES_DASHBOARD = GRAFANA / "campus-energy-postgres.json"
METRICS_DASHBOARD = GRAFANA / "campus-energy-metrics.json"
PLUGINS = {
    POSTGRES_DASHBOARD: "grafana-postgresql-datasource",
    METRICS_DASHBOARD: "prometheus",
}
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
METERS = {"lib-main": ("Library", "G"), "lib-f1": ("Library", "1"), "admin-old": ("Admin", "G")}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("path", list(PLUGINS), ids=lambda p: p.name)
def test_a_dashboard_is_well_formed(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == PLUGINS[path]
    source = {"type": PLUGINS[path], "uid": "${datasource}"}
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    for panel in panels(dashboard):
        assert panel["type"] in {"stat", "timeseries", "table"}
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            if PLUGINS[path] == "prometheus":
                assert target["expr"].strip(), panel["title"]
            else:
                assert target["rawQuery"] is True and target["format"] in {"table", "time_series"}
                if target["format"] == "time_series":
                    assert 'AS "time"' in target["rawSql"], panel["title"]


# -- the SQL, on a schema made by the sink ------------------------------------------------------


def seeded_deltas(now: datetime) -> list[Any]:
    """Readings every minute over the last 20 minutes, cut into 5-minute window deltas."""
    items: list[Contribution] = []
    step = timedelta(minutes=1)
    for n, (meter_id, (building, floor)) in enumerate(METERS.items()):
        power = 1000.0 * (n + 1)
        previous: int | None = None
        for seq in range(1, 22):
            ts_ms = round((now - (21 - seq) * step).timestamp() * 1000)
            reading = IncomingReading(
                meter_id,
                ts_ms,
                seq,
                0.0 if previous is None else power / 60,
                previous,
                power,
                voltage_v=230.0,
                current_a=power / 230,
                power_factor=0.95,
                frequency_hz=50.0,
                building=building,
                floor=floor,
            )
            items.extend(contributions(reading, 300_000))
            previous = ts_ms
    return group(items, 300, METERS)


def grafana_sql(sql: str, schema: str, start: datetime, end: datetime) -> str:
    """The SQL Grafana sends: its macros and the dashboard variables expanded as it does."""

    def stamp(moment: datetime) -> str:
        return f"'{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}'"

    every_building = ",".join(sorted({f"'{b}'" for b, _ in METERS.values()}))
    every_meter = ",".join(f"'{m}'" for m in METERS)
    expanded = re.sub(
        r"\$__timeFilter\(([^()]+)\)",
        lambda m: f"{m.group(1)} BETWEEN {stamp(start)} AND {stamp(end)}",
        sql,
    )
    for name, value in {
        "$__timeFrom()": stamp(start),
        "$__timeTo()": stamp(end),
        "${schema}": schema,
        "$building": every_building,
        "$meter": every_meter,
    }.items():
        expanded = expanded.replace(name, value)
    assert "$" not in expanded, f"a macro or variable the test does not know: {expanded}"
    return expanded


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(p["title"], t["rawSql"]) for p in panels(dashboard) for t in p["targets"]]
    found += [
        (f"variable {v['name']}", v["query"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    return found


async def test_every_query_of_the_postgres_dashboard_runs_on_the_sinks_schema(
    postgres_dsn: tuple[str, str],
) -> None:
    dsn, schema = postgres_dsn
    now = datetime.now(UTC)
    sink = PostgresSink(PostgresSinkConfig(dsn=dsn, schema=schema), ZoneInfo("Asia/Kolkata"))
    try:
        assert await sink.merge(seeded_deltas(now), round(now.timestamp() * 1000)) > 0
    finally:
        await sink.close()
    queries = dashboard_queries(load(POSTGRES_DASHBOARD))
    assert len(queries) >= 10
    start, end = now - timedelta(hours=6), now + timedelta(minutes=1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for title, sql in queries:
            try:
                cursor = await conn.execute(grafana_sql(sql, schema, start, end))
            except psycopg.Error as exc:
                pytest.fail(f"{title}: {exc}")
            found = await cursor.fetchall()
            assert found, f"{title}: no rows"
            assert all(value is not None for value in found[0]), f"{title}: {found[0]}"
            await conn.rollback()
    # a spot check of the meaning: the campus power of a complete window is the sum of the meters'
    power = next(sql for title, sql in queries if title == "Campus power")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(grafana_sql(power, schema, start, end))
        values = [kw for _, kw in await cursor.fetchall()]
    assert max(values) == pytest.approx((1 + 2 + 3) * 1000 / 1000)


@pytest.mark.parametrize(
    "now",
    [datetime(2026, 3, 10, 19, 0, tzinfo=UTC), datetime(2026, 3, 10, 10, 0, tzinfo=UTC)],
    ids=["after-local-midnight", "local-afternoon"],
)
async def test_the_daily_panel_shows_the_local_day_of_a_range_of_a_few_hours(
    postgres_dsn: tuple[str, str], now: datetime
) -> None:
    """Days are the site's: a 6-hour range shows the local day it falls on, stamped at its local
    midnight, whether or not that day began inside the range (or on another UTC date)."""
    dsn, schema = postgres_dsn
    zone = ZoneInfo("Asia/Kolkata")
    sink = PostgresSink(PostgresSinkConfig(dsn=dsn, schema=schema), zone)
    try:
        assert await sink.merge(seeded_deltas(now), round(now.timestamp() * 1000)) > 0
    finally:
        await sink.close()
    daily = next(
        sql
        for title, sql in dashboard_queries(load(POSTGRES_DASHBOARD))
        if title == "Energy per day by building"
    )
    start, end = now - timedelta(hours=6), now + timedelta(minutes=1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(grafana_sql(daily, schema, start, end))
        found = await cursor.fetchall()
    local_days = {(now - timedelta(minutes=m)).astimezone(zone).date() for m in range(21)}
    midnights = {datetime.combine(day, datetime.min.time(), zone) for day in local_days}
    assert {stamp for stamp, _, _ in found} == midnights
    energy_kwh = {building: 0.0 for building, _ in METERS.values()}
    for n, (building, _) in enumerate(METERS.values()):
        energy_kwh[building] += 1.0 * (n + 1) * 20 / 60
    totals: dict[str, float] = {}
    for _, building, kwh in found:
        totals[building] = totals.get(building, 0.0) + float(kwh)
    assert totals == pytest.approx(energy_kwh)


async def test_the_energy_panels_show_each_direction_and_the_estimate_as_the_books(
    postgres_dsn: tuple[str, str],
) -> None:
    """A building with rooftop PV exporting 2 kW for 20 minutes, and a gap before it bridged by
    its registers: "Energy today" and "Energy in the time range" show import, export, net and
    the estimate apart, each equal to the sums of the readings behind them."""
    dsn, schema = postgres_dsn
    zone = ZoneInfo("Asia/Kolkata")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    now = max(now, datetime.combine(now.astimezone(zone).date(), datetime.min.time(), zone)
              .astimezone(UTC) + timedelta(minutes=45))  # fmt: skip
    items: list[Contribution] = []
    previous: int | None = None
    for seq in range(1, 22):  # the PV building: −2 kW every minute of the last 20 minutes
        ts_ms = round((now - (21 - seq) * timedelta(minutes=1)).timestamp() * 1000)
        reading = IncomingReading(
            "lib-main",
            ts_ms,
            seq,
            0.0,
            previous,
            -2000.0,
            building="Library",
            floor="G",
            export_wh=0.0 if previous is None else 2000 / 60,
            # the first reading follows a 10-minute gap its registers counted 150 Wh in
            estimated_wh=150.0 if previous is None else 0.0,
            estimated_start_ms=ts_ms - 600_000 if previous is None else None,
        )
        items.extend(contributions(reading, 300_000))
        previous = ts_ms
    for seq in range(1, 22):  # and a building drawing 1 kW
        ts_ms = round((now - (21 - seq) * timedelta(minutes=1)).timestamp() * 1000)
        start = None if seq == 1 else ts_ms - 60_000
        reading = IncomingReading(
            "admin-old", ts_ms, seq, 0.0 if start is None else 1000 / 60, start, 1000.0,
            building="Admin", floor="G",
        )  # fmt: skip
        items.extend(contributions(reading, 300_000))
    sink = PostgresSink(PostgresSinkConfig(dsn=dsn, schema=schema), zone)
    try:
        assert await sink.merge(group(items, 300, METERS), round(now.timestamp() * 1000)) > 0
    finally:
        await sink.close()
    queries = dict(dashboard_queries(load(POSTGRES_DASHBOARD)))
    books = {
        "kWh": 20 * 1000 / 60 / 1000,
        "exported kWh": 20 * 2000 / 60 / 1000,
        "net kWh": (20 * 1000 / 60 - 20 * 2000 / 60) / 1000,
        "estimated kWh": 0.150,
    }
    start, end = now - timedelta(minutes=40), now + timedelta(minutes=1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for title in ("Energy today", "Energy in the time range"):
            cursor = await conn.execute(grafana_sql(queries[title], schema, start, end))
            assert cursor.description is not None
            names = [column.name for column in cursor.description]
            (row,) = await cursor.fetchall()
            shown = {name: float(value) for name, value in zip(names, row, strict=True)}
            assert shown == pytest.approx(books, abs=1e-9), title


# -- the PromQL, against what the services expose ------------------------------------------------


async def test_the_metrics_dashboard_and_the_docs_name_exactly_what_the_services_expose(
    tmp_path: Path,
) -> None:
    settings = sqlite_sink(tmp_path)
    config = bridged_campus(tmp_path, 1883, settings)
    logger, bridge = MeterLogger(config), Bridge(config)
    exposed: set[str] = set()
    families: set[str] = set()
    try:
        for metrics in (logger.metrics, bridge.metrics):
            port = free_port()
            metrics.exporter.start("127.0.0.1", port)
            try:
                found = await scrape(port)
            finally:
                metrics.exporter.stop()
            families |= set(found.families)
            exposed |= {
                name + suffix
                for name, kind in found.families.items()
                for suffix in SERIES_SUFFIXES[kind]
            }
    finally:
        await logger.store.close()
        await bridge.spool.close()
        await bridge.sink.close()
    assert {"campus_energy_logger_outbox_depth", "campus_energy_bridge_spool_depth"} <= exposed
    dashboard = load(METRICS_DASHBOARD)
    used = {
        name
        for panel in panels(dashboard)
        for target in panel["targets"]
        for name in re.findall(r"campus_energy_[a-z_]+", target["expr"])
    }
    assert used and used <= exposed, sorted(used - exposed)
    docs = (ROOT / "docs" / "operations.md").read_text()
    ours = {name for name in families if not name.endswith("_created")}  # the client's own
    undocumented = {name for name in ours if f"`{name}" not in docs}
    assert not undocumented, sorted(undocumented)
