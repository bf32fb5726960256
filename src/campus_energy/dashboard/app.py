"""The local dashboard: the 5-second truth from the logger's SQLite store.

Run with `campus-energy dashboard` (it starts `streamlit run` on this file).
The configuration is found as for every command (`--config` after `--`,
`$CAMPUS_ENERGY_CONFIG`, `./campus-energy.toml`). It shows one site at a time
(`sites`): `dashboard.site`, else the one chosen in the sidebar when the store's meters
cover several. Every time shown is on that site's clock (its time zone), 24-hour,
whatever the browser's zone.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from campus_energy.accounts.statements import HoursOf
from campus_energy.config import Config, load_config
from campus_energy.core.answers import ScopeHour
from campus_energy.core.days import local_date, midnight_ms
from campus_energy.core.demand import month_bounds, month_of
from campus_energy.core.timestamps import datetime_ms
from campus_energy.dashboard import alerts, charts, costs, directions, sites, store_hours
from campus_energy.dashboard import history as h
from campus_energy.dashboard import store_queries as q
from campus_energy.errors import CampusEnergyError, ConfigError
from campus_energy.runtime.sqlite import recovery_commands

NOW_ENV = "CAMPUS_ENERGY_DASHBOARD_NOW"  # a fixed instant (ISO 8601 with offset): tests, replays
LIVE_EVERY_S = 5
ONLINE_WITHIN_S = 60
TABS = [
    "Overview",
    "Live",
    "History",
    "Day detail",
    "Cost & demand",
    "Data quality",
    "Raw data",
    "Alerts",
]
SETTLED_AFTER_MS = 3_600_000  # a month ended this long ago: its readings are in the store
SETTLED_TTL_S = 600
RAW_COLUMNS = list(q.RAW_COLUMNS)
NOW_COLUMNS = {
    "meter_id": "meter",
    "status": "status",
    "power_w": "power (W)",
    "voltage_v": "voltage (V)",
    "current_a": "current (A)",
    "power_factor": "PF",
    "frequency_hz": "frequency (Hz)",
    "last reading": "last reading",
}


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
    return lambda: datetime_ms(moment)


@dataclass(frozen=True)
class View:
    """What every tab draws from: the configuration as the site shown has it, the store,
    the site's zone, the selection, now, the range, which alerts are the site's."""

    config: Config
    path: str
    zone: ZoneInfo
    selected: list[q.Meter]
    clock: Callable[[], int]
    now_ms: int
    first: date
    last: date
    alert_sites: sites.AlertSites

    @property
    def keys(self) -> tuple[int, ...]:
        return tuple(m.key for m in self.selected)

    @property
    def today(self) -> date:
        return local_date(self.now_ms, self.zone)

    def meter(self, key: int) -> q.Meter:
        return next(m for m in self.selected if m.key == key)

    def range_ms(self) -> tuple[int, int]:
        """Local midnight of the first day to the end of the last, or now if sooner."""
        end = midnight_ms(self.last + timedelta(days=1), self.zone)
        return midnight_ms(self.first, self.zone), min(end, self.now_ms + 1)


@st.cache_resource(on_release=lambda store: store.close())
def _store(path: str) -> Any:
    return q.open_store(Path(path))


def _connection(path: str) -> Any:
    return q.connection(_store(path))


def _unavailable(path: str, exc: q.StoreUnavailable, then: str) -> None:
    """Why the store cannot be read and what to do (`then`); the next run opens it again."""
    _store.clear()
    if not isinstance(exc, q.StoreDamaged):
        st.warning(f"{exc}. {then}")
        return
    st.error(
        f"{exc}: the logger refuses a damaged store too. Stop what uses it and keep a copy, then "
        "copy out what is readable with one of these (the second where sqlite3 has no .recover, "
        "as on Debian 12), check the copy with `PRAGMA quick_check` and put it in place — or "
        "restore a backup:"
    )
    st.code("\n".join(recovery_commands(Path(path))), language="bash")


def _drawn(draw: Callable[[View], None], view: View) -> None:
    """One tab: a store that fails while it is drawn is a message in it, never a traceback."""
    try:
        draw(view)
    except q.StoreUnavailable as exc:
        _unavailable(view.path, exc, "Reload the page to try again.")


@st.cache_data(ttl=5, show_spinner=False)
def _spans(
    path: str, keys: tuple[int, ...], boundaries: tuple[int, ...], estimated: bool = False
) -> dict[int, list[q.Span]]:
    return q.spans(_connection(path), keys, boundaries, estimated=estimated)


@st.cache_data(ttl=5, show_spinner=False)
def _mean_power(path: str, keys: tuple[int, ...], start: int, end: int, bucket: int) -> list[Any]:
    return q.mean_power(_connection(path), keys, start, end, bucket)


Terms = tuple[tuple[str, float], ...]


@st.cache_data(ttl=5, show_spinner=False)
def _month_hours(path: str, zone: str, start: int, end: int, terms: Terms) -> list[ScopeHour]:
    return store_hours.scope_hours(_connection(path), ZoneInfo(zone), start, end, dict(terms))


@st.cache_data(ttl=SETTLED_TTL_S, show_spinner=False)
def _settled_month_hours(
    path: str, zone: str, start: int, end: int, terms: Terms
) -> list[ScopeHour]:
    return store_hours.scope_hours(_connection(path), ZoneInfo(zone), start, end, dict(terms))


def _hours_of(view: View) -> HoursOf:
    """The store's `HoursOf`, read a whole local month at a time and kept: a month that
    ended over an hour ago for SETTLED_TTL_S (a ratchet looks back a year), the rest for
    seconds, like every other figure."""

    def hours_of(start_ms: int, end_ms: int, terms: Mapping[str, float]) -> list[ScopeHour]:
        if end_ms <= start_ms:
            return []
        key = tuple(sorted(terms.items()))
        bounds = month_bounds(
            month_of(start_ms, view.zone), month_of(end_ms - 1, view.zone), view.zone
        )
        found: list[ScopeHour] = []
        for a, b in itertools.pairwise(bounds):
            settled = b <= view.now_ms - SETTLED_AFTER_MS
            read = _settled_month_hours if settled else _month_hours
            hours = read(view.path, view.zone.key, a, b, key)
            found += [hour for hour in hours if start_ms <= hour.hour_ms < end_ms]
        return found

    return hours_of


def main() -> None:
    st.set_page_config(page_title="Campus Energy — local", layout="wide")
    try:
        config = _config()
        clock = _clock()
    except CampusEnergyError as exc:
        st.error(f"Configuration problem: {exc}")
        return
    estate = sites.Estate(config)
    path = str(config.storage.path)
    try:
        every_meter = q.meters(_connection(path))
        has_readings = q.has_readings(_connection(path))
    except q.StoreUnavailable as exc:
        _heading(config, estate.first_shown(estate.offered([])), path)
        _unavailable(path, exc, "Start the logger (`campus-energy logger`) and reload.")
        return
    site = _sidebar_site(estate, every_meter)
    zone = config.site_zone(site)
    _heading(config, site, path)
    if not every_meter or not has_readings:
        st.info("No readings yet: the store is empty. Start the logger and reload.")
        return
    all_meters = [m for m in every_meter if estate.site_of(m.meter_id) == site]
    if not all_meters:
        st.info(
            f"The logger's store holds no meter of {config.site_name(site)}: its logger "
            "writes another store."
        )
        return
    selected = _sidebar_meters(all_meters)
    now_ms = clock()
    first, last = _sidebar_range(local_date(now_ms, zone))
    if not selected:
        st.info("Select at least one meter in the sidebar.")
        return
    store_meters = {m.meter_id: m.building for m in every_meter}
    alert_sites = estate.alerts_of(site, store_meters)
    site_config = estate.config_of(site)
    view = View(site_config, path, zone, selected, clock, now_ms, first, last, alert_sites)
    for tab, draw in zip(st.tabs(TABS), DRAW, strict=True):
        with tab:
            _drawn(draw, view)


def _heading(config: Config, site: str, path: str) -> None:
    name = config.site_name(site)
    st.set_page_config(page_title=f"Campus Energy — {name} (local)")
    st.title(f"Campus Energy — {name}")
    zone = config.site_zone(site)
    st.caption(f"The logger's store {path} · times in {zone.key}, 24-hour clock")


def _sidebar_site(estate: sites.Estate, every_meter: list[q.Meter]) -> str:
    """The site shown: the only one offered, else the one chosen (the default site first)."""
    offered = estate.offered(m.meter_id for m in every_meter)
    first = estate.first_shown(offered)
    if len(offered) == 1:
        return first
    return st.sidebar.selectbox(
        "Site",
        offered,
        index=offered.index(first),
        format_func=estate.config.site_name,
        key="site",
        help="Every view shows this site's meters only, its days cut in its own time zone.",
    )


def _sidebar_meters(all_meters: list[q.Meter]) -> list[q.Meter]:
    """The hierarchy building → floor → meter."""
    st.sidebar.header("Meters")
    buildings = sorted({m.building or "(no building)" for m in all_meters})
    chosen_buildings = st.sidebar.multiselect("Buildings", buildings, default=buildings)
    in_buildings = [m for m in all_meters if (m.building or "(no building)") in chosen_buildings]
    floors = sorted({m.floor or "—" for m in in_buildings})
    chosen_floors = st.sidebar.multiselect("Floors", floors, default=floors)
    in_floors = [m for m in in_buildings if (m.floor or "—") in chosen_floors]
    ids = [m.meter_id for m in in_floors]
    chosen_ids = st.sidebar.multiselect("Meters", ids, default=ids)
    return [m for m in in_floors if m.meter_id in chosen_ids]


def _sidebar_range(today: date) -> tuple[date, date]:
    picked = st.sidebar.date_input(
        "Range (local days)", value=(today - timedelta(days=6), today), max_value=today
    )
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    return (days[0], days[-1]) if days else (today, today)  # while a range is being picked


def _today_kwh(view: View) -> dict[str, float]:
    """kWh from local midnight of today, this week's Monday and the 1st of the month until now."""
    today = view.today
    starts = {
        "Today": today,
        "This week": today - timedelta(days=today.weekday()),
        "This month": today.replace(day=1),
    }
    found = {}
    for label, day in starts.items():
        per = _spans(view.path, view.keys, (midnight_ms(day, view.zone), view.now_ms + 1))
        found[label] = sum(s[0].wh for s in per.values()) / 1000
    return found


