"""The console before (and without) a connection: it paints at once, and a failed connect
shows in the header at once (not on the next clock tick), then is retried."""

from __future__ import annotations

import asyncio

from dapper.backends.config import Config
from dapper.tui import app as app_module
from dapper.tui.app import DapperApp
from dapper.tui.screens.main import MainScreen


async def test_a_failed_connect_shows_in_the_header_and_is_retried(monkeypatch):
    monkeypatch.setattr(app_module, "RETRY_CONNECT", 0.2)
    monkeypatch.setattr(DapperApp, "_tick", lambda self: None)  # only the failure redraws
    attempts: list[int] = []
    refuse = asyncio.Event()

    async def connect():
        attempts.append(1)
        await refuse.wait()  # fail once the test has seen the first frame
        raise OSError("connection refused by 127.0.0.1:1")

    app = DapperApp(Config(), connect)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        header = str(app.screen.query_one("#header").render())
        assert "connecting…" in header and not app.connect_error
        refuse.set()
        for _ in range(100):
            await pilot.pause(0.05)
            if len(attempts) >= 2:
                break
        assert len(attempts) >= 2  # retried after RETRY_CONNECT
        assert isinstance(app.screen, MainScreen) and app.collector is None
        header = str(app.screen.query_one("#header").render())
        assert "cannot connect: connection refused by 127.0.0.1:1" in header
        assert " 1 Nodes " in str(app.screen.query_one("#panebar").render())
