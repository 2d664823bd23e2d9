"""DapperApp: the console shell. It paints at once, connects in a worker, then refreshes
each source on its own self-rearming timer (Kubernetes also at once when its watches
report a change) and pushes every new snapshot to the screens.

Nothing here imports a client library: `connect` (given by the CLI or a test) does that
inside its worker, after the first frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapper.backends.config import Config
from dapper.backends.model import ClusterSnapshot
from dapper.tui import format as fmt
from dapper.tui.commands import DapperCommands
from dapper.tui.ops import ACTION_BY_ID, ACTIONS, ActionSpec, target_name
from dapper.tui.panes import PANE_BY_ID, PANES
from dapper.tui.screens.main import MainScreen
from dapper.tui.widgets.bars import header_text
from rich.text import Text
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer

if TYPE_CHECKING:  # the other screens are imported when first used, after the first frame
    from dapper.tui.screens.confirm import DialogScreen

log = logging.getLogger("dapper.tui")

RETRY_CONNECT = 15.0
# which sources an action changes, so they are refreshed as soon as it finishes
ACTION_SOURCES = {"flux": ("kubernetes",), "nodes": ("kubernetes",), "vms": ("proxmox", "talos")}


class SourceChanged(Message):
    """A watched source changed; posted from the collector's watcher thread."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source


