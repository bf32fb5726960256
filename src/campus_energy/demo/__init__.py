"""`campus-energy demo`: the system on a simulated campus, with embedded defaults.

Runs an MQTT broker (Mosquitto when installed, otherwise the embedded amqtt
broker), the meter simulator, the logger, the bridge (SQLite sink) and the
alerts service (a few rules on the campus, notifying on MQTT), and shows
readings flowing: the newest reading of every meter, what was stored,
published, received over MQTT, the windows written and the alerts firing. Its
configuration and data live in one folder (`./demo-data/` by default), reused on the next run so
history accumulates; `--backfill-days N` first writes N days of it.

The modules: `campus` (the meters, the modes, the configuration file),
`services` (broker, receiver, child processes, ports), `status` (the screen),
`backfill` (history) and `run` (all of it, until Ctrl-C).
"""

from __future__ import annotations

from campus_energy.demo.backfill import Backfilled, backfill
from campus_energy.demo.campus import (
    API_PORT,
    BROKER_PORT,
    DASHBOARD_PORT,
    DEMO_COLUMNS,
    DEMO_DIR,
    DEMO_METERS,
    FAST,
    GATEWAY_PORT,
    NORMAL,
    TCP_PORT,
    DemoMode,
    demo_config_text,
    prepare,
)
from campus_energy.demo.run import run_demo
from campus_energy.demo.services import (
    Ports,
    Receiver,
    ServiceProcess,
    choose_ports,
    demo_broker,
    service_processes,
    urls,
)
from campus_energy.demo.status import Books, Notices, books, screen, status_line, waiting_line

__all__ = [
    "API_PORT",
    "BROKER_PORT",
    "DASHBOARD_PORT",
    "DEMO_COLUMNS",
    "DEMO_DIR",
    "DEMO_METERS",
    "FAST",
    "GATEWAY_PORT",
    "NORMAL",
    "TCP_PORT",
    "Backfilled",
    "Books",
    "DemoMode",
    "Notices",
    "Ports",
    "Receiver",
    "ServiceProcess",
    "backfill",
    "books",
    "choose_ports",
    "demo_broker",
    "demo_config_text",
    "prepare",
    "run_demo",
    "screen",
    "service_processes",
    "status_line",
    "urls",
    "waiting_line",
]
