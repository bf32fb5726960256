"""`campus-energy fix-db --apply` on stores of meters that export (rooftop PV) and estimate.

Both meters' power changes sign every five minutes, so intervals the repair
recomputes hold import and export. ece-f1-001 booted without a clock (its first
40 readings stamped in 1970) and left the interval after them unintegrated;
mech-f2-001 lost a minute of polls mid-day (the registers' estimate of it rides
on the next reading), came back stamping 1970 until NTP set the clock, and later
stored half an hour of local time as UTC. The repair must give back the store
as the logger wrote it: each direction recomputed (split at the zero crossing),
every cumulative import and export still the sum of the readings', and every
estimate where it was, covering the time since the reading before it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import operator
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.support.logger_store import METERS, T0, write_config
from tests.support.processes import run_cli

from campus_energy.config import load_config
from campus_energy.core.energy import MeterState, advance, split_trapezoid_uwh
from campus_energy.core.readings import Reading
from campus_energy.logger.store import MeterRecord, ReadingStore

COUNT = 300
IST = 19_800_000  # Asia/Kolkata's UTC offset, ms
TO_1970 = T0 - 10_000  # what a clock never set takes off a stamp
OUTAGE = (149, 150)  # mech-f2-001: the polls between these readings (k) were lost, 60 s
OUTAGE_MS = 55_000  # time beyond the usual 5 s
ESTIMATE_UWH = (21_000_000, 4_000_000)  # what its import and export registers moved meanwhile
COLUMNS = (
    "seq, ts_ms, energy, energy_total, energy_export, energy_export_total, estimated, "
    "estimated_export"
)


def power(k: int) -> float:
    """Exports from k = 40 to 99, 160 to 219, 280 on: the sign changes between 39 and 40."""
    return round(-2500 * math.sin((k - 39.4) * math.pi / 60), 1)


def stamp(meter: str, k: int) -> int:
    late = OUTAGE_MS if meter == METERS[1] and k >= OUTAGE[1] else 0
    return T0 + k * 5_000 + late


def readings(meter: str) -> list[Reading]:
    """COUNT readings by the logger's integrator: the outage left unintegrated, estimated."""
    state, found = MeterState(), []
    for k in range(COUNT):
        ts = stamp(meter, k)
        step, state = advance(
            state, power_w=power(k), wall_s=ts / 1000, mono_s=ts / 1000, max_gap_s=17.5
        )
        estimated = meter == METERS[1] and k == OUTAGE[1]
        assert (step.gap_s is not None) == estimated
        found.append(
            Reading(
                meter,
                step.ts_ms,
                step.seq,
                step.energy_uwh,
                step.total_uwh,
                {"power_w": power(k), "voltage_v": 230.0},
                export_uwh=step.export_uwh,
                export_total_uwh=step.export_total_uwh,
                estimated_uwh=ESTIMATE_UWH[0] if estimated else None,
                estimated_export_uwh=ESTIMATE_UWH[1] if estimated else None,
            )
        )
    return found


async def write_store(path: Path) -> None:
    store = ReadingStore(path)
    try:
        await store.register(MeterRecord(m, "Sports", "0") for m in METERS)
        for meter in METERS:
            await store.insert_many(readings(meter))
    finally:
        await store.close()


def samples(path: Path) -> dict[int, list[tuple[Any, ...]]]:
    """Each meter's readings (COLUMNS), in time order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            key: conn.execute(
                f"SELECT {COLUMNS} FROM samples WHERE meter = ? ORDER BY ts_ms", (key,)
            ).fetchall()
            for key in (1, 2)
        }
    finally:
        conn.close()


def sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def damage(path: Path) -> tuple[int, int]:
    """Stamps gone wrong, as in test_fixdb; ece-f1-001's interval after its 1970 span stored
    as a gap. What that interval held, (import, export) µWh."""
    conn = sqlite3.connect(path)
    try:
        lost = conn.execute(
            "SELECT energy, energy_export FROM samples WHERE meter = 1 AND seq = 41"
        ).fetchone()
    finally:
        conn.close()
    gap = (stamp(METERS[1], OUTAGE[0]), stamp(METERS[1], OUTAGE[1]) - TO_1970)
    sql(
        path,
        # ece-f1-001: a boot without a clock, and the logger saw a gap after it
        f"UPDATE samples SET ts_ms = ts_ms - {TO_1970} WHERE meter = 1 AND seq <= 40",
        "UPDATE samples SET energy = 0, energy_export = 0 WHERE meter = 1 AND seq = 41",
        f"UPDATE samples SET energy_total = energy_total - {lost[0]}, "
        f"energy_export_total = energy_export_total - {lost[1]} WHERE meter = 1 AND seq >= 41",
        # mech-f2-001: back from the outage without a clock (seq 151-171), the gap noted
        f"UPDATE samples SET ts_ms = ts_ms - {TO_1970} WHERE meter = 2 AND seq BETWEEN 151 AND 171",
        f"INSERT INTO gaps VALUES (2, {gap[0]}, {gap[1]})",
        # ... and later half an hour in local time as if it were UTC
        f"UPDATE samples SET ts_ms = ts_ms + {IST} WHERE meter = 2 AND seq BETWEEN 201 AND 231",
    )
    return lost


def estimate_starts(path: Path) -> list[tuple[int, int | None, int]]:
    """(seq, start, end) of mech-f2-001's estimates, as the store frames its readings."""

    async def framed() -> list[Reading]:
        store = ReadingStore(path)
        try:
            return await store.readings_around(METERS[1], 0, 2**53)
        finally:
            await store.close()

    return [(r.seq, r.estimated_start_ms, r.ts_ms) for r in asyncio.run(framed()) if r.estimated]


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Path, Path, dict[int, list[tuple[Any, ...]]]]:
    """(config, store, its readings as the logger wrote them, before the damage)."""
    config = write_config(tmp_path)
    db = load_config(config, {}).storage.path
    asyncio.run(write_store(db))
    return config, db, samples(db)


