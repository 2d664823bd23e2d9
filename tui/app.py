"""DapperApp: the console shell. It paints at once, connects in a worker, then refreshes
each source on its own self-rearming timer (Kubernetes also at once when its watches
report a change) and pushes every new snapshot to the screens.

Nothing here imports a client library: `connect` (given by the CLI or a test) does that
inside its worker, after the first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapper.backends.config import Config
from dapper.backends.model import ClusterSnapshot
from dapper.backends.protocols import ClusterOperations, SnapshotFeed
from dapper.tui import format as fmt
from dapper.tui.commands import DapperCommands
from dapper.tui.heap import QuietCollector
from dapper.tui.messages import CommandRequested, OpenDetail, SourceChanged
from dapper.tui.pane_commands import PaneCommand, target_name
from dapper.tui.pane_registry import pane_registry
from dapper.tui.survive import SurvivesErrors
from dapper.tui.trends import NodeTrends
from dapper.tui.widgets.bars import header_text
from rich.text import Text
from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.driver import Driver
from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.timer import Timer

if TYPE_CHECKING:  # the screens are imported when first used, after the first frame
    from dapper.tui.screens.confirm import DialogScreen
    from dapper.tui.screens.main import MainScreen

log = logging.getLogger("dapper.tui")

RETRY_CONNECT = 15.0


class DapperApp(SurvivesErrors, App[int]):
    """The console. `connect()` returns a started SnapshotFeed; `clock()` gives "now" for ages.

    Screens watch `snapshot` (every new join) and `now` (once a second, for ages).
    """

    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "dapper-tui"
    COMMANDS = {DapperCommands}
    BINDINGS = [
        # q quits at once: the console holds no unsaved state. While an action runs, it asks.
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("b", "runbooks", "Runbooks", show=False, id="runbooks"),
        Binding("ctrl+c,ctrl+q", "quit_app", "Quit", show=False, priority=True, id="quit-ctrl"),
    ]

    # no equality check: a snapshot is large, and every join is news. `var`, not
    # `reactive`: a reactive repaints the whole screen on each change (every snapshot and
    # every tick, at 160x48 a full-terminal render); the widgets a change touches update
    # themselves, so only they are drawn again.
    snapshot: var[ClusterSnapshot] = var(
        lambda: ClusterSnapshot(cluster="", mode="", read_only=True, taken_at=0.0),
        always_update=True,
    )
    now: var[float] = var(0.0, always_update=True)

    def __init__(
        self,
        config: Config,
        connect: Callable[[], Awaitable[SnapshotFeed]],
        clock: Callable[[], float] = time.time,
        *,
        survive_errors: bool = True,
    ) -> None:
        super().__init__()
        # An operator mid-incident keeps the console when a handler fails; the pilot tests
        # turn this off so a bug still fails them.
        self.survive_errors = survive_errors
        self.config = config
        self.clock = clock
        self.writable = not config.read_only
        self.collector: SnapshotFeed | None = None
        self.connect_error = ""
        self.set_reactive(
            DapperApp.snapshot,
            ClusterSnapshot(
                cluster=config.cluster_name,
                mode=config.mode,
                read_only=config.read_only,
                taken_at=0.0,
            ),
        )
        self._connect = connect
        self.heap = QuietCollector()
        self.last_input = 0.0  # time.monotonic() of the last key or click
        self._source_timers: dict[str, Timer] = {}
        self._refreshing: set[str] = set()
        self._refresh_again: set[str] = set()
        self._fresh_again: set[str] = set()
        self._shutting_down = False
        self._activity: dict[int, str] = {}
        self._next_activity = 0
        self.refreshes: dict[str, int] = {}  # completed refreshes per source (tests wait on it)
        self.trends = NodeTrends()  # node CPU and memory over the session (node detail)

    # -- lifecycle ----------------------------------------------------------------------

    # -- untrusted text and unexpected errors -----------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications never interpret markup: they quote names, messages and what the
        operator typed, and `[/]` in any of them must show as itself, not crash."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def _handle_exception(self, error: Exception) -> None:
        """An error no handler survived ends the console: in one line (see `_fatal_error`),
        with the traceback in the log file, never on the terminal."""
        log.error("the console stops on an unexpected error", exc_info=error)
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        """When the console must stop, it says so in one line; the log has the details."""
        self.bell()
        error = self._exception
        reason = fmt.one_line(str(error) or type(error).__name__) if error else "unknown"
        self._exit_renderables.append(
            Text(f"dapper-tui: stopped on an internal error: {reason} (details in the log file)")
        )
        self._close_messages_no_wait()

    def get_default_screen(self) -> MainScreen:
        from dapper.tui.screens.main import MainScreen

        return MainScreen(writable=self.writable)

    @property
    def main(self) -> MainScreen:
        from dapper.tui.screens.main import MainScreen

        main = self.screen_stack[0]
        assert isinstance(main, MainScreen)
        return main

    def get_driver_class(self) -> type[Driver]:
        """Textual's terminal driver, but one that answers Esc without a 100 ms poll's lag
        (see terminal_input); any other driver (Windows, headless, TEXTUAL_DRIVER) as is."""
        driver = super().get_driver_class()
        if driver.__module__ == "textual.drivers.linux_driver":  # not importable on Windows
            from dapper.tui.terminal_input import PromptEscapeDriver

            return PromptEscapeDriver
        return driver

    def on_mount(self) -> None:
        self.connect_feed()
        self.set_interval(1.0, self._tick)
        if not self.is_headless:  # a real terminal: its SSH session can drop
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.hang_up)

    def hang_up(self) -> None:
        """SIGHUP (the SSH session dropped) or SIGTERM: leave as `q` would. A runbook in
        progress is told to stop at its next safe point and stays resumable; the process
        waits for it (cli/console_cmd.py) before it ends."""
        log.warning("the terminal hung up: leaving; a runbook in progress stops resumable")
        for screen in self.screen_stack:  # tell every run now: unmounting may never come
            bridge = getattr(screen, "bridge", None)
            if bridge is not None and not getattr(screen, "finished", True):
                bridge.abort()
        if not self.is_headless:
            # A terminal that is gone can wedge the driver's restore writes, so leaving as
            # `q` does may never finish: once the runs have stopped, the process ends.
            threading.Thread(target=self._end_after_runs, name="hang-up", daemon=True).start()
        self.exit(return_code=129)

    @staticmethod
    def _end_after_runs(timeout: float = 120.0) -> None:
        runbook_run = sys.modules.get("dapper.tui.screens.runbook_run")
        if runbook_run is not None and not runbook_run.IN_FLIGHT.wait(timeout):
            log.warning("a runbook still ran %.0f s after the hang-up; ending anyway", timeout)
        time.sleep(2.0)  # a clean exit, when the terminal allows one, comes first
        logging.shutdown()
        os._exit(129)

    async def on_unmount(self) -> None:
        self._shutting_down = True
        self.heap.release()  # what the app leaves behind is garbage like any other
        for timer in self._source_timers.values():
            timer.stop()
        if self.collector is not None:
            try:
                await self.collector.close()
            except Exception:  # never a traceback on the way out
                log.exception("closing the collector failed")

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect_feed(self) -> None:
        try:
            feed = await self._connect()
        except Exception as exc:
            log.exception("connect failed")
            self.connect_error = f"cannot connect: {fmt.one_line(str(exc)) or type(exc).__name__}"
            self.mutate_reactive(DapperApp.snapshot)  # the header shows the error
            if not self._shutting_down:
                self.set_timer(RETRY_CONNECT, self._retry_connect)
            return
        self.connect_error = ""
        self.collector = feed
        self._apply(feed.snapshot)
        feed.on_change(self._source_changed)
        self._start_watches(feed)
        for source in feed.source_names:
            if not feed.watchable(source):  # those refresh once their watches started
                # nothing is cached yet, so every first read is fresh anyway
                self.refresh_source(source, fresh=False)

    @work(thread=True, exclusive=True, group="watches", exit_on_error=False)
    def _start_watches(self, feed: SnapshotFeed) -> None:
        """Watched sources refresh as soon as they change; their timers become a fallback.
        In a thread: it imports the client side of the backend, never on the event loop.
        Then their first refresh, which waits for the watches' first lists instead of
        listing the same 20,000 pods beside them."""
        try:
            feed.start_watches()
        finally:
            for source in feed.source_names:
                if feed.watchable(source):
                    self._source_changed(source)

    def _source_changed(self, source: str) -> None:
        """Called on a watcher thread: hand over to the app's loop, never block."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the console is closing
            self.post_message(SourceChanged(source))

    def on_source_changed(self, message: SourceChanged) -> None:
        self.refresh_source(message.source, fresh=False)

    def _retry_connect(self) -> None:
        if not self._shutting_down and self.collector is None:
            self.connect_feed()

    # -- refresh ------------------------------------------------------------------------

    def refresh_source(self, source: str, *, fresh: bool = True) -> None:
        """Refresh `source` now, or right after the refresh in flight (never two at once).
        `fresh` re-reads the API where watches serve the source (after an action, or when
        asked), so writes made just before show; timers and watch changes read the cache.

        One worker group per source, not exclusive: a refresh in flight is never cancelled
        (its result is still news); a second request waits for it instead."""
        if self._shutting_down or self.collector is None:
            return
        if source in self._refreshing:
            self._refresh_again.add(source)
            if fresh:
                self._fresh_again.add(source)
            return
        timer = self._source_timers.pop(source, None)
        if timer is not None:
            timer.stop()
        self._refreshing.add(source)
        self.run_worker(
            self._refresh_worker(self.collector, source, fresh),
            group=f"refresh-{source}",
            exit_on_error=False,
        )

    async def _refresh_worker(self, feed: SnapshotFeed, source: str, fresh: bool) -> None:
        try:
            if fresh and feed.watching(source):
                snapshot = await feed.refresh(source, fresh=True)
            else:
                snapshot = await feed.refresh(source)
            self._apply(snapshot)
        except Exception:  # the collector should not raise; if it does, keep going
            log.exception("refresh of %s failed", source)
        finally:
            self._refreshing.discard(source)
            if source not in self._refresh_again:  # one asked for meanwhile is not done yet
                self.refreshes[source] = self.refreshes.get(source, 0) + 1
            if not self._shutting_down:
                if source in self._refresh_again:
                    self._refresh_again.discard(source)
                    again_fresh = source in self._fresh_again
                    self._fresh_again.discard(source)
                    self.refresh_source(source, fresh=again_fresh)
                else:
                    delay = max(0.5, float(feed.interval(source)))
                    self._source_timers[source] = self.set_timer(
                        delay, lambda s=source: self.refresh_source(s, fresh=False)
                    )

    def _apply(self, snapshot: ClusterSnapshot) -> None:
        if snapshot.taken_at < self.snapshot.taken_at:
            return  # an older join finished late; the newer one is already shown
        self.trends.add(snapshot)
        self.snapshot = snapshot
        self.heap.shown()

    def _tick(self) -> None:
        self.now = self.clock()
        self.heap.tick()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):
            self.last_input = time.monotonic()  # refreshes wait for a gap between keys
            self.heap.input()
        await super().on_event(event)

    def header_text(self, width: int = 0) -> Text:
        """The header line; given the header's `width`, tightened to fit it."""
        return header_text(
            self.snapshot,
            mode=self.config.mode,
            read_only=self.config.read_only,
            now=self.clock(),
            status=self.connect_error,
            width=width,
        )

    # -- navigation ---------------------------------------------------------------------

    def on_open_detail(self, message: OpenDetail) -> None:
        self.open_detail(message.pane, message.key)

    def open_detail(self, pane: str, key: str) -> None:
        """One detail screen per pane, built on first use and kept (installed): at 160x48
        composing, mounting and styling a screen was most of what enter cost."""
        from dapper.tui.screens.detail import DetailScreen

        name = f"detail-{pane}"
        if self.is_screen_installed(name):
            detail = self.get_screen(name)
            assert isinstance(detail, DetailScreen)
            detail.key = key
        else:
            self.install_screen(DetailScreen(pane, key, writable=self.writable), name)
        self.push_screen(name)

    def action_runbooks(self) -> None:
        from dapper.tui.screens.runbook import open_runbooks

        open_runbooks(self)

    def action_help(self) -> None:
        """The help screen is built once and kept; each `?` gives it the keys of the
        screen it covers."""
        from dapper.tui.screens.help import HelpScreen

        body = self.help_text()
        if self.is_screen_installed("help"):
            help_screen = self.get_screen("help")
            assert isinstance(help_screen, HelpScreen)
            help_screen.show(body)
        else:
            self.install_screen(HelpScreen(body), "help")
        self.push_screen("help")

    def help_text(self) -> Text:
        from dapper.tui.screens.help import help_text

        return help_text(self)

    def action_quit_app(self) -> None:
        from dapper.tui.screens.confirm import ConfirmScreen

        if not self._activity:
            self.exit(0)
            return
        running = "; ".join(self._activity.values())
        self.push_screen(
            ConfirmScreen("Quit while an action runs?", Text(running), "Quit"),
            callback=lambda ok: self.exit(0) if ok else None,
        )

    def action_refresh_all(self) -> None:
        if self.collector is not None:
            for source in self.collector.source_names:
                self.refresh_source(source)

    # -- pane commands --------------------------------------------------------------------

    def find_row(self, pane: str, key: str) -> Any | None:
        return pane_registry().get(pane).find_row(self.snapshot, key)

    def on_command_requested(self, message: CommandRequested) -> None:
        if message.key is None:
            self.notify("no row selected", timeout=2)
            return
        self.request_command(message.command, message.pane, message.key)

    def request_command(self, command_id: str, pane: str, key: str) -> None:
        """Confirm, then run a pane command in a worker. Refused outright when read-only."""
        from dapper.tui.screens.confirm import ConfirmScreen, TypedConfirmScreen

        spec = pane_registry().get(pane)
        command = spec.command(command_id)
        if command is not None and command.runbook is not None and self.writable:
            from dapper.tui.screens.runbook import open_runbooks

            runbook, param = command.runbook
            open_runbooks(self, runbook=runbook, values={param: key})
            return
        if not self.writable or command is None:
            what = command.label.lower() if command is not None else "actions"
            # one line in a toast (help and README say how read-only is set)
            self.notify(f"READ-ONLY: no {what}", severity="warning", timeout=4)
            return
        operations = self.collector.operations if self.collector is not None else None
        if operations is None:
            self.notify("not connected yet (or read-only)", severity="warning", timeout=3)
            return
        row = self.find_row(pane, key)
        if row is None:
            self.notify(f"{spec.noun} {key} is gone", severity="warning", timeout=3)
            return
        name = target_name(row)
        why = command.why_blocked(row)
        if why:
            self.notify(f"{command.title(row)} {name}: {why}", severity="warning", timeout=4)
            return
        title = f"{command.title(row)} {spec.noun} {name}?"
        body = Text(command.explain)
        screen: DialogScreen
        if command.destructive:
            screen = TypedConfirmScreen(title, body, command.title(row), name)
        else:
            screen = ConfirmScreen(title, body, command.title(row))

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_command(command, row, operations)

        self.push_screen(screen, callback=confirmed)

    @work(group="pane-commands", exit_on_error=False)
    async def run_command(
        self, command: PaneCommand, row: Any, operations: ClusterOperations
    ) -> None:
        """Several commands may run at once (on different rows): not exclusive."""
        label = f"{command.title(row)} {target_name(row)}"
        token = self._next_activity
        self._next_activity += 1

        def show(message: str) -> None:
            if token in self._activity:  # `Reconcile ai/ollama: waiting…`, the name once
                said = fmt.one_line(message).removeprefix(f"{target_name(row)}: ")
                self._activity[token] = f"{label}: {said}"
                self._show_activity()

        def progress(message: str) -> None:
            if threading.get_ident() == getattr(self, "_thread_id", None):
                show(message)
            else:
                self.call_from_thread(show, message)

        self._activity[token] = f"{label}…"
        self._show_activity()
        try:
            result = await command.run(operations, row, progress)
            self.notify(fmt.one_line(result or "done"), title=label, timeout=5)
        except Exception as exc:  # BackendError, ReadOnlyError, or a bug: one line, log it
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            if not hasattr(exc, "reason"):
                log.exception("%s failed", label)
            self.notify(fmt.one_line(reason), title=f"{label} failed", severity="error", timeout=8)
        finally:
            self._activity.pop(token, None)
            self._show_activity()
            for source in command.refreshes:
                self.refresh_source(source)

    def _show_activity(self) -> None:
        self.main.show_activity(list(self._activity.values()))

    # -- command palette ----------------------------------------------------------------

    def palette_commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        main = self.main
        panes = pane_registry().ordered()
        for spec in panes:
            yield (
                f"Show {spec.title}",
                f"pane {spec.key} (:{spec.aliases[0]})" + (f" · {spec.help}" if spec.help else ""),
                partial(self._show_pane, spec.id),
            )
        yield "Toggle faults only", "! (like k9s ctrl-z)", lambda: main.action_faults()
        yield "Filter the current pane", "/", lambda: main.action_prompt("filter")
        yield "Sort by the next column", "s", lambda: main.action_sort()
        yield "Refresh all sources now", "re-read every source", self.action_refresh_all
        yield "Help: keys of this pane", "?", self.action_help
        yield "Quit", "q / ctrl+c", self.action_quit_app
        from dapper.tui.screens.runbook import palette_entries

        yield from palette_entries(self)
        for spec in panes:
            if not spec.palette_rows:
                continue
            for row in spec.rows(self.snapshot):
                key = spec.row_key(row)
                yield (
                    f"Detail {spec.noun} {key}",
                    "enter",
                    partial(self.open_detail, spec.id, key),
                )
        if not self.writable:
            return
        for spec in panes:
            for command in spec.commands:
                for row in spec.rows(self.snapshot):
                    if command.why_blocked(row):
                        continue
                    key = spec.row_key(row)
                    yield (
                        f"{command.title(row)} {spec.noun} {target_name(row)}",
                        f"{command.key} on the {spec.title} pane (asks first)",
                        partial(self.request_command, command.id, spec.id, key),
                    )

    def _show_pane(self, pane: str) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.main.action_show_pane(pane)
