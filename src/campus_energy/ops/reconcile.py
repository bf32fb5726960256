"""Recompute windows from the local store and compare them with the sink."""

from __future__ import annotations

import argparse

from campus_energy.errors import UsageError

HELP = "recompute windows from the local store and compare them with the sink"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise UsageError("not available yet")
