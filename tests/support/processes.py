"""External programs a test needs: found, or the test is skipped (failed under CI)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str) -> NoReturn:
    """Skip the test because `what` is missing here; under CI, where it must exist, fail it."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: .ci/run must provide it)")
    pytest.skip(what)


def require_program(name: str) -> str:
    """The path of `name`; skips the test when it is missing, except under CI where it fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: .ci/run must install it)")
        pytest.skip(message)
    return path
