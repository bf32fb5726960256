"""The logger's Prometheus metrics (`campus_energy_logger_*`).

Most are read from the logger's own state when Prometheus scrapes
(`LoggerCollector`): its counters, the status board, the newest committed
reading of each meter, the publisher's connection and the store's outbox.
The few that must be measured when something happens — a poll's outcome and
duration, how late a cycle started after its grid slot, why a reading was
refused, a meter event of a register, the energy estimated across gaps — are
recorded by `LoggerMetrics`, which the logger calls at those places.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campus_energy.core.energy import IMPLAUSIBLE_KINDS
from campus_energy.core.witness import DIRECTIONS, EVENT_KINDS
from campus_energy.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponseError,
    ModbusFrameError,
    ModbusTimeoutError,
)
from campus_energy.runtime.exporter import Exporter, Families

if TYPE_CHECKING:
    from campus_energy.config import Config
    from campus_energy.core.readings import Reading
    from campus_energy.logger.publisher import Publisher, StatusBoard
    from campus_energy.logger.store import ReadingStore
    from campus_energy.meters.polling import MeterPoller
    from campus_energy.runtime.clock import SystemClock

PREFIX = "campus_energy_logger_"
# An RS-485 poll at 9600 baud takes tens of ms; retries after timeouts take seconds.
POLL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENESS_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FAILURE_KINDS: dict[type[ModbusError], str] = {
    ModbusTimeoutError: "timeout",
    ModbusFrameError: "frame",
    ModbusExceptionResponseError: "exception",
    ModbusConnectionError: "connection",
}


def failure_kind(exc: ModbusError) -> str:
    """The `kind` label of a failed poll."""
    return next((kind for cls, kind in FAILURE_KINDS.items() if isinstance(exc, cls)), "other")


@dataclass
class Counters:
    """What the logger counts as it goes; exposed as counters when Prometheus scrapes."""

    polls: int = 0
    readings: int = 0
    failed_polls: int = 0
    rejected: int = 0
    gaps: int = 0
    store_failures: int = 0
    skipped_slots: int = 0
    by_meter_failures: dict[str, int] = field(default_factory=dict)


class Observed(Protocol):
    """What the metrics read of the logger (`campus_energy.logger.service.MeterLogger`)."""

    config: Config
    clock: SystemClock
    counters: Counters
    store: ReadingStore
    statuses: StatusBoard
    publisher: Publisher
    latest: dict[str, Reading]


class LoggerMetrics:
    """The logger's registry, its event metrics, and its `/metrics` endpoint."""

    def __init__(self, logger: Observed) -> None:
        self.config = logger.config.logger
        self.clock = logger.clock
        self.exporter = Exporter("logger")
        registry = self.exporter.registry
        self.polls = Counter(
            PREFIX + "polls",
            "Polls of a meter by outcome (ok: the meter answered; failed: see failures)",
            ["meter", "outcome"],
            registry=registry,
        )
        self.failures = Counter(
            PREFIX + "poll_failures",
            "Failed polls by kind: timeout, frame (CRC, garbled), exception (Modbus "
            "exception response), connection (bus not open or lost)",
            ["meter", "kind"],
            registry=registry,
        )
        self.poll_seconds = Histogram(
            PREFIX + "poll_duration_seconds",
            "Time to read all registers of a meter, successful polls only",
            ["bus"],
            buckets=POLL_BUCKETS_S,
            registry=registry,
        )
        self.lateness = Histogram(
            PREFIX + "slot_lateness_seconds",
            "How long after its wall-clock grid slot a bus's poll cycle started",
            ["bus"],
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self.rejected = Counter(
            PREFIX + "readings_rejected",
            "Readings refused as implausible, by reason (nan, infinite, beyond-limit)",
            ["meter", "reason"],
            registry=registry,
        )
        self.meter_events = Counter(
            PREFIX + "meter_events",
            "Meter events detected in a meter's energy register, by kind (replaced, reset, "
            "rollover, jump)",
            ["meter", "kind"],
            registry=registry,
        )
        self.estimated_wh = Counter(
            PREFIX + "estimated_energy_wh",
            "Energy the meter's own registers counted across gaps, stored as estimated energy "
            "(apart from the measured energy), by direction (import, export)",
            ["meter", "direction"],
            registry=registry,
        )
        for meter in logger.config.meters:  # every series exists from the start, at 0
            for outcome in ("ok", "failed"):
                self.polls.labels(meter.id, outcome)
            for kind in FAILURE_KINDS.values():
                self.failures.labels(meter.id, kind)
            for reason in IMPLAUSIBLE_KINDS:
                self.rejected.labels(meter.id, reason)
            for kind in EVENT_KINDS:
                self.meter_events.labels(meter.id, kind)
            for direction in DIRECTIONS:
                self.estimated_wh.labels(meter.id, direction)
            self.poll_seconds.labels(meter.bus)
            self.lateness.labels(meter.bus)
        registry.register(LoggerCollector(logger, self.exporter))

    def start(self) -> None:
        """Serve `/metrics` if `logger.metrics_port` is set (from the logger's event loop)."""
        self.exporter.start(self.config.metrics_host, self.config.metrics_port)

    def stop(self) -> None:
        self.exporter.stop()

    async def poll(self, poller: MeterPoller) -> dict[str, float]:
        """`poller.poll()`, counted by outcome and timed."""
        meter = poller.meter
        started = self.clock.mono()
        try:
            values = await poller.poll()
        except ModbusError as exc:
            # The detail before the total (and the duration before the count below): a scrape,
            # which reads the total first, never sees more polls than failures or durations.
            self.failures.labels(meter.id, failure_kind(exc)).inc()
            self.polls.labels(meter.id, "failed").inc()
            raise
        self.poll_seconds.labels(meter.bus).observe(self.clock.mono() - started)
        self.polls.labels(meter.id, "ok").inc()
        return values

    def cycle_started(self, bus: str, late_s: float) -> None:
        """A poll cycle of `bus` started `late_s` after its grid slot."""
        self.lateness.labels(bus).observe(max(0.0, late_s))

    def refused(self, meter_id: str, kind: str) -> None:
        """A reading of `meter_id` was refused as implausible, of this kind."""
        self.rejected.labels(meter_id, kind).inc()

    def meter_event(self, meter_id: str, kind: str) -> None:
        """A meter event of this kind was detected in a register of `meter_id` (and stored)."""
        self.meter_events.labels(meter_id, kind).inc()

    def estimated(self, meter_id: str, import_wh: float, export_wh: float) -> None:
        """A stored reading of `meter_id` carries this much estimated energy."""
        self.estimated_wh.labels(meter_id, "import").inc(max(import_wh, 0.0))
        self.estimated_wh.labels(meter_id, "export").inc(max(export_wh, 0.0))


_families = Families(PREFIX)
_counter, _gauge = _families.counter, _families.gauge


class LoggerCollector(Collector):
    """What the logger already knows, read at scrape time."""

    def __init__(self, logger: Observed, exporter: Exporter) -> None:
        self.logger = logger
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        logger = self.logger
        counters = logger.counters
        yield _counter(
            "readings_stored", "Readings committed to the local store", counters.readings
        )
        yield _counter(
            "skipped_slots",
            "Grid slots left out because a poll cycle overran its interval",
            counters.skipped_slots,
        )
        yield _counter(
            "gaps", "Intervals between readings too long to integrate (max_gap_s)", counters.gaps
        )
        yield _counter(
            "store_failures", "Poll cycles that could not be committed", counters.store_failures
        )
        yield _counter(
            "readings_published",
            "Readings acknowledged by the MQTT broker",
            logger.publisher.published,
        )
        yield _gauge(
            "broker_connected",
            "1 while connected to the MQTT broker",
            float(logger.publisher.connected),
        )
        online = GaugeMetricFamily(
            PREFIX + "meter_online",
            "1 while the meter's newest poll gave a stored reading",
            labels=["meter"],
        )
        last = GaugeMetricFamily(
            PREFIX + "last_reading_timestamp_seconds",
            "Time of the meter's newest committed reading (UTC epoch seconds)",
            labels=["meter"],
        )
        statuses = dict(logger.statuses.current)
        latest = dict(logger.latest)
        for meter in logger.config.meters:
            status = statuses.get(meter.id)
            online.add_metric([meter.id], float(status is not None and status.state == "online"))
            reading = latest.get(meter.id)
            if reading is not None:
                last.add_metric([meter.id], reading.ts_ms / 1000)
        yield online
        yield last
        depth = self.exporter.ask(logger.store.outbox_depth)
        if depth is not None:
            outbox = GaugeMetricFamily(
                PREFIX + "outbox_depth",
                "Readings stored but not yet acknowledged by the MQTT broker",
                labels=["meter"],
            )
            for meter_id, count in sorted(depth.items()):
                outbox.add_metric([meter_id], count)
            yield outbox