class DapperApp(App[int]):
    """The console. `connect()` returns a started Collector; `clock()` gives "now" for ages."""

    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "dapper-tui"
    COMMANDS = {DapperCommands}
    BINDINGS = [
        # q quits at once: the console holds no unsaved state. While an action runs, it asks.
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("b", "runbooks", "Runbooks", show=False, id="runbooks"),
        Binding("ctrl+c,ctrl+q", "quit_app", "Quit", show=False, priority=True, id="quit-ctrl"),
    ]

    def __init__(
        self,
        config: Config,
        connect: Callable[[], Awaitable[Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.writable = not config.read_only
        self.collector: Any = None
        self.connect_error = ""
        self.snapshot = ClusterSnapshot(
            cluster=config.cluster_name,
            mode=config.mode,
            read_only=config.read_only,
            taken_at=0.0,
        )
        self._connect = connect
        self._source_timers: dict[str, Timer] = {}
        self._refreshing: set[str] = set()
        self._refresh_again: set[str] = set()
        self._fresh_again: set[str] = set()
        self._shutting_down = False
        self._activity: dict[int, str] = {}
        self._next_activity = 0
        self.refreshes: dict[str, int] = {}  # completed refreshes per source (tests wait on it)

    # -- lifecycle ----------------------------------------------------------------------

    def get_default_screen(self) -> MainScreen:
        return MainScreen(writable=self.writable)

    @property
    def main(self) -> MainScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.main.show_snapshot(self.snapshot, self.clock())
        self.run_worker(
            self._connect_worker(), name="connect", group="connect", exit_on_error=False
        )
        self.set_interval(1.0, self._tick)

    async def on_unmount(self) -> None:
        self._shutting_down = True
        for timer in self._source_timers.values():
            timer.stop()
        if self.collector is not None:
            try:
                await self.collector.close()
            except Exception:  # never a traceback on the way out
                log.exception("closing the collector failed")

    async def _connect_worker(self) -> None:
        try:
            collector = await self._connect()
        except Exception as exc:
            log.exception("connect failed")
            self.connect_error = f"cannot connect: {fmt.one_line(str(exc)) or type(exc).__name__}"
            self._render()
            if not self._shutting_down:
                self.set_timer(RETRY_CONNECT, self._retry_connect)
            return
        self.connect_error = ""
        self.collector = collector
        self._apply(collector.snapshot)
        self._start_watches(collector)
        for source in collector.SOURCES:
            self.refresh_source(source)

    def _start_watches(self, collector: Any) -> None:
        """Watched sources refresh as soon as they change; their timers become a fallback."""
        if not hasattr(collector, "start_watches"):
            return  # a collector without watches (the still pictures') keeps its timers
        collector.on_change(self._source_changed)
        # in a thread: it imports the client side of the backend, never on the event loop
        self.run_worker(collector.start_watches, thread=True, group="watches", exit_on_error=False)

    def _source_changed(self, source: str) -> None:
        """Called on a watcher thread: hand over to the app's loop, never block."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the console is closing
            self.post_message(SourceChanged(source))

    def on_source_changed(self, message: SourceChanged) -> None:
        self.refresh_source(message.source, fresh=False)

    def _retry_connect(self) -> None:
        if not self._shutting_down and self.collector is None:
            self.run_worker(self._connect_worker(), group="connect", exit_on_error=False)

    # -- refresh ------------------------------------------------------------------------

    def refresh_source(self, source: str, *, fresh: bool = True) -> None:
        """Refresh `source` now, or right after the refresh in flight (never two at once).
        `fresh` re-reads the API where watches serve the source (after an action, or when
        asked), so writes made just before show; timers and watch changes read the cache."""
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
            self._refresh_worker(source, fresh), group=f"refresh-{source}", exit_on_error=False
        )

    async def _refresh_worker(self, source: str, fresh: bool = False) -> None:
        try:
            watching = getattr(self.collector, "watching", None)
            if fresh and watching is not None and watching(source):
                snapshot = await self.collector.refresh(source, fresh=True)
            else:
                snapshot = await self.collector.refresh(source)
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
                    delay = max(0.5, float(self.collector.interval(source)))
                    self._source_timers[source] = self.set_timer(
                        delay, lambda s=source: self.refresh_source(s, fresh=False)
                    )

    def _apply(self, snapshot: ClusterSnapshot) -> None:
        if snapshot.taken_at < self.snapshot.taken_at:
            return  # an older join finished late; the newer one is already shown
        self.snapshot = snapshot
        self._render()

    def _render(self) -> None:
        from dapper.tui.screens.detail import DetailScreen

        now = self.clock()
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                screen.show_snapshot(self.snapshot, now)
            elif isinstance(screen, DetailScreen) and screen.is_attached:
                screen.show(self.header_text(), self.snapshot, now)

    def _tick(self) -> None:
        from dapper.tui.screens.detail import DetailScreen

        self.main.tick(self.clock())
        if isinstance(self.screen, DetailScreen):
            self.screen.header.update(self.header_text())

    def header_text(self) -> Text:
        return header_text(
            self.snapshot,
            mode=self.config.mode,
            read_only=self.config.read_only,
            now=self.clock(),
            status=self.connect_error,
        )

    # -- navigation ---------------------------------------------------------------------

    def open_detail(self, pane: str, key: str) -> None:
        from dapper.tui.screens.detail import DetailScreen

        screen = DetailScreen(pane, key, writable=self.writable)
        self.push_screen(screen)
        screen.call_after_refresh(screen.show, self.header_text(), self.snapshot, self.clock())

    def action_runbooks(self) -> None:
        from dapper.tui.screens.runbook import open_runbooks

        open_runbooks(self)

    def action_help(self) -> None:
        from dapper.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.help_text()))

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
            for source in self.collector.SOURCES:
                self.refresh_source(source)

    # -- actions ------------------------------------------------------------------------

    def find_row(self, pane: str, key: str) -> Any | None:
        spec = PANE_BY_ID[pane]
        return next((r for r in spec.rows(self.snapshot) if spec.row_key(r) == key), None)

    def request_action(self, action_id: str, pane: str, key: str) -> None:
        """Confirm, then run an action in a worker. Refused outright when read-only."""
        from dapper.tui.screens.confirm import ConfirmScreen, TypedConfirmScreen

        spec = ACTION_BY_ID.get(action_id)
        if not self.writable or spec is None or spec.pane != pane:
            self.notify("read-only: actions are disabled", severity="warning", timeout=3)
            return
        operations = getattr(self.collector, "operations", None)
        if operations is None:
            self.notify("not connected yet (or read-only)", severity="warning", timeout=3)
            return
        row = self.find_row(pane, key)
        if row is None:
            self.notify(f"{PANE_BY_ID[pane].noun} {key} is gone", severity="warning", timeout=3)
            return
        name = target_name(row)
        why = spec.blocked(row) if spec.blocked else ""
        if why:
            self.notify(f"{spec.title(row)} {name}: {why}", severity="warning", timeout=4)
            return
        title = f"{spec.title(row)} {PANE_BY_ID[pane].noun} {name}?"
        body = Text(_explain(spec, row))
        screen: DialogScreen
        if spec.destructive:
            screen = TypedConfirmScreen(title, body, spec.title(row), name)
        else:
            screen = ConfirmScreen(title, body, spec.title(row))

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_worker(
                    self._action_worker(spec, row, operations),
                    group="actions",
                    name=f"{spec.id}:{key}",
                    exit_on_error=False,
                )

        self.push_screen(screen, callback=confirmed)

    async def _action_worker(self, spec: ActionSpec, row: Any, operations: Any) -> None:
        label = f"{spec.title(row)} {target_name(row)}"
        token = self._next_activity
        self._next_activity += 1

        def show(message: str) -> None:
            if token in self._activity:
                self._activity[token] = f"{label}: {fmt.one_line(message)}"
                self._show_activity()

        def progress(message: str) -> None:
            if threading.get_ident() == getattr(self, "_thread_id", None):
                show(message)
            else:
                self.call_from_thread(show, message)

        self._activity[token] = f"{label}…"
        self._show_activity()
        try:
            result = await spec.run(operations, row, progress)
            self.notify(fmt.one_line(result or "done"), title=label, timeout=5)
        except Exception as exc:  # BackendError, ReadOnlyError, or a bug: one line, log it
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            if not hasattr(exc, "reason"):
                log.exception("%s failed", label)
            self.notify(fmt.one_line(reason), title=f"{label} failed", severity="error", timeout=8)
        finally:
            self._activity.pop(token, None)
            self._show_activity()
            for source in ACTION_SOURCES.get(spec.pane, ()):
                self.refresh_source(source)

    def _show_activity(self) -> None:
        self.main.show_activity(list(self._activity.values()))

    # -- command palette ----------------------------------------------------------------

    def palette_commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        main = self.main
        for spec in PANES:
            yield (
                f"Show {spec.title}",
                f"pane {spec.key} (:{spec.aliases[0]})",
                lambda p=spec.id: (self._to_main(), main.action_show_pane(p)),
            )
        yield "Toggle faults only", "! (like k9s ctrl-z)", lambda: main.action_faults()
        yield "Filter the current pane", "/", lambda: main.action_prompt("filter")
        yield "Sort by the next column", "s", lambda: main.action_sort()
        yield "Refresh all sources now", "re-read every source", self.action_refresh_all
        yield "Help: keys of this pane", "?", self.action_help
        yield "Quit", "q / ctrl+c", self.action_quit_app
        from dapper.tui.screens.runbook import palette_entries

        yield from palette_entries(self)
        for spec in PANES:
            for row in spec.rows(self.snapshot):
                key = spec.row_key(row)
                if spec.id != "events":
                    yield (
                        f"Detail {spec.noun} {key}",
                        "enter",
                        lambda p=spec.id, k=key: self.open_detail(p, k),
                    )
        if not self.writable:
            return
        for action in ACTIONS:
            spec = PANE_BY_ID[action.pane]
            for row in spec.rows(self.snapshot):
                if action.blocked and action.blocked(row):
                    continue
                key = spec.row_key(row)
                yield (
                    f"{action.title(row)} {spec.noun} {target_name(row)}",
                    f"{action.key} on the {spec.title} pane (asks first)",
                    lambda a=action.id, p=spec.id, k=key: self.request_action(a, p, k),
                )

    def _to_main(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()


def _explain(spec: ActionSpec, row: Any) -> str:
    texts = {
        "reconcile": "Ask Flux to reconcile it now (annotate requestedAt) and wait until handled.",
        "reconcile_source": "Refresh its source first, then reconcile it, and wait until handled.",
        "suspend_resume": "Flip spec.suspend: Flux stops (or resumes) reconciling it.",
        "cordon": "Mark the node unschedulable; running pods stay.",
        "uncordon": "Let the scheduler place pods on the node again.",
        "drain": "Cordon the node and evict its pods (DaemonSets stay). Workloads move away.",
        "vm_start": "Power on the VM on its Proxmox host.",
        "vm_shutdown": "Ask the guest to shut down (ACPI). The node goes NotReady.",
    }
    return texts.get(spec.id, spec.label)
