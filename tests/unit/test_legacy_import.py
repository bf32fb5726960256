"""The pure parts of the legacy import: ids, meter maps, power conventions, local time, energy."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from campus_energy.ops.legacy_import.convert import (
    NO_POWER,
    NONEXISTENT,
    SAME_TIME,
    UNPARSEABLE,
    Imported,
    LegacyRow,
    PowerRule,
    Skipped,
    Timed,
    decide_power,
    integrate,
    local_kind,
    parse_meter_map,
    slug,
    timeline,
)

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("legacy", "ours"),
    [
        ("Main Meter", "main-meter"),
        ("ECE/Lab #1", "ece-lab-1"),
        ("Ünit_7", "unit_7"),
        ("  --  ", ""),
        ("3", "3"),
    ],
)
def test_slug(legacy: str, ours: str) -> None:
    assert slug(legacy) == ours


def test_meter_maps_in_toml_and_csv() -> None:
    assert parse_meter_map('"Main Meter" = "main"\n"SIM 2" = ""\n', csv_format=False) == {
        "Main Meter": "main",
        "SIM 2": None,
    }
    assert parse_meter_map('[meters]\n"a" = "b"\n', csv_format=False) == {"a": "b"}
    text = "legacy_id,meter_id\n# the simulated ones stay out\nMain Meter,main\nSIM 2,\n\n"
    assert parse_meter_map(text, csv_format=True) == {"Main Meter": "main", "SIM 2": None}
    for bad, as_csv in [
        ("a,Main", True),
        ("a,b,c", True),
        ('"a" = 3', False),
        ("a = [", False),
    ]:
        with pytest.raises(ValueError):
            parse_meter_map(bad, csv_format=as_csv)


@pytest.mark.parametrize(
    ("samples", "unit", "inverted"),
    [
        ([(230.0, 5.0, -1.1)] * 10, "kW", True),  # the original logger: kW, sign inverted
        ([(230.0, 5.0, 1100.0)] * 10, "W", False),
        ([(230.0, 5.0, -1100.0)] * 9 + [(230.0, 5.0, 1100.0)], "W", True),
        ([(None, None, 1.2)] * 10, "kW", False),  # no voltage and current: kW
        ([(230.0, 5.0, 0.0), (None, None, None)], "kW", True),  # nothing to judge: the original
    ],
)
def test_power_unit_and_sign_from_the_data(
    samples: list[tuple[object, object, object]], unit: str, inverted: bool
) -> None:
    rule = decide_power(samples)
    assert (rule.unit, rule.inverted) == (unit, inverted)
    assert rule.evidence


def test_power_convention_as_given() -> None:
    rule = decide_power([(230.0, 5.0, 1100.0)], unit="kW", sign="inverted")
    assert (rule.unit, rule.inverted, rule.factor) == ("kW", True, -1000.0)
    assert rule.watts(-1.25) == 1250.0
    assert rule.watts("n/a") is None and rule.watts(float("nan")) is None


@pytest.mark.parametrize(
    ("local", "kind"),
    [
        ("2023-10-29 00:59:59", "normal"),
        ("2023-10-29 01:30:00", "repeated"),
        ("2024-03-31 01:30:00", "missing"),
        ("2024-03-31 02:00:00", "normal"),
    ],
)
def test_local_kind(local: str, kind: str) -> None:
    assert local_kind(datetime.fromisoformat(local), LONDON) == kind


def row(order: int, stamp: object, power: object = -1.0) -> LegacyRow:
    return LegacyRow(order, "m", stamp, 230.0, 4.0, power, 1.0, 0.95)


def test_a_repeated_hour_is_split_by_the_order_rows_were_written_in() -> None:
    # written in this order: 01:59:55 (BST), then 01:00:00 and 01:00:05 (GMT), then 02:00:00
    written = [row(1, "2023-10-29 01:59:55"), row(2, "2023-10-29 01:00:00")]
    written += [row(3, "2023-10-29 01:00:05"), row(4, "2023-10-29 02:00:00")]
    by_text = sorted(written, key=lambda r: (str(r.timestamp), r.order))
    out = list(timeline(by_text, LONDON))
    assert all(isinstance(t, Timed) for t in out)
    stamps = [(t.row.order, t.ts_ms) for t in out if isinstance(t, Timed)]
    at = 1_698_541_195_000  # 2023-10-29T00:59:55Z
    assert stamps == [(1, at), (2, at + 5_000), (3, at + 10_000), (4, at + 3_605_000)]


def test_rows_that_cannot_be_placed_are_skipped_with_a_reason() -> None:
    rows = [row(1, "2024-03-31 00:59:55"), row(2, "31/03/2024"), row(3, "2024-03-31 01:30:00")]
    rows += [row(4, "2024-03-31 02:00:00"), row(5, "2024-03-31 02:00:00"), row(6, None)]
    rows += [row(7, "2024-03-31 02:00:05", power=None)]
    items = list(integrate(timeline(rows, LONDON), PowerRule("kW", True, ""), 17.5))
    reasons = [(i.row.order, i.reason) for i in items if isinstance(i, Skipped)]
    assert sorted(reasons) == [
        (2, UNPARSEABLE),
        (3, NONEXISTENT),
        (5, SAME_TIME),
        (6, UNPARSEABLE),
        (7, NO_POWER),
    ]
    readings = [i for i in items if isinstance(i, Imported)]
    assert [r.ts_ms for r in readings] == [1_711_846_795_000, 1_711_846_800_000]
    # 1 kW for the 5 s across the change of the clocks: the time between stamps in UTC
    assert [r.energy_uwh for r in readings] == [0, 1_388_889]
    assert readings[1].values == {
        "voltage_v": 230.0,
        "current_a": 4.0,
        "power_w": 1000.0,
        "power_factor": 0.95,
    }
