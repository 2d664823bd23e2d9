"""The `/` and `:` prompt: an Input whose typing repaints the line, not the screen."""

from __future__ import annotations

from typing import Self

from textual.geometry import Region
from textual.widgets import Input


class PromptInput(Input):
    """Input sets its virtual width from the text on every keystroke, which Textual answers
    with a layout of every widget on the screen (at 160x48 most of a filter key's cost).
    The prompt's size is fixed by its line, so only its own scrolling needs the new width."""

    _typing = False

    def _watch_value(self, value: str) -> None:
        self._typing = True
        try:
            super()._watch_value(value)
        finally:
            self._typing = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if layout and self._typing and not recompose and not self.styles.auto_dimensions:
            self._scroll_update(self.virtual_size)
            return super().refresh(*regions, repaint=repaint)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
