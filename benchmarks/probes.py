"""What an estate run is measured by, from outside its processes.

- `Usage`: CPU seconds and resident memory of every process, by role, read from /proc
  (psutil) at each `sample()`; PostgreSQL's server processes serving the bridges are
  found by their connections' application name (`pg_stat_activity`).
- `scrape()`: a service's Prometheus `/metrics`, as samples; `total()` sums a metric over
  its labels, `quantile()` reads a histogram between two scrapes.
- `SysTopics`: Mosquitto's `$SYS/broker/...` values, as the broker last published them.
- The books: each logger's store per meter (energy, readings, readings not yet delivered),
  the window store per meter (energy, readings, rows, when each row was written), what
  the bridges' spools still hold.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from prometheus_client.parser import text_string_to_metric_families

from estate import APPLICATION, POSTGRES_DSN

# -- CPU and memory ------------------------------------------------------------------------------


class Backends:
    """The PostgreSQL server processes serving the bridges' connections (found by their
    application name in `pg_stat_activity`), asked over one connection of its own."""

    def __init__(self) -> None:
        import psycopg

        self.conn = psycopg.connect(POSTGRES_DSN, connect_timeout=5, autocommit=True)

    def pids(self) -> dict[int, str]:
        """pid -> "database"."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        ).fetchall()
        return {int(pid): "database" for (pid,) in rows}

    def close(self) -> None:
        self.conn.close()


@dataclass
class Usage:
    """CPU seconds and RSS of processes by pid, as last read; a process that ended keeps them."""

    roles: dict[int, str] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    rss: dict[int, int] = field(default_factory=dict)  # latest
    peak_rss: dict[int, int] = field(default_factory=dict)  # since `mark_peak()`
    _handles: dict[int, psutil.Process] = field(default_factory=dict)

    def sample(self, pids: Mapping[int, str]) -> None:
        for pid, role in pids.items():
            handle = self._handles.get(pid)
            try:
                if handle is None:
                    handle = self._handles[pid] = psutil.Process(pid)
                with handle.oneshot():
                    times = handle.cpu_times()
                    rss = handle.memory_info().rss
            except psutil.Error:
                continue
            self.roles[pid] = role
            self.cpu_s[pid] = times.user + times.system
            self.rss[pid] = rss
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss)

    def snapshot(self) -> dict[int, float]:
        return dict(self.cpu_s)

    def mark_peak(self) -> None:
        """Peaks from now on (the start-up's own is not the steady state's)."""
        self.peak_rss = dict(self.rss)

    def cpu_between(
        self, before: Mapping[int, float], after: Mapping[int, float]
    ) -> dict[str, float]:
        """CPU seconds by role between two snapshots (a process new since `before`: all of it)."""
        found: dict[str, float] = defaultdict(float)
        for pid, cpu in after.items():
            found[self.roles[pid]] += cpu - before.get(pid, 0.0)
        return dict(found)

    def processes(self, role: str) -> list[int]:
        return [pid for pid, r in self.roles.items() if r == role]


# -- Prometheus ----------------------------------------------------------------------------------


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def scrape(port: int, timeout_s: float = 10.0) -> list[Sample] | None:
    """The samples at http://127.0.0.1:<port>/metrics (None: it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
            text = r.read().decode("utf-8")
    except OSError:
        return None
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[Sample] | None, name: str, **labels: str) -> float:
    """The sum of metric `name` over the series matching `labels` (nan: not scraped)."""
    if samples is None:
        return math.nan
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def buckets(samples: Iterable[Sample] | None, name: str) -> dict[float, float]:
    """A histogram's cumulative counts by upper bound, summed over its other labels."""
    found: dict[float, float] = defaultdict(float)
    for s in samples or ():
        if s.name == f"{name}_bucket":
            found[float(s.labels["le"])] += s.value
    return dict(found)


