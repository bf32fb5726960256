"""Fixtures and hooks every test shares: the leak check, browsers, brokers, stores, a serial cable.

The helpers themselves live in `tests/support/`, grouped by what they are.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support import CHROMIUM_ARGS, SHARED_PROCESSES
from tests.support.emulator import emulator_environment
from tests.support.mqtt import running_mosquitto
from tests.support.processes import require_program
from tests.support.serial import SocatPair
from tests.support.sinks import SinkFor, sink_settings
from tests.support.stores import emulator_or_skip, postgres_schema
from tests.support.waiting import within


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """No test may leave a thread, a child process or a listening port behind."""
    threads_before = set(threading.enumerate())
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}

    def listening() -> set[tuple[str, int]]:
        return {
            (c.laddr.ip, c.laddr.port)
            for c in me.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }

    ports_before = listening()
    yield

    def leftover_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]

    def alive(process: psutil.Process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:  # gone, or a zombie already
            return False

    def shared() -> set[int]:
        """Shared processes and those older than the test, and what they start of their own
        meanwhile (a module's browser starts helper processes when it needs them)."""
        found = set(SHARED_PROCESSES)
        for pid in SHARED_PROCESSES | children_before:
            with contextlib.suppress(psutil.Error):
                found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        return found

    def leftover_children() -> list[psutil.Process]:
        kept = shared()
        return [
            p
            for p in me.children(recursive=True)
            if p.pid not in children_before and p.pid not in kept and alive(p)
        ]

    within(lambda: not (leftover_threads() or leftover_children()), timeout=5)
    threads, children = leftover_threads(), leftover_children()
    for child in children:
        child.kill()
    assert not threads, f"test left threads running: {threads}"
    assert not children, f"test left processes running: {[c.cmdline() for c in children]}"
    ports = listening() - ports_before
    assert not ports, f"test left ports listening: {sorted(ports)}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Playwright) for a module's tests; skipped locally without chromium."""
    chromium = require_program("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def socat_pair(tmp_path: Path) -> Iterator[SocatPair]:
    pair = SocatPair(tmp_path)
    pair.plug()
    try:
        yield pair
    finally:
        pair.unplug()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    """A private Mosquitto on a free port, with persistence in tmp_path."""
    with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def postgres_dsn() -> Iterator[tuple[str, str]]:
    """(DSN, schema): a throw-away schema on the local PostgreSQL for one test."""
    with postgres_schema() as found:
        yield found


@pytest.fixture
def firestore_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh emulator for one test, with FIRESTORE_EMULATOR_HOST pointing at it."""
    with emulator_or_skip() as host:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        yield host


@pytest.fixture(scope="module")
def shared_firestore_emulator() -> Iterator[str]:
    """One emulator for a module's tests, with FIRESTORE_EMULATOR_HOST pointing at it.

    For tests that do not stop it or depend on an empty one: each writes its own project.
    """
    with emulator_or_skip(shared=True) as host, emulator_environment(host):
        yield host


@pytest.fixture
def sink_for(tmp_path: Path) -> Iterator[SinkFor]:
    """`sink_for(kind, **options)`: the bridge settings of a fresh sink of `kind` for this test.

    See `tests.support.sinks.sink_settings`; what it starts is stopped after the test.
    """
    with contextlib.ExitStack() as stack:
        yield lambda kind, **options: stack.enter_context(sink_settings(kind, tmp_path, **options))


@pytest.fixture
def fresh_streamlit_caches() -> Iterator[None]:
    """Streamlit's caches emptied after the test (the dashboard's AppTest runs share them)."""
    yield
    import streamlit as st

    st.cache_data.clear()  # logs "No runtime found": harmless outside `streamlit run`
    st.cache_resource.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long cases (`@pytest.mark.long`) run only in `make faults` (CAMPUS_ENERGY_FAULTS=long),
    so that `make test` stays within its time."""
    if os.environ.get("CAMPUS_ENERGY_FAULTS", "").lower() == "long":
        return
    skip = pytest.mark.skip(reason="a long case: `make faults` runs it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
