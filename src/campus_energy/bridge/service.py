"""`campus-energy bridge`: readings from MQTT into exact 5-minute windows in the configured sink.

Receiving: a persistent QoS 1 session (optionally a shared subscription, so
several bridges split the load). Each batch of messages is validated (form,
the meter's plausibility limits, the signature when a key is configured), cut
into window contributions and committed to the spool; only then are the
messages acknowledged. A batch is the first message and those that follow it
closely (a logger publishes a bus's cycle at once): it lingers until none has
come for `QUIET_S`, at most `LINGER_S`, so a cycle costs one commit, not one
per message or two. With `bridge.commit_interval_s` > 0 (the low-write mode) a
batch lingers that long whatever comes, up to `BATCH` messages: one commit
every N seconds. Either way nothing is acknowledged before it is committed;
what a batch holds when the bridge dies is redelivered by the broker.
Refused messages, and a second, different reading with a (meter, seq)
already received, go to the spool's dead-letter table.

Writing: once the wall clock has passed a window's end plus `grace_s`, its
contributions are merged into the sink (and removed from the spool only after
the sink has committed). Late readings merge into an already written window;
on shutdown every pending window, complete or not, is written. While the sink
is unreachable, windows wait in the spool and are retried with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from campus_energy.backends import open_sink
from campus_energy.backends.base import WindowSink
from campus_energy.bridge.metrics import BridgeCounters, BridgeMetrics
from campus_energy.bridge.spool import Arrival, DeadLetter, Spool
from campus_energy.config import Config
from campus_energy.core.incoming import Malformed, admit
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.windows import IncomingReading, contributions, group
from campus_energy.errors import BrokerError, SinkError, SpoolError
from campus_energy.runtime.clock import Backoff, SystemClock, first_or_stop, sleep_or_stop
from campus_energy.runtime.mqtt import Received, Subscription, subscribe
from campus_energy.runtime.notify import Notifier, Watchdog
from campus_energy.runtime.outages import Outage
from campus_energy.runtime.signing import read_signing_key

log = logging.getLogger("campus_energy.bridge")
BATCH = 500  # messages a batch holds at most (the broker's in-flight window must allow it)
LINGER_S = 0.5  # a batch waits at most this long for the messages that follow its first ...
QUIET_S = 0.05  # ... and ends as soon as none has come for this long
FLUSH_EVERY_S = 1.0
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
FINAL_FLUSH_S = 10.0
DEAD_LETTER_DAYS = 30
SEEN_FOR_S = 86_400  # a reading's (meter, seq) is remembered this long to tell conflicts
PRUNE_EVERY_S = 3600.0
MAX_HOLD_S = 60.0  # a backlog holds windows back at most this long
HUNG_AFTER_S = 600.0  # a batch still not recorded or written after this long is stuck


class Bridge:
    def __init__(
        self,
        config: Config,
        *,
        sink: WindowSink | None = None,
        clock: SystemClock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        key_file = config.mqtt.signing_key_file  # first: a bad key stops us before any I/O
        self.signing_key = read_signing_key(key_file) if key_file is not None else None
        self.clock = clock or SystemClock()
        self.spool = Spool(
            config.bridge.spool_path, max_dead_letter_bytes=config.bridge.dead_letters_max_bytes
        )
        self.sink = sink or open_sink(config)
        self.window_s = config.bridge.window_s
        self.window_ms = config.bridge.window_s * 1000
        self.known_meters = {m.id for m in config.meters} or None
        self.roots = config.topic_roots()  # each site's topic root -> the site's id
        self.sites = {m.id: config.site_of(m) for m in config.meters}
        self.limits = config.intake_limits()
        self.fallback = config.intake_fallback()
        self.counters = BridgeCounters()
        self.broker_outage = Outage("MQTT", log)
        self.spool_outage = Outage("spool", log)
        self.sink_outage = Outage(f"sink {self.sink.name}", log)
        self.subscribed = asyncio.Event()
        self.draining_since: float | None = None  # monotonic time a backlog began
        self.notifier = notifier or Notifier()  # systemd's, when it runs us
        self.watchdog = Watchdog(self.notifier)
        self.metrics = BridgeMetrics(self)

    @property
    def topics(self) -> list[str]:
        """What the bridge subscribes to (`Config.reading_filters`)."""
        return self.config.reading_filters()

    @property
    def topic(self) -> str:
        """The subscriptions as the log shows them."""
        return ", ".join(self.topics)

    async def run(self, stop: asyncio.Event) -> None:
        log.info(
            "bridge %s: %s → %s sink, %d s windows, spool %s%s",
            self.config.bridge.client_id,
            self.topic,
            self.sink.name,
            self.window_s,
            self.config.bridge.spool_path,
            ", signed readings only" if self.signing_key is not None else "",
        )
        self.metrics.start()
        receiving = asyncio.create_task(self._receive(stop), name="receive")
        flushing = asyncio.create_task(self._flush_loop(stop), name="flush")
        watching = asyncio.create_task(self.watchdog.run(stop), name="watchdog")
        self.notifier.ready(f"{self.topic} → {self.sink.name} sink")
        try:
            await asyncio.gather(receiving, flushing)
        finally:
            self.notifier.stopping()
            for task in (receiving, flushing, watching):
                task.cancel()
            await asyncio.gather(receiving, flushing, watching, return_exceptions=True)
            try:
                await asyncio.wait_for(self._final_flush(), FINAL_FLUSH_S)
            except (TimeoutError, SinkError, SpoolError) as exc:
                log.warning("stopping with windows still in the spool: %s", exc or "timed out")
            finally:
                self.metrics.stop()
                await self.sink.close()
                await self.spool.close()
                log.info("bridge stopped")

    # -- receiving --------------------------------------------------------------------------

    async def _receive(self, stop: asyncio.Event) -> None:
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while not stop.is_set():
            try:
                async with subscribe(
                    self.config.mqtt, client_id=self.config.bridge.client_id, topics=self.topics
                ) as subscription:
                    self.broker_outage.recovered(self.clock.wall())
                    if not self.subscribed.is_set():
                        log.info(
                            "subscribed to %s (persistent session %s)",
                            self.topic,
                            self.config.bridge.client_id,
                        )
                    self.subscribed.set()
                    backoff.succeeded()
                    while not stop.is_set():
                        messages = await self._gather(subscription, stop)
                        if messages is None:
                            break  # unacknowledged messages are redelivered next time
                        # A full batch means a backlog (after an outage): hold windows back
                        # until it is drained, so each is written once, not once per batch.
                        full = len(messages) >= BATCH
                        if full and self.draining_since is None:
                            self.draining_since = self.clock.mono()
                        elif not full:
                            self.draining_since = None
                        with self.watchdog.working("receive", HUNG_AFTER_S):
                            await self._record(messages)
                        self.spool_outage.recovered(self.clock.wall())
                        for message in messages:
                            subscription.ack(message)
            except BrokerError as exc:
                self.subscribed.clear()
                self.draining_since = None
                self.broker_outage.failed(str(exc), self.clock.wall())
            except SpoolError as exc:
                # Nothing of the batch was acknowledged: reconnecting makes the broker resend it.
                self.spool_outage.failed(str(exc), self.clock.wall())
            if await sleep_or_stop(backoff.failed(), stop):
                return

    async def _gather(
        self, subscription: Subscription, stop: asyncio.Event
    ) -> list[Received] | None:
        """The next batch (None: stopping before a message came).

        Bounded in time, never waiting on a count: a broker whose in-flight
        window is full sends nothing more until this batch is acknowledged, so
        the batch ends at its deadline with what it has.
        """
        messages = await first_or_stop(subscription.batch(BATCH), stop)
        if messages is None:
            return None
        interval_s = self.config.bridge.commit_interval_s
        deadline = self.clock.mono() + (interval_s or LINGER_S)
        while len(messages) < BATCH and not stop.is_set():
            left = deadline - self.clock.mono()
            if left <= 0:
                break
            message = await first_or_stop(
                subscription.next(left if interval_s else min(left, QUIET_S)), stop
            )
            if message is None:  # quiet, or stopping: commit what came
                break
            messages.append(message)
        return messages

    async def _record(self, messages: Sequence[Received]) -> None:
        now = epoch_ms(self.clock.wall())
        arrivals: list[Arrival] = []
        dead: list[DeadLetter] = []
        cut: list[tuple[IncomingReading, float]] = []
        refused: list[tuple[IncomingReading, Malformed]] = []
        for message in messages:
            parsed = admit(
                message.topic,
                message.payload,
                prefix=self.roots,
                now_ms=now,
                meters=self.known_meters,
                limits=self.limits,
                fallback=self.fallback,
                key=self.signing_key,
                sites=self.sites,
            )
            if isinstance(parsed, Malformed):
                dead.append(
                    DeadLetter(now, message.topic, message.payload, parsed.kind, parsed.reason)
                )
                continue
            if parsed.span_s is not None:
                cut.append((parsed.reading, parsed.span_s))
            if parsed.estimate_refused is not None:
                refused.append((parsed.reading, parsed.estimate_refused))
            items = contributions(parsed.reading, self.window_ms)
            arrivals.append(Arrival(parsed.reading, items, message.topic, message.payload))
        recorded = await self.spool.record(arrivals, dead, now)
        for letter in [*dead, *recorded.conflicts]:
            self._count_dead(letter.kind, letter.reason)
        new = set(recorded.kept)  # a redelivery or a conflict was counted when it came first
        for reading, span_s in cut:
            if reading in new:
                self._count_cut(reading, span_s)
        for reading, verdict in refused:
            if reading in new:
                self._count_refused_estimate(reading, verdict)
        if recorded.evicted:
            if not self.counters.dead_letters_evicted:
                log.warning(
                    "the dead_letters table is full (bridge.dead_letters_max_bytes = %d): "
                    "the oldest are dropped to make room; more are counted quietly",
                    self.config.bridge.dead_letters_max_bytes,
                )
            self.counters.dead_letters_evicted += recorded.evicted
        self.counters.received += len(messages)
        self.counters.readings += len(arrivals) - len(recorded.conflicts)
        self.counters.duplicates += recorded.duplicates
        self.counters.accepted(recorded.kept)
        self.metrics.received(now, [a.reading for a in arrivals])

    def _count_cut(self, reading: IncomingReading, span_s: float) -> None:
        self.counters.spans_cut += 1
        if self.counters.spans_cut == 1:
            assert reading.interval_start_ms is not None
            log.warning(
                "a reading of meter %s covers %g s of timestamps, more than the meter's longest "
                "interval: its energy is placed in the last %g s before its ts (a logger's clock "
                "stepped forward, or a forged reading); more are counted quietly",
                reading.meter_id,
                span_s,
                (reading.ts_ms - reading.interval_start_ms) / 1000,
            )

    def _count_refused_estimate(self, reading: IncomingReading, verdict: Malformed) -> None:
        self.counters.estimates_refused[verdict.kind] += 1
        if self.counters.estimates_refused[verdict.kind] == 1:
            log.warning(
                "dropped the estimate of a reading of meter %s (%s): %s — the reading's measured "
                "energy counts; more are counted quietly",
                reading.meter_id,
                verdict.kind,
                verdict.reason,
            )

    def _count_dead(self, kind: str, reason: str) -> None:
        self.counters.dead_letters[kind] += 1
        if self.counters.dead_letters[kind] == 1:
            log.warning(
                "refused a message (%s): %s — kept in the spool's dead_letters table; "
                "more of this kind are counted quietly",
                kind,
                reason,
            )

    # -- writing ----------------------------------------------------------------------------

    async def flush(self, before_ms: int | None) -> int:
        """Merge every window ending by `before_ms` (None: every window) into the sink."""
        written = 0
        while True:
            keys = await self.spool.due(before_ms, self.window_ms, BATCH)
            if not keys:
                return written
            items, meta = await self.spool.load(keys)
            deltas = group(items, self.window_s, meta)
            await self.metrics.merge(self.sink, deltas, epoch_ms(self.clock.wall()))
            await self.spool.remove(items)
            written += len(deltas)
            self.counters.window_writes += len(deltas)
            self.watchdog.progress("flush")

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        pruned_at = 0.0
        while True:
            try:
                if self.clock.mono() - pruned_at > PRUNE_EVERY_S:
                    cutoff = epoch_ms(self.clock.wall() - DEAD_LETTER_DAYS * 86400)
                    if await self.spool.prune_dead_letters(cutoff):
                        log.info("dead letters older than %d days deleted", DEAD_LETTER_DAYS)
                    await self.spool.prune_seen(epoch_ms(self.clock.wall() - SEEN_FOR_S))
                    pruned_at = self.clock.mono()
                due_by = epoch_ms(self.clock.wall() - self.config.bridge.grace_s)
                backlog = self.draining_since
                if backlog is None or self.clock.mono() - backlog > MAX_HOLD_S:
                    with self.watchdog.working("flush", HUNG_AFTER_S):
                        await self.flush(due_by)
                self.counters.flushes += 1
                self.sink_outage.recovered(self.clock.wall())
                self.spool_outage.recovered(self.clock.wall())
                backoff.succeeded()
                delay = FLUSH_EVERY_S
            except SinkError as exc:
                self.sink_outage.failed(str(exc), self.clock.wall())
                delay = backoff.failed()
            except SpoolError as exc:
                self.spool_outage.failed(str(exc), self.clock.wall())
                delay = backoff.failed()
            if await sleep_or_stop(delay, stop):
                return

    async def _final_flush(self) -> None:
        written = await self.flush(None)
        if written:
            log.info("wrote %d pending windows on shutdown", written)
