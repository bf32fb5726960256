"""The local Streamlit dashboard on a store built here: AppTest for the page, one real process."""

from __future__ import annotations

import asyncio
import importlib.resources
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from tests.support.config import write_toml
from tests.support.http import streamlit_health
from tests.support.net import free_port
from tests.support.processes import campus_energy
from tests.support.services import serving_process

from campus_energy.core.energy import UWH_PER_WH
from campus_energy.core.readings import Reading
from campus_energy.dashboard.store_queries import register_step_wh
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
ZONE = ZoneInfo("Asia/Kolkata")
STEP_MS = 60_000
METERS = {  # meter id: building, floor, constant power (W), its meter register at the start (Wh)
    "ece-1": ("ECE", "1", 1200.0, 1_000_000.0),
    "ece-2": ("ECE", "2", 2400.0, 2_000_000.0),
    "lib-1": ("Library", "1", 3000.0, 3_000_000.0),
}
KPIS = ("Today (kWh)", "This week (kWh)", "This month (kWh)")
TABS = [
    "Overview", "Live", "History", "Day detail", "Cost & demand", "Data quality", "Raw data",
    "Alerts",
]  # fmt: skip
STEADY = {"voltage_v": 230.0, "power_factor": 1.0, "frequency_hz": 50.0}
EMPTY = "No readings yet: the store is empty. Start the logger and reload."


def midnight_ms(day: date) -> int:
    return round(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp() * 1000)


def per_step_uwh(power_w: float) -> int:
    uwh, rest = divmod(round(power_w) * STEP_MS * UWH_PER_WH, 3_600_000)
    assert rest == 0, "pick powers whose energy per minute is a whole number of µWh"
    return uwh


@dataclass(frozen=True)
class Campus:
    """The store of three meters read every minute for six days and today, and what it holds."""

    store: Path
    readings: list[Reading]
    gap: tuple[str, int, int]
    reject: tuple[str, int, str, float | None]

    def kwh(self, since: date, meters: Iterable[str] = METERS) -> float:
        """kWh of `meters` from local midnight of `since` until now, summed reading by reading."""
        start, wanted = midnight_ms(since), set(meters)
        uwh = sum(r.energy_uwh for r in self.readings if r.meter_id in wanted and r.ts_ms >= start)
        return round(uwh / UWH_PER_WH / 1000, 3)

    def kpis(self, meters: Iterable[str] = METERS) -> dict[str, float]:
        today = datetime.now(ZONE).date()
        starts = (today, today - timedelta(days=today.weekday()), today.replace(day=1))
        return {label: self.kwh(day, meters) for label, day in zip(KPIS, starts, strict=True)}


def build_store(path: Path, readings: list[Reading], cycle: Cycle | None = None) -> None:
    """A store with the schema only; with `cycle`, the meters, `readings` and the cycle too."""

    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.query("SELECT 1")  # creates the file and its schema
            if cycle is not None:
                await store.register(
                    MeterRecord(m, b, f, "eastron-sdm120") for m, (b, f, *_) in METERS.items()
                )
                await store.insert_many(readings)
                await store.commit(cycle)
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture
def campus(tmp_path: Path) -> Campus:
    today = datetime.now(ZONE).date()
    first, last = midnight_ms(today - timedelta(days=6)), round(time.time() * 1000) - 120_000
    noon = midnight_ms(today - timedelta(days=1)) + 12 * 3_600_000  # yesterday
    gap = ("ece-2", noon - STEP_MS, noon)
    reject = ("lib-1", noon + 30_000, "power 99999 W beyond ±50000 W", 99999.0)
    readings = []
    for meter_id, (_, _, power, register) in METERS.items():
        total = 0
        for seq, ts in enumerate(range(first, last + 1, STEP_MS), start=1):
            # nothing before the first reading; the gap's minute was not integrated
            integrated = seq > 1 and (meter_id, ts) != (gap[0], noon)
            total += (energy := per_step_uwh(power) if integrated else 0)
            # the meter's own register counts every minute, the gap's too
            counted = register + (seq - 1) * per_step_uwh(power) / UWH_PER_WH
            values = {**STEADY, "power_w": power, "current_a": round(power / 230, 3)}
            values["import_energy_wh"] = counted
            readings.append(Reading(meter_id, ts, seq, energy, total, values))
    store = tmp_path / "var" / "store.db"
    build_store(store, readings, Cycle(gaps=[gap], rejects=[reject]))
    return Campus(store, readings, gap, reject)


