"""The checks of `campus-energy doctor`: each one looks at one part and returns results.

A check is an async function `(Context) -> list[Result]`, one result per thing it
looked at (a bus, a meter, a file). Results are values: a status, a title, a
detail and, when something is wrong, the fix in plain words. Nothing here prints.
"""

from __future__ import annotations

import enum
import grp
import os
import pwd
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from campus_energy.config import Config


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Result:
    """What one check found about one thing."""

    status: Status
    title: str
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Context:
    """What every check may look at: the validated configuration and the moment of the run."""

    config: Config
    now: float  # wall clock (epoch seconds) when doctor started
    skip_meters: bool = False


Check = Callable[[Context], Awaitable[list[Result]]]


@dataclass(frozen=True)
class Identity:
    """Who this process is, for permission questions."""

    uid: int
    gid: int  # the primary group
    user: str
    groups: frozenset[int]  # the groups this process has now
    member_of: frozenset[int]  # the groups the account is in (a new login picks up changes)


def identity() -> Identity:
    uid, gid = os.geteuid(), os.getegid()
    groups = frozenset({os.getegid(), *os.getgroups()})
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a uid without an account (containers)
        return Identity(uid, gid, str(uid), groups, groups)
    return Identity(
        uid,
        gid,
        entry.pw_name,
        groups,
        frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)),
    )


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def readable_file(key: str, path: Path, who: Identity) -> str | None:
    """Why `path` (the value of config key `key`) cannot be read, or None when it can."""
    if not path.exists():
        return f"{key}: {path} does not exist"
    if not path.is_file():
        return f"{key}: {path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{key}: {path} is not readable by user {who.user}"
    return None


def readable_fix(path: Path, who: Identity) -> str:
    return (
        f"put the file at {path} (or correct the key) and let user {who.user} read it: "
        f"sudo chgrp {group_name(who.gid)} {path} && sudo chmod 640 {path}"
    )


def binary_size(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """75 -> '1 min 15 s', 7300 -> '2 h 1 min', 200000 -> '2 d 7 h'."""
    s = max(0, round(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (s, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n]
    return " ".join(shown[:2]) or "0 s"


def plural(n: int, word: str, words: str | None = None) -> str:
    """plural(1, 'meter') -> '1 meter'; plural(2, 'bus', 'buses') -> '2 buses'."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {words or word + 's'}"
