"""Polling until something holds: one deadline loop, for plain code and for coroutines.

`wait_for` and `eventually` fail the test (AssertionError) when time runs out;
`within` answers None instead, for a caller that reports the miss itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.02


def within(condition: Callable[[], Any], timeout: float, interval: float = POLL_S) -> Any:
    """The first truthy value of `condition()` within `timeout` seconds; None if none came."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    interval: float = POLL_S,
) -> Any:
    """The first truthy value of `condition()`; fails the test after `timeout` seconds."""
    value = within(condition, timeout, interval)
    if not value:
        raise AssertionError(missed(what, timeout))
    return value


async def eventually(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    what: str = "the condition",
    *,
    interval: float = 0.05,
) -> Any:
    """`wait_for` in a coroutine: `condition()` may be sync or async; the loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(missed(what, timeout))
        await asyncio.sleep(interval)


def missed(what: str, timeout: float) -> str:
    return f"not within {timeout:g} s: {what}"
