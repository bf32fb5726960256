"""The Firestore window sink (google-cloud-firestore).

Two layouts:
- `per-meter` (default): collection `readings_5min_avg`, one document per meter
  per window, id `<meter_id>_<YYYYmmddTHHMMSSZ>` — the original deployment's
  shape. 288 writes a day per meter: the free tier's 20,000 writes a day are
  exceeded at 70 meters.
- `per-window`: one document per window, id `<YYYYmmddTHHMMSSZ>`, with a map
  `meters` holding each meter's fields — 288 writes a day for any campus, at
  the price of one larger document (about 1 KB per meter; the 1 MiB document
  limit allows several hundred meters) and of readers fetching every meter.
Merges run in transactions (read the accumulators, write the documents), at
most 250 documents each, so concurrent bridges retry rather than overwrite.
Replacing documents (`campus-energy reconcile --apply`) writes them with a
fresh `updated_at`, so the API's index takes each in place of the old one.
Deleting windows (reconcile's orphans) deletes per-meter documents, and takes
the meter out of a per-window document (the document goes with its last
meter). A running API notices deleted windows only when it rebuilds its
index (a restart): a deleted document leaves no `updated_at` to follow.
Credentials: `credentials_file` (a service account key), else Application
Default Credentials; none when `FIRESTORE_EMULATOR_HOST` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from campus_energy.backends.base import stored_window
from campus_energy.backends.firestore.client import (
    close_client,
    guarded,
    open_client,
    retry_policy,
)
from campus_energy.config import FirestoreSinkConfig
from campus_energy.core.timestamps import datetime_ms, utc_datetime
from campus_energy.core.windows import (
    Accumulator,
    WindowDelta,
    WindowDoc,
    document_id,
    window_document,
    window_stamp,
)
from campus_energy.errors import SinkError

log = logging.getLogger("campus_energy.sinks")
T = TypeVar("T")


class _InWindow(Protocol):
    @property
    def window_start_ms(self) -> int: ...

    @property
    def site(self) -> str: ...


_W = TypeVar("_W", bound=_InWindow)
PER_TRANSACTION = 250
RPC_TIMEOUT_S = 10.0  # one attempt of one call
RPC_DEADLINE_S = 20.0  # all attempts of one call, retries included


class FirestoreSink:
    name = "firestore"

    def __init__(
        self,
        config: FirestoreSinkConfig,
        window_s: int,
        *,
        default_site: str = "",
        sites: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.window_s = window_s
        self.default_site = default_site  # its per-window documents keep their plain ids
        self.sites = dict(sites or {})  # meter -> site: which per-window document holds it
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="firestore")
        self._client: Any = None

    def _db(self) -> Any:
        if self._client is None:
            client = open_client(self.config)
            _bound_transaction_calls(client)
            self._client = client
        return self._client

    async def _run(self, fn: Callable[[], T]) -> T:
        call = functools.partial(
            guarded,
            fn,
            error=SinkError,
            collection=self.config.collection,
            reset=self._reset,
            also=(ValueError,),
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def merge(self, deltas: Sequence[WindowDelta], now_ms: int) -> int:
        write = (
            self._merge_per_window if self.config.layout == "per-window" else self._merge_per_meter
        )
        written = 0
        for chunk in transactions(deltas, self.config.layout, self.default_site):
            written += await self._run(functools.partial(write, chunk, now_ms))
        return written

    def _merge_per_meter(self, deltas: list[WindowDelta], now_ms: int) -> int:
        from google.cloud import firestore

        db = self._db()
        collection = db.collection(self.config.collection)
        refs = [collection.document(d.document_id) for d in deltas]

        @firestore.transactional
        def merge(transaction: Any) -> None:
            held = {
                snap.id: snap.to_dict()
                for snap in db.get_all(
                    refs, transaction=transaction, retry=_retry(), timeout=RPC_TIMEOUT_S
                )
                if snap.exists
            }
            for ref, delta in zip(refs, deltas, strict=True):
                existing = Accumulator.from_dict((held.get(ref.id) or {}).get("accumulator"))
                doc = window_document(delta, existing, now_ms)
                transaction.set(ref, {**doc.fields(), "accumulator": doc.accumulator.to_dict()})

        merge(db.transaction())
        return len(deltas)

    def _merge_per_window(self, deltas: list[WindowDelta], now_ms: int) -> int:
        def update(held: dict[str, Any], group: list[WindowDelta]) -> dict[str, Any]:
            meters = dict(held.get("meters") or {})
            for delta in group:
                entry = meters.get(delta.meter_id) or {}
                doc = window_document(
                    delta, Accumulator.from_dict(entry.get("accumulator")), now_ms
                )
                meters[delta.meter_id] = _meter_entry(doc)
            return _window_fields(window_document(group[0], None, now_ms), meters)

        return self._update_windows(deltas, update)

    def _update_windows(
        self,
        items: Sequence[_W],
        update: Callable[[dict[str, Any], list[_W]], dict[str, Any] | None],
    ) -> int:
        """Per-window layout: in one transaction, read each window's document, let `update`
        make its new fields from the held ones (for the items of that window; None: delete
        it) and write it back."""
        from google.cloud import firestore

        db = self._db()
        collection = db.collection(self.config.collection)
        by_window: dict[tuple[str, int], list[_W]] = {}
        for item in items:
            key = (site_key(item.site, self.default_site), item.window_start_ms)
            by_window.setdefault(key, []).append(item)
        refs = {key: collection.document(window_document_id(*key)) for key in by_window}

        @firestore.transactional
        def write(transaction: Any) -> None:
            held = {
                snap.id: snap.to_dict()
                for snap in db.get_all(
                    list(refs.values()),
                    transaction=transaction,
                    retry=_retry(),
                    timeout=RPC_TIMEOUT_S,
                )
                if snap.exists
            }
            for key, group in by_window.items():
                ref = refs[key]
                fields = update(held.get(ref.id) or {}, group)
                if fields is None:
                    transaction.delete(ref)
                else:
                    transaction.set(ref, fields)

        write(db.transaction())
        return len(by_window)

    async def windows(
        self, start_ms: int, end_ms: int, meters: Collection[str] | None
    ) -> list[WindowDoc]:
        return await self._run(functools.partial(self._read, start_ms, end_ms, meters))

    def _read(self, start_ms: int, end_ms: int, meters: Collection[str] | None) -> list[WindowDoc]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._db()
            .collection(self.config.collection)
            .where(filter=FieldFilter("window_start", ">=", utc_datetime(start_ms)))
            .where(filter=FieldFilter("window_start", "<", utc_datetime(end_ms)))
        )
        found: list[WindowDoc] = []
        for snap in query.stream(retry=_retry(), timeout=RPC_TIMEOUT_S):
            data = snap.to_dict() or {}
            try:
                docs = self._stored(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning(
                    "firestore %s: document %s skipped (not a window: %s)",
                    self.config.collection,
                    snap.id,
                    exc,
                )
                continue
            found.extend(d for d in docs if meters is None or d.meter_id in meters)
        found.sort(key=lambda d: (d.window_start_ms, d.meter_id))
        return found

    def _stored(self, data: dict[str, Any]) -> list[WindowDoc]:
        start, end = datetime_ms(data["window_start"]), datetime_ms(data["window_end"])
        if self.config.layout == "per-window":
            entries = [{**e, "meter_id": m} for m, e in data["meters"].items()]
        else:
            entries = [data]
        return [
            stored_window(e, start, end, datetime_ms(e["updated_at"]) if e.get("updated_at") else 0)
            for e in entries
        ]

    async def replace(self, docs: Sequence[WindowDoc], now_ms: int) -> int:
        write = (
            self._replace_per_window
            if self.config.layout == "per-window"
            else self._replace_per_meter
        )
        for i in range(0, len(docs), PER_TRANSACTION):
            chunk = [
                dataclasses.replace(d, updated_at_ms=now_ms) for d in docs[i : i + PER_TRANSACTION]
            ]
            await self._run(functools.partial(write, chunk))
        return len(docs)

    def _replace_per_meter(self, docs: list[WindowDoc]) -> None:
        from google.cloud import firestore

        db = self._db()
        collection = db.collection(self.config.collection)

        @firestore.transactional
        def write(transaction: Any) -> None:
            for doc in docs:
                transaction.set(
                    collection.document(doc.document_id),
                    {**doc.fields(), "accumulator": doc.accumulator.to_dict()},
                )

        write(db.transaction())

    def _replace_per_window(self, docs: list[WindowDoc]) -> None:
        def update(held: dict[str, Any], group: list[WindowDoc]) -> dict[str, Any]:
            meters = dict(held.get("meters") or {})
            for doc in group:
                meters[doc.meter_id] = _meter_entry(doc)
            return _window_fields(group[0], meters)

        self._update_windows(docs, update)

    async def delete(self, keys: Sequence[tuple[str, int]], now_ms: int) -> int:
        per_window = self.config.layout == "per-window"
        write = self._delete_per_window if per_window else self._delete_per_meter
        deleted = 0
        for i in range(0, len(keys), PER_TRANSACTION):
            chunk = [
                _Key(meter_id, start, self.sites.get(meter_id, ""))
                for meter_id, start in keys[i : i + PER_TRANSACTION]
            ]
            deleted += await self._run(functools.partial(write, chunk, now_ms))
        return deleted

    def _delete_per_meter(self, keys: list[_Key], now_ms: int) -> int:
        from google.cloud import firestore

        db = self._db()
        collection = db.collection(self.config.collection)
        refs = [collection.document(k.document_id) for k in keys]

        @firestore.transactional
        def delete(transaction: Any) -> int:
            held = db.get_all(refs, transaction=transaction, retry=_retry(), timeout=RPC_TIMEOUT_S)
            found = [snap.reference for snap in held if snap.exists]
            for ref in found:
                transaction.delete(ref)
            return len(found)

        return int(delete(db.transaction()))

    def _delete_per_window(self, keys: list[_Key], now_ms: int) -> int:
        held_by_key: dict[_Key, bool] = {}  # set, not counted: a retried transaction redoes it
        # A window is looked for in every site's document of its start: one written before
        # sites, or before its meter moved to another site, is in another than its meter's.
        sites = {site_key(s, self.default_site) for s in ("", *self.sites.values())}
        keys = [dataclasses.replace(k, site=s) for k in keys for s in sorted(sites)]

        def update(held: dict[str, Any], group: list[_Key]) -> dict[str, Any] | None:
            meters = dict(held.get("meters") or {})
            for key in group:
                held_by_key[key] = meters.pop(key.meter_id, None) is not None
            if not meters:
                return None
            return {
                **held,
                "total_energy_wh": sum(m["total_energy_wh"] for m in meters.values()),
                "meters": meters,
                "updated_at": utc_datetime(now_ms),
            }

        self._update_windows(keys, update)
        return len({(k.meter_id, k.window_start_ms) for k, held in held_by_key.items() if held})

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            close_client(client)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._reset)
        self._executor.shutdown(wait=True)


@dataclasses.dataclass(frozen=True)
class _Key:
    """A meter's window, to delete."""

    meter_id: str
    window_start_ms: int
    site: str = ""

    @property
    def document_id(self) -> str:
        return document_id(self.meter_id, self.window_start_ms)


