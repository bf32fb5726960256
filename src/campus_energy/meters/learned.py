"""What each device's firmware refuses, learned while polling and kept across restarts.

A device is a (bus, unit, profile name); what it refuses is a `core.planner.Refusals`,
kept with the fingerprint of the profile's register map it was learned under: when the
profile's fields change, what was learned no longer applies and is learned again.

The logger keeps it in a small JSON file beside its store (`<store>.plans.json`),
rewritten whole (a new file renamed into place) only when something new is learned.
A file of its own rather than a table of the store: `read` and `doctor` use it
without opening the store that the running logger owns, and it holds a few lines
that change once in a device's life. Only the logger writes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campus_energy.core.models import Profile
from campus_energy.core.planner import Extent, Refusals, profile_fingerprint
from campus_energy.core.timestamps import epoch_ms, iso_utc

log = logging.getLogger(__name__)
FILE_SCHEMA = 1


def learned_plans_path(store: Path) -> Path:
    """Where the logger whose store is `store` keeps what devices refuse."""
    return store.with_suffix(".plans.json")


@dataclass(frozen=True, order=True)
class DeviceKey:
    """One device: a unit on a bus, read with one profile."""

    bus: str
    unit: int
    profile: str


@dataclass(frozen=True)
class Learned:
    """What one device refuses, the register map it was learned under, and when."""

    fingerprint: str
    refusals: Refusals
    learned_at: str = ""  # ISO 8601 UTC


def _entry(key: DeviceKey, learned: Learned) -> dict[str, Any]:
    r = learned.refusals
    return {
        "bus": key.bus,
        "unit": key.unit,
        "profile": key.profile,
        "fingerprint": learned.fingerprint,
        "refused_registers": [[e.start, e.end] for e in r.registers],
        "refused_fields": list(r.fields),
        "max_registers": r.max_registers,
        "learned_at": learned.learned_at,
    }


def _parse(entry: dict[str, Any]) -> tuple[DeviceKey, Learned]:
    key = DeviceKey(str(entry["bus"]), int(entry["unit"]), str(entry["profile"]))
    limit = entry.get("max_registers")
    refusals = Refusals(
        registers=tuple(Extent(int(a), int(b)) for a, b in entry.get("refused_registers", [])),
        fields=tuple(str(f) for f in entry.get("refused_fields", [])),
        max_registers=None if limit is None else int(limit),
    )
    return key, Learned(str(entry["fingerprint"]), refusals, str(entry.get("learned_at", "")))


def read_book(path: Path) -> dict[DeviceKey, Learned]:
    """The file's entries (none when it does not exist). Raises ValueError (or OSError)
    when it cannot be read as such a file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        body = json.loads(text)
        if body.get("schema") != FILE_SCHEMA:
            raise ValueError(f"schema {body.get('schema')!r}, expected {FILE_SCHEMA}")
        return dict(_parse(entry) for entry in body["devices"])
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a file of learned plans ({exc})") from None


def _write(path: Path, entries: dict[DeviceKey, Learned]) -> None:
    body = {
        "schema": FILE_SCHEMA,
        "devices": [_entry(key, learned) for key, learned in sorted(entries.items())],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(body, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


class PlanBook:
    """Per device, what its firmware is known to refuse: in memory, and in `path` when given.

    With `writable` false (`read`, `doctor`) the file is only read: what a poll learns
    stays in this process.
    """

    def __init__(self, path: Path | None = None, *, writable: bool = False) -> None:
        self.path = path
        self.writable = writable and path is not None
        self._entries: dict[DeviceKey, Learned] = {}
        self._lock = asyncio.Lock()
        if path is not None:
            try:
                self._entries = read_book(path)
            except (OSError, ValueError) as exc:
                log.warning("%s; learning what the meters refuse again", exc)

    def learned(self, key: DeviceKey, profile: Profile) -> Learned | None:
        """What `key` is known to refuse under `profile`'s register map (None: nothing)."""
        found = self._entries.get(key)
        if found is None or found.fingerprint != profile_fingerprint(profile):
            return None
        return found

    def refusals(self, key: DeviceKey, profile: Profile) -> Refusals:
        found = self.learned(key, profile)
        return found.refusals if found is not None else Refusals()

    def outdated(self, key: DeviceKey, profile: Profile) -> bool:
        """Whether something was learned for `key` under a register map `profile` no longer has."""
        found = self._entries.get(key)
        return found is not None and found.fingerprint != profile_fingerprint(profile)

    async def record(self, key: DeviceKey, profile: Profile, refusals: Refusals) -> None:
        """Remember what `key` refuses now (its lasting part in the file, when writable)."""
        lasting = refusals.lasting()
        if self.refusals(key, profile) == lasting:
            return
        async with self._lock:
            stamp = iso_utc(epoch_ms(time.time()))
            self._entries[key] = Learned(profile_fingerprint(profile), lasting, stamp)
            if not self.writable:
                return
            assert self.path is not None
            snapshot = dict(self._entries)
            try:
                await asyncio.to_thread(_write, self.path, snapshot)
            except OSError as exc:
                log.warning(
                    "cannot keep what meters refuse in %s (%s): it is learned again after a "
                    "restart",
                    self.path,
                    exc,
                )
