"""External programs a test needs, and `campus-energy` run as a command.

A program that is missing here skips the test (fails it under CI, where it must exist).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# `campus-energy` as this interpreter runs it from this checkout (`python -m campus_energy`)
CAMPUS_ENERGY = (sys.executable, "-m", "campus_energy")


def unavailable(what: str) -> NoReturn:
    """Skip the test because `what` is missing here; under CI, where it must exist, fail it."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: .ci/run must provide it)")
    pytest.skip(what)


def require_program(name: str) -> str:
    """The path of `name`; skips the test when it is missing, except under CI where it fails."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed")
    return path


def campus_energy(*args: str | Path) -> list[str]:
    """The command line of `campus-energy ARGS`."""
    return [*CAMPUS_ENERGY, *map(str, args)]


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`campus-energy ARGS` run to its end, its output captured as text.

    `env` is added to this process's environment.
    """
    return subprocess.run(
        campus_energy(*args),
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
