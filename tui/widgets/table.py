"""A DataTable over one pane's rows that updates in place, keeping the cursor on its row.

Rows are keyed by the object's identity (node name, vmid, ...). A refresh only calls
`update_cell` for cells whose text changed; the table is rebuilt only when the row set,
their order or the fitted columns change, and the cursor is put back on the same key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

from dapper.backends.model import ClusterSnapshot
from dapper.tui import format as fmt
from dapper.tui.messages import CommandRequested, OpenDetail
from dapper.tui.pane_spec import Column, PaneSpec, fault_subjects, fit_columns, is_fault
from dapper.tui.survive import SurvivesErrors
from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.widgets import DataTable

FIXED_WIDTH = 12  # columns whose max_width is at most this always take exactly that width
BAR_WIDTH = 6  # a usage bar, drawn only with this much room to spare
NAME_FIRST = 3  # columns of this drop priority and above give way to a name shown whole
PATCH_LIMIT = 50  # rows added plus removed beyond which a refresh rebuilds the table
RENDER_CACHE_ROWS = 400  # DataTable's row and line render caches (default 1,000)
RENDER_CACHE_CELLS = 4000  # and its cell render cache (default 10,000)


class ResourceTable(SurvivesErrors, DataTable):
    """The table of one pane. Command keys are bound on the instance, and only when writable."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Detail", show=True),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, spec: PaneSpec, *, writable: bool, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id, cursor_foreground_priority="renderable")
        self.spec = spec
        self.writable = writable
        self.filter_text = ""
        self.faults_only = False
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.total = 0
        self.fault_count = 0
        self.shown = 0
        self._objects: dict[str, Any] = {}
        self._order: list[str] = []
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._signature: tuple = ()
        self._last: tuple[ClusterSnapshot, float] | None = None
        self._bars: set[str] = set()  # columns drawn with a usage bar at this width
        self._row_cache: dict[str, _RowCells] = {}  # row key -> its data and cells
        # DataTable's render caches are keyed by its update count, so every refresh that
        # changes a cell leaves the older entries dead until evicted. At their default
        # sizes (10,000 cells, 1,000 rows and lines, per table) six tables under churn
        # keep thousands of stale renders. A screen shows ~50 rows: keep a few screens.
        self._cell_render_cache.maxsize = RENDER_CACHE_CELLS
        self._row_render_cache.maxsize = RENDER_CACHE_ROWS
        self._row_renderable_cache.maxsize = RENDER_CACHE_ROWS
        self._line_cache.maxsize = RENDER_CACHE_ROWS
        self._rows_only = False  # while True, a layout request is about this table's rows
        # prepare() may run in a thread: it and apply() take turns with the row cache
        self._prepare_lock = threading.RLock()
        for command in spec.commands:  # read-only: the keys stay, to say why they do nothing
            self._bindings.bind(command.key, f"act('{command.id}')", command.label, show=writable)

    # -- data ---------------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        if not self._order or not (0 <= self.cursor_row < len(self._order)):
            return None
        return self._order[self.cursor_row]

    def selected(self) -> Any | None:
        key = self.selected_key
        return self._objects.get(key) if key else None

    @property
    def showing(self) -> ClusterSnapshot | None:
        return self._last[0] if self._last is not None else None

    def object(self, key: str) -> Any | None:
        return self._objects.get(key)

    def show(self, snapshot: ClusterSnapshot, now: float) -> None:
        """Render the pane's rows of `snapshot` at once (a key changed the view)."""
        self.apply(self.prepare(snapshot, now))

    def view(self) -> tuple:
        """What, besides the snapshot, decides the rows and cells shown."""
        return (
            self.filter_text,
            self.faults_only,
            self.sort_column,
            self.sort_reverse,
            self.size.width,
            self.size.height,
        )

    def prepare(self, snapshot: ClusterSnapshot, now: float) -> TablePlan:
        """Work out the rows, cells and column widths for `snapshot`, touching no widget:
        safe off the event loop (the console prepares refreshes in a thread), and
        serialised with any other prepare of this table.

        A row whose data equals what it was keeps its cells (only ages are drawn again):
        at 1,500 rows, drawing every cell on every refresh was most of the event loop."""
        with self._prepare_lock:
            return self._prepare(snapshot, now, self.view())

    def _prepare(self, snapshot: ClusterSnapshot, now: float, view: tuple) -> TablePlan:
        spec = self.spec
        filter_text, faults_only, sort_column, sort_reverse, width, height = view
        flagged = fault_subjects(snapshot, spec.id)
        rows = list(spec.rows(snapshot))
        total = len(rows)
        faults = [r for r in rows if is_fault(spec, r, flagged)]
        if faults_only:
            rows = faults
        cells = self._cells_of(rows, now)
        if filter_text:
            needle = filter_text.lower()
            rows = [r for r in rows if needle in self._row_cache[spec.row_key(r)].text]
        if sort_column:
            col = next(c for c in spec.columns if c.key == sort_column)
            rows.sort(key=_sort_key(col, cells, spec), reverse=sort_reverse)
        objects = {spec.row_key(r): r for r in rows}
        order = list(objects)
        columns, widths, bars = self._fit(order, cells, width, height)
        signature = tuple((c.key, widths[c.key], self._label(c).plain) for c in columns)
        index = [spec.columns.index(c) for c in columns]
        placed = list(zip(index, columns, strict=True))
        drawing = (signature, frozenset(bars))
        shown_cells: dict[str, tuple[Text, ...]] = {}
        for k in order:
            cached = self._row_cache[k]
            if cached.drawn is None or cached.drawing != drawing:
                drawn = [_drawn(cells[k][i], c, widths[c.key], objects[k], bars) for i, c in placed]
                drawn[0] = drawn[0].copy()  # its own: `_patch` orders rows by its identity
                cached.drawn = tuple(drawn)
                cached.drawing = drawing
            shown_cells[k] = cached.drawn
        return TablePlan(
            snapshot=snapshot,
            now=now,
            view=view,
            total=total,
            fault_count=len(faults),
            objects=objects,
            order=order,
            columns=columns,
            widths=widths,
            bars=bars,
            signature=signature,
            cells=shown_cells,
        )

    def apply(self, plan: TablePlan) -> bool:
        """Bring the table to `plan`, changing only what differs. False (and nothing
        changed) when the view moved on since the plan was made: the caller shows anew."""
        if plan.view != self.view():
            return False
        with self._prepare_lock:  # `_patch` writes into the row cache
            self._last = (plan.snapshot, plan.now)
            self.total = plan.total
            self.fault_count = plan.fault_count
            self.shown = len(plan.order)
            self._objects = plan.objects
            self._bars = plan.bars
            if plan.signature != self._signature or not self._patch(
                plan.columns, plan.order, plan.cells
            ):
                self._rebuild(plan.columns, plan.widths, plan.order, plan.cells, plan.signature)
        return True

    def _cells_of(self, rows: list[Any], now: float) -> dict[str, tuple[Text, ...]]:
        """Each row's cells, from the row cache when the row's data is unchanged."""
        spec = self.spec
        timed = [i for i, c in enumerate(spec.columns) if c.timed]
        cache: dict[str, _RowCells] = {}
        cells: dict[str, tuple[Text, ...]] = {}
        for r in rows:
            k = spec.row_key(r)
            hit = self._row_cache.get(k)
            if hit is not None and (hit.row is r or hit.row == r):
                if timed:
                    row = list(hit.cells)
                    for i in timed:
                        row[i] = spec.columns[i].cell(r, now)
                    if tuple(row) != hit.cells:
                        hit = _RowCells(r, tuple(row))
                hit.row = r
            else:
                hit = _RowCells(r, tuple(c.cell(r, now) for c in spec.columns))
            cache[k] = hit
            cells[k] = hit.cells
        self._row_cache = cache
        return cells

    def rerender(self) -> None:
        if self._last is not None:
            self.show(*self._last)

    def _label(self, col: Column) -> Text:
        if col.key != self.sort_column:
            return Text(col.label)
        return Text(col.label + ("▼" if self.sort_reverse else "▲"), style="bold")

    def _fit(
        self, order: list[str], cells: dict[str, tuple[Text, ...]], width: int, height: int
    ) -> tuple[list[Column], dict[str, int], set[str]]:
        spec = self.spec
        widths: dict[str, int] = {}
        for i, col in enumerate(spec.columns):
            label = cell_len(col.label) + 1  # room for the sort arrow
            if col.max_width <= FIXED_WIDTH and not col.fill:
                widths[col.key] = max(label, col.max_width)
                continue
            content = max((self._row_cache[k].widths[i] for k in order), default=0)
            widths[col.key] = max(label, min(col.max_width, content))
        available = width or 80
        if len(order) > height - 1:
            available -= self.styles.scrollbar_size_vertical
        fit_widths = dict(widths)
        for col in spec.columns:
            if col.fill:  # a message column competes with its label's width, or min_width
                least = max(cell_len(col.label) + 1, col.min_width)
                fit_widths[col.key] = min(widths[col.key], least)
            elif col.is_name:  # a name competes with the width that still tells rows apart
                fit_widths[col.key] = min(widths[col.key], col.min_width)
        # a column with nothing in any row (SUSP when nothing is suspended, MESSAGE when all
        # is well) gives its width to the others; it comes back with its first value
        index = {c.key: i for i, c in enumerate(spec.columns)}
        candidates = [
            c
            for c in spec.columns
            if c.priority == 0
            or any(self._row_cache[k].widths[index[c.key]] for k in order)
            or not order
        ]

        # a whole name beats columns the detail view shows anyway (priority NAME_FIRST+)
        def need(cols: list[Column]) -> int:
            return sum((widths if c.is_name else fit_widths)[c.key] + 2 for c in cols)

        while need(candidates) > available:
            optional = [c for c in candidates if c.priority >= NAME_FIRST]
            if not optional:
                break
            candidates.remove(max(optional, key=lambda c: (c.priority, index[c.key])))
        fitted = fit_columns(candidates, fit_widths, available)
        spare = available - sum(fit_widths[c.key] + 2 for c in fitted)
        fill = next((c for c in fitted if c.fill), None)
        if fill is not None:  # a whole name beats the message's minimum: it keeps its label
            spare += fit_widths[fill.key] - (cell_len(fill.label) + 1)
        for col in fitted:  # names take spare width first, then the message
            if col.is_name and spare > 0:
                grown = min(widths[col.key], fit_widths[col.key] + spare)
                spare -= grown - fit_widths[col.key]
                widths[col.key] = grown
            elif col.is_name:
                widths[col.key] = fit_widths[col.key]
        # then usage bars where the width allows: all of the pane's or none (a CPU bar
        # beside a bare MEM figure reads as if memory had none)
        barred = [c for c in fitted if c.bar is not None]
        bars: set[str] = set()
        if barred and spare >= len(barred) * (BAR_WIDTH + 1):
            for col in barred:
                widths[col.key] += BAR_WIDTH + 1
                bars.add(col.key)
        if fill is not None:
            others = sum(widths[c.key] + 2 for c in fitted if c is not fill)
            widths[fill.key] = max(cell_len(fill.label) + 1, available - others - 2)
        return fitted, widths, bars

    def _rebuild(
        self,
        columns: list[Column],
        widths: dict[str, int],
        order: list[str],
        cells: dict[str, tuple[Text, ...]],
        signature: tuple,
    ) -> None:
        keep = self.selected_key
        row_index = self.cursor_row
        with self.app.batch_update():
            if signature != self._signature:
                self.clear(columns=True)
                for col in columns:
                    self.add_column(self._label(col), key=col.key, width=widths[col.key])
            else:
                self.clear()
            for key in order:
                self.add_row(*cells[key], key=key)
            self._signature = signature
            self._order = order
            self._cells = cells
            if keep in order:
                self.move_cursor(row=order.index(keep), animate=False)
            elif order:
                self.move_cursor(row=min(row_index, len(order) - 1), animate=False)

    def _patch(
        self, columns: list[Column], order: list[str], cells: dict[str, tuple[Text, ...]]
    ) -> bool:
        """Bring the rows to `order` and `cells` in place: changed cells, a few rows added
        or removed, a new order by sorting. False when a rebuild is cheaper (many rows
        come or go): rebuilding re-adds every row, which is what a refresh must avoid at
        1,500 rows (row adds and removes are each linear in the table)."""
        old_keys, new_keys = set(self._order), set(order)
        gone, added = old_keys - new_keys, new_keys - old_keys
        if len(gone) + len(added) > PATCH_LIMIT:
            return False
        keep = self.selected_key
        with self.app.batch_update(), self._rows_only_changes():
            for key in gone:
                self.remove_row(key)
                del self._cells[key]
            for key, row in cells.items():
                old = self._cells.get(key)
                if old is None:
                    self.add_row(*row, key=key)
                    self._cells[key] = row
                    continue
                if old is row:  # unchanged: the row cache kept the very tuple the table holds
                    continue
                if old == row:  # equal anew: keep the table's, so next time is an `is`
                    self._row_cache[key].drawn = old
                    continue
                for i, text in enumerate(row):
                    if old[i] is not text:  # the table then holds exactly `row`
                        self.update_cell(key, columns[i].key, text)
                self._cells[key] = row
            if order != self._order_in_table(order):
                rank = {id(self._cells[k][0]): i for i, k in enumerate(order)}
                first = columns[0].key
                self.sort(first, key=lambda cell: rank[id(cell)])
            self._order = order
            if keep in new_keys:
                self.move_cursor(row=order.index(keep), animate=False)
        return True

    def _order_in_table(self, wanted: list[str]) -> list[str]:
        """The keys in the table's current row order (only called when sizes match)."""
        if len(self.rows) != len(wanted):
            return []
        return [str(row.key.value) for row in self.ordered_rows]

    def _update_dimensions(self, new_rows: Any) -> None:
        """Columns have the widths this table fitted and rows are one line, so measuring
        every cell of every new row (12,000 cells at 1,500 Kustomizations, on the event
        loop) changes nothing: only the virtual size needs setting."""
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
            return
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        with self._rows_only_changes():
            self.virtual_size = Size(
                width + self._row_label_column_width, self._total_row_height + header
            )

    @contextmanager
    def _rows_only_changes(self) -> Iterator[None]:
        self._rows_only = True
        try:
            yield
        finally:
            self._rows_only = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        """A few rows more or fewer is no reason to lay out the whole screen.

        Textual answers a changed row count (a new virtual size) with a layout of every
        widget and a repaint of the whole terminal: at 160x48 under churn that was most of
        the event loop. The table's own size comes from the grid, not from its rows, so
        only its scrollbars need to learn the new size; when one appears or goes, that
        is a real layout and goes through as one."""
        if layout and self._rows_only and not recompose and self.is_attached:
            self._rows_only = False
            try:
                self._scroll_update(self.virtual_size)
            finally:
                self._rows_only = True
            return super().refresh(*regions, repaint=repaint)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    # -- input --------------------------------------------------------------------------

    def on_resize(self) -> None:
        self.rerender()

    def action_select_cursor(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(OpenDetail(self.spec.id, key))

    def action_act(self, command: str) -> None:
        self.post_message(CommandRequested(command, self.spec.id, self.selected_key))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = str(event.column_key.value)
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self.rerender()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter goes through action_select_cursor; a click on a row lands here
        self.post_message(OpenDetail(self.spec.id, str(event.row_key.value)))

    def cycle_sort(self) -> str:
        """`s`: sort by the next visible column (then back to the snapshot's order)."""
        visible = [c.key for c in self.spec.columns if c.key in {s[0] for s in self._signature}]
        if self.sort_column is None:
            self.sort_column = visible[0] if visible else None
        else:
            i = visible.index(self.sort_column) if self.sort_column in visible else -1
            self.sort_column = visible[i + 1] if i + 1 < len(visible) else None
        self.sort_reverse = False
        self.rerender()
        return self.sort_column or "default order"


@dataclass(frozen=True)
class TablePlan:
    """A table's rows for one snapshot and view, worked out off the event loop."""

    snapshot: ClusterSnapshot
    now: float
    view: tuple
    total: int
    fault_count: int
    objects: dict[str, Any]
    order: list[str]
    columns: list[Column]
    widths: dict[str, int]
    bars: set[str]
    signature: tuple
    cells: dict[str, tuple[Text, ...]]


class _RowCells:
    """One row's data as last drawn, its cells, their widths and plain text (for the
    filter), and the cells as shown at the table's current column widths."""

    __slots__ = ("cells", "drawing", "drawn", "row", "text", "widths")

    def __init__(self, row: Any, cells: tuple[Text, ...]) -> None:
        self.row = row
        self.cells = cells
        self.widths = tuple(cell_len(c.plain) for c in cells)
        self.text = " ".join(c.plain for c in cells).lower()
        self.drawn: tuple[Text, ...] | None = None
        self.drawing: tuple | None = None


def _drawn(text: Text, col: Column, width: int, row: Any, bars: set[str]) -> Text:
    """A cell as shown: a name cut in the middle, a usage with its bar when it fits."""
    if col.bar is not None and col.key in bars:
        return fmt.bar(col.bar(row), BAR_WIDTH).append(" ").append_text(text)
    return _cut(text, col, width)


def _cut(text: Text, col: Column, width: int) -> Text:
    """A name column's cell, cut in the middle when it is wider than its column."""
    return fmt.middle_cut(text, width) if col.is_name else text


def _sort_key(col: Column, cells: dict[str, tuple[Text, ...]], spec: PaneSpec):
    index = spec.columns.index(col)

    def key(row: Any) -> tuple:
        if col.sort is not None:
            try:
                value = col.sort(row)
                return (0, value)
            except TypeError:  # pragma: no cover - mixed types; fall back to text
                pass
        return (1, cells[spec.row_key(row)][index].plain)

    return key
