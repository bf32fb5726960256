"""The Firestore gRPC emulator (npm @firestore-emulator/server), without pytest.

The tests and the benchmarks start it the same way:

    with running_emulator() as host, emulator_environment(host):
        ...  # google-cloud-firestore clients now talk to the emulator

A missing emulator raises `EmulatorUnavailable`, which the tests turn into a skip
(a failure under CI) in `tests.support.stores`; one that does not start raises
`EmulatorFailed`, which fails a test wherever it runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import SHARED_PROCESSES
from tests.support.net import free_port

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "firestore_emulator"
HOST_VARIABLE = "FIRESTORE_EMULATOR_HOST"


class EmulatorError(RuntimeError):
    """The emulator cannot be used."""


class EmulatorUnavailable(EmulatorError):
    """The emulator is not installed here (node, `make install`)."""


class EmulatorFailed(EmulatorError):
    """The emulator is installed but did not start."""


@contextlib.contextmanager
def running_emulator(shared: bool = False, start_timeout: float = 30.0) -> Iterator[str]:
    """The emulator on a free port, stopped on exit: yields 'host:port'.

    `shared`: the process outlives single tests (a module's fixture), so the leak check lets it be.
    """
    node = shutil.which("node")
    if node is None:
        raise EmulatorUnavailable("the Firestore emulator needs node, which is not installed")
    if not (EMULATOR_DIR / "node_modules" / "@firestore-emulator").is_dir():
        raise EmulatorUnavailable(
            f"the Firestore emulator is not installed in {EMULATOR_DIR} (`make install`)"
        )
    port = free_port()
    process = subprocess.Popen(
        [node, str(EMULATOR_DIR / "serve.js"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=EMULATOR_DIR,
    )
    if shared:
        SHARED_PROCESSES.add(process.pid)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], start_timeout)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready"):
            raise EmulatorFailed(f"the Firestore emulator did not start: {line.strip()!r}")
        yield f"127.0.0.1:{port}"
    finally:
        SHARED_PROCESSES.discard(process.pid)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def emulator_environment(host: str) -> Iterator[None]:
    """FIRESTORE_EMULATOR_HOST set to `host` inside the block, as it was after it."""
    previous = os.environ.get(HOST_VARIABLE)
    os.environ[HOST_VARIABLE] = host
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HOST_VARIABLE, None)
        else:
            os.environ[HOST_VARIABLE] = previous
