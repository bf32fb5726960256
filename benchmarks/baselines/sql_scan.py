"""The dashboard's energy by a scan in SQL: `sum(energy)` over every row of the range.

What a store without the logger's running totals would have to do: no seeks on
`energy_total`, every `samples` row of the range read and summed (or grouped).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from campus_energy.dashboard.store_queries import UWH


def energy_sum(conn: sqlite3.Connection, keys: Sequence[int], start: int, end: int) -> float:
    """Wh of the meters `keys` over [start, end)."""
    marks = ", ".join("?" for _ in keys)
    uwh = conn.execute(
        f"SELECT sum(energy) FROM samples WHERE meter IN ({marks}) AND ts_ms BETWEEN ? AND ?",
        (*keys, start, end - 1),
    ).fetchone()[0]
    return (uwh or 0) / UWH


def energy_grouped(
    conn: sqlite3.Connection, keys: Sequence[int], bounds: Sequence[int], step_ms: int
) -> dict[int, list[float]]:
    """Wh per meter and interval by GROUP BY over every row (equal intervals only)."""
    marks = ", ".join("?" for _ in keys)
    rows = conn.execute(
        f"SELECT meter, (ts_ms - ?) / ?, sum(energy) FROM samples WHERE meter IN ({marks}) "
        "AND ts_ms >= ? AND ts_ms < ? GROUP BY 1, 2",
        (bounds[0], step_ms, *keys, bounds[0], bounds[-1]),
    ).fetchall()
    found = {k: [0.0] * (len(bounds) - 1) for k in keys}
    for meter, i, uwh in rows:
        found[meter][i] = uwh / UWH
    return found
