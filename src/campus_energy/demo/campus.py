"""The demo's campus: 13 simulated meters in 5 buildings (one with rooftop PV that exports at
noon), its modes and its configuration file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from campus_energy.meters.diagnose import TABLE_COLUMNS

DEMO_DIR = Path("demo-data")
GATEWAY_PORT = 15020
TCP_PORT = 15021
BROKER_PORT = 18830
API_PORT = 8000
DASHBOARD_PORT = 8501

# (meter id, building, floor, bus, unit, profile)
DEMO_METERS = (
    ("ece-f1-001", "ECE", "1", "gateway-north", 1, "eastron-sdm120"),
    ("ece-f2-001", "ECE", "2", "gateway-north", 2, "eastron-sdm120"),
    ("ece-main", "ECE", "G", "gateway-north", 3, "eastron-sdm630"),
    ("lib-f1-001", "Library", "1", "gateway-north", 4, "eastron-sdm230"),
    ("lib-f2-001", "Library", "2", "gateway-north", 5, "eastron-sdm230"),
    ("lib-main", "Library", "G", "gateway-north", 6, "eastron-sdm72d"),
    ("hostel-a-001", "Hostel", "A", "plant-tcp", 1, "eastron-sdm120"),
    ("hostel-b-001", "Hostel", "B", "plant-tcp", 2, "eastron-sdm120"),
    ("hostel-main", "Hostel", "G", "plant-tcp", 3, "eastron-sdm630"),
    ("admin-f1-001", "Admin", "1", "plant-tcp", 4, "eastron-sdm120"),
    ("admin-legacy", "Admin", "G", "plant-tcp", 5, "campus-legacy"),
    ("admin-main", "Admin", "G", "plant-tcp", 6, "eastron-sdm72d"),
    ("sports-main", "Sports", "G", "plant-tcp", 7, "eastron-sdm630"),
)
# The sports hall's roof carries a PV array larger than the hall draws: its main meter
# measures load − PV and exports around noon (meters.simulate.pv_peak_w, docs/solar.md).
PV_METERS = {"sports-main": (60_000, 0.2)}  # meter id -> (pv_peak_w, cloudiness)
DEMO_COLUMNS = (
    *TABLE_COLUMNS[:3],
    ("energy_total_wh", "logged kWh", 1000),
    TABLE_COLUMNS[5],  # the meter's import register
    TABLE_COLUMNS[6],  # its export register (the PV building's moves at noon)
)


@dataclass(frozen=True)
class DemoMode:
    """How fast the demo runs. Production uses 5 s polls and 300 s windows; the demo's windows
    are shorter so the web dashboard has data within its first minute."""

    folder: str  # under the demo folder: "" for the normal demo
    interval_s: float
    window_s: int
    grace_s: int
    refresh_s: int  # the web dashboard's auto-refresh


NORMAL = DemoMode("", interval_s=5.0, window_s=30, grace_s=5, refresh_s=10)
FAST = DemoMode("fast", interval_s=1.0, window_s=10, grace_s=2, refresh_s=5)


def demo_config_text(mode: DemoMode = NORMAL) -> str:
    """The demo's configuration file: 13 meters, 5 buildings, an RS-485 gateway and a TCP bus."""
    lines = [
        "# The Campus Energy demo: simulated meters on this machine.",
        "# Written by `campus-energy demo`; edit it freely, it is reused on the next run.",
        "",
        "[site]",
        'name = "Demo Campus"',
        'timezone = "Asia/Kolkata"',
        'tariff = "campus-tou"                 # the tariff of buildings without their own',
        "",
        "[storage]",
        'path = "smart_meter.db"',
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {BROKER_PORT}",
        "",
        "[logger]",
        'id = "demo"',
        "",
        "[bridge]",
        f"window_s = {mode.window_s}                        # production: 300",
        f"grace_s = {mode.grace_s}",
        'spool_path = "bridge-spool.db"',
        'client_id = "campus-energy-demo-bridge"',
        'sink = "sqlite"',
        "",
        "[bridge.sqlite]",
        'path = "windows.db"',
        "",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {API_PORT}",
        "workers = 1",
        "cache_s = 2",
        f"refresh_s = {mode.refresh_s}",
        "",
        "[dashboard]",
        'host = "127.0.0.1"',
        f"port = {DASHBOARD_PORT}",
        "",
        "[[buses]]",
        'name = "gateway-north"',
        'transport = "rtu-tcp"',
        'host = "127.0.0.1"',
        f"port = {GATEWAY_PORT}",
        "baudrate = 9600",
        "timeout_s = 0.5",
        "",
        "[[buses]]",
        'name = "plant-tcp"',
        'transport = "tcp"',
        'host = "127.0.0.1"',
        f"port = {TCP_PORT}",
        "timeout_s = 0.5",
    ]
    for meter_id, building, floor, bus, unit, profile in DEMO_METERS:
        lines += [
            "",
            "[[meters]]",
            f'id = "{meter_id}"',
            f'bus = "{bus}"',
            f"unit = {unit}",
            f'profile = "{profile}"',
            f'building = "{building}"',
            f'floor = "{floor}"',
            f"interval_s = {mode.interval_s:g}",
        ]
        main = meter_id.endswith("-main")
        lines.append('role = "main"' if main else f'parent = "{meter_id.split("-")[0]}-main"')
        base, peak = (12000, 40000) if main else (800, 5000)
        if meter_id in PV_METERS:
            base, peak = 6000, 20000
        lines += ["", "[meters.simulate]", f"base_w = {base}", f"peak_w = {peak}"]
        if meter_id in PV_METERS:
            pv_peak, cloudiness = PV_METERS[meter_id]
            lines += [
                f"pv_peak_w = {pv_peak}               # rooftop PV: the meter measures load − PV",
                f"cloudiness = {cloudiness:g}",
            ]
        if meter_id == "admin-legacy":
            lines += ["timeout_rate = 0.02   # a little unreliability"]
    lines += BILLING_LINES + alert_lines(mode)
    return "\n".join(lines) + "\n"


