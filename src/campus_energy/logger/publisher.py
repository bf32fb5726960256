"""The logger's MQTT side: drains the store's outbox in order and keeps status topics current.

A reading is published only after it is committed to SQLite. The publisher
reads the oldest unacknowledged readings from the store, publishes them at
QoS 1, and moves each meter's outbox cursor past the readings the broker
acknowledged. After a disconnect it reconnects with back-off and resumes at
the cursor, so every stored reading reaches the broker, in order, at least once.
With `mqtt.signing_key_file`, every reading carries its HMAC `sig`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from campus_energy import __version__
from campus_energy.config import Config, MeterConfig
from campus_energy.core.readings import Reading
from campus_energy.core.signatures import signed
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.topics import (
    logger_status_topic,
    meter_status_topic,
    reading_topic,
    status_document,
)
from campus_energy.errors import BrokerError, StoreError
from campus_energy.logger import homeassistant
from campus_energy.logger.store import ReadingStore
from campus_energy.runtime.clock import Backoff, SystemClock, first_or_stop, sleep_or_stop
from campus_energy.runtime.mqtt import Broker, connect
from campus_energy.runtime.outages import Outage
from campus_energy.runtime.signing import read_signing_key

log = logging.getLogger("campus_energy.publisher")
BATCH = 500
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0


@dataclass
class Status:
    state: str
    ts_ms: int
    detail: str = ""


class StatusBoard:
    """The current state of every meter; changes are published as retained status messages."""

    def __init__(self) -> None:
        self.current: dict[str, Status] = {}
        self.dirty: set[str] = set()

    def set(self, meter_id: str, state: str, ts_ms: int, detail: str = "") -> None:
        previous = self.current.get(meter_id)
        if previous is None or (previous.state, previous.detail) != (state, detail):
            self.current[meter_id] = Status(state, ts_ms, detail)
            self.dirty.add(meter_id)

    def mark_all_dirty(self) -> None:
        self.dirty = set(self.current)


def acknowledged_prefix(batch: Sequence[Reading], ok: Sequence[bool]) -> list[Reading]:
    """Per meter, the readings up to (not including) the first one that was not acknowledged."""
    failed: set[str] = set()
    done = []
    for reading, success in sorted(zip(batch, ok, strict=True), key=lambda x: x[0].seq):
        if reading.meter_id in failed:
            continue
        if success:
            done.append(reading)
        else:
            failed.add(reading.meter_id)
    return done


class Publisher:
    def __init__(
        self,
        config: Config,
        store: ReadingStore,
        statuses: StatusBoard,
        *,
        clock: SystemClock | None = None,
        estate: Config | None = None,
    ) -> None:
        """`estate`: the whole configuration, when `config` is the logger's part of it."""
        self.config = config
        self.store = store
        self.statuses = statuses
        self.clock = clock or SystemClock()
        # Every configured meter, not only those this logger polls now: its outbox may still
        # hold readings of meters it polled before `logger.site` or `logger.buses` changed.
        every = estate.meters if estate is not None else config.meters
        self.meters: Mapping[str, MeterConfig] = {m.id: m for m in every}
        self.prefix = config.mqtt.topic_prefix
        # each meter publishes under its site's root (the prefix itself for the default site)
        self.sites = {m.id: config.site_of(m) for m in every}
        self.roots = {m.id: config.topic_root(self.sites[m.id]) for m in every}
        key_file = config.mqtt.signing_key_file
        self.signing_key = read_signing_key(key_file) if key_file is not None else None
        self.logger_topic = logger_status_topic(config.logger_site_root(), config.logger.id)
        self.outage = Outage("MQTT", log)  # BrokerError messages name the broker
        self.store_outage = Outage("outbox", log)
        self._wake = asyncio.Event()
        self.connected = False
        self.published = 0
        self.drained = asyncio.Event()
        self._discovery_announced = False  # Home Assistant configs published once this run

    def root(self, meter_id: str) -> str:
        """The topic root of a meter's site (a meter the config lost: the prefix)."""
        return self.roots.get(meter_id, self.prefix)

    def wake(self) -> None:
        """New readings were committed."""
        self._wake.set()

    def _logger_status(self, state: str) -> dict[str, str]:
        detail = f"campus-energy {__version__}, {len(self.meters)} meters"
        return status_document(state, epoch_ms(self.clock.wall()), detail)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set and the outbox is drained (or the caller cancels).

        Broker and store failures are outages: logged once, retried with back-off.
        """
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        while True:
            try:
                async with connect(
                    self.config.mqtt,
                    client_id=f"campus-energy-logger-{self.config.logger.id}",
                    will=(self.logger_topic, self._logger_status("offline")),
                ) as broker:
                    self.connected = True
                    backoff.succeeded()
                    await broker.publish(
                        self.logger_topic, self._logger_status("online"), retain=True
                    )
                    await self._publish_discovery(broker)
                    if self.outage.down:
                        depth = sum((await self.store.outbox_depth()).values())
                        self.outage.recovered(self.clock.wall(), f"{depth} readings to deliver")
                    self.statuses.mark_all_dirty()
                    try:
                        await self._pump(broker, stop)
                    except asyncio.CancelledError:
                        # Given up on at shutdown: a clean disconnect drops the will, so say it.
                        with contextlib.suppress(BrokerError, TimeoutError):
                            offline = self._logger_status("offline")
                            await asyncio.wait_for(
                                broker.publish(self.logger_topic, offline, retain=True), 1.0
                            )
                        raise
                    offline = self._logger_status("offline")
                    await broker.publish(self.logger_topic, offline, retain=True)
                    return
            except BrokerError as exc:
                self.connected = False
                self.outage.failed(str(exc), self.clock.wall())
            except StoreError as exc:
                self.store_outage.failed(str(exc), self.clock.wall())
            if await sleep_or_stop(backoff.failed(), stop):
                return

    async def _publish_discovery(self, broker: Broker) -> None:
        """Home Assistant discovery configs, retained, on every connection (when enabled).

        The first time in a run, the configs this logger no longer describes (meters
        removed from the configuration, fields a changed profile dropped) are cleared.
        """
        if not self.config.mqtt.homeassistant_discovery:
            return
        stale: list[str] = []
        if not self._discovery_announced:
            stale = homeassistant.stale_config_topics(self.config, await self.store.meter_ids())
        for start in range(0, len(stale), BATCH):
            await _all_or_raise(broker.clear_retained(t) for t in stale[start : start + BATCH])
        configs = homeassistant.discovery_configs(self.config, __version__)
        for start in range(0, len(configs), BATCH):
            chunk = configs[start : start + BATCH]
            await _all_or_raise(broker.publish(t, p, retain=True) for t, p in chunk)
        if not self._discovery_announced:
            self._discovery_announced = True
            log.info(
                "Home Assistant discovery: %d configs under %s/, %d stale ones cleared",
                len(configs),
                self.config.mqtt.homeassistant_prefix,
                len(stale),
            )

    async def _publish_statuses(self, broker: Broker) -> None:
        while self.statuses.dirty:
            meter_id = self.statuses.dirty.pop()
            s = self.statuses.current[meter_id]
            try:
                await broker.publish(
                    meter_status_topic(self.root(meter_id), meter_id),
                    status_document(s.state, s.ts_ms, s.detail),
                    retain=True,
                )
            except BrokerError:
                self.statuses.dirty.add(meter_id)
                raise

    async def _publish_one(self, broker: Broker, reading: Reading) -> bool:
        meter = self.meters.get(reading.meter_id)
        building, floor = (meter.building, meter.floor) if meter else ("", "")
        payload = reading.payload(building, floor, self.sites.get(reading.meter_id))
        if self.signing_key is not None:
            payload = signed(payload, self.signing_key)
        try:
            await broker.publish(
                reading_topic(self.root(reading.meter_id), reading.meter_id), payload
            )
        except BrokerError:
            return False
        return True

    async def _pump(self, broker: Broker, stop: asyncio.Event) -> None:
        while True:
            self._wake.clear()  # before looking, so a commit during the look is not missed
            await self._publish_statuses(broker)
            batch = await self.store.unpublished(BATCH)
            self.store_outage.recovered(self.clock.wall())
            if batch:
                self.drained.clear()
                ok = await asyncio.gather(*(self._publish_one(broker, r) for r in batch))
                done = acknowledged_prefix(batch, ok)
                if done:
                    await self.store.mark_published(done)
                    self.published += len(done)
                if len(done) < len(batch):
                    raise BrokerError(f"broker {broker.endpoint}: publishing interrupted")
                continue
            self.drained.set()
            if stop.is_set():
                return
            await first_or_stop(self._wake.wait(), stop, timeout_s=5)


async def _all_or_raise(publishes: Iterable[Awaitable[None]]) -> None:
    """Run the publishes concurrently (QoS 1, in flight together); raise the first failure."""
    results = await asyncio.gather(*publishes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
