"""The dashboard's charts, every time on the site's clock whatever the browser's zone.

Vega-Lite draws a datetime in the browser's zone unless its scale is `utc`. So a
time is handed to a chart as the site's wall clock labelled UTC (14:05 in Kolkata
becomes 14:05 UTC) on a `utc` scale: every browser then draws 14:05, on a 24-hour
clock, and the axis names the site's zone. Each stretch of one UTC offset is its own
line, so the hour repeated when clocks go back is not drawn as a line running back.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd

from campus_energy.dashboard.history import WEEKDAYS

CLOCK = "%H:%M"
DAY_CLOCK = "%d %b %H:%M"
KWH_FORMAT = ",.3f"
KW_FORMAT = ",.3f"
W_FORMAT = ",.1f"


def wall_clock(ms: pd.Series, zone: ZoneInfo) -> pd.Series:
    """The site's wall-clock time of each UTC epoch ms, labelled UTC (see the module)."""
    local = pd.to_datetime(ms, unit="ms", utc=True).dt.tz_convert(zone.key)
    return local.dt.tz_localize(None).dt.tz_localize("UTC")


def local_text(ms: pd.Series, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> pd.Series:
    return pd.to_datetime(ms, unit="ms", utc=True).dt.tz_convert(zone.key).dt.strftime(fmt)


def with_site_time(frame: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    """`frame` (with ts_ms) plus time (the wall clock, for the axis), local time (words, for
    tooltips) and offset (the UTC offset then)."""
    return frame.assign(
        time=wall_clock(frame["ts_ms"], zone),
        **{"local time": local_text(frame["ts_ms"], zone, "%Y-%m-%d %H:%M:%S %Z")},
        offset=local_text(frame["ts_ms"], zone, "%z"),
    )


def power_over_time(frame: pd.DataFrame, zone: ZoneInfo, y_title: str, fmt: str) -> alt.Chart:
    """Lines of W per meter over `time` (see with_site_time)."""
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X(
                "time:T",
                title=f"Time ({zone.key}, 24-hour clock)",
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(format=fmt),  # a utc scale formats its labels in UTC
            ),
            y=alt.Y("W:Q", title=y_title),
            color=alt.Color("meter:N", title="Meter"),
            detail="offset:N",
            tooltip=["meter", "local time", alt.Tooltip("W:Q", format=W_FORMAT)],
        )
    )
    return chart


def building_bars(frame: pd.DataFrame) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("sum(energy (kWh)):Q", title="Energy today (kWh)"),
            y=alt.Y("building:N", title="Building"),
            color=alt.Color("meter:N", title="Meter"),
            tooltip=["building", "meter", alt.Tooltip("energy (kWh):Q", format=KWH_FORMAT)],
        )
    )
    return chart


def day_bars(frame: pd.DataFrame, zone: ZoneInfo) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title=f"Day ({zone.key})"),
            y=alt.Y("sum(energy (kWh)):Q", title="Energy (kWh)"),
            color=alt.Color("building:N", title="Building"),
            tooltip=["day", "building", "meter", alt.Tooltip("energy (kWh):Q", format=KWH_FORMAT)],
        )
    )
    return chart


def weekday_bars(frame: pd.DataFrame) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("weekday:O", scale=alt.Scale(domain=list(WEEKDAYS)), title="Weekday"),
            y=alt.Y("energy (kWh):Q", title="Average energy per day (kWh)"),
            tooltip=[
                "weekday",
                alt.Tooltip("energy (kWh):Q", format=KWH_FORMAT),
                "days",
                alt.Tooltip("hours:Q", title="hours of readings per meter", format=",.1f"),
            ],
        )
    )
    return chart


def hour_bars(frame: pd.DataFrame, zone: ZoneInfo) -> alt.Chart:
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(
                "hour:O",
                scale=alt.Scale(domain=list(range(24))),
                title=f"Hour of day ({zone.key}, 24-hour clock)",
            ),
            y=alt.Y("W:Q", title="Average power (W)"),
            tooltip=["hour", alt.Tooltip("W:Q", format=W_FORMAT), "meters"],
        )
    )
    return chart


def demand_lines(
    series: pd.DataFrame,
    peaks: pd.DataFrame,
    floors: pd.DataFrame,
    zone: ZoneInfo,
    interval_min: int,
) -> alt.LayerChart:
    """kW per demand interval (series: ts_ms, kW), each month's peak marked (peaks: ts_ms,
    kW, month) and the ratchet floor as a dashed rule across its month (floors: ts_ms,
    end_ms, kW, month)."""
    x = alt.X(
        "time:T",
        title=f"Time ({zone.key}, 24-hour clock)",
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format=DAY_CLOCK),
    )
    kw = alt.Y("kW:Q", title=f"Demand, {interval_min}-minute mean (kW)")
    layers: list[alt.Chart] = [
        alt.Chart(with_site_time(series, zone))
        .mark_line()
        .encode(
            x=x,
            y=kw,
            detail="offset:N",
            tooltip=["local time", alt.Tooltip("kW:Q", format=KW_FORMAT)],
        )
    ]
    if not floors.empty:
        floors = with_site_time(floors, zone).assign(end=wall_clock(floors["end_ms"], zone))
        layers.append(
            alt.Chart(floors)
            .mark_rule(strokeDash=[6, 4], color="#b45309")
            .encode(
                x=x,
                x2="end:T",
                y=kw,
                tooltip=["month", alt.Tooltip("kW:Q", title="ratchet floor", format=KW_FORMAT)],
            )
        )
    if not peaks.empty:
        peaks = with_site_time(peaks, zone).assign(label=[f"peak {v:,.3f} kW" for v in peaks["kW"]])
        peak = alt.Tooltip("kW:Q", title="peak", format=KW_FORMAT)
        marked = alt.Chart(peaks).encode(x=x, y=kw, tooltip=["month", "local time", peak])
        layers.append(marked.mark_point(filled=True, size=90, color="#dc2626"))
        layers.append(marked.mark_text(dy=-12, color="#dc2626").encode(text="label:N"))
    return alt.LayerChart(layer=layers)