def test_a_repair_recomputes_both_directions_and_keeps_the_estimates(
    stores: tuple[Path, Path, dict[int, list[tuple[Any, ...]]]],
) -> None:
    config, db, original = stores
    lost = damage(db)
    assert lost[0] > 0 and lost[1] > 0  # the interval turns from import to export
    damaged = samples(db)
    damaged_starts = estimate_starts(db)

    dry = run_cli("fix-db", "-c", str(config))
    assert dry.returncode == 0, dry.stderr
    assert f"export: 0.000000 Wh before, {lost[1] / 1e6:.6f} Wh after; " in dry.stdout
    assert f"cumulative export from seq 41 on moves by +{lost[1] / 1e6:.6f} Wh" in dry.stdout
    assert samples(db) == damaged

    done = run_cli("fix-db", "-c", str(config), "--apply", "--backup", str(db.with_name("b.db")))
    assert done.returncode == 0, done.stderr
    assert "repaired 2 meters in one transaction" in done.stdout
    repaired = samples(db)

    # every reading back as the logger wrote it: stamps, both directions, both totals, estimates
    assert repaired == original
    for key, rows in repaired.items():
        assert [r[0] for r in rows] == list(range(1, COUNT + 1)), key  # in seq order again
        imported = list(itertools.accumulate(r[2] for r in rows))
        exported = list(itertools.accumulate(r[4] for r in rows))
        assert [r[3] for r in rows] == imported, key
        assert [r[5] for r in rows] == exported, key
        assert exported[-1] > 100_000_000  # it did export, over 100 Wh

    # the recomputed interval by hand: the trapezoid of readings 40 and 41 over the 5 s
    # between them, split where the power crosses zero
    seq41 = repaired[1][40]
    assert (seq41[2], seq41[4]) == split_trapezoid_uwh(power(39), power(40), 5.0) == lost
    # and every other interval of both meters, those the repair recomputed among them
    for key, meter in enumerate(METERS, start=1):
        for row in repaired[key][1:]:
            k = row[0] - 1
            step_s = (stamp(meter, k) - stamp(meter, k - 1)) / 1000
            split = (0, 0) if step_s > 17.5 else split_trapezoid_uwh(power(k - 1), power(k), step_s)
            assert (row[2], row[4]) == split, (meter, k)

    # the estimate untouched, on the reading after the outage, whose interval is a gap again
    estimates = {
        key: [(r[0], r[6], r[7]) for r in rows if r[6] is not None]
        for key, rows in repaired.items()
    }
    assert estimates == {1: [], 2: [(OUTAGE[1] + 1, *ESTIMATE_UWH)]}
    assert sorted(r[:1] + r[6:] for r in repaired[2]) == sorted(r[:1] + r[6:] for r in damaged[2])
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        gaps = conn.execute("SELECT * FROM gaps").fetchall()
    finally:
        conn.close()
    start, end = stamp(METERS[1], OUTAGE[0]), stamp(METERS[1], OUTAGE[1])
    assert gaps == [(2, start, end)]

    # the estimate covers the minute since the reading before it again (in the damaged store
    # its reading came first in time, stamped 1970: its estimate started nowhere)
    assert estimate_starts(db) == [(OUTAGE[1] + 1, start, end)]
    assert damaged_starts == []


def to_signed_schema_1(path: Path) -> None:
    """The store as a logger before directions kept it: one signed energy per interval and
    its cumulative sum (import − export), readings by meter, no spans (schema 1)."""
    sql(
        path,
        "DROP VIEW latest_readings",
        "DROP VIEW readings",
        "DROP TRIGGER samples_span_insert",
        "DROP TRIGGER samples_span_update",
        "CREATE TABLE by_meter (meter INTEGER NOT NULL, ts_ms INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, voltage INTEGER, current INTEGER, power INTEGER, pf INTEGER, "
        "freq INTEGER, import_energy INTEGER, energy INTEGER NOT NULL, "
        "energy_total INTEGER NOT NULL, extra TEXT, PRIMARY KEY (meter, ts_ms)) WITHOUT ROWID",
        "INSERT INTO by_meter SELECT meter, ts_ms, seq, voltage, current, power, pf, freq, "
        "import_energy, energy - energy_export, energy_total - energy_export_total, extra "
        "FROM samples",
        "DROP TABLE samples",
        "ALTER TABLE by_meter RENAME TO samples",
        "ALTER TABLE meters DROP COLUMN first_ts_ms",
        "ALTER TABLE meters DROP COLUMN last_ts_ms",
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
    )


