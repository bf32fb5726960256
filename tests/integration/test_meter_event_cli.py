"""`campus-energy meter-event add|list` on a real logger store: what it writes and prints (the
site's local time in tables, UTC and Wh in JSON), what it refuses, and a logger's store open
beside it."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.config import meter_at, tcp_bus, write_toml
from tests.support.processes import run_cli

from campus_energy.cli import main
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore

DETECTED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_toml(
        tmp_path / "campus-energy.toml",
        {
            "site": {"name": "Example Campus", "timezone": "Asia/Kolkata"},
            "storage": {"path": "var/store.db"},
            "buses": [tcp_bus(port=5020)],
            "meters": [
                meter_at("lab", "plant", 1, "eastron-sdm120"),
                meter_at("hall", "plant", 2, "eastron-sdm630"),
            ],
        },
    )


def store_path(config: Path) -> Path:
    return config.parent / "var" / "store.db"


async def logger_store(path: Path) -> None:
    """The store as a logger leaves it: a reading of each meter, and an event it detected."""
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord("lab"), MeterRecord("hall")])
        event = MeterEvent(
            "lab",
            DETECTED_MS,
            "reset",
            "detected",
            before_wh=98_765_400.0,
            after_wh=12.5,
            note="import_energy_wh went from 98765400.0 Wh to 12.5 Wh in 5 s",
            recorded_ms=DETECTED_MS + 10,
        )
        readings = [Reading(m, DETECTED_MS, 1, 0, 0, {"power_w": 1.0}) for m in ("lab", "hall")]
        await store.commit(Cycle(readings=readings, events=[event]))
    finally:
        await store.close()


@pytest.fixture
def stored(config: Path) -> Path:
    asyncio.run(logger_store(store_path(config)))
    return config


def events(config: Path) -> list[tuple[object, ...]]:
    async def read() -> list[tuple[object, ...]]:
        store = ReadingStore(store_path(config))
        try:
            return await store.query(
                "SELECT meter_id, ts_ms, kind, source, register, old_final_wh, new_start_wh, note "
                "FROM meter_events ORDER BY id"
            )
        finally:
            await store.close()

    return asyncio.run(read())


def cli(config: Path, *words: str) -> int:
    return main(["meter-event", *words, "-c", str(config)])


def test_add_records_a_confirmed_event_in_the_sites_local_time(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(
        stored, "add", "lab", "--kind", "replaced", "--at", "2026-01-01T05:40",  # IST: 00:10Z
        "--old-final-kwh", "98765.4", "--new-start-kwh", "0.012", "--note", "serial 4711",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == "2"
    assert "meter event 2: lab import_energy_wh replaced at 2026-01-01 05:40:00 IST" in err
    assert "old final 98765.400 kWh, new start 0.012 kWh" in err
    assert events(stored)[1] == (
        "lab",
        DETECTED_MS + 600_000,
        "replaced",
        "confirmed",
        "import_energy_wh",
        98_765_400.0,
        12.0,
        "serial 4711",
    )
    # with an offset, of the export register, with nothing known of the counts
    assert cli(stored, "add", "hall", "--kind", "jump", "--at", "2026-01-02T00:00:00Z",
               "--register", "export") == 0  # fmt: skip
    assert events(stored)[2][:7] == (
        "hall", DETECTED_MS + 86_400_000, "jump", "confirmed", "export_energy_wh", None, None,
    )  # fmt: skip


def test_list_shows_detected_and_confirmed_events_as_a_table_or_json(
    stored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(stored, "add", "lab", "--kind", "reset", "--at", "2026-01-01T00:00:05Z",
               "--new-start-kwh", "0") == 0  # fmt: skip
    capsys.readouterr()
    assert cli(stored, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["ID", "AT", "METER", "KIND", "SOURCE"]
    assert len(lines) == 3
    assert "2026-01-01 05:30:00 IST  lab" in lines[1] and "detected" in lines[1]
    assert "98765.400" in lines[1] and "0.013" in lines[1]  # before and after, in kWh
    assert "confirmed" in lines[2] and "0.000" in lines[2]

    assert cli(stored, "list", "lab", "--json") == 0
    found = json.loads(capsys.readouterr().out)
    assert [(e["source"], e["at"]) for e in found] == [
        ("detected", "2026-01-01T00:00:00.000Z"),
        ("confirmed", "2026-01-01T00:00:05.000Z"),
    ]
    assert found[0]["before_wh"] == 98_765_400.0 and found[1]["new_start_wh"] == 0.0
    assert found[0]["recorded"] == "2026-01-01T00:00:00.010Z"

    assert cli(stored, "list", "hall") == 0
    assert capsys.readouterr().out.strip() == "No meter events."
    assert cli(stored, "list", "--since", "2026-01-01T00:00:01Z", "--json") == 0
    assert [e["source"] for e in json.loads(capsys.readouterr().out)] == ["confirmed"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["nowhere", "--kind", "reset", "--at", "2026-01-01T00:00Z"], "METER: no meter 'nowhere'"),
        (["lab", "--kind", "reset", "--at", "yesterday"], "--at: not an ISO 8601 time"),
        (["lab", "--kind", "reset", "--at", "2099-01-01T00:00Z"], "--at: 2099-01-01T00:00Z is in"),
        (
            ["lab", "--kind", "reset", "--at", "2026-01-01T00:00Z", "--old-final-kwh", "lots"],
            "--old-final-kwh: not a number of kWh",
        ),
        (
            ["lab", "--kind", "reset", "--at", "2026-01-01T00:00Z", "--new-start-kwh", "-1"],
            "--new-start-kwh: must be a finite count of kWh of at least 0",
        ),
    ],
)
def test_add_refuses_bad_usage_with_exit_2_naming_the_option(
    stored: Path, capsys: pytest.CaptureFixture[str], words: list[str], message: str
) -> None:
    assert cli(stored, "add", *words) == 2
    assert message in capsys.readouterr().err
    assert len(events(stored)) == 1  # only the detected one


def test_a_time_the_clocks_skip_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_toml(
        tmp_path / "c.toml",
        {
            "site": {"timezone": "Europe/London"},
            "storage": {"path": "var/store.db"},
            "buses": [tcp_bus(port=5020)],
            "meters": [meter_at("lab", "plant", 1, "eastron-sdm120")],
        },
    )
    asyncio.run(logger_store(store_path(config)))
    assert cli(config, "add", "lab", "--kind", "reset", "--at", "2026-03-29T01:30") == 2
    assert "--at: 2026-03-29T01:30 does not exist in Europe/London" in capsys.readouterr().err


def test_without_a_store_add_fails_and_list_finds_nothing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(config, "add", "lab", "--kind", "reset", "--at", "2026-01-01T00:00Z") == 1
    assert "does not exist: the logger (`campus-energy logger`) creates it" in (
        capsys.readouterr().err
    )
    assert not store_path(config).exists()
    assert cli(config, "list") == 0
    assert capsys.readouterr().out.strip() == "No meter events."


async def test_add_writes_beside_a_logger_that_has_the_store_open(config: Path) -> None:
    """The logger keeps its store open and commits; the command is a second writer."""
    path = store_path(config)
    store = ReadingStore(path, cursor_with_commits=True)
    try:
        await store.register([MeterRecord("lab"), MeterRecord("hall")])
        await store.commit(Cycle(readings=[Reading("lab", DETECTED_MS, 1, 0, 0, {})]))
        at = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
        done = await asyncio.to_thread(
            run_cli, "meter-event", "add", "lab", "--kind", "replaced", "--at", at,
            "--new-start-kwh", "3", "-c", str(config),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        await store.commit(Cycle(readings=[Reading("lab", DETECTED_MS + 1_000, 2, 0, 0, {})]))
        (event,) = await store.meter_events("lab")
        assert (event.id, event.source, event.new_start_wh) == (int(done.stdout), "confirmed", 3e3)
        assert len(await store.query("SELECT * FROM readings")) == 2
    finally:
        await store.close()


def test_each_action_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("add", "list"):
        with pytest.raises(SystemExit) as done:
            main(["meter-event", action, "--help"])
        assert done.value.code == 0
        assert "usage: campus-energy meter-event " + action in capsys.readouterr().out
