"""The Alerts tab: what the alerts service's book (`alerts.state_path`) holds on this host —
the alerts firing or pending now, the silences in force, and the transitions of the
sidebar's local days. Read-only: acknowledge and silence with `campus-energy alerts` or
the API. Without the file, a note says that the service keeps no book here.

Where the estate has several sites, the tab lists the site's alerts only (`AlertSites`):
those about its meters, buildings and virtual meters, and the silences that reach them.
Every time is on the site's clock, like the rest of the dashboard.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from campus_energy.config import Config
from campus_energy.dashboard import charts
from campus_energy.dashboard.sites import AlertSites
from campus_energy.errors import AlertBookError
from campus_energy.incidents.store import AlertBook, Silence
from campus_energy.incidents.values import AlertRow, HistoryRow

TIME = "%Y-%m-%d %H:%M"
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
PHASE_RANK = {"firing": 0, "pending": 1}
HISTORY_ROWS = 1000


def _time(ms: int | None, zone: ZoneInfo) -> str:
    if ms is None:
        return ""
    return str(charts.local_text(pd.Series([ms]), zone, TIME).iloc[0])


def active_frame(rows: list[AlertRow], zone: ZoneInfo) -> pd.DataFrame:
    """Firing before pending, the most severe first, then the oldest."""
    ordered = sorted(
        rows,
        key=lambda r: (
            PHASE_RANK.get(r.phase, 2), SEVERITY_RANK.get(r.severity, 3), r.since_ms, r.rule,
            r.subject,
        ),
    )  # fmt: skip
    return pd.DataFrame(
        [
            {
                "severity": r.severity,
                "alert": r.rule,
                "subject": r.subject,
                "state": r.phase,
                "since": _time(r.since_ms, zone),
                "detail": r.detail,
                "value": r.value,
                "kind": r.kind,
                "scope": r.scope,
                "acknowledged": f"{r.acked_by or ''} {_time(r.acked_ms, zone)}".strip(),
                "silenced until": _time(r.silenced_until_ms, zone),
            }
            for r in ordered
        ]
    )


def history_frame(rows: list[HistoryRow], zone: ZoneInfo) -> pd.DataFrame:
    """The newest first."""
    return pd.DataFrame(
        [
            {
                "time": _time(r.at_ms, zone),
                "change": r.event + (" (silenced)" if r.suppressed else ""),
                "severity": r.severity,
                "alert": r.rule,
                "subject": r.subject,
                "detail": r.detail,
                "value": r.value,
            }
            for r in reversed(rows)
        ]
    )


def silence_frame(rows: list[Silence], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": s.id,
                "alert": s.rule or "(every rule)",
                "subject": s.subject or "(every subject)",
                "until": _time(s.until_ms, zone),
                "by": s.by,
                "note": s.note,
            }
            for s in rows
        ]
    )


def draw(
    config: Config, zone: ZoneInfo, start_ms: int, end_ms: int, now_ms: int, of_site: AlertSites
) -> None:
    """The tab: the book's active alerts and silences at `now_ms`, its transitions in
    [start_ms, end_ms); those `of_site` lists."""
    path = config.alerts.state_path
    if not path.is_file():
        st.markdown(
            f"The alerts service keeps no book here (`alerts.state_path` = `{path}`): it runs "
            "on another host, or not at all. Its alerts are on the public dashboard and "
            "`campus-energy alerts`."
        )
        return
    try:
        with AlertBook(path) as book:
            active = book.alerts(active_only=True, now_ms=now_ms)
            silences = book.silences(now_ms)
            read = book.history(start_ms, end_ms, HISTORY_ROWS)
    except AlertBookError as exc:
        st.error(f"{exc}. Reload the page to try again.")
        return
    active = [r for r in active if of_site.lists(r.scope, r.subject)]
    silences = [s for s in silences if of_site.reaches(s)]
    history = [r for r in read if of_site.lists(r.scope, r.subject)]
    firing = sum(1 for r in active if r.phase == "firing")
    cols = st.columns(3)
    cols[0].metric("Firing", firing)
    cols[1].metric("Pending", len(active) - firing)
    cols[2].metric("Silences in force", len(silences))
    st.subheader(f"Active alerts ({len(active)})")
    if active:
        st.dataframe(active_frame(active, zone), hide_index=True)
    else:
        st.write("No alert is firing or pending.")
    if silences:
        st.subheader(f"Silences ({len(silences)})")
        st.dataframe(silence_frame(silences, zone), hide_index=True)
    st.subheader(f"Changes in the selected days ({len(history)})")
    if history:
        st.dataframe(history_frame(history, zone), hide_index=True)
        if len(read) == HISTORY_ROWS:
            st.caption(f"The newest {HISTORY_ROWS:,} changes of the range.")
    else:
        st.write("No alert changed in the selected days.")
    st.caption(
        f"From the book of alerts {path}; times in {zone.key}. Acknowledge and silence with "
        "`campus-energy alerts ack|silence` or the API."
    )
