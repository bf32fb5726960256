"""Window sinks: where the bridge writes window documents. One adapter per store.

Every sink merges deltas into what it already holds, in a transaction:
read the window's accumulator, add the new contributions (readings it already
holds are skipped), write the document. Writes are upserts under the
deterministic id `<meter_id>_<YYYYmmddTHHMMSSZ>`, so retries, redeliveries and
several bridges never duplicate a document or double-count energy.

For reconciliation each sink also reads back the documents of a range
(`windows`), replaces documents outright (`replace`): the new document takes
the old one's place, and deletes documents (`delete`: windows no reading
stands behind). Either way the rollups of the meter's hours and days it
touches are counted afresh, and its latest window looked up again, so a
rewrite never adds to what was there and a deletion leaves nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from campus_energy.config import Config
from campus_energy.core.windows import Accumulator, WindowDelta, WindowDoc


class WindowSink(Protocol):
    name: str

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        """Merge every delta; returns the number of documents written. Raises SinkError."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RewritableSink(WindowSink, Protocol):
    """A sink whose documents can be read back and replaced (`campus-energy reconcile`)."""

    async def windows(
        self, start_ms: int, end_ms: int, meters: Collection[str] | None
    ) -> list[WindowDoc]:
        """The documents with start_ms <= window start < end_ms (`meters` None: every meter)."""
        ...

    async def replace(self, docs: Sequence[WindowDoc], now_ms: int) -> int:
        """Write each document in place of what the sink holds for its window. Raises SinkError."""
        ...

    async def delete(self, keys: Sequence[tuple[str, int]], now_ms: int) -> int:
        """Delete the documents of these (meter_id, window start) pairs; returns how many
        the sink held. Raises SinkError."""
        ...


def stored_window(
    fields: Mapping[str, Any], start_ms: int, end_ms: int, updated_at_ms: int
) -> WindowDoc:
    """A window document as a sink holds it: the contract's fields and `accumulator`."""

    def number(name: str) -> float | None:
        value = fields.get(name)
        return None if value is None else float(value)

    return WindowDoc(
        meter_id=str(fields["meter_id"]),
        building=str(fields.get("building") or ""),
        floor=str(fields.get("floor") or ""),
        window_start_ms=start_ms,
        window_end_ms=end_ms,
        total_energy_wh=float(fields.get("total_energy_wh") or 0.0),
        avg_power_w=number("avg_power_w"),
        min_power_w=number("min_power_w"),
        max_power_w=number("max_power_w"),
        avg_voltage_v=number("avg_voltage_v"),
        avg_current_a=number("avg_current_a"),
        avg_power_factor=number("avg_power_factor"),
        avg_frequency_hz=number("avg_frequency_hz"),
        readings_in_batch=int(fields.get("readings_in_batch") or 0),
        coverage=float(fields.get("coverage") or 0.0),
        updated_at_ms=updated_at_ms,
        accumulator=Accumulator.from_dict(fields.get("accumulator")),
    )


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
