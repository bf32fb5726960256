"""`campus-energy init`: write the commented sample configuration (to -c, else
$CAMPUS_ENERGY_CONFIG, else ./campus-energy.toml), to be edited for the site's buses
and meters."""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path

from campus_energy.config import DEFAULT_CONFIG_PATH
from campus_energy.errors import EXIT_OK, UsageError


def sample_text() -> str:
    """The sample configuration, as shipped with the package."""
    return resources.files("campus_energy.config").joinpath("sample-config.toml").read_text("utf-8")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    target: Path = args.config or Path(
        os.environ.get("CAMPUS_ENERGY_CONFIG") or DEFAULT_CONFIG_PATH
    )
    if target.is_dir():
        raise UsageError(f"{target} is a folder: name the configuration file to write")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(sample_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    print(f"wrote {target}: edit the buses and meters, then try `campus-energy read --all`")
    return EXIT_OK
