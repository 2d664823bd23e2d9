"""asyncio's 'socket.send() raised exception.' stays off the terminal, not out of the log."""

from __future__ import annotations

import logging

from dapper.cli.logsetup import not_a_hang_up


def record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)


def test_only_asyncio_s_hang_up_note_is_left_off_the_terminal():
    assert not not_a_hang_up(record("asyncio", "socket.send() raised exception."))
    assert not_a_hang_up(record("asyncio", "Task was destroyed but it is pending!"))
    assert not_a_hang_up(record("dapper.lab", "socket.send() raised exception."))
