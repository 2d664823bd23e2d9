"""Command palette (ctrl+p): every pane, every view toggle and, when writable, every action."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content


class DapperCommands(Provider):
    """Commands come from the app, so read-only mode simply offers no actions."""

    def _commands(self) -> list[tuple[str, str, object]]:
        return list(self.app.palette_commands())  # type: ignore[attr-defined]

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(Content(name), callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)  # type: ignore[arg-type]
