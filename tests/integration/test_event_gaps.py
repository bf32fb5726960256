"""A meter replaced during an outage: the logger estimates nothing across it (its register went
back), a person confirms the replacement with the old meter's final count and the new one's
first, `meter-event add` puts the gap's estimate on the reading after it, and `reconcile
--apply` writes it into the windows — apart from measured energy, with coverage unchanged."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from tests.support.config import meter_at, tcp_bus, write_toml

from campus_energy.cli import main
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import iso_utc
from campus_energy.logger.store import MeterRecord, ReadingStore

T0 = 1_767_261_600_000  # 2026-01-01T10:00:00Z, a window boundary
MINUTE = 60_000
POWER_W = 1000.0
WH_PER_MINUTE = POWER_W / 60
OLD_START_WH = 98_765_400.0  # the old meter's register at T0 (float32 kWh: steps of 7.8 Wh)
GAP = (T0 + 10 * MINUTE, T0 + 30 * MINUTE)  # no reading between 10:10 and 10:30
REPLACED_AT = T0 + 18 * MINUTE  # the new meter, its register from 0, went in at 10:18
OLD_FINAL_WH = OLD_START_WH + 18 * WH_PER_MINUTE  # 300 Wh counted by the old one
NEW_START_WH = 0.0


def register_at(ms: int) -> float:
    """The register the meter in place at `ms` shows, at a steady 1 kW."""
    if ms < REPLACED_AT:
        return OLD_START_WH + (ms - T0) / MINUTE * WH_PER_MINUTE
    return NEW_START_WH + (ms - REPLACED_AT) / MINUTE * WH_PER_MINUTE


TRUTH_WH = 20 * WH_PER_MINUTE  # what the gap's 20 minutes drew: 333.3 Wh


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_toml(
        tmp_path / "campus-energy.toml",
        {
            "site": {"timezone": "UTC"},
            "storage": {"path": str(tmp_path / "store.db")},
            "buses": [tcp_bus(port=5020)],
            "meters": [meter_at("lab", "plant", 1, "eastron-sdm120", interval_s=60)],
            "bridge": {
                "window_s": 300,
                "spool_path": str(tmp_path / "spool.db"),
                "sqlite": {"path": str(tmp_path / "windows.db")},
            },
        },
    )


async def logger_store(path: Path) -> None:
    """An hour of minute readings at 1 kW, with the outage the logger left as a gap."""
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord("lab", "Lab", "1", "eastron-sdm120")])
        readings, seq, total = [], 0, 0
        previous: int | None = None
        for minute in range(61):
            ts = T0 + minute * MINUTE
            if GAP[0] < ts < GAP[1]:
                continue
            seq += 1
            integrated = previous is not None and ts - previous == MINUTE
            energy = round(WH_PER_MINUTE * 1e6) if integrated else 0
            total += energy
            values = {
                "power_w": POWER_W,
                "import_energy_wh": round(register_at(ts), 1),
                "export_energy_wh": 0.0,
            }
            readings.append(Reading("lab", ts, seq, energy, total, values))
            previous = ts
        await store.insert_history(readings, gaps=[("lab", *GAP)])
    finally:
        await store.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def windows(config: Path) -> list[tuple[int, float, float, float, float]]:
    conn = sqlite3.connect(config.parent / "windows.db")
    try:
        return conn.execute(
            "SELECT window_start_ms, total_energy_wh, estimated_energy_wh, estimated_export_wh, "
            "coverage FROM window_aggregates ORDER BY window_start_ms"
        ).fetchall()
    finally:
        conn.close()


def stored_estimate(config: Path) -> tuple[float | None, float | None]:
    conn = sqlite3.connect(config.parent / "store.db")
    try:
        return conn.execute(
            "SELECT estimated_energy_wh, estimated_export_wh FROM readings WHERE ts_ms = ?",
            (GAP[1],),
        ).fetchone()
    finally:
        conn.close()


def test_a_confirmed_replacement_bridges_its_gap_into_the_windows(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(logger_store(config.parent / "store.db"))
    reconcile = ["reconcile", "-c", str(config), "--start", "2026-01-01", "--end", "2026-01-01"]
    assert cli(capsys, *reconcile, "--apply")[0] == 0
    before = windows(config)
    measured_wh = sum(w[1] for w in before)
    assert measured_wh == pytest.approx(40 * WH_PER_MINUTE)  # 10 + 30 integrated minutes
    assert sum(w[2] for w in before) == 0.0  # the logger estimated nothing across the gap

    code, out, err = cli(
        capsys,
        "meter-event",
        "add",
        "lab",
        "-c",
        str(config),
        "--kind",
        "replaced",
        "--at",
        iso_utc(REPLACED_AT),
        "--old-final-kwh",
        f"{OLD_FINAL_WH / 1000:.4f}",
        "--new-start-kwh",
        "0",
    )
    assert code == 0 and out.strip().isdigit()
    assert "across it is estimated: 333.3 Wh imported, 0.0 Wh exported" in err
    assert "campus-energy reconcile --start 2026-01-01 --end 2026-01-01 --meter lab" in err
    imported, exported = stored_estimate(config)
    assert imported == pytest.approx(TRUTH_WH, abs=0.2)  # within the store's 0.1 Wh steps
    assert exported == 0.0

    assert cli(capsys, *reconcile, "--apply")[0] == 0
    after = windows(config)
    assert sum(w[1] for w in after) == pytest.approx(measured_wh)  # measured unchanged
    coverage = {w[0]: w[4] for w in after}
    assert {w[0]: w[4] for w in before} == {s: coverage[s] for s, *_ in before}  # unchanged
    assert all(coverage[s] == 0.0 for s in coverage.keys() - {w[0] for w in before})
    assert sum(w[2] for w in after) == pytest.approx(imported)
    # spread over 10:10–10:30 in proportion to time: four five-minute windows alike
    gap_windows = [w for w in after if GAP[0] <= w[0] < GAP[1]]
    assert [w[0] for w in gap_windows] == [GAP[0] + i * 5 * MINUTE for i in range(4)]
    assert all(w[2] == pytest.approx(imported / 4) for w in gap_windows)
    # a second run finds the windows as the store says
    code, out, _ = cli(capsys, *reconcile)
    assert code == 0 and "13 equal, 0 differing, 0 missing, 0 extra" in out

    # the gap carries its estimate: a second record changes nothing
    code, _, err = cli(
        capsys,
        "meter-event",
        "add",
        "lab",
        "-c",
        str(config),
        "--kind",
        "replaced",
        "--at",
        iso_utc(REPLACED_AT),
        "--old-final-kwh",
        f"{OLD_FINAL_WH / 1000:.4f}",
        "--new-start-kwh",
        "0",
    )
    assert code == 0 and "carries an estimate already" in err
    assert stored_estimate(config)[0] == imported


@pytest.mark.parametrize(
    ("old_final_wh", "new_start_wh", "reason"),
    [
        # the old meter's final below its read before the gap
        (OLD_START_WH, 0.0, "do not add up"),
        # 20 kW (the SDM120's largest power) for 20 minutes is 6.7 kWh: 50 kWh cannot be
        (OLD_FINAL_WH + 50_000.0, 0.0, "do not add up"),
    ],
)
def test_counts_that_cannot_be_true_estimate_nothing(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    old_final_wh: float,
    new_start_wh: float,
    reason: str,
) -> None:
    asyncio.run(logger_store(config.parent / "store.db"))
    code, _, err = cli(
        capsys,
        "meter-event",
        "add",
        "lab",
        "-c",
        str(config),
        "--kind",
        "replaced",
        "--at",
        iso_utc(REPLACED_AT),
        "--old-final-kwh",
        f"{old_final_wh / 1000:.4f}",
        "--new-start-kwh",
        f"{new_start_wh / 1000:.4f}",
    )
    assert code == 0  # the event is on the record either way
    assert "is not estimated" in err and reason in err
    assert stored_estimate(config) == (None, None)


def test_an_event_outside_any_gap_estimates_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(logger_store(config.parent / "store.db"))
    code, _, err = cli(
        capsys,
        "meter-event",
        "add",
        "lab",
        "-c",
        str(config),
        "--kind",
        "replaced",
        "--at",
        iso_utc(T0 + 45 * MINUTE),  # polled throughout: power was integrated
        "--old-final-kwh",
        "1",
        "--new-start-kwh",
        "0",
    )
    assert code == 0 and "gap" not in err
    assert stored_estimate(config) == (None, None)
