"""Reading the Firestore window sink: each window document about once, then answers from memory.

Cost model. Firestore bills every document a query returns (the free tier
allows 50,000 reads a day), and the original API streamed every document in
range on every request. This source instead reads the whole collection once,
keeps the hourly (with each quarter hour's energy) and local-daily rollups (and
the windows of the last `KEEP_DAYS` days) in a `WindowIndex`, and then, at most
once per `cache_s` seconds, asks only for the documents whose `updated_at` moved
past the largest one it has seen. Reads per day are therefore bounded by the sink's writes per
day, whatever the number of viewers or refreshes.

The cursor. A flush of the bridge writes all its documents with the same
`updated_at` (its wall clock), in transactions of at most 250 documents, so a
refresh may land between two transactions of one flush. Until the newest
`updated_at` has *settled* (the server's read time is `SETTLE_S` past it),
per meter, each refresh first counts the documents at the cursor (an
aggregation: one billed read, no document) and re-reads them (`>=`,
deduplicated by id, updated_at and content) only if that count grew; per
window, where one flush may write the same document twice with the same
`updated_at`, it re-reads the flush's few documents. Once settled it asks for
`> cursor` only, so a refresh without new writes reads no document at all.
Known limit: a write whose `updated_at` is older than the cursor (bridges with
skewed clocks writing concurrently) is not seen until the index is rebuilt (a
restart).

A rewritten window (a late reading) replaces its previous contribution: the
index remembers the (energy, covered time, readings) of every window it keeps;
a rewrite of a window older than those, which it cannot subtract, makes the
source rebuild the index from a full reload instead of double-counting.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from campus_energy.backends.base import Bucket, Grain, MeterLatest, ScopeHour, ScopePeak, Total
from campus_energy.backends.firestore.client import close_client, guarded, open_client, retry_policy
from campus_energy.config import FirestoreSinkConfig
from campus_energy.core.timestamps import datetime_ms
from campus_energy.core.window_index import KEEP_DAYS, WindowEntry, WindowIndex, micros
from campus_energy.errors import SourceError

log = logging.getLogger("campus_energy.api")

T = TypeVar("T")
SETTLE_S = 60.0  # after this, no transaction of a flush is still to commit at the cursor
PRUNE_EVERY = 10_000  # documents, during a full load
RPC_TIMEOUT_S = 60.0  # one attempt of one query (a full load streams for a while)
RETRY_DEADLINE_S = 5.0  # every attempt of one query: an outage is reported in seconds


# --- documents ---------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _entry(meter_id: str, start_ms: int, fields: Mapping[str, Any]) -> WindowEntry:
    accumulator = fields.get("accumulator") or {}
    return WindowEntry(
        meter_id=sys.intern(meter_id),  # one string per meter, however many rows name it
        building=sys.intern(str(fields.get("building") or "")),
        floor=sys.intern(str(fields.get("floor") or "")),
        window_start_ms=start_ms,
        energy_wh=float(fields["total_energy_wh"]),
        covered_s=float(accumulator.get("covered_s") or 0.0),
        readings=int(fields.get("readings_in_batch") or 0),
        avg_power_w=_float(fields.get("avg_power_w")),
        coverage=float(fields.get("coverage") or 0.0),
        site=sys.intern(str(fields.get("site") or "")),
        # from the accumulator, as `stored_window` reads them (a window written before they
        # existed has none: 0)
        export_wh=float(accumulator.get("export_wh") or 0.0),
        estimated_wh=float(accumulator.get("estimated_wh") or 0.0),
        estimated_export_wh=float(accumulator.get("estimated_export_wh") or 0.0),
    )


def entries_of(layout: str, data: Mapping[str, Any]) -> list[WindowEntry]:
    """The meters' windows a document holds; KeyError, TypeError or ValueError if malformed."""
    start = datetime_ms(data["window_start"])
    if layout == "per-window":
        return [_entry(str(m), start, fields) for m, fields in sorted(data["meters"].items())]
    return [_entry(str(data["meter_id"]), start, data)]


# --- the source ----------------------------------------------------------------------------------


def _retry() -> Any:
    return retry_policy(RETRY_DEADLINE_S, maximum_s=1.0)


