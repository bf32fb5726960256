"""Delivering the outbox: each due notice sent on its channel, then marked in the book.

`deliver_due` takes what the book says is due and sends it: delivered, or retried with
back-off (`retry_delay_s`: 5 s doubling to 300 s, minus a jitter of up to a tenth drawn from
the delivery's id so that many retries do not fire together), or dead-lettered after the
channel's attempts (None: retried until delivered), at once when the channel refuses it
(`DeliveryRefused`), or when its channel is no longer configured.

The channels are served concurrently, so one slow channel does not hold up the others, and
the book gives each channel its own share of a pass (`limit` each), so one channel down does
not crowd out the healthy ones. Within a channel the notices go in the order they were made,
and a failure holds the channel's later notices back until the failed one is due again — so a
"resolved" never overtakes its "firing" (the MQTT channel's retained state depends on it).
The book keeps that hold (its `due` returns nothing behind a notice waiting for its retry), so
it survives a restart. Each channel's outage (logged once at ERROR, quiet while it lasts, once
at INFO when the channel recovers) lives in a `ChannelWatch` the caller keeps from one call to
the next. A pass lets every channel finish before it raises a failure of the book's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from campus_energy.incidents.values import Channel, Delivery, DeliveryError, DeliveryRefused
from campus_energy.runtime.outages import Outage

log = logging.getLogger(__name__)

FIRST_DELAY_S = 5.0
MAX_DELAY_S = 300.0
JITTER = 0.1  # a delay is shortened by up to this share
ERROR_LIMIT = 500  # characters of an error kept in the book


class Book(Protocol):
    """What the outbox needs of the book of alerts (`incidents.store.AlertBook`): `due`
    returns at most `limit` of each channel, none behind one of its channel not yet due."""

    def due(self, now_ms: int, limit: int = 100, /) -> list[Delivery]: ...

    def delivered(self, delivery_id: int, now_ms: int, /) -> None: ...

    def retry(self, delivery_id: int, now_ms: int, error: str, next_attempt_ms: int, /) -> None: ...

    def dead(self, delivery_id: int, now_ms: int, error: str, /) -> None: ...


@dataclass(frozen=True)
class DeliveryCounts:
    """What one pass did (for metrics). `held`: due, but left waiting behind an earlier
    notice of its channel that failed; they go when that one is due again, so a loop that
    sleeps until the book's next due time should not count them as work to do now."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    held: int = 0

    def __add__(self, other: DeliveryCounts) -> DeliveryCounts:
        return DeliveryCounts(
            self.sent + other.sent,
            self.retried + other.retried,
            self.dead + other.dead,
            self.held + other.held,
        )


@dataclass
class ChannelWatch:
    """One channel between calls: its outage, for the log."""

    outage: Outage


@dataclass
class Watches:
    """The `ChannelWatch` of every channel, made on first use; keep one across calls."""

    by_channel: dict[str, ChannelWatch] = field(default_factory=dict)

    def of(self, channel: str) -> ChannelWatch:
        if channel not in self.by_channel:
            outage = Outage(f"alert channel {channel}", log)
            self.by_channel[channel] = ChannelWatch(outage)
        return self.by_channel[channel]


def retry_delay_s(attempts: int, delivery_id: int = 0) -> float:
    """Seconds before the next try after `attempts` failed ones (≥ 1): 5, 10, 20, … 300,
    each shortened by a jitter of up to 10 % that depends only on the delivery's id."""
    base = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(max(attempts, 1) - 1, 16))
    spread = ((delivery_id * 2654435761) % 2**32) / 2**32  # Knuth's multiplicative hash
    return base * (1.0 - JITTER * spread)


async def deliver_due(
    book: Book,
    channels: Mapping[str, Channel],
    now_ms: int,
    *,
    max_attempts: Mapping[str, int | None],
    watches: Watches | None = None,
    limit: int = 100,
) -> DeliveryCounts:
    """Send what is due (at most `limit` of each channel), and record each outcome in the
    book. A failure of the book (AlertBookError) is raised once every channel has finished,
    so none is left sending while the next pass takes its notices again."""
    watches = watches if watches is not None else Watches()
    queues: dict[str, list[Delivery]] = {}
    counts = DeliveryCounts()
    for delivery in sorted(book.due(now_ms, limit), key=lambda d: d.id):
        if delivery.channel not in channels:
            reason = f"channel {delivery.channel!r} is no longer configured"
            book.dead(delivery.id, now_ms, reason)
            log.warning("notification %s dead-lettered: %s", delivery.notice.key, reason)
            counts += DeliveryCounts(dead=1)
        else:
            queues.setdefault(delivery.channel, []).append(delivery)
    served = await asyncio.gather(
        *(
            _serve(book, channels[name], queue, now_ms, max_attempts.get(name), watches.of(name))
            for name, queue in queues.items()
        ),
        return_exceptions=True,
    )
    for found in served:
        if isinstance(found, BaseException):
            raise found
        counts += found
    return counts


async def _serve(
    book: Book,
    channel: Channel,
    queue: Sequence[Delivery],
    now_ms: int,
    attempts_allowed: int | None,
    watch: ChannelWatch,
) -> DeliveryCounts:
    """One channel's deliveries in order; stops at the first that must wait."""
    counts = DeliveryCounts()
    for done, delivery in enumerate(queue, start=1):
        try:
            await channel.send(delivery.notice)
        except DeliveryRefused as exc:
            error = str(exc)[:ERROR_LIMIT]
            book.dead(delivery.id, now_ms, error)
            log.error("notification %s dead-lettered: %s", delivery.notice.key, error)
            counts += DeliveryCounts(dead=1)
            continue
        except Exception as exc:  # DeliveryError, or a channel's bug: both are tried again
            if not isinstance(exc, DeliveryError):
                log.exception("alert channel %s failed unexpectedly", channel.name)
            error = (str(exc) or type(exc).__name__)[:ERROR_LIMIT]
            watch.outage.failed(error, now_ms / 1000)
            attempts = delivery.attempts + 1
            if attempts_allowed is not None and attempts >= attempts_allowed:
                book.dead(delivery.id, now_ms, f"gave up after {attempts} attempts: {error}")
                log.error(
                    "notification %s dead-lettered after %d attempts: %s",
                    delivery.notice.key,
                    attempts,
                    error,
                )
                counts += DeliveryCounts(dead=1)
                continue  # the next one may go through, or will hold the channel itself
            next_ms = now_ms + round(retry_delay_s(attempts, delivery.id) * 1000)
            book.retry(delivery.id, now_ms, error, next_ms)
            return counts + DeliveryCounts(retried=1, held=len(queue) - done)
        book.delivered(delivery.id, now_ms)
        watch.outage.recovered(now_ms / 1000)
        counts += DeliveryCounts(sent=1)
    return counts
