"""Days cut in a site's own time zone, from a store whose daily rollups are cut in another's.

The bridge cuts the store's hourly and daily rollups in `[site].timezone`: the store's
zone. A site of the estate in another zone has other midnights, so its days are not the
store's. Its clock hours are (the configuration refuses a site whose UTC offset differs
from the default site's by other than whole hours: `sites[i].timezone`), so `ZonedSource`
answers as a source whose daily rollups were cut in the site's zone would: a site's day
is the sum of the store's hours in it, and a long total takes the whole store days in
its middle from the daily rollups and only its two ends from the hours. Hours, windows
and quarter hours are the store's own. Where the site's midnights are the store's, every
read goes to the store as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, timedelta
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
from campus_energy.core.days import HOUR_MS, local_date, local_day, midnight_ms

DAY = timedelta(days=1)


class ZonedSource:
    """`source` (whose daily rollups are cut in `store_zone`) with the days of `zone`."""

    def __init__(self, source: WindowSource, zone: ZoneInfo, store_zone: ZoneInfo) -> None:
        self.source = source
        self.name = source.name
        self.zone = zone
        self.store_zone = store_zone

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
        """The site's midnights from `first`'s to `after`'s are the store's."""
        if self.zone.key == self.store_zone.key:
            return True
        day = first
        while day <= after:
            if midnight_ms(day, self.zone) != midnight_ms(day, self.store_zone):
                return False
            day += DAY
        return True

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        """Sums over the site's days first..last: the store's whole days within them from
        its daily rollups, the hours before and after those from its hourly ones."""
        first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
        if self.same_days(first, last + DAY):
            return self.source.total(first_day, last_day, meters)
        start, end = midnight_ms(first, self.zone), midnight_ms(last + DAY, self.zone)
        inner = local_date(start, self.store_zone)  # the store's first day wholly within
        if midnight_ms(inner, self.store_zone) < start:
            inner += DAY
        after = local_date(end, self.store_zone)  # ... and the day after its last
        middle: list[Bucket] = []
        head_end = tail_start = start
        if inner < after:
            middle = self.source.buckets("day", inner.isoformat(), after.isoformat(), meters)
            head_end = midnight_ms(inner, self.store_zone)
            tail_start = midnight_ms(after, self.store_zone)
        head = self.source.buckets("hour", start, head_end, meters) if start < head_end else []
        tail = self.source.buckets("hour", tail_start, end, meters)
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
            export_wh=sum(b.export_wh for b in found),
            estimated_wh=sum(b.estimated_wh for b in found),
            estimated_export_wh=sum(b.estimated_export_wh for b in found),
        )

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        """The store's windows and hours; the site's days summed from the store's hours."""
        if grain != "day":
            return self.source.buckets(grain, start, end, meters)
        first, after = date.fromisoformat(str(start)), date.fromisoformat(str(end))
        if after <= first or self.same_days(first, after):
            return self.source.buckets("day", str(start), str(end), meters)
        hours = self.source.buckets(
            "hour", midnight_ms(first, self.zone), midnight_ms(after, self.zone), meters
        )
        sums: dict[tuple[str, str], list[float]] = {}
        for b in hours:
            found = sums.setdefault((b.meter_id, local_day(int(b.key), self.zone)), [0.0] * 6)
            found[0] += b.energy_wh
            found[1] += b.covered_s
            found[2] += b.readings
            found[3] += b.export_wh
            found[4] += b.estimated_wh
            found[5] += b.estimated_export_wh
        return [  # energy, covered, readings; export, estimated import and export
            Bucket(meter, day, s[0], s[1], int(s[2]), s[3], s[4], s[5])
            for (meter, day), s in sorted(sums.items())
        ]

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        return self.source.scope_hours(start_ms, end_ms, terms)

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        return self.source.scope_peaks(bounds, terms, interval_min, min_members)

    def _last_window(
        self, hours: Sequence[Bucket], hi: int, meters: Collection[str] | None
    ) -> int | None:
        """The start of the latest window in `hours` (the store's hours of a range ending at
        `hi`): its store day's latest when that lies in the latest hour with data, else the
        latest 5-minute step with data in that hour (the day goes on past `hi`)."""
        if not hours:
            return None
        hour = max(int(b.key) for b in hours)
        day = local_day(hour, self.store_zone)
        found = self.source.total(day, day, meters).last_window_ms
        if found is not None and hour <= found < min(hour + HOUR_MS, hi):
            return int(found)
        windows = self.source.buckets("window", hour, min(hour + HOUR_MS, hi), meters)
        return max((int(w.key) for w in windows), default=hour)
