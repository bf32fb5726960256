"""The billing sections of the configuration: a complete campus parses into its values, and
each mistake is refused naming its key (exit 2 on the command line)."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from campus_energy.cli import main
from campus_energy.config import load_config, parse_config
from campus_energy.core.tariffs import HOLIDAY, Rate, day_kind
from campus_energy.errors import ConfigError

# Two buildings (Admin with a main meter and two sub-meters, Library without a main), a pump
# in no building, a remainder and a nested virtual meter, a dated time-of-use tariff with a
# holidays file and a ratcheted demand charge, a flat one, an annual and an hourly CO2 factor
EXAMPLE = """
[site]
timezone = "Europe/Berlin"
tariff = "flat"

[[site.buildings]]
name = "Admin"
floor_area_m2 = 5200
tariff = "tou"
[site.buildings.occupancy]
mon = "08:00-18:00"
fri = "08:00-14:30"
sat = ["09:00-12:00", "13:00-15:00"]
holidays = [2026-12-24]

[[site.buildings]]
name = "Library"

[[buses]]
name = "rs485-1"
transport = "rtu"
device = "/dev/ttyUSB0"

[[meters]]
id = "admin-main"
bus = "rs485-1"
unit = 1
profile = "eastron-sdm630"
building = "Admin"
role = "main"

[[meters]]
id = "admin-f1"
bus = "rs485-1"
unit = 2
profile = "eastron-sdm120"
building = "Admin"
parent = "admin-main"

[[meters]]
id = "admin-f2"
bus = "rs485-1"
unit = 3
profile = "eastron-sdm120"
building = "Admin"
parent = "admin-main"

[[meters]]
id = "lib-a"
bus = "rs485-1"
unit = 4
profile = "eastron-sdm120"
building = "Library"

[[meters]]
id = "pump"
bus = "rs485-1"
unit = 5
profile = "eastron-sdm120"

[[virtual_meters]]
id = "admin-rest"
building = "Admin"
terms = "admin-main - admin-f1 - admin-f2"

[[virtual_meters]]
id = "admin-not-f1"
building = "Admin"
terms = "admin-rest + admin-f2"

[[tariffs]]
id = "tou"
currency = "EUR"
holidays = [2026-01-01]
holidays_file = "holidays.txt"

[[tariffs.versions]]
valid_from = 2026-01-01
default_rate = "0.21"
standing_per_month = 30

[[tariffs.versions.periods]]
name = "day"
rate = "0.3125"
days = ["weekdays"]
start = "08:00"
end = "20:00"

[[tariffs.versions.periods]]
name = "weekend"
rate = 0.18
days = ["weekends", "holidays"]

[tariffs.versions.demand]
interval_min = 30
price_per_kw = "12.50"
ratchet_share = 0.75
minimum_kw = 5

[[tariffs.versions]]
valid_from = 2026-06-15
default_rate = "0.24"
standing_per_month = 32

[[tariffs]]
id = "flat"
currency = "INR"

[[tariffs.versions]]
valid_from = 2026-01-01
default_rate = 7.45
standing_per_day = 50

[emissions]
hourly_file = "grid.csv"

[[emissions.factors]]
valid_from = 2025-01-01
kg_per_kwh = 0.401

[[emissions.factors]]
valid_from = 2026-01-01
kg_per_kwh = 0.380
"""

HOLIDAYS = "# public holidays\n2026-05-01\n\n2026-12-25  # Christmas\n"
GRID = (
    "hour,g_per_kwh\n"
    "2026-01-01T00:00Z,412\n"
    "2026-01-01T01:00:00+00:00,398.5\n"
    "2026-01-01T03:00+01:00,377\n"  # 02:00Z
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with the example's holidays file and hourly factor file."""
    (tmp_path / "holidays.txt").write_text(HOLIDAYS, encoding="utf-8")
    (tmp_path / "grid.csv").write_text(GRID, encoding="utf-8")
    return tmp_path


