"""The files: disk space where the SQLite files live, their integrity, the outbox and the spool,
and who may read the secret files.

Files are opened read-only (`mode=ro`), and every query stops at a deadline, so
doctor neither changes a file nor waits behind a busy one for long. Secret files
are only looked at (their mode and owner), never read.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from campus_energy.config import Config
from campus_energy.core.timestamps import iso_utc
from campus_energy.logger.store import outbox_sql
from campus_energy.ops.doctor.checks import (
    Context,
    Result,
    Status,
    binary_size,
    duration,
    existing_ancestor,
    group_name,
    identity,
    plural,
)
from campus_energy.runtime.sqlite import recovery_hint

GIB = 1024**3
MIB = 1024**2
DISK_FAIL_BELOW = 100 * MIB
DISK_WARN_BELOW = 1 * GIB
DISK_WARN_BELOW_SHARE = 0.05
QUICK_CHECK_DEADLINE_S = 20.0
QUERY_DEADLINE_S = 5.0
OUTBOX_WARN_AGE_S = 300.0  # the logger publishes within seconds while the broker is reachable
OUTBOX_WARN_DEPTH = 10_000
SPOOL_WARN_OVERDUE_S = 300.0  # a window is written about a second after its end plus grace_s
SPOOL_WARN_DEPTH = 100_000
WAL_SHOWN_FROM = 1 * MIB  # a write-ahead log this large is named apart from the total

# label -> the file of that role (None: not used with this configuration)
FILES: tuple[tuple[str, Callable[[Config], Path | None]], ...] = (
    ("store", lambda c: c.storage.path),
    ("spool", lambda c: c.bridge.spool_path),
    ("windows", lambda c: c.bridge.sqlite.path if c.bridge.sink == "sqlite" else None),
)


def files_of(config: Config) -> list[tuple[str, Path]]:
    """(label, absolute path) of every SQLite file this configuration uses."""
    return [
        (label, path.absolute())
        for label, path_of in FILES
        if (path := path_of(config)) is not None
    ]


@dataclass(frozen=True)
class Footprint:
    """Bytes an SQLite file takes on disk: the database, its write-ahead log and shared memory."""

    database: int
    wal: int
    shm: int

    @property
    def total(self) -> int:
        return self.database + self.wal + self.shm

    def describe(self, wal_format: str = "{total} (WAL {wal})") -> str:
        """'12.3 MiB', or '12.3 MiB (WAL 4.1 MiB)' when the log is large (the total includes it)."""
        total = binary_size(self.total)
        if self.wal < WAL_SHOWN_FROM:
            return total
        return wal_format.format(total=total, wal=binary_size(self.wal))


def footprint(path: Path) -> Footprint | None:
    """The footprint of the SQLite file at `path` with its -wal and -shm (None: no such file)."""

    def size(file: Path) -> int:
        try:
            return file.stat().st_size
        except FileNotFoundError:
            return 0

    if not path.is_file():
        return None
    return Footprint(path.stat().st_size, size(Path(f"{path}-wal")), size(Path(f"{path}-shm")))


@contextmanager
def open_read_only(path: Path, *, deadline_s: float) -> Iterator[sqlite3.Connection]:
    """A read-only connection whose statements are interrupted once `deadline_s` has passed."""
    conn = sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro", uri=True, timeout=min(deadline_s, 2.0)
    )
    end = time.monotonic() + deadline_s
    conn.set_progress_handler(lambda: int(time.monotonic() > end), 10_000)
    try:
        yield conn
    finally:
        conn.close()


# --- disk space -------------------------------------------------------------------------------


def disk_verdict(free: int, total: int) -> Status:
    """FAIL below 100 MiB free; WARN below 1 GiB or below 5 % of the filesystem."""
    if free < DISK_FAIL_BELOW:
        return Status.FAIL
    if free < DISK_WARN_BELOW or (total > 0 and free / total < DISK_WARN_BELOW_SHARE):
        return Status.WARN
    return Status.OK


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding `path` (or its nearest existing parent)."""
    current = existing_ancestor(path).resolve()
    device = os.stat(current).st_dev
    while current != current.parent and os.stat(current.parent).st_dev == device:
        current = current.parent
    return current


def _held(label: str, path: Path) -> str:
    found = footprint(path)
    return f"{label} (not created yet)" if found is None else f"{label} {found.describe()}"


