"""The API's response cache: an answer is reused while the data and the period are the same.

An answer is kept under the data's version (from the source), the `cache_s` period
it was built in (answers such as "online" change with time alone), the path and the
known parameters (unknown ones cannot force a recomputation). At most
`CACHE_ENTRIES` answers are kept, the oldest dropped first; an answer larger than
`CACHE_BODY_MAX` is built afresh each time rather than kept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from campus_energy.api.metrics import Metrics

CACHE_ENTRIES = 256
CACHE_BODY_MAX = 256 * 1024  # larger answers are recomputed rather than kept


@dataclass(frozen=True)
class Answer:
    etag: str  # of the body
    body: bytes
    mimetype: str


class ResponseCache:
    """Answers by version, period, path and parameters; `cache_s` 0 keeps none."""

    def __init__(self, cache_s: float, clock: Callable[[], float], metrics: Metrics) -> None:
        self.cache_s = cache_s
        self.clock = clock
        self.metrics = metrics  # counts the answers served from here
        self._kept: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()  # Gunicorn's gthread workers share the cache

    def answer(
        self,
        version: Callable[[], str],
        path: str,
        parameters: Iterable[tuple[str, str]],
        build: Callable[[], tuple[bytes, str]],
    ) -> Answer:
        """The kept answer, or `build()`'s (body, mimetype), kept unless caching is off or
        the body is large. `version` is read only when caching is on."""
        key = ""
        if self.cache_s > 0:
            period = int(self.clock() // self.cache_s)
            key = f"{version()}|{period}|{path}|{urlencode(list(parameters))}"
            with self._lock:
                hit = self._kept.get(key)
            if hit is not None:
                self.metrics.cache_hits.inc()
                return hit
        body, mimetype = build()
        found = Answer(hashlib.sha1(body).hexdigest()[:20], body, mimetype)
        if key and len(body) <= CACHE_BODY_MAX:
            with self._lock:
                self._kept[key] = found
                while len(self._kept) > CACHE_ENTRIES:
                    self._kept.popitem(last=False)
        return found