def write_config(folder: Path, store: Path, **sections: Any) -> Path:
    """A config file naming `store`; `sections` adds tables (`site` adds to the site's keys)."""
    site = {"name": "Test campus", "timezone": "Asia/Kolkata", **sections.pop("site", {})}
    data = {"site": site, **sections, "storage": {"path": store}}
    return write_toml(folder / "campus-energy.toml", data)


Run = Callable[..., AppTest]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """run(store, **sections): the dashboard run once, its config named by the environment."""

    def go(store: Path, **sections: Any) -> AppTest:
        monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(write_config(tmp_path, store, **sections)))
        monkeypatch.setattr(sys, "argv", [APP])  # not pytest's: its -c names another file
        return AppTest.from_file(APP, default_timeout=60).run()

    return go


@pytest.fixture
def at(run: Run, campus: Campus) -> AppTest:
    app = run(campus.store)
    assert_clean(app)
    return app


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def widget(widgets: Iterable[Any], label: str) -> Any:
    return next(w for w in widgets if w.label == label)


def kpis(at: AppTest) -> dict[str, float]:
    """The Overview's figures of today, this week and this month (those of the sidebar's
    range, by direction, follow them: tests/integration/test_dashboard_directions.py)."""
    return {m.label: float(m.value.replace(",", "")) for m in at.metric if m.label in KPIS}


def infos(block: Any) -> list[str]:
    return [i.value for i in block.info]


def chart_after(block: Any, title: str) -> pd.DataFrame:
    """The data of the chart that follows the subheader `title` in `block`."""
    nodes = list(block.children.values())
    heading = next(i for i, n in enumerate(nodes) if n.type == "subheader" and n.value == title)
    chart = nodes[heading + 1]
    assert chart.type == "vega_lite_chart", chart
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_pandas()


def test_the_kpis_are_the_sums_of_the_readings(at: AppTest, campus: Campus) -> None:
    assert kpis(at) == campus.kpis()


def test_every_tab_renders_from_one_run(at: AppTest, campus: Campus) -> None:
    assert not at.warning
    assert [t.label for t in at.tabs] == TABS
    # every tab has data to show; costs follow the campus model, and this config has no meters
    assert [infos(t) for t in at.tabs if t.label != "Cost & demand"] == [[]] * (len(TABS) - 1)
    assert infos(widget(at.tabs, "Cost & demand"))[0].startswith("No meters in the configuration")
    assert "readings at full resolution" in widget(at.tabs, "Live").caption[0].value
    per_day = chart_after(widget(at.tabs, "History"), "Energy per day")
    today = datetime.now(ZONE).date()
    for day in (today - timedelta(days=d) for d in range(7)):
        shown = per_day.loc[per_day["day"] == day.isoformat(), "energy (kWh)"].sum()
        assert round(shown, 3) == round(campus.kwh(day) - campus.kwh(day + timedelta(days=1)), 3)
    raw = widget(at.tabs, "Raw data")
    assert [b.label for b in raw.download_button] == ["Download CSV"]
    newest = sorted(campus.readings, key=lambda r: (-r.ts_ms, r.meter_id))[:1000]
    shown_rows = raw.dataframe[0].value
    assert sorted(zip(shown_rows["meter_id"], shown_rows["ts_ms"], strict=True)) == sorted(
        (r.meter_id, r.ts_ms) for r in newest
    )


