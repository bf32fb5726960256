"""`campus-energy import-legacy` of a meter that exported: the power below zero becomes export.

The original logger stored a signed power (kW, sign inverted) and a signed interval energy.
Imported, each interval is split at the zero crossing of its trapezoid into import and export
(as the logger splits it), both cumulative totals end at 0 Wh where the logger's own begin,
and the report sets the net against the legacy energy.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from tests.integration.test_import_legacy import START, write_config, write_legacy
from tests.support.processes import run_cli

COUNT = 40


def watts(k: int) -> float:
    return 1500.0 - 52.0 * k  # below zero from k = 29: the roof's panels outproduce the load


def expected() -> tuple[list[float], list[float]]:
    """By hand: each 5 s trapezoid, split where the line crosses zero."""
    imported, exported = [0.0], [0.0]
    for k in range(1, COUNT):
        a, b = watts(k - 1), watts(k)
        if a >= 0 and b >= 0:
            imported.append((a + b) / 2 * 5 / 3600)
            exported.append(0.0)
        elif a <= 0 and b <= 0:
            imported.append(0.0)
            exported.append(-(a + b) / 2 * 5 / 3600)
        else:  # a > 0 > b: importing until a / (a - b) of the 5 s
            crossing = 5 * a / (a - b)
            imported.append(a / 2 * crossing / 3600)
            exported.append(-b / 2 * (5 - crossing) / 3600)
    return imported, exported


def test_an_exporting_meters_history_is_split_by_direction(tmp_path: Path) -> None:
    rows = []
    for k in range(COUNT):
        w = watts(k)
        moment = START + timedelta(seconds=5 * k)
        amps = abs(w) / 230.0 / 0.95
        rows.append(
            ("PV Block", f"{moment:%Y-%m-%d %H:%M:%S}", 230.0, amps, -w / 1000, w * 5 / 3600, 0.95)
        )
    old = write_legacy(tmp_path / "old.db", rows)
    config = write_config(tmp_path)
    result = run_cli("import-legacy", str(old), "--timezone", "Asia/Kolkata", "-c", str(config))
    assert result.returncode == 0, result.stderr
    db = config.parent / "var" / "smart_meter.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        stored = conn.execute(
            "SELECT energy_wh, energy_export_wh, energy_total_wh, energy_export_total_wh "
            "FROM readings ORDER BY ts_ms"
        ).fetchall()
    finally:
        conn.close()
    imported, exported = expected()
    assert [r[0] for r in stored] == pytest.approx(imported, abs=1e-6)
    assert [r[1] for r in stored] == pytest.approx(exported, abs=1e-6)
    assert sum(exported) > 1.0 and sum(imported) > 10.0
    assert stored[-1][2] == stored[-1][3] == 0.0  # both totals end where the logger's begin
    running = [0.0, 0.0]
    for energy, export, total, export_total in reversed(stored):  # back from the end
        assert (total, export_total) == pytest.approx(running, abs=1e-6)
        running = [running[0] - energy, running[1] - export]
    net = sum(imported) - sum(exported)
    legacy = sum(watts(k) * 5 / 3600 for k in range(COUNT))
    out = result.stdout
    assert f"ours (trapezoid over the time between stamps) {net:,.3f} Wh" in out
    assert f"legacy Σ energy_wh_interval {legacy:,.3f} Wh" in out
    assert f"import {sum(imported):,.3f} Wh and export {sum(exported):,.3f} Wh" in out
