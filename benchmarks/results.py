"""The headline figures of a benchmark script, machine-readable, for `benchmarks/report.py`.

A script calls `record()` for each figure its printed tables already compute
(ours next to the baseline of the same run) and `emit()` once at the end.
`emit()` writes nothing unless `CAMPUS_ENERGY_BENCH_RESULTS` names a folder; then
it adds the rows to `<folder>/<script>.json` (a JSON list of rows; rows already
in the file are kept, so a script run in parts or a child process that records
nothing leaves the file whole).

`CAMPUS_ENERGY_BENCH_QUICK=1` asks for quick mode: `sized(full, quick)` gives a
size constant its smaller value, so that a script runs in about a minute.

The ratio of a row is "baseline/ours" or "ours/baseline", as the script prints
it; `better` says which way the figure itself is better ("lower" or "higher").
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

RESULTS_ENV = "CAMPUS_ENERGY_BENCH_RESULTS"
QUICK_ENV = "CAMPUS_ENERGY_BENCH_QUICK"

Better = Literal["lower", "higher"]
Ratio = Literal["baseline/ours", "ours/baseline"]
T = TypeVar("T")

_rows: list[dict[str, Any]] = []


def quick() -> bool:
    """Whether quick mode was asked for (smaller sizes, same measurements)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def sized(full: T, small: T) -> T:
    """`small` in quick mode, else `full`."""
    return small if quick() else full


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def record(
    tier: str,
    figure: str,
    ours: float | None,
    baseline: float | None,
    unit: str,
    note: str = "",
    *,
    better: Better = "lower",
    ratio: Ratio | None = None,
) -> None:
    """Keep one figure. `ratio` defaults to the way that makes > 1 mean ours is better."""
    if ratio is None:
        ratio = "baseline/ours" if better == "lower" else "ours/baseline"
    _rows.append(
        {
            "tier": tier,
            "figure": figure,
            "ours": _number(ours),
            "baseline": _number(baseline),
            "unit": unit,
            "ratio": ratio,
            "better": better,
            "note": note,
        }
    )


def rows() -> list[dict[str, Any]]:
    return list(_rows)


def emit(script: str | None = None) -> Path | None:
    """Add the recorded rows to `$CAMPUS_ENERGY_BENCH_RESULTS/<script>.json`; the path or None."""
    folder = os.environ.get(RESULTS_ENV)
    if not folder or not _rows:
        return None
    name = script or Path(sys.argv[0]).stem
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    found: list[dict[str, Any]] = []
    if path.exists():
        try:
            found = list(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            found = []
    path.write_text(json.dumps(found + _rows, indent=1, ensure_ascii=False), encoding="utf-8")
    _rows.clear()
    return path