def signed(path: Path) -> list[tuple[int, int, int, int]]:
    """(seq, ts_ms, energy, energy_total) of ece-f1-001 in a schema 1 store, in time order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT seq, ts_ms, energy, energy_total FROM samples WHERE meter = 1 ORDER BY ts_ms"
        ).fetchall()
    finally:
        conn.close()


def test_a_store_made_before_directions_gets_the_signed_energy_its_logger_kept(
    stores: tuple[Path, Path, dict[int, list[tuple[Any, ...]]]],
) -> None:
    config, db, _ = stores
    to_signed_schema_1(db)
    original = signed(db)
    net = original[40][2]
    assert net == operator.sub(*split_trapezoid_uwh(power(39), power(40), 5.0))
    sql(
        db,
        f"UPDATE samples SET ts_ms = ts_ms - {TO_1970} WHERE meter = 1 AND seq <= 40",
        "UPDATE samples SET energy = 0 WHERE meter = 1 AND seq = 41",
        f"UPDATE samples SET energy_total = energy_total - {net} WHERE meter = 1 AND seq >= 41",
    )

    done = run_cli("fix-db", "-c", str(config), "--apply")
    assert done.returncode == 0, done.stderr
    assert f"0.000000 Wh before, {net / 1e6:.6f} Wh after" in done.stdout
    assert "export:" not in done.stdout
    assert signed(db) == original  # the net: the split's import alone would be its export more
    assert [r[3] for r in original] == list(itertools.accumulate(r[2] for r in original))


def test_an_interval_whose_reading_carries_an_estimate_stays_a_gap_in_a_repair(
    stores: tuple[Path, Path, dict[int, list[tuple[Any, ...]]]],
) -> None:
    """The logger estimated the gap after ece-f1-001's 1970 span from the registers; the
    repair puts the span 5 s before it, short enough to integrate, but the estimate covers
    that interval: measured energy there would count it twice, so it stays a gap."""
    config, db, original = stores
    lost = damage(db)
    assert lost[0] > 0 and lost[1] > 0  # what integrating it would add, in each direction
    sql(
        db,
        "UPDATE samples SET estimated = 40000, estimated_export = 0 WHERE meter = 1 AND seq = 41",
    )
    dry = run_cli("fix-db", "-c", str(config))
    assert dry.returncode == 0, dry.stderr
    notes = [line for line in dry.stdout.splitlines() if "carry an estimate" in line]
    assert notes == [
        "  note: the readings at seq 41 carry an estimate of the gap before them (the "
        "registers' difference); the repair makes that interval short enough to integrate, "
        "but leaves it a gap, which the estimate covers: measured energy over it would count "
        "it twice. Check whether the outage was as short as the repair puts it"
    ]
    meter = dry.stdout.index("meter ece-f1-001")
    assert meter < dry.stdout.index("carry an estimate") < dry.stdout.index("meter mech-f2-001")
    assert "0.000000 Wh before, 0.000000 Wh after; cumulative totals unchanged" in dry.stdout

    done = run_cli("fix-db", "-c", str(config), "--apply", "--backup", str(db.with_name("b.db")))
    assert done.returncode == 0, done.stderr
    rows = samples(db)[1]
    seq41 = rows[40]
    # no measured energy over the interval its estimate covers, the estimate as it was
    assert seq41[:1] + seq41[2:3] + seq41[4:5] + seq41[6:] == (41, 0, 0, 40000, 0)
    assert seq41[1] == original[1][40][1]  # at its own time again, 5 s after seq 40
    # every cumulative total the sum of the readings' measured energy, in each direction
    assert [r[3] for r in rows] == list(itertools.accumulate(r[2] for r in rows))
    assert [r[5] for r in rows] == list(itertools.accumulate(r[4] for r in rows))
    # the rest as the logger wrote it: stamps, energies and, after seq 41, the totals less
    # what that interval measured
    less = [
        (
            *r[:3],
            r[3] - lost[0] if r[0] >= 41 else r[3],
            r[4],
            r[5] - lost[1] if r[0] >= 41 else r[5],
        )
        for r in original[1]
    ]
    assert [r[:6] for r in rows if r[0] != 41] == [r for r in less if r[0] != 41]
    assert samples(db)[2] == original[2]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        gaps = conn.execute("SELECT * FROM gaps WHERE meter = 1").fetchall()
    finally:
        conn.close()
    assert gaps == [(1, original[1][39][1], original[1][40][1])]  # a gap, as the logger had it
