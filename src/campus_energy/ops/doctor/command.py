"""Check the installation in one go and say how to fix what is wrong.

One line per check: ✔ passed, ⚠ warning, ✘ failed (followed by the fix), – skipped.
The checks run side by side, each within its own time budget, so one that
fails or hangs never stops the others. Exit code 0 when nothing failed
(warnings allowed), 1 when something failed, 2 when the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from campus_energy.config import Config, config_path, load_config
from campus_energy.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError
from campus_energy.extras import missing
from campus_energy.ops.doctor.checks import Check, Context, Result, Status, plural

SYMBOLS = {Status.OK: "✔", Status.WARN: "⚠", Status.FAIL: "✘", Status.SKIP: "–"}
REDACTED = "****"

Found = tuple[str, Result]  # (check name, result)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--json", action="store_true", help="print the results as a JSON list (for monitoring)"
    )
    parser.add_argument(
        "--skip-meters",
        action="store_true",
        help="do not read the meters (e.g. while the logger is using an RS-485 line)",
    )


@dataclass(frozen=True)
class Entry:
    """One row of the check table: its name, the check, and how long it may take."""

    name: str
    check: Check
    budget_s: Callable[[Context], float]


def _seconds(value: float) -> Callable[[Context], float]:
    return lambda ctx: value


def check_table() -> tuple[Entry, ...]:
    """Every check, in the order of the report (imported here: the CLI loads this module early)."""
    from campus_energy.ops.doctor.checks import (
        alerts,
        clock,
        devices,
        files,
        plans,
        registers,
        services,
    )

    return (
        Entry("serial", devices.serial_devices, _seconds(5)),
        Entry("meters", devices.meters, devices.meters_budget),
        Entry("broker", services.broker, _seconds(services.BROKER_TIMEOUT_S + 5)),
        Entry("sink", services.sink, _seconds(3 * services.SINK_TIMEOUT_S + 5)),
        Entry("disk", files.disk_space, _seconds(10)),
        Entry("integrity", files.integrity, _seconds(3 * files.QUICK_CHECK_DEADLINE_S + 5)),
        Entry("secrets", files.secret_files, _seconds(5)),
        Entry("clock", clock.clock, _seconds(clock.TIMEDATECTL_TIMEOUT_S + 2)),
        Entry("queues", files.queues, _seconds(2 * files.QUERY_DEADLINE_S + 5)),
        Entry("plans", plans.learned_plans, _seconds(5)),
        Entry("registers", registers.registers, _seconds(2 * files.QUERY_DEADLINE_S + 5)),
        Entry("alerts", alerts.alerts, _seconds(4 * alerts.CHANNEL_TIMEOUT_S + 5)),
    )


async def _one(entry: Entry, ctx: Context) -> list[Found]:
    budget = entry.budget_s(ctx)
    try:
        results = await asyncio.wait_for(entry.check(ctx), budget)
    except TimeoutError:
        results = [
            Result(
                Status.FAIL,
                entry.name,
                f"no answer within {budget:g} s",
                "something this check waits for hangs: run doctor again with -v to see where",
            )
        ]
    except Exception as exc:  # one broken check must not hide the others' results
        error = missing(exc) if isinstance(exc, ModuleNotFoundError) else None
        if error is not None:  # an optional package this host has not installed
            detail = f"not checked: {error.package} is not installed here"
            return [(entry.name, Result(Status.WARN, entry.name, detail, error.install))]
        results = [
            Result(
                Status.FAIL,
                entry.name,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this as a bug in campus-energy doctor, with this line",
            )
        ]
    return [(entry.name, r) for r in results]


async def diagnose(ctx: Context, table: Sequence[Entry]) -> list[Found]:
    """Run every check side by side; the results keep the table's order."""
    groups = await asyncio.gather(*(_one(entry, ctx) for entry in table))
    return [found for group in groups for found in group]


# --- the configuration ---------------------------------------------------------------------


