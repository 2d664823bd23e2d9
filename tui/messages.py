"""Messages the console's widgets and screens post to the app: small dataclasses, so a
screen asks for something (a detail view, a pane command) without reaching into the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class SourceChanged(Message):
    """A watched source changed; posted from the feed's watcher thread."""

    source: str


@dataclass
class OpenDetail(Message):
    """Enter (or a click) on a pane's row: show everything about it."""

    pane: str
    key: str


@dataclass
class CommandRequested(Message):
    """A pane command's key on a row; `key` is None when no row is selected."""

    command: str
    pane: str
    key: str | None
