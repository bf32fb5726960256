"""The waits every service loop shares: back-off between attempts, and waits a stop ends."""

from __future__ import annotations

import asyncio

from campus_energy.runtime.clock import Backoff, first_or_stop, sleep_or_stop


def test_backoff_doubles_up_to_its_bound_and_starts_again_after_a_success() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.succeeded()
    assert backoff.failed() == 0.5


async def test_first_or_stop_gives_the_result_when_it_comes_first() -> None:
    stop = asyncio.Event()

    async def answer() -> int:
        return 42

    assert await first_or_stop(answer(), stop) == 42


async def test_first_or_stop_gives_up_on_a_stop_and_cancels_the_wait() -> None:
    stop = asyncio.Event()
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    waiting = asyncio.ensure_future(first_or_stop(forever(), stop))
    await started.wait()
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is None
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_first_or_stop_gives_up_after_its_timeout() -> None:
    assert await first_or_stop(asyncio.Event().wait(), asyncio.Event(), timeout_s=0.01) is None


async def test_first_or_stop_raises_what_the_awaited_raised() -> None:
    async def broken() -> int:
        raise ValueError("no")

    try:
        await first_or_stop(broken(), asyncio.Event())
    except ValueError as exc:
        assert str(exc) == "no"
    else:
        raise AssertionError("the failure was swallowed")


async def test_sleep_or_stop_ends_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await sleep_or_stop(3600, stop) is True
    assert await sleep_or_stop(0.0, asyncio.Event()) is False