def _config_fix(key: str, path: Path) -> str:
    if key == "config" and path.is_dir():
        return f"name the configuration file in {path} with -c or $CAMPUS_ENERGY_CONFIG"
    if key == "config" and path.exists():
        return f"correct {path}, or start again from a sample: campus-energy init -c {path} --force"
    if key == "config":
        return (
            f"write one with: campus-energy init -c {path} (then edit it), or name the right "
            "file with -c or $CAMPUS_ENERGY_CONFIG"
        )
    if key.startswith("CAMPUS_ENERGY"):
        return f"correct the environment variable {key}, or remove it"
    return f"correct {key} in {path}"


def config_errors(exc: ConfigError, path: Path) -> list[Found]:
    return [
        ("config", Result(Status.FAIL, "config", f"{key}: {message}", _config_fix(key, path)))
        for key, message in exc.problems
    ]


def config_summary(config: Config, path: Path) -> Result:
    if config.source is None:
        return Result(
            Status.WARN,
            "config",
            f"no configuration file ({path} not found): checking the built-in defaults",
            _config_fix("config", path),
        )
    counts = (
        f"{plural(len(config.buses), 'bus', 'buses')}, {plural(len(config.meters), 'meter')}, "
        f"sink {config.bridge.sink}"
    )
    return Result(Status.OK, "config", f"{config.source}: valid ({counts})")


# --- secrets and output --------------------------------------------------------------------


def secrets_of(config: Config) -> list[str]:
    """Passwords the results must never show (a library may echo a connection string)."""
    try:
        from campus_energy.backends.postgres.connection import dsn_secrets
    except ModuleNotFoundError:  # no PostgreSQL driver here: the DSN is hidden as a whole
        found = [config.bridge.postgres.dsn or ""]
    else:
        found = dsn_secrets(config.bridge.postgres.dsn)
    if config.mqtt.password_file is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            found.append(config.mqtt.password_file.read_text(encoding="utf-8").strip())
    found += [config.channel_secret(c.name) or "" for c in config.alerts.channels]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(found: Sequence[Found], secrets: Sequence[str]) -> list[Found]:
    def clean(text: str | None) -> str | None:
        if text is None:
            return None
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    return [(name, replace(r, detail=clean(r.detail) or "", fix=clean(r.fix))) for name, r in found]


def render_text(found: Sequence[Found]) -> str:
    """One aligned line per result; the fix under each failure or warning; a summary."""
    width = max(len(r.title) for _, r in found)
    lines = []
    for _, r in found:
        lines.append(f"{SYMBOLS[r.status]} {r.title:<{width}}  {r.detail}")
        if r.fix and r.status in (Status.FAIL, Status.WARN):
            lines.append(f"  {'':<{width}}  fix: {r.fix}")
    counts = {status: sum(r.status is status for _, r in found) for status in Status}
    words = {
        Status.OK: "passed",
        Status.WARN: "warning" if counts[Status.WARN] == 1 else "warnings",
        Status.FAIL: "failed",
        Status.SKIP: "skipped",
    }
    lines.append(", ".join(f"{counts[s]} {words[s]}" for s in Status if counts[s]))
    return "\n".join(lines)


def render_json(found: Sequence[Found]) -> str:
    return json.dumps(
        [
            {
                "check": name,
                "status": str(r.status),
                "title": r.title,
                "detail": r.detail,
                "fix": r.fix,
            }
            for name, r in found
        ],
        ensure_ascii=False,
        indent=2,
    )


def _print(found: Sequence[Found], as_json: bool) -> None:
    print(render_json(found) if as_json else render_text(found), flush=True)


def run(args: argparse.Namespace) -> int:
    path, _ = config_path(args.config, os.environ)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        _print(config_errors(exc, path), args.json)
        return EXIT_USAGE
    ctx = Context(config, now=time.time(), skip_meters=args.skip_meters)
    found = [("config", config_summary(config, path))]
    found += asyncio.run(diagnose(ctx, check_table()))
    found = redact(found, secrets_of(config))
    _print(found, args.json)
    return EXIT_FAILURE if any(r.status is Status.FAIL for _, r in found) else EXIT_OK
