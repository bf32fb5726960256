"""The publisher on its own: a failing store, giving up at shutdown, the payload in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import make_config, meter_at
from tests.support.mqtt import Collector
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy.config import Config
from campus_energy.core.readings import Reading
from campus_energy.errors import StoreError
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore


def config_for(port: int, tmp_path: Path) -> Config:
    return make_config(
        [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        [meter_at("m1", "b", 1, "eastron-sdm120")],
        storage={"path": str(tmp_path / "store.db")},
        mqtt={"port": port},
        logger={"id": "pub-test"},
    )


def backlog(count: int) -> list[Reading]:
    return [
        Reading("m1", 1_764_230_400_000 + 5000 * i, i + 1, 1000, 1000 * (i + 1), {"power_w": 720.0})
        for i in range(count)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReadingStore]:
    s = ReadingStore(tmp_path / "store.db")
    await s.register([MeterRecord("m1")])
    try:
        yield s
    finally:
        await s.close()


async def test_store_failures_are_an_outage_not_the_end_of_publishing(
    tmp_path: Path, mosquitto: Any, store: ReadingStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.commit(Cycle(readings=backlog(50)))
    real = store.unpublished
    failures = [2]

    async def flaky(limit: int = 500) -> list[Reading]:
        if failures[0]:
            failures[0] -= 1
            raise StoreError("store test.db: disk I/O error")
        return await real(limit)

    store.unpublished = flaky  # type: ignore[method-assign]
    publisher = Publisher(config_for(mosquitto.port, tmp_path), store, StatusBoard())
    with caplog.at_level(logging.INFO, logger="campus_energy.publisher"):
        async with (
            Collector(mosquitto.port) as collector,
            serving(publisher, stop_timeout=10),
        ):
            await eventually(lambda: len(collector.readings()) >= 50, timeout=20)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["outbox: store test.db: disk I/O error"]
    assert any("outbox: recovered" in r.getMessage() for r in caplog.records)
    assert [p["seq"] for p in collector.readings()][:50] == list(range(1, 51))
    assert await store.outbox_depth() == {"m1": 0}


async def test_giving_up_at_shutdown_still_says_offline(
    tmp_path: Path, mosquitto: Any, store: ReadingStore
) -> None:
    await store.insert_many(backlog(30_000))
    publisher = Publisher(config_for(mosquitto.port, tmp_path), store, StatusBoard())
    task = asyncio.create_task(publisher.run(asyncio.Event()))
    await eventually(lambda: publisher.published > 0, timeout=20)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert sum((await store.outbox_depth()).values()) > 0  # really gave up mid-backlog
    async with Collector(mosquitto.port, "campus/energy/logger/#", "late") as late:
        await eventually(lambda: late.statuses("logger/pub-test/status"))
    assert late.statuses("logger/pub-test/status") == ["offline"]
