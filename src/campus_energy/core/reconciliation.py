"""Reconciliation: the windows the bridge would have written, set against what a sink holds.

The windows are rebuilt from the logger's readings with the bridge's own
functions (`contributions`, `group`, `window_document`), so the two cannot
disagree about how a reading is cut into windows. Each window of the range is
then one `Finding`:

- `equal`: the sink holds what the readings give (energy within 1e-6 Wh,
  readings exactly, averages and coverage to float rounding);
- `differs`: it holds something else (the fields that differ say by how much);
- `missing`: the readings give a window the sink does not hold;
- `orphan`: the sink holds a window in a time the store covers (between its
  first and last reading of the meter) and no stored reading touches it: no
  reading stands behind it (a forged or misplaced window) — deleted with --apply;
- `extra`: the sink holds a window no accepted reading gives, outside what the
  store covers (readings since deleted by retention, a meter of another
  logger's store) or backed by readings the bridge now refuses — reported,
  never deleted;
- `partial`: the store no longer holds the readings before this window's first
  one (retention, an import), so it cannot tell what the window should hold —
  reported, never rewritten.

Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from campus_energy.core.readings import Reading
from campus_energy.core.windows import (
    IncomingReading,
    WindowDoc,
    contributions,
    document_id,
    group,
    window_document,
    window_start_ms,
)

ENERGY_TOLERANCE_WH = 1e-6
RELATIVE_TOLERANCE = 1e-9  # averages and coverage: sums of the same values in another order

Status = Literal["equal", "differs", "missing", "extra", "partial", "orphan"]
Key = tuple[str, int]  # (meter_id, window_start_ms)
REWRITTEN: frozenset[Status] = frozenset({"differs", "missing"})
DELETED: frozenset[Status] = frozenset({"orphan"})
# energy by direction and kind, as the summary names it -> the window's field holding it
ENERGIES: dict[str, str] = {
    "import": "total_energy_wh",  # measured
    "export": "export_energy_wh",  # measured
    "estimated_import": "estimated_energy_wh",
    "estimated_export": "estimated_export_wh",
}


def _exact(a: float, b: float) -> bool:
    return a == b


def _energy(a: float, b: float) -> bool:
    return abs(a - b) <= ENERGY_TOLERANCE_WH


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=RELATIVE_TOLERANCE)


# field -> when two values of it agree; compared (and reported) in this order
COMPARED: dict[str, Callable[[float, float], bool]] = {
    "total_energy_wh": _energy,  # measured import
    "export_energy_wh": _energy,
    "estimated_energy_wh": _energy,
    "estimated_export_wh": _energy,
    "readings_in_batch": _exact,
    "coverage": _close,
    "avg_power_w": _close,
    "min_power_w": _close,
    "max_power_w": _close,
    "avg_voltage_v": _close,
    "avg_current_a": _close,
    "avg_power_factor": _close,
    "avg_frequency_hz": _close,
    "window_end_ms": _exact,
}


@dataclass(frozen=True)
class FieldDifference:
    name: str
    sink: float | None
    local: float | None

    @property
    def by(self) -> float | None:
        """local - sink, when both are numbers."""
        if self.sink is None or self.local is None:
            return None
        return self.local - self.sink


@dataclass(frozen=True)
class Finding:
    """One meter's window: what the readings give (`local`), what the sink holds (`sink`)."""

    meter_id: str
    window_start_ms: int
    status: Status
    local: WindowDoc | None
    sink: WindowDoc | None
    differences: tuple[FieldDifference, ...] = ()

    @property
    def document_id(self) -> str:
        return document_id(self.meter_id, self.window_start_ms)

    @property
    def local_energy_wh(self) -> float | None:
        return None if self.local is None else self.local.total_energy_wh

    @property
    def sink_energy_wh(self) -> float | None:
        return None if self.sink is None else self.sink.total_energy_wh

    @property
    def energy_difference_wh(self) -> float:
        """local - sink (a side without the window counts as 0 Wh)."""
        return (self.local_energy_wh or 0.0) - (self.sink_energy_wh or 0.0)

    def replacement(self) -> WindowDoc:
        """The document to write in the sink's place: the local one, keeping the building,
        floor and site the sink recorded (they describe where the meter was, not what it
        measured)."""
        if self.status not in REWRITTEN or self.local is None:
            raise ValueError(f"{self.document_id} is {self.status}: nothing to rewrite")
        if self.sink is None:
            return self.local
        return replace(
            self.local, building=self.sink.building, floor=self.sink.floor, site=self.sink.site
        )


@dataclass(frozen=True)
class StoreSpan:
    """What the store holds of one meter around a range: its first and last reading there
    (the time it covers) and the windows some stored reading touches."""

    first_ms: int
    last_ms: int
    backed: frozenset[int]  # window starts

    def orphans(self, start_ms: int, end_ms: int) -> bool:
        """Whether a window [start_ms, end_ms) lies in the covered time and no reading
        touches it (a window older than the first reading never does: retention)."""
        covered = self.first_ms <= start_ms and end_ms <= self.last_ms
        return covered and start_ms not in self.backed


def store_span(
    readings: Sequence[Reading], window_ms: int, max_interval_ms: int | None = None
) -> StoreSpan | None:
    """The span of a meter's stored readings (in time order, before any validation: a
    reading the bridge refuses still stands behind the windows it touches). An interval
    longer than `max_interval_ms` backs only its last `max_interval_ms`, where the bridge
    puts its energy: windows an earlier bridge spread it over are orphans."""
    if not readings:
        return None
    backed: set[int] = set()
    for r in readings:
        low = r.ts_ms if r.interval_start_ms is None else min(r.interval_start_ms, r.ts_ms)
        if max_interval_ms is not None:
            low = max(low, r.ts_ms - max_interval_ms)
        if r.estimated and r.estimated_start_ms is not None:  # its estimate's gap is backed too
            low = min(low, r.estimated_start_ms)
        first, last = window_start_ms(low, window_ms), window_start_ms(r.ts_ms, window_ms)
        backed.update(range(first, last + 1, window_ms))
    return StoreSpan(readings[0].ts_ms, readings[-1].ts_ms, frozenset(backed))


