"""LineTable draws exactly what Rich's Table draws for the same one-line cells, at every
width (it only skips Rich's per-cell machinery), and leaves anything else to Rich."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dapper.tui.line_table import LineTable
from rich.console import Console
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

WIDTHS = (8, 13, 20, 31, 44, 60, 80, 117, 160)


def cell(value: str, style: str = "") -> Text:
    text = Text(value, style=style)
    text.no_wrap, text.overflow, text.end = True, "ellipsis", ""
    return text


def styled(*parts: tuple[str, str]) -> Text:
    text = cell("")
    for value, style in parts:
        text.append(value, style=style)
    return text


ROWS = [
    [
        cell("kube-system"),
        cell("cilium-abcde"),
        styled(("Running", "green"), (" 3↻", "dim")),
        cell("12"),
    ],
    [cell("ai"), cell("ollama-7d9f8-xyz"), cell("CrashLoopBackOff", "bold red"), cell("1234567")],
    [cell(""), cell("日本語の名前-ポッド"), cell("Pending", "yellow"), cell("0")],
    [cell("a-very-long-namespace-name-indeed"), cell("x" * 70), cell("🙂 ok"), cell("")],
]


def small_table(cls: type[Table]) -> Table:
    """As the detail builders' `table()`: the second column fills, the last is right."""
    table = cls(
        box=None, padding=(0, 1), pad_edge=False, expand=True, show_edge=False, header_style="dim"
    )
    for i, header in enumerate(("NAMESPACE", "NAME", "STATE", "AGE")):
        fill = i == 1
        table.add_column(
            header,
            no_wrap=not fill,
            ratio=1 if fill else None,
            min_width=min(12, len(header) + 4) if fill else None,
            max_width=None if fill else 36,
            justify="right" if i == 3 else "left",
        )
    for row in ROWS:
        table.add_row(*(c.copy() for c in row))
    return table


def grid(cls: type[Table]) -> Table:
    """As the detail builders' `key  value` grid."""
    table = cls.grid(padding=(0, 1), expand=True)
    table.add_column(width=13, no_wrap=True, style="dim")
    table.add_column(ratio=1)
    for label, value in (("status", "Ready"), ("a label longer than 13", "x" * 90), ("cpu", "")):
        table.add_row(cell(label), cell(value, "green"))
    return table


def lines(
    make: Callable[[type[Table]], Table], cls: type[Table], width: int
) -> list[list[Segment]]:
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    renderable = Padding(make(cls), (0, 0, 0, 2))
    return console.render_lines(renderable, console.options.update_width(width), pad=True)


@pytest.mark.parametrize("make", [small_table, grid])
@pytest.mark.parametrize("width", WIDTHS)
def test_the_same_segments_as_rich(make, width) -> None:
    assert lines(make, LineTable, width) == lines(make, Table, width)


def test_one_line_tables_skip_rich_cell_rendering(monkeypatch) -> None:
    calls = []
    original = Table._render

    def counted(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Table, "_render", counted)
    lines(small_table, LineTable, 80)
    assert calls == []


def test_cells_rich_would_wrap_are_left_to_rich() -> None:
    def wrapping(cls: type[Table]) -> Table:
        table = cls(box=None, expand=True)
        table.add_column("A")
        table.add_column("B", ratio=1)
        table.add_row(Text("one\ntwo"), Text("a long paragraph that wraps " * 4))
        table.add_row("markup [bold]str[/]", Text("tab\there"))
        return table

    for width in (20, 50):
        assert lines(wrapping, LineTable, width) == lines(wrapping, Table, width)
