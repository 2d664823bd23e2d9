"""The one way tests wait for something the lab, a server or the console does later.

`eventually` polls a predicate until it returns something truthy (and returns that), or
fails the test with what it was waiting for. `eventually_async` does the same inside an
event loop; console tests pass `pause=pilot.pause` so the app keeps processing messages
while the test waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Message = str | Callable[[], str]


def _timed_out(message: Message, timeout: float) -> AssertionError:
    text = message() if callable(message) else message
    return AssertionError(f"timed out after {timeout:g}s waiting for {text}")


def eventually(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: Message = "the condition",
) -> T:
    """The first truthy value of `predicate()`, checked every `interval` seconds; after
    `timeout` seconds an AssertionError naming `message` (a callable is asked then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(message, timeout)
        time.sleep(interval)


async def eventually_async(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    message: Message = "the condition",
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`eventually` for async tests: waits with `await pause(interval)` (asyncio.sleep, or
    a Textual pilot's pause), so the loop keeps running between checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(message, timeout)
        await pause(interval)
