"""`campus-energy fix-db` on real store files: written by the logger's store, corrupted with SQL.

Each store holds two meters whose readings come from the project's integrator,
some of them acknowledged by the broker. The corruptions are the ones stores
really suffer: a boot before NTP (1970 stamps), local time written as UTC, seconds
where milliseconds belong, and duplicated readings.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.support.logger_store import (
    METERS,
    PUBLISHED,
    T0,
    power,
    write_config,
    write_store,
)
from tests.support.net import free_port
from tests.support.processes import campus_energy, run_cli
from tests.support.services import serving_process
from tests.support.waiting import eventually

from campus_energy.cli import main
from campus_energy.config import load_config
from campus_energy.logger.store import time_ordered
from campus_energy.meters.simulator.server import Simulator

IST = 19_800_000  # Asia/Kolkata's UTC offset, ms


def sql(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def readings_in(path: Path) -> int:
    """How many readings the store holds of the first meter (0 until its schema exists)."""
    try:
        return len(table(path, METERS[0])) if path.exists() else 0
    except sqlite3.OperationalError:  # created, schema not yet written
        return 0


def table(path: Path, meter: str) -> list[tuple[int, int, float, float]]:
    """(seq, ts_ms, energy_wh, energy_total_wh) of a meter, in time order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT seq, ts_ms, energy_wh, energy_total_wh FROM readings WHERE meter_id = ? "
            "ORDER BY ts_ms",
            (meter,),
        ).fetchall()
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CORRUPTIONS = (
    # ece-f1-001: the first 40 readings stamped after a boot without a clock (1970)
    f"UPDATE samples SET ts_ms = ts_ms - {T0 - 10_000} WHERE meter = 1 AND seq <= 40",
    # ... and readings 250-259 stored a second time, three hours later
    "INSERT INTO samples (meter, ts_ms, seq, voltage, current, power, pf, freq, import_energy, "
    "energy, energy_total, extra) SELECT meter, ts_ms + 10800000, seq, voltage, current, power, "
    "pf, freq, import_energy, energy, energy_total, extra FROM samples WHERE meter = 1 "
    "AND seq BETWEEN 250 AND 259",
    # mech-f2-001: readings 100-150 in local time (Asia/Kolkata) as if it were UTC
    f"UPDATE samples SET ts_ms = ts_ms + {IST} WHERE meter = 2 AND seq BETWEEN 100 AND 150",
    # ... 200-210 in seconds, 220-222 as text, 230 with a fraction of a millisecond
    "UPDATE samples SET ts_ms = ts_ms / 1000 WHERE meter = 2 AND seq BETWEEN 200 AND 210",
    "UPDATE samples SET ts_ms = strftime('%Y-%m-%d %H:%M:%f', ts_ms / 1000.0, 'unixepoch') "
    "WHERE meter = 2 AND seq BETWEEN 220 AND 222",
    "UPDATE samples SET ts_ms = ts_ms + 0.5 WHERE meter = 2 AND seq = 230",
)


@pytest.fixture
def corrupted(tmp_path: Path) -> tuple[Path, Path, dict[str, list[tuple[int, int, float, float]]]]:
    """(config, store, the readings before the corruption)."""
    config = write_config(tmp_path)
    db = load_config(config, {}).storage.path
    asyncio.run(write_store(db))
    original = {m: table(db, m) for m in METERS}
    sql(db, *CORRUPTIONS)
    return config, db, original