# The demo's campus model, tariff and emission factor (docs/billing.md explains each key).
BILLING_LINES = [
    "",
    "[[site.buildings]]",
    'name = "ECE"',
    "floor_area_m2 = 6200",
    "[site.buildings.occupancy]",
    'mon = "08:00-20:00"',
    'tue = "08:00-20:00"',
    'wed = "08:00-20:00"',
    'thu = "08:00-20:00"',
    'fri = "08:00-20:00"',
    'sat = "09:00-13:00"',
    "",
    "[[site.buildings]]",
    'name = "Library"',
    "floor_area_m2 = 4800",
    "",
    "[[site.buildings]]",
    'name = "Hostel"',
    "floor_area_m2 = 9000",
    'tariff = "residential"',
    "",
    "[[site.buildings]]",
    'name = "Admin"',
    "floor_area_m2 = 2500",
    "",
    "[[site.buildings]]",
    'name = "Sports"                      # a hall with rooftop PV: exports around noon',
    "floor_area_m2 = 3800",
    "",
    "[[virtual_meters]]",
    'id = "ece-unmetered"',
    'building = "ECE"',
    'terms = "ece-main - ece-f1-001 - ece-f2-001"   # what the floors\' meters do not see',
    "",
    "[[virtual_meters]]",
    'id = "admin-unmetered"',
    'building = "Admin"',
    'terms = "admin-main - admin-f1-001 - admin-legacy"',
    "",
    "[[tariffs]]",
    'id = "campus-tou"',
    'currency = "INR"',
    'holidays = ["2026-01-26", "2026-08-15", "2026-10-02", "2026-12-25"]',
    "",
    "[[tariffs.versions]]",
    "valid_from = 2025-04-01",
    'default_rate = "7.10"                 # per kWh, outside the periods below',
    'standing_per_month = "25000"',
    "[[tariffs.versions.periods]]",
    'name = "peak"',
    'days = ["weekdays"]',
    'start = "18:00"',
    'end = "22:00"',
    'rate = "9.20"',
    "[[tariffs.versions.periods]]",
    'name = "off-peak"',
    'days = ["all"]',
    'start = "22:00"',
    'end = "06:00"',
    'rate = "5.90"',
    "[tariffs.versions.demand]",
    "interval_min = 30",
    'price_per_kw = "450"',
    'ratchet_share = "0.75"                # billed demand: at least 75 % of the last 11 months\'',
    'minimum_kw = "50"',
    "",
    "[[tariffs.versions]]",
    "valid_from = 2026-04-01",
    'default_rate = "7.45"',
    'standing_per_month = "25000"',
    "[[tariffs.versions.periods]]",
    'name = "peak"',
    'days = ["weekdays"]',
    'start = "18:00"',
    'end = "22:00"',
    'rate = "9.65"',
    "[[tariffs.versions.periods]]",
    'name = "off-peak"',
    'days = ["all"]',
    'start = "22:00"',
    'end = "06:00"',
    'rate = "6.20"',
    "[tariffs.versions.demand]",
    "interval_min = 30",
    'price_per_kw = "475"',
    'ratchet_share = "0.75"',
    'minimum_kw = "50"',
    "",
    "[[tariffs]]",
    'id = "residential"',
    'currency = "INR"',
    "[[tariffs.versions]]",
    "valid_from = 2025-04-01",
    'default_rate = "6.30"',
    'standing_per_day = "120"',
    "",
    "[emissions]",
    'factors = [{ valid_from = 2025-04-01, kg_per_kwh = "0.710" }]   # the grid\'s annual mean',
]


