"""Find and repair timestamp corruption in the logger's store."""

from __future__ import annotations

import argparse

from campus_energy.errors import UsageError

HELP = "find and repair timestamp corruption in the logger's store"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available yet")
