"""The local dashboard: the 5-second truth from the logger's SQLite store.

Run with `campus-energy dashboard` (it starts `streamlit run` on this file).
The configuration is found as for every command (`--config` after `--`,
`$CAMPUS_ENERGY_CONFIG`, `./campus-energy.toml`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st

from campus_energy.config import Config, load_config
from campus_energy.dashboard import queries as q
from campus_energy.errors import CampusEnergyError, ConfigError

NOW_ENV = "CAMPUS_ENERGY_DASHBOARD_NOW"  # a fixed instant (ISO 8601 with offset): tests, replays
LIVE_EVERY_S = 5
ONLINE_WITHIN_S = 60
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _config() -> Config:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-c", "--config", type=Path)
    # `streamlit run app.py -- --config FILE` makes sys.argv [app.py, --config, FILE]; under
    # any other runner (a test harness) the command line is not ours to read.
    ours = Path(sys.argv[0]).resolve() == Path(__file__).resolve() if sys.argv else False
    args, _ = parser.parse_known_args(sys.argv[1:] if ours else [])
    return load_config(args.config, os.environ)


def _clock() -> Callable[[], int]:
    """UTC epoch ms now: the host's clock, or the instant `$CAMPUS_ENERGY_DASHBOARD_NOW` names."""
    fixed = os.environ.get(NOW_ENV, "")
    if not fixed:
        return lambda: round(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(fixed)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError.single(NOW_ENV, f"{fixed!r} is not an ISO 8601 time with an offset")
    return lambda: round(moment.timestamp() * 1000)


def _midnight_ms(day: date, zone: ZoneInfo) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def _local(ms_series: pd.Series, zone: ZoneInfo) -> pd.Series:
    return pd.to_datetime(ms_series, unit="ms", utc=True).dt.tz_convert(zone.key)


@st.cache_resource
def _connection(path: str) -> Any:
    return q.connect(Path(path))


@st.cache_data(ttl=5, show_spinner=False)
def _energy(
    path: str, keys: tuple[int, ...], boundaries: tuple[int, ...]
) -> dict[int, list[float]]:
    return q.energy_per_interval(_connection(path), keys, boundaries)


@st.cache_data(ttl=5, show_spinner=False)
def _profile(path: str, keys: tuple[int, ...], start: int, end: int, bucket: int) -> list[Any]:
    return q.power_profile(_connection(path), keys, start, end, bucket)


def main() -> None:
    st.set_page_config(page_title="Campus Energy — local", layout="wide")
    try:
        config = _config()
        clock = _clock()
    except CampusEnergyError as exc:
        st.error(f"Configuration problem: {exc}")
        return
    zone = config.site.zone
    path = str(config.storage.path)
    st.title(f"Campus Energy — {config.site.name}")
    st.caption(f"The logger's store {path} · times in {zone.key}")
    try:
        conn = _connection(path)
        all_meters = q.meters(conn)
    except q.StoreUnavailable as exc:
        _connection.clear()
        st.warning(f"{exc}. Start the logger (`campus-energy logger`) and reload.")
        return
    if not all_meters or not q.has_readings(conn):
        st.info("No readings yet: the store is empty. Start the logger and reload.")
        return

    # --- the sidebar: hierarchy building → floor → meter, and a time range -------------------
    st.sidebar.header("Meters")
    buildings = sorted({m.building or "(no building)" for m in all_meters})
    chosen_buildings = st.sidebar.multiselect("Buildings", buildings, default=buildings)
    in_buildings = [m for m in all_meters if (m.building or "(no building)") in chosen_buildings]
    floors = sorted({m.floor or "—" for m in in_buildings})
    chosen_floors = st.sidebar.multiselect("Floors", floors, default=floors)
    in_floors = [m for m in in_buildings if (m.floor or "—") in chosen_floors]
    ids = [m.meter_id for m in in_floors]
    chosen_ids = st.sidebar.multiselect("Meters", ids, default=ids)
    selected = [m for m in in_floors if m.meter_id in chosen_ids]
    now_ms = clock()
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    picked = st.sidebar.date_input(
        "Range (local days)", value=(today - timedelta(days=6), today), max_value=today
    )
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    first, last = (days[0], days[-1]) if days else (today, today)  # while a range is picked
    if not selected:
        st.info("Select at least one meter in the sidebar.")
        return
    keys = tuple(m.key for m in selected)
    by_key = {m.key: m for m in selected}

    tabs = st.tabs(["Overview", "Live", "History", "Day detail", "Data quality", "Raw data"])
    with tabs[0]:
        _overview(path, conn, selected, keys, by_key, zone, today, now_ms)
    with tabs[1]:
        _live(path, selected, zone, clock)
    with tabs[2]:
        _history(now_ms, path, keys, by_key, zone, first, last)
    with tabs[3]:
        _day_detail(path, keys, zone, today)
    with tabs[4]:
        _quality(conn, keys, zone, first, last)
    with tabs[5]:
        _raw(conn, selected, zone, first, last)


def _overview(
    path: str,
    conn: Any,
    selected: list[q.Meter],
    keys: tuple[int, ...],
    by_key: dict[int, q.Meter],
    zone: ZoneInfo,
    today: date,
    now_ms: int,
) -> None:
    week = today - timedelta(days=today.weekday())
    month = today.replace(day=1)
    bounds = (
        _midnight_ms(month, zone),
        _midnight_ms(week, zone),
        _midnight_ms(today, zone),
        now_ms + 1,
    )
    month_start, week_start, today_start, end = bounds
    spans = {
        "Today": _energy(path, keys, (today_start, end)),
        "This week": _energy(path, keys, (week_start, end)),
        "This month": _energy(path, keys, (month_start, end)),
    }
    cols = st.columns(3)
    for col, (label, per) in zip(cols, spans.items(), strict=True):
        total_kwh = sum(v[0] for v in per.values() if v) / 1000
        col.metric(f"{label} (kWh)", f"{total_kwh:,.3f}")
    st.subheader("Meters now")
    latest = q.latest(conn, keys)
    if latest:
        frame = pd.DataFrame(latest)
        frame["age_s"] = (now_ms - frame["ts_ms"]) / 1000
        frame["status"] = frame["age_s"].map(
            lambda a: "online" if a <= ONLINE_WITHIN_S else "offline"
        )
        frame["last reading"] = _local(frame["ts_ms"], zone).dt.strftime("%Y-%m-%d %H:%M:%S")
        frame = frame.rename(
            columns={
                "power_w": "power (W)",
                "voltage_v": "voltage (V)",
                "current_a": "current (A)",
                "power_factor": "PF",
                "frequency_hz": "frequency (Hz)",
                "meter_id": "meter",
            }
        )
        st.dataframe(
            frame[
                [
                    "meter",
                    "status",
                    "power (W)",
                    "voltage (V)",
                    "current (A)",
                    "PF",
                    "frequency (Hz)",
                    "last reading",
                ]
            ],
            hide_index=True,
        )
    st.subheader("Today by building and meter")
    today_per = spans["Today"]
    rows = [
        {
            "building": by_key[k].building or "(none)",
            "meter": by_key[k].meter_id,
            "energy (kWh)": (v[0] if v else 0.0) / 1000,
        }
        for k, v in today_per.items()
    ]
    breakdown = pd.DataFrame(rows)
    if breakdown["energy (kWh)"].sum() > 0:
        chart = (
            alt.Chart(breakdown)
            .mark_bar()
            .encode(
                x=alt.X("sum(energy (kWh)):Q", title="Energy today (kWh)"),
                y=alt.Y("building:N", title="Building"),
                color=alt.Color("meter:N", title="Meter"),
                tooltip=["building", "meter", "energy (kWh)"],
            )
        )
        st.altair_chart(chart, width="stretch")
    else:
        st.info("No energy recorded today for the selected meters yet.")


def _live(path: str, selected: list[q.Meter], zone: ZoneInfo, clock: Callable[[], int]) -> None:
    minutes = st.slider("Last minutes", 5, 120, 15, key="live_minutes")

    @st.fragment(run_every=LIVE_EVERY_S)
    def live() -> None:
        now_ms = clock()
        start = now_ms - minutes * 60_000
        raw = q.raw_readings(
            _connection(path), [m.meter_id for m in selected], start, now_ms + 1, 50_000
        )
        if not raw:
            st.info("No readings in the last minutes.")
            return
        frame = pd.DataFrame(
            raw,
            columns=[
                "meter",
                "ts_ms",
                "seq",
                "V",
                "A",
                "W",
                "PF",
                "Hz",
                "Wh",
                "total Wh",
                "register Wh",
            ],
        )
        frame["time"] = _local(frame["ts_ms"], zone)
        chart = (
            alt.Chart(frame)
            .mark_line()
            .encode(
                x=alt.X("time:T", title=f"Time ({zone.key})"),
                y=alt.Y("W:Q", title="Power (W)"),
                color=alt.Color("meter:N", title="Meter"),
            )
        )
        st.altair_chart(chart, width="stretch")
        st.caption(f"{len(frame)} readings at full resolution; refreshes every {LIVE_EVERY_S} s")

    live()


def _history(
    now_ms: int,
    path: str,
    keys: tuple[int, ...],
    by_key: dict[int, q.Meter],
    zone: ZoneInfo,
    first: date,
    last: date,
) -> None:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    bounds = tuple(_midnight_ms(d, zone) for d in [*days, last + timedelta(days=1)])
    per = _energy(path, keys, bounds)
    rows = [
        {
            "day": d.isoformat(),
            "weekday": WEEKDAYS[d.weekday()],
            "meter": by_key[k].meter_id,
            "building": by_key[k].building,
            "energy (kWh)": v[i] / 1000,
        }
        for k, v in per.items()
        for i, d in enumerate(days)
    ]
    frame = pd.DataFrame(rows)
    if frame.empty or frame["energy (kWh)"].sum() == 0:
        st.info("No energy recorded in this range.")
        return
    st.subheader("Energy per day")
    st.altair_chart(
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title=f"Day ({zone.key})"),
            y=alt.Y("sum(energy (kWh)):Q", title="Energy (kWh)"),
            color=alt.Color("building:N", title="Building"),
        ),
        width="stretch",
    )
    st.subheader("Consumption by weekday (average per day)")
    complete = [d.isoformat() for d in days if _midnight_ms(d + timedelta(days=1), zone) <= now_ms]
    weekday = frame[frame["day"].isin(complete)]  # a day still under way is not a whole day
    if weekday.empty:
        st.info("No complete day in this range yet.")
        return
    weekday = weekday.groupby(["weekday", "day"], as_index=False)["energy (kWh)"].sum()
    weekday = weekday.groupby("weekday", as_index=False)["energy (kWh)"].mean()
    st.altair_chart(
        alt.Chart(weekday)
        .mark_bar()
        .encode(
            x=alt.X("weekday:O", sort=list(WEEKDAYS), title="Weekday"),
            y=alt.Y("energy (kWh):Q", title="Average energy per day (kWh)"),
        ),
        width="stretch",
    )
    st.subheader("Average power by hour of day")
    hours = [t for t in range(bounds[0], bounds[-1] + 1, 3_600_000) if t <= now_ms]
    hourly = _energy(path, keys, tuple(hours))
    if len(hours) < 2:
        st.info("No complete hour in this range yet.")
        return
    profile = pd.DataFrame(
        [
            {
                "hour": datetime.fromtimestamp(hours[i] / 1000, zone).hour,
                "W": sum(v[i] for v in hourly.values()),
            }
            for i in range(len(hours) - 1)
        ]
    )
    profile = profile.groupby("hour", as_index=False)["W"].mean()
    st.altair_chart(
        alt.Chart(profile)
        .mark_line(point=True)
        .encode(
            x=alt.X("hour:O", title=f"Hour of day ({zone.key})"),
            y=alt.Y("W:Q", title="Average power (W)"),
        ),
        width="stretch",
    )


