"""A Rich Table of one-line cells, drawn without Rich's per-cell layout machinery.

The detail view's grids and small tables hold single-line, never-wrapping cells. Rich
renders every cell through Padding, a line split and a crop: a node's detail at 500
nodes (30 pods, the Talos services, the events) took about 40 ms on the event loop, at
every open and every snapshot while it is shown. This table keeps Rich's column widths
(its own measurement, so the layout is the same) and draws each row as the same
segments Rich would, cell by cell. A table with any cell Rich could lay out on more than
one line (a newline, a renderable that is not Text) is drawn by Rich as before.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import PaddingDimensions
from rich.segment import Segment
from rich.style import Style
from rich.table import Column, Table
from rich.text import Text


class LineTable(Table):
    """A Table whose rows are one line each (see module); otherwise a Table."""

    @classmethod
    def grid(
        cls,
        *headers: Column | str,
        padding: PaddingDimensions = 0,
        collapse_padding: bool = True,
        pad_edge: bool = False,
        expand: bool = False,
    ) -> LineTable:
        """Table.grid, typed as this class (Rich already builds `cls`)."""
        table = super().grid(
            *headers,
            padding=padding,
            collapse_padding=collapse_padding,
            pad_edge=pad_edge,
            expand=expand,
        )
        assert isinstance(table, LineTable)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self._one_line_layout(console, options)
        if lines is None:
            yield from super().__rich_console__(console, options)
        else:
            yield from lines

    def _one_line_layout(self, console: Console, options: ConsoleOptions) -> list[Segment] | None:
        """The table's segments, or None when a cell could take more than one line."""
        if self.title or self.caption or self.box or not self.columns:
            return None
        if self.show_footer or self.show_lines or self.leading or self.row_styles:
            return None
        if console.get_style(self.style or ""):  # a table style Rich lays under each row
            return None
        if any(row.style for row in self.rows):
            return None
        max_width = self.width if self.width is not None else options.max_width
        widths = self._calculate_column_widths(
            console, options.update_width(max_width - self._extra_width)
        )
        pads = [self._cell_padding(i) for i in range(len(self.columns))]
        for column, width, (left, right) in zip(self.columns, widths, pads, strict=True):
            room = width - left - right
            if not all(_one_line(cell, room) for cell in column.cells):
                return None
        out: list[Segment] = []
        get_style = console.get_style
        if self.show_header:
            heads = [self._header(console, column) for column in self.columns]
            if not all(
                _one_line(head, width - left - right, fits=True)
                for head, width, (left, right) in zip(heads, widths, pads, strict=True)
            ):
                return None  # a header Rich would fold onto a second line
            head_style = get_style(self.header_style or "")
            styles = [head_style + get_style(column.header_style) for column in self.columns]
            out += self._row(console, heads, styles, widths, pads)
        styles = [get_style(column.style or "") for column in self.columns]
        for cells in zip(*(list(column.cells) for column in self.columns), strict=True):
            out += self._row(console, list(cells), styles, widths, pads)
        return out

    @staticmethod
    def _header(console: Console, column: Column) -> Text:
        """The header as Rich makes it of a string (markup, the column's highlighting)."""
        header = column.header
        if isinstance(header, Text):
            return header
        return console.render_str(str(header), highlight=column.highlight)

    def _cell_padding(self, index: int) -> tuple[int, int]:
        """(left, right) padding of column `index`'s cells, as Table._get_cells works it
        out for a one-line row (top and bottom do not apply)."""
        _top, right, _bottom, left = self.padding
        if self.collapse_padding and index != 0:
            left = max(0, left - right)
        if not self.pad_edge:
            if index == 0:
                left = 0
            if index == len(self.columns) - 1:
                right = 0
        return left, right

    def _row(
        self,
        console: Console,
        cells: list[Text],
        styles: list[Style],
        widths: list[int],
        pads: list[tuple[int, int]],
    ) -> Iterator[Segment]:
        blank = Style.null()  # what Padding gives its own spaces
        for cell, style, width, (left, right), column in zip(
            cells, styles, widths, pads, self.columns, strict=True
        ):
            segments: list[Segment] = [Segment(" " * left, blank)] if left else []
            segments += _cell_segments(console, cell, max(0, width - left - right), column)
            if right:
                segments.append(Segment(" " * right, blank))
            yield from Segment.apply_style(segments, style) if style else segments
        yield Segment.line()


_NEWLINE = Text("\n")


def _one_line(cell: object, room: int, *, fits: bool = False) -> bool:
    """Whether Rich would draw `cell` on one line `room` wide: a Text with no line break
    or tab that never wraps or (always, with `fits`) is no wider than the room."""
    if not isinstance(cell, Text) or "\n" in cell.plain or "\t" in cell.plain:
        return False
    return (cell.no_wrap and not fits) or cell.cell_len <= room


def _cell_segments(console: Console, cell: Text, width: int, column: Column) -> list[Segment]:
    """A one-line Text as Rich draws it in a cell `width` wide: through Text.wrap with
    no wrapping (the cell's or the column's justify and overflow), then padded."""
    if width <= 0:  # a column squeezed to nothing: Rich's empty line
        return [Segment("", Style.null())]
    wrapped = cell.wrap(
        console,
        width,
        justify=cell.justify or column.justify or "default",
        overflow=cell.overflow or column.overflow or "fold",
        no_wrap=True,
    )
    segments = list(_NEWLINE.join(wrapped).render(console, end=""))  # as Text renders
    return Segment.adjust_line_length(segments, width, style=Style.null(), pad=True)
