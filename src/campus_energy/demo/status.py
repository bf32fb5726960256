"""What the demo shows: the newest reading of every meter and one line of books.

Warnings and errors of the demo's own services are kept as notices, shown on
lines of their own above the table, so that a refreshing screen never wipes
them. Until the first window is written a line says what the demo waits for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from campus_energy.alerts.service import AlertsService
from campus_energy.bridge.service import Bridge
from campus_energy.config import Config
from campus_energy.core.readings import Reading
from campus_energy.demo.campus import DEMO_COLUMNS
from campus_energy.demo.services import Receiver
from campus_energy.errors import SpoolError, StoreError
from campus_energy.logger.publisher import StatusBoard
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.diagnose import TableRow, format_table


@dataclass
class Books:
    """What the status line shows besides the services' own counters."""

    outbox: int = 0
    spool: int = 0
    firing: int | None = None  # alerts firing (None: no alerts service)


def firing(alerts: AlertsService) -> int:
    """The alerts firing, as the service last evaluated them."""
    return sum(state.phase == "firing" for state in alerts.metrics.states.values())


async def books(logger: MeterLogger, bridge: Bridge, alerts: AlertsService | None = None) -> Books:
    firing_now = None if alerts is None else firing(alerts)
    try:
        outbox = sum((await logger.store.outbox_depth()).values())
        return Books(outbox, await bridge.spool.pending(), firing_now)
    except (StoreError, SpoolError):  # a busy file never stops the status line
        return Books(firing=firing_now)


def status_line(logger: MeterLogger, bridge: Bridge, receiver: Receiver, found: Books) -> str:
    """One compact line: readings, windows, outbox, alerts firing, errors."""
    c, b = logger.counters, bridge.counters
    errors = c.failed_polls + c.rejected + c.store_failures + sum(b.dead_letters.values())
    malformed = f" (malformed {receiver.malformed})" if receiver.malformed else ""
    alerts = "" if found.firing is None else f"alerts firing {found.firing} · "
    return (
        f"readings stored {c.readings} · published {logger.publisher.published} · "
        f"received over MQTT {receiver.received}{malformed} · bridge: readings {b.readings} · "
        f"windows {b.window_writes} · outbox {found.outbox} · spool {found.spool} · "
        f"{alerts}errors {errors} (failed polls {c.failed_polls}, rejected {c.rejected}, "
        f"dead letters {sum(b.dead_letters.values())})"
    )


def clock_time(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def waiting_line(
    config: Config, *, polled: int, windows: int, first_ms: int | None, now: float
) -> str | None:
    """What the demo waits for until its bridge writes the first window (None: nothing):
    `polled` meters have a reading, the first at `first_ms`; `windows` were written."""
    if windows:
        return None
    meters = len(config.meters)
    interval = min((m.interval_s for m in config.meters), default=5.0)
    if first_ms is None:
        return f"waiting for the first readings: polling {meters} meters every {interval:g} s …"
    window_s, grace_s = config.bridge.window_s, config.bridge.grace_s
    closes = (math.floor(first_ms / 1000 / window_s) + 1) * window_s
    written = closes + grace_s
    due = (
        f"written at {clock_time(written)}"
        if now < written
        else f"due since {clock_time(written)} (the bridge writes it within seconds)"
    )
    return (
        f"waiting for the first window: {polled} of {meters} meters polled, "
        f"first window closes at {clock_time(closes)}, {due} …"
    )


class Notices(logging.Handler):
    """The latest warnings and errors, kept for the screen (each on a line of its own)."""

    def __init__(self, keep: int = 6) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        self.add(f"{record.levelname} {record.name}: {record.getMessage()}", record.created)

    def add(self, text: str, at: float | None = None) -> None:
        stamp = clock_time(time.time() if at is None else at)
        self.lines.append(f"! {stamp} {text}")


@contextlib.contextmanager
def collecting(notices: Notices, *, quiet_stderr: bool) -> Iterator[Notices]:
    """Warnings and errors into `notices` while the demo runs; on a terminal they are not also
    written to stderr, where the next refresh would wipe them."""
    root = logging.getLogger()
    root.addHandler(notices)
    muted = [h for h in root.handlers if h is not notices] if quiet_stderr else []

    def mute(record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING

    for handler in muted:
        handler.addFilter(mute)
    try:
        yield notices
    finally:
        root.removeHandler(notices)
        for handler in muted:
            handler.removeFilter(mute)


class Polled(Protocol):
    """What the screen shows of the logger: each meter's newest reading and its state."""

    @property
    def latest(self) -> Mapping[str, Reading]: ...

    @property
    def statuses(self) -> StatusBoard: ...


def screen(
    config: Config,
    logger: Polled,
    head: Sequence[str],
    status: str,
    *,
    notices: Sequence[str] = (),
    waiting: str | None = None,
) -> str:
    rows = []
    for meter in config.meters:
        latest = logger.latest.get(meter.id)
        state = logger.statuses.current.get(meter.id)
        values: dict[str, float | None] = {}
        if latest is not None:
            values = {**latest.values, "energy_total_wh": latest.energy_total_wh}
        note = ""
        if state is not None and state.state != "online":
            note = f"{state.state}: {state.detail}"
        rows.append(TableRow(meter.id, values, note))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return "\n".join(
        [
            f"Campus Energy demo — {config.site.name} — {stamp}",
            *head,
            *(["", *notices] if notices else []),
            "",
            format_table(rows, config, DEMO_COLUMNS),
            "",
            *([waiting] if waiting else []),
            status,
        ]
    )
