"""The command line: `campus-energy <command> [-c CONFIG]`.

This module only parses options and turns the project's exceptions into
messages and exit codes: 0 success, 1 runtime failure, 2 bad usage or
configuration. Each command lives beside the code it drives and is named in
`COMMANDS`; only the chosen one is imported.

A command is a module (or a class in one) offering `configure(parser)` (its
options), `run(args) -> int` (its exit code) and a docstring (its `--help`
description).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from campus_energy import __version__
from campus_energy.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CampusEnergyError,
    ConfigError,
    ProfileError,
    UsageError,
)
from campus_energy.extras import missing

log = logging.getLogger("campus_energy")

# name -> (where the command lives, "module" or "module:Class"; its line in `--help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("campus_energy.config.sample", "write a commented sample configuration"),
    "profiles": ("campus_energy.meters.commands:Profiles", "list meter profiles, or show one"),
    "read": (
        "campus_energy.meters.commands:Read",
        "poll meters once (or --watch) and print values",
    ),
    "scan": ("campus_energy.meters.commands:Scan", "find the devices that answer on a bus"),
    "simulate": (
        "campus_energy.meters.commands:Simulate",
        "serve the configured meters as virtual meters",
    ),
    "logger": ("campus_energy.logger.command", "poll, integrate, store and publish (service)"),
    "bridge": ("campus_energy.bridge.command", "readings from MQTT into windows (service)"),
    "api": ("campus_energy.api.command", "the HTTP API and the web dashboard (service)"),
    "dashboard": ("campus_energy.dashboard.command", "the local Streamlit dashboard (service)"),
    "demo": ("campus_energy.demo.command", "run the system on simulated meters"),
    "fix-db": (
        "campus_energy.ops.fixdb.command",
        "find and repair timestamp corruption in the logger's store",
    ),
    "import-legacy": (
        "campus_energy.ops.legacy_import.command",
        "import a database of the original deployment",
    ),
    "meter-event": (
        "campus_energy.ops.meter_events",
        "record a meter's register replaced, reset, rolled over or jumping; list the events",
    ),
    "reconcile": (
        "campus_energy.ops.reconcile",
        "recompute windows from the local store and compare them with the sink",
    ),
    "bill": (
        "campus_energy.accounts.command",
        "the month's bills: energy, standing and demand charges, CO2, per building",
    ),
    "alerts": (
        "campus_energy.alerts.command",
        "alert rules, notifications and scheduled reports (service); list, ack, silence",
    ),
    "report": (
        "campus_energy.reports.command",
        "a week's or month's report: energy, cost, CO2, peaks, after hours, coverage, alerts",
    ),
    "doctor": (
        "campus_energy.ops.doctor.command",
        "check the installation and say how to fix what is wrong",
    ),
    "install-systemd": (
        "campus_energy.ops.systemd",
        "render the systemd units for this installation",
    ),
    "mosquitto-acl": (
        "campus_energy.ops.mosquitto_acl",
        "write the broker's ACL: each logger may publish only its own meters' topics",
    ),
}
SERVICES = frozenset({"logger", "bridge", "api", "dashboard", "alerts"})


def command(name: str) -> Any:
    """The module or class that implements command `name` (imported now)."""
    where, _ = COMMANDS[name]
    module, _, attribute = where.partition(":")
    found = importlib.import_module(module)
    return getattr(found, attribute) if attribute else found


def _setup_logging(verbose: int, service: bool) -> None:
    """One line per event. Services log INFO by default; under journald without timestamps."""
    if verbose > 1:
        level = logging.DEBUG
    elif verbose or service:
        level = logging.INFO
    else:
        level = logging.WARNING
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level, format=f"{stamp}%(levelname)s %(name)s: %(message)s")


def chosen(argv: Sequence[str]) -> str | None:
    """The command named on the line: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(configured: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the options of the commands in `configured` (None: every command) are added,
    which imports them, the other commands only show their line in `--help`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        help="configuration file (default: $CAMPUS_ENERGY_CONFIG, else ./campus-energy.toml)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output")

    parser = argparse.ArgumentParser(
        prog="campus-energy",
        description="Campus electricity monitoring: Modbus meters, exact energy, dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_line) in COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=help_line)
        if configured is None or name in configured:
            found = command(name)
            p.description = found.__doc__
            found.configure(p)
            p.set_defaults(func=found.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    name = chosen(words)
    try:
        return _main(words, name)
    except ModuleNotFoundError as exc:  # an optional package: name the extra that installs it
        error = missing(exc, name)
        if error is None:
            raise
        print(f"campus-energy: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _main(words: list[str], name: str | None) -> int:
    parser = build_parser([name] if name in COMMANDS else [])
    args = parser.parse_args(words)
    _setup_logging(args.verbose, args.command in SERVICES)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for key, message in exc.problems:
            print(f"campus-energy: configuration error: {key}: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ProfileError) as exc:
        print(f"campus-energy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CampusEnergyError as exc:
        print(f"campus-energy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`… | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code
