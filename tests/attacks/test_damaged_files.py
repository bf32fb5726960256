"""Damaged files are noticed: a store with garbage over one page, a store that is missing, and
SQLite files on a read-only mount.

The stores are written by the logger's own store code (two meters, 300 readings
each, some acknowledged by the broker), then one page in the middle of a table is
overwritten with garbage, as a failing SD card or a stray `dd` would. What must
hold: the logger refuses such a store before it appends a reading and names the
way to rebuild it; `fix-db` says the store is damaged instead of "no problems
found" or a traceback; the Streamlit dashboard shows a message, never a
traceback; the API's SQLite source and the dashboard read a WAL database on a
read-only mount.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from tests.conftest import eventually, free_port, require_program
from tests.integration.test_fixdb import CLI, METERS, write_config, write_store

from campus_energy.adapters.store import ReadingStore
from campus_energy.config import load_config
from campus_energy.simulator.server import Simulator

PAGE_SEED = 13


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(db: Path, table: str) -> int:
    """Overwrite the middle leaf page of `table` with garbage; the page's number."""
    assert not Path(f"{db}-wal").exists(), "the store must be checkpointed (closed) first"
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)  # leaves no -wal or -shm behind
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    finally:
        conn.close()
    page = pages[len(pages) // 2]
    with db.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(random.Random(PAGE_SEED).randbytes(size))
    return int(page)


def readings_in(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def quick_check(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()


def logger(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [str(CLI), "logger", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
        )


def stopped(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Wait for a process that should end by itself; kill it when it does not (a failure)."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the process did not stop by itself") from None


@pytest.fixture
def store_files(tmp_path: Path) -> tuple[Path, Path]:
    """(config, store): a real store written by the logger's store code, closed."""
    config = write_config(tmp_path, bus_port=free_port(), interval_s=0.5)
    db = load_config(config, {}).storage.path
    asyncio.run(write_store(db))
    return config, db


# --- the logger ---------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["gaps", "samples"])
async def test_the_logger_refuses_a_damaged_store_and_the_fix_it_names_works(
    table: str, store_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: the logger started on the damaged store and kept on polling and appending."""
    config_file, db = store_files
    damage(db, table)
    before = digest(db)
    config = load_config(config_file, {})
    log = tmp_path / "logger.log"
    async with Simulator(config):  # meters that answer: a logger that ran would append
        refused = logger(config_file, log)
        code = await asyncio.to_thread(stopped, refused)
        message = log.read_text()
        assert code == 1, message
        assert f"store {db} is damaged (PRAGMA quick_check: " in message
        assert "nothing was written to it" in message
        assert "Traceback" not in message
        assert digest(db) == before
        assert sorted(p.name for p in db.parent.iterdir()) == [db.name]

        # the rebuild the message names, where sqlite3 has no .recover (Debian's has none)
        require_program("sqlite3")
        found = re.search(r"\(Debian 12\): (sqlite3 .*? \| sqlite3 \S+) — check it", message)
        assert found, message
        subprocess.run(["bash", "-o", "pipefail", "-c", found.group(1)], check=True, timeout=60)
        rebuilt = Path(f"{db}.recovered")
        assert quick_check(rebuilt) == ["ok"]
        kept = readings_in(rebuilt)
        assert (table, kept) in (("gaps", 2 * 300), ("samples", kept)) and kept > 300
        rebuilt.replace(db)

        running = logger(config_file, log)
        try:
            await eventually(lambda: readings_in(db) >= kept + 2 * len(METERS), timeout=30)
        finally:
            running.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(stopped, running) == 0
    assert "Traceback" not in log.read_text()
    assert quick_check(db) == ["ok"]


async def test_an_integrity_check_out_of_time_is_said_and_the_store_opens(
    store_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The check at open is bounded: when its budget runs out the store opens with a warning."""

    class Hurried(ReadingStore):
        integrity_budget_s = 0.0

    _, db = store_files
    store = Hurried(db)
    try:
        assert await store.meter_ids() == sorted(METERS)
    finally:
        await store.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"store {db}: its integrity check (PRAGMA quick_check) did not finish within 0 s and was "
        "left there; run `campus-energy doctor` to check the whole file"
    ]


# --- fix-db -------------------------------------------------------------------------------------


def fix_db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "fix-db", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("table", ["gaps", "samples"])
@pytest.mark.parametrize("apply", [False, True], ids=["dry-run", "apply"])
def test_fix_db_says_the_store_is_damaged(
    table: str, apply: bool, store_files: tuple[Path, Path]
) -> None:
    """Before: with a page of `gaps` damaged fix-db said "no problems found" for every meter and
    exited 0; with one of `samples` it died with a sqlite3.DatabaseError traceback."""
    config, db = store_files
    damage(db, table)
    before = digest(db)
    result = fix_db("-c", str(config), *(["--apply"] if apply else []))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"campus-energy: store {db} is damaged (PRAGMA quick_check: ")
    assert "fix-db mends timestamps, not damaged pages, and changed nothing" in result.stderr
    assert f"sqlite3 {db} .recover | sqlite3 {db}.recovered" in result.stderr
    assert "no problems found" not in result.stdout
    assert "Traceback" not in result.stderr
    assert digest(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]  # no backup, no journal


def test_fix_db_on_a_file_that_is_no_database_names_the_rebuild(
    store_files: tuple[Path, Path],
) -> None:
    config, db = store_files
    with db.open("r+b") as file:
        file.write(random.Random(PAGE_SEED).randbytes(100))  # the header
    result = fix_db("-c", str(config))
    assert result.returncode == 1
    assert f"store {db} is damaged (file is not a database): stop what uses it" in result.stderr
    assert "Traceback" not in result.stderr
