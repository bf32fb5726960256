"""What the alerts service reads from the window store, and how often.

The store answers slowly changing questions, so each is asked again only when its answer can
have changed: a meter's latest window (the cross-check of meter-silent) every minute, the
windows' coverage when another window has ended, a scope's hours (baseline-deviation and
the open-hours median of after-hours) when another hour has ended, the month's peak
interval (demand-approaching) every five minutes. Every call runs in one worker thread, so a
slow store never holds up the live readings. Failures become `SourceError`; the caller keeps
the last answers and says so once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar
from zoneinfo import ZoneInfo

from campus_energy.backends.base import WindowSource
from campus_energy.core.alerts import HourEnergy
from campus_energy.core.days import hour_of, local_date
from campus_energy.core.demand import month_bounds, month_of, previous_months

T = TypeVar("T")
HOUR_MS = 3_600_000
LATEST_EVERY_MS = 60_000
PEAK_EVERY_MS = 300_000
SETTLE_S = 60.0  # a window is in the store this long after its end + grace (the bridge's flush)


class StoreReader:
    def __init__(self, source: WindowSource, zone: ZoneInfo, window_s: int, grace_s: float):
        self.source = source
        self.zone = zone
        self.window_ms = window_s * 1000
        self.settle_ms = int((grace_s + SETTLE_S) * 1000)  # a window is in the store by then
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alerts-store")
        self._latest: tuple[int, dict[str, int]] = (-LATEST_EVERY_MS, {})
        self._coverage: dict[
            tuple[int, frozenset[str], int], dict[str, tuple[tuple[int, float], ...]]
        ]
        self._coverage = {}
        self._hours: dict[tuple[str, int, int], tuple[HourEnergy, ...]] = {}
        self._peaks: dict[tuple[str, int], tuple[int, float | None]] = {}
        self._earlier: dict[tuple[str, int, int, int], float | None] = {}

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        """Stop the worker; a query still running is left to finish on its own (a hung store
        must not hold the service's stop up)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def last_window_starts(self, now_ms: int) -> dict[str, int]:
        """Each meter's latest window's start (ms), asked at most once a minute."""
        asked, found = self._latest
        if now_ms - asked >= LATEST_EVERY_MS:
            latest = await self._call(self.source.meters)
            found = {m.meter_id: m.last_window_ms for m in latest if m.last_window_ms is not None}
            self._latest = (now_ms, found)
        return found

    async def coverage(
        self, meters: Collection[str], now_ms: int, count: int
    ) -> dict[str, tuple[tuple[int, float], ...]]:
        """Each meter's windows (start, coverage) among the last `count` + 2 window starts that
        have settled in the store, oldest first; asked again when another window settles."""
        settled_end = (now_ms - self.settle_ms) // self.window_ms * self.window_ms
        key = (settled_end, frozenset(meters), count)
        if key not in self._coverage:
            start = settled_end - (count + 2) * self.window_ms
            window_s = self.window_ms / 1000

            def ask() -> dict[str, tuple[tuple[int, float], ...]]:
                found: dict[str, list[tuple[int, float]]] = {m: [] for m in meters}
                for bucket in self.source.buckets("window", start, settled_end, list(meters)):
                    assert isinstance(bucket.key, int)
                    covered = min(1.0, bucket.covered_s / window_s)
                    found.setdefault(bucket.meter_id, []).append((bucket.key, covered))
                return {m: tuple(sorted(rows)) for m, rows in found.items()}

            found = await self._call(ask)
            self._coverage = {k: v for k, v in self._coverage.items() if k[0] == settled_end}
            self._coverage[key] = found
        return self._coverage[key]

    async def hours(
        self, subject: str, terms: Mapping[str, float], now_ms: int, weeks: int
    ) -> tuple[HourEnergy, ...]:
        """The scope's hours from `weeks` weeks (and a day) before the last settled hour up to
        and including it; asked again when another hour settles."""
        settled = self.last_settled_hour_ms(now_ms)
        key = (subject, settled, weeks)
        if key not in self._hours:
            start = settled - (weeks * 7 + 1) * 86_400_000

            def ask() -> tuple[HourEnergy, ...]:
                rows = self.source.scope_hours(start, settled + HOUR_MS, dict(terms))
                complete = len(terms)
                return tuple(
                    HourEnergy(
                        row.hour_ms,
                        sum(row.quarters_wh),
                        row.min_covered_s / 3600 if row.members >= complete else 0.0,
                    )
                    for row in rows
                )

            found = await self._call(ask)
            self._hours = {k: v for k, v in self._hours.items() if k[0::2] != key[0::2]}
            self._hours[key] = found
        return self._hours[key]

    def last_settled_hour_ms(self, now_ms: int) -> int:
        """The start of the latest local clock hour whose windows are all in the store."""
        settled = now_ms - self.settle_ms
        return hour_of(settled, self.zone) - HOUR_MS  # the hour holding `settled` still fills

    async def month_peak_kw(
        self, subject: str, terms: Mapping[str, float], interval_min: int, now_ms: int
    ) -> float | None:
        """The highest ended interval of the local month so far (kW), every five minutes."""
        month = month_of(now_ms, self.zone)
        month_start = month_bounds(month, month, self.zone)[0]
        key = (subject, interval_min)
        asked = self._peaks.get(key)
        if asked is None or now_ms - asked[0] >= PEAK_EVERY_MS:

            def ask() -> float | None:
                bounds = [month_start, hour_of(now_ms, self.zone) + HOUR_MS]
                peaks = self.source.scope_peaks(bounds, dict(terms), interval_min, len(terms))
                if not peaks:
                    return None
                return peaks[0].energy_wh / 1000 * 60 / interval_min

            self._peaks[key] = (now_ms, await self._call(ask))
        return self._peaks[key][1]

    async def earlier_peak_kw(
        self, subject: str, terms: Mapping[str, float], interval_min: int, months: int, now_ms: int
    ) -> float | None:
        """The highest interval (kW) of the `months` local months before this one, what a
        demand charge's ratchet looks back to; asked once a day."""
        day = local_date(now_ms, self.zone)
        key = (subject, interval_min, months, day.toordinal())
        if key not in self._earlier:

            def ask() -> float | None:
                month = month_of(now_ms, self.zone)
                earlier = previous_months(month, months)  # the nearest first
                if not earlier:
                    return None
                # the starts of those months, and of this one (where the last of them ends)
                bounds = month_bounds(earlier[-1], earlier[0], self.zone)
                peaks = self.source.scope_peaks(bounds, dict(terms), interval_min, len(terms))
                highest = max((p.energy_wh for p in peaks), default=None)
                return None if highest is None else highest / 1000 * 60 / interval_min

            found = await self._call(ask)
            self._earlier = {k: v for k, v in self._earlier.items() if k[:3] != key[:3]}
            self._earlier[key] = found
        return self._earlier[key]
