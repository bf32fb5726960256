"""`campus-energy demo`: the whole system on a simulated campus, with embedded defaults.
Runs a broker, the meter simulator, the logger, the bridge, the alerts service and the API
(and with --with-dashboard the Streamlit dashboard), showing readings flow until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from campus_energy.config import load_config
from campus_energy.runtime.process import run_until_signalled


def days(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 366:
        raise argparse.ArgumentTypeError(f"not a number of days from 0 to 366: {text!r}")
    return number


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir", type=Path, default=Path("demo-data"), help="where the demo keeps its files"
    )
    p.add_argument("--rounds", type=int, help="stop after showing the table this many times")
    p.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="MQTT broker to run (auto: Mosquitto when installed, else the embedded one)",
    )
    p.add_argument(
        "--fast", action="store_true", help="1 s polls and 10 s windows (kept in <dir>/fast)"
    )
    p.add_argument(
        "--with-dashboard", action="store_true", help="also run the local Streamlit dashboard"
    )
    p.add_argument(
        "--port",
        type=int,
        help="the web dashboard's and API's port (default: the config's, "
        "8000); when it is taken, any free port, and the demo prints which",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        help="the Streamlit dashboard's port (default: 8501), or any free port when it is taken",
    )
    p.add_argument(
        "--backfill-days", type=days, default=0, metavar="N",
        help="first write N days of simulated history (readings and windows; days already "
        "there are kept)"
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from campus_energy.demo.campus import FAST, NORMAL, prepare
    from campus_energy.demo.run import run_demo

    path = prepare(args.dir, FAST if args.fast else NORMAL)
    config = load_config(path, os.environ)
    print(f"demo configuration: {path}", flush=True)

    async def demo(stop: asyncio.Event) -> None:
        await run_demo(
            config,
            path.parent,
            stop,
            rounds=args.rounds,
            broker_kind=args.broker,
            with_dashboard=args.with_dashboard,
            api_port=args.port,
            dashboard_port=args.dashboard_port,
            backfill_days=args.backfill_days,
        )
        print("demo stopped", flush=True)

    return run_until_signalled(demo)