class FirestoreSource:
    name = "firestore"

    def __init__(
        self,
        config: FirestoreSinkConfig,
        zone: ZoneInfo,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.zone = zone
        self.cache_s = cache_s
        self.clock = clock
        self.documents_read = 0  # every document a query returned (each is a billed read)
        self.queries = 0  # queries sent, aggregations included
        self.reloads = 0  # full reads after the first
        self.last_error: str | None = None  # set while serving a stale index
        self._lock = threading.Lock()
        self._client: Any = None
        self._index: WindowIndex | None = None
        self._checked_at: float | None = None
        self._settled = False

    @property
    def lag_s(self) -> float:
        """Answers come from an index refreshed at most once per `cache_s`."""
        return self.cache_s

    # -- Firestore

    def _db(self) -> Any:
        if self._client is None:
            self._client = open_client(self.config)
        return self._client

    def _guarded(self, fn: Callable[[], T]) -> T:
        return guarded(fn, error=SourceError, collection=self.config.collection, reset=self._reset)

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            close_client(client)

    def _snapshots(self, query: Any) -> Iterator[Any]:
        self.queries += 1
        stream = query.stream(retry=_retry(), timeout=RPC_TIMEOUT_S)
        try:
            for snap in stream:
                self.documents_read += 1
                yield snap
        finally:
            stream.close()

    def _entries(self, snap: Any, data: Mapping[str, Any]) -> list[WindowEntry]:
        try:
            return entries_of(self.config.layout, data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning(
                "firestore %s: document %s skipped (not a window: %s)",
                self.config.collection,
                snap.id,
                exc,
            )
            return []

    def _settle(self, index: WindowIndex, read_time: datetime | None) -> None:
        cursor = index.cursor
        if cursor is None or read_time is None:
            return
        self._settled = (read_time - cursor).total_seconds() >= SETTLE_S

    def _full_load(self) -> WindowIndex:
        index = WindowIndex(self.zone)
        read_time = None
        for n, snap in enumerate(self._snapshots(self._db().collection(self.config.collection))):
            data = snap.to_dict() or {}
            updated_at = data.get("updated_at")
            if not isinstance(updated_at, datetime):
                updated_at = None  # an older deployment's document: never rewritten
            index.load(snap.id, updated_at, self._entries(snap, data))
            read_time = snap.read_time
            if n % PRUNE_EVERY == PRUNE_EVERY - 1:
                index.prune()
        index.prune()
        self._settled = False
        self._settle(index, read_time)
        return index

    def _catch_up(self, index: WindowIndex) -> WindowIndex:
        from google.cloud.firestore_v1.base_query import FieldFilter

        collection = self._db().collection(self.config.collection)
        cursor = index.cursor
        if cursor is None:  # nothing with an updated_at yet
            query = collection.order_by("updated_at")
        else:
            op = ">"
            if not self._settled and self.config.layout == "per-window":
                op = ">="  # a flush may write a window's document twice: re-read the few
            elif not self._settled:
                self.queries += 1
                counted = (
                    collection.where(filter=FieldFilter("updated_at", "==", cursor))
                    .count(alias="n")
                    .get(retry=_retry(), timeout=RPC_TIMEOUT_S)
                )
                result = counted[0][0]
                if int(result.value) != len(index.boundary):
                    op = ">="  # another transaction of the last flush committed: re-read
                else:
                    self._settle(index, result.read_time)
            query = collection.where(filter=FieldFilter("updated_at", op, cursor)).order_by(
                "updated_at"
            )
        read_time = None
        for snap in self._snapshots(query):
            data = snap.to_dict() or {}
            updated_at = data.get("updated_at")
            if not isinstance(updated_at, datetime):
                continue
            first = snap.create_time is not None and snap.create_time == snap.update_time
            outcome = index.update(snap.id, updated_at, self._entries(snap, data), first)
            if outcome == "rebuild":
                log.info(
                    "firestore %s: %s rewrites a window older than the %d days kept: reloading",
                    self.config.collection,
                    snap.id,
                    KEEP_DAYS,
                )
                self.reloads += 1
                return self._full_load()
            read_time = snap.read_time
        index.prune()
        self._settle(index, read_time)
        return index

    def _fresh(self) -> WindowIndex:
        """The index, refreshed if cache_s has passed since the last attempt (hold the lock)."""
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.cache_s:
            self._checked_at = now
            try:
                index = self._index
                if index is None:
                    self._index = self._guarded(self._full_load)
                else:
                    self._index = self._guarded(lambda: self._catch_up(index))
                self.last_error = None
            except SourceError as exc:
                self.last_error = str(exc)
                if self._index is None:
                    raise
                log.warning("%s (serving the last data read)", exc)
        if self._index is None:
            raise SourceError(
                self.last_error or f"firestore {self.config.collection}: not read yet"
            )
        return self._index

    # -- WindowSource

    def version(self) -> str:
        with self._lock:
            index = self._fresh()
            cursor = micros(index.cursor)
            return f"{self.reloads}.{cursor}.{index.documents}"

    def meters(self) -> list[MeterLatest]:
        with self._lock:
            return self._fresh().meters()

    def total(self, first_day: str, last_day: str, meters: Collection[str] | None) -> Total:
        with self._lock:
            return self._fresh().total(first_day, last_day, meters)

    def buckets(
        self, grain: Grain, start: int | str, end: int | str, meters: Collection[str] | None
    ) -> list[Bucket]:
        with self._lock:
            return self._fresh().buckets(grain, start, end, meters)

    def scope_hours(
        self, start_ms: int, end_ms: int, terms: Mapping[str, float]
    ) -> list[ScopeHour]:
        with self._lock:
            return self._fresh().scope_hours(start_ms, end_ms, terms)

    def scope_peaks(
        self,
        bounds: Sequence[int],
        terms: Mapping[str, float],
        interval_min: int,
        min_members: int,
    ) -> list[ScopePeak]:
        with self._lock:
            return self._fresh().scope_peaks(bounds, terms, interval_min, min_members)

    def close(self) -> None:
        with self._lock:
            self._reset()
