"""`dapper-tui` (no subcommand): the console.

The app paints its first frame before any client library is imported: the connector it
gets starts the lab (when there is no configuration) and builds the Collector inside the
app's connect worker. Logging goes to a file only, never onto the console's screen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from dapper.backends.config import Config, ConfigError, load_config
from dapper.cli.logsetup import setup_logging

log = logging.getLogger("dapper.cli.console")


class Connector:
    """`await connector()` gives a Collector; `stop()` then stops the lab it may have started."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lab: Any = None

    async def __call__(self) -> Any:
        # Imports and the lab's start run in a thread so the console keeps painting meanwhile.
        return await asyncio.to_thread(self._connect)

    def _connect(self) -> Any:
        from dapper.backends.snapshot.collector import Collector

        cfg = self.config
        if cfg.lab and not cfg.source:
            from dapper.lab.runtime import start_lab

            self.lab = start_lab(read_only=cfg.read_only)
            cfg = self.lab.readonly_config if cfg.read_only else self.lab.config
        return Collector(cfg)

    def stop(self) -> None:
        if self.lab is not None:
            lab, self.lab = self.lab, None
            lab.stop()


# Textual repaints on a frame timer (60 a second by default): a key's result waits for
# the next frame, and a key that takes two rounds of messages waits for two. At 120 a
# pane switch showed in about half the time (bench/keys.py); an idle console paints
# nothing either way. The operator's own TEXTUAL_FPS wins.
FRAMES_PER_SECOND = "120"
# How long a lone Esc byte waits for the rest of an escape sequence before it is Esc
# (Textual's default is 100 ms, on top of its input thread's 100 ms poll, which
# tui/terminal_input.py removes). 10 ms, tmux's escape-time since 3.5 (it was 500; tmux
# issue 3844), which also runs behind SSH: a terminal writes a sequence's bytes at once,
# and they arrive together. The operator's own ESCDELAY wins (a slow link: raise it).
ESCAPE_DELAY_MS = "10"


def make_app(config: Config, connect: Callable[[], Awaitable[Any]]) -> Any:
    os.environ.setdefault("TEXTUAL_FPS", FRAMES_PER_SECOND)  # read when Textual is imported
    os.environ.setdefault("ESCDELAY", ESCAPE_DELAY_MS)  # so is this
    from dapper.tui.app import DapperApp

    return DapperApp(config, connect)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, read_only=args.read_only or None)
    except ConfigError as exc:
        print(f"dapper-tui: {exc}", file=sys.stderr)
        return 2
    path = setup_logging(console=False)
    connector = Connector(config)
    app = make_app(config, connector)
    try:
        code = app.run()
    except Exception as exc:  # never a traceback at the operator; the log has it
        log.exception("console crashed")
        print(f"dapper-tui: {exc} (details in {path})", file=sys.stderr)
        code = 1
    finally:
        _let_runs_stop()
        try:
            connector.stop()
        except Exception:
            log.exception("stopping the lab failed")
    return int(code or 0)


def _let_runs_stop(timeout: float = 120.0) -> None:
    """A runbook the console left (quit, SIGHUP) stops at its next safe point: wait for it
    before the process ends, so no step dies between its change and its journal entry."""
    runbook_run = sys.modules.get("dapper.tui.screens.runbook_run")
    if runbook_run is None:  # no runbook screen was ever opened
        return
    if not runbook_run.IN_FLIGHT.wait(timeout):
        log.warning("a runbook still runs after %.0f s; leaving it to the journal", timeout)
