"""The shape of a pane: one PaneSpec says everything the console needs to show it.

A spec carries its rows, columns (with drop priority), faults, detail builder, commands,
keys, jump names, grid slot and header count; the pane bar, number keys, `:` jump, help,
command palette, wide grid and header all read it from the registry (pane_registry.py).
Pure data and functions over a ClusterSnapshot, no widgets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dapper.backends.model import ClusterSnapshot, Count, Summary
from dapper.tui.pane_commands import PaneCommand
from rich.console import RenderableType
from rich.text import Text


@dataclass(frozen=True)
class Column:
    """One table column. Lower `priority` survives longer when the pane is narrow."""

    key: str
    label: str
    priority: int
    cell: Callable[[Any, float], Text]
    sort: Callable[[Any], Any] | None = None
    max_width: int = 24
    fill: bool = False  # takes the width left over (the message-like column)
    # A name that tells rows apart: it needs only `min_width` to stay, takes spare width
    # before the fill column (up to max_width), and a cut keeps both ends (`a/ext…stores`).
    # A fill column with a min_width competes with that much (a message worth reading).
    min_width: int = 0
    # A usage 0..1: drawn as a bar before the cell's text when the pane has room left.
    bar: Callable[[Any], float | None] | None = None
    # The cell reads `now` (an age): drawn again on every refresh. Other cells are drawn
    # again only when their row's data changed (a table keeps them per row).
    timed: bool = False

    @property
    def is_name(self) -> bool:
        return bool(self.min_width) and not self.fill


@dataclass(frozen=True)
class GridSlot:
    """Where the pane sits in the wide layout's grid: top-left cell (from 0) and spans."""

    row: int
    column: int
    rows: int = 1
    columns: int = 1


@dataclass(frozen=True)
class HeaderCount:
    """The pane's `label good/total ✗errors` in the header. The built-in panes read the
    shared summary (the counts `dapper-tui status` prints); a new pane may count from the
    snapshot itself. `allocation`: good may not exceed total (GPU units)."""

    label: str
    count: Callable[[Summary, ClusterSnapshot], Count]
    allocation: bool = False


DetailBuilder = Callable[[Any, ClusterSnapshot, float], RenderableType]


@dataclass(frozen=True)
class PaneSpec:
    id: str
    title: str
    key: str  # the number key that shows it
    order: int  # place in the pane bar, the number keys and tab cycling
    aliases: tuple[str, ...]  # `:` jump names, the first is the one help shows
    sources: tuple[str, ...]  # whose failure makes this pane stale (first is primary)
    rows: Callable[[ClusterSnapshot], Sequence[Any]]
    row_key: Callable[[Any], str]
    fault: Callable[[Any], bool]
    columns: tuple[Column, ...]
    noun: str  # "node", "VM", ...
    detail: DetailBuilder  # enter on a row
    grid: GridSlot  # its cell in the wide layout
    help: str = ""  # what it lists, for the command palette
    commands: tuple[PaneCommand, ...] = ()  # keys that act on the selected row
    header: HeaderCount | None = None  # its count in the header, if any
    palette_rows: bool = True  # offer "Detail <row>" in the palette (not for event rows)

    def command(self, command_id: str) -> PaneCommand | None:
        return next((c for c in self.commands if c.id == command_id), None)

    def find_row(self, snapshot: ClusterSnapshot, key: str) -> Any | None:
        return next((r for r in self.rows(snapshot) if self.row_key(r) == key), None)


def fault_subjects(snapshot: ClusterSnapshot, pane: str) -> set[str]:
    """Subjects the collector itself flagged for a pane."""
    return {f.subject for f in snapshot.faults if f.pane == pane}


def is_fault(spec: PaneSpec, row: Any, flagged: set[str]) -> bool:
    return spec.fault(row) or spec.row_key(row) in flagged


def fit_columns(
    columns: Sequence[Column], widths: dict[str, int], available: int, padding: int = 2
) -> list[Column]:
    """Keep the most important columns that fit in `available` cells, in display order.

    Columns are dropped lowest-priority first, never wrapped; the first column always stays.
    """
    keep = list(columns)
    while len(keep) > 1 and sum(widths[c.key] + padding for c in keep) > available:
        victim = max(keep[1:], key=lambda c: (c.priority, columns.index(c)))
        keep.remove(victim)
    return keep
