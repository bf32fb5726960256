"""The legacy API's Firestore reads per request: every document in its range, on every request.

A cost model, not a client: for each dashboard request, the documents (one per
meter and window) and the queries the original API would have read.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from campus_energy.api.queries import Period
from campus_energy.core.days import local_date, midnight_ms

DAY_MS = 86_400_000


def request_reads(
    path: str, starts: Sequence[int], now: int, meters: int, zone: ZoneInfo
) -> tuple[int, int]:
    """(documents, queries) of one request; `starts`: the sorted window starts written so far.

    summary = month/week start → now, series 5m = the last 24 h, series 1d = 30 days,
    each streamed per request; health and meters: each meter's latest document.
    """

    def count(lo: int, hi: int) -> int:
        return (bisect.bisect_left(starts, hi) - bisect.bisect_left(starts, lo)) * meters

    if path in ("/api/health", "/api/meters"):
        return meters, meters  # generous: each meter's latest document by a limit-1 query
    if path == "/api/summary":
        period = Period.at(now, zone)
        return count(midnight_ms(min(period.week_start, period.month_start), zone), now), 1
    if path.endswith("step=5m"):
        return count(now - DAY_MS, now), 1
    first = local_date(now - 30 * DAY_MS, zone)
    return count(
        midnight_ms(first, zone), midnight_ms(local_date(now, zone) + timedelta(1), zone)
    ), 1
