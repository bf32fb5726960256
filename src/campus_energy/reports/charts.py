"""The report's charts as PNG, drawn on the server with matplotlib's Agg canvas (no display,
no pyplot state shared between threads): daily energy per building against the period
before, and the demand profile of the peak day."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from campus_energy.core.days import HOUR_MS, local_date, midnight_ms
from campus_energy.reports.content import Report

WIDTH_IN, DPI = 6.2, 100  # 620 px: within a 640 px mail column
COLOURS = ("#1f6f8b", "#e39b2d", "#6a9e3f", "#b5446e", "#7a5fa8", "#3c9d9b", "#c2603a", "#5b6770")
GREY = "#9aa3ab"


def _png(figure: object) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def daily_chart(report: Report) -> bytes:
    """Bars: each day's energy, stacked by account (or the one building's); a line: the
    period before, day by day."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, 3.0), layout="constrained")
    axes = figure.add_subplot()
    days = report.period.days
    x = list(range(len(days)))
    accounts = [r for r in report.rows if r.kind != "campus"]
    bottom = [0.0] * len(days)
    for i, row in enumerate(accounts):
        axes.bar(x, row.daily_kwh, bottom=bottom, color=COLOURS[i % len(COLOURS)],
                 label=row.title, width=0.8)  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, row.daily_kwh, strict=True)]
    before = [math.nan if v is None else v for v in report.previous_daily_kwh]
    if any(v is not None for v in report.previous_daily_kwh):
        count = min(len(before), len(days))
        axes.plot(x[:count], before[:count], color="#222222", linestyle="--", marker=".",
                  linewidth=1.2, label="period before")  # fmt: skip
    labels = [f"{d:%a}\n{d.day}" if report.period.kind == "week" else str(d.day) for d in days]
    axes.set_xticks(x, labels, fontsize=8)
    axes.set_ylabel("kWh per day", fontsize=9)
    axes.tick_params(axis="y", labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="#e5e8eb", linewidth=0.8)
    axes.set_axisbelow(True)
    axes.legend(fontsize=8, frameon=False, ncols=min(4, len(accounts) + 1), loc="upper center",
                bbox_to_anchor=(0.5, -0.14 if report.period.kind == "week" else -0.08))  # fmt: skip
    return _png(figure)


def profile_chart(report: Report) -> bytes | None:
    """The headline scope's demand through its peak day, the peak marked (None: no peak)."""
    from matplotlib.figure import Figure

    peak = report.headline.peak
    if peak is None or not report.profile:
        return None
    zone = ZoneInfo(report.zone)
    figure = Figure(figsize=(WIDTH_IN, 2.6), layout="constrained")
    axes = figure.add_subplot()
    day = local_date(peak.start_ms, zone)
    start, end = midnight_ms(day, zone), midnight_ms(day + timedelta(days=1), zone)
    hours = [(ms - start) / HOUR_MS for ms, _ in report.profile]
    kw = [value for _, value in report.profile]
    step_h = peak.interval_min / 60
    axes.step([*hours, hours[-1] + step_h], [*kw, kw[-1]], where="post", color=COLOURS[0],
              linewidth=1.4)  # fmt: skip
    axes.fill_between([*hours, hours[-1] + step_h], [*kw, kw[-1]], step="post",
                      color=COLOURS[0], alpha=0.15)  # fmt: skip
    at = (peak.start_ms - start) / HOUR_MS
    axes.plot([at + step_h / 2], [float(peak.kw)], marker="o", color=COLOURS[3])
    axes.annotate(f"peak {peak.kw} kW at {_clock(peak.start_ms, zone)}", (at, float(peak.kw)),
                  textcoords="offset points", xytext=(8, -4), fontsize=8,
                  color=COLOURS[3])  # fmt: skip
    length = (end - start) / HOUR_MS
    ticks = [t for t in range(0, int(length) + 1, 3)]
    axes.set_xlim(0, length)
    axes.set_xticks(ticks, [_clock(start + t * HOUR_MS, zone) for t in ticks], fontsize=8)
    axes.set_title(f"Demand on {day:%a %d %b %Y}, the peak day", fontsize=9, loc="left")
    axes.set_ylabel(f"kW ({peak.interval_min}-min)", fontsize=9)
    axes.tick_params(axis="y", labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="#e5e8eb", linewidth=0.8)
    return _png(figure)


def _clock(ms: int, zone: ZoneInfo) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, zone):%H:%M}"


def charts(report: Report) -> Mapping[str, bytes]:
    """The report's images by content id: 'daily' and, when there is a peak, 'profile'."""
    found = {"daily": daily_chart(report)}
    profile = profile_chart(report)
    if profile is not None:
        found["profile"] = profile
    return found
