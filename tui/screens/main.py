"""The main screen: header, pane bar, the panes (one at a time when small), fault line, footer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dapper.backends.model import ClusterSnapshot
from dapper.tui.ops import actions_for
from dapper.tui.panes import PANE_BY_ID, PANES, find_pane
from dapper.tui.screens.help import own_bindings
from dapper.tui.widgets.bars import TextLine, fault_line_text, key_bar_text, pane_bar_text
from dapper.tui.widgets.pane import ResourcePane
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.events import DescendantFocus, Resize
from textual.screen import Screen
from textual.widgets import Input, Static

if TYPE_CHECKING:
    from dapper.tui.widgets.table import ResourceTable

WIDE_COLUMNS, WIDE_ROWS = 150, 40
PANE_ORDER = ("nodes", "vms", "gpus", "pools", "flux", "events")
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
GRID_ORDER = ("nodes", "flux", "vms", "gpus", "events", "pools")  # wide grid fill order


class MainScreen(Screen):
    BINDINGS = [
        *(Binding(p.key, f"show_pane('{p.id}')", p.title, show=False) for p in PANES),
        Binding("tab", "cycle_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "cycle_pane(-1)", "Previous pane", show=False),
        Binding("slash", "prompt('filter')", "Filter"),
        Binding("exclamation_mark", "faults", "Faults"),
        Binding("s", "sort", "Sort", show=False),
        Binding("colon", "prompt('jump')", "Jump", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("escape", "clear", "Clear filter", show=False),
    ]

    def __init__(self, *, writable: bool) -> None:
        super().__init__(id="main")
        self.writable = writable
        self.panes = {spec.id: ResourcePane(spec, writable=writable) for spec in PANES}
        self.active = "nodes"
        self.faults_only = False
        self.prompt_mode = ""
        self.wide = False
        self._snapshot: ClusterSnapshot | None = None
        self._now = 0.0

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
        yield TextLine(id="keys")

    def on_mount(self) -> None:
        # The first frame is the header, pane bar and footer: the panes (and their tables)
        # are mounted right after it. Laying out and drawing six empty bordered panes
        # would double the time to that first frame, and no data can be there yet.
        self.call_after_refresh(self._build_visible)

    async def _build_visible(self) -> None:
        if not self.is_attached:  # the app closed before its first refresh ended
            return
        if self.panes[self.active].parent is None:
            await self.query_one("#starting").remove()
            await self.query_one("#body").mount_all([self.panes[p] for p in GRID_ORDER])
        for pid, pane in self.panes.items():
            if self._visible(pid) and (mounting := pane.build()) is not None:
                await mounting
        self.table.focus()
        self._render_panes()
        self._render_bars()

    # -- layout -------------------------------------------------------------------------

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width, event.size.height)

    def _layout(self, width: int, height: int) -> None:
        wide = width >= WIDE_COLUMNS and height >= WIDE_ROWS
        if wide != self.wide or self.has_class("wide") != wide:
            self.wide = wide
            self.set_class(wide, "wide")
            if wide and self.panes[self.active].built:  # else the first build does it
                self.run_worker(self._build_visible(), group="build-panes")
        self._render_panes()

    @property
    def table(self) -> ResourceTable:
        return self.panes[self.active].table

    def _activate(self, pane: str) -> None:
        self.active = pane
        for pid, p in self.panes.items():
            p.set_class(pid == pane, "active")
        self.panes[pane].build()  # a pane never shown before gets its table now
        self.panes[pane].table.focus()
        self._render_panes()
        self._render_bars()

    def action_show_pane(self, pane: str) -> None:
        self._activate(pane)

    def action_cycle_pane(self, step: int) -> None:
        order = list(PANE_ORDER)
        self._activate(order[(order.index(self.active) + step) % len(order)])

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        pane = event.widget.parent  # wide: clicking or tabbing into a pane makes it active
        if self.wide and isinstance(pane, ResourcePane) and pane.spec.id != self.active:
            self.active = pane.spec.id
            for pid, p in self.panes.items():
                p.set_class(pid == self.active, "active")
            self._render_panes()
            self._render_bars()

    # -- data ---------------------------------------------------------------------------

    def show_snapshot(self, snapshot: ClusterSnapshot, now: float) -> None:
        self._snapshot, self._now = snapshot, now
        self._render_panes()
        self._render_bars()

    def _visible(self, pid: str) -> bool:
        return self.wide or pid == self.active

    def _render_panes(self) -> None:
        if self._snapshot is None:
            return
        for pid, pane in self.panes.items():
            if self._visible(pid):
                pane.show(self._snapshot, self._now)

    def _render_bars(self) -> None:
        if self._snapshot is None:
            return
        try:
            header = self.query_one("#header", TextLine)
        except NoMatches:  # not composed yet
            return
        header.update(self.app.header_text())  # type: ignore[attr-defined]
        pane = self.panes[self.active]
        sort = filter_text = ""
        if pane.built:
            t = pane.table
            filter_text = t.filter_text
            if t.sort_column:
                sort = t.sort_column + ("▼" if t.sort_reverse else "▲")
        self.query_one("#panebar", TextLine).update(
            pane_bar_text(
                [PANE_BY_ID[p] for p in PANE_ORDER],
                self.active,
                faults_only=self.faults_only,
                filter_text=filter_text,
                sort=sort,
            )
        )
        self.query_one("#faultline", TextLine).update(fault_line_text(self._snapshot, self._now))
        self.query_one("#keys", TextLine).update(self._key_bar())

    def _key_bar(self) -> Text:
        """Footer keys for the active pane; action keys only when writable."""
        if self.prompt_mode:
            return key_bar_text(
                [
                    ("enter", "keep" if self.prompt_mode == "filter" else "jump"),
                    ("esc", "clear" if self.prompt_mode == "filter" else "cancel"),
                ]
            )
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
        actions = [(a.key, a.label.lower()) for a in actions_for(self.active)]
        return key_bar_text(keys, actions if self.writable else ())

    def tick(self, now: float) -> None:
        """Once a second: ages in the header and stale banners move on."""
        self._now = now
        self._render_bars()
        if self._snapshot is not None:
            for pid, pane in self.panes.items():
                if self._visible(pid) and pane.built:
                    pane.refresh_banner(self._snapshot, now)

    def show_activity(self, lines: list[str]) -> None:
        line = self.query_one("#activity", TextLine)
        line.display = bool(lines)
        line.update("⟳ " + "   ⟳ ".join(lines) if lines else "")

    # -- keys ---------------------------------------------------------------------------

    def action_faults(self) -> None:
        self.faults_only = not self.faults_only
        for pane in self.panes.values():
            pane.table.faults_only = self.faults_only  # every pane, built or not yet
        self._render_panes()
        self._render_bars()

    def action_sort(self) -> None:
        self.table.cycle_sort()
        self._render_bars()

    def action_prompt(self, mode: str) -> None:
        try:
            prompt = self.query_one("#prompt", Input)
        except NoMatches:  # mounted on first use, not before the first frame
            prompt = Input(id="prompt")
            self.mount(prompt, before=self.query_one("#activity"))
        self.prompt_mode = mode
        if mode == "filter":
            prompt.placeholder = f"filter {PANE_BY_ID[self.active].title} (enter keeps, esc clears)"
            prompt.value = self.table.filter_text
        else:
            prompt.placeholder = "jump to: nodes vms gpus pools ks events (esc cancels)"
            prompt.value = ""
        prompt.display = True
        prompt.focus()
        self._render_bars()

    def _close_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.display = False
        self.prompt_mode = ""
        self.table.focus()
        self._render_bars()

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        if self.prompt_mode == "filter":
            self.table.filter_text = event.value.strip()
            if self._snapshot is not None:
                self.panes[self.active].show(self._snapshot, self._now)
            self._render_bars()

    @on(Input.Submitted, "#prompt")
    async def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        mode = self.prompt_mode
        self._close_prompt()
        if mode != "jump":
            return
        word = event.value.strip().lstrip(":").lower()
        if word in ("q", "quit", "q!"):
            self.app.action_quit_app()  # type: ignore[attr-defined]
            return
        spec = find_pane(word)
        if spec is None:
            self.notify(f"no view named {word!r}: nodes vms gpus pools ks events", timeout=3)
            return
        self._activate(spec.id)

    def action_clear(self) -> None:
        if self.prompt_mode:
            if self.prompt_mode == "filter":
                self.table.filter_text = ""
            self._close_prompt()
        elif self.table.filter_text:
            self.table.filter_text = ""
        elif self.faults_only:
            self.action_faults()
            return
        else:
            return
        self._render_panes()
        self._render_bars()

    # -- rows ---------------------------------------------------------------------------

    def on_resource_table_activated(self, event: ResourceTable.Activated) -> None:
        self.app.open_detail(event.pane, event.key)  # type: ignore[attr-defined]

    def on_resource_table_action_requested(self, event: ResourceTable.ActionRequested) -> None:
        if event.key is None:
            self.notify("no row selected", timeout=2)
            return
        self.app.request_action(event.action, event.pane, event.key)  # type: ignore[attr-defined]
