"""`?`: the keys that work here, read from the active bindings (read-only shows no actions)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "Close")]

    def __init__(self, body: Text) -> None:
        super().__init__(classes="dialog-screen")
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(self.body)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