def site_key(site: str, default_site: str) -> str:
    """The site part of a per-window document's id: '' for the default site (and for windows
    written before sites), so a single-site deployment's documents keep their ids."""
    return "" if site in ("", default_site) else site


def window_document_id(site: str, start_ms: int) -> str:
    """A per-window document's id: `<YYYYmmddTHHMMSSZ>`, or `<site>_<...>` for another site
    than the default one. One document per site and window: a site's meters, not the
    estate's, share a document (Firestore holds at most 1 MiB in one)."""
    stamp = window_stamp(start_ms)
    return f"{site}_{stamp}" if site else stamp


def _meter_entry(doc: WindowDoc) -> dict[str, Any]:
    """A meter's entry in a per-window document: its fields but the window's times."""
    fields = doc.fields()
    return {
        **{k: v for k, v in fields.items() if k not in ("window_start", "window_end", "timestamp")},
        "accumulator": doc.accumulator.to_dict(),
    }


def _window_fields(doc: WindowDoc, meters: dict[str, Any]) -> dict[str, Any]:
    """A per-window document: the window's times (those of `doc`) and every meter's entry."""
    fields = doc.fields()
    return {
        "window_start": fields["window_start"],
        "window_end": fields["window_end"],
        "timestamp": fields["timestamp"],
        "total_energy_wh": sum(m["total_energy_wh"] for m in meters.values()),
        "meters": meters,
        "updated_at": fields["updated_at"],
        "site": doc.site,
    }


