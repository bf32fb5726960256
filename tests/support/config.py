"""One way to build a configuration: as data, validated, or written as a TOML file.

data = config_data([tcp_bus()], [meter_at("lib-main", "plant", 1, "eastron-sdm630")],
                   storage={"path": str(tmp_path / "store.db")})
config = parse_config(data)            # or make_config(buses, meters, **sections)
path = write_toml(tmp_path / "campus-energy.toml", data)   # for a command
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.net import free_port

from campus_energy.config import Config, parse_config

SITE_ZONE = "Asia/Kolkata"


def tcp_bus(name: str = "plant", **extra: Any) -> dict[str, Any]:
    """A Modbus TCP bus on 127.0.0.1 and a free port (`extra` adds or overrides keys)."""
    return {"name": name, "transport": "tcp", "host": "127.0.0.1", "port": free_port(), **extra}


def meter_at(meter_id: str, bus: str, unit: int, profile: str, **extra: Any) -> dict[str, Any]:
    return {"id": meter_id, "bus": bus, "unit": unit, "profile": profile, **extra}


def campus_meters(meters: Mapping[str, Sequence[Any]], **extra: Any) -> list[dict[str, Any]]:
    """The `meters` section of a campus on bus "b": an Eastron SDM120 per id, units from 1.
    Each value is (building, floor[, role, parent, …]); a role or parent of None is left out.
    `extra`: keys every meter gets."""
    found = []
    for unit, (meter, (building, floor, *more)) in enumerate(meters.items(), start=1):
        role, parent = (*more, None, None)[:2]
        found.append(
            {
                "id": meter,
                "bus": "b",
                "unit": unit,
                "profile": "eastron-sdm120",
                "building": building,
                "floor": floor,
                **extra,
                **({"role": role} if role else {}),
                **({"parent": parent} if parent else {}),
            }
        )
    return found


def config_data(
    buses: list[dict[str, Any]], meters: list[dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    """A configuration as data: the site in Asia/Kolkata unless `site` says otherwise."""
    return {"site": {"timezone": SITE_ZONE}, "buses": buses, "meters": meters, **sections}


def make_config(
    buses: list[dict[str, Any]], meters: list[dict[str, Any]], **sections: Any
) -> Config:
    return parse_config(config_data(buses, meters, **sections))


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """`data` written as a TOML file at `path`; returns `path`."""
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def toml_text(data: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML document for nested mappings, lists of mappings (arrays of tables) and scalars."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            tables.append((name, value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            arrays.append((name, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]", toml_text(table, name)]
    for name, items in arrays:
        for item in items:
            lines += ["", f"[[{name}]]", toml_text(item, name)]
    return "\n".join(lines).strip() + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")
