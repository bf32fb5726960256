"""Meter profiles: the built-in register maps (TOML files in this folder) and the user's own.

A file in the user's `profiles_dir` named like a built-in replaces it; any other
file adds a model. The file name (without `.toml`) must equal the profile's `name`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import ValidationError

from campus_energy.core.models import Profile
from campus_energy.core.validation import problems
from campus_energy.errors import ProfileError


def _parse(source: Traversable | Path, label: str) -> Profile:
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{label}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{label}: not valid TOML: {exc}") from exc
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        lines = "; ".join(f"{key}: {msg}" for key, msg in problems(exc))
        raise ProfileError(f"{label}: {lines}") from exc
    stem = source.name.removesuffix(".toml")
    if profile.name != stem:
        raise ProfileError(f"{label}: name {profile.name!r} must match the file name {stem!r}")
    return profile


def _files(folder: Traversable | Path) -> Iterable[Traversable | Path]:
    return sorted(
        (f for f in folder.iterdir() if f.name.endswith(".toml") and f.is_file()),
        key=lambda f: f.name,
    )


def builtin_profiles() -> dict[str, Profile]:
    folder = resources.files(__package__)
    return {p.name: p for p in (_parse(f, f"built-in profile {f.name}") for f in _files(folder))}


def load_profiles(user_dir: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, overridden or extended by the `.toml` files in `user_dir`."""
    found = builtin_profiles()
    if user_dir is not None:
        if not user_dir.is_dir():
            raise ProfileError(f"profiles_dir {str(user_dir)!r} is not a directory")
        for path in _files(user_dir):
            profile = _parse(path, str(path))
            found[profile.name] = profile
    return dict(sorted(found.items()))
