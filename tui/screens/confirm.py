"""Confirmation dialogs: a yes/no one, and one that needs the target's name typed."""

from __future__ import annotations

from dapper.tui.survive import SurvivesErrors
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class DialogScreen(SurvivesErrors, ModalScreen[bool]):
    """Title, body, Cancel and a confirm button; esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: Text, confirm_label: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Static(self.body, classes="dialog-body", markup=False)
            yield from self.extra()
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, id="confirm", variant="warning")

    def extra(self) -> ComposeResult:
        yield Static(
            Text(
                f"y {self.confirm_label.lower()} · n or esc cancel (Cancel has the focus)",
                style="dim",
            ),
            classes="dialog-prompt",
        )

    def on_mount(self) -> None:
        self.initial_focus()

    def initial_focus(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ConfirmScreen(DialogScreen):
    """`y` confirms, `n`/esc cancels; the focused default button is Cancel."""

    BINDINGS = [
        Binding("y", "confirm", "Confirm"),
        Binding("n", "cancel", "Cancel"),
    ]


class TypedConfirmScreen(DialogScreen):
    """For destructive actions: confirm only once the exact target name was typed."""

    def __init__(self, title: str, body: Text, confirm_label: str, expected: str) -> None:
        super().__init__(title, body, confirm_label)
        self.expected = expected

    def extra(self) -> ComposeResult:
        prompt = Text("Type ")
        prompt.append(self.expected, style="bold")
        prompt.append(" to confirm:")
        yield Static(prompt, classes="dialog-prompt")
        yield Input(placeholder=self.expected, id="typed")

    def initial_focus(self) -> None:
        self.query_one("#confirm", Button).disabled = True
        self.query_one("#typed", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value != self.expected

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value == self.expected:
            self.dismiss(True)
        else:
            self.notify("the name does not match", severity="warning", timeout=2)

    def action_confirm(self) -> None:
        if self.query_one("#typed", Input).value == self.expected:
            self.dismiss(True)
