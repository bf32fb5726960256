"""The services of a fault-injection run: `campus-energy` processes, or service objects
on an event-loop thread, with the same start / stop / kill / log interface."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from tests.support.processes import campus_energy
from tests.support.services import spawn
from tests.support.waiting import wait_for

POLL_S = 0.05


class Service(Protocol):
    """What a scenario does with a service, however it runs."""

    name: str

    def start(self) -> None: ...
    def stop(self) -> int: ...
    def kill(self) -> float: ...
    def close(self) -> None: ...
    def log_text(self) -> str: ...
    @property
    def alive(self) -> bool: ...


class Process:
    """`campus-energy <args>` as a child process; stdout and stderr appended to its log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log: Path,
        *,
        ready: Callable[[Process], bool],
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0  # where this run's part of the log begins

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        self.process = spawn(campus_energy(*self.args), self.log)
        wait_for(
            lambda: self.ready(self) or not self.alive,
            30,
            f"{self.name} to start (see {self.log})",
            interval=POLL_S,
        )
        assert self.alive, f"{self.name} exited: {self.log_text()[-2000:]}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self, since_start: bool = False) -> str:
        if not self.log.exists():
            return ""
        data = self.log.read_bytes()
        return data[self.offset if since_start else 0 :].decode(errors="replace")

    def kill(self) -> float:
        """kill -9; returns the moment it was sent."""
        assert self.process is not None
        moment = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return moment

    def stop(self) -> int:
        """SIGTERM, then the exit status (killed after 30 s)."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9
        finally:
            self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class LoopThread:
    """An event loop on its own thread, for services run in-process and for asyncio helpers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faults-loop")
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        async def finish() -> None:
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        self.run(finish())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class InProcess:
    """A service object (`MeterLogger`, `Bridge`) running on a `LoopThread`."""

    def __init__(
        self,
        name: str,
        loop: LoopThread,
        make: Callable[[], Any],
        ready: Callable[[Any], bool],
        log: LogRecords,
    ) -> None:
        self.name = name
        self.loop = loop
        self.make = make
        self.ready = ready
        self.log = log
        self.service: Any = None
        self._stop: asyncio.Event | None = None
        self._running: Future[Any] | None = None

    def start(self) -> None:
        async def launch() -> tuple[Any, asyncio.Event]:
            return self.make(), asyncio.Event()

        self.service, self._stop = self.loop.run(launch())
        self._running = self.loop.submit(self.service.run(self._stop))
        wait_for(
            lambda: self.ready(self.service) or self._running.done(),
            30,
            f"{self.name} starts",
            interval=POLL_S,
        )
        assert not self._running.done(), f"{self.name} stopped: {self._running.exception()}"

    @property
    def alive(self) -> bool:
        return self._running is not None and not self._running.done()

    def stop(self) -> int:
        if self._running is None or self._stop is None:
            return 0
        self.loop.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._running.result(timeout=60)
        except Exception as exc:  # the run failed: report it as a failed exit
            self.log.failures.append(f"{self.name}: {type(exc).__name__}: {exc}")
            return 1
        finally:
            self._running = None
        return 0

    def kill(self) -> float:
        raise NotImplementedError("an in-process service cannot be killed")

    def close(self) -> None:
        """Stop it whatever its state: asked to stop, cancelled if it does not."""
        running, self._running = self._running, None
        if running is None or self._stop is None:
            return
        self.loop.loop.call_soon_threadsafe(self._stop.set)
        try:
            running.result(timeout=30)
        except Exception:  # failed, cancelled or stuck: it is over either way
            running.cancel()

    def log_text(self) -> str:
        return self.log.text()


class LogRecords:
    """Log records of the in-process services, as lines, kept for the checks."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        records = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = f"{record.levelname} {record.name}: {record.getMessage()}"
                if record.exc_info:
                    text += "\nTraceback (see the test's captured log)"
                with records._lock:
                    records.lines.append(text)

        self.handler = Handler(logging.INFO)
        self._level = logging.NOTSET

    def start(self) -> None:
        """Keep the records of the `campus_energy` loggers, INFO and above."""
        package = logging.getLogger("campus_energy")
        if self.handler not in package.handlers:
            self._level = package.level
            package.setLevel(logging.INFO)
            package.addHandler(self.handler)

    def stop(self) -> None:
        package = logging.getLogger("campus_energy")
        if self.handler in package.handlers:
            package.removeHandler(self.handler)
            package.setLevel(self._level)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)
