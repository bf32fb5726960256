"""The legacy dashboard's way: every raw row of the range into a DataFrame, then sum or resample."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

HOUR_MS = 3_600_000
# the columns of the legacy meter_readings table, read from the store's `readings` view
LEGACY_COLUMNS = (
    "meter_id",
    "ts_ms",
    "voltage_v",
    "current_a",
    "power_w",
    "energy_wh",
    "power_factor",
)


def raw(
    conn: sqlite3.Connection,
    columns: Sequence[str],
    start: int,
    end: int,
    zone: ZoneInfo,
    meter_ids: Sequence[str] = (),
) -> pd.DataFrame:
    """The legacy dashboard's load: every raw row of the range, with its local time."""
    sql = f"SELECT {', '.join(columns)} FROM readings WHERE ts_ms >= ? AND ts_ms < ?"
    params: list[Any] = [start, end]
    if meter_ids:
        sql += f" AND meter_id IN ({', '.join('?' for _ in meter_ids)})"
        params += meter_ids
    frame = pd.read_sql(sql, conn, params=params)
    frame["time"] = pd.to_datetime(frame["ts_ms"], unit="ms", utc=True).dt.tz_convert(zone.key)
    return frame


def energy_sum(conn: sqlite3.Connection, start: int, end: int, zone: ZoneInfo) -> float:
    """Wh of every meter over [start, end): the raw rows' energy_wh summed."""
    return float(raw(conn, LEGACY_COLUMNS, start, end, zone)["energy_wh"].sum())


def energy_grouped(
    conn: sqlite3.Connection,
    key_of: Mapping[str, int],
    bounds: Sequence[int],
    freq: str,
    zone: ZoneInfo,
) -> dict[int, list[float]]:
    """Wh per meter (by key) and interval: the raw rows resampled per meter at `freq`."""
    frame = raw(conn, ("meter_id", "ts_ms", "energy_wh"), bounds[0], bounds[-1], zone)
    sums = frame.groupby(["meter_id", pd.Grouper(key="time", freq=freq)])["energy_wh"].sum()
    index = {b: i for i, b in enumerate(bounds)}
    found = {k: [0.0] * (len(bounds) - 1) for k in key_of.values()}
    for (meter_id, start), wh in sums.items():
        found[key_of[meter_id]][index[round(start.timestamp() * 1000)]] = float(wh)
    return found


def mean_power(
    conn: sqlite3.Connection,
    start: int,
    end: int,
    bucket_ms: int,
    freq: str,
    zone: ZoneInfo,
    meter_ids: Sequence[str] = (),
) -> list[tuple[str, int, float]]:
    """W per meter and bucket: Σ energy ÷ Σ time since each reading's predecessor (read
    from one bucket before `start`, so the first reading of the range has one)."""
    columns = ("meter_id", "ts_ms", "energy_wh")
    frame = raw(conn, columns, start - bucket_ms, end, zone, meter_ids)
    frame = frame.sort_values("ts_ms", kind="stable")
    frame["dt"] = frame.groupby("meter_id")["ts_ms"].diff()
    frame = frame[frame["ts_ms"] >= start]
    sums = frame.groupby(["meter_id", pd.Grouper(key="time", freq=freq)])[["energy_wh", "dt"]].sum()
    sums = sums[sums["dt"] > 0]
    return [
        (m, round(t.timestamp() * 1000), float(wh * HOUR_MS / dt))
        for (m, t), (wh, dt) in zip(sums.index, sums.to_numpy(), strict=True)
    ]
