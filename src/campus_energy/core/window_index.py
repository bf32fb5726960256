"""The Firestore source's memory of the window sink: per meter its latest window, the hourly
(with each quarter hour's energy) and local-daily rollups, and the windows of the last
`KEEP_DAYS` days.

Documents come in as `WindowEntry`s (one per meter's window a document holds):
`load` takes a full read in any order, `update` an incremental read in
`updated_at` order. A rewritten window replaces its previous contribution;
one older than the windows kept, which the index cannot subtract, is reported
("rebuild") so that the source reads everything again instead of counting it
twice. The source (`backends.firestore.source`) does the reading; this index
does no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from campus_energy.core.answers import Bucket, Grain, MeterLatest, ScopeHour, ScopePeak, Total
from campus_energy.core.days import hour_of, local_day
from campus_energy.core.peaks import intervals_of, peaks_of
from campus_energy.core.rollups import quarter_of
from campus_energy.core.timestamps import EPOCH

T = TypeVar("T")
K = TypeVar("K", int, str)
S = TypeVar("S", bound="_Sums")
DAY_MS = 86_400_000
KEEP_DAYS = 40  # windows kept one by one (for 5-minute steps); older ones live in the rollups

Outcome = Literal["applied", "seen", "rebuild"]


@dataclass(frozen=True, slots=True)
class WindowEntry:
    """One meter's window as a document holds it (what the index needs of it)."""

    meter_id: str
    building: str
    floor: str
    window_start_ms: int
    energy_wh: float
    covered_s: float
    readings: int
    avg_power_w: float | None
    coverage: float
    site: str = ""
    export_wh: float = 0.0  # measured export (energy_wh: measured import)
    estimated_wh: float = 0.0  # estimated import and export: gaps the registers bridged
    estimated_export_wh: float = 0.0

    def kept(self) -> tuple[float, float, int, float, float, float]:
        """What the index keeps of a recent window: its sums in `Bucket`'s order."""
        return (
            self.energy_wh,
            self.covered_s,
            self.readings,
            self.export_wh,
            self.estimated_wh,
            self.estimated_export_wh,
        )


class _Sums:
    __slots__ = (
        "covered_s",
        "energy_wh",
        "estimated_export_wh",
        "estimated_wh",
        "export_wh",
        "last_window_ms",
        "readings",
        "windows",
    )

    def __init__(self) -> None:
        self.energy_wh = 0.0
        self.covered_s = 0.0
        self.readings = 0
        self.windows = 0
        self.last_window_ms = 0
        self.export_wh = 0.0
        self.estimated_wh = 0.0
        self.estimated_export_wh = 0.0

    def add(self, kept: tuple[float, float, int, float, float, float], sign: int) -> None:
        """Add (sign 1) or take away (-1) a window's sums (`WindowEntry.kept`)."""
        energy, covered, readings, exported, guessed, guessed_export = kept
        self.energy_wh += sign * energy
        self.covered_s += sign * covered
        self.readings += sign * readings
        self.export_wh += sign * exported
        self.estimated_wh += sign * guessed
        self.estimated_export_wh += sign * guessed_export


class _HourSums(_Sums):
    __slots__ = ("quarters_wh",)

    def __init__(self) -> None:
        super().__init__()
        self.quarters_wh = [0.0, 0.0, 0.0, 0.0]


class _Latest:
    __slots__ = ("building", "coverage", "floor", "last_window_ms", "power_w", "site", "written")

    def __init__(self, entry: WindowEntry, written: tuple[int, int]) -> None:
        self.building = entry.building
        self.floor = entry.floor
        self.site = entry.site
        self.last_window_ms = entry.window_start_ms
        self.power_w = entry.avg_power_w
        self.coverage = entry.coverage
        self.written = written


def micros(moment: datetime | None) -> int:
    """An `updated_at` as integer microseconds since the epoch (-1 for none)."""
    if moment is None:
        return -1
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


