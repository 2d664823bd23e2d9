"""`?`: the console's own keys for where you are, grouped, then one line of navigation.

Built from the screen's live bindings, so read-only mode (action keys only say so) lists no
actions, and a key another part of the console adds shows up under "More".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dapper.tui.pane_registry import pane_registry
from dapper.tui.pane_spec import PaneSpec
from dapper.tui.survive import SurvivesErrors
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from dapper.tui.app import DapperApp

GROUP_WIDTH, KEY_WIDTH = 9, 11
# actions the fixed groups below already describe; anything else bound is listed under More
COVERED = {
    "show_pane",
    "cycle_pane",
    "prompt",
    "faults",
    "sort",
    "help",
    "clear",
    "quit_app",
    "act",
    "back",
    "select_cursor",
    "command_palette",
    "dismiss_help",
}
NAVIGATION = "↑↓ j k move · g G top/bottom · pgup pgdn page · click a row or a header"

Rows = list[tuple[str, str]]


def _group(t: Text, title: str, rows: Rows) -> None:
    """`Title    key        what`, the title only on the group's first line."""
    for i, (key, what) in enumerate(rows):
        label = title if i == 0 else ""
        t.append(label, style="bold cyan")
        t.append(" " * (GROUP_WIDTH - len(label)))
        t.append(f"{key:<{KEY_WIDTH}}", style="bold")
        t.append(f"{what}\n")


def own_bindings(screen: Screen[Any], app: App[Any]) -> Iterator[Binding]:
    """Bindings of the console's own screen and app (not Textual's built-in ones, not the
    table's navigation), shown in the footer or not."""
    for active in screen.active_bindings.values():
        node, binding = active.node, active.binding
        name = binding.action.split("(")[0].split(".")[-1]
        method = getattr(type(node), f"action_{name}", None)
        ours = getattr(method, "__module__", "").startswith("dapper.")
        if node in (screen, app) and binding.description and ours:
            yield binding


def _more(screen: Screen[Any], app: App[Any]) -> Rows:
    """Keys the groups above do not cover (e.g. one another part of the console binds)."""
    rows: Rows = []
    seen: set[str] = set()
    for binding in own_bindings(screen, app):
        action = binding.action.split("(")[0].split(".")[-1]
        if action in COVERED or action in seen:
            continue
        seen.add(action)
        rows.append((app.get_key_display(binding), binding.description))
    return rows


def help_text(app: DapperApp) -> Text:
    """The help for the app's current screen (the one this modal will cover). The panes,
    their number keys, jump names and commands come from the pane registry."""
    from dapper.tui.screens.detail import DetailScreen
    from dapper.tui.screens.main import MainScreen

    screen = app.screen
    registry = pane_registry()
    writable = app.writable
    t = Text(no_wrap=True, overflow="ellipsis")
    pane: PaneSpec | None = None
    if isinstance(screen, DetailScreen):
        pane = registry.get(screen.pane)
        t.append(f"Keys · {pane.noun} detail\n", style="bold reverse")
        _group(t, "View", [("esc", "back to the list"), ("↑↓ pgup pgdn", "scroll")])
    elif isinstance(screen, MainScreen):
        pane = registry.get(screen.active)
        t.append(f"Keys · {pane.title} pane\n", style="bold reverse")
        numbers = " ".join(f"{p.key} {p.title}" for p in registry.ordered())
        jumps = " ".join(f":{name}" for name in registry.jump_names())
        _group(
            t,
            "Panes",
            [
                (registry.key_range(), numbers),
                ("tab S-tab", "next / previous pane"),
                ("enter", f"detail of the {pane.noun} under the cursor"),
            ],
        )
        _group(
            t,
            "View",
            [
                ("/", "filter this pane (enter keeps, esc clears)"),
                ("!", "faults only, in every pane (esc clears)"),
                ("s", "sort by the next column (or click a header)"),
                (":", f"jump: {jumps}"),
                ("ctrl+p", "command palette: panes, views, actions"),
            ],
        )
    else:
        t.append("Keys\n", style="bold reverse")
    if pane is not None and writable:
        _group(
            t,
            "Actions",
            [(c.key, c.label + _how_confirmed(c)) for c in pane.commands],
        )
    elif not writable:
        t.append("Actions", style="bold cyan")
        t.append(" " * (GROUP_WIDTH - len("Actions") - 1))
        t.append(" READ-ONLY ", style="bold magenta on bright_white")
        t.append(" action keys only say so\n", style="bold magenta")
    _group(t, "More", _more(screen, app))
    _group(
        t,
        "Header",
        [
            ("4s ago", "age of the data on screen; ⚠ stale: a source fails"),
            ("gpu slots", "time-slicing slots in use / offered, not GPUs"),
        ],
    )
    _group(t, "Quit", [("q ctrl+c", "quit (asks only while an action runs)"), ("esc ?", "close")])
    t.append(NAVIGATION, style="dim")
    return t


class HelpScreen(SurvivesErrors, ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close")]

    def __init__(self, body: Text) -> None:
        super().__init__(classes="dialog-screen")
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(self.body, markup=False)

    def on_mount(self) -> None:
        dialog = self.query_one(VerticalScroll)
        dialog.styles.padding = (0, 1)  # every line counts at 80x24
        dialog.styles.max_height = "100%"
        dialog.focus()  # arrows and pgup/pgdn scroll a help longer than the screen

    def show(self, body: Text) -> None:
        """Show `body` the next time this (kept) screen is pushed."""
        if body == self.body:
            return
        self.body = body
        if self.is_mounted:
            self.query_one(Static).update(body)
            self.query_one(VerticalScroll).scroll_home(animate=False)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


def _how_confirmed(command: Any) -> str:
    if command.runbook is not None:
        return " (opens its runbook)"
    return " (type the name to confirm)" if command.destructive else " (asks)"
