"""`campus-energy dashboard`: the local Streamlit dashboard (`dashboard.host`,
`dashboard.port`), reading the logger's store read-only. Streamlit takes over the process."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from campus_energy.config import load_config
from campus_energy.extras import require


def configure(parser: argparse.ArgumentParser) -> None:
    """No options of its own: everything is in the configuration."""


def run(args: argparse.Namespace) -> int:
    # validated here, so a bad config exits 2 before Streamlit starts
    config = load_config(args.config, os.environ)
    for module in ("streamlit", "pandas", "altair"):  # what the app imports, in its extra
        require(module, "dashboard")
    script = resources.files("campus_energy.dashboard").joinpath("app.py")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.address",
        config.dashboard.host,
        "--server.port",
        str(config.dashboard.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",  # no developer menu or Deploy button for the people watching
        "viewer",
        "--",
    ]
    if config.source is not None:
        command += ["--config", str(config.source)]
    sys.stdout.flush()
    os.execv(sys.executable, command)  # Streamlit takes over this process (signals, exit code)
