"""An estate of two sites end to end: simulator → a logger per site → Mosquitto → one bridge →
SQLite. Each site's meters publish under their site's root, each window carries its site,
and the books balance per meter and per site; a reading under another site's root is refused."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.campus import INTERVAL, WINDOW_S, balance
from tests.support.config import config_data, meter_at, tcp_bus
from tests.support.mqtt import Collector
from tests.support.readback import count, query
from tests.support.services import serving
from tests.support.sinks import sqlite_docs, sqlite_sink
from tests.support.waiting import eventually

from campus_energy.bridge.service import Bridge
from campus_energy.config import Config, parse_config
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import epoch_ms
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

pytestmark = pytest.mark.slow  # runs two loggers and a bridge for a few windows

PREFIX = "campus/energy"
NORTH = f"{PREFIX}/sites/north"


def estate(folder: Path, broker_port: int) -> dict[str, Any]:
    """Library (two meters) on the default site, Admin (one meter) on site "north", as data."""
    meters = [
        meter_at("lib-main", "plant", 1, "eastron-sdm630", building="Library", floor="G"),
        meter_at("lib-f1", "plant", 2, "eastron-sdm120", building="Library", floor="1"),
        meter_at("admin-old", "plant", 3, "campus-legacy", building="Admin", floor="G"),
    ]
    meters[2]["site"] = "north"
    for m in meters:
        m["interval_s"] = INTERVAL
    return config_data(
        [tcp_bus(timeout_s=0.15, retries=0)],
        meters,
        site={"name": "Main Campus", "timezone": "Europe/Berlin"},
        sites=[{"id": "north", "name": "North Campus", "timezone": "America/New_York"}],
        storage={"path": str(folder / "store-all.db")},
        mqtt={"host": "127.0.0.1", "port": broker_port, "topic_prefix": PREFIX},
        logger={"id": "logger-all"},
        bridge={
            "window_s": WINDOW_S,
            "grace_s": 0.5,
            "spool_path": str(folder / "spool.db"),
            "client_id": "bridge-estate",
            **sqlite_sink(folder),
        },
    )


def logger_of(data: dict[str, Any], folder: Path, site: str) -> Config:
    """The estate's configuration as the logger of `site` runs it."""
    mine = dict(data, storage={"path": str(folder / f"store-{site}.db")})
    return parse_config(mine | {"logger": {"id": f"logger-{site}", "site": site}}).for_logger()


async def test_each_sites_meters_publish_under_its_root_and_windows_carry_their_site(
    tmp_path: Path, mosquitto: Any
) -> None:
    data = estate(tmp_path, mosquitto.port)
    estate_config = parse_config(data)  # the bridge's: every site
    main, north = logger_of(data, tmp_path, "main"), logger_of(data, tmp_path, "north")
    bridge = Bridge(estate_config)
    async with (
        Simulator(estate_config),
        Collector(mosquitto.port) as collector,
        serving(bridge, "subscribed"),
    ):
        async with serving(MeterLogger(main), "ready"), serving(MeterLogger(north), "ready"):
            await eventually(lambda: bridge.counters.window_writes >= 3 * 3, timeout=30)
        stored = count(main.storage.path) + count(north.storage.path)
        await eventually(lambda: bridge.counters.readings >= stored, timeout=10)

        # a stranger publishes north's meter under the default site's root: refused
        forged = Reading("admin-old", epoch_ms(time.time()), 10**9, 0, 0, {})
        body = forged.payload("Admin", "G") | {"power_w": 0.0}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as stranger:
            await stranger.publish(f"{PREFIX}/admin-old/reading", json.dumps(body), qos=1)
        await eventually(lambda: bridge.counters.dead_letters["site"] == 1, timeout=10)

    topics = {t for t, _, _ in collector.messages}
    assert f"{PREFIX}/lib-main/reading" in topics  # the default site: topics as ever
    assert f"{NORTH}/admin-old/reading" in topics
    assert f"{PREFIX}/admin-old/reading" in topics  # only the forged one ...
    assert f"{NORTH}/logger/logger-north/status" in topics
    assert f"{PREFIX}/logger/logger-main/status" in topics
    assert not any(t.startswith(f"{NORTH}/lib-") for t in topics)
    logged = [p for p in collector.readings() if p["seq"] != forged.seq]
    sites = {p["meter_id"]: p["site"] for p in logged}
    assert sites == {"lib-main": "main", "lib-f1": "main", "admin-old": "north"}

    # each logger polled its own site's meters only
    assert count(main.storage.path, "admin-old") == 0 and count(main.storage.path, "lib-f1") > 0
    assert count(north.storage.path, "lib-main") == 0 and count(north.storage.path, "admin-old")
    docs = sqlite_docs(estate_config.bridge.sqlite.path)
    balance(main, [d for d in docs if d.meter_id.startswith("lib-")], rollups=False)
    balance(north, [d for d in docs if d.meter_id == "admin-old"], rollups=False)

    windows = estate_config.bridge.sqlite.path
    by_site = dict(
        query(windows, "SELECT meter_id, group_concat(DISTINCT site) FROM window_aggregates "
              "GROUP BY meter_id")
    )  # fmt: skip
    assert by_site == {"lib-main": "main", "lib-f1": "main", "admin-old": "north"}
    latest = dict(query(windows, "SELECT meter_id, site FROM window_meters"))
    assert latest == by_site
    # Σ per site: the windows of a site hold exactly its logger's energy
    for config, site in ((main, "main"), (north, "north")):
        held = query(
            windows, "SELECT sum(total_energy_wh) FROM window_aggregates WHERE site = ?", (site,)
        )[0][0]
        logged = query(config.storage.path, "SELECT sum(energy_wh) FROM readings")[0][0]
        assert held == pytest.approx(logged, abs=1e-6)


def test_a_store_from_before_sites_gains_the_column_and_keeps_its_windows(tmp_path: Path) -> None:
    """A window store written before sites: its rows read as the default site's ('')."""
    from campus_energy.backends.sqlite.source import SqliteSource

    path = tmp_path / "windows.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE window_meters (meter_id TEXT PRIMARY KEY, building TEXT NOT NULL, "
        "floor TEXT NOT NULL, last_window_ms INTEGER NOT NULL, last_avg_power_w REAL, "
        "last_coverage REAL NOT NULL, updated_ms INTEGER NOT NULL);"
        "INSERT INTO window_meters VALUES ('m1', 'Library', 'G', 0, 1.0, 1.0, 0);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    conn.commit()
    conn.close()
    source = SqliteSource(path)
    try:
        [meter] = source.meters()
    finally:
        source.close()
    assert (meter.meter_id, meter.building, meter.site) == ("m1", "Library", "")
