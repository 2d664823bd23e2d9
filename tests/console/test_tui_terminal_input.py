"""The console's terminal input: keys read from a real file descriptor, and a lone Esc
answered when its wait ends rather than at the input thread's next 100 ms poll."""

from __future__ import annotations

import os
import queue
import threading

import pytest
from dapper.backends.config import Config
from dapper.tui.app import DapperApp
from dapper.tui.terminal_input import IDLE_WAKE, PromptEscapeDriver, next_wake
from textual import events
from textual.message import Message


def test_the_input_thread_sleeps_only_until_a_pending_escape_is_due() -> None:
    assert next_wake(None, 10.0) == IDLE_WAKE  # nothing pending: the idle poll
    assert next_wake(10.02, 10.0) == pytest.approx(0.02)  # Esc due in 20 ms: wake then
    assert next_wake(9.9, 10.0) == 0.0  # overdue: at once
    assert next_wake(99.0, 10.0) == IDLE_WAKE


class Recording(PromptEscapeDriver):
    """The driver on a pipe instead of the terminal, keeping what it would post."""

    def __init__(self, fd: int) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no app: nothing is posted
        self.fileno = fd
        self.seen: queue.SimpleQueue[Message] = queue.SimpleQueue()

    def process_message(self, message: Message) -> None:
        self.seen.put(message)


def keys(driver: Recording, count: int) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        message = driver.seen.get(timeout=5)
        if isinstance(message, events.Key):
            out.append(message.key)
    return out


async def test_esc_alone_is_escape_and_a_sequence_is_its_key() -> None:
    read_end, write_end = os.pipe()
    driver = Recording(read_end)
    thread = threading.Thread(target=driver.run_input_thread, daemon=True)
    thread.start()
    try:
        os.write(write_end, b"j")
        assert keys(driver, 1) == ["j"]
        os.write(write_end, b"\x1b")  # alone: Esc once the wait for more bytes ends
        assert keys(driver, 1) == ["escape"]
        os.write(write_end, b"\x1b[A")  # the same byte starting a sequence: one key
        assert keys(driver, 1) == ["up"]
    finally:
        driver.exit_event.set()
        thread.join(timeout=5)
        os.close(write_end)
        os.close(read_end)
    assert not thread.is_alive()


def test_the_console_uses_it_on_a_unix_terminal() -> None:
    async def connect():  # pragma: no cover - never called: the app is not run
        raise AssertionError

    app = DapperApp(Config(), connect)
    assert app.driver_class is PromptEscapeDriver
