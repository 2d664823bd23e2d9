"""A ScrollView sized by its container, whose content size changes lay out nothing.

Textual answers a new virtual size with a layout of every widget and a repaint of the
whole terminal: at 160x48 under churn that was most of the event loop. A view whose
own size comes from its container (a pane's table, the detail view) only needs its
scrollbars to learn the new size; when one appears or goes, that is a real layout and
goes through as one.
"""

from __future__ import annotations

from textual.geometry import Region, Size
from textual.scroll_view import ScrollView


class FixedScrollView(ScrollView):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._content_only = False  # while True, a layout request is about the content

    def set_content_size(self, size: Size) -> None:
        """The content's size: scrollbars follow, the screen is not laid out again."""
        if size == self.virtual_size:
            return
        self._content_only = True
        try:
            self.virtual_size = size
        finally:
            self._content_only = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> FixedScrollView:
        if layout and self._content_only and not recompose and self.is_attached:
            self._content_only = False
            try:
                self._scroll_update(self.virtual_size)
            finally:
                self._content_only = True
            super().refresh(*regions, repaint=repaint)
            return self
        super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
        return self