def _day_detail(path: str, keys: tuple[int, ...], zone: ZoneInfo, today: date) -> None:
    day = st.date_input("Day", value=today, max_value=today, key="detail_day")
    start = _midnight_ms(day, zone)
    end = _midnight_ms(day + timedelta(days=1), zone)
    rows = _profile(path, keys, start, end, 60_000)
    if not rows:
        st.info(f"No readings on {day.isoformat()}.")
        return
    frame = pd.DataFrame(rows, columns=["meter", "ts_ms", "W", "min W", "max W"])
    frame["time"] = _local(frame["ts_ms"], zone)
    st.altair_chart(
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("time:T", title=f"Time of day ({zone.key})"),
            y=alt.Y("W:Q", title="Average power per minute (W)"),
            color=alt.Color("meter:N", title="Meter"),
        ),
        width="stretch",
    )


def _quality(conn: Any, keys: tuple[int, ...], zone: ZoneInfo, first: date, last: date) -> None:
    start = _midnight_ms(first, zone)
    end = _midnight_ms(last + timedelta(days=1), zone)
    found = q.gaps(conn, keys, start, end)
    st.subheader(f"Gaps ({len(found)})")
    if found:
        frame = pd.DataFrame(found, columns=["meter", "from_ms", "to_ms"])
        frame["from"] = _local(frame["from_ms"], zone).dt.strftime("%Y-%m-%d %H:%M:%S")
        frame["to"] = _local(frame["to_ms"], zone).dt.strftime("%Y-%m-%d %H:%M:%S")
        frame["seconds"] = (frame["to_ms"] - frame["from_ms"]) / 1000
        st.dataframe(frame[["meter", "from", "to", "seconds"]], hide_index=True)
    else:
        st.write("No gaps: every interval was integrated.")
    refused = q.rejects(conn, keys, start, end)
    st.subheader(f"Rejected readings ({len(refused)})")
    if refused:
        frame = pd.DataFrame(refused, columns=["meter", "ts_ms", "reason", "power (W)"])
        frame["time"] = _local(frame["ts_ms"], zone).dt.strftime("%Y-%m-%d %H:%M:%S")
        st.dataframe(frame[["meter", "time", "reason", "power (W)"]], hide_index=True)
    else:
        st.write("No reading was refused.")
    st.subheader("Integrated energy against the meters' own registers")
    drift = q.register_drift(conn, keys, start, end)
    if drift:
        frame = pd.DataFrame(drift, columns=["meter", "integrated (Wh)", "register (Wh)"])
        frame["difference (Wh)"] = frame["integrated (Wh)"] - frame["register (Wh)"]
        st.dataframe(frame, hide_index=True)
        st.caption("Registers are float32 kWh: their resolution is about 0.5 Wh at 5,000 kWh.")
    else:
        st.write("No selected meter reports its own energy register in this range.")


def _raw(conn: Any, selected: list[q.Meter], zone: ZoneInfo, first: date, last: date) -> None:
    start = _midnight_ms(first, zone)
    end = _midnight_ms(last + timedelta(days=1), zone)
    rows = q.raw_readings(conn, [m.meter_id for m in selected], start, end, 1000)
    if not rows:
        st.info("No readings in this range.")
        return
    frame = pd.DataFrame(
        rows,
        columns=[
            "meter_id",
            "ts_ms",
            "seq",
            "voltage_v",
            "current_a",
            "power_w",
            "power_factor",
            "frequency_hz",
            "energy_wh",
            "energy_total_wh",
            "import_energy_wh",
        ],
    )
    frame.insert(
        2, "time", _local(frame["ts_ms"], zone).dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    )
    st.dataframe(frame, hide_index=True)
    st.download_button(
        "Download CSV", frame.to_csv(index=False).encode(), "readings.csv", "text/csv"
    )
    st.caption("The newest 1,000 readings of the selection and range.")


main()
