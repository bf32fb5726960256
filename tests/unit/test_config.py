"""Configuration validation: messages that name the key, environment overrides, paths, files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from campus_energy.config import (
    BusConfig,
    Config,
    MeterConfig,
    SimulationConfig,
    load_config,
    parse_config,
)
from campus_energy.config.sample import sample_text
from campus_energy.errors import ConfigError

SAMPLE_TEXT = sample_text()

RTU_BUS: dict[str, Any] = {"name": "rs485-1", "transport": "rtu", "device": "/dev/ttyUSB0"}


def meter(**changes: Any) -> dict[str, Any]:
    return {"id": "m1", "bus": "rs485-1", "unit": 1, "profile": "eastron-sdm120"} | changes


def problems_of(
    data: dict[str, Any], environ: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ)
    return caught.value.problems


# --- valid configurations ---------------------------------------------------------------------


def test_the_sample_config_validates() -> None:
    config = parse_config(tomllib.loads(SAMPLE_TEXT), {}, Path("/etc/campus-energy"))
    assert config.site.timezone == "Asia/Kolkata"
    assert [b.name for b in config.buses] == ["rs485-1"]
    assert [m.id for m in config.meters] == ["ece-f1-001"]
    assert config.profile_of(config.meters[0]).name == "eastron-sdm120"


def test_an_empty_config_is_valid_and_has_the_defaults() -> None:
    config = parse_config({})
    assert config.buses == ()
    assert config.meters == ()
    assert config.mqtt.port == 1883
    assert config.site.timezone == "UTC"
    assert "eastron-sdm120" in config.profiles


# --- one message per kind of mistake ----------------------------------------------------------


def test_an_out_of_range_unit_is_named_by_its_list_index() -> None:
    meters = [meter(), meter(id="m2", unit=2), meter(id="m3", unit=0)]
    assert problems_of({"buses": [RTU_BUS], "meters": meters}) == [
        ('meters[2] (id "m3").unit', "must be between 1 and 247, got 0")
    ]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"colour": "blue"}, "colour"),
        ({"mqtt": {"hots": "broker"}}, "mqtt.hots"),
        ({"bridge": {"sqlite": {"file": "x.db"}}}, "bridge.sqlite.file"),
        ({"buses": [RTU_BUS], "meters": [meter(adress=3)]}, 'meters[0] (id "m1").adress'),
        (
            {"buses": [RTU_BUS], "meters": [meter(simulate={"sed": 1})]},
            'meters[0] (id "m1").simulate.sed',
        ),
    ],
)
def test_unknown_keys_are_errors_at_every_level(data: dict[str, Any], key: str) -> None:
    assert problems_of(data) == [(key, "unknown key")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"buses": [RTU_BUS], "meters": [meter(bus="plant")]},
            ('meters[0] (id "m1").bus', 'unknown bus "plant" (buses: rs485-1)'),
        ),
        (
            {"meters": [meter()]},
            ('meters[0] (id "m1").bus', 'unknown bus "rs485-1" (buses: none configured)'),
        ),
        (
            {"buses": [RTU_BUS], "meters": [meter(profile="sdm-9000")]},
            (
                'meters[0] (id "m1").profile',
                'unknown profile "sdm-9000" (see: campus-energy profiles)',
            ),
        ),
        (
            {"buses": [RTU_BUS], "meters": [meter(), meter(unit=2)]},
            ("meters[1].id", 'duplicate meter id "m1"'),
        ),
        (
            {"buses": [RTU_BUS, RTU_BUS | {"device": "/dev/ttyUSB1"}]},
            ("buses[1].name", 'duplicate bus name "rs485-1"'),
        ),
        (
            {"buses": [RTU_BUS], "meters": [meter(), meter(id="m2")]},
            ('meters[1] (id "m2").unit', 'unit 1 is already used on "rs485-1"'),
        ),
    ],
    ids=["unknown-bus", "no-buses", "unknown-profile", "dup-id", "dup-bus", "dup-unit"],
)
def test_cross_references_are_checked(data: dict[str, Any], expected: tuple[str, str]) -> None:
    assert problems_of(data) == [expected]


def test_a_misspelled_profile_gets_a_suggestion_and_the_meter_is_named_by_id() -> None:
    meters = [meter(id=f"lib-f2-00{n}", unit=n) for n in (1, 2, 3)]
    meters.append(meter(id="lib-f2-004", unit=4, profile="eastorn-sdm120"))
    assert problems_of({"buses": [RTU_BUS], "meters": meters}) == [
        (
            'meters[3] (id "lib-f2-004").profile',
            'unknown profile "eastorn-sdm120" — did you mean "eastron-sdm120"?',
        )
    ]


def test_a_misspelled_bus_gets_a_suggestion() -> None:
    other = RTU_BUS | {"name": "rs485-2", "device": "/dev/ttyUSB1"}
    assert problems_of({"buses": [RTU_BUS, other], "meters": [meter(bus="rs458-2")]}) == [
        ('meters[0] (id "m1").bus', 'unknown bus "rs458-2" — did you mean "rs485-2"?')
    ]


def test_a_bus_problem_names_the_bus() -> None:
    other = {"name": "rs485-2", "transport": "rtu", "device": "/dev/ttyUSB1", "parity": "X"}
    assert problems_of({"buses": [RTU_BUS, other]}) == [
        ('buses[1] (name "rs485-2").parity', "must be one of 'N', 'E' or 'O', got 'X'")
    ]


def test_a_meter_without_a_usable_id_is_named_by_its_index_alone() -> None:
    assert problems_of({"buses": [RTU_BUS], "meters": [{"bus": "rs485-1", "unit": 0}]}) == [
        ("meters[0].id", "required key is missing"),
        ("meters[0].unit", "must be between 1 and 247, got 0"),
        ("meters[0].profile", "required key is missing"),
    ]


def test_the_same_unit_on_two_different_buses_is_fine() -> None:
    other = RTU_BUS | {"name": "rs485-2", "device": "/dev/ttyUSB1"}
    config = parse_config(
        {"buses": [RTU_BUS, other], "meters": [meter(), meter(id="m2", bus="rs485-2")]}
    )
    assert [(m.bus, m.unit) for m in config.meters] == [("rs485-1", 1), ("rs485-2", 1)]


@pytest.mark.parametrize(
    ("bus", "message"),
    [
        ({"transport": "rtu"}, "transport 'rtu' needs 'device' (e.g. '/dev/ttyUSB0')"),
        ({"transport": "tcp"}, "transport 'tcp' needs 'host'"),
        ({"transport": "rtu-tcp"}, "transport 'rtu-tcp' needs 'host'"),
        (
            {"transport": "tcp", "host": "10.0.0.5", "baudrate": 9600, "parity": "E"},
            "baudrate, parity not used with transport 'tcp'",
        ),
        (
            {"transport": "tcp", "host": "10.0.0.5", "stopbits": 2, "bytesize": 7},
            "stopbits, bytesize not used with transport 'tcp'",
        ),
        (
            {"transport": "rtu", "device": "/dev/ttyUSB0", "host": "10.0.0.5"},
            "host not used with transport 'rtu'",
        ),
        (
            {"transport": "rtu-tcp", "host": "10.0.0.5", "device": "/dev/ttyUSB0"},
            "device not used with transport 'rtu-tcp'",
        ),
    ],
)
def test_bus_keys_must_fit_the_transport(bus: dict[str, Any], message: str) -> None:
    assert problems_of({"buses": [{"name": "b1"} | bus]}) == [('buses[0] (name "b1")', message)]


def test_a_gateway_bus_takes_both_host_and_serial_settings() -> None:
    bus = {"name": "gw", "transport": "rtu-tcp", "host": "10.0.0.5", "baudrate": 19200}
    assert parse_config({"buses": [bus]}).bus("gw").baudrate == 19200


def test_a_bad_timezone_is_named() -> None:
    assert problems_of({"site": {"timezone": "Asia/Bangalore"}}) == [
        ("site.timezone", "unknown IANA time zone 'Asia/Bangalore' (e.g. 'Asia/Kolkata')")
    ]


@pytest.mark.parametrize("meter_id", ["ECE-1", "ece 1", "ece/1", "ece.1", ""])
def test_meter_ids_use_only_safe_characters(meter_id: str) -> None:
    assert problems_of({"buses": [RTU_BUS], "meters": [meter(id=meter_id)]}) == [
        ("meters[0].id", f"must use only a-z, 0-9, '-' and '_', got {meter_id!r}")
    ]


def test_several_problems_are_reported_together() -> None:
    data = {
        "site": {"timezone": "Nowhere/Town"},
        "mqtt": {"port": 0},
        "buses": [RTU_BUS],
        "meters": [meter(unit=300, colour="red")],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert [key for key, _ in caught.value.problems] == [
        "site.timezone",
        "mqtt.port",
        'meters[0] (id "m1").unit',
        'meters[0] (id "m1").colour',
    ]
    assert "mqtt.port: must be at least 1, got 0" in str(caught.value)


# --- environment overrides --------------------------------------------------------------------


def test_an_environment_variable_overrides_a_key_with_its_type() -> None:
    config = parse_config({"mqtt": {"port": 1883}}, {"CAMPUS_ENERGY__MQTT__PORT": "1884"})
    assert config.mqtt.port == 1884
    assert type(config.mqtt.port) is int


def test_an_environment_variable_reaches_nested_tables() -> None:
    config = parse_config({}, {"CAMPUS_ENERGY__BRIDGE__SQLITE__PATH": "/srv/windows.db"})
    assert config.bridge.sqlite.path == Path("/srv/windows.db")


def test_an_environment_variable_overrides_a_list_item_by_index() -> None:
    data = {"buses": [RTU_BUS], "meters": [meter(), meter(id="m2", unit=2)]}
    config = parse_config(data, {"CAMPUS_ENERGY__METERS__1__UNIT": "7"})
    assert [m.unit for m in config.meters] == [1, 7]
    config = parse_config(data, {"CAMPUS_ENERGY__METERS__0__UNIT": "9"})
    assert [m.unit for m in config.meters] == [9, 2]


def test_an_environment_override_does_not_change_the_callers_data() -> None:
    data = {"buses": [RTU_BUS], "meters": [meter()]}
    parse_config(data, {"CAMPUS_ENERGY__METERS__0__UNIT": "9"})
    assert data["meters"][0]["unit"] == 1


def test_a_bad_value_from_the_environment_names_the_key() -> None:
    assert problems_of({}, {"CAMPUS_ENERGY__MQTT__PORT": "mqtt"}) == [
        ("mqtt.port", "must be an integer, got 'mqtt'")
    ]


def test_an_out_of_range_list_index_names_the_variable() -> None:
    data = {"buses": [RTU_BUS], "meters": [meter()]}
    assert problems_of(data, {"CAMPUS_ENERGY__METERS__1__UNIT": "2"}) == [
        ("CAMPUS_ENERGY__METERS__1__UNIT", "no list item '1' to override")
    ]


def test_unrelated_environment_variables_are_ignored() -> None:
    environ = {
        "HOME": "/root",
        "CAMPUS_ENERGY_CONFIG": "elsewhere.toml",  # read by load_config only
        "CAMPUS_ENERGY_MQTT_PORT": "1",  # single underscores: not an override
        "OTHER__MQTT__PORT": "1",
    }
    assert parse_config({}, environ) == parse_config({})


# --- paths ------------------------------------------------------------------------------------


def test_relative_paths_in_a_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    file = tmp_path / "site.toml"
    file.write_text(
        'profiles_dir = "profiles"\n'
        '[storage]\npath = "var/meter.db"\n'
        '[bridge.sqlite]\npath = "../shared/windows.db"\n'
    )
    config = load_config(file)
    assert config.profiles_dir == tmp_path / "profiles"
    assert config.storage.path == tmp_path / "var" / "meter.db"
    assert config.bridge.sqlite.path == tmp_path / "../shared/windows.db"
    assert config.source == file.resolve()


def test_default_data_files_live_next_to_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "site.toml"
    file.write_text('[site]\nname = "x"\n')
    config = load_config(file)
    assert config.storage.path == tmp_path / "var" / "smart_meter.db"
    assert config.bridge.spool_path == tmp_path / "var" / "bridge-spool.db"
    assert config.bridge.sqlite.path == tmp_path / "var" / "windows.db"


def test_absolute_paths_in_a_file_are_kept(tmp_path: Path) -> None:
    file = tmp_path / "site.toml"
    file.write_text('[storage]\npath = "/srv/meter.db"\n[bridge.sqlite]\npath = "/srv/w.db"\n')
    config = load_config(file)
    assert config.storage.path == Path("/srv/meter.db")
    assert config.bridge.sqlite.path == Path("/srv/w.db")


# --- load_config ------------------------------------------------------------------------------


def test_an_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.problems == [("config", f"file not found: {tmp_path / 'absent.toml'}")]


@pytest.mark.parametrize("named", [True, False], ids=["named", "default"])
def test_a_folder_in_place_of_the_file_is_an_error_on_the_config_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "campus-energy.toml"
    folder.mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(folder if named else None)
    where = folder if named else Path("campus-energy.toml")
    assert caught.value.problems == [
        ("config", f"{where} is a folder: name the configuration file itself")
    ]


def test_a_missing_default_file_gives_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {"CAMPUS_ENERGY__API__PORT": "8080"})
    assert config.source is None
    assert config.api.port == 8080
    assert config.meters == ()


def test_the_default_file_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "campus-energy.toml").write_text('[site]\nname = "Here"\n')
    assert load_config().site.name == "Here"


def test_the_config_variable_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "named.toml"
    file.write_text('[site]\nname = "Named"\n')
    config = load_config(None, {"CAMPUS_ENERGY_CONFIG": str(file)})
    assert config.site.name == "Named"
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"CAMPUS_ENERGY_CONFIG": str(tmp_path / "absent.toml")})
    assert caught.value.problems[0][0] == "config"


def test_invalid_toml_is_an_error_on_the_config_key(tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text("[site\nname = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    [(key, message)] = caught.value.problems
    assert key == "config"
    assert message.startswith(f"{file} is not valid TOML")


# --- every setting is documented in the sample ------------------------------------------------

_HEADER = re.compile(r"^\s*#?\s*\[\[?\s*([a-z_.]+)\s*\]\]?")
_KEY = re.compile(r"^\s*#?\s*([a-z_][a-z0-9_]*)\s*=")


def documented_keys(text: str) -> dict[str, set[str]]:
    """Keys per table path ('' for the top level), counting commented-out lines."""
    found: dict[str, set[str]] = {"": set()}
    section = ""
    for line in text.splitlines():
        if header := _HEADER.match(line):
            section = header.group(1)
            found.setdefault(section, set())
        elif key := _KEY.match(line):
            found[section].add(key.group(1))
    return found


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a table (`X`) or of an array of tables (`tuple[X, ...]`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is tuple:
        return section_model(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):  # an optional table: `X | None`
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return section_model(inner[0]) if len(inner) == 1 else None
    return None


def settings_of(model: type[BaseModel], path: str = "") -> dict[str, type[BaseModel]]:
    """Table path -> model, for `model` and every table inside it."""
    found = {path: model}
    for name, info in model.model_fields.items():
        inner = section_model(info.annotation)
        if inner is not None:
            found |= settings_of(inner, f"{path}.{name}" if path else name)
    return found


def test_the_walk_sees_every_section_model() -> None:
    sections = settings_of(Config)
    assert sections["buses"] is BusConfig
    assert sections["meters"] is MeterConfig
    assert sections["meters.simulate"] is SimulationConfig
    assert {"site", "storage", "mqtt", "bridge.sqlite", "api", "dashboard"} <= set(sections)


def test_the_documentation_parser_sees_commented_keys() -> None:
    found = documented_keys("# top = 1\n[a]\nx = 1\n# [[a.b]]\n#  y = 2  # note\n# z is prose\n")
    assert found == {"": {"top"}, "a": {"x"}, "a.b": {"y"}}


@pytest.mark.parametrize(("path", "model"), sorted(settings_of(Config).items()))
def test_every_setting_is_documented_in_the_sample(path: str, model: type[BaseModel]) -> None:
    documented = documented_keys(SAMPLE_TEXT)
    assert path in documented, f"the sample has no [{path}] table"
    leaves = {
        info.alias or n  # the key as written in the file
        for n, info in model.model_fields.items()
        if section_model(info.annotation) is None
    }
    missing = sorted(leaves - documented[path])
    assert not missing, f"[{path or 'top level'}] keys missing from sample-config.toml: {missing}"


def test_a_file_that_is_not_utf8_is_an_error_on_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "campus-energy.toml"
    path.write_bytes(b'[site]\nname = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.problems[0][0] == "config"
    assert "not UTF-8" in caught.value.problems[0][1]


def test_overriding_an_item_of_a_list_the_file_lacks_names_the_variable() -> None:
    variable = "CAMPUS_ENERGY__METERS__0__UNIT"
    with pytest.raises(ConfigError) as caught:
        parse_config({}, {variable: "7"})
    assert caught.value.problems == [(variable, "no list 'meters' in the file to override")]


@pytest.mark.parametrize(
    ("simulate", "message"),
    [
        ({"disconnect_after_s": 900, "reconnect_after_s": 600}, "must be later than"),
        ({"reconnect_after_s": 600}, "needs disconnect_after_s"),
    ],
)
def test_a_simulated_outage_must_end_after_it_starts(
    simulate: dict[str, Any], message: str
) -> None:
    data = {
        "buses": [{"name": "b", "transport": "tcp", "host": "h"}],
        "meters": [
            {"id": "m", "bus": "b", "unit": 1, "profile": "eastron-sdm120", "simulate": simulate}
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    ((key, text),) = caught.value.problems
    assert key == 'meters[0] (id "m").simulate'
    assert message in text


def test_the_gap_limit_defaults_to_three_intervals_and_a_half_and_can_be_set() -> None:
    bus = {"name": "b", "transport": "tcp", "host": "h"}
    meter = {"id": "m", "bus": "b", "unit": 1, "profile": "eastron-sdm120", "interval_s": 5}
    assert parse_config({"buses": [bus], "meters": [meter]}).meters[0].gap_limit_s == 17.5
    chosen = parse_config({"buses": [bus], "meters": [dict(meter, max_gap_s=60)]})
    assert chosen.meters[0].gap_limit_s == 60
    with pytest.raises(ConfigError) as caught:
        parse_config({"buses": [bus], "meters": [dict(meter, max_gap_s=2)]})
    assert caught.value.problems == [
        ('meters[0] (id "m")', "max_gap_s (2) must be at least interval_s (5)")
    ]
