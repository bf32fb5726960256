"""Reading back what a run left: the logger's store (watched while it runs) and the sink."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.faults.books import Stored, Window
from tests.support.readback import query

from campus_energy.config import Config

# --- watching the store -------------------------------------------------------------------------


READINGS_SQL = (
    "SELECT meter_id, seq, ts_ms, power_w, energy_wh, energy_export_wh, "
    "coalesce(estimated_energy_wh, 0.0), coalesce(estimated_export_wh, 0.0), "
    "estimated_energy_wh IS NOT NULL OR estimated_export_wh IS NOT NULL FROM readings"
)


def stored_readings(db: Path, where: str = "", params: Sequence[Any] = ()) -> list[Stored]:
    return [
        Stored(*row[:8], estimated=bool(row[8]))
        for row in query(db, f"{READINGS_SQL} {where}", params)
    ]


class Ledger:
    """Every reading ever seen in the logger's store, watched from a thread as the run goes on."""

    def __init__(self, db: Path, every_s: float = 0.1) -> None:
        self.db = db
        self.every_s = every_s
        self.readings: dict[tuple[str, int], Stored] = {}
        self._newest: dict[str, int] = {}  # per meter, the newest ts_ms seen
        self._counts: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="faults-ledger")
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def look(self) -> None:
        """Add the readings committed since the last look (a meter's timestamps only grow)."""
        with self._lock:
            meters = [r[0] for r in query(self.db, "SELECT meter_id FROM meters")]
            for meter_id in meters:
                since = self._newest.get(meter_id, -1)
                for r in stored_readings(
                    self.db, "WHERE meter_id = ? AND ts_ms > ?", (meter_id, since)
                ):
                    self.readings[(r.meter_id, r.seq)] = r
                    self._newest[meter_id] = max(self._newest.get(meter_id, -1), r.ts_ms)
                    self._counts[meter_id] = self._counts.get(meter_id, 0) + 1

    def _watch(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                self.look()
            except sqlite3.Error:
                continue  # busy or being created: look again

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.look()

    def count(self, meter_id: str | None = None) -> int:
        with self._lock:
            if meter_id is None:
                return sum(self._counts.values())
            return self._counts.get(meter_id, 0)


# --- the sink, read back ------------------------------------------------------------------------


def _seqs(accumulator: Mapping[str, Any] | None) -> frozenset[int]:
    found: set[int] = set()
    for first, last in (accumulator or {}).get("seqs", []):
        found.update(range(int(first), int(last) + 1))
    return frozenset(found)


def _window(
    meter_id: str, start_ms: int, energy_wh: float, readings: int, accumulator: Any
) -> Window:
    """A window as the sink holds it; the directions and estimates from its accumulator."""
    acc = accumulator or {}
    return Window(
        meter_id,
        start_ms,
        energy_wh,
        readings,
        _seqs(acc),
        export_wh=float(acc.get("export_wh", 0.0)),
        estimated_wh=float(acc.get("estimated_wh", 0.0)),
        estimated_export_wh=float(acc.get("estimated_export_wh", 0.0)),
    )


def _ms(value: Any) -> int:
    return round(value.timestamp() * 1000)


def sink_windows(config: Config) -> list[Window]:
    """Every window in the sink, with the sequence numbers its accumulator holds."""
    bridge = config.bridge
    if bridge.sink == "sqlite":
        rows = query(
            bridge.sqlite.path,
            "SELECT meter_id, window_start_ms, total_energy_wh, readings_in_batch, accumulator "
            "FROM window_aggregates",
        )
        return [_window(m, s, e, n, json.loads(a)) for m, s, e, n, a in rows]
    if bridge.sink == "postgres":
        import psycopg

        assert bridge.postgres.dsn is not None
        with psycopg.connect(bridge.postgres.dsn, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = 'window_aggregates'",
                (bridge.postgres.schema_name,),
            ).fetchone()
            if not exists:
                return []
            rows = conn.execute(
                "SELECT meter_id, window_start, total_energy_wh, readings_in_batch, accumulator "
                f"FROM {bridge.postgres.schema_name}.window_aggregates"
            ).fetchall()
        return [_window(m, _ms(s), e, n, a) for m, s, e, n, a in rows]
    from google.cloud import firestore

    from campus_energy.backends.firestore.client import close_client

    client = firestore.Client(project=bridge.firestore.project)
    try:
        found = []
        for snap in client.collection(bridge.firestore.collection).stream():
            data = snap.to_dict()
            if bridge.firestore.layout == "per-window":
                start = _ms(data["window_start"])
                for meter_id, e in data["meters"].items():
                    found.append(
                        _window(
                            meter_id,
                            start,
                            e["total_energy_wh"],
                            e["readings_in_batch"],
                            e["accumulator"],
                        )
                    )
            else:
                found.append(
                    _window(
                        data["meter_id"],
                        _ms(data["window_start"]),
                        data["total_energy_wh"],
                        data["readings_in_batch"],
                        data["accumulator"],
                    )
                )
        return found
    finally:
        close_client(client)
