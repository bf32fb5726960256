"""A scenario made real: readings through the bridge's window code into a real sink, and the API.

The books (tests/figures/books.py) are computed from the same readings without
that code; the tests compare what the API answers with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from tests.figures.books import Books, Scenario, readings
from tests.support.config import campus_meters
from tests.support.sinks import merge, sink_settings

from campus_energy.api import create_app
from campus_energy.config import Config, parse_config
from campus_energy.core.timestamps import iso_utc
from campus_energy.core.windows import IncomingReading, contributions, group

BATCH = 5000  # windows per sink write, as a busy bridge would flush them


@dataclass(frozen=True)
class Campus:
    scenario: Scenario
    books: Books
    config: Config
    client: FlaskClient

    def get(self, url: str) -> Any:
        answer = self.client.get(url)
        assert answer.status_code == 200, (url, answer.get_json())
        return answer.get_json()


def config_of(
    s: Scenario, folder: Path, sink: dict[str, Any], extra: dict[str, Any] | None = None
) -> Config:
    """The scenario's configuration (`extra`: further sections, e.g. virtual_meters, or
    sections in place of the scenario's, e.g. meters of another site)."""
    return parse_config(
        {
            "site": {"name": f"Figures {s.name}", "timezone": s.zone},
            "bridge": {"window_s": s.window_s, "grace_s": 5, **sink},
            "api": {"cache_s": 0},
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": campus_meters(s.meters, interval_s=min(s.interval_s, 3600)),
            "storage": {"path": str(folder / "smart_meter.db")},
            **(extra or {}),
        }
    )


def write_windows(config: Config, s: Scenario, items: list[Any]) -> None:
    """The readings as the bridge turns them into windows, written through the real sink."""
    window_ms = s.window_s * 1000
    parts = [c for r in items for c in contributions(r, window_ms)]
    merge(config, group(parts, s.window_s, s.meters), s.now_ms, batch=BATCH)


@contextlib.contextmanager
def campus_of(
    s: Scenario,
    sink: str,
    folder: Path,
    extra: dict[str, Any] | None = None,
    change: Callable[[list[IncomingReading]], list[IncomingReading]] | None = None,
    collection: str = "w",
) -> Iterator[Campus]:
    """The scenario's readings (`change`d, for a twin) written through a real sink of `sink`'s
    kind (Firestore: into `collection` of the shared emulator), the app reading it, and the
    books of those readings."""
    items = readings(s)
    if change is not None:
        items = change(items)
    settings_of = sink_settings(
        sink, folder, project="demo-figures", collection=collection, shared=True
    )
    with settings_of as settings:
        config = config_of(s, folder, settings, extra)
        write_windows(config, s, items)
        app = create_app(config, clock=lambda: s.now_ms / 1000)
        try:
            yield Campus(s, Books(s, items), config, app.test_client())
        finally:
            app.extensions["campus_energy"].source.close()


def iso(ms: int) -> str:
    """An instant as the API writes it."""
    return iso_utc(ms).replace(".000Z", "Z")


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def days_of(s: Scenario) -> list[date]:
    """The scenario's local days, first to last."""
    first, last = s.local_day(s.start_ms), s.local_day(s.end_ms - 1)
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def close(a: float | None, b: float | None, *, abs_tol: float, rel_tol: float = 0.0) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(abs_tol, rel_tol * max(abs(a), abs(b)))


def require(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message)
