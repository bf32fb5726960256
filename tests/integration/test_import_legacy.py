"""`campus-energy import-legacy` on databases shaped like the original deployment's.

The legacy files are built here with its schema: `meter_readings` stamped with
local-time text, power in kW with the sign inverted, energy as power × 5 s, and
`meter_hierarchy`. Energies in the store are checked against a trapezoid
computed by hand.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support.config import write_toml
from tests.support.processes import run_cli

from campus_energy.cli import main
from campus_energy.core.readings import Reading
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

LegacyRow = tuple[str, str, float | None, float | None, object, float | None, float | None]


def write_legacy(
    path: Path, rows: Sequence[LegacyRow], hierarchy: Sequence[tuple[str, str, str]] = ()
) -> Path:
    """A file with the original schema; rows (meter_id, timestamp, V, A, power, Wh, pf)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE meter_readings (id INTEGER PRIMARY KEY AUTOINCREMENT, meter_id TEXT, "
            "timestamp TEXT, voltage REAL, current REAL, power REAL, energy_wh_interval REAL, "
            "pf REAL)"
        )
        conn.executemany(
            "INSERT INTO meter_readings (meter_id, timestamp, voltage, current, power, "
            "energy_wh_interval, pf) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if hierarchy:
            conn.execute(
                "CREATE TABLE meter_hierarchy (meter_id TEXT, block_name TEXT, lab_name TEXT)"
            )
            conn.executemany("INSERT INTO meter_hierarchy VALUES (?, ?, ?)", hierarchy)
    conn.close()
    return path


def legacy_row(meter: str, local: datetime, watts: float) -> LegacyRow:
    """What the original logger wrote for one poll: kW with the sign inverted, Wh = P × 5 s."""
    amps = watts / 230.0 / 0.95
    return (meter, f"{local:%Y-%m-%d %H:%M:%S}", 230.0, amps, -watts / 1000, watts * 5 / 3600, 0.95)


def watts(k: int) -> float:
    return 1500.0 + 50.0 * (k % 9)


START = datetime(2024, 3, 1, 9, 0, 0)  # local time in Asia/Kolkata: 03:30Z
START_MS = 1_709_263_800_000
# seconds after START of Main Meter's polls: every 5 s, one missed poll, one 60 s outage
OFFSETS = (
    [5 * k for k in range(40)] + [205 + 5 * k for k in range(40)] + [460 + 5 * k for k in range(40)]
)


def main_meter_rows() -> list[LegacyRow]:
    return [
        legacy_row("Main Meter", START + timedelta(seconds=s), watts(k))
        for k, s in enumerate(OFFSETS)
    ]


def write_config(folder: Path, zone: str = "Asia/Kolkata") -> Path:
    data = {"site": {"timezone": zone}, "storage": {"path": "var/smart_meter.db"}}
    return write_toml(folder / "campus-energy.toml", data)


def store_rows(db: Path, meter: str) -> list[tuple[int, int, float, float, float]]:
    """(seq, ts_ms, power_w, energy_wh, energy_total_wh) in time order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT seq, ts_ms, power_w, energy_wh, energy_total_wh FROM readings "
            "WHERE meter_id = ? ORDER BY ts_ms",
            (meter,),
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def legacy(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(legacy file, config, meter map): Main Meter, a simulated copy, and a broken row."""
    simulated = [
        legacy_row("SIM 2", START + timedelta(seconds=s), watts(k) * 0.8)
        for k, s in enumerate(OFFSETS)
    ]
    broken = [("Main Meter", "01/03/2024 09:30", 230.0, 5.0, -1.0, 1.0, 0.9)]
    old = write_legacy(
        tmp_path / "old.db",
        [*main_meter_rows(), *simulated, *broken],
        [("Main Meter", "ECE Block", "Lab 1"), ("SIM 2", "MECH", "Lab 2")],
    )
    mapping = tmp_path / "meters.csv"
    mapping.write_text("legacy_id,meter_id\nMain Meter,ece-main\nSIM 2,\n", encoding="utf-8")
    return old, write_config(tmp_path), mapping


def test_import_turns_local_kw_rows_into_utc_watts_with_our_energy(
    legacy: tuple[Path, Path, Path],
) -> None:
    old, config, mapping = legacy
    result = run_cli(
        "import-legacy",
        str(old),
        "--timezone",
        "Asia/Kolkata",
        "-c",
        str(config),
        "--meter-map",
        str(mapping),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "power: in kW, sign inverted (kW: |power| / (voltage × current) is below 0.03" in out
    assert "legacy meter 'Main Meter' → ece-main (building 'ECE Block', floor 'Lab 1'" in out
    assert "rows 121: 120 to import, 1 skipped (1 unreadable timestamp)" in out
    assert "1 gaps longer than 17.5 s" in out
    assert "legacy meter 'SIM 2': left out (by --meter-map)" in out
    assert "written: 120 readings (0 were stored already)" in out
    assert "campus-energy reconcile --start 2024-03-01T03:30:00Z --end 2024-03-01T03:40:56Z" in out

    db = config.parent / "var" / "smart_meter.db"
    rows = store_rows(db, "ece-main")
    assert [r[1] for r in rows] == [START_MS + s * 1000 for s in OFFSETS]
    assert [r[0] for r in rows] == list(range(-119, 1))  # the logger goes on with seq 1
    assert [r[2] for r in rows] == [watts(k) for k in range(120)]
    # by hand: the trapezoid over the time between stamps, nothing across the 60 s outage
    expected = [0.0]
    for k in range(1, 120):
        step = OFFSETS[k] - OFFSETS[k - 1]
        expected.append((watts(k - 1) + watts(k)) / 2 * step / 3600 if step <= 17.5 else 0.0)
    assert [r[3] for r in rows] == pytest.approx(expected, abs=1e-6)
    assert rows[-1][4] == 0.0  # totals end at 0 Wh, where the logger's own begin
    for before, after in itertools.pairwise(rows):
        assert after[4] == pytest.approx(before[4] + after[3], abs=1e-6)
    legacy_wh, ours_wh = sum(watts(k) * 5 / 3600 for k in range(120)), sum(expected)
    assert f"legacy Σ energy_wh_interval {legacy_wh:,.3f} Wh" in out
    assert f"ours (trapezoid over the time between stamps) {ours_wh:,.3f} Wh" in out
    assert f"difference {(ours_wh - legacy_wh) / legacy_wh:+.2%}" in out

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT meter_id, building, floor FROM meters").fetchall() == [
            ("ece-main", "ECE Block", "Lab 1")
        ]
        assert conn.execute("SELECT start_ts_ms, end_ts_ms FROM gaps").fetchall() == [
            (START_MS + 400_000, START_MS + 460_000)
        ]
    conn.close()

    async def outbox() -> tuple[dict[str, int], list[Reading], int, int]:
        store = ReadingStore(db)
        try:
            await store.register([])
            restored = (await store.restore())["ece-main"]
            return (
                await store.outbox_depth(),
                await store.unpublished(),
                restored.seq,
                restored.total_uwh,
            )

        finally:
            await store.close()

    # nothing imported is waiting to be published; the logger would continue at seq 1, 0 Wh
    assert asyncio.run(outbox()) == ({"ece-main": 0}, [], 0, 0)


def test_importing_twice_adds_nothing(
    legacy: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, config, mapping = legacy
    args = ["import-legacy", str(old), "--timezone", "Asia/Kolkata", "-c", str(config)]
    args += ["--meter-map", str(mapping)]
    assert main(args) == 0
    db = config.parent / "var" / "smart_meter.db"
    first = store_rows(db, "ece-main")
    capsys.readouterr()
    assert main(args) == 0
    assert "written: 0 readings (120 were stored already)" in capsys.readouterr().out
    assert store_rows(db, "ece-main") == first


def test_an_import_cut_short_is_completed_and_other_data_refused(
    legacy: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, config, mapping = legacy
    args = ["import-legacy", "--timezone", "Asia/Kolkata", "-c", str(config)]
    args += ["--meter-map", str(mapping)]
    assert main([*args, str(old)]) == 0
    db = config.parent / "var" / "smart_meter.db"
    whole = store_rows(db, "ece-main")
    with sqlite3.connect(db) as conn:  # as if the import had stopped after its first batches
        conn.execute("DELETE FROM samples WHERE seq > -50")
    conn.close()
    capsys.readouterr()
    assert main([*args, str(old)]) == 0
    assert "written: 50 readings (70 were stored already)" in capsys.readouterr().out
    assert store_rows(db, "ece-main") == whole
    # another export of the meter, one poll longer: its numbering would clash
    longer = write_legacy(
        tmp_path / "longer.db",
        [*main_meter_rows(), legacy_row("Main Meter", START + timedelta(seconds=700), 1500.0)],
    )
    assert main([*args, str(longer)]) == 1
    out = capsys.readouterr().out
    assert "refused: the store holds 120 readings of ece-main imported from other data" in out
    assert "DELETE FROM samples WHERE seq <= 0 AND meter" in out
    assert store_rows(db, "ece-main") == whole


def test_dry_run_writes_nothing(legacy: tuple[Path, Path, Path]) -> None:
    old, config, mapping = legacy
    result = run_cli(
        "import-legacy",
        str(old),
        "--timezone",
        "Asia/Kolkata",
        "-c",
        str(config),
        "--meter-map",
        str(mapping),
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert "(dry run: nothing is written)" in result.stdout
    assert "summary: 1 meter, 120 readings to import" in result.stdout
    assert not (config.parent / "var").exists()


def test_the_store_s_own_readings_are_never_overlapped(
    legacy: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The logger ran already: legacy rows from its first reading on are left out."""
    old, config, mapping = legacy
    db = config.parent / "var" / "smart_meter.db"
    own_from = START_MS + OFFSETS[100] * 1000

    async def logger_ran() -> None:
        store = ReadingStore(db)
        try:
            await store.register([MeterRecord("ece-main", "ECE", "1")])
            readings = [
                Reading("ece-main", own_from + k * 5_000, k + 1, 0, 0, {"power_w": 9.0})
                for k in range(5)
            ]
            await store.commit(Cycle(readings=readings))
        finally:
            await store.close()

    asyncio.run(logger_ran())
    args = [
        "import-legacy",
        str(old),
        "--timezone",
        "Asia/Kolkata",
        "-c",
        str(config),
        "--meter-map",
        str(mapping),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "100 to import, 21 skipped (1 unreadable timestamp; 20 at or after the store's own readings"
        in out
    )
    rows = store_rows(db, "ece-main")
    assert [r[0] for r in rows] == [*range(-99, 1), *range(1, 6)]
    assert rows[99][1] < own_from == rows[100][1]
    assert ("ece-main", "ECE", "1") in sqlite3.connect(db).execute(
        "SELECT meter_id, building, floor FROM meters"
    ).fetchall()  # the configured metadata is kept


def test_daylight_saving_time_is_placed_by_write_order_and_a_missing_hour_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    london = ZoneInfo("Europe/London")
    # autumn: 23:50 to 02:10 UTC around 2023-10-29 01:00Z; local 01:00-01:59 happens twice
    first = datetime(2023, 10, 28, 23, 50, tzinfo=UTC)
    times = [first + timedelta(seconds=5 * k) for k in range(140 * 12)]
    rows = [
        legacy_row("lab", t.astimezone(london).replace(tzinfo=None), watts(k))
        for k, t in enumerate(times)
    ]
    # spring: 01:30 local on 2024-03-31 does not exist (clocks go from 01:00 to 02:00)
    rows += [legacy_row("lab", datetime(2024, 3, 31, 1, 30, s), 1000.0) for s in (0, 5)]
    old = write_legacy(tmp_path / "old.db", rows)
    config = write_config(tmp_path, "Europe/London")
    assert main(["import-legacy", str(old), "--timezone", "Europe/London", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "2 local time inside the spring gap (it does not exist)" in out
    assert "1,440 stamps in a repeated autumn hour, placed by the order they were written in" in out
    stored = store_rows(config.parent / "var" / "smart_meter.db", "lab")
    assert [r[1] for r in stored] == [int(t.timestamp() * 1000) for t in times]
    assert {b[1] - a[1] for a, b in itertools.pairwise(stored)} == {5_000}


def test_power_in_watts_as_stored_is_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        (m, r[1], r[2], r[3], -float(r[4]) * 1000, r[5], r[6])  # type: ignore[arg-type]
        for m, *_ in [("m",)]
        for r in main_meter_rows()
    ]
    old = write_legacy(tmp_path / "old.db", rows)
    config = write_config(tmp_path)
    assert main(["import-legacy", str(old), "--timezone", "Asia/Kolkata", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "power: in W, sign as stored (W: |power| / (voltage × current) is above 0.03" in out
    stored = store_rows(config.parent / "var" / "smart_meter.db", "m")
    assert [r[2] for r in stored] == [watts(k) for k in range(120)]
    # told otherwise, it does as it is told
    capsys.readouterr()
    forced = ["--power-unit", "kW", "--power-sign", "inverted", "--dry-run"]
    assert (
        main(["import-legacy", str(old), "--timezone", "Asia/Kolkata", "-c", str(config), *forced])
        == 0
    )
    assert "power: in kW, sign inverted (as given)" in capsys.readouterr().out


def test_a_toml_meter_map(
    legacy: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, config, _ = legacy
    mapping = config.parent / "meters.toml"
    mapping.write_text('[meters]\n"Main Meter" = "main"\n"SIM 2" = "sim-2"\n', encoding="utf-8")
    args = ["import-legacy", str(old), "--timezone", "Asia/Kolkata", "-c", str(config)]
    assert main([*args, "--meter-map", str(mapping), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'Main Meter' → main (" in out and "'SIM 2' → sim-2 (" in out
    assert main([*args, "--dry-run"]) == 0  # by default: the legacy ids made into ours
    out = capsys.readouterr().out
    assert "'Main Meter' → main-meter (" in out and "'SIM 2' → sim-2 (" in out


def test_bad_input_is_counted_or_refused_with_a_message(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("meter_id,timestamp\n" * 200, encoding="utf-8")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE readings (x)")
    conn.close()
    narrow = tmp_path / "narrow.db"
    with sqlite3.connect(narrow) as conn:
        conn.execute("CREATE TABLE meter_readings (meter_id TEXT, timestamp TEXT, power REAL)")
    conn.close()
    good = write_legacy(tmp_path / "good.db", main_meter_rows()[:3])
    twins = write_legacy(tmp_path / "twins.db", [legacy_row(m, START, 1.0) for m in ("A B", "a-b")])
    bad_map = tmp_path / "bad.csv"
    bad_map.write_text("Main Meter,Main Meter\n", encoding="utf-8")
    cases = [
        ([str(text)], 1, "is not a readable SQLite database"),
        ([str(other)], 1, "has no table meter_readings"),
        ([str(narrow)], 1, "lacks voltage, current, energy_wh_interval, pf"),
        ([str(tmp_path / "missing.db")], 2, "no such file"),
        ([str(good), "--timezone", "Mars/Olympus"], 2, "unknown IANA time zone"),
        ([str(good), "--meter-map", str(bad_map)], 2, "ids use only a-z"),
        ([str(twins)], 2, "would both become 'a-b'"),
    ]
    for extra, code, message in cases:
        args = ["import-legacy", "--timezone", "Asia/Kolkata", "-c", str(config), *extra]
        result = run_cli(*args)
        assert (result.returncode, message in result.stderr) == (code, True), (extra, result)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()
