"""Energy in both directions and of both kinds, as the local dashboard shows it.

Consumption is measured import, generation measured export, net their difference
(import − export: negative while a building gives more than it takes). Estimated
energy — what a meter's own registers counted across a gap the logger could not
integrate — is shown apart, "measured 412.300 kWh + estimated 3.100 kWh", never
added to a measured figure. The data-quality view lists each meter's estimates and
the record of meter events (a register replaced, reset, rolled over or jumping).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from campus_energy.dashboard import charts
from campus_energy.dashboard import store_queries as q

KWH = 6  # decimals kept of kWh: 0.001 Wh, shown with 3
EVENT_COLUMNS = ["meter", "time", "kind", "source", "register", "before (kWh)", "after (kWh)",
                 "old final (kWh)", "new start (kWh)", "note"]  # fmt: skip


@dataclass(frozen=True)
class Flows:
    """Energy of a selection over a range (Wh)."""

    imported: float = 0.0
    exported: float = 0.0
    estimated: float = 0.0
    estimated_export: float = 0.0

    @property
    def net(self) -> float:
        return self.imported - self.exported

    def __add__(self, other: Flows) -> Flows:
        return Flows(
            self.imported + other.imported,
            self.exported + other.exported,
            self.estimated + other.estimated,
            self.estimated_export + other.estimated_export,
        )


def flows_of(spans: Sequence[q.Span]) -> Flows:
    total = Flows()
    for s in spans:
        total += Flows(s.wh, s.export_wh, s.estimated_wh, s.estimated_export_wh)
    return total


def apart(measured_wh: float, estimated_wh: float) -> str:
    """'measured 412.300 kWh + estimated 3.100 kWh' (the estimate only where there is one)."""
    text = f"measured {measured_wh / 1000:,.3f} kWh"
    return text + (f" + estimated {estimated_wh / 1000:,.3f} kWh" if estimated_wh else "")


def table(per_meter: Mapping[int, Flows], meters: Mapping[int, q.Meter]) -> pd.DataFrame:
    """One row per meter: building, meter, consumption, generation, net (kWh), and the
    estimates where any meter has one."""
    rows = [
        {
            "building": meters[key].building or "(none)",
            "meter": meters[key].meter_id,
            "consumption (kWh)": round(f.imported / 1000, KWH),
            "generation (kWh)": round(f.exported / 1000, KWH),
            "net (kWh)": round(f.net / 1000, KWH),
            "estimated consumption (kWh)": round(f.estimated / 1000, KWH),
            "estimated generation (kWh)": round(f.estimated_export / 1000, KWH),
        }
        for key, f in per_meter.items()
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in ("estimated consumption (kWh)", "estimated generation (kWh)"):
        if not frame[column].any():
            frame = frame.drop(columns=column)
    return frame.sort_values(["building", "meter"], ignore_index=True)


def by_building(frame: pd.DataFrame) -> pd.DataFrame:
    """The meters' rows summed per building."""
    sums = frame.drop(columns="meter").groupby("building", as_index=False).sum()
    return sums.round(KWH)


def draw(spans: Mapping[int, Sequence[q.Span]], meters: Mapping[int, q.Meter], title: str) -> None:
    """Consumption, generation and net of the selection over a range (`spans`: one Span per
    meter over the whole range), per building and per meter."""
    per_meter = {key: flows_of(series) for key, series in spans.items()}
    total = Flows()
    for f in per_meter.values():
        total += f
    st.subheader(title)
    use, gen, net = st.columns(3)
    use.metric("Consumption (kWh)", f"{total.imported / 1000:,.3f}")
    gen.metric("Generation (kWh)", f"{total.exported / 1000:,.3f}")
    net.metric("Net (kWh)", f"{total.net / 1000:,.3f}")
    if total.estimated or total.estimated_export:
        use.caption(f"Consumption: {apart(total.imported, total.estimated)}")
        gen.caption(f"Generation: {apart(total.exported, total.estimated_export)}")
    frame = table(per_meter, meters)
    if frame.empty:
        return
    st.dataframe(by_building(frame), hide_index=True)
    st.dataframe(frame, hide_index=True)
    st.caption(
        "Consumption is the energy the meters imported, generation what they exported "
        "(rooftop PV), net = consumption − generation, all integrated from the polled power. "
        "Estimated energy is what a meter's own registers counted across a gap the logger "
        "could not integrate: shown apart, never added to the measured figures."
    )


def quality(
    conn: sqlite3.Connection,
    meters: Mapping[int, q.Meter],
    start_ms: int,
    end_ms: int,
    zone: ZoneInfo,
) -> None:
    """The data-quality view's estimates per meter and the record of meter events."""
    st.subheader("Estimated energy (gaps bridged by the meters' registers)")
    found = q.estimates(conn, list(meters), start_ms, end_ms)
    if found:
        rows = []
        for e in found:  # the part of each in the range (a gap the range cuts: its share)
            parts = e.within((start_ms, end_ms)).get(0, (0, 0))
            rows.append((meters[e.key].meter_id, e.ts_ms, *parts))
        frame = pd.DataFrame(rows, columns=["meter", "ts_ms", "uwh", "export_uwh"])
        sums = frame.groupby("meter", as_index=False).agg(
            estimates=("ts_ms", "size"), uwh=("uwh", "sum"), export_uwh=("export_uwh", "sum")
        )
        sums["estimated import (kWh)"] = (sums["uwh"] / 1e9).round(KWH)
        sums["estimated export (kWh)"] = (sums["export_uwh"] / 1e9).round(KWH)
        st.dataframe(sums.drop(columns=["uwh", "export_uwh"]), hide_index=True)
        st.caption(
            "What each meter's own registers counted across the gaps above, where the "
            "difference was plausible: estimated, kept apart from measured energy, and never "
            "counted as covered time. A gap the range cuts counts with the part of its "
            "estimate inside the range, in proportion to time."
        )
    else:
        st.write("No estimated energy: no gap was bridged by a meter's registers.")
    _events(conn, meters, start_ms, end_ms, zone)


def _events(
    conn: sqlite3.Connection,
    meters: Mapping[int, q.Meter],
    start_ms: int,
    end_ms: int,
    zone: ZoneInfo,
) -> None:
    found = q.meter_events(conn, [m.meter_id for m in meters.values()], start_ms, end_ms)
    if found is None:
        st.subheader("Meter events")
        st.write(
            "This store keeps no record of meter events yet (a logger of this version "
            "adds it when it opens the store)."
        )
        return
    st.subheader(f"Meter events ({len(found)})")
    if not found:
        st.write("No meter's register was replaced, reset, rolled over or jumped.")
        return

    def kwh(value: float | None) -> float | None:
        return None if value is None else round(value / 1000, KWH)

    frame = pd.DataFrame(
        [
            [
                e.meter_id,
                e.ts_ms,
                e.kind,
                e.source,
                e.register,
                kwh(e.before_wh),
                kwh(e.after_wh),
                kwh(e.old_final_wh),
                kwh(e.new_start_wh),
                e.note,
            ]
            for e in found
        ],
        columns=["meter", "ts_ms", *EVENT_COLUMNS[2:]],
    )
    frame["time"] = charts.local_text(frame["ts_ms"], zone)
    st.dataframe(frame[EVENT_COLUMNS], hide_index=True)
    st.caption(
        "Detected: the logger saw the register go backwards or jump further than the meter "
        "can count; confirmed: a person recorded it (`campus-energy meter-event add`). "
        "Until a new baseline, that register bridges no gap."
    )
