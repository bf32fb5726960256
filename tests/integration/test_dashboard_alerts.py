"""The local dashboard's Alerts tab against a book of alerts written through `AlertBook.record`
(`tests.support.alert_book`), and its note when the alerts service keeps no book here."""

from __future__ import annotations

import asyncio
import importlib.resources
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest
from tests.support import alert_book as ab
from tests.support.config import write_toml

from campus_energy.core.readings import Reading
from campus_energy.logger.store import MeterRecord, ReadingStore

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")
APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
SITE = ZoneInfo(ab.ZONE)


def write_store(path: Path) -> None:
    """A few readings of each meter just before NOW: the dashboard draws its tabs."""

    async def go() -> None:
        store = ReadingStore(path)
        try:
            await store.register(MeterRecord(m, b, "1") for m, b in ab.METERS.items())
            await store.insert_many(
                Reading(
                    m, ab.NOW_MS - k * 5000, 10 - k, 5_000_000, 50_000_000 - k, {"power_w": 3600.0}
                )
                for m in ab.METERS
                for k in (3, 2, 1)
            )
        finally:
            await store.close()

    asyncio.run(go())


def local(ms: int | None) -> str:
    assert ms is not None
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(SITE).strftime("%Y-%m-%d %H:%M")


def tab(at: AppTest) -> Any:
    return next(t for t in at.tabs if t.label == "Alerts")


def test_the_alerts_tab_shows_the_book_and_says_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    write_store(store)
    data = ab.config_data(tmp_path)
    data["storage"] = {"path": str(store)}
    book = tmp_path / "alerts.db"
    ab.write_book(book)
    monkeypatch.setenv(
        "CAMPUS_ENERGY_CONFIG", str(write_toml(tmp_path / "campus-energy.toml", data))
    )
    now = datetime.fromtimestamp(ab.NOW_MS / 1000, SITE).isoformat()
    monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", now)
    monkeypatch.setattr(sys, "argv", [APP])

    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    shown = tab(at)
    metrics = {m.label: m.value for m in shown.metric}
    assert metrics == {"Firing": "2", "Pending": "1", "Silences in force": "0"}
    active = shown.dataframe[0].value
    assert list(active["alert"]) == [s.rule for s in ab.ACTIVE]
    assert list(active["subject"]) == [s.subject for s in ab.ACTIVE]
    assert list(active["state"]) == [s.phase for s in ab.ACTIVE]
    assert list(active["since"]) == [local(s.since_ms) for s in ab.ACTIVE]
    assert list(active["detail"]) == [s.detail for s in ab.ACTIVE]
    assert ab.SILENT_DETAIL in list(active["detail"])
    assert list(active["value"]) == [s.value for s in ab.ACTIVE]
    history = shown.dataframe[1].value  # the sidebar's default: the last 7 local days
    week = [e for e in reversed(ab.EVENTS) if e.at_ms >= ab.NOW_MS - 7 * ab.DAY]
    assert list(history["time"]) == [local(e.at_ms) for e in week]
    assert list(history["change"]) == [e.event for e in week]
    assert list(history["detail"]) == [e.detail for e in week]

    book.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{book}{extra}").unlink(missing_ok=True)
    at.run()
    assert not at.exception
    words = " ".join(m.value for m in tab(at).markdown)
    assert "keeps no book here" in words and str(book) in words
    assert not tab(at).dataframe