class WindowIndex:
    """Per meter its latest window; hourly (with their quarter hours) and local-daily rollups;
    the recent windows.

    `load` takes the documents of a full read in any order; `update` takes the
    documents of an incremental read in `updated_at` order and skips those it
    has seen already (the boundary of the previous read: same id, same
    updated_at, same content). Both replace a window's previous contribution
    rather than add to it.
    """

    def __init__(self, zone: ZoneInfo, keep_ms: int = KEEP_DAYS * DAY_MS) -> None:
        self.zone = zone
        self.keep_ms = keep_ms
        self.cursor: datetime | None = None  # the largest updated_at applied
        # what was applied with updated_at == cursor, by document id: the per-window sink
        # may write one document twice in one flush, with the same updated_at
        self.boundary: dict[str, tuple[WindowEntry, ...]] = {}
        self.documents = 0  # documents applied
        self.kept_from: int | None = None  # every applied window from here on is in `recent`
        self.newest_ms: int | None = None
        # window start -> meter -> its sums (`WindowEntry.kept`), to subtract on a rewrite
        self.recent: dict[int, dict[str, tuple[float, float, int, float, float, float]]] = {}
        self.hourly: dict[int, dict[str, _HourSums]] = {}
        self.daily: dict[str, dict[str, _Sums]] = {}
        self.latest: dict[str, _Latest] = {}
        self._sorted: dict[str, list[Any]] = {}

    # -- writing

    def load(
        self, doc_id: str, updated_at: datetime | None, entries: Collection[WindowEntry]
    ) -> None:
        """A document of a full read (each document once, in any order)."""
        for entry in entries:
            self._put(entry, updated_at)
        self._advance(doc_id, updated_at, entries)

    def update(
        self,
        doc_id: str,
        updated_at: datetime,
        entries: Collection[WindowEntry],
        first_version: bool = False,
    ) -> Outcome:
        """A document of an incremental read, in updated_at order.

        "seen": read before (same id, updated_at and content), nothing changes.
        "rebuild": it may rewrite a window whose contribution is no longer kept;
        nothing changes and the caller must rebuild the index from a full read.
        `first_version`: the document was never written before (Firestore's
        create_time equals its update_time), so it cannot be a rewrite.
        """
        if self.cursor is not None and updated_at <= self.cursor:
            if updated_at < self.cursor:
                return "seen"  # behind the cursor: only a replay of a read can bring it
            before = self.boundary.get(doc_id)
            if before == tuple(entries):
                return "seen"
            if before is not None:
                first_version = False  # a second write with the same updated_at
        if any(self._unknown_rewrite(e, first_version) for e in entries):
            return "rebuild"
        for entry in entries:
            self._put(entry, updated_at)
        self._advance(doc_id, updated_at, entries)
        return "applied"

    def prune(self) -> None:
        """Forget the windows more than keep_ms older than the newest (their rollups stay)."""
        if self.newest_ms is None:
            return
        horizon = self.newest_ms - self.keep_ms
        if self.kept_from is not None and horizon <= self.kept_from:
            return
        self.kept_from = horizon
        old = [start for start in self.recent if start < horizon]
        for start in old:
            del self.recent[start]
        if old:
            self._sorted.pop("window", None)

    def _advance(
        self, doc_id: str, updated_at: datetime | None, entries: Collection[WindowEntry]
    ) -> None:
        self.documents += 1
        if updated_at is None:
            return
        if self.cursor is None or updated_at > self.cursor:
            self.cursor = updated_at
            self.boundary = {}
        if updated_at == self.cursor:
            self.boundary[doc_id] = tuple(entries)

    def _kept(self, start_ms: int) -> bool:
        return self.kept_from is None or start_ms >= self.kept_from

    def _unknown_rewrite(self, entry: WindowEntry, first_version: bool) -> bool:
        start = entry.window_start_ms
        if self._kept(start) or first_version:
            return False
        # Older than the windows kept: a rewrite only if this meter has data in that hour.
        return entry.meter_id in self.hourly.get(hour_of(start, self.zone), {})

    def _put(self, entry: WindowEntry, updated_at: datetime | None) -> None:
        start, meter = entry.window_start_ms, entry.meter_id
        window = self.recent.get(start)
        old = window.get(meter) if window is not None else None
        if self._kept(start):
            if window is None:
                window = self.recent[start] = {}
                self._sorted.pop("window", None)
            window[meter] = entry.kept()
        hour = hour_of(start, self.zone)
        hourly = self._sums(self.hourly, hour, "hour", meter, _HourSums)
        quarter = quarter_of(start, hour)
        if old is not None:
            hourly.quarters_wh[quarter] -= old[0]
        hourly.quarters_wh[quarter] += entry.energy_wh
        for sums in (
            hourly,
            self._sums(self.daily, local_day(start, self.zone), "day", meter, _Sums),
        ):
            if old is not None:
                sums.add(old, -1)
            else:
                sums.windows += 1
            sums.add(entry.kept(), 1)
            sums.last_window_ms = max(sums.last_window_ms, start)
        if self.newest_ms is None or start > self.newest_ms:
            self.newest_ms = start
        self._note_latest(entry, micros(updated_at))

    def _sums(
        self, table: dict[K, dict[str, S]], key: K, grain: str, meter: str, kind: type[S]
    ) -> S:
        row = table.get(key)
        if row is None:
            row = table[key] = {}
            self._sorted.pop(grain, None)
        sums = row.get(meter)
        if sums is None:
            sums = row[meter] = kind()
        return sums

    def _note_latest(self, entry: WindowEntry, written_us: int) -> None:
        # As the SQLite sink's window_meters: building, floor and site of the latest write,
        # power and coverage of the latest window (of its latest write).
        written = (written_us, entry.window_start_ms)
        latest = self.latest.get(entry.meter_id)
        if latest is None:
            self.latest[entry.meter_id] = _Latest(entry, written)
            return
        if written >= latest.written:
            latest.building, latest.floor, latest.written = entry.building, entry.floor, written
            latest.site = entry.site
        if entry.window_start_ms >= latest.last_window_ms:
            latest.last_window_ms = entry.window_start_ms
            latest.power_w = entry.avg_power_w
            latest.coverage = entry.coverage

    # -- reading

    def _keys(self, grain: str) -> list[Any]:
        keys = self._sorted.get(grain)
        if keys is None:
            table: Mapping[Any, Any] = (
                self.recent if grain == "window" else self.hourly if grain == "hour" else self.daily
            )
            keys = self._sorted[grain] = sorted(table)
        return keys

    def meters(self) -> list[MeterLatest]:
        return [
            MeterLatest(m, x.building, x.floor, x.last_window_ms, x.power_w, x.coverage, x.site)
            for m, x in sorted(self.latest.items())
        ]

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        keys = self._keys("day")
        every = _Sums()
        last: int | None = None
        found: set[str] = set()
        wanted = _wanted(meters)
        for day in keys[bisect.bisect_left(keys, first_day) : bisect.bisect_right(keys, last_day)]:
            for meter, sums in _select(self.daily[day], wanted):
                every.add(_kept(sums), 1)
                found.add(meter)
                last = sums.last_window_ms if last is None else max(last, sums.last_window_ms)
        return Total(
            every.energy_wh,
            int(every.readings),
            len(found),
            last,
            export_wh=every.export_wh,
            estimated_wh=every.estimated_wh,
            estimated_export_wh=every.estimated_export_wh,
        )

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        lo: Any = str(start) if grain == "day" else int(start)
        hi: Any = str(end) if grain == "day" else int(end)
        keys = self._keys(grain)
        found: list[Bucket] = []
        wanted = _wanted(meters)
        for key in keys[bisect.bisect_left(keys, lo) : bisect.bisect_left(keys, hi)]:
            if grain == "window":
                found.extend(Bucket(m, key, *kept) for m, kept in _select(self.recent[key], wanted))
            else:
                row = self.hourly[key] if grain == "hour" else self.daily[key]
                found.extend(Bucket(m, key, *_kept(s)) for m, s in _select(row, wanted))
        return found

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        """Per local hour with start_ms <= hour < end_ms in which a member has data: the
        weighted sum of the members' quarter hours, the members found, the least covered."""
        if not terms:
            return []
        keys = self._keys("hour")
        members = sorted(terms.items())
        found: list[ScopeHour] = []
        for hour in keys[bisect.bisect_left(keys, start_ms) : bisect.bisect_left(keys, end_ms)]:
            row = self.hourly[hour]
            quarters = [0.0, 0.0, 0.0, 0.0]
            guessed = 0.0
            covered: float | None = None
            count = 0
            # whichever is shorter is walked: the hour's meters, or the scope's
            present = (
                [(m, terms[m], s) for m, s in sorted(row.items()) if m in terms]
                if len(row) < len(members)
                else [(m, w, row[m]) for m, w in members if m in row]
            )
            for _, weight, sums in present:
                for i, energy in enumerate(sums.quarters_wh):
                    quarters[i] += weight * energy
                guessed += weight * sums.estimated_wh
                covered = sums.covered_s if covered is None else min(covered, sums.covered_s)
                count += 1
            if covered is not None:
                found.append(
                    ScopeHour(
                        hour,
                        (quarters[0], quarters[1], quarters[2], quarters[3]),
                        covered,
                        count,
                        guessed,
                    )
                )
        return found

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        """Per range [bounds[i], bounds[i + 1]) the highest demand interval of the scope's
        hours with at least `min_members` members (`core.peaks`)."""
        intervals_of(bounds, interval_min)
        if not terms or len(bounds) < 2:
            return []
        hours = self.scope_hours(bounds[0], bounds[-1], terms)
        return peaks_of(hours, bounds, interval_min, min_members)


def _kept(sums: _Sums) -> tuple[float, float, int, float, float, float]:
    """A rollup's sums in `Bucket`'s order (as `WindowEntry.kept`)."""
    return (
        sums.energy_wh,
        sums.covered_s,
        sums.readings,
        sums.export_wh,
        sums.estimated_wh,
        sums.estimated_export_wh,
    )


def _wanted(meters: Collection[str] | None) -> list[str] | None:
    return None if meters is None else sorted(set(meters))


def _select(row: Mapping[str, T], wanted: list[str] | None) -> Iterator[tuple[str, T]]:
    if wanted is None:
        yield from sorted(row.items())
    else:
        yield from ((m, row[m]) for m in wanted if m in row)
