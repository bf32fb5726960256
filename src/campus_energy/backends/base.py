"""What a window backend offers: the sink the bridge writes through, the source the API reads.

The sink merges deltas into what it already holds, in a transaction: read the
window's accumulator, add the new contributions (readings it already holds are
skipped), write the document. Writes are upserts under the deterministic id
`<meter_id>_<YYYYmmddTHHMMSSZ>`, so retries, redeliveries and several bridges
never duplicate a document or double-count energy.

For reconciliation a sink also reads back the documents of a range (`windows`),
replaces documents outright (`replace`: the new document takes the old one's
place) and deletes documents (`delete`: windows no reading stands behind).
Either way the rollups of the meter's hours and days it touches are counted
afresh, and its latest window looked up again, so a rewrite never adds to what
was there and a deletion leaves nothing of it.

The source answers from rollups (hourly and local-daily sums per meter) or from
the windows of a bounded recent range, so no request reads the whole history.
Failures become `SinkError` and `SourceError`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from campus_energy.core.answers import Bucket, Grain, MeterLatest, ScopeHour, ScopePeak, Total
from campus_energy.core.windows import Accumulator, WindowDelta, WindowDoc

__all__ = [
    "Bucket",
    "Grain",
    "MeterLatest",
    "ScopeHour",
    "ScopePeak",
    "Total",
    "WindowSink",
    "WindowSource",
    "stored_window",
]

# -- the write side ------------------------------------------------------------------------------


@runtime_checkable
class WindowSink(Protocol):
    """Where the bridge writes window documents, and `campus-energy reconcile` reads them back
    and rewrites them."""

    name: str

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        """Merge every delta; returns the number of documents written. Raises SinkError."""
        ...

    async def close(self) -> None: ...

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

    # The directions and the estimate are read from the accumulator, which every sink keeps
    # (a document written before they existed has none of them: zero).
    acc = Accumulator.from_dict(fields.get("accumulator"))

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
        accumulator=acc,
        site=str(fields.get("site") or ""),
        export_energy_wh=acc.export_wh,
        estimated_energy_wh=acc.estimated_wh,
        estimated_export_wh=acc.estimated_export_wh,
    )


# The sums of a source beyond the measured import (export, estimated import, estimated export),
# in its rollups and in its windows: their columns, or zeros in a store no bridge has opened
# since they came (no column yet).
DIRECTED = {
    True: ("export_wh", "estimated_wh", "estimated_export_wh"),
    False: ("0", "0", "0"),
}
WINDOW_DIRECTED = {
    True: ("export_energy_wh", "estimated_energy_wh", "estimated_export_wh"),
    False: ("0", "0", "0"),
}

# -- the read side: answers in core.answers' values (Grain, MeterLatest, Bucket, Total) ------------


class WindowSource(Protocol):
    name: str

    @property
    def lag_s(self) -> float:
        """How far behind the store the source's answers may be, in seconds (0: never)."""
        ...

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

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        """Per local clock hour with start_ms <= hour start < end_ms, in hour order: the sum
        of weight × each member's quarter-hour energies (`terms`: meter id -> weight, +1 or
        -1), the members with data and the least covered of them. Hours in which no member
        has data are left out. What bills, demand and virtual meters are computed from."""
        ...

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        """For each range [bounds[i], bounds[i + 1]) of local hours (bounds ascending, each a
        local hour's start: in practice local month starts), the demand interval of
        `interval_min` (15: a quarter hour; 30: the first or second half of a local hour,
        q0+q1 or q2+q3; 60: the whole hour) with the highest signed energy, among the hours
        whose members with data number at least `min_members`; the earliest interval wins
        a tie. Ranges without such an hour are left out. Computed in the store: what the
        ratchet of a bill reads, a year of months in one query."""
        ...

    def close(self) -> None: ...