def _overview(view: View) -> None:
    for col, (label, kwh) in zip(st.columns(3), _today_kwh(view).items(), strict=True):
        col.metric(f"{label} (kWh)", f"{kwh:,.3f}")
    st.subheader("Meters now")
    latest = q.latest(_connection(view.path), view.keys)
    if latest:
        frame = pd.DataFrame(latest)
        age_s = (view.now_ms - frame["ts_ms"]) / 1000
        frame["status"] = age_s.map(lambda a: "online" if a <= ONLINE_WITHIN_S else "offline")
        frame["last reading"] = charts.local_text(frame["ts_ms"], view.zone)
        frame["power_w"] = pd.to_numeric(frame["power_w"]).round(1)  # None: a refused power
        st.dataframe(frame[list(NOW_COLUMNS)].rename(columns=NOW_COLUMNS), hide_index=True)
    st.subheader("Today by building and meter")
    today = _spans(view.path, view.keys, (midnight_ms(view.today, view.zone), view.now_ms + 1))
    rows = [
        {
            "building": view.meter(k).building or "(none)",
            "meter": view.meter(k).meter_id,
            "energy (kWh)": round(v[0].wh / 1000, h.KWH),
        }
        for k, v in today.items()
        if v[0].covered_ms > 0 or v[0].wh != 0
    ]
    if rows:
        st.altair_chart(charts.building_bars(pd.DataFrame(rows)), width="stretch")
    else:
        st.info("No energy recorded today for the selected meters yet.")
    start, end = view.range_ms()
    period = _spans(view.path, view.keys, (start, end), estimated=True)
    title = f"Consumption, generation and net, {view.first.isoformat()} to {view.last.isoformat()}"
    directions.draw(period, {m.key: m for m in view.selected}, title)


