"""`/metrics` of the logger and the bridge, scraped over HTTP while they run on real services."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.campus import METERS, bridged_campus, campus
from tests.support.metrics import Scrape, scrape
from tests.support.net import free_port
from tests.support.readback import count, query
from tests.support.services import serving
from tests.support.sinks import docs_of, sqlite_sink
from tests.support.waiting import eventually

from campus_energy.bridge.service import Bridge
from campus_energy.config import Config
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator

LOGGER = "campus_energy_logger_"
BRIDGE = "campus_energy_bridge_"


def with_logger_metrics(config: Config, port: int) -> Config:
    logger = config.logger.model_copy(update={"metrics_port": port})
    return config.model_copy(update={"logger": logger})


def spool_depth(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM contributions").fetchone()[0])
    finally:
        conn.close()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


@pytest.mark.slow
async def test_logger_metrics_count_polls_failures_and_the_outbox(
    tmp_path: Path, mosquitto: Any
) -> None:
    faults = {
        "lib-f1": {"simulate": {"timeout_rate": 1.0}},
        "admin-old": {"simulate": {"exception_rate": 1.0}},
    }
    config, sim_config = campus(tmp_path, mosquitto.port, **faults)
    port = free_port()
    config = with_logger_metrics(config, port)
    db = config.storage.path
    async with Simulator(sim_config):
        logger = MeterLogger(config)
        async with serving(logger, "ready"):
            await eventually(lambda: count(db, "lib-main") >= 6, timeout=30)

            async def polls_match_the_store() -> Scrape | None:
                s = await scrape(port)
                ok = s.value(LOGGER + "polls_total", meter="lib-main", outcome="ok")
                stored = s.value(LOGGER + "readings_stored_total")
                return s if ok == count(db, "lib-main") == stored else None

            s = await eventually(polls_match_the_store)
            ok = s.value(LOGGER + "polls_total", meter="lib-main", outcome="ok")
            assert ok is not None and ok >= 6
            assert s.value(LOGGER + "polls_total", meter="lib-main", outcome="failed") == 0
            # the failing meters: every poll failed, each with its own kind
            for meter, kind in (("lib-f1", "timeout"), ("admin-old", "exception")):
                failed = s.value(LOGGER + "polls_total", meter=meter, outcome="failed")
                assert failed is not None and failed >= 3
                assert s.value(LOGGER + "polls_total", meter=meter, outcome="ok") == 0
                # counted together (a poll may end between reading the two counters)
                kinds = s.total(LOGGER + "poll_failures_total", meter=meter)
                assert failed <= kinds <= failed + 1
                assert s.value(LOGGER + "poll_failures_total", meter=meter, kind=kind) == kinds
                assert s.value(LOGGER + "meter_online", meter=meter) == 0
                assert s.value(LOGGER + "last_reading_timestamp_seconds", meter=meter) is None
            assert s.labels(LOGGER + "poll_failures_total", "kind") == {
                "timeout",
                "frame",
                "exception",
                "connection",
            }
            assert s.value(LOGGER + "meter_online", meter="lib-main") == 1
            newest = query(db, "SELECT max(ts_ms) FROM readings WHERE meter_id = 'lib-main'")[0][0]
            last = s.value(LOGGER + "last_reading_timestamp_seconds", meter="lib-main")
            assert last is not None and newest / 1000 - 5 <= last <= newest / 1000
            # a duration for each successful poll (observed just before the poll is counted)
            timed = s.value(LOGGER + "poll_duration_seconds_count", bus="plant")
            assert timed is not None and ok <= timed <= ok + 3
            assert s.value(LOGGER + "poll_duration_seconds_bucket", bus="plant", le="+Inf") == timed
            cycles = s.value(LOGGER + "slot_lateness_seconds_count", bus="plant")
            late = s.value(LOGGER + "slot_lateness_seconds_sum", bus="plant")
            assert cycles is not None and late is not None and cycles >= ok
            assert late / cycles < 0.25, "cycles start shortly after their grid slot"
            assert s.value(LOGGER + "readings_rejected_total", meter="lib-main", reason="nan") == 0
            assert s.value(LOGGER + "broker_connected") == 1

            # the broker goes away: readings pile up in the outbox, then drain when it is back
            mosquitto.stop()

            async def outbox_filled() -> bool:
                s = await scrape(port)
                return (
                    s.value(LOGGER + "broker_connected") == 0
                    and s.total(LOGGER + "outbox_depth") >= 6
                )

            await eventually(outbox_filled, timeout=30)
            mosquitto.start()

            async def outbox_drained() -> bool:
                s = await scrape(port)
                return s.value(LOGGER + "broker_connected") == 1 and (
                    s.value(LOGGER + "outbox_depth", meter="lib-main") == 0
                )

            await eventually(outbox_drained, timeout=40)
            s = await scrape(port)
            published = s.value(LOGGER + "readings_published_total")
            assert published is not None and published >= count(db) - 3
        assert await refused(port), "the endpoint closes with the logger"


MALFORMED = {b"not json": "not-json", b"[1, 2]": "not-object", b"{oops": "not-json"}


@pytest.mark.slow
async def test_bridge_metrics_match_the_spool_the_sink_and_the_dead_letters(
    tmp_path: Path, mosquitto: Any
) -> None:
    port = free_port()
    settings = sqlite_sink(tmp_path)
    config = bridged_campus(tmp_path, mosquitto.port, settings, metrics_port=port)
    bridge = Bridge(config)
    async with Simulator(config), serving(bridge, "subscribed"):
        async with (
            serving(MeterLogger(config)),
            aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="vandal") as vandal,
        ):
            for payload in MALFORMED:
                await vandal.publish("campus/energy/lib-f1/reading", payload, qos=1)
            await eventually(lambda: bridge.counters.window_writes >= len(METERS), timeout=30)

            async def spool_matches() -> bool:
                s = await scrape(port)
                depth = s.value(BRIDGE + "spool_depth")
                return (
                    depth is not None and depth > 0 and depth == spool_depth(tmp_path / "spool.db")
                )

            await eventually(spool_matches)
        await eventually(lambda: bridge.counters.readings >= count(config.storage.path))

        async def all_written() -> Scrape | None:
            s = await scrape(port)
            return s if s.value(BRIDGE + "spool_depth") == 0 else None

        s = await eventually(all_written, timeout=20)
        docs = docs_of(config)
        written = s.value(BRIDGE + "windows_written_total")
        assert written == bridge.counters.window_writes
        assert written is not None and len(docs) <= written
        assert sum(d.readings_in_batch for d in docs) == count(config.storage.path)
        accepted = s.value(BRIDGE + "readings_accepted_total")
        assert accepted == bridge.counters.readings
        assert accepted is not None and accepted >= count(config.storage.path)
        assert s.value(BRIDGE + "messages_received_total") == accepted + len(MALFORMED)
        assert s.value(BRIDGE + "duplicates_total") == bridge.counters.duplicates
        for metric in ("dead_letters_total", "dead_letters_stored"):
            assert s.value(BRIDGE + metric, kind="not-json") == 2
            assert s.value(BRIDGE + metric, kind="not-object") == 1
            assert s.total(BRIDGE + metric) == len(MALFORMED)
        assert s.value(BRIDGE + "message_lag_seconds_count") == accepted
        lag = s.value(BRIDGE + "message_lag_seconds_sum")
        assert lag is not None and lag / accepted < 5
        merges = s.value(BRIDGE + "sink_write_duration_seconds_count", sink="sqlite")
        assert merges is not None and merges >= 1
        assert s.value(BRIDGE + "sink_errors_total", sink="sqlite") == 0
        assert s.value(BRIDGE + "broker_connected") == 1
        assert s.value(BRIDGE + "sink_up") == 1
    assert await refused(port), "the endpoint closes with the bridge"


async def test_a_busy_metrics_port_is_logged_once_and_the_services_run_on(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        settings = sqlite_sink(tmp_path)
        config = with_logger_metrics(
            bridged_campus(tmp_path, mosquitto.port, settings, metrics_port=busy), busy
        )
        bridge = Bridge(config)
        with caplog.at_level(logging.ERROR, logger="campus_energy.exporter"):
            async with (
                Simulator(config),
                serving(bridge, "subscribed"),
                serving(MeterLogger(config)),
            ):
                await eventually(lambda: bridge.counters.window_writes >= 1, timeout=30)
    assert count(config.storage.path) > 0
    errors = [r.getMessage() for r in caplog.records if r.name == "campus_energy.exporter"]
    assert len(errors) == 2, errors
    assert all(f"127.0.0.1:{busy}" in e and "without /metrics" in e for e in errors)