# The demo's alerts: the alerts service evaluates them over the live readings and the windows
# and notifies on MQTT (retained states under campus/energy/alerts/…); the web dashboard and
# `campus-energy alerts list` show them.
def alert_lines(mode: DemoMode) -> list[str]:
    """The demo's `[alerts]`: coverage-low looks at the last 3 minutes of windows (the alerts
    service reads a window from the store a minute after it is written)."""
    windows = math.ceil(COVERAGE_SPAN_S / mode.window_s)
    return [
        line.replace("@WINDOWS@", str(windows)).replace("@MINUTES@", f"{COVERAGE_SPAN_S // 60}")
        for line in ALERT_LINES
    ]


COVERAGE_SPAN_S = 180
ALERT_LINES = [
    "",
    "[alerts]",
    'state_path = "alerts.db"',
    "evaluate_every_s = 5",
    'client_id = "campus-energy-demo-alerts"',
    "",
    "[[alerts.channels]]",
    'name = "mqtt"',
    'kind = "mqtt"',
    "",
    "[[alerts.rules]]",
    'name = "meter-silent"                 # no reading for 3 polls, or the meter offline',
    'kind = "meter-silent"',
    'scope = "campus"',
    'for = "30s"',
    'severity = "critical"',
    'channels = ["mqtt"]',
    "",
    "[[alerts.rules]]",
    'name = "coverage-low"                 # @MINUTES@ minutes of windows less than 80 % covered',
    'kind = "coverage-low"',
    'scope = "campus"',
    "below = 0.8",
    "windows = @WINDOWS@",
    'channels = ["mqtt"]',
    "",
    "[[alerts.rules]]",
    'name = "ece-after-hours"              # ECE drawing over 10 kW while it is closed',
    'kind = "after-hours"',
    'scope = "building:ECE"',
    "above_kw = 10",
    'for = "1m"',
    'channels = ["mqtt"]',
    "",
    "[[alerts.rules]]",
    'name = "campus-demand"                # this half hour heading for 80 % of the contract',
    'kind = "demand-approaching"',
    'scope = "campus"',
    "contracted_kw = 150",
    "share = 0.8",
    'severity = "info"',
    'channels = ["mqtt"]',
]


def prepare(folder: Path, mode: DemoMode = NORMAL) -> Path:
    """The demo's config file, written on the first run (the fast demo keeps its own folder)."""
    home = folder / mode.folder
    home.mkdir(parents=True, exist_ok=True)
    path = home / "campus-energy.toml"
    if not path.exists():
        path.write_text(demo_config_text(mode), encoding="utf-8")
    return path