def test_the_meter_and_building_selectors_narrow_the_totals(at: AppTest, campus: Campus) -> None:
    everything = kpis(at)["Today (kWh)"]
    widget(at.sidebar.multiselect, "Meters").set_value(["ece-1", "ece-2"]).run()
    assert_clean(at)
    assert kpis(at) == campus.kpis(["ece-1", "ece-2"])
    library = campus.kwh(datetime.now(ZONE).date(), ["lib-1"])
    assert round(everything - kpis(at)["Today (kWh)"], 3) == library

    widget(at.sidebar.multiselect, "Buildings").set_value(["Library"]).run()
    assert_clean(at)
    meters = widget(at.sidebar.multiselect, "Meters")
    assert (meters.options, meters.value) == (["lib-1"], ["lib-1"])
    assert kpis(at) == campus.kpis(["lib-1"])


def test_the_date_range_drives_history_quality_and_raw_data(at: AppTest) -> None:
    today = datetime.now(ZONE).date()
    picker = widget(at.sidebar.date_input, "Range (local days)")
    picker.set_value((today - timedelta(days=3), today - timedelta(days=2))).run()
    assert_clean(at)
    per_day = chart_after(widget(at.tabs, "History"), "Energy per day")
    assert sorted(set(per_day["day"])) == [(today - timedelta(days=d)).isoformat() for d in (3, 2)]
    headings = [s.value for s in widget(at.tabs, "Data quality").subheader]
    assert headings[:2] == ["Gaps (0)", "Rejected readings (0)"]  # both were yesterday
    raw = widget(at.tabs, "Raw data").dataframe[0].value
    assert raw["time"].max() < (today - timedelta(days=1)).isoformat()

    picker.set_value((today - timedelta(days=30), today - timedelta(days=20))).run()
    assert_clean(at)
    assert infos(widget(at.tabs, "History")) == ["No energy recorded in this range."]
    assert infos(widget(at.tabs, "Raw data")) == ["No readings in this range."]


def test_data_quality_shows_the_gap_the_reject_and_the_register_drift(
    at: AppTest, campus: Campus
) -> None:
    quality = widget(at.tabs, "Data quality")
    assert [s.value for s in quality.subheader] == [
        "Gaps (1)",
        "Rejected readings (1)",
        "Integrated energy against the meters' own registers",
        "Estimated energy (gaps bridged by the meters' registers)",
        "Meter events (0)",
    ]
    gaps, rejects, drift = (d.value for d in quality.dataframe)

    def local(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, ZONE).strftime("%Y-%m-%d %H:%M:%S")

    meter, start, end = campus.gap
    assert gaps.to_dict("records") == [
        {"meter": meter, "from": local(start), "to": local(end), "seconds": 60.0}
    ]
    meter, ts, reason, power = campus.reject
    assert rejects.to_dict("records") == [
        {"meter": meter, "time": local(ts), "reason": reason, "power (W)": power}
    ]
    # the registers counted the gap's minute too: only ece-2 is short, by that minute
    short = -per_step_uwh(METERS["ece-2"][2]) / UWH_PER_WH
    expected = {"ece-1": 0.0, "ece-2": short, "lib-1": 0.0}
    assert dict(zip(drift["meter"], drift["difference (Wh)"], strict=True)) == expected
    shares = dict(zip(drift["meter"], drift["difference (%)"], strict=True))
    register = dict(zip(drift["meter"], drift["register (Wh)"], strict=True))
    assert shares == {m: round(100 * d / register[m], 3) for m, d in expected.items()}
    # the caption names the register's real step at the largest register shown
    largest_kwh = max(METERS[m][3] + register[m] for m in expected) / 1000
    (caption,) = [c.value for c in quality.caption if "float32" in c.value]
    assert f"({largest_kwh:,.0f} kWh)" in caption
    assert f"steps of {register_step_wh(largest_kwh):.3g} Wh" in caption