def _disk_space(config: Config) -> list[Result]:
    by_mount: dict[Path, list[tuple[str, Path]]] = {}
    for label, path in files_of(config):
        by_mount.setdefault(mount_point(path), []).append((label, path))
    results = []
    for mount, files in by_mount.items():
        fs = os.statvfs(mount)
        free, total = fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize
        share = free / total if total else 0.0
        status = disk_verdict(free, total)
        detail = (
            f"{binary_size(free)} free of {binary_size(total)} ({share:.0%}), "
            f"holds the {', '.join(_held(label, path) for label, path in files)}"
        )
        fix = None
        if status is Status.FAIL:
            fix = (
                f"free space on {mount} now: SQLite stops writing when the disk is full (delete "
                "old files, or set storage.retention_days to keep fewer readings)"
            )
        elif status is Status.WARN:
            fix = (
                f"free space on {mount} soon (delete old files, or set storage.retention_days "
                "to keep fewer readings)"
            )
        results.append(Result(status, f"disk {mount}", detail, fix))
    return results


async def disk_space(ctx: Context) -> list[Result]:
    """Free space on every filesystem that holds the store, the spool or the windows file."""
    return await asyncio.to_thread(_disk_space, ctx.config)


# --- integrity --------------------------------------------------------------------------------


def _recover_fix(path: Path) -> str:
    return recovery_hint(path)


