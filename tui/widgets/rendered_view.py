"""A scrolling view of one Rich renderable, drawn into lines once per update and width.

A Static in a VerticalScroll renders its content twice for every update: once to
measure its height for the layout, once to paint it. A node's detail at 500 nodes is a
few tables and costs about 20 ms per render, and the detail view is drawn again at each
snapshot. This view draws the renderable once into strips and shows them through the
Line API; the same strips give its height (a content size: no layout of the screen).
"""

from __future__ import annotations

from dapper.tui.widgets.fixed_scroll_view import FixedScrollView
from rich.console import RenderableType
from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip


class RenderedView(FixedScrollView, can_focus=True):
    DEFAULT_CSS = """
    RenderedView {
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;  /* the drawn width does not depend on the scrollbar */
        overflow-x: hidden;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.renderable: RenderableType = Text("")
        self._lines: list[Strip] = []
        self._drawn_width = 0

    def update(self, renderable: RenderableType) -> None:
        """Show `renderable` (drawn now if the view has a size, else at its first)."""
        self.renderable = renderable
        self._draw(self.scrollable_content_region.width)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._drawn_width:
            self._draw(width)

    def _draw(self, width: int) -> None:
        if width <= 0:
            return
        console = self.app.console
        options = console.options.update(width=width, min_width=width, max_width=width)
        lines = console.render_lines(self.renderable, options, style=self.rich_style)
        self._lines = [Strip(line, width) for line in lines]
        self._drawn_width = width
        self.set_content_size(Size(width, len(self._lines)))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if 0 <= index < len(self._lines):
            return self._lines[index]
        return Strip([Segment(" " * width, self.rich_style)], width)
