"""The alerts service's Prometheus metrics (`campus_energy_alerts_*`).

Evaluations (count and duration), alerts by phase and severity, notifications sent, retried
and dead-lettered per channel, the outbox per channel, the broker connection and whether the
store and the book answer. Values the loops keep are read at scrape time.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from campus_energy.runtime.exporter import Exporter, Families

if TYPE_CHECKING:
    from campus_energy.config import Config
    from campus_energy.core.alerts import AlertState
    from campus_energy.incidents.outbox import DeliveryCounts
    from campus_energy.runtime.outages import Outage

PREFIX = "campus_energy_alerts_"
EVALUATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Observed(Protocol):
    config: Config
    subscribed: asyncio.Event
    store_outage: Outage
    book_outage: Outage


class AlertsMetrics:
    def __init__(self, service: Observed) -> None:
        self.service = service
        self.exporter = Exporter("alerts")
        self.evaluation_seconds = Histogram(
            PREFIX + "evaluation_duration_seconds",
            "Time to evaluate every rule once (reads of the store included)",
            buckets=EVALUATION_BUCKETS_S,
            registry=self.exporter.registry,
        )
        self.evaluations = 0
        self.states: Mapping[tuple[str, str], AlertState] = {}
        self.outbox: Mapping[str, Mapping[str, int]] = {}
        self.sent = self.retried = self.dead = 0
        self.exporter.registry.register(_Collector(self))

    def start(self) -> None:
        alerts = self.service.config.alerts
        self.exporter.start(alerts.metrics_host, alerts.metrics_port)

    def stop(self) -> None:
        self.exporter.stop()

    def evaluated(self, seconds: float) -> None:
        self.evaluations += 1
        self.evaluation_seconds.observe(seconds)

    def delivered(self, counts: DeliveryCounts) -> None:
        """Add a delivery pass's counts."""
        self.sent += counts.sent
        self.retried += counts.retried
        self.dead += counts.dead


_families = Families(PREFIX)


class _Collector(Collector):
    def __init__(self, metrics: AlertsMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        service = metrics.service
        yield _families.counter("evaluations", "Evaluations of every rule", metrics.evaluations)
        alerts = GaugeMetricFamily(
            PREFIX + "alerts", "Alerts by phase and severity", labels=["phase", "severity"]
        )
        for (phase, severity), count in sorted(
            Tally((s.phase, s.severity) for s in metrics.states.values()).items()
        ):
            alerts.add_metric([phase, severity], count)
        yield alerts
        yield _families.counter("notifications_sent", "Notifications delivered", metrics.sent)
        yield _families.counter(
            "notifications_retried", "Failed attempts, to be retried", metrics.retried
        )
        yield _families.counter("notifications_dead", "Notifications dead-lettered", metrics.dead)
        outbox = GaugeMetricFamily(
            PREFIX + "outbox", "Notifications in the outbox, by channel and state",
            labels=["channel", "state"],
        )  # fmt: skip
        for channel, counts in sorted(metrics.outbox.items()):
            for state, count in sorted(counts.items()):
                outbox.add_metric([channel, state], count)
        yield outbox
        yield _families.gauge(
            "broker_connected", "1 while subscribed to the MQTT broker",
            float(service.subscribed.is_set()),
        )  # fmt: skip
        yield _families.gauge(
            "store_up", "0 while the window store does not answer",
            float(not service.store_outage.down),
        )  # fmt: skip
        yield _families.gauge(
            "book_up", "0 while the alert book cannot be written",
            float(not service.book_outage.down),
        )  # fmt: skip
