"""Command palette (ctrl+p): every pane, every view toggle and, when writable, every pane
command; all from the app's `palette_commands` (panes from the pane registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content


class DapperCommands(Provider):
    """Commands come from the app, so read-only mode simply offers no pane commands."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from dapper.tui.app import DapperApp  # the app imports this module

        app = self.app
        assert isinstance(app, DapperApp)
        return list(app.palette_commands())

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(Content(name), callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
