"""Hostile cluster text and operator input in the console: shown as text, never obeyed,
never a crash; an unexpected error is one line and the console carries on."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dapper.lab.runtime import RunningLab, start_lab

from tests.console.tui_lab import make_app, settle
from tests.lab.hostile import seed_hostile
from tests.waiting import eventually_async


@pytest.fixture(scope="module")
def hostile_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(directory=tmp_path_factory.mktemp("hostile-console"), flux=False) as lab:
        seed_hostile(lab)
        yield lab


def messages(app: Any) -> list[str]:
    return [n.message for n in app._notifications]


async def test_markup_in_cluster_text_and_typed_input_is_shown_not_parsed(
    hostile_lab: RunningLab,
) -> None:
    app = make_app(hostile_lab)  # a failing handler fails this test
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        for key in "123456":  # every pane renders the hostile rows
            await pilot.press(key)
            await pilot.pause()
        await pilot.press("1", "enter")  # the detail of a row
        await pilot.pause()
        await pilot.press("escape")
        await pilot.press("colon", *"[/]", "enter")  # a jump to a "view" named [/]
        await eventually_async(
            lambda: any("[/]" in m for m in messages(app)), pause=pilot.pause, timeout=10
        )
        assert any(m.startswith("no view named '[/]'") for m in messages(app))
        await pilot.press("slash", *"[/]", "enter")  # a filter, shown in the pane's title
        await pilot.pause()
        assert app.is_running


async def test_an_unexpected_error_is_one_line_and_the_console_carries_on(
    hostile_lab: RunningLab,
) -> None:
    app = make_app(hostile_lab, survive_errors=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)

        def boom() -> None:
            raise RuntimeError("a handler broke [/] \x1b[2J")

        app.call_later(boom)
        await eventually_async(
            lambda: any("internal error" in m for m in messages(app)),
            pause=pilot.pause,
            timeout=10,
        )
        assert app.is_running and app._exit_renderables == []
        shown = [m for m in messages(app) if "internal error" in m]
        assert shown == ["internal error: a handler broke [/] ␛[2J (details in the log file)"]
        await pilot.press("2")  # still answering keys
        await pilot.pause()
        assert app.screen.query_one("#body") is not None


def test_the_terminal_never_receives_the_cluster_s_escapes(hostile_lab: RunningLab) -> None:
    """The real console in a pseudo-terminal: every byte it writes is read back; the OSC
    title, the C1 CSI and the bidi override from the cluster never appear as themselves,
    only as their visible pictures."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the console, as an operator starts it
        os.environ.update(TERM="xterm-256color", COLUMNS="160", LINES="48")
        os.execv(
            sys.executable,
            [sys.executable, "-m", "dapper.cli.main", "--config", str(hostile_lab.files.config)],
        )
    out = bytearray()
    try:
        deadline = time.monotonic() + 60
        keys = iter([b"1", b"2", b"3", b"4", b"5", b"6", b"1", b"\r", b"\x1b"])
        pressed = 0.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
            if "␛]0;PWNED".encode() in out and time.monotonic() - pressed > 0.5:
                key = next(keys, None)
                if key is None:
                    break
                os.write(fd, key)
                pressed = time.monotonic()
        os.write(fd, b"q")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    assert "␛]0;PWNED".encode() in out, "the hostile text was never shown"
    assert b"\x1b]0;PWNED" not in out
    assert b"\xc2\x9b31m" not in out  # C1 CSI
    assert "\u202e".encode() not in out  # right-to-left override