def test_dry_run_reports_every_corruption_and_changes_nothing(
    corrupted: tuple[Path, Path, dict[str, Any]],
) -> None:
    config, db, _ = corrupted
    before = digest(db)
    result = run_cli("fix-db", "-c", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dry run: nothing is changed" in out
    assert "before clock sync: 40 readings (seq 1–40)" in out
    assert "stamped 1970-01-01T00:00:10.000Z … 1970-01-01T00:03:25.000Z" in out
    assert "re-anchored to seq 41 at 5 s per reading" in out
    assert "duplicates: 10 extra copies of readings, removed" in out
    assert "local time stored as UTC: 51 readings (seq 100–150)" in out
    assert "−05:30:00: the site zone's UTC offset taken off" in out
    assert "seconds instead of milliseconds: 11 readings (seq 200–210)" in out
    assert "stamped '2026-01-01 00:18:15.000' … '2026-01-01 00:18:25.000'" in out
    assert "fractional milliseconds: 1 reading (seq 230–230)" in out
    assert "campus-energy reconcile --start 2026-01-01T00:00:00Z" in out
    assert "summary: 2 of 2 meters to repair: 106 readings retimed, 10 removed" in out
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["smart_meter.db"]


def test_apply_backs_up_then_repairs_everything_in_one_go(
    corrupted: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    config, db, original = corrupted
    damaged = {m: table(db, m) for m in METERS}
    backup = tmp_path / "before-fix.db"
    result = run_cli("fix-db", "-c", str(config), "--apply", "--backup", str(backup))
    assert result.returncode == 0, result.stderr
    assert f"backup: {backup}" in result.stdout
    assert "repaired 2 meters in one transaction" in result.stdout
    # the backup is a whole, readable copy of the store as it was
    assert {m: table(backup, m) for m in METERS} == damaged
    # the store has every reading back where it was, with its energy and total
    assert {m: table(db, m) for m in METERS} == original
    with sqlite3.connect(db) as conn:
        cursors = conn.execute("SELECT published_seq, published_ts_ms FROM meters").fetchall()
        assert cursors == [(PUBLISHED, T0 + (PUBLISHED - 1) * 5_000)] * 2
        assert conn.execute("SELECT value FROM meta WHERE key = 'fix_db'").fetchone()
    conn.close()
    # a second run finds nothing and touches nothing
    settled = digest(db)
    again = run_cli("fix-db", "-c", str(config), "--apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("no problems found") == 2
    assert "nothing to repair: no backup made, nothing changed" in again.stdout
    assert digest(db) == settled


def test_energy_is_recomputed_and_later_totals_follow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reading after a 1970 span was stored as after a gap (no energy): the repair puts
    the span 5 s before it, integrates that interval and moves every later total."""
    config = write_config(tmp_path)
    db = load_config(config, {}).storage.path
    asyncio.run(write_store(db))
    original = table(db, METERS[0])
    lost_uwh = round(original[40][2] * 1e6)
    stamp = {seq: ts for seq, ts, _, _ in original}
    sql(
        db,
        # the logger noted a gap inside the span, and one before seq 41
        f"INSERT INTO gaps VALUES (1, {stamp[10]}, {stamp[11]})",
        f"INSERT INTO gaps VALUES (1, {stamp[40]}, {stamp[41]})",
        f"UPDATE gaps SET start_ts_ms = start_ts_ms - {T0 - 10_000}, "
        f"end_ts_ms = end_ts_ms - {T0 - 10_000} WHERE start_ts_ms = {stamp[10]}",
        f"UPDATE gaps SET start_ts_ms = start_ts_ms - {T0 - 10_000} "
        f"WHERE start_ts_ms = {stamp[40]}",
        f"UPDATE samples SET ts_ms = ts_ms - {T0 - 10_000} WHERE meter = 1 AND seq <= 40",
        "UPDATE samples SET energy = 0 WHERE meter = 1 AND seq = 41",
        f"UPDATE samples SET energy_total = energy_total - {lost_uwh} "
        "WHERE meter = 1 AND seq >= 41",
    )
    assert main(["fix-db", "-c", str(config), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "cumulative totals from seq 41 on move by +" in out
    repaired = table(db, METERS[0])
    # by hand: the trapezoid of readings 40 and 41 over the 5 s between them
    assert repaired[40][2] == pytest.approx((power(39) + power(40)) / 2 * 5 / 3600, abs=1e-6)
    assert repaired == original
    for before, after in itertools.pairwise(repaired):
        assert after[3] == pytest.approx(before[3] + after[2], abs=1e-6)
    # the gap inside the span moved with it; the interval before seq 41 is integrated now
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT * FROM gaps").fetchall() == [(1, stamp[10], stamp[11])]
    conn.close()


def test_a_meter_the_configuration_does_not_know_gets_its_interval_from_its_readings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "elsewhere.db"
    asyncio.run(write_store(db))
    sql(db, f"UPDATE samples SET ts_ms = ts_ms - {T0 - 10_000} WHERE meter = 2 AND seq <= 5")
    empty_config = tmp_path / "none.toml"
    empty_config.write_text('[site]\ntimezone = "Asia/Kolkata"\n', encoding="utf-8")
    assert main(["fix-db", "-c", str(empty_config), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "poll interval 5 s, estimated from its readings; max gap 17.5 s" in out
    assert "before clock sync: 5 readings (seq 1–5)" in out


async def test_apply_refuses_while_the_logger_runs(tmp_path: Path) -> None:
    bus_port = free_port()
    config_file = write_config(tmp_path, bus_port, interval_s=0.5)
    config = load_config(config_file, {})
    db = config.storage.path
    async with Simulator(config):
        with serving_process(
            campus_energy("logger", "-c", config_file), tmp_path / "logger.log", stop_timeout=20
        ):
            await eventually(lambda: readings_in(db) >= 3)
            before = table(db, METERS[0])
            refused = await asyncio.to_thread(run_cli, "fix-db", "-c", config_file, "--apply")
            dry = await asyncio.to_thread(run_cli, "fix-db", "-c", config_file)
    assert refused.returncode == 1
    assert "is open in another process" in refused.stderr
    assert "systemctl stop campus-energy-logger" in refused.stderr
    assert not list(db.parent.glob("*.bak"))
    assert dry.returncode == 0, dry.stderr
    assert "another process has the store open" in dry.stdout
    assert table(db, METERS[0])[: len(before)] == before
    # once the logger has stopped, the store is the command's alone
    after = run_cli("fix-db", "-c", str(config_file), "--apply")
    assert after.returncode == 0, after.stderr
    assert "nothing to repair" in after.stdout


def test_bad_input_gives_a_message_and_an_exit_code(
    corrupted: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    config, db, _ = corrupted
    before = digest(db)
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100, encoding="utf-8")
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE t (x)")
    taken = tmp_path / "taken.bak"
    taken.write_bytes(b"keep me")
    cases = [
        (["--db", str(text)], 1, "file is not a database"),
        (["--db", str(other)], 1, "is not a campus-energy store"),
        (["--db", str(tmp_path / "missing.db")], 1, "does not exist"),
        (["--backup", str(taken)], 2, "--backup goes with --apply"),
        (["--apply", "--backup", str(taken)], 1, "exists already"),
        (["--timezone", "Mars/Olympus"], 2, "unknown IANA time zone"),
        (["--not-before", "last year"], 2, "expected a day"),
    ]
    for extra, code, message in cases:
        result = run_cli("fix-db", "-c", str(config), *extra)
        assert (result.returncode, message in result.stderr) == (code, True), (extra, result)
        assert "Traceback" not in result.stderr
    assert digest(db) == before
    assert taken.read_bytes() == b"keep me"


def to_meter_order(path: Path) -> None:
    """The store as a version before schema 2 made it: readings kept by meter, no spans."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP VIEW latest_readings")
        conn.execute("DROP VIEW readings")
        conn.execute("DROP TRIGGER samples_span_insert")
        conn.execute("DROP TRIGGER samples_span_update")
        conn.execute(
            "CREATE TABLE by_meter (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, "
            "seq INTEGER NOT NULL, voltage INTEGER, current INTEGER, power INTEGER, pf INTEGER, "
            "freq INTEGER, import_energy INTEGER, energy INTEGER NOT NULL, "
            "energy_total INTEGER NOT NULL, extra TEXT, PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO by_meter SELECT meter, ts_ms, seq, voltage, current, power, pf, freq, "
            "import_energy, energy, energy_total, extra FROM samples"
        )
        conn.execute("DROP TABLE samples")
        conn.execute("ALTER TABLE by_meter RENAME TO samples")
        conn.execute("ALTER TABLE meters DROP COLUMN first_ts_ms")
        conn.execute("ALTER TABLE meters DROP COLUMN last_ts_ms")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()


def samples_of(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM samples ORDER BY meter, ts_ms").fetchall()
    finally:
        conn.close()


def test_reorder_rewrites_a_store_kept_by_meter_in_time_order(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = load_config(config, {}).storage.path
    asyncio.run(write_store(db))
    readings = {m: table(db, m) for m in METERS}
    rows = samples_of(db)
    to_meter_order(db)
    with sqlite3.connect(db) as conn:
        assert not time_ordered(conn)
    conn.close()

    dry = run_cli("fix-db", "-c", str(config))
    assert dry.returncode == 0, dry.stderr
    assert "--reorder --apply rewrites them in time order" in dry.stdout
    assert run_cli("fix-db", "-c", str(config), "--reorder").returncode == 2

    done = run_cli("fix-db", "-c", str(config), "--reorder", "--apply")
    assert done.returncode == 0, done.stderr
    assert f"reordered: {len(rows):,} readings rewritten in time order" in done.stdout
    assert "backup: " in done.stdout
    assert samples_of(db) == rows  # every value as it was
    assert {m: table(db, m) for m in METERS} == readings
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert time_ordered(conn)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "3",
        )
        spans = conn.execute(
            "SELECT meter_id, first_ts_ms, last_ts_ms FROM meters ORDER BY meter_id"
        ).fetchall()
        ends = conn.execute(
            "SELECT m.meter_id, min(s.ts_ms), max(s.ts_ms) FROM meters m "
            "JOIN samples s ON s.meter = m.id GROUP BY m.meter_id ORDER BY m.meter_id"
        ).fetchall()
        assert spans == ends
        latest = conn.execute("SELECT meter_id, seq FROM latest_readings ORDER BY 1").fetchall()
        assert latest == [(m, readings[m][-1][0]) for m in sorted(METERS)]
    conn.close()

    again = run_cli("fix-db", "-c", str(config), "--reorder", "--apply")
    assert again.returncode == 0, again.stderr
    assert "order:" not in again.stdout and "reordered" not in again.stdout
