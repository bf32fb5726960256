"""`campus-energy api`: the HTTP API and the public web dashboard, served by Gunicorn
(`api.host`, `api.port`, `api.workers`), reading the window store. Runs until SIGTERM or
SIGINT; under systemd it reports readiness and pings the watchdog while the app answers."""

from __future__ import annotations

import argparse
import os

from campus_energy.config import load_config
from campus_energy.errors import EXIT_OK
from campus_energy.extras import require_store
from campus_energy.runtime.process import notifier


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev", action="store_true", help="Flask's development server, not Gunicorn"
    )


def run(args: argparse.Namespace) -> int:
    from campus_energy.api.server import serve

    config = load_config(args.config, os.environ)
    require_store(config.api.source or config.bridge.sink, "api")  # before Gunicorn's workers
    serve(config, dev=args.dev, notifier=notifier())
    return EXIT_OK
