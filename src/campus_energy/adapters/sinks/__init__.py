"""Window sinks: where the bridge writes window documents. One adapter per store.

Every sink merges deltas into what it already holds, in a transaction:
read the window's accumulator, add the new contributions (readings it already
holds are skipped), write the document. Writes are upserts under the
deterministic id `<meter_id>_<YYYYmmddTHHMMSSZ>`, so retries, redeliveries and
several bridges never duplicate a document or double-count energy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from campus_energy.config import Config
from campus_energy.core.windows import WindowDelta


class WindowSink(Protocol):
    name: str

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        """Merge every delta; returns the number of documents written. Raises SinkError."""
        ...

    async def close(self) -> None: ...


def _sqlite(config: Config) -> WindowSink:
    from campus_energy.adapters.sinks.sqlite import SqliteSink

    return SqliteSink(config.bridge.sqlite.path, config.site.zone)


def _postgres(config: Config) -> WindowSink:
    from campus_energy.adapters.sinks.postgres import PostgresSink

    return PostgresSink(config.bridge.postgres, config.site.zone)


def _firestore(config: Config) -> WindowSink:
    from campus_energy.adapters.sinks.firestore import FirestoreSink

    return FirestoreSink(config.bridge.firestore, config.bridge.window_s)


SINKS: dict[str, Callable[[Config], WindowSink]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "firestore": _firestore,
}


def open_sink(config: Config) -> WindowSink:
    return SINKS[config.bridge.sink](config)
