"""The test campus: three meters of three models on one Modbus TCP bus, read every 0.5 s.

`campus` gives the logger's configuration and the simulator's (the same but for
the far end of an RS-485 cable); `bridged_campus` adds a bridge writing 2 s
windows to a sink; `balance` checks the books the bridge wrote against the
logger's store. `two_meters` is a smaller campus as data, for a configuration file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.config import config_data, make_config, meter_at, tcp_bus
from tests.support.readback import query
from tests.support.serial import SocatPair
from tests.support.sinks import Doc, rollup_totals

from campus_energy.config import Config

INTERVAL = 0.5
WINDOW_S = 2
METERS = ("lib-main", "lib-f1", "admin-old")


def _data(
    folder: Path, broker_port: int, rtu: SocatPair | None, meter_extra: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    buses: list[dict[str, Any]] = [tcp_bus(timeout_s=0.15, retries=0)]
    meters = [
        meter_at("lib-main", "plant", 1, "eastron-sdm630", building="Library", floor="G"),
        meter_at("lib-f1", "plant", 2, "eastron-sdm120", building="Library", floor="1"),
        meter_at("admin-old", "plant", 3, "campus-legacy", building="Admin", floor="G"),
    ]
    if rtu is not None:
        buses.append(
            {"name": "rs485", "transport": "rtu", "device": rtu.client_end, "timeout_s": 0.2}
        )
        meters.append(meter_at("ece-f2", "rs485", 5, "eastron-sdm230", building="ECE", floor="2"))
    for m in meters:
        m.update({"interval_s": INTERVAL, **meter_extra.get(m["id"], {})})
    sections: dict[str, Any] = {
        "storage": {"path": str(folder / "store.db")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_prefix": "campus/energy"},
        "logger": {"id": "test-logger"},
    }
    return buses, meters, sections


def campus(
    folder: Path, broker_port: int, *, rtu: SocatPair | None = None, **meter_extra: Any
) -> tuple[Config, Config]:
    """(logger config, simulator config): the same meters; RTU on opposite ends of the pty pair.

    `meter_extra` maps a meter id to keys added to (or replacing) its table.
    """
    buses, meters, sections = _data(folder, broker_port, rtu, meter_extra)
    logger = make_config(buses, meters, **sections)
    server_buses = [
        dict(b, device=rtu.server_end) if b["transport"] == "rtu" and rtu else b for b in buses
    ]
    return logger, make_config(server_buses, meters, **sections)


def bridged_campus(folder: Path, broker_port: int, sink: dict[str, Any], **bridge: Any) -> Config:
    """The campus with a bridge writing `WINDOW_S` windows to `sink` (`bridge` adds keys)."""
    buses, meters, sections = _data(folder, broker_port, None, {})
    settings = {
        "window_s": WINDOW_S,
        "grace_s": 0.5,
        "spool_path": str(folder / "spool.db"),
        "client_id": "bridge-a",
        **sink,
        **bridge,
    }
    return make_config(buses, meters, **sections, bridge=settings)


def two_meters(folder: Path, broker_port: int, bus_port: int) -> dict[str, Any]:
    """Logger "proc" reading two meters (unit 1, 2) every 0.5 s on one TCP bus, as data."""
    return config_data(
        [tcp_bus(port=bus_port, timeout_s=0.2)],
        [
            meter_at("m1", "plant", 1, "eastron-sdm120", interval_s=0.5),
            meter_at("m2", "plant", 2, "eastron-sdm630", interval_s=0.5),
        ],
        site={"timezone": "UTC"},
        storage={"path": str(folder / "store.db")},
        mqtt={"port": broker_port},
        logger={"id": "proc"},
    )


def balance(config: Config, docs: list[Doc], rollups: bool = True) -> None:
    """The books: the windows hold exactly the logger's energy and readings, once each,
    and the sink's hourly and daily rollups hold exactly the windows."""
    db = config.storage.path
    window_ms = round(config.bridge.window_s * 1000)
    sums = rollup_totals(config) if rollups else None
    assert len({d.id for d in docs}) == len(docs), "a document was written twice"
    assert len({(d.meter_id, d.window_start_ms) for d in docs}) == len(docs)
    for meter in config.meters:
        mine = [d for d in docs if d.meter_id == meter.id]
        stored = query(
            db, "SELECT sum(energy_wh), count(*) FROM readings WHERE meter_id = ?", (meter.id,)
        )[0]
        assert stored[1] > 0
        assert sum(d.total_energy_wh for d in mine) == pytest.approx(stored[0], abs=1e-6)
        assert sum(d.readings_in_batch for d in mine) == stored[1]
        assert all(d.window_start_ms % window_ms == 0 for d in mine)
        assert all(0 <= d.coverage <= 1 for d in mine)
        if sums is not None:
            daily, hourly, readings, windows = sums[meter.id]
            assert daily == pytest.approx(stored[0], abs=1e-6)
            assert hourly == pytest.approx(stored[0], abs=1e-6)
            assert (readings, windows) == (stored[1], len(mine))
    if sums is not None:
        everything = query(db, "SELECT sum(energy_wh) FROM readings")[0][0]
        assert sums[""][0] == pytest.approx(everything, abs=1e-6)  # the campus rollup
