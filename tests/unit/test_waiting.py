"""The shared wait helper: returns what it waited for, or fails saying what that was."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import eventually, eventually_async


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert eventually(lambda: (n := next(calls)) >= 3 and n, interval=0) == 3


def test_times_out_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"after 0\.05s waiting for the moon"):
        eventually(lambda: False, timeout=0.05, interval=0.01, message="the moon")


def test_a_callable_message_is_asked_at_the_end() -> None:
    seen: list[int] = []
    with pytest.raises(AssertionError, match=r"waiting for 3 tries"):
        eventually(lambda: seen.append(1), timeout=0.02, interval=0.01, message=lambda: "3 tries")


def test_the_async_variant_lets_the_loop_run_between_checks() -> None:
    async def main() -> int:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, done.set)
        return await eventually_async(lambda: done.is_set() and 7, timeout=2, interval=0.01)

    assert asyncio.run(main()) == 7


def test_the_async_variant_times_out_too() -> None:
    with pytest.raises(AssertionError, match="waiting for a pause"):
        asyncio.run(eventually_async(lambda: None, timeout=0.03, message="a pause"))