def _live(view: View) -> None:
    minutes = st.slider("Last minutes", 5, 120, 15, key="live_minutes")

    @st.fragment(run_every=LIVE_EVERY_S)
    def live() -> None:  # rerun on its own: its failures are caught here
        try:
            show_live()
        except q.StoreUnavailable as exc:
            _unavailable(view.path, exc, "It is read again within seconds.")

    def show_live() -> None:
        now_ms = view.clock()
        ids = [m.meter_id for m in view.selected]
        start = now_ms - minutes * 60_000
        raw = q.raw_readings(_connection(view.path), ids, start, now_ms + 1, 50_000)
        if not raw:
            st.info("No readings in the last minutes.")
            return
        frame = pd.DataFrame(raw, columns=RAW_COLUMNS).rename(columns={"meter_id": "meter"})
        power = pd.to_numeric(frame["power_w"]).round(1)  # None: a refused power register
        frame = charts.with_site_time(frame.assign(W=power), view.zone)
        chart = charts.power_over_time(frame, view.zone, "Power (W)", charts.CLOCK)
        st.altair_chart(chart, width="stretch")
        st.caption(f"{len(frame)} readings at full resolution; refreshes every {LIVE_EVERY_S} s")

    live()


def _history(view: View) -> None:
    start, end = view.range_ms()
    marks = h.hour_marks(start, end, view.zone)
    table = h.span_table(_spans(view.path, view.keys, tuple(marks)), marks, view.zone)
    if table.empty:
        st.info("No energy recorded in this range.")
        return
    st.subheader("Energy per day")
    daily = h.daily_energy(table)
    daily = daily.assign(
        day=[d.isoformat() for d in daily["day"]],
        weekday=[h.WEEKDAYS[d.weekday()] for d in daily["day"]],
        building=[view.meter(k).building for k in daily["meter"]],
        meter=[view.meter(k).meter_id for k in daily["meter"]],
    )
    st.altair_chart(charts.day_bars(daily, view.zone), width="stretch")
    _weekdays(view, table)
    _hours(view, table)


