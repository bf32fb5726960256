"""A service run for the length of a `with` block, then stopped and checked.

- `serving`: a service object (`MeterLogger`, `Bridge`, `Publisher`) whose
  `run(stop)` runs as a task on the test's event loop.
- `serving_process`: a program (usually `campus_energy(...)`) as a child process,
  its output in a log file; on leaving it is signalled and must exit 0 with no
  traceback in its log.
- `spawn`: the child process alone, for a test that kills and restarts it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support import SHARED_PROCESSES
from tests.support.waiting import wait_for


@contextlib.asynccontextmanager
async def serving(
    service: Any,
    ready: str | None = None,
    *,
    ready_timeout: float = 10,
    stop_timeout: float = 15,
) -> AsyncIterator[asyncio.Event]:
    """`service.run(stop)` as a task while the block runs; yields its stop event.

    `ready` names the service's asyncio.Event that says it is ready ("ready",
    "subscribed", "drained"): the block starts once it is set, and the service
    failing first fails the test. On leaving, the stop event is set and the run
    must end within `stop_timeout` seconds.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        if ready is not None:
            event: asyncio.Event = getattr(service, ready)
            waiting = asyncio.create_task(event.wait())
            try:
                await asyncio.wait(
                    {task, waiting}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiting.cancel()
            name = type(service).__name__
            if not event.is_set():
                if task.done():
                    task.result()  # raises what the service raised
                    raise AssertionError(f"{name} stopped before it was {ready}")
                raise TimeoutError(f"{name} not {ready} within {ready_timeout} s")
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout)


def spawn(
    argv: Sequence[str | Path],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    with_stdout: bool = True,
) -> subprocess.Popen[bytes]:
    """`argv` started, its stderr (and its stdout unless `with_stdout` is false) appended to
    `log`. `env` replaces the environment."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(a) for a in argv],
            stdout=out if with_stdout else subprocess.DEVNULL,
            stderr=out,
            env=None if env is None else dict(env),
        )


class ServiceProcess:
    """A child process started by `serving_process`, and the log it writes."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.code: int | None = None  # the exit status, once stopped

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit status; killed (and a failure) after `timeout` s."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.process.args!r} did not stop within {timeout} s: {self.output()[-3000:]}"
            ) from None
        return self.code


@contextlib.contextmanager
def serving_process(
    argv: Sequence[str | Path],
    log: Path,
    *,
    ready: Callable[[], Any] | None = None,
    ready_timeout: float = 30,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    stop_timeout: float = 30,
    shared: bool = False,
) -> Iterator[ServiceProcess]:
    """`argv` as a child process while the block runs, stdout and stderr appended to `log`.

    The block starts once `ready()` holds (the process exiting first fails the test). On
    leaving it gets `stop_signal` and must exit 0 within `stop_timeout` s, with no
    "Traceback" in its log; when the block raised, it is only stopped. `env` replaces the
    environment; `shared`: the process outlives single tests (a module's fixture).
    """
    process = spawn(argv, log, env=env)
    running = ServiceProcess(process, log)
    if shared:
        SHARED_PROCESSES.add(process.pid)
    try:
        if ready is not None:
            wait_for(lambda: not running.alive or ready(), ready_timeout, f"{argv!r} ready")
            assert running.alive, f"{argv!r} exited: {running.output()[-3000:]}"
        yield running
    except BaseException:
        with contextlib.suppress(AssertionError):
            running.stop(stop_signal, stop_timeout)
        raise
    finally:
        SHARED_PROCESSES.discard(process.pid)
    code = running.stop(stop_signal, stop_timeout)
    output = running.output()
    assert code == 0, f"{argv!r} exited {code}: {output[-3000:]}"
    assert "Traceback" not in output, output
