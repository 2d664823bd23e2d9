"""A keyed table with a row cursor that draws each row once, not once per refresh.

Textual's DataTable keys its render caches by a counter that every cell update bumps, so
one changed cell anywhere throws away every rendered line: under churn each refresh drew
every visible row of every table again, cell by cell through Rich's console, and a focus
change did the same. Here a row's line is kept until that row's cells (compared by
identity: the pane's row cache hands back the same tuple for an unchanged row), the
column layout or the styles change. Rows are replaced wholesale by `set_rows`: a list
and a dict, with no per-row bookkeeping to patch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from dapper.tui.widgets.fixed_scroll_view import FixedScrollView
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip

CELL_PADDING = 1  # a space either side of every cell, as DataTable draws them
LINE_CACHE_ROWS = 2000  # rows whose drawn line is kept (a few screens of every pane)

Cells = tuple[Text, ...]


class TableColumn(NamedTuple):
    key: str
    label: Text
    width: int


class _Line(NamedTuple):
    """A row's drawn line and what it was drawn from."""

    cells: Cells
    style: Style
    strip: Strip


class RowTable(FixedScrollView, can_focus=True):
    """Rows of pre-made cells under a fixed header, one row under the cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"row-table--header", "row-table--cursor"}
    DEFAULT_CSS = """
    RowTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        /* no focused tint, unlike DataTable: it is in every line, so a focus change
           would draw every row again; the cursor and the pane's border say it */
        &:focus > .row-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .row-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .row-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .row-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "scroll_top", "Top", show=False),
        Binding("end,ctrl+end", "scroll_bottom", "Bottom", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    @dataclass
    class RowSelected(Message):
        """Enter on a row, or a click on one."""

        table: RowTable
        row_key: str

        @property
        def control(self) -> RowTable:
            return self.table

    @dataclass
    class HeaderSelected(Message):
        """A click on a column's header."""

        table: RowTable
        column_key: str

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.cursor_row = 0
        self._columns: tuple[TableColumn, ...] = ()
        self._order: list[str] = []
        self._cells: Mapping[str, Cells] = {}
        self._lines: dict[str, _Line] = {}  # row key -> its line, without the cursor
        self._header: tuple[tuple[TableColumn, ...], Style, Strip] | None = None
        self._table_width = 0
        self._base_style = Style()  # the widget's own style, taken at each paint

    # -- contents -----------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def columns(self) -> tuple[TableColumn, ...]:
        return self._columns

    def get_row(self, key: str) -> Cells:
        return self._cells[key]

    def set_rows(
        self,
        columns: Sequence[TableColumn],
        order: list[str],
        cells: Mapping[str, Cells],
        *,
        follow: str | None = None,
    ) -> None:
        """Show `order`'s rows (each one's cells in `cells`) under `columns`. The cursor
        goes to `follow`'s row when it is there, else stays at its index."""
        columns = tuple(columns)
        before = self._on_screen()
        relaid = columns != self._columns
        if relaid:
            self._columns = columns
            self._lines.clear()
            self._table_width = sum(c.width + 2 * CELL_PADDING for c in columns)
        self._order = order
        self._cells = cells
        if len(self._lines) > LINE_CACHE_ROWS:
            self._lines = {k: v for k, v in self._lines.items() if k in cells}
            if len(self._lines) > LINE_CACHE_ROWS:
                self._lines.clear()
        if follow is not None and follow in cells:
            self.cursor_row = order.index(follow)
        self.cursor_row = max(0, min(self.cursor_row, len(order) - 1))
        size = Size(self._table_width, len(order) + 1)
        self.set_content_size(size)  # the table's size is its container's, whatever its rows
        top = round(self.scroll_y)
        self._scroll_cursor_into_view()
        if relaid or round(self.scroll_y) != top:
            self.refresh()
            return
        width = self.size.width
        after = self._on_screen()
        for y in range(max(len(before), len(after))):  # only the lines that changed
            old = before[y] if y < len(before) else None
            new = after[y] if y < len(after) else None
            if old is None or new is None or old[1] is not new[1] or old[::2] != new[::2]:
                self.refresh(Region(0, y + 1, width, 1))

    def _on_screen(self) -> list[tuple[str, Cells, bool]]:
        """What each line under the header shows: the row's key, its cells and whether
        the cursor is on it."""
        top = round(self.scroll_y)
        rows = self._order[top : top + self._page]
        cells, cursor = self._cells, self.cursor_row
        return [(k, cells[k], top + i == cursor) for i, k in enumerate(rows)]

    # -- cursor -------------------------------------------------------------------------

    def move_cursor(self, *, row: int, scroll: bool = True, animate: bool = False) -> None:
        if not self._order:
            self.cursor_row = 0
            return
        row = max(0, min(row, len(self._order) - 1))
        if row == self.cursor_row:
            if scroll:
                self._scroll_cursor_into_view()
            return
        old, self.cursor_row = self.cursor_row, row
        self._refresh_row(old)
        self._refresh_row(row)
        if scroll:
            self._scroll_cursor_into_view()

    @property
    def _page(self) -> int:
        """Rows that fit below the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        top, page, row = round(self.scroll_y), self._page, self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + page:
            self.scroll_to(y=row - page + 1, animate=False, force=True)

    def _refresh_row(self, row: int) -> None:
        y = row - round(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_page_down(self) -> None:
        page = self._page
        self.scroll_to(y=self.scroll_y + page, animate=False, force=True)
        self.move_cursor(row=self.cursor_row + page)

    def action_page_up(self) -> None:
        page = self._page
        self.scroll_to(y=self.scroll_y - page, animate=False, force=True)
        self.move_cursor(row=self.cursor_row - page)

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        if self._order:
            self.post_message(self.RowSelected(self, self._order[self.cursor_row]))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        x, y = offset
        if y == 0:
            column = self._column_at(x + round(self.scroll_x))
            if column is not None:
                self.post_message(self.HeaderSelected(self, column.key))
            return
        row = y - 1 + round(self.scroll_y)
        if 0 <= row < len(self._order):
            event.stop()
            self.move_cursor(row=row)
            self.post_message(self.RowSelected(self, self._order[row]))

    def _column_at(self, x: int) -> TableColumn | None:
        left = 0
        for column in self._columns:
            left += column.width + 2 * CELL_PADDING
            if x < left:
                return column
        return None

    def _on_resize(self, event: events.Resize) -> None:
        self._lines.clear()  # lines are filled out to the width
        self._header = None

    # -- drawing ------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base_style = self.rich_style  # once per paint, not per line: it is not cheap
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = round(self.scroll_x), round(self.scroll_y)
        base = self._base_style
        if y == 0:
            strip = self._header_strip(base)
        else:
            row = y - 1 + scroll_y
            if not 0 <= row < len(self._order):
                return Strip.blank(width, base)
            strip = self._row_strip(self._order[row], row == self.cursor_row, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header_strip(self, base: Style) -> Strip:
        style = base + self.get_component_rich_style("row-table--header")
        if self._header is None or self._header[:2] != (self._columns, style):
            labels = tuple(c.label for c in self._columns)
            self._header = (self._columns, style, self._draw(labels, style))
        return self._header[2]

    def _row_strip(self, key: str, cursor: bool, base: Style) -> Strip:
        cells = self._cells[key]
        if cursor:  # one row: not worth a cache slot
            return self._draw(cells, base + self.get_component_rich_style("row-table--cursor"))
        line = self._lines.get(key)
        if line is None or line.cells is not cells or line.style != base:
            line = _Line(cells, base, self._draw(cells, base))
            self._lines[key] = line
        return line.strip

    def _draw(self, cells: Sequence[Text], style: Style) -> Strip:
        """One line: each cell fitted to its column between padding, then filled out to
        the widget's width, all over `style` (a cell's own colours win)."""
        line = Text(style=style, no_wrap=True, end="")
        pad = " " * CELL_PADDING
        for column, cell in zip(self._columns, cells, strict=False):
            fitted = _fit(cell, column.width)
            line.append(pad)
            line.append_text(fitted)
            line.append(" " * (column.width - fitted.cell_len) + pad)
        spare = self.size.width - self._table_width
        if spare > 0:
            line.append(" " * spare)
        if line.spans:
            segments = [s for s in line.render(self.app.console) if s.text]
        else:  # Rich leaves a Text's own style off when it has no spans
            segments = [Segment(line.plain, style)]
        return Strip(segments, max(self._table_width, self.size.width)).simplify()


def _fit(cell: Text, width: int) -> Text:
    """`cell`, cut to `width` cells when it is wider (padding is the line's own)."""
    if cell.cell_len <= width:
        return cell
    fitted = cell.copy()
    fitted.truncate(width, overflow=cell.overflow or "fold")
    return fitted
