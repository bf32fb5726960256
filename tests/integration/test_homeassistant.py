"""Home Assistant discovery through a real Mosquitto: read back as a fresh client, validated."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.config import make_config, tcp_bus
from tests.support.homeassistant import assert_follows_ha_rules, field_of, render
from tests.support.mqtt import Collector, retained_messages
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy import __version__
from campus_energy.config import Config
from campus_energy.core.readings import Reading
from campus_energy.logger.homeassistant import EXPORTED_ENERGY, INTEGRATED_ENERGY, SENSORS
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.service import MeterLogger
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore
from campus_energy.meters.simulator.server import Simulator

INTERVAL = 0.5
SENTINEL = "homeassistant/zz-test/end"
SENSOR_KEYS = {
    "name",
    "unique_id",
    "state_topic",
    "value_template",
    "device_class",
    "state_class",
    "availability",
    "availability_mode",
    "expire_after",
    "device",
    "origin",
}
METERS: list[dict[str, Any]] = [
    {"id": "lib-main", "unit": 1, "profile": "eastron-sdm630", "building": "Library"},
    {"id": "lib-f1", "unit": 2, "profile": "eastron-sdm120", "building": "Library", "floor": "1"},
    {"id": "admin-old", "unit": 3, "profile": "campus-legacy", "building": "Admin"},
]


def campus(tmp_path: Path, broker_port: int, meters: list[dict[str, Any]], **mqtt: Any) -> Config:
    return make_config(
        [tcp_bus(timeout_s=0.15, retries=0)],
        [{"bus": "plant", "interval_s": INTERVAL, **m} for m in meters],
        storage={"path": str(tmp_path / "store.db")},
        mqtt={"host": "127.0.0.1", "port": broker_port, **mqtt},
        logger={"id": "test-logger"},
    )


async def discovery(port: int) -> dict[str, dict[str, Any]]:
    found = await retained_messages(port, "homeassistant/#", SENTINEL)
    return {topic: json.loads(payload) for topic, payload in found.items()}


@contextlib.asynccontextmanager
async def publishing(config: Config, store: ReadingStore) -> AsyncIterator[Publisher]:
    publisher = Publisher(config, store, StatusBoard())
    async with serving(publisher, "drained", ready_timeout=20, stop_timeout=10):
        yield publisher


async def test_home_assistant_discovers_every_meter_the_running_logger_publishes(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = campus(tmp_path, mosquitto.port, METERS, homeassistant_discovery=True)
    ids = {m.id for m in config.meters}
    async with Simulator(config), Collector(mosquitto.port) as collector:
        async with serving(MeterLogger(config), "ready"):
            await eventually(lambda: {p["meter_id"] for p in collector.readings()} >= ids)
        await eventually(lambda: "offline" in collector.statuses("logger/test-logger/status"))
    configs = await discovery(mosquitto.port)

    # what the logger really published: reading topics and payloads, status documents
    reading_topics: dict[str, str] = {}
    last_reading: dict[str, dict[str, Any]] = {}
    status: dict[str, dict[str, Any]] = {}
    for topic, payload, _ in collector.messages:
        if topic.endswith("/reading"):
            reading_topics[payload["meter_id"]] = topic
            last_reading[payload["meter_id"]] = payload
        elif topic.endswith("/status"):
            status[topic] = payload

    logger_topic = "homeassistant/binary_sensor/campus_energy_test-logger/logger/config"
    logger_entity = configs.pop(logger_topic)
    assert logger_entity["state_topic"] in status
    assert (
        render(logger_entity["value_template"], status[logger_entity["state_topic"]])
        == (
            logger_entity["payload_off"]  # the logger has stopped
        )
    )
    logger_device = logger_entity["device"]["identifiers"][0]

    unique_ids = [logger_entity["unique_id"]]
    by_meter: dict[str, set[str]] = {}
    for topic, entity in configs.items():
        assert topic.startswith("homeassistant/sensor/campus_energy_test-logger/")
        assert set(entity) >= SENSOR_KEYS, topic
        assert_follows_ha_rules(entity, topic)
        assert entity["origin"] == {"name": "campus-energy", "sw_version": __version__}
        assert entity["device"]["via_device"] == logger_device
        unique_ids.append(entity["unique_id"])

        meter_id = entity["device"]["name"]
        meter = config.meter(meter_id)
        assert entity["device"]["suggested_area"] == meter.building
        assert entity["state_topic"] == reading_topics[meter_id]
        reading = last_reading[meter_id]
        field = field_of(entity)
        by_meter.setdefault(meter_id, set()).add(field)
        rendered = render(entity["value_template"], reading)
        assert rendered != "None", (meter_id, field)
        assert float(rendered) == reading[field], (meter_id, field)

        assert entity["availability_mode"] == "all"
        meter_rule, logger_rule = entity["availability"]
        assert (
            render(meter_rule["value_template"], status[meter_rule["topic"]])
            == (
                meter_rule["payload_available"]  # the meter answered every poll
            )
        )
        assert (
            render(logger_rule["value_template"], status[logger_rule["topic"]])
            == (
                logger_rule["payload_not_available"]  # the logger has stopped
            )
        )
    assert len(unique_ids) == len(set(unique_ids))
    for meter in config.meters:
        read = {f.name for f in config.profile_of(meter).fields}
        assert by_meter[meter.id] == (read & set(SENSORS)) | {INTEGRATED_ENERGY, EXPORTED_ENERGY}
    assert {"power_l1_w", "voltage_l2_v"} <= by_meter["lib-main"]
    energy = configs["homeassistant/sensor/campus_energy_test-logger/lib-f1_energy_total_wh/config"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "Wh",
    )


async def test_without_discovery_nothing_is_published_for_home_assistant(
    tmp_path: Path, mosquitto: Any
) -> None:
    config = campus(tmp_path, mosquitto.port, METERS[:1])
    assert config.mqtt.homeassistant_discovery is False
    store = ReadingStore(config.storage.path)
    await store.register([MeterRecord("lib-main"), MeterRecord("gone")])
    try:
        async with Collector(mosquitto.port, "#", "everything") as collector:
            async with publishing(config, store):
                pass
            await eventually(lambda: "offline" in collector.statuses("test-logger/status"))
    finally:
        await store.close()
    # the publisher's messages reach a subscriber in order: discovery would have come first
    assert not [t for t, _, _ in collector.messages if t.startswith("homeassistant/")]
    assert await discovery(mosquitto.port) == {}


async def test_configs_are_republished_on_reconnect_and_removed_meters_cleared(
    tmp_path: Path, mosquitto: Any
) -> None:
    store = ReadingStore(tmp_path / "store.db")
    await store.register([MeterRecord(m["id"]) for m in METERS])
    try:
        everything = campus(tmp_path, mosquitto.port, METERS, homeassistant_discovery=True)
        async with publishing(everything, store):
            pass
        before = await discovery(mosquitto.port)
        assert any("/admin-old_" in t for t in before)

        # admin-old is removed; lib-main's meter is replaced by one with fewer fields
        fewer = [{**METERS[0], "profile": "eastron-sdm72d"}, METERS[1]]
        config = campus(tmp_path, mosquitto.port, fewer, homeassistant_discovery=True)
        async with publishing(config, store) as publisher:
            after = await discovery(mosquitto.port)
            expected = set(after)
            assert not [t for t in after if "/admin-old_" in t or "/lib-main_power_l1" in t]
            assert set(before) - expected == {
                t for t in before if "/admin-old_" in t or "_l1" in t or "_l2" in t or "_l3" in t
            }

            # The broker comes back without its retained messages (it was reset); the
            # next reading finds the connection gone, and the reconnection republishes.
            mosquitto.stop()
            (mosquitto.folder / "mosquitto.db").unlink()
            mosquitto.start()
            reading = Reading("lib-f1", 1_764_230_400_000, 1, 0, 0, {"power_w": 100.0})
            await store.commit(Cycle(readings=[reading]))
            publisher.wake()

            async def republished() -> bool:
                return set(await discovery(mosquitto.port)) == expected

            await eventually(republished, timeout=30)
    finally:
        await store.close()
