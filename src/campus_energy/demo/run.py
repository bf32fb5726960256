"""Running the demo: history first (when asked), then every service, shown live until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from campus_energy.alerts.service import AlertsService
from campus_energy.bridge.service import Bridge
from campus_energy.config import Config
from campus_energy.demo.backfill import backfill
from campus_energy.demo.services import (
    Receiver,
    ServiceProcess,
    choose_ports,
    demo_broker,
    own_listeners,
    service_processes,
    urls,
)
from campus_energy.demo.status import (
    Notices,
    books,
    collecting,
    screen,
    status_line,
    waiting_line,
)
from campus_energy.errors import CampusEnergyError
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator
from campus_energy.runtime.clock import sleep_or_stop

HEALTHY_WITHIN_S = 60.0
CLEAR = "\033[H\033[2J"
log = logging.getLogger("campus_energy.demo")


async def run_alerts(service: AlertsService, stop: asyncio.Event) -> None:
    """The alerts service until `stop`; should it fail, the demo says so and goes on."""
    try:
        await service.run(stop)
    except CampusEnergyError as exc:
        log.error("the alerts service stopped: %s", exc)


def service_lines(
    config: Config, with_dashboard: bool, children: list[ServiceProcess]
) -> list[str]:
    """The URLs, each with its service's state."""
    lines = urls(config, with_dashboard)
    state = {child.name: child for child in children}
    api, dashboard = state.get("web dashboard and API"), state.get("Streamlit dashboard")
    marks = [api, api, dashboard]
    shown = []
    for line, child in zip(lines, marks, strict=False):
        if child is None or child.state == "ready":
            shown.append(line)
        elif child.state == "starting":
            shown.append(f"{line}  (starting …)")
        else:
            shown.append(f"{line}  (did not start: see {child.log_file})")
    return shown


async def write_history(config: Config, days: int, *, interactive: bool) -> None:
    """`--backfill-days`: the history, told as it goes (on one rewritten line on a terminal)."""
    span = "1 day" if days == 1 else f"{days} days"
    print(f"history: writing {span} of simulated readings and windows …", flush=True)

    def progress(text: str) -> None:
        if interactive:
            print(f"\r\033[K{text}", end="", flush=True)

    done = await backfill(config, days, progress=progress)
    if interactive:
        print("\r\033[K", end="")
    if done.readings:
        print(
            f"history: {done.readings} readings and {done.windows} windows over {done.days} "
            f"days in {done.seconds:.1f} s",
            flush=True,
        )
    else:
        print("history: already there, nothing to add", flush=True)


async def run_demo(
    config: Config,
    folder: Path,
    stop: asyncio.Event,
    *,
    rounds: int | None = None,
    broker_kind: str = "auto",
    with_dashboard: bool = False,
    api_port: int | None = None,
    dashboard_port: int | None = None,
    backfill_days: int = 0,
) -> None:
    """The simulated campus, the broker, the logger, the bridge, the alerts service and the
    dashboards, until `stop`."""
    interval = max(1.0, min((m.interval_s for m in config.meters), default=5.0))
    interactive = sys.stdout.isatty()
    ports = choose_ports(config, api_port, dashboard_port, with_dashboard=with_dashboard)
    config, moved = own_listeners(ports.config)
    notices = Notices()
    for note in (*moved, *ports.notes):
        print(note, flush=True)
        notices.add(note)
    children = service_processes(config, folder, with_dashboard, {**os.environ, **ports.env})
    with collecting(notices, quiet_stderr=interactive):
        async with demo_broker(config, folder, broker_kind) as broker, Simulator(config):
            if backfill_days > 0:
                await write_history(config, backfill_days, interactive=interactive)
            services_stop = asyncio.Event()
            bridge = Bridge(config)
            bridging = asyncio.create_task(bridge.run(services_stop))
            await asyncio.wait_for(bridge.subscribed.wait(), 15)  # its session exists first
            logger = MeterLogger(config)
            logging_task = asyncio.create_task(logger.run(services_stop))
            # the alerts service, as its unit runs it (a config of an older demo has no rules)
            alerts = AlertsService(config) if config.alerts.rules else None
            alerting = None
            if alerts is not None:
                alerting = asyncio.create_task(run_alerts(alerts, services_stop))
            receiver = Receiver(config)
            receiving = asyncio.create_task(receiver.run())
            checks: list[asyncio.Task[bool]] = []
            try:
                for child in children:
                    child.start()
                    checks.append(asyncio.create_task(child.wait_healthy(HEALTHY_WITHIN_S)))
                await show(
                    config, logger, bridge, receiver, children, notices, stop,
                    broker=broker, with_dashboard=with_dashboard, interval=interval,
                    rounds=rounds, interactive=interactive, alerts=alerts,
                )  # fmt: skip
            finally:
                for check in checks:
                    check.cancel()
                await asyncio.gather(*checks, return_exceptions=True)
                for child in reversed(children):
                    await asyncio.to_thread(child.stop)
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiving
                services_stop.set()
                if alerting is not None:
                    await alerting
                await logging_task
                await bridging


async def show(
    config: Config,
    logger: MeterLogger,
    bridge: Bridge,
    receiver: Receiver,
    children: list[ServiceProcess],
    notices: Notices,
    stop: asyncio.Event,
    *,
    broker: str,
    with_dashboard: bool,
    interval: float,
    rounds: int | None,
    interactive: bool,
    alerts: AlertsService | None = None,
) -> None:
    """The screen: at once, then every `interval` (on a terminal, every second until the first
    window); `rounds` screens after the first, then it returns."""
    head = [
        f"broker: {broker}; store: {config.storage.path}",
        f"{config.bridge.window_s} s windows, written {config.bridge.grace_s:g} s after "
        f"they end, into {config.bridge.sqlite.path}",
    ]
    failed: set[str] = set()
    first_ms: int | None = None
    shown = 0  # screens a whole interval apart (what --rounds counts); the first is at once
    counted_at = time.monotonic()
    while True:
        for child in children:
            if child.state == "failed" and child.name not in failed:
                failed.add(child.name)
                notices.add(f"{child.name} did not start: see {child.log_file}")
                if not interactive:
                    print(f"{child.name} did not start: see {child.log_file}", flush=True)
        if first_ms is None and logger.latest:
            first_ms = min(r.ts_ms for r in logger.latest.values())
        waiting = waiting_line(
            config,
            polled=len(logger.latest),
            windows=bridge.counters.window_writes,
            first_ms=first_ms,
            now=time.time(),
        )
        status = status_line(logger, bridge, receiver, await books(logger, bridge, alerts))
        lines = [*head, *service_lines(config, with_dashboard, children)]
        text = screen(config, logger, lines, status, notices=notices.lines, waiting=waiting)
        if interactive:
            text = CLEAR + text + "\n\nCtrl-C to stop."
        print(text, flush=True)
        if time.monotonic() - counted_at >= interval - 0.1:
            shown += 1
            counted_at = time.monotonic()
        if rounds is not None and shown >= rounds:
            break
        if await sleep_or_stop(1.0 if waiting and interactive else interval, stop):
            break