def quantile(before: Mapping[float, float], after: Mapping[float, float], q: float) -> float:
    """The q-quantile (0..1) of what a histogram observed between two scrapes, interpolated
    linearly within its bucket (the bucket's upper bound when it is the last, open one)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


# -- Mosquitto's $SYS ----------------------------------------------------------------------------


class SysTopics:
    """The latest `$SYS/broker/#` values of a broker, kept by a paho client's own thread."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.values: dict[str, str] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scale-sys")
        self.client.on_connect = lambda c, *_: c.subscribe("$SYS/broker/#", qos=0)
        self.client.on_message = self._keep
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _keep(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.values[message.topic.removeprefix("$SYS/broker/")] = message.payload.decode()

    def number(self, key: str) -> float:
        with self._lock:
            text = self.values.get(key)
        try:
            return float(text) if text is not None else math.nan
        except ValueError:
            return math.nan

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the books -----------------------------------------------------------------------------------


@dataclass
class Held:
    """A meter's energy and readings as one side of the books holds them."""

    energy_wh: float = 0.0
    readings: int = 0
    rows: int = 0  # windows (or spooled contributions)


@dataclass
class Logged:
    """What the loggers' stores hold: per meter all readings and those delivered to the broker;
    every reading's (meter, ts_ms)."""

    stored: dict[str, Held] = field(default_factory=dict)
    delivered: dict[str, Held] = field(default_factory=dict)
    stamps: list[tuple[str, int]] = field(default_factory=list)

    @property
    def readings(self) -> int:
        return sum(h.readings for h in self.stored.values())

    @property
    def undelivered(self) -> int:
        return self.readings - sum(h.readings for h in self.delivered.values())


def logger_books(stores: Iterable[Path]) -> Logged:
    found = Logged()
    for path in stores:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            for meter_id, energy, count, delivered_wh, delivered in conn.execute(
                "SELECT r.meter_id, sum(r.energy_wh), count(*), "
                "total(CASE WHEN r.seq <= m.published_seq THEN r.energy_wh END), "
                "total(r.seq <= m.published_seq) "
                "FROM readings r JOIN meters m ON m.meter_id = r.meter_id GROUP BY r.meter_id"
            ):
                found.stored[meter_id] = Held(energy or 0.0, count)
                found.delivered[meter_id] = Held(delivered_wh, int(delivered))
            found.stamps += conn.execute("SELECT meter_id, ts_ms FROM readings").fetchall()
    return found


def spool_books(spools: Iterable[Path]) -> dict[str, Held]:
    """Per meter what the bridges' spools still hold (not yet written to the store)."""
    books: dict[str, Held] = defaultdict(Held)
    for path in spools:
        if not path.exists():
            continue
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            for meter_id, energy, readings, rows in conn.execute(
                "SELECT meter_id, sum(energy_wh), sum(in_window), count(*) FROM contributions "
                "GROUP BY meter_id"
            ):
                held = books[meter_id]
                held.energy_wh += energy or 0.0
                held.readings += readings or 0
                held.rows += rows
    return dict(books)


@dataclass
class Window:
    """A window row (or a meter's entry of a per-window document) as the store holds it."""

    meter_id: str
    start_ms: int
    energy_wh: float
    readings: int
    updated_ms: int


def postgres_windows(schema: str) -> list[Window]:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT meter_id, (extract(epoch FROM window_start) * 1000)::bigint, "
            "total_energy_wh, readings_in_batch, "
            f"(extract(epoch FROM updated_at) * 1000)::bigint FROM {schema}.window_aggregates"
        ).fetchall()
    return [Window(m, int(s), float(e), int(n), int(u)) for m, s, e, n, u in rows]


def firestore_windows(host: str, project: str, collection: str) -> tuple[list[Window], int]:
    """Every meter's window in the emulator at `host`, whatever the layout (a document per meter
    and window, or a map `meters` in a document per window, or per site and window); and the
    documents read."""
    from google.cloud import firestore
    from tests.support.emulator import emulator_environment  # the repository's root: harness

    found: list[Window] = []
    documents = 0
    with emulator_environment(host):
        client = firestore.Client(project=project)
        try:
            for snap in client.collection(collection).stream():
                documents += 1
                data = snap.to_dict() or {}
                start = _ms(data["window_start"])
                entries = (
                    [{**e, "meter_id": m} for m, e in data["meters"].items()]
                    if isinstance(data.get("meters"), dict)
                    else [data]
                )
                found += [
                    Window(
                        e["meter_id"],
                        start,
                        float(e["total_energy_wh"]),
                        int(e["readings_in_batch"]),
                        _ms(e.get("updated_at") or data["updated_at"]),
                    )
                    for e in entries
                ]
        finally:
            client.close()
    return found, documents


def _ms(value: Any) -> int:
    return round(value.timestamp() * 1000)


@dataclass
class Books:
    """Σ windows (+ what the spools still hold) against Σ the loggers' stores, per meter."""

    meters: int = 0
    stored_readings: int = 0
    delivered_readings: int = 0
    window_readings: int = 0
    spooled_readings: int = 0
    stored_wh: float = 0.0
    delivered_wh: float = 0.0
    window_wh: float = 0.0
    spooled_wh: float = 0.0
    worst_meter_diff_wh: float = 0.0
    meters_off: int = 0  # meters whose energy or readings do not match
    duplicate_rows: int = 0
    undelivered: int = 0  # readings still in the loggers' outboxes (delivered at their next start)

    @property
    def balanced(self) -> bool:
        return self.meters > 0 and self.meters_off == 0 and self.duplicate_rows == 0


