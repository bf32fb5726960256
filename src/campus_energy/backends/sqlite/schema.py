"""The SQLite window store's schema (`bridge.sqlite.path`): windows, rollups, latest windows.

`window_aggregates` holds one row per meter per window (id `<meter_id>_<start>`),
the contract's fields and the `accumulator` the sink merges into; `rollup_hourly`
and `rollup_daily` the sums by local hour and local day of the site's zone
(recorded in `meta` with the layout, so a change drops and rebuilds them), an
hour's row also with the energy of each of its quarter hours (`q0_wh`..`q3_wh`), a
day's row with the day's highest 15-, 30- and 60-minute interval of its meter
(`peak15_wh`, `peak15_ms` its start, the earliest of equals; `core.peaks.day_peaks`);
`rollup_daily_campus` the day's sums over every meter; every rollup also with the
measured export (`export_wh`) and the estimated import and export (`estimated_wh`,
`estimated_export_wh`: gaps the meters' registers bridged), apart from the measured
import (`energy_wh`). A window's `import_energy_wh` (its `total_energy_wh`) and
`net_energy_wh` (import − export) are generated columns. `window_meters` holds each
meter's latest window (and its site: '' for one written before sites); `meta` the
data version readers watch for changes. The sink creates and writes them; the source
reads the same tables.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS window_aggregates (
    id TEXT PRIMARY KEY,
    meter_id TEXT NOT NULL,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    total_energy_wh REAL NOT NULL,
    avg_power_w REAL,
    min_power_w REAL,
    max_power_w REAL,
    avg_voltage_v REAL,
    avg_current_a REAL,
    avg_power_factor REAL,
    avg_frequency_hz REAL,
    readings_in_batch INTEGER NOT NULL,
    coverage REAL NOT NULL,
    updated_at TEXT NOT NULL,
    accumulator TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '',
    export_energy_wh REAL NOT NULL DEFAULT 0,
    estimated_energy_wh REAL NOT NULL DEFAULT 0,
    estimated_export_wh REAL NOT NULL DEFAULT 0,
    import_energy_wh REAL GENERATED ALWAYS AS (total_energy_wh) VIRTUAL,
    net_energy_wh REAL GENERATED ALWAYS AS (total_energy_wh - export_energy_wh) VIRTUAL
);
CREATE UNIQUE INDEX IF NOT EXISTS window_aggregates_meter_start
    ON window_aggregates (meter_id, window_start_ms);
CREATE INDEX IF NOT EXISTS window_aggregates_start ON window_aggregates (window_start_ms);
CREATE TABLE IF NOT EXISTS rollup_hourly (
    hour_ms INTEGER NOT NULL,
    meter_id TEXT NOT NULL,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    q0_wh REAL NOT NULL,
    q1_wh REAL NOT NULL,
    q2_wh REAL NOT NULL,
    q3_wh REAL NOT NULL,
    export_wh REAL NOT NULL DEFAULT 0,
    estimated_wh REAL NOT NULL DEFAULT 0,
    estimated_export_wh REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_ms, meter_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_hourly_by_meter ON rollup_hourly (meter_id, hour_ms);
CREATE TABLE IF NOT EXISTS rollup_daily (
    day TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    last_window_ms INTEGER NOT NULL,
    peak15_wh REAL NOT NULL,
    peak15_ms INTEGER NOT NULL,
    peak30_wh REAL NOT NULL,
    peak30_ms INTEGER NOT NULL,
    peak60_wh REAL NOT NULL,
    peak60_ms INTEGER NOT NULL,
    export_wh REAL NOT NULL DEFAULT 0,
    estimated_wh REAL NOT NULL DEFAULT 0,
    estimated_export_wh REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, meter_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_daily_by_meter ON rollup_daily (meter_id, day);
CREATE TABLE IF NOT EXISTS rollup_daily_campus (
    day TEXT PRIMARY KEY,
    energy_wh REAL NOT NULL,
    covered_s REAL NOT NULL,
    readings INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    last_window_ms INTEGER NOT NULL,
    export_wh REAL NOT NULL DEFAULT 0,
    estimated_wh REAL NOT NULL DEFAULT 0,
    estimated_export_wh REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS window_meters (
    meter_id TEXT PRIMARY KEY,
    building TEXT NOT NULL,
    floor TEXT NOT NULL,
    last_window_ms INTEGER NOT NULL,
    last_avg_power_w REAL,
    last_coverage REAL NOT NULL,
    updated_ms INTEGER NOT NULL,
    site TEXT NOT NULL DEFAULT ''
)
"""

# Columns added after the first release, for files made before them: (table, column, type),
# in the order they are added (a generated column after the columns it reads). A window
# written before directions has no export and no estimate: 0 is its truth.
ADDED_COLUMNS = (
    ("window_aggregates", "site", "TEXT NOT NULL DEFAULT ''"),
    ("window_meters", "site", "TEXT NOT NULL DEFAULT ''"),
    ("window_aggregates", "export_energy_wh", "REAL NOT NULL DEFAULT 0"),
    ("window_aggregates", "estimated_energy_wh", "REAL NOT NULL DEFAULT 0"),
    ("window_aggregates", "estimated_export_wh", "REAL NOT NULL DEFAULT 0"),
    ("window_aggregates", "import_energy_wh", "REAL GENERATED ALWAYS AS (total_energy_wh) VIRTUAL"),
    (
        "window_aggregates",
        "net_energy_wh",
        "REAL GENERATED ALWAYS AS (total_energy_wh - export_energy_wh) VIRTUAL",
    ),
)
# Columns the store computes from others (never written): the document's import and net
GENERATED_COLUMNS = frozenset({"import_energy_wh", "net_energy_wh"})

ROLLUP_TABLES = ("rollup_hourly", "rollup_daily", "rollup_daily_campus")
# bump when the rollup tables change: existing files drop and rebuild them from the windows
# (6: export, estimated import and estimated export beside the measured import)
ROLLUP_LAYOUT = 6
