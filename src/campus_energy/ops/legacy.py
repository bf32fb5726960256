"""Import a database of the original deployment."""

from __future__ import annotations

import argparse

from campus_energy.errors import UsageError

HELP = "import a database of the original deployment"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available yet")