def balance(
    logged: Logged,
    windows: Iterable[Window],
    spooled: Mapping[str, Held],
    tolerance_wh: float = 1e-6,
) -> Books:
    """Per meter: the windows (and what a spool still holds) against the readings the loggers
    delivered to the broker; those still in a logger's outbox are counted apart."""
    held: dict[str, Held] = defaultdict(Held)
    seen: set[tuple[str, int]] = set()
    books = Books(undelivered=logged.undelivered)
    for w in windows:
        key = (w.meter_id, w.start_ms)
        if key in seen:
            books.duplicate_rows += 1
        seen.add(key)
        h = held[w.meter_id]
        h.energy_wh += w.energy_wh
        h.readings += w.readings
        h.rows += 1
    for meter_id in set(logged.stored) | set(held) | set(spooled):
        s = logged.delivered.get(meter_id, Held())
        w = held.get(meter_id, Held())
        p = spooled.get(meter_id, Held())
        diff = abs(w.energy_wh + p.energy_wh - s.energy_wh)
        books.meters += 1
        books.stored_readings += logged.stored.get(meter_id, Held()).readings
        books.delivered_readings += s.readings
        books.window_readings += w.readings
        books.spooled_readings += p.readings
        books.stored_wh += logged.stored.get(meter_id, Held()).energy_wh
        books.delivered_wh += s.energy_wh
        books.window_wh += w.energy_wh
        books.spooled_wh += p.energy_wh
        books.worst_meter_diff_wh = max(books.worst_meter_diff_wh, diff)
        if diff > tolerance_wh or w.readings + p.readings != s.readings:
            books.meters_off += 1
    return books


def reading_latencies(
    stamps: Iterable[tuple[str, int]],
    windows: Iterable[Window],
    window_ms: int,
    written_from_ms: int,
    written_by_ms: int,
) -> list[float]:
    """Seconds from each reading's ts to the (last) write of its window's row, for the windows
    whose row was last written within [written_from_ms, written_by_ms] (while the estate ran:
    not by the bridges' final flush at shutdown)."""
    written = {
        (w.meter_id, w.start_ms): w.updated_ms
        for w in windows
        if written_from_ms <= w.updated_ms <= written_by_ms
    }
    found = []
    for meter_id, ts_ms in stamps:
        updated = written.get((meter_id, ts_ms // window_ms * window_ms))
        if updated is not None:
            found.append((updated - ts_ms) / 1000)
    return found


class DocumentWrite(NamedTuple):
    at_ms: int
    kind: str  # set | delete
    path: str  # projects/<p>/databases/(default)/documents/<collection>/<id>
    size: int  # bytes of the write

    @property
    def document_id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def document_writes(log: Path) -> list[DocumentWrite]:
    """Every document write the counting emulator logged (`firestore_counting.js`)."""
    found = []
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else ():
        at, kind, path, size = line.split("\t")
        found.append(DocumentWrite(int(at), kind, path, int(size)))
    return found


def lost_updates(host: str, clients: int = 2, each: int = 50) -> tuple[int, int]:
    """`clients` clients at once each add 1 to one document's counter `each` times, each time
    in a transaction (read, then write the value read + 1), against the Firestore emulator at
    `host`: (increments committed, the counter's final value). A store that isolates
    transactions ends at the first; one that does not loses the difference."""
    from google.cloud import firestore
    from tests.support.emulator import emulator_environment  # the repository's root: harness

    def work() -> None:
        db = firestore.Client(project="isolation-probe")
        ref = db.collection("probe").document("counter")

        @firestore.transactional  # type: ignore[misc]
        def add(transaction: Any) -> None:
            snap = ref.get(transaction=transaction)
            held = (snap.to_dict() or {}).get("n", 0) if snap.exists else 0
            transaction.set(ref, {"n": held + 1})

        try:
            for _ in range(each):
                add(db.transaction())
        finally:
            db.close()

    with emulator_environment(host):
        threads = [threading.Thread(target=work) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        db = firestore.Client(project="isolation-probe")
        try:
            found = db.collection("probe").document("counter").get().to_dict() or {}
        finally:
            db.close()
    return clients * each, int(found.get("n", 0))
