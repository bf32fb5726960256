"""Check the installation and say how to fix what is wrong."""

from __future__ import annotations

import argparse

from campus_energy.errors import UsageError

HELP = "check the installation and say how to fix what is wrong"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available yet")
