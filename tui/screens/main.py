"""The main screen: header, pane bar, the panes (one at a time when small), fault line, footer.

Its state (snapshot, active pane, the active pane's filter, faults-only, prompt mode and
sort) is reactive: each change redraws what shows it in its `watch_` method. The panes,
their number keys, the `:` jump names and the wide grid come from the pane registry.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from dapper.backends.model import ClusterSnapshot
from dapper.tui.app import DapperApp
from dapper.tui.pane_registry import pane_registry
from dapper.tui.screens.help import own_bindings
from dapper.tui.survive import SurvivesErrors
from dapper.tui.widgets.bars import TextLine, fault_line_text, key_bar_text, pane_bar_text
from dapper.tui.widgets.prompt import PromptInput
from dapper.tui.widgets.resource_pane import ResourcePane
from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.events import DescendantFocus, Resize
from textual.reactive import Reactive, var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static

if TYPE_CHECKING:
    from dapper.tui.widgets.table import ResourceTable, TablePlan

WIDE_COLUMNS, WIDE_ROWS = 150, 40
TYPING_GAP = 0.2  # seconds without a key before a refresh is put on screen
HOLD_AT_MOST = 1.0  # however fast the keys come, a refresh waits no longer


def typing_hold(last_input: float, now: float, held_since: float) -> float:
    """How much longer a refresh ready since `held_since` waits for the keys to pause."""
    gap = TYPING_GAP - (now - last_input)
    left = HOLD_AT_MOST - (now - held_since)
    return max(0.0, min(gap, left))


# main-screen actions the key bar already names (or leaves to help)
KEY_BAR_ACTIONS = (
    "quit_app",
    "show_pane",
    "cycle_pane",
    "prompt",
    "faults",
    "sort",
    "app.help",
    "clear",
)


class MainScreen(SurvivesErrors, Screen[None]):
    BINDINGS = [
        Binding("tab", "cycle_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "cycle_pane(-1)", "Previous pane", show=False),
        # priority: handled as the key arrives, so the keys a terminal delivered with it
        # (`/ob` in one read) already find the prompt focused, not the table
        Binding("slash", "prompt('filter')", "Filter", priority=True),
        Binding("exclamation_mark", "faults", "Faults"),
        Binding("s", "sort", "Sort", show=False),
        Binding("colon", "prompt('jump')", "Jump", show=False, priority=True),
        Binding("question_mark", "app.help", "Help"),
        Binding("escape", "clear", "Clear filter", show=False, priority=True),
    ]
    app = getters.app(DapperApp)

    # `var`s: their watchers update the widgets a change touches; a `reactive` would also
    # repaint the whole screen on every change (see DapperApp.snapshot)
    snapshot: var[ClusterSnapshot | None] = var(None, always_update=True, init=False)
    active = var("nodes", init=False)
    filter_text = var("", init=False)  # the active pane's filter
    faults_only = var(False, init=False)
    prompt_mode = var("", init=False)  # "", "filter" or "jump"
    # the active pane's sort after `s` (a header click sorts too, and shows on the next
    # tick: the table keeps its own sort, the bar reads it from there)
    sort_label = var("", init=False, always_update=True)
    # Screen's own `focused` repaints the whole screen on every focus change (a pane
    # switch, the prompt opening): at 160x48 that is most of a key's cost. The widgets
    # losing and gaining focus restyle and repaint themselves; nothing else shows focus.
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self, *, writable: bool) -> None:
        super().__init__(id="main")
        self.writable = writable
        self.specs = pane_registry().ordered()
        for spec in self.specs:  # number keys, bound before the first frame
            self._bindings.bind(spec.key, f"show_pane('{spec.id}')", spec.title, show=False)
        self.panes = {spec.id: ResourcePane(spec, writable=writable) for spec in self.specs}
        self.set_reactive(MainScreen.active, self.specs[0].id)
        self.wide = False
        self._now = 0.0
        self._preparing = False  # a thread is working out the panes' rows
        self._prepare_again = False  # and a newer snapshot came meanwhile
        self._prepare_flags = threading.Lock()  # both, between the loop and that thread
        self.shown_snapshot: ClusterSnapshot | None = None  # the last one on screen

    def compose(self) -> ComposeResult:
        size = self.app.size  # decide the layout before the first frame, not after it
        self.wide = size.width >= WIDE_COLUMNS and size.height >= WIDE_ROWS
        self.set_class(self.wide, "wide")
        self.panes[self.active].add_class("active")
        yield TextLine(id="header")
        yield TextLine(id="panebar")
        with Container(id="body"):
            yield Static(Text(" starting…", style="dim"), id="starting")
        activity = TextLine(id="activity")
        activity.display = False
        yield activity
        yield TextLine(id="faultline")
        # composed hidden, not mounted on first use: keys typed right after `/` (a terminal
        # can deliver `/ob` in one read) must find it there to be typed into
        prompt = PromptInput(id="prompt")
        prompt.display = False
        prompt.can_focus = False  # while closed: not the screen's first focus, not a tab stop
        yield prompt
        yield TextLine(id="keys")

    def on_mount(self) -> None:
        self._place_grid()
        self.watch(self.app, "snapshot", self._app_snapshot)
        self.watch(self.app, "now", self.tick, init=False)
        # The first frame is the header, pane bar and footer: the panes (and their tables)
        # are mounted right after it. Laying out and drawing six empty bordered panes
        # would double the time to that first frame, and no data can be there yet.
        self.call_after_refresh(self._build_visible)

    def _app_snapshot(self, snapshot: ClusterSnapshot) -> None:
        self._now = self.app.clock()
        self.snapshot = snapshot

    def _place_grid(self) -> None:
        """The wide layout's grid, from the panes' slots (used only when `.wide`)."""
        registry = pane_registry()
        columns, rows = registry.grid_size()
        body = self.query_one("#body").styles
        body.grid_size_columns, body.grid_size_rows = columns, rows
        body.grid_columns = registry.grid_columns()
        body.grid_rows = " ".join(["1fr"] * rows)
        for spec in self.specs:
            styles = self.panes[spec.id].styles
            styles.column_span, styles.row_span = spec.grid.columns, spec.grid.rows

    async def _build_visible(self) -> None:
        if not self.is_attached:  # the app closed before its first refresh ended
            return
        if self.panes[self.active].parent is None:
            await self.query_one("#starting").remove()
            grid = pane_registry().grid_order()
            await self.query_one("#body").mount_all([self.panes[p.id] for p in grid])
        for pid, pane in self.panes.items():
            if self._visible(pid) and (mounting := pane.build()) is not None:
                await mounting
        self.table.focus()
        self._render_panes()
        self._render_bars()

    @work(exclusive=True, group="build-panes")
    async def _build_visible_worker(self) -> None:
        await self._build_visible()

    # -- layout -------------------------------------------------------------------------

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width, event.size.height)
        self._render_bars()  # the footer fits its keys to the width

    def _layout(self, width: int, height: int) -> None:
        wide = width >= WIDE_COLUMNS and height >= WIDE_ROWS
        if wide != self.wide or self.has_class("wide") != wide:
            self.wide = wide
            self.set_class(wide, "wide")
            if wide and self.panes[self.active].built:  # else the first build does it
                self._build_visible_worker()
        self._render_panes()

    @property
    def table(self) -> ResourceTable:
        return self.panes[self.active].table

    def watch_active(self, active: str) -> None:
        for pid, p in self.panes.items():
            p.set_class(pid == active, "active")
        self._sync_from_table()
        pane = self.panes[active]
        stale = self.snapshot is not None and not pane.shows(self.snapshot)
        if stale and pane.built and pane.table.showing is not None:
            # narrow: the pane comes back at once with the rows it had, and the current
            # snapshot's follow from the thread a moment later, once that is painted (a
            # thread started now would hold the GIL the switch's paint needs)
            self.call_after_refresh(self._prepare_soon)
        else:
            self._render_panes(stale_only=True)  # wide: every pane already shows it
        self._render_bars()

    def _sync_from_table(self) -> None:
        """The active pane's own filter and sort, as the screen's state (no redraw)."""
        table = self.table
        self.set_reactive(MainScreen.filter_text, table.filter_text)
        self.set_reactive(MainScreen.sort_label, self._sort_of(table))

    def _activate(self, pane: str) -> None:
        self.panes[pane].build()  # a pane never shown before gets its table now
        self.panes[pane].table.focus()
        self.active = pane

    def action_show_pane(self, pane: str) -> None:
        self._activate(pane)

    def action_cycle_pane(self, step: int) -> None:
        order = [spec.id for spec in self.specs]
        self._activate(order[(order.index(self.active) + step) % len(order)])

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        pane = event.widget.parent  # wide: clicking or tabbing into a pane makes it active
        if self.wide and isinstance(pane, ResourcePane) and pane.spec.id != self.active:
            self.active = pane.spec.id

    # -- data ---------------------------------------------------------------------------

    def watch_snapshot(self) -> None:
        self._prepare_soon()

    def _prepare_soon(self) -> None:
        """The visible panes' rows are worked out in a thread and applied here, so the
        loop stays free for keys (at 500 nodes that work is tens of milliseconds). One
        preparation at a time; snapshots that land meanwhile fold into the next."""
        with self._prepare_flags:
            if self._preparing:
                self._prepare_again = True
                return
            self._preparing = True
        self.run_worker(self._prepare_panes, thread=True, group="prepare", exit_on_error=False)

    def _prepare_panes(self) -> None:
        again = True
        try:
            while again:
                self._hold_while_typing()  # the rows' CPU is GIL a key's paint waits for
                snapshot, now = self.snapshot, self._now
                if snapshot is None or not self.is_attached:
                    return
                plans = {
                    pid: pane.prepare(snapshot, now)
                    for pid, pane in self.panes.items()
                    if self._visible(pid)
                }
                self._hold_while_typing()
                if not self.app.is_running:
                    return
                self.app.call_from_thread(self._apply_plans, snapshot, now, plans)
                with self._prepare_flags:  # decided with _prepare_soon's own check
                    again, self._prepare_again = self._prepare_again, False
                    self._preparing = again
        finally:
            with self._prepare_flags:
                if not again:
                    self._preparing = False

    def _hold_while_typing(self) -> None:
        """Keys first: a refresh waits (in the thread) for a gap of TYPING_GAP between
        keys, at most HOLD_AT_MOST, so it does not land in the middle of someone moving
        through a table or typing a filter; the data is at most that much later."""
        held = time.monotonic()
        while (wait := typing_hold(self.app.last_input, time.monotonic(), held)) > 0:
            time.sleep(wait)

    def _apply_plans(
        self, snapshot: ClusterSnapshot, now: float, plans: dict[str, TablePlan | None]
    ) -> None:
        if not self.is_attached:
            return
        redo = False
        for pid, pane in self.panes.items():
            if not self._visible(pid):
                continue
            plan = plans.get(pid)
            if plan is not None and pane.built and plan.view != pane.table.view():
                redo = True  # a key changed its view: worked out anew in the thread
                continue
            pane.show(snapshot, now, plan)  # a pane shown since the plans were made: now
        self._render_bars()
        if redo:
            with self._prepare_flags:
                self._prepare_again = True
        else:
            self.shown_snapshot = snapshot

    def _visible(self, pid: str) -> bool:
        return self.wide or pid == self.active

    def _render_panes(self, *, stale_only: bool = False) -> None:
        """Show the snapshot in every visible pane (`stale_only`: in those that do not
        show it yet, e.g. a pane just switched to)."""
        if self.snapshot is None:
            return
        for pid, pane in self.panes.items():
            if self._visible(pid) and not (stale_only and pane.shows(self.snapshot)):
                pane.show(self.snapshot, self._now)

    def _render_bars(self) -> None:
        if self.snapshot is None:
            return
        try:
            header = self.query_one("#header", TextLine)
        except NoMatches:  # not composed yet
            return
        header.update(self.app.header_text(header.size.width))
        self.query_one("#panebar", TextLine).update(
            pane_bar_text(
                self.specs,
                self.active,
                faults_only=self.faults_only,
                filter_text=self.filter_text,
                sort=self._sort_of(self.table) if self.panes[self.active].built else "",
            )
        )
        self.query_one("#faultline", TextLine).update(fault_line_text(self.snapshot, self._now))
        self.query_one("#keys", TextLine).update(self._key_bar())

    def _key_bar(self) -> Text:
        """Footer keys for the active pane; command keys only when writable. (A prompt
        takes this line while open; its placeholder says what enter and esc do.)"""
        keys = [
            ("⏎", "detail"),
            ("/", "filter"),
            ("!", "all rows" if self.faults_only else "faults"),
            (":", "jump"),
        ]
        for b in own_bindings(self, self.app):  # keys other parts of the console bind
            if b.action not in KEY_BAR_ACTIONS and not b.action.startswith(KEY_BAR_ACTIONS):
                keys.append((self.app.get_key_display(b), b.description.lower()))
        keys += [("?", "help"), ("q", "quit")]
        commands = pane_registry().get(self.active).commands
        actions = [(c.key, c.short or c.label.lower()) for c in commands]
        return key_bar_text(keys, actions if self.writable else (), self.size.width)

    def tick(self, now: float) -> None:
        """Once a second: ages in the header and stale banners move on."""
        self._now = now
        self._render_bars()
        if self.snapshot is not None:
            for pid, pane in self.panes.items():
                if self._visible(pid) and pane.built:
                    pane.refresh_banner(self.snapshot, now)

    def show_activity(self, lines: list[str]) -> None:
        line = self.query_one("#activity", TextLine)
        line.display = bool(lines)
        line.update("⟳ " + "   ⟳ ".join(lines) if lines else "")

    # -- keys ---------------------------------------------------------------------------

    def watch_faults_only(self, faults_only: bool) -> None:
        for pane in self.panes.values():
            pane.table.faults_only = faults_only  # every pane, built or not yet
        self._render_panes()
        self._render_bars()

    def watch_filter_text(self, filter_text: str) -> None:
        self.table.filter_text = filter_text
        if self.snapshot is not None:
            self.panes[self.active].show(self.snapshot, self._now)
        self._render_bars()

    def watch_prompt_mode(self) -> None:
        self._render_bars()

    def watch_sort_label(self) -> None:
        self._render_bars()

    def action_faults(self) -> None:
        self.faults_only = not self.faults_only

    def action_sort(self) -> None:
        self.table.cycle_sort()
        self.sort_label = self._sort_of(self.table)

    @staticmethod
    def _sort_of(table: ResourceTable) -> str:
        if not table.sort_column:
            return ""
        return table.sort_column + ("▼" if table.sort_reverse else "▲")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`/` and `:` open the prompt only when it is closed; typed into it, they are text."""
        return not (action == "prompt" and self.prompt_mode)

    def action_prompt(self, mode: str) -> None:
        prompt = self.query_one("#prompt", Input)
        if mode == "filter":
            title = pane_registry().get(self.active).title
            prompt.placeholder = f"filter {title} (enter keeps, esc clears)"
            prompt.value = self.table.filter_text
        else:
            names = " ".join(pane_registry().jump_names())
            prompt.placeholder = f"jump to: {names} (esc cancels)"
            prompt.value = ""
        # in the key bar's line (its placeholder says enter and esc): the panes keep
        # their size, so nothing but that line is painted again
        self.query_one("#keys").display = False
        prompt.display = True
        prompt.can_focus = True
        self.set_focus(prompt)  # now, not after the keys already queued behind this one
        self.prompt_mode = mode

    def _close_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.display = False
        self.query_one("#keys").display = True
        self.set_focus(self.table)
        prompt.can_focus = False
        self.prompt_mode = ""

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        if self.prompt_mode == "filter":
            self.filter_text = event.value.strip()

    @on(Input.Submitted, "#prompt")
    async def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        mode = self.prompt_mode
        self._close_prompt()
        if mode != "jump":
            return
        word = event.value.strip().lstrip(":").lower()
        if word in ("q", "quit", "q!"):
            self.app.action_quit_app()
            return
        spec = pane_registry().find(word)
        if spec is None:
            names = " ".join(pane_registry().jump_names())
            self.notify(f"no view named {word!r}: {names}", timeout=3)
            return
        self._activate(spec.id)

    def action_clear(self) -> None:
        if self.prompt_mode:
            if self.prompt_mode == "filter":
                self.filter_text = ""
            self._close_prompt()
        elif self.filter_text:
            self.filter_text = ""
        elif self.faults_only:
            self.faults_only = False