def recompute(
    readings: Iterable[IncomingReading],
    window_s: int,
    start_ms: int,
    end_ms: int,
    meta: Mapping[str, tuple[str, str] | tuple[str, str, str]],
    updated_at_ms: int,
) -> dict[Key, WindowDoc]:
    """The documents the bridge builds from `readings` for windows starting in [start, end).

    Pass every reading whose interval may overlap the range: per meter, the
    readings of the range, the one before it (whose time starts the interval of
    the first) and the first one at or after its end (whose interval may reach
    back into the last window).
    """
    window_ms = window_s * 1000
    items = [
        c
        for r in readings
        for c in contributions(r, window_ms)
        if start_ms <= c.window_start_ms < end_ms
    ]
    return {
        (d.meter_id, d.window_start_ms): window_document(d, None, updated_at_ms)
        for d in group(items, window_s, meta)
    }


def differences(local: WindowDoc, sink: WindowDoc) -> tuple[FieldDifference, ...]:
    """The compared fields on which the two documents disagree beyond their tolerance."""
    found = []
    for name, agree in COMPARED.items():
        mine: float | None = getattr(local, name)
        theirs: float | None = getattr(sink, name)
        if mine is None or theirs is None:
            same = mine is None and theirs is None
        else:
            same = agree(mine, theirs)
        if not same:
            found.append(FieldDifference(name, theirs, mine))
    return tuple(found)


def compare(
    local: Mapping[Key, WindowDoc],
    sink: Mapping[Key, WindowDoc],
    partial_until: Mapping[str, int] | None = None,
    spans: Mapping[str, StoreSpan] | None = None,
) -> list[Finding]:
    """One finding per window either side holds, in (window start, meter) order.

    `partial_until` maps a meter to the start of the last window the store cannot
    rebuild in full (its history begins with a reading whose predecessor is gone).
    `spans` holds what the store covers of each meter: a window the sink alone
    holds there, with no reading behind it, is an orphan; without a span, extra.
    """
    partial = partial_until or {}
    covered = spans or {}
    found = []
    for key in sorted(set(local) | set(sink), key=lambda k: (k[1], k[0])):
        meter_id, start = key
        mine, theirs = local.get(key), sink.get(key)
        incomplete = meter_id in partial and start <= partial[meter_id]
        diffs: tuple[FieldDifference, ...] = ()
        status: Status
        if mine is None:
            assert theirs is not None
            span = covered.get(meter_id)
            orphan = span is not None and span.orphans(start, theirs.window_end_ms)
            status = "orphan" if orphan else "extra"
        elif theirs is None:
            status = "partial" if incomplete else "missing"
        else:
            diffs = differences(mine, theirs)
            status = "equal" if not diffs else "partial" if incomplete else "differs"
        found.append(Finding(meter_id, start, status, mine, theirs, diffs))
    return found


@dataclass(frozen=True)
class Balance:
    """One kind of energy summed over the windows checked: what the store's readings give
    (`local_wh`) and what the sink holds."""

    local_wh: float
    sink_wh: float

    @property
    def difference_wh(self) -> float:
        """local - sink."""
        return self.local_wh - self.sink_wh


def _zeros() -> dict[str, float]:
    return dict.fromkeys(ENERGIES, 0.0)


@dataclass
class Summary:
    """Counts and energy over every window checked."""

    statuses: Counter[Status] = field(default_factory=Counter)
    local_energy_wh: float = 0.0  # measured import
    sink_energy_wh: float = 0.0
    refused: int = 0  # readings the bridge would refuse (and so never count)
    rewritten: int = 0
    deleted: int = 0
    local_wh: dict[str, float] = field(default_factory=_zeros)  # by ENERGIES' names
    sink_wh: dict[str, float] = field(default_factory=_zeros)

    def add(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self.statuses[f.status] += 1
            self.local_energy_wh += f.local_energy_wh or 0.0
            self.sink_energy_wh += f.sink_energy_wh or 0.0
            for name, attribute in ENERGIES.items():
                if f.local is not None:
                    self.local_wh[name] += getattr(f.local, attribute)
                if f.sink is not None:
                    self.sink_wh[name] += getattr(f.sink, attribute)

    def energies(self) -> dict[str, Balance]:
        """Measured import and export, estimated import and export: store against sink."""
        return {name: Balance(self.local_wh[name], self.sink_wh[name]) for name in ENERGIES}

    @property
    def directed(self) -> bool:
        """Whether any window either side holds export or an estimate."""
        return any(
            self.local_wh[name] or self.sink_wh[name] for name in ENERGIES if name != "import"
        )

    @property
    def checked(self) -> int:
        return sum(self.statuses.values())

    @property
    def to_rewrite(self) -> int:
        return sum(self.statuses[s] for s in REWRITTEN)

    @property
    def to_delete(self) -> int:
        return sum(self.statuses[s] for s in DELETED)

    def counts(self) -> dict[str, int]:
        """The counts by the names the report uses."""
        return {
            "checked": self.checked,
            "equal": self.statuses["equal"],
            "differing": self.statuses["differs"],
            "missing": self.statuses["missing"],
            "extra": self.statuses["extra"],
            "partial": self.statuses["partial"],
            "orphan": self.statuses["orphan"],
        }