def utc_ms(*moment: int) -> int:
    year, month, day, hour = moment
    return round(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def test_a_complete_campus_with_tariffs_and_emissions_parses(folder: Path) -> None:
    path = folder / "campus-energy.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    config = load_config(path)
    campus = config.campus
    assert campus.building_names() == ["Admin", "Library"]
    assert campus.building_total("Admin").terms == {"admin-main": 1.0}
    assert campus.building_total("Library").terms == {"lib-a": 1.0}
    assert campus.campus_total().terms == {"admin-main": 1.0, "lib-a": 1.0, "pump": 1.0}
    assert campus.terms("admin-rest") == {"admin-main": 1, "admin-f1": -1, "admin-f2": -1}
    assert campus.terms("admin-not-f1") == {"admin-main": 1, "admin-f1": -1}
    assert (campus.tariff_of("Admin"), campus.tariff_of("Library"), campus.tariff_of("")) == (
        "tou",
        "flat",
        "flat",
    )
    occupancy = campus.building("Admin").occupancy
    assert occupancy is not None
    assert occupancy.hours == {
        "mon": ((480, 1080),),
        "fri": ((480, 870),),
        "sat": ((540, 720), (780, 900)),
    }
    assert occupancy.holidays == {date(2026, 12, 24)}

    tou, flat = config.tariff_values["tou"], config.tariff_values["flat"]
    # the list's holiday and the file's two
    assert tou.holidays == {date(2026, 1, 1), date(2026, 5, 1), date(2026, 12, 25)}
    assert [v.valid_from for v in tou.versions] == [date(2026, 1, 1), date(2026, 6, 15)]
    first = tou.versions[0]
    # a Monday at 08:00 is daytime; the file's 1 May (a Friday) a holiday, priced "weekend"
    assert first.rate("mon", 3, 8 * 60) == Rate("day", Decimal("0.3125"))
    assert first.rate(day_kind(date(2026, 5, 1), tou.holidays), 5, 600).period == "weekend"
    assert [(p.name, p.rate, p.start_min, p.end_min) for p in first.periods] == [
        ("day", Decimal("0.3125"), 480, 1200),
        ("weekend", Decimal("0.18"), 0, 1440),
    ]
    assert first.periods[1].days == {"sat", "sun", HOLIDAY}
    assert first.demand is not None
    assert (first.demand.interval_min, first.demand.price_per_kw) == (30, Decimal("12.50"))
    assert first.demand.ratchet.share == Decimal("0.75")
    assert first.demand.ratchet.months == 11
    assert first.demand.ratchet.minimum_kw == Decimal(5)
    assert (flat.currency, flat.versions[0].default_rate) == ("INR", Decimal("7.45"))
    assert flat.versions[0].standing_per_day == Decimal(50)

    factors = config.emission_factors
    assert factors.annual == (
        (date(2025, 1, 1), Decimal("0.401")),
        (date(2026, 1, 1), Decimal("0.380")),
    )
    assert factors.hourly == {
        utc_ms(2026, 1, 1, 0): Decimal(412),
        utc_ms(2026, 1, 1, 1): Decimal("398.5"),
        utc_ms(2026, 1, 1, 2): Decimal(377),
    }


# --- refusals, each naming its key --------------------------------------------------------------

DROP = object()


def edited(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The example as data, with each (dotted path, value) set; DROP removes the key, an
    index one past a list's end appends."""
    data = tomllib.loads(EXAMPLE)
    for path, value in changes:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = data
        for part in parents:
            node = node[part]
        if value is DROP:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return data


def refusals(data: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, {}, folder)
    return caught.value.problems


TOU = 'tariffs[0] (id "tou")'
FLAT = 'tariffs[1] (id "flat")'

REFUSALS = [
    (
        "overlapping periods",
        [("tariffs.0.versions.0.periods.1.days", ["all"])],
        (f"{TOU}.versions[0].periods[1]", "period 'weekend' overlaps period 'day' (mon 08:00)"),
    ),
    (
        "a gap without a default rate",
        [("tariffs.0.versions.0.default_rate", DROP)],
        (f"{TOU}.versions[0]", "no period holds mon 00:00: add a period for it or a default_rate"),
    ),
    (
        "versions out of date order",
        [("tariffs.1.versions.1", {"valid_from": date(2025, 6, 1), "default_rate": 7})],
        (
            f"{FLAT}.versions[1].valid_from",
            "2025-06-01 is not after the version before it (2026-01-01): "
            "list versions in date order, each once",
        ),
    ),
    (
        "a version twice",
        [("tariffs.1.versions.1", {"valid_from": date(2026, 1, 1), "default_rate": 7})],
        (
            f"{FLAT}.versions[1].valid_from",
            "2026-01-01 is not after the version before it (2026-01-01): "
            "list versions in date order, each once",
        ),
    ),
    (
        "no version",
        [("tariffs.1.versions", [])],
        (f"{FLAT}.versions", "needs at least one version"),
    ),
    (
        "a 5-minute demand interval",
        [("tariffs.0.versions.0.demand.interval_min", 5)],
        (f"{TOU}.versions[0].demand.interval_min", "must be 15, 30 or 60 (minutes), got 5"),
    ),
    (
        "a period's time not on a quarter hour",
        [("tariffs.0.versions.0.periods.0.start", "08:10")],
        (
            f"{TOU}.versions[0].periods[0].start",
            "must be on a quarter hour (:00, :15, :30, :45), got '08:10'",
        ),
    ),
    (
        "opening hours not on a quarter hour",
        [("site.buildings.0.occupancy.mon", "08:05-18:00")],
        (
            "site.buildings[0].occupancy.mon",
            "must be on a quarter hour (:00, :15, :30, :45), got '08:05'",
        ),
    ),
    (
        "a period name twice",
        [("tariffs.0.versions.0.periods.1.name", "day")],
        (f"{TOU}.versions[0].periods[1].name", "duplicate period name 'day'"),
    ),
    (
        "an unknown building on a meter",
        [("meters.3.building", "Libary")],
        ('meters[3] (id "lib-a").building', "unknown building 'Libary' (known: Admin, Library)"),
    ),
    (
        "an unknown tariff on a building",
        [("site.buildings.0.tariff", "tuo")],
        ("site.buildings[0].tariff", "unknown tariff 'tuo' (known: flat, tou)"),
    ),
    (
        "an unknown site tariff",
        [("site.tariff", "flta")],
        ("site.tariff", "unknown tariff 'flta' (known: flat, tou)"),
    ),
    (
        "a virtual meter with an unknown member",
        [("virtual_meters.0.terms", "admin-main - admin-f9")],
        (
            'virtual_meters[0] (id "admin-rest").terms',
            "unknown meter 'admin-f9' (known: admin-f1, admin-f2, admin-main, admin-not-f1, "
            "admin-rest, lib-a, pump)",
        ),
    ),
    (
        "a cycle of virtual meters",
        [("virtual_meters.0.terms", "admin-not-f1 - admin-f1")],
        (
            'virtual_meters[0] (id "admin-rest").terms',
            "a cycle: admin-rest -> admin-not-f1 -> admin-rest",
        ),
    ),
    (
        "two main meters in one building",
        [("meters.1.role", "main"), ("meters.1.parent", DROP)],
        (
            'meters[1] (id "admin-f1").role',
            "building 'Admin' has a main meter already ('admin-main')",
        ),
    ),
    (
        "a parent in another building",
        [("meters.3.parent", "admin-main")],
        (
            'meters[3] (id "lib-a").parent',
            "the parent 'admin-main' is in building 'Admin', not 'Library': "
            "a sub-meter is in its parent's building",
        ),
    ),
    (
        "a cycle of parents",
        [("meters.0.role", DROP), ("meters.0.parent", "admin-f1")],
        ('meters[0] (id "admin-main").parent', "a cycle of parents through 'admin-main'"),
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [(c, e) for _, c, e in REFUSALS], ids=[n for n, _, _ in REFUSALS]
)
def test_a_mistake_is_refused_naming_its_key(
    changes: list[tuple[str, Any]], expected: tuple[str, str], folder: Path
) -> None:
    assert refusals(edited(*changes), folder) == [expected]


def test_the_example_without_its_mistakes_is_accepted(folder: Path) -> None:
    parse_config(edited(), {}, folder)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("2026-05-01\n# comment\n2026-13-01\n", 3),
        ("1 May\n", 1),
    ],
)
def test_a_bad_line_of_the_holidays_file_is_named(text: str, line: int, folder: Path) -> None:
    (folder / "holidays.txt").write_text(text, encoding="utf-8")
    assert refusals(edited(), folder) == [
        (
            'tariffs[0] (id "tou").holidays_file',
            f"{folder / 'holidays.txt'} line {line}: not a date 'YYYY-MM-DD'",
        )
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2026-01-01T04:30Z,400", "'2026-01-01T04:30Z' is not the start of an hour"),
        ("2026-01-01T01:00Z,400", "this hour is listed twice"),
        ("2026-01-01T04:00Z,lots", "g CO2/kWh must be a number, got 'lots'"),
        ("2026-01-01T04:00Z,-3", "g CO2/kWh must not be negative, got '-3'"),
        ("yesterday,400", "not an ISO 8601 hour, got 'yesterday'"),
        ("2026-01-01T04:00Z,400,extra", "expected 2 columns (UTC hour, g CO2/kWh), got 3"),
    ],
)
def test_a_bad_line_of_the_hourly_file_is_named(row: str, message: str, folder: Path) -> None:
    (folder / "grid.csv").write_text(GRID + row + "\n", encoding="utf-8")
    # the header is line 1, the three hours lines 2 to 4
    assert refusals(edited(), folder) == [
        ("emissions.hourly_file", f"{folder / 'grid.csv'} line 5: {message}")
    ]


def test_a_bad_billing_section_exits_2_naming_the_key(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "campus-energy.toml"
    # the weekend period on every day overlaps the weekdays' daytime
    text = EXAMPLE.replace('days = ["weekends", "holidays"]', 'days = ["all"]')
    path.write_text(text, encoding="utf-8")
    assert main(["bill", "--month", "2026-06", "-c", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"campus-energy: configuration error: {TOU}.versions[0].periods[1]: "
        "period 'weekend' overlaps period 'day' (mon 08:00)\n"
    )
