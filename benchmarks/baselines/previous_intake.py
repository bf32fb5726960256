"""The previous release's intake: its own `parse_reading`, loaded from git (no limits, no key)."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

PREVIOUS_RELEASE = "570c459^"  # the commit before the intake's defences
SOURCE = "src/campus_energy/core/incoming.py"


def previous_parse_reading(repo: Path) -> Callable[..., object] | None:
    """`parse_reading` as `PREVIOUS_RELEASE` had it (None: no git, no history, or no import)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{PREVIOUS_RELEASE}:{SOURCE}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    name = "previous_release_incoming"
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    try:
        exec(compile(source, f"{PREVIOUS_RELEASE}:core/incoming.py", "exec"), module.__dict__)
    except Exception:  # an old file that no longer imports against today's package
        del sys.modules[name]
        return None
    found: Callable[..., object] = module.parse_reading
    return found
