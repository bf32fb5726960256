"""Whether the system clock is synchronised: every reading is stamped with it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from campus_energy.ops.doctor.checks import Context, Result, Status

TIMEDATECTL = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
TIMEDATECTL_TIMEOUT_S = 3.0


def clock_verdict(timedatectl: str | None, timesyncd_flag: bool) -> Result:
    """The verdict from timedatectl's answer ('yes', 'no', None) and timesyncd's flag file."""
    if timedatectl == "yes":
        return Result(Status.OK, "clock", "synchronised (timedatectl: NTPSynchronized=yes)")
    if timedatectl == "no":
        return Result(
            Status.FAIL,
            "clock",
            "not synchronised (timedatectl: NTPSynchronized=no): readings get wrong timestamps",
            "turn on time synchronisation: sudo timedatectl set-ntp true, and check that an NTP "
            "server is reachable: timedatectl timesync-status",
        )
    if timesyncd_flag:
        return Result(Status.OK, "clock", f"synchronised (systemd-timesyncd: {TIMESYNCD_FLAG})")
    return Result(
        Status.WARN,
        "clock",
        "unknown: timedatectl gave no answer and systemd-timesyncd has not marked the clock "
        "synchronised",
        "make sure an NTP client runs (systemd-timesyncd, chrony or ntpd): readings are stamped "
        "with this clock",
    )


def _timedatectl() -> str | None:
    try:
        done = subprocess.run(
            TIMEDATECTL, capture_output=True, text=True, timeout=TIMEDATECTL_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    return answer if done.returncode == 0 and answer in ("yes", "no") else None


async def clock(ctx: Context) -> list[Result]:
    """timedatectl when it answers; else systemd-timesyncd's flag file; else a warning."""
    answer = await asyncio.to_thread(_timedatectl)
    return [clock_verdict(answer, answer is None and TIMESYNCD_FLAG.exists())]
