"""A service's Prometheus endpoint: `/metrics` from the service's own registry, on its own port.

Each service (logger, bridge) owns an `Exporter`: a private `CollectorRegistry`,
so several services in one process never collide, and an HTTP server that
runs in a thread only while the service runs. A port that cannot be bound is
logged once at ERROR and the service carries on without metrics.

Scrapes are answered in the server's threads. Values the service keeps in
memory are read directly; values that need the service's event loop (a count
in its SQLite file) are asked for with `Exporter.ask`, which runs a coroutine
on the loop and waits a bounded time for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from campus_energy.errors import CampusEnergyError

log = logging.getLogger("campus_energy.exporter")
T = TypeVar("T")
ASK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Families:
    """Metric families under one name prefix, for collectors that read values at scrape time."""

    prefix: str

    def counter(self, name: str, documentation: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(self.prefix + name, documentation, value=value)

    def gauge(self, name: str, documentation: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.prefix + name, documentation, value=value)


class Exporter:
    """The `/metrics` endpoint of one service."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.address: tuple[str, int] | None = None  # where it serves, while it does
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, host: str, port: int | None) -> None:
        """Serve `/metrics` on host:port (port None: no endpoint). Call from the service's loop."""
        self._loop = asyncio.get_running_loop()
        if port is None or self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            log.error(
                "%s: cannot serve metrics on %s:%d (%s); running without /metrics",
                self.service,
                host,
                port,
                exc.strerror or exc,
            )
            return
        self.address = (host, self._server.server_port)
        log.info("%s: Prometheus metrics on http://%s:%d/metrics", self.service, host, port)

    def stop(self) -> None:
        """Stop serving and release the port (never raises)."""
        self._loop = None
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.address = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def ask(
        self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = ASK_TIMEOUT_S
    ) -> T | None:
        """`await fn()` on the service's event loop, from a scrape thread.

        None when the service is not running, does not answer within `timeout`,
        or the call fails with one of the project's errors: that metric is then
        left out of this scrape rather than failing it.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        try:
            if asyncio.get_running_loop() is loop:
                return None  # waiting here would block the very loop that must answer
        except RuntimeError:
            pass  # the usual case: a scrape thread has no loop of its own
        call = fn()
        try:
            future = asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError:  # the loop closed in the meantime
            call.close()
            return None
        try:
            return future.result(timeout)
        except (TimeoutError, concurrent.futures.CancelledError, CampusEnergyError) as exc:
            future.cancel()
            log.debug("%s metrics: %s", self.service, exc or type(exc).__name__)
            return None
