"""Render the systemd units for this installation."""

from __future__ import annotations

import argparse

from campus_energy.errors import UsageError

HELP = "render the systemd units for this installation"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available yet")