def access_problem(path: Path, title: str, why: str) -> Result | None:
    """A failure when this user cannot create `path` in its folder or write it; else None.

    `why` says what an unwritable folder prevents."""
    who = identity()
    folder = existing_ancestor(path.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        return Result(
            Status.FAIL,
            title,
            f"{folder} is not writable by user {who.user}{why}",
            f"sudo install -d -o {who.user} {path.parent}",
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return Result(
            Status.FAIL,
            title,
            f"{path} is not readable and writable by user {who.user}",
            f"sudo chown {who.user} {path}",
        )
    return None


def _integrity(label: str, path: Path) -> Result:
    title = f"sqlite {label}"
    why = f" (SQLite keeps its -wal and -shm files next to {path.name})"
    problem = access_problem(path, title, why)
    if problem is not None:
        return problem
    if not path.exists():
        return Result(Status.SKIP, title, f"{path}: not created yet; its folder is writable")
    found = footprint(path)
    size = (
        binary_size(path.stat().st_size) if found is None else found.describe("{total}, WAL {wal}")
    )
    try:
        with open_read_only(path, deadline_s=QUICK_CHECK_DEADLINE_S) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return Result(
                Status.WARN,
                title,
                f"{path} ({size}): quick_check did not finish within {QUICK_CHECK_DEADLINE_S:g} s",
                f"run it while the services are stopped: sqlite3 {path} 'PRAGMA quick_check'",
            )
        return Result(Status.FAIL, title, f"{path}: {exc}", _recover_fix(path))
    except sqlite3.DatabaseError as exc:  # malformed, or not a database at all
        return Result(Status.FAIL, title, f"{path} is damaged: {exc}", _recover_fix(path))
    if problems == ["ok"]:
        return Result(Status.OK, title, f"{path} ({size}): quick_check ok")
    lines = [line for problem in problems for line in problem.splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("***")), lines[0])
    return Result(
        Status.FAIL,
        title,
        f"{path} is damaged: {plural(len(lines), 'problem')}, the first: {first}",
        _recover_fix(path),
    )


async def integrity(ctx: Context) -> list[Result]:
    """`PRAGMA quick_check` of every SQLite file that exists (read-only, with a deadline)."""
    return await asyncio.to_thread(
        lambda: [_integrity(label, path) for label, path in files_of(ctx.config)]
    )


# --- the logger's outbox and the bridge's spool ----------------------------------------------


def _unreadable(title: str, path: Path, exc: sqlite3.Error, label: str) -> Result:
    return Result(
        Status.FAIL,
        title,
        f"cannot read {path}: {exc}",
        f"see the line 'sqlite {label}'",
    )


def _outbox(config: Config, now: float) -> Result:
    path, title = config.storage.path.absolute(), "outbox"
    if not path.exists():
        return Result(Status.SKIP, title, f"{path}: not created yet (the logger has not run)")
    try:
        with open_read_only(path, deadline_s=QUERY_DEADLINE_S) as conn:
            rows = conn.execute(outbox_sql(conn)).fetchall()
    except sqlite3.Error as exc:
        return _unreadable(title, path, exc, "store")
    depth = sum(count for _, count, _ in rows)
    if not depth:
        return Result(Status.OK, title, "empty: the broker has every stored reading")
    oldest_id, _, oldest_ms = min((r for r in rows if r[2] is not None), key=lambda r: r[2])
    age = max(0.0, now - oldest_ms / 1000)
    detail = (
        f"{plural(depth, 'reading')} not yet delivered to the broker, the oldest "
        f"{duration(age)} old ({oldest_id}, {iso_utc(oldest_ms)})"
    )
    if age <= OUTBOX_WARN_AGE_S and depth <= OUTBOX_WARN_DEPTH:
        return Result(Status.OK, title, detail)
    return Result(
        Status.WARN,
        title,
        detail,
        "the readings are safe in the store and go out in order once the logger reaches the "
        "broker: see the line 'broker', and check that the logger runs",
    )


def _spool(config: Config, now: float) -> Result:
    path, title = config.bridge.spool_path.absolute(), "spool"
    if not path.exists():
        return Result(Status.SKIP, title, f"{path}: not created yet (the bridge has not run)")
    try:
        with open_read_only(path, deadline_s=QUERY_DEADLINE_S) as conn:
            depth, oldest_ms = conn.execute(
                "SELECT count(*), min(window_start_ms) FROM contributions"
            ).fetchone()
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    except sqlite3.Error as exc:
        return _unreadable(title, path, exc, "spool")
    kept = f"; {plural(dead, 'malformed message')} kept in dead_letters" if dead else ""
    if not depth:
        return Result(Status.OK, title, f"empty: every window is written{kept}")
    due = oldest_ms / 1000 + config.bridge.window_s + config.bridge.grace_s
    overdue = now - due
    detail = f"{plural(depth, 'reading')} waiting for their window to be written"
    if overdue > 0:
        detail += f", the oldest window ({iso_utc(oldest_ms)}) overdue by {duration(overdue)}"
    detail += kept
    if overdue <= SPOOL_WARN_OVERDUE_S and depth <= SPOOL_WARN_DEPTH:
        return Result(Status.OK, title, detail)
    return Result(
        Status.WARN,
        title,
        detail,
        "the readings are safe in the spool and are written once the sink accepts them: see the "
        "line for the sink, and check that the bridge runs",
    )


async def queues(ctx: Context) -> list[Result]:
    """Depth and age of the logger's outbox and of the bridge's spool."""
    return await asyncio.to_thread(
        lambda: [_outbox(ctx.config, ctx.now), _spool(ctx.config, ctx.now)]
    )


# --- secret files -----------------------------------------------------------------------------

# key -> the secret file it names (None: not configured)
SECRET_FILES: tuple[tuple[str, Callable[[Config], Path | None]], ...] = (
    ("mqtt.password_file", lambda c: c.mqtt.password_file),
    ("mqtt.tls_key_file", lambda c: c.mqtt.tls_key_file),
    ("mqtt.signing_key_file", lambda c: c.mqtt.signing_key_file),
    ("bridge.firestore.credentials_file", lambda c: c.bridge.firestore.credentials_file),
)


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def alert_secret_files(config: Config) -> list[tuple[str, str, Path]]:
    """(key, title, path) of the alerts' secret files: each channel's password or signing key,
    and the token that allows acknowledgements over the API."""
    found = []
    for i, channel in enumerate(config.alerts.channels):
        for name in ("password_file", "secret_file"):
            path = getattr(channel, name)
            if path is not None:
                found.append((f"alerts.channels[{i}].{name}", f"secret {channel.name}", path))
    if config.alerts.api_token_file is not None:
        found.append(("alerts.api_token_file", "secret api_token", config.alerts.api_token_file))
    return found


def _secret_file(key: str, path: Path, title: str | None = None) -> Result:
    title = title or f"secret {key.rsplit('.', 1)[-1]}"
    try:
        found = path.stat()
    except OSError as exc:
        return Result(
            Status.FAIL,
            title,
            f"{key} = {path}: {exc.strerror}",
            f"create it, readable by the service's user alone, or correct {key}",
        )
    mode, owner = stat.filemode(found.st_mode), _owner(found.st_uid)
    detail = f"{path} ({mode} {owner}:{group_name(found.st_gid)})"
    if not stat.S_ISREG(found.st_mode):
        return Result(Status.FAIL, title, f"{detail} is not a file", f"correct {key}")
    if not found.st_mode & 0o077:
        return Result(Status.OK, title, f"{detail}: readable by its owner alone")
    others = [
        who for who, bits in (("its group", 0o070), ("everyone", 0o007)) if found.st_mode & bits
    ]
    me = identity()
    chown = f"chown {me.user} {path} && " if found.st_uid != me.uid and me.uid != 0 else ""
    return Result(
        Status.FAIL,
        title,
        f"{detail}: {' and '.join(others)} may read or change it",
        f"{chown}chmod 600 {path}",
    )


async def secret_files(ctx: Context) -> list[Result]:
    """The password, TLS key, signing key and Firestore credentials files, and the alerts'
    passwords, signing keys and API token: only their owner may read them (each as
    `chmod 600` leaves it)."""
    configured: list[tuple[str, str | None, Path]] = [
        (key, None, path) for key, path_of in SECRET_FILES if (path := path_of(ctx.config))
    ]
    configured += alert_secret_files(ctx.config)
    return await asyncio.to_thread(
        lambda: [_secret_file(k, p.absolute(), title) for k, title, p in configured]
    )
