"""Enter on a row: everything the snapshot knows about it, live-updating; esc goes back."""

from __future__ import annotations

from dapper.backends.model import ClusterSnapshot
from dapper.tui.details import detail_view
from dapper.tui.ops import actions_for
from dapper.tui.panes import PANE_BY_ID
from dapper.tui.widgets.bars import TextLine, key_bar_text
from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static


class DetailScreen(Screen):
    DEFAULT_CSS = """
    DetailScreen #detail-scroll { scrollbar-size-vertical: 1; }
    """
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]

    def __init__(self, pane: str, key: str, *, writable: bool) -> None:
        super().__init__(classes="detail-screen")
        self.pane = pane
        self.key = key
        self.header = TextLine(id="header")
        self.body = Static("", markup=False, id="detail-body")
        self.content: RenderableType = Text("")  # what the body shows (tests read it)
        actions = actions_for(pane) if writable else []
        for action in actions:
            self._bindings.bind(action.key, f"act('{action.id}')", action.label)
        self.keys = TextLine(id="keys")
        self.keys.update(
            key_bar_text(
                [("esc", "back"), ("?", "help"), ("q", "quit")],
                [(a.key, a.label.lower()) for a in actions],
            )
        )

    def compose(self) -> ComposeResult:
        yield self.header
        with VerticalScroll(id="detail-scroll"):
            yield self.body
        yield self.keys

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()

    def show(self, header: Text, snapshot: ClusterSnapshot, now: float) -> None:
        self.header.update(header)
        spec = PANE_BY_ID[self.pane]
        row = next((r for r in spec.rows(snapshot) if spec.row_key(r) == self.key), None)
        if row is None:
            self.content = Text(f"{spec.noun} {self.key} is no longer in the snapshot", "dim")
        else:
            self.content = detail_view(self.pane, row, snapshot, now)
        self.body.update(self.content)

    def action_back(self) -> None:
        self.dismiss()

    def action_act(self, action: str) -> None:
        self.app.request_action(action, self.pane, self.key)  # type: ignore[attr-defined]
