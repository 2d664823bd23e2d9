"""One pane's table: its rows, cells and fitted columns for a snapshot, cursor kept on its row.

Rows are keyed by the object's identity (node name, vmid, ...). A row whose data did not
change keeps its very cells, so the RowTable under it keeps that row's drawn line; only
changed rows are drawn again. The cursor stays on the same key across refreshes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dapper.backends.model import ClusterSnapshot
from dapper.tui import format as fmt
from dapper.tui.messages import CommandRequested, OpenDetail
from dapper.tui.pane_spec import Column, PaneSpec, fault_subjects, fit_columns, is_fault
from dapper.tui.survive import SurvivesErrors
from dapper.tui.widgets.row_table import RowTable, TableColumn
from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding

FIXED_WIDTH = 12  # columns whose max_width is at most this always take exactly that width
BAR_WIDTH = 6  # a usage bar, drawn only with this much room to spare
NAME_FIRST = 3  # columns of this drop priority and above give way to a name shown whole


class ResourceTable(SurvivesErrors, RowTable):
    """The table of one pane. Command keys are bound on the instance, and only when writable."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Detail", show=True),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, spec: PaneSpec, *, writable: bool, id: str | None = None) -> None:
        super().__init__(id=id)
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
        self._signature: tuple = ()
        self._last: tuple[ClusterSnapshot, float] | None = None
        self._bars: set[str] = set()  # columns drawn with a usage bar at this width
        self._row_cache: dict[str, _RowCells] = {}  # row key -> its data and cells
        self._memo: tuple | None = None  # the last snapshot's rows and cells (_rows_and_cells)
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
        rows, total, fault_count, cells = self._rows_and_cells(snapshot, now, faults_only)
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
        placed = tuple(zip(index, columns, strict=True))
        shown_cells = _DrawnRows(self._row_cache, objects, placed, widths, bars, signature)
        return TablePlan(
            snapshot=snapshot,
            now=now,
            view=view,
            total=total,
            fault_count=fault_count,
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
        self._last = (plan.snapshot, plan.now)
        self.total = plan.total
        self.fault_count = plan.fault_count
        self.shown = len(plan.order)
        self._objects = plan.objects
        self._bars = plan.bars
        self._signature = plan.signature
        columns = [TableColumn(c.key, self._label(c), plan.widths[c.key]) for c in plan.columns]
        self.set_rows(columns, plan.order, plan.cells, follow=self.selected_key)
        return True

    def _rows_and_cells(
        self, snapshot: ClusterSnapshot, now: float, faults_only: bool
    ) -> tuple[list[Any], int, int, dict[str, tuple[Text, ...]]]:
        """The rows (all, or the faults), their total, the fault count and every row's
        cells: the same for each key that only filters, sorts or resizes, so kept for
        the last snapshot (at 1,500 rows, working them out was most of a filter key)."""
        memo = self._memo
        if memo is not None and memo[0] is snapshot and memo[1:3] == (now, faults_only):
            return list(memo[3]), memo[4], memo[5], memo[6]
        spec = self.spec
        flagged = fault_subjects(snapshot, spec.id)
        rows = list(spec.rows(snapshot))
        total = len(rows)
        faults = [r for r in rows if is_fault(spec, r, flagged)]
        if faults_only:
            rows = faults
        cells = self._cells_of(rows, now)
        self._memo = (snapshot, now, faults_only, tuple(rows), total, len(faults), cells)
        return rows, total, len(faults), cells

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

    # -- input --------------------------------------------------------------------------

    def on_resize(self) -> None:
        self.rerender()

    def action_select_cursor(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(OpenDetail(self.spec.id, key))

    def action_act(self, command: str) -> None:
        self.post_message(CommandRequested(command, self.spec.id, self.selected_key))

    def on_row_table_header_selected(self, event: RowTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self.rerender()

    def on_row_table_row_selected(self, event: RowTable.RowSelected) -> None:
        event.stop()  # enter goes through action_select_cursor; a click on a row lands here
        self.post_message(OpenDetail(self.spec.id, event.row_key))

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
    cells: Mapping[str, tuple[Text, ...]]


class _DrawnRows(Mapping[str, tuple[Text, ...]]):
    """The plan's rows as shown at its column widths, each drawn when first asked for:
    the table asks only for the rows on screen, so a filter or sort that changes the
    widths of 1,500 rows draws the fifty that show. A row drawn for the same layout
    before is handed back as the very same tuple, which tells the table its line is
    unchanged."""

    def __init__(
        self,
        rows: dict[str, _RowCells],
        objects: dict[str, Any],
        placed: tuple[tuple[int, Column], ...],
        widths: dict[str, int],
        bars: set[str],
        signature: tuple,
    ) -> None:
        self._rows = rows
        self._objects = objects
        self._placed = placed
        self._widths = widths
        self._bars = bars
        self._drawing = (signature, frozenset(bars))

    def __getitem__(self, key: str) -> tuple[Text, ...]:
        row = self._rows[key]
        drawn = row.drawn
        if drawn is None or row.drawing != self._drawing:
            obj, widths, bars, cells = self._objects[key], self._widths, self._bars, row.cells
            drawn = tuple(_drawn(cells[i], c, widths[c.key], obj, bars) for i, c in self._placed)
            row.drawn, row.drawing = drawn, self._drawing
        return drawn

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)


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
