"""Scheduled reports (`[[reports]]`): which are due, built and handed to the e-mail channel.

The alerts service calls `send_due` in its loop. A report's last sending is kept in the
book of alerts (`memo`/`remember` under "report:<name>"); a report is due when its next
sending time after that is past. It is sent for the period its latest due run reports
(a service that was down sends the latest period once, not every one it missed), and
remembered once `send` returned: a failure that may pass (`DeliveryError`) propagates and the
next loop retries. A report refused for good (`DeliveryRefused`: every recipient refused, or
the credentials) is logged at ERROR and remembered too, so it is not mailed again every loop:
the next one goes for the next period. A first start remembers "now" and sends nothing for
periods already past.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import Any, Protocol

from campus_energy.backends.base import WindowSource
from campus_energy.config import Config
from campus_energy.config.alerts import ReportConfig
from campus_energy.core.schedules import next_run_ms, period_of_run
from campus_energy.incidents.values import DeliveryRefused, HistoryRow
from campus_energy.reports.content import build_report
from campus_energy.reports.message import build_message
from campus_energy.reports.periods import parse_period

log = logging.getLogger(__name__)

Send = Callable[[str, EmailMessage], Awaitable[None]]


class ReportBook(Protocol):
    """What delivery needs of the book of alerts (`incidents.store.AlertBook`)."""

    def memo(self, key: str) -> Any | None: ...

    def remember(self, key: str, value: Any) -> None: ...

    def history(self, start_ms: int, end_ms: int) -> Sequence[HistoryRow]: ...


def memo_key(report: ReportConfig) -> str:
    return f"report:{report.name}"


def latest_run(config: Config, report: ReportConfig, after_ms: int, now_ms: int) -> int | None:
    """The latest sending time of `report` in (after_ms, now_ms], or None."""
    zone = config.report_zone(report.site, report.building)
    found = None
    at = next_run_ms(report.every, report.day, report.minute_of_day, zone, after_ms)
    while at <= now_ms:
        found = at
        at = next_run_ms(report.every, report.day, report.minute_of_day, zone, at)
    return found


def report_message(
    config: Config, book: ReportBook, source: WindowSource, report: ReportConfig, period_text: str
) -> EmailMessage:
    """The e-mail of `report` for a period, addressed as its channel says."""
    period = parse_period(period_text)
    history = book.history(*period.bounds_ms(config.report_zone(report.site, report.building)))
    found = build_report(config, source, period, report.building, alerts=history, site=report.site)
    channel = next(c for c in config.alerts.channels if c.name == report.channel)
    return build_message(
        found,
        attach=report.attach,
        sender=channel.sender,
        recipients=report.recipients or channel.recipients,
    )


async def send_due(
    config: Config, book: ReportBook, source: WindowSource, send: Send, now_ms: int
) -> list[str]:
    """Send every report that is due at `now_ms` through `send(channel name, message)`;
    returns the names of those sent. A report `send` refuses (DeliveryRefused) is logged
    and remembered as if sent; other failures of `send` propagate."""
    sent: list[str] = []
    for report in config.reports:
        key = memo_key(report)
        last = book.memo(key)
        if last is None:
            book.remember(key, now_ms)  # a first start: no period already past
            continue
        run = latest_run(config, report, int(last), now_ms)
        if run is None:
            continue
        zone = config.report_zone(report.site, report.building)
        period = period_of_run(report.every, run, zone)
        # built in a worker thread: a month of store reads, charts and a workbook take a while,
        # and the service's event loop keeps taking readings and pinging the watchdog meanwhile
        message = await asyncio.to_thread(report_message, config, book, source, report, period)
        try:
            await send(report.channel, message)
        except DeliveryRefused as exc:
            log.error("report %s (%s) not sent, not tried again: %s", report.name, period, exc)
        else:
            sent.append(report.name)
        book.remember(key, run)
    return sent
