"""What Home Assistant accepts of a discovered sensor, and rendering its templates.

`HA_RULES` is Home Assistant's own table (homeassistant/components/sensor/const.py,
DEVICE_CLASS_UNITS and DEVICE_CLASS_STATE_CLASSES) for the device classes a meter
offers: the units each accepts (None: no unit; microvolts and calories left out) and
the state classes that make sense.
"""

from __future__ import annotations

from typing import Any

import jinja2

from campus_energy.logger.homeassistant import SENSORS

HA_RULES: dict[str, tuple[set[str | None], set[str]]] = {
    "power": ({"W", "kW", "MW", "GW", "TW"}, {"measurement"}),
    "voltage": ({"mV", "V", "kV", "MV"}, {"measurement"}),
    "current": ({"mA", "A"}, {"measurement"}),
    "frequency": ({"Hz", "kHz", "MHz", "GHz"}, {"measurement"}),
    "power_factor": ({None, "%"}, {"measurement"}),
    "energy": (
        {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh"},
        {"total", "total_increasing"},
    ),
}


def field_of(sensor: dict[str, Any]) -> str:
    """The reading field a sensor's payload shows (from its value template)."""
    return str(sensor["value_template"]).strip("{} ").removeprefix("value_json.")


def assert_follows_ha_rules(sensor: dict[str, Any], where: str) -> None:
    """The sensor is one HA accepts, and it says what our table (SENSORS) says of its field."""
    units, state_classes = HA_RULES[sensor["device_class"]]
    assert sensor.get("unit_of_measurement") in units, where
    assert sensor["state_class"] in state_classes, where
    kind = SENSORS[field_of(sensor)]
    shown = (sensor["device_class"], sensor.get("unit_of_measurement"), sensor["state_class"])
    assert shown == (kind.device_class, kind.unit, kind.state_class), where


def render(template: str, document: dict[str, Any]) -> str:
    """A value template rendered as HA would, on a JSON document (undefined names fail)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template).render(value_json=document)
