"""Running a command until it is told to stop: SIGINT and SIGTERM end the work, not the process.

Every long-running command (the services, `read --watch`, `simulate`, the demo)
gets the same treatment: its work is a function of an `asyncio.Event` that is set
when a signal arrives, and it returns an exit code (or nothing, meaning success).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

from campus_energy.runtime.notify import Notifier


async def until_signalled(main: Callable[[asyncio.Event], object]) -> None:
    """Run `main(stop)`, awaiting it when it is a coroutine; SIGINT and SIGTERM set `stop`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    result = main(stop)
    if asyncio.iscoroutine(result):
        await result


def run_until_signalled(run: Callable[[asyncio.Event], object]) -> int:
    """`until_signalled` in a new event loop; the exit code `run` returned (0 for none)."""
    outcome: list[int] = []

    async def wrapper(stop: asyncio.Event) -> None:
        result = run(stop)
        if asyncio.iscoroutine(result):
            result = await result
        outcome.append(int(result) if isinstance(result, int) else 0)

    asyncio.run(until_signalled(wrapper))
    return outcome[0] if outcome else 0


def notifier() -> Notifier:
    """systemd's notification socket and watchdog for this process (a no-op without systemd)."""
    return Notifier.from_environ(os.environ, os.getpid())