def test_a_float32_register_steps_by_its_unit_in_the_last_place() -> None:
    assert register_step_wh(5000) == 0.48828125  # 4096 ≤ 5000 < 8192 kWh: 2**-11 kWh
    assert register_step_wh(160_000) == 15.625
    assert register_step_wh(8192) == 2 * register_step_wh(8191.9)
    assert register_step_wh(0) == register_step_wh(1)  # an empty register: its smallest step


def test_a_store_without_meters_says_it_is_empty(tmp_path: Path, run: Run) -> None:
    build_store(tmp_path / "store.db", [])
    at = run(tmp_path / "store.db")
    assert_clean(at)
    assert (infos(at), len(at.tabs)) == ([EMPTY], 0)


def test_meters_without_readings_say_the_store_is_empty(tmp_path: Path, run: Run) -> None:
    build_store(tmp_path / "store.db", [], Cycle())  # the logger registered, never read
    at = run(tmp_path / "store.db")
    assert_clean(at)
    assert (infos(at), len(at.tabs)) == ([EMPTY], 0)


def test_a_missing_store_is_named_in_a_warning(tmp_path: Path, run: Run) -> None:
    store = tmp_path / "nowhere" / "store.db"
    at = run(store)
    assert_clean(at)
    assert len(at.warning) == 1
    assert f"the logger's store {store} does not exist yet" in at.warning[0].value
    assert not store.exists()  # the dashboard only reads


def test_a_bad_config_key_is_a_configuration_problem(tmp_path: Path, run: Run) -> None:
    at = run(tmp_path / "store.db", site={"colour": "blue"})
    assert not at.exception
    assert [e.value for e in at.error] == ["Configuration problem: site.colour: unknown key"]


def test_the_dashboard_command_serves_until_terminated(tmp_path: Path, campus: Campus) -> None:
    port = free_port()
    config = write_config(tmp_path, campus.store, dashboard={"port": port})
    with serving_process(
        campus_energy("dashboard", "-c", config),
        tmp_path / "dashboard.log",
        ready=lambda: streamlit_health(port) == "ok",
        ready_timeout=60,
    ):
        pass  # it serves; on leaving it gets SIGTERM and must exit 0, no traceback
    assert streamlit_health(port) == ""  # nothing answers any more; the leak check finds no child


def test_hours_and_days_still_under_way_do_not_lower_the_averages(at: AppTest) -> None:
    history = widget(at.tabs, "History")
    hourly = chart_after(history, "Average power by hour of day")
    campus_w = sum(power for _, _, power, _ in METERS.values())
    # an average is energy ÷ the time the readings covered: the hour under way, the first
    # reading and the gap at noon (which integrated nothing) leave a constant campus constant
    assert list(hourly["hour"]) == list(range(24))
    assert list(hourly["W"]) == pytest.approx([campus_w] * 24, rel=1e-9)


def test_a_store_whose_readings_carry_no_power_still_renders(run: Run, tmp_path: Path) -> None:
    """A meter whose power register is refused logs energy without power: the Overview and
    Live tabs show an empty power, they do not stop the page."""
    first = round(time.time() * 1000) - 30 * STEP_MS
    readings = [
        Reading(m, ts, seq, 1000 * seq, 1000 * seq * (seq + 1) // 2, {**STEADY, "power_w": None})
        for m in METERS
        for seq, ts in enumerate(range(first, first + 30 * STEP_MS, STEP_MS), start=1)
    ]
    store = tmp_path / "var" / "no-power.db"
    build_store(store, readings, Cycle())
    app = run(store)
    assert_clean(app)
    now = widget(app.tabs, "Overview").dataframe[0].value
    assert sorted(now["meter"]) == sorted(METERS)
    assert now["power (W)"].isna().all()
