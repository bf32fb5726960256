"""`campus-energy demo`: a simulated campus, polled live, with embedded defaults.

The demo writes its configuration under one folder (`./demo-data/` by
default) on the first run and reuses it afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from campus_energy.config import Config, load_config
from campus_energy.polling import open_buses, pollers
from campus_energy.reader import format_table, read_all, sleep_until_grid
from campus_energy.simulator.server import Simulator

DEMO_DIR = Path("demo-data")
GATEWAY_PORT = 15020
TCP_PORT = 15021

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
)


def demo_config_text(interval_s: float = 5.0) -> str:
    """The demo's configuration file: 12 meters, 4 buildings, an RS-485 gateway and a TCP bus."""
    lines = [
        "# The Campus Energy demo: simulated meters on this machine.",
        "# Written by `campus-energy demo`; edit it freely, it is reused on the next run.",
        "",
        "[site]",
        'name = "Demo Campus"',
        'timezone = "Asia/Kolkata"',
        "",
        "[storage]",
        'path = "smart_meter.db"',
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
            f"interval_s = {interval_s:g}",
        ]
        if meter_id == "admin-legacy":
            lines += ["", "[meters.simulate]", "timeout_rate = 0.02   # a little unreliability"]
    return "\n".join(lines) + "\n"


def prepare(folder: Path) -> Path:
    """The demo's config file, written on the first run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "campus-energy.toml"
    if not path.exists():
        path.write_text(demo_config_text(), encoding="utf-8")
    return path


async def run_demo(config: Config, *, rounds: int | None = None) -> None:
    """Serve the simulated campus and print a live table until interrupted (or `rounds` polls)."""
    interval = min((m.interval_s for m in config.meters), default=5.0)
    interactive = sys.stdout.isatty()
    async with Simulator(config):
        buses = open_buses(config)
        meters = pollers(config, buses, config.meters)
        try:
            done = 0
            while rounds is None or done < rounds:
                results = await read_all(meters)
                stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                table = format_table(results, config)
                screen = f"Campus Energy demo — {config.site.name} — {stamp}\n\n{table}\n"
                if interactive:
                    screen = "\033[H\033[2J" + screen + "\nCtrl-C to stop.\n"
                print(screen, flush=True)
                done += 1
                if rounds is None or done < rounds:
                    await sleep_until_grid(interval)
        finally:
            for bus in buses.values():
                await bus.close()


def main(folder: Path = DEMO_DIR, rounds: int | None = None) -> None:
    config = load_config(prepare(folder), {})
    print(f"demo configuration: {config.source}", flush=True)
    asyncio.run(run_demo(config, rounds=rounds))
