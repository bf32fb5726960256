"""The logger's low-write mode (`storage.commit_interval_s`): one commit per bus per interval.

It holds a bus's readings in memory until the oldest has waited the interval, so
it must still never publish a reading it could lose, commit everything it holds
when it stops, and continue sequences and totals exactly after kill -9.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import campus, two_meters
from tests.support.config import write_toml
from tests.support.mqtt import Collector
from tests.support.net import free_port
from tests.support.processes import campus_energy
from tests.support.readback import count, query
from tests.support.services import serving, spawn
from tests.support.waiting import eventually

from campus_energy.config import Config, load_config
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import iso_utc
from campus_energy.logger import service
from campus_energy.logger.service import MeterLogger
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore
from campus_energy.meters.polling import MeterPoller
from campus_energy.meters.simulator.server import Simulator

COMMIT_INTERVAL_S = 1.5


def with_commit_interval(config: Config, seconds: float) -> Config:
    storage = config.storage.model_copy(update={"commit_interval_s": seconds})
    return config.model_copy(update={"storage": storage})


@pytest.mark.slow
async def test_one_commit_per_interval_holds_several_cycles_and_stopping_commits_the_rest(
    tmp_path: Path, mosquitto: Any
) -> None:
    config, sim_config = campus(tmp_path, mosquitto.port)
    config = with_commit_interval(config, COMMIT_INTERVAL_S)
    db = config.storage.path
    logger = MeterLogger(config)
    commits: list[tuple[float, int]] = []  # (the logger's monotonic time, readings)
    commit = logger.store.commit_making_room

    async def counted(cycle: Cycle, share: float = 0.01) -> int:
        commits.append((logger.clock.mono(), len(cycle.readings)))
        return await commit(cycle, share)

    logger.store.commit_making_room = counted  # type: ignore[method-assign]
    async with Simulator(sim_config), Collector(mosquitto.port) as collector:
        async with serving(logger, "ready"):
            await eventually(lambda: len(commits) >= 3, timeout=30)
            # nothing is published before it is committed
            published = {(p["meter_id"], p["seq"]) for p in collector.readings()}
            stored = set(query(db, "SELECT meter_id, seq FROM readings"))
            assert published <= stored
        stored_after = query(db, "SELECT meter_id, seq FROM readings ORDER BY meter_id, seq")
    polled = len(config.meters) * 2  # a commit holds more than one cycle of every meter
    assert all(n > polled for _, n in commits[:2]), commits
    assert all(b[0] - a[0] >= COMMIT_INTERVAL_S for a, b in itertools.pairwise(commits[:-1]))
    # stopping committed what was held: every reading the logger took is stored
    assert len(stored_after) == sum(n for _, n in commits) == logger.counters.readings
    for meter in config.meters:
        seqs = [s for m, s in stored_after if m == meter.id]
        assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.slow
async def test_kill_9_loses_only_what_was_held_and_never_what_was_published(
    tmp_path: Path, mosquitto: Any
) -> None:
    data = two_meters(tmp_path, mosquitto.port, free_port())
    data["storage"]["commit_interval_s"] = COMMIT_INTERVAL_S
    config_file = write_toml(tmp_path / "c.toml", data)
    config = load_config(config_file, {})
    db = config.storage.path
    log = tmp_path / "logger.log"

    def start() -> subprocess.Popen[bytes]:
        return spawn(campus_energy("logger", "-c", config_file), log, with_stdout=False)

    async with Simulator(config), Collector(mosquitto.port) as collector:
        process = start()
        try:
            await eventually(lambda: count(db) >= 10, timeout=30)
            await eventually(lambda: len(collector.readings()) >= 10, timeout=30)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            published = {(p["meter_id"], p["seq"], p["ts"]) for p in collector.readings()}
            stored_at_kill = count(db)
            process = start()
            await eventually(lambda: count(db) >= stored_at_kill + 10, timeout=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        rows = query(
            db,
            "SELECT meter_id, seq, ts_ms, energy_wh, energy_total_wh FROM readings "
            "ORDER BY meter_id, seq",
        )
        # every reading published before the kill is stored, as it was published
        assert published <= {(m, s, iso_utc(t)) for m, s, t, _, _ in rows}
        for meter in config.meters:
            mine = [r for r in rows if r[0] == meter.id]
            assert [r[1] for r in mine] == list(range(1, len(mine) + 1))
            running = 0.0
            for *_, energy, total in mine:
                running += energy
                assert abs(total - running) < 1e-6
        expected = {(m, s) for m, s, *_ in rows}
        await eventually(
            lambda: {(p["meter_id"], p["seq"]) for p in collector.readings()} >= expected,
            timeout=15,
        )
    assert "Traceback" not in log.read_text()


def reading(meter_id: str, seq: int) -> Reading:
    values = {"power_w": 100.0, "voltage_v": 230.0}
    return Reading(meter_id, 1_780_000_000_000 + seq * 5000, seq, 138_889, 138_889 * seq, values)


async def test_the_outbox_cursor_is_written_with_the_next_commit_not_on_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = ReadingStore(path, cursor_with_commits=True)

    def written_cursor() -> list[tuple[str, int]]:
        return query(path, "SELECT meter_id, published_seq FROM meters ORDER BY meter_id")

    try:
        await store.register([MeterRecord("a"), MeterRecord("b")])
        await store.commit(Cycle(readings=[reading("a", 1), reading("b", 1), reading("a", 2)]))
        sent = await store.unpublished()
        assert [(r.meter_id, r.seq) for r in sent] == [("a", 1), ("b", 1), ("a", 2)]
        await store.mark_published(sent)
        # acknowledged: nothing is offered again, nothing counts as waiting, nothing written yet
        assert await store.unpublished() == []
        assert await store.outbox_depth() == {"a": 0, "b": 0}
        assert written_cursor() == [("a", 0), ("b", 0)]
        await store.commit(Cycle(readings=[reading("b", 2)]))
        assert written_cursor() == [("a", 2), ("b", 1)]
        assert [(r.meter_id, r.seq) for r in await store.unpublished()] == [("b", 2)]
        await store.mark_published(await store.unpublished())
        assert written_cursor() == [("a", 2), ("b", 1)]
    finally:
        await store.close()
    assert written_cursor() == [("a", 2), ("b", 2)]  # closing writes what was held


async def test_without_the_low_write_mode_an_acknowledgement_is_written_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord("a")])
        await store.commit(Cycle(readings=[reading("a", 1)]))
        await store.mark_published(await store.unpublished())
        assert query(path, "SELECT published_seq FROM meters") == [(1,)]
    finally:
        await store.close()


async def test_held_readings_are_committed_when_a_bus_fails_and_restarts(
    tmp_path: Path,
    mosquitto: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bus whose polling fails unexpectedly is started again after a pause: what the
    low-write mode held of it is committed then, not kept in memory until the logger stops
    (a power cut meanwhile would cost more than the interval promised)."""
    config, sim_config = campus(tmp_path, mosquitto.port)
    config = with_commit_interval(config, 3600)
    logger = MeterLogger(config)
    real_poll = MeterPoller.poll
    calls = 0

    async def poll(poller: MeterPoller) -> dict[str, float]:
        nonlocal calls
        if poller.meter.id == "admin-old":  # the last meter of the bus's cycle
            calls += 1
            if calls >= 4:
                raise RuntimeError("a decoder bug, from now on")
        return await real_poll(poller)

    monkeypatch.setattr(MeterPoller, "poll", poll)
    caplog.set_level(logging.INFO, logger="campus_energy")
    db = config.storage.path
    async with Simulator(sim_config), serving(logger, "ready"):
        await eventually(lambda: any("polling failed" in r.getMessage() for r in caplog.records))
        # three cycles were held; the failing fourth is forgotten, the three are committed
        await eventually(lambda: count(db) >= 3 * len(config.meters), timeout=10)
        assert logger.store_outage.down is False
    seqs = query(db, "SELECT meter_id, seq FROM readings ORDER BY meter_id, seq")
    for meter in config.meters:
        mine = [s for m, s in seqs if m == meter.id]
        assert mine == list(range(1, len(mine) + 1))


async def test_a_logger_failing_elsewhere_commits_what_its_buses_hold_before_closing(
    tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logger stops on a failure outside its buses (here its retention task): the bus
    loops are cancelled, and what the low-write mode held is committed before the logger
    ends (the bus loops' endings are awaited before the store closes)."""
    config, sim_config = campus(tmp_path, mosquitto.port)
    storage = config.storage.model_copy(update={"commit_interval_s": 3600, "retention_days": 30})
    config = config.model_copy(update={"storage": storage})
    logger = MeterLogger(config)
    real_retention = logger.store.apply_retention
    calls = 0

    async def retention(cutoff_ms: int, chunk: int = 10_000) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("a retention bug")
        return await real_retention(cutoff_ms, chunk)

    monkeypatch.setattr(logger.store, "apply_retention", retention)
    monkeypatch.setattr(service, "RETENTION_EVERY_S", 1.0)
    stop = asyncio.Event()
    async with Simulator(sim_config):
        with pytest.raises(RuntimeError, match="a retention bug"):
            await asyncio.wait_for(logger.run(stop), timeout=30)
    held = logger.counters.polls - logger.counters.failed_polls
    assert held >= len(config.meters)  # two seconds of cycles were held
    assert count(config.storage.path) == held