def _weekdays(view: View, table: pd.DataFrame) -> None:
    st.subheader("Consumption by weekday (average per day)")
    weekday = h.weekday_energy(table, view.zone)
    if weekday.empty:
        st.info("Not enough readings for an average yet.")
        return
    st.altair_chart(charts.weekday_bars(weekday.drop(columns="day h")), width="stretch")
    absent = h.missing(h.WEEKDAYS, list(weekday["weekday"]))
    short = h.estimates(weekday)
    st.caption(
        "Each weekday: the selection's average power while its meters reported × the length "
        "of the day (the day under way counts for the hours it has)."
        + (f" Estimated from less than a day of readings: {', '.join(short)}." if short else "")
        + (f" No readings on: {', '.join(absent)} (no data, not zero)." if absent else "")
    )


def _hours(view: View, table: pd.DataFrame) -> None:
    st.subheader("Average power by hour of day")
    hourly = h.hourly_power(table)
    st.altair_chart(charts.hour_bars(hourly, view.zone), width="stretch")
    absent = h.missing([f"{i:02d}" for i in range(24)], [f"{i:02d}" for i in hourly["hour"]])
    st.caption(
        "Each clock hour: Σ energy ÷ the time the readings covered, summed over the selected "
        "meters."
        + (f" No readings in hours: {', '.join(absent)} (no data, not zero)." if absent else "")
    )


def _day_detail(view: View) -> None:
    day = st.date_input("Day", value=view.today, max_value=view.today, key="detail_day")
    start = midnight_ms(day, view.zone)
    end = midnight_ms(day + timedelta(days=1), view.zone)
    rows = _mean_power(view.path, view.keys, start, end, 60_000)
    if not rows:
        st.info(f"No readings on {day.isoformat()}.")
        return
    frame = pd.DataFrame(rows, columns=["meter", "ts_ms", "W"])
    frame = charts.with_site_time(frame.assign(W=frame["W"].round(1)), view.zone)
    chart = charts.power_over_time(frame, view.zone, "Average power per minute (W)", charts.CLOCK)
    st.altair_chart(chart, width="stretch")
    if (frame["W"] < 0).any():
        st.caption(
            "Net power: import − export. Below zero a meter exports (rooftop PV giving more "
            "than the building draws)."
        )


