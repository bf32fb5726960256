"""Home Assistant discovery payloads: what a meter offers, HA's unit rules, templates, removal."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.support.homeassistant import assert_follows_ha_rules, render

from campus_energy.config import Config, parse_config
from campus_energy.core.readings import Reading
from campus_energy.errors import ConfigError
from campus_energy.logger.homeassistant import (
    EXPORTED_ENERGY,
    INTEGRATED_ENERGY,
    SENSORS,
    discovery_configs,
    logger_config,
    meter_fields,
    stale_config_topics,
)

BUS = {"name": "plant", "transport": "tcp", "host": "127.0.0.1"}

TOPIC_LEVEL = re.compile(r"^[a-zA-Z0-9_-]+$")


def campus(meters: list[dict[str, Any]], **mqtt: Any) -> Config:
    return parse_config(
        {
            "logger": {"id": "switch-room-a"},
            "mqtt": mqtt,
            "buses": [BUS],
            "meters": [{"bus": "plant", **m} for m in meters],
        }
    )


SDM630 = {"id": "lib-main", "unit": 1, "profile": "eastron-sdm630", "building": "Library"}
SDM120 = {"id": "lib-f1", "unit": 2, "profile": "eastron-sdm120", "building": "Library"}
LEGACY = {"id": "admin-old", "unit": 3, "profile": "campus-legacy", "interval_s": 60}


def sensors(config: Config) -> dict[str, dict[str, Any]]:
    return {t: p for t, p in discovery_configs(config, "9.9") if "/sensor/" in t}


def test_each_meter_offers_exactly_what_its_profile_reads_plus_the_integrated_energy() -> None:
    config = campus([SDM630, SDM120, LEGACY])
    for meter in config.meters:
        read = {f.name for f in config.profile_of(meter).fields}
        assert set(meter_fields(config, meter)) == (read & set(SENSORS)) | {
            INTEGRATED_ENERGY,
            EXPORTED_ENERGY,
        }
    by_id = {m.id: set(meter_fields(config, m)) for m in config.meters}
    assert {"power_l1_w", "voltage_l3_v", "current_l2_a", "power_factor_l1"} <= by_id["lib-main"]
    assert by_id["admin-old"] == {
        "power_w",
        "voltage_v",
        "current_a",
        "power_factor",
        "frequency_hz",
        "energy_total_wh",
        "energy_export_total_wh",
    }


def test_every_sensor_follows_home_assistants_rules() -> None:
    config = campus([SDM630, SDM120, LEGACY])
    found = sensors(config)
    assert len(found) == sum(len(meter_fields(config, m)) for m in config.meters)
    for topic, payload in found.items():
        assert_follows_ha_rules(payload, topic)
        assert payload["availability_mode"] == "all"
        assert isinstance(payload["expire_after"], int) and payload["expire_after"] >= 60
        assert payload["origin"] == {"name": "campus-energy", "sw_version": "9.9"}
        assert payload["device"]["via_device"] == "campus_energy_logger_switch-room-a"
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, component, last) == ("homeassistant", "sensor", "config")
        assert TOPIC_LEVEL.match(node) and TOPIC_LEVEL.match(object_id)
        json.dumps(payload, allow_nan=False)
    energy = found["homeassistant/sensor/campus_energy_switch-room-a/lib-f1_energy_total_wh/config"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "Wh",
    )
    power = found["homeassistant/sensor/campus_energy_switch-room-a/lib-f1_power_w/config"]
    assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == (
        "power",
        "measurement",
        "W",
    )
    pf = found["homeassistant/sensor/campus_energy_switch-room-a/lib-f1_power_factor/config"]
    assert "unit_of_measurement" not in pf


def test_devices_carry_the_profile_and_the_building() -> None:
    config = campus([SDM630, LEGACY])
    found = sensors(config)
    main = found["homeassistant/sensor/campus_energy_switch-room-a/lib-main_power_w/config"]
    assert main["device"] == {
        "identifiers": ["campus_energy_meter_lib-main"],
        "name": "lib-main",
        "manufacturer": "Eastron",
        "model": "Eastron SDM630-Modbus three-phase meter",
        "suggested_area": "Library",
        "via_device": "campus_energy_logger_switch-room-a",
    }
    old = found["homeassistant/sensor/campus_energy_switch-room-a/admin-old_power_w/config"]
    assert "manufacturer" not in old["device"] and "suggested_area" not in old["device"]
    assert old["expire_after"] == 600  # ten 60 s intervals


def test_unique_ids_are_unique_and_do_not_depend_on_order_version_or_logger() -> None:
    one = campus([SDM630, SDM120, LEGACY])
    ids = [p["unique_id"] for _, p in discovery_configs(one, "1.0")]
    assert len(ids) == len(set(ids))
    reordered = campus([LEGACY, SDM120, SDM630])
    again = {p["unique_id"] for t, p in discovery_configs(reordered, "2.0") if "/sensor/" in t}
    assert again == {i for i in ids if not i.startswith("campus_energy_logger_")}
    moved = parse_config(
        {
            "logger": {"id": "other"},
            "buses": [BUS],
            "meters": [{"bus": "plant", **SDM120}],
        }
    )
    assert {p["unique_id"] for t, p in discovery_configs(moved, "1.0") if "/sensor/" in t} <= set(
        ids
    )


def test_value_templates_read_the_published_payload() -> None:
    config = campus([SDM630])
    meter = config.meters[0]
    values = {f.name: 1.5 + i for i, f in enumerate(config.profile_of(meter).fields)}
    values["frequency_hz"] = 49.98
    reading = Reading("lib-main", 1_764_230_400_000, 7, 41_000, 123_456_789_012, values)
    payload = reading.payload(meter.building, meter.floor)
    for _, config_payload in sensors(config).items():
        field = config_payload["value_template"].strip("{} ").removeprefix("value_json.")
        rendered = render(config_payload["value_template"], payload)
        assert float(rendered) == payload[field], field
    energy = render("{{ value_json.energy_total_wh }}", payload)
    assert float(energy) == 123_456.789012


def test_a_null_value_renders_as_none_which_home_assistant_shows_as_unknown() -> None:
    config = campus([SDM120])
    payload = Reading("lib-f1", 1, 1, 0, 0, {"power_w": 5.0}).payload("", "")
    assert payload["voltage_v"] is None
    voltage = sensors(config)[
        "homeassistant/sensor/campus_energy_switch-room-a/lib-f1_voltage_v/config"
    ]
    assert render(voltage["value_template"], payload) == "None"


@pytest.mark.parametrize(
    ("meter_state", "logger_state", "expected"),
    [
        ("online", "online", ("online", "online")),
        ("error", "online", ("online", "online")),  # the last value stays, until it expires
        ("offline", "online", ("offline", "online")),
        ("online", "offline", ("online", "offline")),
    ],
)
def test_availability_follows_the_meter_and_the_logger(
    meter_state: str, logger_state: str, expected: tuple[str, str]
) -> None:
    config = campus([SDM120])
    payload = next(iter(sensors(config).values()))
    meter_rule, logger_rule = payload["availability"]
    assert meter_rule["topic"] == "campus/energy/lib-f1/status"
    assert logger_rule["topic"] == "campus/energy/logger/switch-room-a/status"
    rendered = (
        render(meter_rule["value_template"], {"state": meter_state, "ts": "", "detail": ""}),
        render(logger_rule["value_template"], {"state": logger_state, "ts": "", "detail": ""}),
    )
    assert rendered == expected
    for rule in (meter_rule, logger_rule):
        assert (rule["payload_available"], rule["payload_not_available"]) == ("online", "offline")


def test_the_logger_is_a_device_with_a_connectivity_sensor() -> None:
    config = campus([SDM120])
    topic, payload = discovery_configs(config, "1.0")[0]
    assert topic == "homeassistant/binary_sensor/campus_energy_switch-room-a/logger/config"
    assert payload == logger_config(config, "1.0")
    assert payload["device"]["identifiers"] == ["campus_energy_logger_switch-room-a"]
    assert payload["state_topic"] == "campus/energy/logger/switch-room-a/status"
    assert render(payload["value_template"], {"state": "offline"}) == payload["payload_off"]
    assert render(payload["value_template"], {"state": "online"}) == payload["payload_on"]


def test_the_meters_own_energy_register_is_offered_but_disabled() -> None:
    payload = sensors(campus([SDM120]))[
        "homeassistant/sensor/campus_energy_switch-room-a/lib-f1_import_energy_wh/config"
    ]
    assert payload["enabled_by_default"] is False
    assert payload["entity_category"] == "diagnostic"
    assert payload["state_class"] == "total_increasing"


def test_custom_prefixes_are_used_everywhere() -> None:
    config = campus([SDM120], topic_prefix="site/a", homeassistant_prefix="ha")
    for topic, payload in discovery_configs(config, "1.0"):
        assert topic.startswith("ha/")
        assert payload["state_topic"].startswith("site/a/")


@pytest.mark.parametrize("prefix", ["", "homeassistant/", "/ha", "ha/#", "ha/+/x"])
def test_a_malformed_discovery_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        campus([SDM120], homeassistant_prefix=prefix)
    assert caught.value.problems[0][0] == "mqtt.homeassistant_prefix"


def test_stale_topics_cover_removed_meters_and_dropped_fields_never_current_ones() -> None:
    before = campus([SDM630, SDM120])
    after = campus([{**SDM630, "profile": "eastron-sdm72d"}])
    stale = set(stale_config_topics(after, ["lib-main", "lib-f1"]))
    current = {t for t, _ in discovery_configs(after, "1.0")}
    assert not stale & current
    previously = {t for t, _ in discovery_configs(before, "1.0")}
    assert previously - current <= stale  # everything no longer described is cleared
    assert "homeassistant/sensor/campus_energy_switch-room-a/lib-f1_power_w/config" in stale
    assert "homeassistant/sensor/campus_energy_switch-room-a/lib-main_power_l1_w/config" in stale
    # configured meters are always candidates: knowing them from the store changes nothing
    assert stale_config_topics(before, ["lib-main", "lib-f1"]) == stale_config_topics(before, [])
