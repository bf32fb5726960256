"""`campus-energy bridge`: the bridge service. Subscribes to the loggers' readings over MQTT,
keeps them in its spool and merges them into window documents in the window store
(`bridge.sink`). Runs until SIGTERM or SIGINT; under systemd it reports readiness and pings
the watchdog."""

from __future__ import annotations

import argparse
import os

from campus_energy.config import load_config
from campus_energy.extras import require_store
from campus_energy.runtime.process import notifier, run_until_signalled


def configure(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything is in the configuration."""


def run(args: argparse.Namespace) -> int:
    from campus_energy.bridge.service import Bridge

    config = load_config(args.config, os.environ)
    require_store(config.bridge.sink, "bridge")  # not a sink outage to retry for ever
    return run_until_signalled(Bridge(config, notifier=notifier()).run)
