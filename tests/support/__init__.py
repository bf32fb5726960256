"""What the tests share, grouped by what it is (conftest.py keeps only fixtures and hooks).

Running things:
- `waiting`: polling until a condition holds: `wait_for`, `eventually` (async), `within`
- `processes`: programs a test needs (found, or skipped), `campus-energy` as a command (`run_cli`)
- `services`: a service for the length of a block: in-process (`serving`) or a child process
  (`serving_process`), stopped and checked on leaving
- `systemd`: a notification socket standing in for systemd's
- `emulator`: the Firestore emulator, usable outside pytest (the benchmarks start it too)

Places to talk to:
- `net`: free ports, a TCP relay a test can cut
- `http`: asking a local HTTP service while it starts
- `mqtt`: a private Mosquitto, a persistent subscriber, retained messages read back
- `brokers`: RabbitMQ's MQTT plugin, NATS server's MQTT and a production-like Mosquitto as
  a test's own processes; `broker_probes`: what each does with what the pipeline relies on
- `serial`: a virtual RS-485 cable (socat)
- `metrics`: Prometheus `/metrics` scraped and read

Configurations and data:
- `config`: one builder of configurations (data, validated, or a TOML file)
- `campus`: the standard three-meter campus, with or without a bridge, and its books
- `stores`: a throw-away PostgreSQL schema, the emulator for a test
- `sinks`: a fresh sink of each kind, and the windows read back from it
- `readback`: a service's SQLite files read from outside while it runs
- `logger_store`: a logger's store written by its own code, for fix-db and the damage tests
- `known_windows`: a deterministic campus of windows with known sums (the API's fixture)
- `sites`: an estate of three sites in three zones with known sums per site (the API's)
- `priced_campus`, `report_campus`: the priced Berlin campus of the bills and the reports
- `dashboard_books`: the local dashboard's store and the sums it must show
- `homeassistant`: Home Assistant's rules for a discovered sensor
- `clock`: a clock a test moves by hand
"""

from __future__ import annotations

# Processes deliberately kept for a whole module (a slow fixture shared by its tests).
SHARED_PROCESSES: set[int] = set()

# Headless Chromium on a machine with no network beyond loopback: nothing it starts may
# reach out (background networking, component updates, sync), and no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
