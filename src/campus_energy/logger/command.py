"""`campus-energy logger`: the logger service. Polls every configured meter on its grid,
integrates power into energy, keeps the readings in its SQLite store and publishes them
over MQTT. Runs until SIGTERM or SIGINT; under systemd it reports readiness and pings
the watchdog."""

from __future__ import annotations

import argparse
import os

from campus_energy.config import load_config
from campus_energy.errors import UsageError
from campus_energy.runtime.process import notifier, run_until_signalled


def configure(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything is in the configuration."""


def run(args: argparse.Namespace) -> int:
    from campus_energy.logger.service import MeterLogger

    config = load_config(args.config, os.environ)
    if not config.meters:
        raise UsageError("no meters configured: the logger has nothing to poll")
    if not config.logger_meters():
        chosen = f"logger.site {config.logger.site!r}" if config.logger.site else ""
        chosen += " and " if chosen and config.logger.buses else ""
        chosen += f"logger.buses {list(config.logger.buses)}" if config.logger.buses else ""
        raise UsageError(f"no meters in {chosen}: the logger has nothing to poll")
    return run_until_signalled(MeterLogger(config, notifier=notifier()).run)
