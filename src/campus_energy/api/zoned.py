"""Sums cut in a site's own time zone, from a store whose rollups are cut in another's.

The bridge cuts the store's hourly and daily rollups in `[site].timezone`: the store's
zone. A site of the estate in another zone has other midnights, so its days are not the
store's. `ZonedSource` answers as a window source whose rollups were cut in the site's
zone would: a site's day is summed from the store's hours (a zone whose offset differs
from the store's by whole hours starts its hours when the store's do); an hour that one
of the site's midnights cuts in two (a zone half an hour or 45 minutes off the store's)
from its windows; and a long total's whole store days in the middle from the daily
rollups. Its hours and quarter hours are the store's when the offsets differ by whole
hours, else summed from windows (a Firestore source keeps those for a recent range only).
Where the site's midnights are the store's, every read goes to the store as it is.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from campus_energy.backends.base import (
    Bucket,
    Grain,
    MeterLatest,
    ScopeHour,
    ScopePeak,
    Total,
    WindowSource,
)
from campus_energy.core.answers import QUARTER_MS
from campus_energy.core.days import HOUR_MS, hour_of, local_date, local_day, midnight_ms
from campus_energy.core.peaks import INTERVALS, intervals_of

DAY = timedelta(days=1)
STEP_MS = 300_000  # the window grain's keys: each window's 5-minute step at the coarsest


def hours_align(zone: ZoneInfo, other: ZoneInfo) -> bool:
    """Whether the local hours of two zones start at the same instants: their offsets differ
    by whole hours (sampled twice a month from 1970 to 2099)."""
    if zone.key == other.key:
        return True
    for year in range(1970, 2100):
        for month in range(1, 13):
            for day in (1, 16):
                moment = datetime(year, month, day, tzinfo=UTC)
                one, two = moment.astimezone(zone).utcoffset(), moment.astimezone(other).utcoffset()
                if one is None or two is None or (one - two).total_seconds() % 3600:
                    return False
    return True


class ZonedSource:
    """`source` (whose rollups are cut in `store_zone`) with days and hours of `zone`."""

    def __init__(self, source: WindowSource, zone: ZoneInfo, store_zone: ZoneInfo) -> None:
        self.source = source
        self.name = source.name
        self.zone = zone
        self.store_zone = store_zone
        self.aligned = hours_align(zone, store_zone)  # the site's hours are the store's

    @property
    def lag_s(self) -> float:
        return self.source.lag_s

    def version(self) -> str:
        return self.source.version()

    def meters(self) -> list[MeterLatest]:
        return self.source.meters()

    def close(self) -> None:
        """Nothing of its own to close: the store's source is closed by its owner."""

    def same_days(self, first: date, after: date) -> bool:
        """The site's days first..after (its midnights) are the store's."""
        if self.zone.key == self.store_zone.key:
            return True
        day = first
        while day <= after:
            if midnight_ms(day, self.zone) != midnight_ms(day, self.store_zone):
                return False
            day += DAY
        return True

    # -- sums ---------------------------------------------------------------------------------

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
        if self.same_days(first, last + DAY):
            return self.source.total(first_day, last_day, meters)
        start, end = midnight_ms(first, self.zone), midnight_ms(last + DAY, self.zone)
        inner, after = self._store_days_within(start, end)
        middle: list[Bucket] = []
        head_end = tail_start = start
        if inner < after:  # whole store days in the middle, read from the daily rollups
            middle = self.source.buckets("day", inner.isoformat(), after.isoformat(), meters)
            head_end = midnight_ms(inner, self.store_zone)
            tail_start = midnight_ms(after, self.store_zone)
        head = self._pieces(start, head_end, meters)
        tail = self._pieces(tail_start, end, meters)
        found = [*head, *middle, *tail]
        if not found:
            return Total(0.0, 0, 0, None)
        last_ms = self._last_window(tail, end, meters)
        if last_ms is None and middle:
            last_ms = self.source.total(
                inner.isoformat(), (after - DAY).isoformat(), meters
            ).last_window_ms
        if last_ms is None:
            last_ms = self._last_window(head, head_end, meters)
        return Total(
            sum(b.energy_wh for b in found),
            sum(b.readings for b in found),
            len({b.meter_id for b in found}),
            last_ms,
        )

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        if grain == "window" or (grain == "hour" and self.aligned):
            return self.source.buckets(grain, start, end, meters)
        if grain == "hour":  # whole hours, as the store's: those starting before `end`
            windows = self.source.buckets("window", start, int(end) + HOUR_MS, meters)
            hours = _regrouped(windows, lambda key: hour_of(key, self.zone))
            return [h for h in hours if int(start) <= int(h.key) < int(end)]
        first, after = date.fromisoformat(str(start)), date.fromisoformat(str(end))
        if after <= first or self.same_days(first, after):
            return self.source.buckets("day", str(start), str(end), meters)
        pieces = self._pieces(midnight_ms(first, self.zone), midnight_ms(after, self.zone), meters)
        return _regrouped(pieces, lambda key: local_day(key, self.zone))

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        """The site's local hours: the store's when they align, else summed from windows (as
        the store sums its hours: quarter by quarter, members with data, the least covered)."""
        if self.aligned or not terms:
            return self.source.scope_hours(start_ms, end_ms, terms)
        sums: dict[tuple[int, str], list[float]] = {}  # (hour, meter) -> q0..q3, covered
        for w in self.source.buckets("window", start_ms, end_ms + HOUR_MS, list(terms)):
            hour = hour_of(int(w.key), self.zone)
            if not start_ms <= hour < end_ms:
                continue
            found = sums.setdefault((hour, w.meter_id), [0.0] * 5)
            found[(int(w.key) - hour) // QUARTER_MS] += w.energy_wh
            found[4] += w.covered_s
        hours: dict[int, list[tuple[str, list[float]]]] = {}
        for (hour, meter), found in sums.items():
            hours.setdefault(hour, []).append((meter, found))
        made = []
        for hour in sorted(hours):
            members = hours[hour]
            quarters = tuple(sum(terms[m] * f[q] for m, f in members) for q in range(4))
            made.append(
                ScopeHour(
                    hour,
                    (quarters[0], quarters[1], quarters[2], quarters[3]),
                    min(f[4] for _, f in members),
                    len(members),
                )
            )
        return made

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        """The store's when the hours align, else from `scope_hours` (the earliest of equals)."""
        if self.aligned:
            return self.source.scope_peaks(bounds, terms, interval_min, min_members)
        intervals_of(bounds, interval_min)
        if not terms or len(bounds) < 2:
            return []
        best: dict[int, ScopePeak] = {}
        for hour in self.scope_hours(bounds[0], bounds[-1], terms):
            if hour.members < min_members:
                continue
            index = bisect.bisect_right(bounds, hour.hour_ms) - 1
            for quarters in INTERVALS[interval_min]:
                energy = sum(hour.quarters_wh[q] for q in quarters)
                start = hour.hour_ms + quarters[0] * QUARTER_MS
                kept = best.get(index)
                if kept is None or energy > kept.energy_wh:
                    best[index] = ScopePeak(index, energy, start)
        return [best[i] for i in sorted(best)]

    # -- pieces -------------------------------------------------------------------------------

    def _store_days_within(self, start: int, end: int) -> tuple[date, date]:
        """The store's days that lie wholly within [start, end): first, and the day after."""
        first = local_date(start, self.store_zone)
        if midnight_ms(first, self.store_zone) < start:
            first += DAY
        return first, local_date(end, self.store_zone)

    def _pieces(self, lo: int, hi: int, meters: Collection[str] | None) -> list[Bucket]:
        """Each meter's sums over [lo, hi) in pieces none of the site's midnights cuts: the
        store's hours (key: the hour's start), and the windows (key: the window's 5-minute
        step) of an hour that such a midnight, `lo` or `hi` cuts."""
        if lo >= hi:
            return []
        if self.aligned:  # lo and hi are midnights here or the store's: hour starts of both
            return self.source.buckets("hour", lo, hi, meters)
        whole: list[Bucket] = []
        cut: set[int] = set()
        uncut: dict[int, bool] = {}
        for b in self.source.buckets("hour", hour_of(lo, self.store_zone), hi, meters):
            hour = int(b.key)
            if hour not in uncut:
                uncut[hour] = (
                    lo <= hour
                    and hour + HOUR_MS <= hi
                    and local_date(hour, self.zone) == local_date(hour + HOUR_MS - 1, self.zone)
                )
            if uncut[hour]:
                whole.append(b)
            else:
                cut.add(hour)
        for hour in sorted(cut):
            whole += self.source.buckets("window", max(hour, lo), min(hour + HOUR_MS, hi), meters)
        return whole

    def _last_window(
        self, pieces: Sequence[Bucket], hi: int, meters: Collection[str] | None
    ) -> int | None:
        """The start of the latest window in `pieces` (of the range ending at `hi`): the latest
        window of its store day when that lies in the latest 5-minute step with data, else
        that step's start (windows shorter than 5 minutes, a day going on past `hi`)."""
        if not pieces:
            return None
        latest = max(int(b.key) for b in pieces)  # an hour's start, or a window's step
        windows = self.source.buckets("window", latest, min(latest + HOUR_MS, hi), meters)
        if not windows:
            return None
        step = max(int(w.key) for w in windows)
        day = local_day(step, self.store_zone)
        found = self.source.total(day, day, meters).last_window_ms
        if found is not None and step <= found < min(step + STEP_MS, hi):
            return int(found)
        return step


def _regrouped(pieces: Iterable[Bucket], key_of: Callable[[int], int | str]) -> list[Bucket]:
    """Each meter's pieces summed per `key_of(piece's key)`."""
    sums: dict[tuple[str, int | str], list[float]] = {}
    for b in pieces:
        found = sums.setdefault((b.meter_id, key_of(int(b.key))), [0.0, 0.0, 0])
        found[0] += b.energy_wh
        found[1] += b.covered_s
        found[2] += b.readings
    return [
        Bucket(meter, key, energy, covered, int(readings))
        for (meter, key), (energy, covered, readings) in sorted(
            sums.items(), key=lambda item: (item[0][0], str(item[0][1]))
        )
    ]
