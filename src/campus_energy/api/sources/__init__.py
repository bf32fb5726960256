"""Read-side sources: the API's view of the windows a sink holds. One adapter per sink.

Every source answers from rollups (hourly and local-daily sums per meter) or
from the windows of a bounded recent range, so no request reads the whole
history. Failures become `SourceError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, Protocol

from campus_energy.config import Config

Grain = Literal["window", "hour", "day"]


@dataclass(frozen=True)
class MeterLatest:
    meter_id: str
    building: str
    floor: str
    last_window_ms: int | None
    power_w: float | None
    coverage: float | None


@dataclass(frozen=True)
class Bucket:
    """One meter's sums over one step: a window, a UTC hour, or a local day."""

    meter_id: str
    key: int | str  # window or hour start (epoch ms), or the local day 'YYYY-MM-DD'
    energy_wh: float
    covered_s: float
    readings: int


@dataclass(frozen=True)
class Total:
    energy_wh: float
    readings: int
    meters_found: int
    last_window_ms: int | None


class WindowSource(Protocol):
    name: str

    def version(self) -> str:
        """Changes whenever the data changes (for ETags)."""
        ...

    def meters(self) -> list[MeterLatest]: ...

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        """Sums over local days first_day..last_day (inclusive); `meters` None: every meter."""
        ...

    def buckets(
        self,
        grain: Grain,
        start: int | str,
        end: int | str,
        meters: Collection[str] | None,
    ) -> list[Bucket]:
        """Per-meter sums per step with start <= key < end (ms for window/hour, days for day).

        For the window grain a source may return each window or, as the SQL sources
        do, each meter's windows already summed per 5-minute step (key: its start)."""
        ...

    def close(self) -> None: ...


def _sqlite(config: Config) -> WindowSource:
    from campus_energy.api.sources.sqlite import SqliteSource

    return SqliteSource(config.bridge.sqlite.path)


def _postgres(config: Config) -> WindowSource:
    from campus_energy.api.sources.postgres import PostgresSource

    return PostgresSource(config.bridge.postgres)


def _firestore(config: Config) -> WindowSource:
    from campus_energy.api.sources.firestore import FirestoreSource

    return FirestoreSource(config.bridge.firestore, config.site.zone, config.api.cache_s)


SOURCES: dict[str, Callable[[Config], WindowSource]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "firestore": _firestore,
}


def open_source(config: Config) -> WindowSource:
    return SOURCES[config.api.source or config.bridge.sink](config)
