"""Home Assistant MQTT discovery: the retained config messages that make meters appear in HA.

Pure: builds `(topic, payload)` pairs from the configuration; the publisher sends
them, retained, each time it connects (`mqtt.homeassistant_discovery = true`).

- Each meter is a device (`campus_energy_meter_<meter_id>`) with one sensor per
  value its profile provides (table `SENSORS`), plus the cumulative integrated
  energy in both directions: imported (`energy_total_wh`) and exported
  (`energy_export_total_wh`; every meter has it, one that never exports shows
  0). Every sensor reads the meter's reading topic with a `value_template` on
  the JSON payload; a null value becomes HA's "unknown".
- The logger is a device (`campus_energy_logger_<logger_id>`) with one
  connectivity binary sensor on its status topic (online, or offline by its
  last will); the meters name it as `via_device`.
- A sensor is available while the logger is online and its meter's status is
  not "offline" (on "error" — an answer that was not a reading, or a refused
  reading — the last value stays), and its value expires when no reading
  arrives for ten intervals (at least a minute), however the meter fails.

Topics are `<ha_prefix>/<component>/campus_energy_<logger_id>/<object_id>/config`:
the node level names the logger, so one logger only ever clears its own configs.
Unique ids name the meter and the field, never the logger, and never change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from campus_energy.config import Config, MeterConfig
from campus_energy.core.topics import logger_status_topic, meter_status_topic, reading_topic

ORIGIN_NAME = "campus-energy"
INTEGRATED_ENERGY = "energy_total_wh"
EXPORTED_ENERGY = "energy_export_total_wh"
INTEGRATED = frozenset({INTEGRATED_ENERGY, EXPORTED_ENERGY})  # every meter's, whatever its profile
EXPIRE_INTERVALS = 10
EXPIRE_MIN_S = 60
MEASUREMENT = "measurement"
TOTAL_INCREASING = "total_increasing"

Message = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class SensorKind:
    """How Home Assistant should show one field of the reading payload."""

    name: str  # the entity's name; HA shows it after the device's name
    device_class: str
    unit: str | None  # None: dimensionless (HA's power_factor accepts no unit)
    state_class: str
    precision: int  # suggested_display_precision
    enabled: bool = True
    diagnostic: bool = False


def _sensor_table() -> dict[str, SensorKind]:
    table = {
        "power_w": SensorKind("Power", "power", "W", MEASUREMENT, 0),
        "voltage_v": SensorKind("Voltage", "voltage", "V", MEASUREMENT, 1),
        "current_a": SensorKind("Current", "current", "A", MEASUREMENT, 2),
        "power_factor": SensorKind("Power factor", "power_factor", None, MEASUREMENT, 2),
        "frequency_hz": SensorKind("Frequency", "frequency", "Hz", MEASUREMENT, 2),
    }
    # Per-phase fields put _l1/_l2/_l3 before the unit suffix (the profile naming rule).
    for stem, suffix in (
        ("power", "_w"),
        ("voltage", "_v"),
        ("current", "_a"),
        ("power_factor", ""),
    ):
        base = table[stem + suffix]
        for phase in (1, 2, 3):
            table[f"{stem}_l{phase}{suffix}"] = replace(base, name=f"{base.name} L{phase}")
    table[INTEGRATED_ENERGY] = SensorKind("Energy", "energy", "Wh", TOTAL_INCREASING, 0)
    table[EXPORTED_ENERGY] = SensorKind("Export energy", "energy", "Wh", TOTAL_INCREASING, 0)
    # The meter's own registers, kept for comparison: off unless the user enables them.
    for field, name in (("import_energy_wh", "Import"), ("export_energy_wh", "Export")):
        table[field] = SensorKind(
            f"{name} energy (meter register)",
            "energy",
            "Wh",
            TOTAL_INCREASING,
            0,
            enabled=False,
            diagnostic=True,
        )
    return table


SENSORS: Mapping[str, SensorKind] = MappingProxyType(_sensor_table())


def node_id(logger_id: str) -> str:
    return f"campus_energy_{logger_id}"


def meter_device_id(meter_id: str) -> str:
    return f"campus_energy_meter_{meter_id}"


def logger_device_id(logger_id: str) -> str:
    return f"campus_energy_logger_{logger_id}"


def sensor_unique_id(meter_id: str, field: str) -> str:
    return f"campus_energy_{meter_id}_{field}"


def config_topic(config: Config, component: str, object_id: str) -> str:
    prefix = config.mqtt.homeassistant_prefix
    return f"{prefix}/{component}/{node_id(config.logger.id)}/{object_id}/config"


def sensor_topic(config: Config, meter_id: str, field: str) -> str:
    return config_topic(config, "sensor", f"{meter_id}_{field}")


def logger_topic(config: Config) -> str:
    return config_topic(config, "binary_sensor", "logger")


def meter_fields(config: Config, meter: MeterConfig) -> list[str]:
    """The discoverable fields of a meter: what its profile reads, and the integrated energy
    in both directions."""
    provided = {f.name for f in config.profile_of(meter).fields} | INTEGRATED
    return [name for name in SENSORS if name in provided]


def expire_after_s(meter: MeterConfig) -> int:
    return max(EXPIRE_MIN_S, math.ceil(EXPIRE_INTERVALS * meter.interval_s))


def _origin(sw_version: str) -> dict[str, str]:
    return {"name": ORIGIN_NAME, "sw_version": sw_version}


def _availability(config: Config, meter: MeterConfig) -> list[dict[str, str]]:
    root = config.topic_root(config.site_of(meter))
    return [
        {
            "topic": meter_status_topic(root, meter.id),
            "value_template": "{{ 'offline' if value_json.state == 'offline' else 'online' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
        {
            "topic": logger_status_topic(config.logger_site_root(), config.logger.id),
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
    ]


def _meter_device(config: Config, meter: MeterConfig) -> dict[str, Any]:
    profile = config.profile_of(meter)
    device: dict[str, Any] = {
        "identifiers": [meter_device_id(meter.id)],
        "name": meter.id,
        "model": profile.description or profile.name,
        "via_device": logger_device_id(config.logger.id),
    }
    if profile.manufacturer:
        device["manufacturer"] = profile.manufacturer
    if meter.building:
        device["suggested_area"] = meter.building
    return device


def sensor_config(
    config: Config, meter: MeterConfig, field: str, sw_version: str
) -> dict[str, Any]:
    """The discovery payload of one field of one meter."""
    kind = SENSORS[field]
    payload: dict[str, Any] = {
        "name": kind.name,
        "unique_id": sensor_unique_id(meter.id, field),
        "state_topic": reading_topic(config.topic_root(config.site_of(meter)), meter.id),
        "value_template": f"{{{{ value_json.{field} }}}}",
        "qos": 1,
        "device_class": kind.device_class,
        "state_class": kind.state_class,
        "suggested_display_precision": kind.precision,
        "expire_after": expire_after_s(meter),
        "availability": _availability(config, meter),
        "availability_mode": "all",
        "device": _meter_device(config, meter),
        "origin": _origin(sw_version),
    }
    if kind.unit is not None:
        payload["unit_of_measurement"] = kind.unit
    if not kind.enabled:
        payload["enabled_by_default"] = False
    if kind.diagnostic:
        payload["entity_category"] = "diagnostic"
    return payload


def logger_config(config: Config, sw_version: str) -> dict[str, Any]:
    """The discovery payload of the logger's connectivity binary sensor."""
    logger_id = config.logger.id
    return {
        "name": "Connectivity",
        "unique_id": f"{logger_device_id(logger_id)}_connectivity",
        "state_topic": logger_status_topic(config.logger_site_root(), logger_id),
        "value_template": "{{ value_json.state }}",
        "payload_on": "online",
        "payload_off": "offline",
        "qos": 1,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": {
            "identifiers": [logger_device_id(logger_id)],
            "name": f"Campus Energy logger {logger_id}",
            "manufacturer": "Campus Energy",
            "model": "logger",
            "sw_version": sw_version,
        },
        "origin": _origin(sw_version),
    }


def discovery_configs(config: Config, sw_version: str) -> list[Message]:
    """Every retained discovery message of this logger: its own device first, then the meters."""
    messages: list[Message] = [(logger_topic(config), logger_config(config, sw_version))]
    for meter in config.meters:
        for field in meter_fields(config, meter):
            messages.append(
                (
                    sensor_topic(config, meter.id, field),
                    sensor_config(config, meter, field, sw_version),
                )
            )
    return messages


def stale_config_topics(config: Config, known_meter_ids: Iterable[str]) -> list[str]:
    """Discovery topics this logger may have published before and publishes no more.

    Every sensor topic of a meter the store knows but the configuration no longer
    has, and of a configured meter the fields its (possibly changed) profile no
    longer provides. An empty retained payload on each removes the entity from HA.
    """
    current = {
        sensor_topic(config, meter.id, field)
        for meter in config.meters
        for field in meter_fields(config, meter)
    }
    meter_ids = sorted(set(known_meter_ids) | {m.id for m in config.meters})
    candidates = (sensor_topic(config, m, field) for m in meter_ids for field in SENSORS)
    return [topic for topic in candidates if topic not in current]