def transactions(
    deltas: Sequence[WindowDelta], layout: str, default_site: str = ""
) -> list[list[WindowDelta]]:
    """The deltas cut into transactions of at most PER_TRANSACTION documents.

    Per window, every meter of a site's window goes into the same transaction, so each
    window's document is written once however many meters it holds.
    """
    if layout != "per-window":
        return [
            list(deltas[i : i + PER_TRANSACTION]) for i in range(0, len(deltas), PER_TRANSACTION)
        ]
    by_window: dict[tuple[int, str], list[WindowDelta]] = {}
    for d in deltas:
        by_window.setdefault((d.window_start_ms, site_key(d.site, default_site)), []).append(d)
    windows = [by_window[w] for w in sorted(by_window)]
    return [
        [d for group in windows[i : i + PER_TRANSACTION] for d in group]
        for i in range(0, len(windows), PER_TRANSACTION)
    ]


def _retry() -> Any:
    return retry_policy(RPC_DEADLINE_S, maximum_s=2.0)


def _bound_transaction_calls(client: Any) -> None:
    """Give BeginTransaction, Commit and Rollback a bounded retry and timeout.

    The transaction helpers of google-cloud-firestore call them with the library
    defaults (retries for up to a minute); a bridge must notice an outage sooner
    and must be able to stop in seconds.
    """
    api = client._firestore_api
    for name in ("begin_transaction", "commit", "rollback"):
        method = getattr(api, name)
        setattr(api, name, functools.partial(method, retry=_retry(), timeout=RPC_TIMEOUT_S))