def _cost(view: View) -> None:
    costs.draw(view.config, _hours_of(view), view.first, view.last, view.now_ms)


def _quality(view: View) -> None:
    conn = _connection(view.path)
    start = midnight_ms(view.first, view.zone)
    end = midnight_ms(view.last + timedelta(days=1), view.zone)
    found = q.gaps(conn, view.keys, start, end)
    st.subheader(f"Gaps ({len(found)})")
    if found:
        frame = pd.DataFrame(found, columns=["meter", "from_ms", "to_ms"])
        frame["from"] = charts.local_text(frame["from_ms"], view.zone)
        frame["to"] = charts.local_text(frame["to_ms"], view.zone)
        frame["seconds"] = (frame["to_ms"] - frame["from_ms"]) / 1000
        st.dataframe(frame[["meter", "from", "to", "seconds"]], hide_index=True)
    else:
        st.write("No gaps: every interval was integrated.")
    refused = q.rejects(conn, view.keys, start, end)
    st.subheader(f"Rejected readings ({len(refused)})")
    if refused:
        frame = pd.DataFrame(refused, columns=["meter", "ts_ms", "reason", "power (W)"])
        frame["time"] = charts.local_text(frame["ts_ms"], view.zone)
        st.dataframe(frame[["meter", "time", "reason", "power (W)"]], hide_index=True)
    else:
        st.write("No reading was refused.")
    _drift(conn, view.keys, start, end)
    directions.quality(conn, {m.key: m for m in view.selected}, start, end, view.zone)


def _drift(conn: Any, keys: tuple[int, ...], start: int, end: int) -> None:
    st.subheader("Integrated energy against the meters' own registers")
    drift = q.register_drift(conn, keys, start, end)
    if drift:
        frame = pd.DataFrame(drift, columns=["meter", "integrated (Wh)", "register (Wh)", "end"])
        frame["difference (Wh)"] = frame["integrated (Wh)"] - frame["register (Wh)"]
        counted = frame["register (Wh)"].where(frame["register (Wh)"] > 0)
        frame["difference (%)"] = 100 * frame["difference (Wh)"] / counted
        st.dataframe(frame.drop(columns="end").round(3), hide_index=True)
        largest_kwh = float(frame["end"].max()) / 1000
        step_wh = q.register_step_wh(largest_kwh)
        st.caption(
            f"A register is a float32 in kWh: at the largest here ({largest_kwh:,.0f} kWh) it "
            f"counts in steps of {step_wh:.3g} Wh. Integrated energy is the trapezoid of the "
            "polled power: a few tenths of a percent is a changing load between polls; a "
            "larger, steady difference is a meter, CT or wiring to check."
        )
    else:
        st.write("No selected meter reports its own energy register in this range.")


def _raw(view: View) -> None:
    start = midnight_ms(view.first, view.zone)
    end = midnight_ms(view.last + timedelta(days=1), view.zone)
    ids = [m.meter_id for m in view.selected]
    rows = q.raw_readings(_connection(view.path), ids, start, end, 1000)
    if not rows:
        st.info("No readings in this range.")
        return
    frame = pd.DataFrame(rows, columns=RAW_COLUMNS)
    times = charts.local_text(frame["ts_ms"], view.zone, "%Y-%m-%d %H:%M:%S.%f").str[:-3]
    frame.insert(2, "time", times)
    st.dataframe(frame, hide_index=True)
    st.download_button(
        "Download CSV", frame.to_csv(index=False).encode(), "readings.csv", "text/csv"
    )
    st.caption("The newest 1,000 readings of the selection and range.")


def _alerts(view: View) -> None:
    start, end = view.range_ms()
    alerts.draw(view.config, view.zone, start, end, view.now_ms, view.alert_sites)


DRAW: list[Callable[[View], None]] = [
    _overview,
    _live,
    _history,
    _day_detail,
    _cost,
    _quality,
    _raw,
    _alerts,
]

main()
