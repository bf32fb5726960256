"""The bridge's Prometheus metrics (`campus_energy_bridge_*`).

Counts the bridge already keeps (messages, readings, duplicates, dead letters
by kind and those the table's cap dropped, window writes), its connection
state and the spool's contents are read when Prometheus scrapes
(`BridgeCollector`). Sink write latency and errors, and how old a reading is
when it arrives, are measured where they happen, by `BridgeMetrics`.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campus_energy.errors import SinkError
from campus_energy.runtime.exporter import Exporter, Families

if TYPE_CHECKING:
    from campus_energy.backends.base import WindowSink
    from campus_energy.bridge.spool import Spool
    from campus_energy.config import Config
    from campus_energy.core.windows import IncomingReading, WindowDelta
    from campus_energy.runtime.clock import SystemClock
    from campus_energy.runtime.outages import Outage

PREFIX = "campus_energy_bridge_"
MERGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Milliseconds in normal operation; hours after a broker or logger outage is replayed.
LAG_BUCKETS_S = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)


# (direction, kind) of the energy a reading carries, as counted
ENERGY_KINDS = (
    ("import", "measured"),
    ("export", "measured"),
    ("import", "estimated"),
    ("export", "estimated"),
)


def energy_of(reading: IncomingReading) -> dict[tuple[str, str], float]:
    """A reading's energy by (direction, kind), in ENERGY_KINDS' order."""
    amounts = (
        reading.energy_wh,
        reading.export_wh,
        reading.estimated_wh,
        reading.estimated_export_wh,
    )
    return dict(zip(ENERGY_KINDS, amounts, strict=True))


@dataclass
class BridgeCounters:
    """What the bridge counts as it goes; exposed as counters when Prometheus scrapes."""

    received: int = 0
    readings: int = 0
    duplicates: int = 0  # contributions already in the spool (redeliveries, replays)
    dead_letters: Tally[str] = field(default_factory=Tally)
    dead_letters_evicted: int = 0  # old dead letters dropped to keep the table under its cap
    spans_cut: int = 0  # readings whose interval was longer than the meter's longest
    estimates_refused: Tally[str] = field(default_factory=Tally)  # estimates dropped, by kind
    window_writes: int = 0  # documents merged into the sink (a rewrite counts again)
    flushes: int = 0
    # Wh of the readings new to the spool, by (direction, kind): measured or estimated
    # import and export (a redelivery or a conflict adds nothing)
    energy_wh: dict[tuple[str, str], float] = field(
        default_factory=lambda: {key: 0.0 for key in ENERGY_KINDS}
    )

    def accepted(self, readings: Iterable[IncomingReading]) -> None:
        """Add the energy of readings new to the spool."""
        for reading in readings:
            for key, amount in energy_of(reading).items():
                self.energy_wh[key] += amount


class Observed(Protocol):
    """What the metrics read of the bridge (`campus_energy.bridge.service.Bridge`)."""

    config: Config
    clock: SystemClock
    sink: WindowSink
    spool: Spool
    counters: BridgeCounters
    subscribed: asyncio.Event
    sink_outage: Outage


class BridgeMetrics:
    """The bridge's registry, its event metrics, and its `/metrics` endpoint."""

    def __init__(self, bridge: Observed) -> None:
        self.config = bridge.config.bridge
        self.clock = bridge.clock
        self.exporter = Exporter("bridge")
        registry = self.exporter.registry
        sink = bridge.sink.name
        self.merge_seconds = Histogram(
            PREFIX + "sink_write_duration_seconds",
            "Time to merge a batch of windows into the sink, successful writes only",
            ["sink"],
            buckets=MERGE_BUCKETS_S,
            registry=registry,
        )
        self.sink_errors = Counter(
            PREFIX + "sink_errors",
            "Failed writes to the sink (the windows stay in the spool and are retried)",
            ["sink"],
            registry=registry,
        )
        self.lag = Histogram(
            PREFIX + "message_lag_seconds",
            "Age of a reading when the bridge receives it (receipt time minus reading ts)",
            buckets=LAG_BUCKETS_S,
            registry=registry,
        )
        self.merge_seconds.labels(sink)
        self.sink_errors.labels(sink)
        registry.register(BridgeCollector(bridge, self.exporter))

    def start(self) -> None:
        """Serve `/metrics` if `bridge.metrics_port` is set (from the bridge's event loop)."""
        self.exporter.start(self.config.metrics_host, self.config.metrics_port)

    def stop(self) -> None:
        self.exporter.stop()

    async def merge(self, sink: WindowSink, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        """`sink.merge(deltas, now_ms)`, timed and counted."""
        started = self.clock.mono()
        try:
            written = await sink.merge(deltas, now_ms)
        except SinkError:
            self.sink_errors.labels(sink.name).inc()
            raise
        self.merge_seconds.labels(sink.name).observe(self.clock.mono() - started)
        return written

    def received(self, now_ms: int, readings: Iterable[IncomingReading]) -> None:
        """Readings received at `now_ms` (a logger clock ahead of ours counts as no lag)."""
        for reading in readings:
            self.lag.observe(max(0, now_ms - reading.ts_ms) / 1000)


_families = Families(PREFIX)
_counter, _gauge = _families.counter, _families.gauge


class BridgeCollector(Collector):
    """What the bridge already knows, read at scrape time."""

    def __init__(self, bridge: Observed, exporter: Exporter) -> None:
        self.bridge = bridge
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        bridge = self.bridge
        counters = bridge.counters
        yield _counter(
            "messages_received", "MQTT messages received on the reading topics", counters.received
        )
        yield _counter(
            "readings_accepted", "Valid readings recorded in the spool", counters.readings
        )
        yield _counter(
            "duplicates",
            "Window contributions already in the spool (QoS 1 redeliveries, outbox replays)",
            counters.duplicates,
        )
        yield _counter(
            "windows_written",
            "Window documents merged into the sink (a rewrite by a late reading counts again)",
            counters.window_writes,
        )
        energy = CounterMetricFamily(
            PREFIX + "energy_accepted_wh",
            "Energy of the readings accepted into the spool, in Wh, by direction (import, "
            "export) and kind (measured: integrated from power; estimated: a gap the meter's "
            "registers bridged)",
            labels=["direction", "kind"],
        )
        for (direction, kind), amount in counters.energy_wh.items():
            energy.add_metric([direction, kind], amount)
        yield energy
        dead = CounterMetricFamily(
            PREFIX + "dead_letters",
            "Messages refused (malformed, implausible, span, signature, unknown meter, ...) and "
            "conflicting readings, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(dict(counters.dead_letters).items()):
            dead.add_metric([kind], count)
        yield dead
        refused = CounterMetricFamily(
            PREFIX + "estimates_refused",
            "Estimates dropped from readings that were kept (implausible, a span longer than the "
            "meter's max_estimate_gap_s, malformed), by kind",
            labels=["kind"],
        )
        for kind, count in sorted(dict(counters.estimates_refused).items()):
            refused.add_metric([kind], count)
        yield refused
        yield _counter(
            "spans_cut",
            "Readings whose interval was longer than the meter's longest, cut to it (a logger's "
            "clock stepped forward, or a forged reading)",
            counters.spans_cut,
        )
        yield _counter(
            "dead_letters_evicted",
            "Old dead letters dropped to keep the table under bridge.dead_letters_max_bytes",
            counters.dead_letters_evicted,
        )
        yield _gauge(
            "broker_connected",
            "1 while subscribed to the MQTT broker",
            float(bridge.subscribed.is_set()),
        )
        yield _gauge(
            "sink_up", "0 while writes to the sink fail", float(not bridge.sink_outage.down)
        )
        depth = self.exporter.ask(bridge.spool.pending)
        if depth is not None:
            yield _gauge(
                "spool_depth",
                "Window contributions in the spool waiting to be written to the sink",
                depth,
            )
        kept = self.exporter.ask(bridge.spool.dead_letter_counts)
        if kept is not None:
            stored = GaugeMetricFamily(
                PREFIX + "dead_letters_stored",
                "Messages kept in the spool's dead_letters table, by kind",
                labels=["kind"],
            )
            for kind, count in sorted(kept.items()):
                stored.add_metric([kind], count)
            yield stored
        size = self.exporter.ask(bridge.spool.dead_letter_bytes)
        if size is not None:
            yield _gauge(
                "dead_letters_stored_bytes",
                "What the dead_letters table holds, as counted against its cap",
                size,
            )
