"""A window source that tells the log when it cannot be read, and when it can again.

The API answers a failed read with a 503 that says only "window store
unavailable": the reason names files, hosts and databases, which are nobody's
business outside. The reason goes to the API's log instead, once per outage:
at ERROR when a read first fails, quietly while reads keep failing, and at INFO
with the outage's length at the next read that works.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from campus_energy.backends.base import (
    Bucket,
    Grain,
    MeterLatest,
    ScopeHour,
    ScopePeak,
    Total,
    WindowSource,
)
from campus_energy.errors import CampusEnergyError
from campus_energy.runtime.outages import Outage

T = TypeVar("T")


class WatchedSource:
    """`source`, with each read's failure or success recorded in one `Outage`."""

    def __init__(self, source: WindowSource, log: logging.Logger) -> None:
        self.source = source
        self.name = source.name
        self.outage = Outage(f"{source.name} window store", log)
        self._lock = threading.Lock()  # Gunicorn's threads read at once

    @property
    def lag_s(self) -> float:
        return self.source.lag_s

    def _watched(self, read: Callable[[], T]) -> T:
        try:
            found = read()
        except CampusEnergyError as exc:
            with self._lock:
                self.outage.failed(f"{exc}; answering 503", time.monotonic())
            raise
        if self.outage.down:
            with self._lock:
                self.outage.recovered(time.monotonic())
        return found

    def version(self) -> str:
        return self._watched(self.source.version)

    def meters(self) -> list[MeterLatest]:
        return self._watched(self.source.meters)

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        return self._watched(lambda: self.source.total(first_day, last_day, meters))

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        return self._watched(lambda: self.source.buckets(grain, start, end, meters))

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        return self._watched(lambda: self.source.scope_hours(start_ms, end_ms, terms))

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        return self._watched(
            lambda: self.source.scope_peaks(bounds, terms, interval_min, min_members)
        )

    def close(self) -> None:
        self.source.close()

    def __getattr__(self, name: str) -> Any:  # what one adapter has beyond the protocol
        if name == "source":  # not set yet: never look it up in itself
            raise AttributeError(name)
        return getattr(self.source, name)
