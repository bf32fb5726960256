"""Damaged files are noticed: a store with garbage over one page, a store that is missing, and
SQLite files on a read-only mount.

The stores are written by the logger's own store code (two meters, 300 readings
each, some acknowledged by the broker), then one page in the middle of a table is
overwritten with garbage, as a failing SD card or a stray `dd` would. What must
hold: the logger refuses such a store before it appends a reading and names the
way to rebuild it, as the bridge does with its spool and SQLite window sink;
`fix-db` says the store is damaged instead of "no problems found" or a
traceback; the Streamlit dashboard shows a message, never a traceback; the
API's SQLite source and the dashboard read a WAL database on a read-only mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from flask import Flask
from streamlit.testing.v1 import AppTest
from tests.support.known_windows import NOW_MS, REPORTING, ZONE, FixtureWindow, deltas, windows
from tests.support.logger_store import METERS, write_config, write_store
from tests.support.net import free_port
from tests.support.processes import campus_energy, require_program, run_cli
from tests.support.services import spawn
from tests.support.waiting import eventually

from campus_energy.api import create_app
from campus_energy.backends.sqlite.sink import SqliteSink
from campus_energy.backends.sqlite.source import SqliteSource
from campus_energy.bridge.spool import DeadLetter, Spool
from campus_energy.config import load_config, parse_config
from campus_energy.dashboard import store_queries as q
from campus_energy.errors import SinkError, SourceError, SpoolError
from campus_energy.logger.store import ReadingStore
from campus_energy.meters.simulator.server import Simulator
from campus_energy.runtime.sqlite import ReadOnly

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
    return spawn(campus_energy("logger", "-c", config), log, with_stdout=False)


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


# --- the bridge's files ------------------------------------------------------------------------


async def test_the_bridge_refuses_a_damaged_spool_or_window_sink(tmp_path: Path) -> None:
    """A damaged spool or SQLite window sink is refused at open, unwritten, with the rebuild.

    Before: the bridge went on writing around the damaged page until a query met it."""
    sink_path, spool_path = tmp_path / "windows.db", tmp_path / "spool.db"
    sink = SqliteSink(sink_path, ZONE)
    try:
        await sink.merge(deltas(windows()), NOW_MS)
    finally:
        await sink.close()
    spool = Spool(spool_path)
    try:
        letters = [
            DeadLetter(NOW_MS + n, "campus/energy/x/reading", b"x" * 1000, "not-json", "not JSON")
            for n in range(400)
        ]
        await spool.record([], letters, NOW_MS)
    finally:
        await spool.close()

    async def write_window(sink: SqliteSink) -> object:
        return await sink.merge(deltas(windows()[:1]), NOW_MS)

    async def read_letters(spool: Spool) -> object:
        return await spool.dead_letter_counts()

    for path, table, reopened, error, touch in (
        (sink_path, "window_aggregates", SqliteSink(sink_path, ZONE), SinkError, write_window),
        (spool_path, "dead_letters", Spool(spool_path), SpoolError, read_letters),
    ):
        damage(path, table)
        before = digest(path)
        try:
            with pytest.raises(error) as refused:
                await touch(reopened)  # type: ignore[operator]
        finally:
            await reopened.close()
        assert f"{reopened.label} {path} is damaged (PRAGMA quick_check: " in str(refused.value)
        assert "nothing was written to it" in str(refused.value)
        assert digest(path) == before


# --- fix-db -------------------------------------------------------------------------------------


def fix_db(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("fix-db", *args)


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


# --- the Streamlit dashboard --------------------------------------------------------------------

APP = str(importlib.resources.files("campus_energy.dashboard").joinpath("app.py"))
AFTER_THE_LAST_READING = "2026-01-01T05:55:00+05:30"  # T0 + 25 min: every reading is this week's


@pytest.fixture
def dashboard(
    store_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], AppTest]]:
    """The dashboard on the store, run once per call, its clock just after the last reading."""
    config, _ = store_files
    monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(config))
    monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", AFTER_THE_LAST_READING)
    monkeypatch.setattr(sys, "argv", [APP])  # not pytest's: its -c names another file
    yield lambda: AppTest.from_file(APP, default_timeout=60).run()
    st.cache_data.clear()
    st.cache_resource.clear()


def test_the_dashboard_reads_the_store_before_it_is_damaged(
    dashboard: Callable[[], AppTest],
) -> None:
    """The baseline of the cases below: every tab draws, the Raw data tab lists readings."""
    at = dashboard()
    assert not at.exception and not at.error and not at.warning
    assert len(at.tabs) == 8 and len(at.tabs[6].dataframe) == 1  # Raw data; then Alerts


@pytest.mark.parametrize("table", ["meters", "samples"])
def test_the_dashboard_says_the_store_is_damaged_and_how_to_rebuild_it(
    table: str, store_files: tuple[Path, Path], dashboard: Callable[[], AppTest]
) -> None:
    """Before: a damaged `samples` page ended the page in an uncaught StoreUnavailable traceback;
    a damaged `meters` page was a warning to start the logger."""
    _, db = store_files
    damage(db, table)
    at = dashboard()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error, "no message"
    for error in at.error:
        assert re.match(r"the logger's store( \S+)? is damaged \(", error.value), error.value
        assert "the logger refuses a damaged store too" in error.value
    assert all(
        code.value.splitlines()[0] == f"sqlite3 {db} .recover | sqlite3 {db}.recovered"
        for code in at.code
    )
    assert len(at.code) == len(at.error)
    assert not at.warning


def test_the_dashboard_on_a_file_that_is_no_database(
    store_files: tuple[Path, Path], dashboard: Callable[[], AppTest]
) -> None:
    _, db = store_files
    with db.open("r+b") as file:
        file.write(random.Random(PAGE_SEED).randbytes(100))
    at = dashboard()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"the logger's store {db} is damaged (file is not a database): the logger refuses a "
        "damaged store too. Stop what uses it and keep a copy, then copy out what is readable "
        "with one of these (the second where sqlite3 has no .recover, as on Debian 12), check "
        "the copy with `PRAGMA quick_check` and put it in place — or restore a backup:"
    ]
    assert len(at.tabs) == 0


# --- a read-only mount --------------------------------------------------------------------------


@contextlib.contextmanager
def read_only_view(folder: Path, at: Path, *, writer: bool = False) -> Iterator[Path]:
    """`folder` seen read-only at `at`: a read-only bind mount, what a service sees of a
    read-only filesystem, a snapshot or `ReadOnlyPaths=`. Where mounting is not allowed a
    user other than root gets `folder` itself with its write permission taken away (what
    SQLite meets is the same: the -shm file cannot be created); root, whom permissions do
    not stop, gets a skip, and so does a test that also `writer`s through `folder`."""
    at.mkdir()
    mount = shutil.which("mount")
    bound = mount is not None and (
        subprocess.run([mount, "--bind", str(folder), str(at)], capture_output=True).returncode == 0
    )
    if not bound:
        if os.geteuid() == 0:
            pytest.skip("cannot bind-mount here, and root ignores file permissions")
        if writer:
            pytest.skip("cannot bind-mount here: no writable path beside the read-only one")
        modes = {path: path.stat().st_mode for path in [folder, *folder.iterdir()]}
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    try:
        subprocess.run([str(mount), "-o", "remount,bind,ro", str(at)], check=True)
        yield at
    finally:
        busy = subprocess.run(["umount", str(at)], capture_output=True).returncode
        if busy:
            subprocess.run(["umount", "--lazy", str(at)], check=True)  # never leave one behind
        assert not busy, f"a file under {at} was left open"


def can_write(folder: Path) -> bool:
    try:
        (folder / "probe").touch()
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def write_windows(db: Path, items: list[FixtureWindow]) -> None:
    async def go() -> None:
        sink = SqliteSink(db, ZONE)
        try:
            await sink.merge(deltas(items), NOW_MS)
        finally:
            await sink.close()

    asyncio.run(go())


def api_on(db: Path) -> Flask:
    config = parse_config(
        {
            "site": {"timezone": "Asia/Kolkata"},
            "bridge": {"sink": "sqlite", "sqlite": {"path": str(db)}},
            "meters": [],
        }
    )
    return create_app(config, clock=lambda: NOW_MS / 1000)


def meters_of(app: Flask) -> tuple[int, list[str]]:
    response = app.test_client().get("/api/meters")
    body = response.get_json()
    ids = [m["meter_id"] for m in body["meters"]] if response.status_code == 200 else []
    return response.status_code, ids


def test_the_api_reads_a_wal_database_on_a_read_only_mount(tmp_path: Path) -> None:
    """Before: 503 for every request: mode=ro cannot open a WAL database whose -shm file is
    missing and cannot be created ("unable to open database file")."""
    folder = tmp_path / "state"
    folder.mkdir()
    write_windows(folder / "windows.db", windows())
    assert sorted(p.name for p in folder.iterdir()) == ["windows.db"]  # closed: no -wal, -shm
    with read_only_view(folder, tmp_path / "ro") as ro:
        assert not can_write(ro)
        app = api_on(ro / "windows.db")
        try:
            assert meters_of(app) == (200, sorted(REPORTING))
            summary = app.test_client().get("/api/summary")
            assert summary.status_code == 200, summary.get_data(as_text=True)
        finally:
            app.extensions["campus_energy"].source.close()
    assert sorted(p.name for p in folder.iterdir()) == ["windows.db"]


def test_on_a_read_only_mount_a_writer_that_comes_is_seen(tmp_path: Path) -> None:
    """The file is read as immutable only while no connection has it open: a bridge that opens
    it later (through a writable path) is seen at the next request, its commits too."""
    folder = tmp_path / "state"
    folder.mkdir()
    first, later = windows()[:-3], windows()[-3:]
    write_windows(folder / "windows.db", first)
    with read_only_view(folder, tmp_path / "ro", writer=True) as ro:
        source = SqliteSource(ro / "windows.db")
        try:
            before = source.version()
            assert len(source.meters()) == len(REPORTING)

            async def write_while_reading() -> str:
                sink = SqliteSink(folder / "windows.db", ZONE)
                try:
                    await sink.merge(deltas(later), NOW_MS)
                    assert Path(f"{folder / 'windows.db'}-shm").exists()
                    return source.version()  # read while the bridge has the file open
                finally:
                    await sink.close()

            during = asyncio.run(write_while_reading())
            after = source.version()  # the bridge has closed the file again
        finally:
            source.close()
    assert before != during == after


def test_a_wal_holding_commits_on_a_read_only_mount_is_refused_not_read_stale(
    tmp_path: Path,
) -> None:
    """A copy taken while a writer had commits in its -wal, without the -shm: `immutable` would
    read the database without those commits, so the file is refused with the way out."""
    live, folder = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    folder.mkdir()
    writer = sqlite3.connect(live / "windows.db")
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE window_aggregates (meter_id TEXT)")
        writer.execute("INSERT INTO window_aggregates VALUES ('ece-1')")
        writer.commit()
        for name in ("windows.db", "windows.db-wal"):
            shutil.copy(live / name, folder / name)
    finally:
        writer.close()
    with read_only_view(folder, tmp_path / "ro") as ro:
        db = ro / "windows.db"
        with pytest.raises(sqlite3.OperationalError) as refused:
            ReadOnly(db).connection()
        source = SqliteSource(db)
        try:
            with pytest.raises(SourceError):
                source.meters()
        finally:
            source.close()
    assert str(refused.value) == (
        f"unable to open {db} read-only: its folder cannot be written and its -wal file holds "
        "commits not in the database yet; open it once where its folder is writable, or read "
        f"a copy made there with sqlite3 {db} '.backup COPY'"
    )


def test_the_dashboard_reads_the_store_on_a_read_only_mount(
    store_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "the logger's store … cannot be read: unable to open database file"."""
    _, db = store_files
    with read_only_view(db.parent, tmp_path / "ro") as ro:
        assert not can_write(ro)
        store = q.open_store(ro / db.name)
        try:
            assert [m.meter_id for m in q.meters(q.connection(store))] == sorted(METERS)
            assert store.immutable
        finally:
            store.close()
        config = tmp_path / "dashboard.toml"
        config.write_text(f'[storage]\npath = "{ro / db.name}"\n', encoding="utf-8")
        monkeypatch.setenv("CAMPUS_ENERGY_CONFIG", str(config))
        monkeypatch.setenv("CAMPUS_ENERGY_DASHBOARD_NOW", AFTER_THE_LAST_READING)
        monkeypatch.setattr(sys, "argv", [APP])
        try:
            at = AppTest.from_file(APP, default_timeout=60).run()
            assert not at.exception and not at.error and not at.warning
            assert len(at.tabs) == 8 and len(at.tabs[6].dataframe) == 1  # Raw data; then Alerts
        finally:
            st.cache_data.clear()
            st.cache_resource.clear()  # closes the dashboard's connection
