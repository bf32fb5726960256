"""Meter profiles: golden register maps from the makers' tables, user profiles, decode/encode."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campus_energy.core.models import CORE_FIELDS, Profile
from campus_energy.errors import ProfileError
from campus_energy.meters.profiles import builtin_profiles, load_profiles

BUILTINS = builtin_profiles()

MINIMAL = 'name = "{name}"\nfields = [{{ name = "power_w", address = 0 }}]\n'


def addresses(profile: Profile) -> dict[str, int]:
    return {spec.name: spec.address for spec in profile.fields}


def write(folder: Path, file_name: str, text: str) -> Path:
    path = folder / file_name
    path.write_text(text, encoding="utf-8")
    return path


# --- built-in profiles ------------------------------------------------------------------------


def test_the_builtins_are_the_expected_models() -> None:
    assert set(BUILTINS) == {
        "campus-legacy",
        "eastron-sdm120",
        "eastron-sdm230",
        "eastron-sdm630",
        "eastron-sdm72d",
    }


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_has_the_core_fields(name: str) -> None:
    names = [spec.name for spec in BUILTINS[name].fields]
    assert set(CORE_FIELDS) <= set(names)


@pytest.mark.parametrize("name", ["eastron-sdm120", "eastron-sdm230"])
def test_golden_single_phase_eastron_map(name: str) -> None:
    profile = BUILTINS[name]
    assert profile.function == "input"
    assert profile.function_code == 4
    assert profile.byte_order == "ABCD"
    assert profile.phases == 1
    assert addresses(profile) == {
        "voltage_v": 0x0000,
        "current_a": 0x0006,
        "power_w": 0x000C,
        "power_factor": 0x001E,
        "frequency_hz": 0x0046,
        "import_energy_wh": 0x0048,
        "export_energy_wh": 0x004A,
    }
    assert all(spec.type == "float32" for spec in profile.fields)
    assert profile.field("import_energy_wh").scale == 1000.0  # kWh on the wire, Wh for us
    assert profile.field("export_energy_wh").scale == 1000.0
    assert profile.field("power_w").scale == 1.0


def test_golden_sdm630_map() -> None:
    profile = BUILTINS["eastron-sdm630"]
    assert (profile.function, profile.byte_order, profile.phases) == ("input", "ABCD", 3)
    assert addresses(profile) == {
        "voltage_l1_v": 0x0000,
        "voltage_l2_v": 0x0002,
        "voltage_l3_v": 0x0004,
        "current_l1_a": 0x0006,
        "current_l2_a": 0x0008,
        "current_l3_a": 0x000A,
        "power_l1_w": 0x000C,
        "power_l2_w": 0x000E,
        "power_l3_w": 0x0010,
        "power_factor_l1": 0x001E,
        "power_factor_l2": 0x0020,
        "power_factor_l3": 0x0022,
        "voltage_v": 0x002A,
        "current_a": 0x0030,
        "power_w": 0x0034,
        "power_factor": 0x003E,
        "frequency_hz": 0x0046,
        "import_energy_wh": 0x0048,
        "export_energy_wh": 0x004A,
    }
    assert profile.field("import_energy_wh").scale == 1000.0
    assert profile.field("export_energy_wh").scale == 1000.0


def test_golden_campus_legacy_map() -> None:
    profile = BUILTINS["campus-legacy"]
    assert profile.function == "holding"
    assert profile.function_code == 3
    assert profile.byte_order == "ABCD"
    assert addresses(profile) == {
        "voltage_v": 6,
        "current_a": 8,
        "power_w": 10,
        "power_factor": 34,
        "frequency_hz": 54,
    }
    assert profile.field("power_w").scale == -1000.0  # kW on the wire, sign inverted


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_fields_do_not_overlap(name: str) -> None:
    spans = sorted((spec.address, spec.end) for spec in BUILTINS[name].fields)
    for (_, end), (start, _) in pairwise(spans):
        assert end <= start


# --- the user's profiles_dir ------------------------------------------------------------------


def test_a_user_file_named_like_a_builtin_replaces_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "eastron-sdm120.toml",
        'name = "eastron-sdm120"\nfunction = "holding"\n'
        'fields = [{ name = "power_w", address = 0x000C }]\n',
    )
    profile = load_profiles(tmp_path)["eastron-sdm120"]
    assert profile.function == "holding"
    assert [spec.name for spec in profile.fields] == ["power_w"]
    assert builtin_profiles()["eastron-sdm120"].function == "input"


def test_a_user_file_with_a_new_name_adds_a_model(tmp_path: Path) -> None:
    write(tmp_path, "acme-x1.toml", MINIMAL.format(name="acme-x1"))
    write(tmp_path, "README.md", "not a profile")
    found = load_profiles(tmp_path)
    assert set(found) == set(BUILTINS) | {"acme-x1"}
    assert found["eastron-sdm630"] == BUILTINS["eastron-sdm630"]


def test_a_missing_profiles_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="is not a directory"):
        load_profiles(tmp_path / "absent")


def test_the_file_name_must_match_the_profile_name(tmp_path: Path) -> None:
    path = write(tmp_path, "acme-x1.toml", MINIMAL.format(name="acme-x2"))
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert str(caught.value) == f"{path}: name 'acme-x2' must match the file name 'acme-x1'"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "acme-x1.toml", 'name = "acme-x1"\nfields = [\n')
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert str(caught.value).startswith(f"{path}: not valid TOML")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'fields = [{ name = "power_w", address = 0, type = "float64" }]',
            "fields[0].type: must be one of 'float32', 'int16', 'uint16', 'int32' or 'uint32',"
            " got 'float64'",
        ),
        (
            'fields = [{ name = "voltage_v", address = 0 }]',
            "(top level): missing required fields: power_w",
        ),
        (
            'fields = [{ name = "power_w", address = 0 }, { name = "power_w", address = 2 }]',
            "(top level): duplicate field names: power_w",
        ),
        (
            'colour = "red"\nfields = [{ name = "power_w", address = 0 }]',
            "colour: unknown key",
        ),
        (
            'fields = [{ name = "power_w", address = 0 }, { name = "current_a", adress = 2 }]',
            "fields[1].address: required key is missing; fields[1].adress: unknown key",
        ),
    ],
    ids=["unknown-type", "missing-power", "duplicate", "unknown-key", "unknown-field-key"],
)
def test_an_invalid_profile_names_the_file_and_the_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = write(tmp_path, "acme-x1.toml", f'name = "acme-x1"\n{body}\n')
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert str(caught.value) == f"{path}: {expected}"


# --- decoding and encoding --------------------------------------------------------------------


def test_decode_reads_sdm120_registers_in_si_units() -> None:
    profile = BUILTINS["eastron-sdm120"]
    block = [0] * 0x004C
    block[0x0000:0x0002] = [0x4367, 0xAF55]  # 231.685 V
    block[0x000C:0x000E] = [0x41FA, 0x177C]  # 31.261 W
    block[0x0048:0x004A] = [0x45A2, 0x26C7]  # 5188.847 kWh
    block[0x004A:0x004C] = [0x4367, 0xAF55]  # 231.685 kWh exported
    values = profile.decode([(0, block)])
    assert values["voltage_v"] == pytest.approx(231.685, abs=5e-4)
    assert values["power_w"] == pytest.approx(31.261, abs=5e-4)
    assert values["import_energy_wh"] == pytest.approx(5_188_847, abs=0.5)
    assert values["export_energy_wh"] == pytest.approx(231_685, abs=0.5)
    assert values["current_a"] == 0.0


def test_decode_applies_a_negative_scale() -> None:
    profile = BUILTINS["campus-legacy"]
    blocks = [(6, [0] * 4), (10, [0xBFC0, 0x0000]), (34, [0, 0]), (54, [0, 0])]  # -1.5 kW
    assert profile.decode(blocks)["power_w"] == 1500.0


def test_decode_takes_fields_from_several_blocks() -> None:
    profile = BUILTINS["eastron-sdm120"]
    encoded = profile.encode({"voltage_v": 230.0, "frequency_hz": 50.0})
    low = encoded[0x0000] + [0] * 0x1E  # 0x0000 .. 0x001F
    high = encoded[0x0046] + encoded[0x0048] + encoded[0x004A]  # 0x0046 .. 0x004B
    values = profile.decode([(0x0000, low), (0x0046, high)])
    assert (values["voltage_v"], values["frequency_hz"]) == (230.0, 50.0)


def test_decode_raises_key_error_naming_a_field_that_was_not_read() -> None:
    profile = BUILTINS["eastron-sdm120"]
    with pytest.raises(KeyError, match="frequency_hz"):
        profile.decode([(0x0000, [0] * 0x46)])  # stops just before 0x0046


def test_decode_refuses_a_field_cut_by_the_end_of_a_block() -> None:
    profile = BUILTINS["eastron-sdm120"]
    with pytest.raises(KeyError, match="import_energy_wh"):
        profile.decode([(0x0000, [0] * 0x49)])  # half of the float at 0x0048


values_st = st.floats(min_value=-1e6, max_value=1e6, allow_subnormal=False)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@given(value=values_st)
def test_encode_then_decode_round_trips_at_float32_precision(name: str, value: float) -> None:
    profile = BUILTINS[name]
    values = {spec.name: value for spec in profile.fields}
    decoded = profile.decode(sorted(profile.encode(values).items()))
    assert set(decoded) == set(values)
    for field_name, got in decoded.items():
        assert got == pytest.approx(value, rel=1e-6, abs=1e-30), field_name


def test_encode_gives_every_field_its_address_and_zero_when_missing() -> None:
    profile = BUILTINS["campus-legacy"]
    encoded = profile.encode({"power_w": -2000.0})
    assert sorted(encoded) == [6, 8, 10, 34, 54]
    assert encoded[10] == [0x4000, 0x0000]  # -2000 W / -1000 = 2.0 kW
    assert encoded[6] == [0, 0]


def test_the_eastron_profiles_know_their_factory_serial_speed() -> None:
    """A new SDM120 or SDM230 answers at 2400 baud, an SDM630 or SDM72D at 9600 (8N1 all)."""
    found = {name: p.factory_baudrate for name, p in builtin_profiles().items()}
    assert found == {
        "campus-legacy": None,
        "eastron-sdm120": 2400,
        "eastron-sdm230": 2400,
        "eastron-sdm630": 9600,
        "eastron-sdm72d": 9600,
    }
