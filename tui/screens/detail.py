"""Enter on a row: everything the snapshot knows about it, live-updating; esc goes back."""

from __future__ import annotations

from dapper.backends.model import ClusterSnapshot, Node
from dapper.tui import format as fmt
from dapper.tui.app import DapperApp
from dapper.tui.messages import CommandRequested
from dapper.tui.pane_registry import pane_registry
from dapper.tui.survive import SurvivesErrors
from dapper.tui.trends import NodeTrends
from dapper.tui.widgets.bars import TextLine, key_bar_text
from dapper.tui.widgets.rendered_view import RenderedView
from rich.console import Group, RenderableType
from rich.text import Text
from textual import getters
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen


class DetailScreen(SurvivesErrors, Screen[None]):
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]
    app = getters.app(DapperApp)

    def __init__(self, pane: str, key: str, *, writable: bool) -> None:
        super().__init__(classes="detail-screen")
        self.pane = pane
        self.key = key
        self.spec = pane_registry().get(pane)
        self.header = TextLine(id="header")
        self.body = RenderedView(id="detail-scroll")
        self.content: RenderableType = Text("")  # what the body shows (tests read it)
        self.shown_key: str | None = None
        for command in self.spec.commands:  # read-only: bound only to say so
            self._bindings.bind(command.key, f"act('{command.id}')", command.label)
        commands = self.spec.commands if writable else ()
        self.keys = TextLine(id="keys")
        self.keys.update(
            key_bar_text(
                [("esc", "back"), ("?", "help"), ("q", "quit")],
                [(c.key, c.short or c.label.lower()) for c in commands],
            )
        )

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.body
        yield self.keys

    def on_mount(self) -> None:
        self.body.focus()
        self.watch(self.app, "snapshot", self.show, init=False)  # and at each resume
        self.watch(self.app, "now", self._tick, init=False)

    def on_screen_resume(self) -> None:
        """Kept between uses (one per pane): pushed again, maybe for another row."""
        if self.shown_key != self.key:
            self.body.scroll_home(animate=False)
        self.show(self.app.snapshot)

    def show(self, snapshot: ClusterSnapshot) -> None:
        if not self.is_current:  # kept off screen: drawn again when pushed
            return
        self.shown_key = self.key
        self.header.update(self.app.header_text(self.header.size.width))
        spec = self.spec
        row = spec.find_row(snapshot, self.key)
        if row is None:
            self.content = Text(f"{spec.noun} {self.key} is no longer in the snapshot", "dim")
        else:
            self.content = spec.detail(row, snapshot, self.app.clock())
            if isinstance(row, Node) and isinstance(self.content, Group):
                # under the title: the session's trend, which no snapshot holds
                self.content.renderables.insert(1, node_trend(self.app.trends, row.name))
        self.body.update(self.content)

    def _tick(self) -> None:
        if not self.is_current:
            return
        self.header.update(self.app.header_text(self.header.size.width))

    def action_back(self) -> None:
        self.dismiss()

    def action_act(self, command: str) -> None:
        self.post_message(CommandRequested(command, self.pane, self.key))


TREND_WIDTH = 40


def node_trend(trends: NodeTrends, node: str) -> Text:
    """`cpu ███░░░░░ 26%  ▁▂▂▃▅▃▂  mem …`: now as a bar, the session as a sparkline."""
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, values) in enumerate((("cpu", trends.cpu(node)), ("mem", trends.mem(node)))):
        now = values[-1] if values else None
        t.append("  " if i == 0 else "   ")
        t.append(f"{label} ", style="dim")
        t.append_text(fmt.bar(now, 8))
        t.append(f" {fmt.percent(now):>4} ")
        t.append_text(fmt.sparkline(values, TREND_WIDTH // 2))
    return t
