"""Column fitting: which columns a narrow pane keeps, on hand-made columns (no widgets)."""

from __future__ import annotations

from dapper.tui.builtin_panes import NODE_COLUMNS
from dapper.tui.format import styled
from dapper.tui.pane_spec import Column, fit_columns


def _col(key: str, priority: int) -> Column:
    return Column(key, key.upper(), priority, lambda _row, _now: styled(key))


NAME, READY, CPU, POOL = _col("name", 0), _col("ready", 0), _col("cpu", 1), _col("pool", 7)
WIDTHS = {"name": 20, "ready": 8, "cpu": 4, "pool": 16}  # +2 padding each: 22 10 6 18


def keys(columns: list[Column]) -> list[str]:
    return [c.key for c in columns]


def test_everything_fits_when_there_is_room() -> None:
    assert keys(fit_columns([NAME, READY, CPU, POOL], WIDTHS, 56)) == [
        "name",
        "ready",
        "cpu",
        "pool",
    ]


def test_the_lowest_priority_column_goes_first_and_order_is_kept() -> None:
    assert keys(fit_columns([NAME, POOL, READY, CPU], WIDTHS, 55)) == ["name", "ready", "cpu"]
    assert keys(fit_columns([NAME, POOL, READY, CPU], WIDTHS, 37)) == ["name", "ready"]


def test_among_equal_priorities_the_rightmost_goes_first() -> None:
    wide = _col("wide", 0)
    columns = [NAME, READY, wide]
    assert keys(fit_columns(columns, {**WIDTHS, "wide": 8}, 32)) == ["name", "ready"]


def test_the_first_column_always_stays_even_when_nothing_fits() -> None:
    assert keys(fit_columns([POOL, NAME, CPU], WIDTHS, 5)) == ["pool"]


def test_padding_counts_per_column() -> None:
    assert keys(fit_columns([NAME, CPU], WIDTHS, 26, padding=0)) == ["name", "cpu"]
    assert keys(fit_columns([NAME, CPU], WIDTHS, 26, padding=2)) == ["name"]


def test_the_nodes_pane_at_80_columns_keeps_its_important_columns() -> None:
    widths = {c.key: c.max_width for c in NODE_COLUMNS}
    kept = keys(fit_columns(NODE_COLUMNS, widths, 80))
    assert kept[:3] == ["name", "role", "ready"] and "cpu" in kept and "mem" in kept
    assert "kubelet" not in kept and "pool" not in kept  # priorities 8 and 7 go first
    assert sum(widths[k] + 2 for k in kept) <= 80
