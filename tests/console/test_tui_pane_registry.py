"""A pane is declared once: a throwaway PaneSpec, registered for one test, shows up in the
pane bar, the number keys, the `:` jump, help, the palette, the wide grid and its detail
view, with no other edit; gone again once unregistered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dapper.backends.model import ClusterSnapshot, Node
from dapper.tui.format import styled
from dapper.tui.pane_registry import pane_registry
from dapper.tui.pane_spec import Column, GridSlot, PaneSpec
from dapper.tui.screens.detail import DetailScreen
from dapper.tui.screens.help import HelpScreen
from rich.text import Text
from textual.command import CommandPalette

from tests.console.tui_lab import make_app, running_lab, settle


def _gpu_nodes(snapshot: ClusterSnapshot) -> tuple[Node, ...]:
    return tuple(n for n in snapshot.nodes if n.gpu_capacity)


THROWAWAY = PaneSpec(
    id="gpunodes",
    title="GPU nodes",
    key="7",
    order=7,
    aliases=("gpunodes", "gn"),
    sources=("kubernetes",),
    rows=_gpu_nodes,
    row_key=lambda n: n.name,
    fault=lambda n: n.gpu_allocated > n.gpu_capacity,
    columns=(
        Column("name", "NAME", 0, lambda n, _: styled(n.name), lambda n: n.name, 28),
        Column("gpu", "GPU", 1, lambda n, _: styled(f"{n.gpu_allocated}/{n.gpu_capacity}")),
    ),
    noun="GPU node",
    detail=lambda n, _s, _now: Text(f"throwaway detail of {n.name}"),
    grid=GridSlot(row=3, column=0, columns=3),
    help="nodes that have GPUs",
)


@pytest.fixture(scope="module")
def lab():
    with running_lab() as lab:
        yield lab


@pytest.fixture
def throwaway_pane() -> Iterator[PaneSpec]:
    with pane_registry().registered(THROWAWAY) as spec:
        yield spec
    assert pane_registry().find("gpunodes") is None


def _line(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_a_registered_pane_appears_everywhere(lab, throwaway_pane):
    app = make_app(lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        main = app.main
        assert " 7 GPU nodes " in _line(app, "#panebar")

        await pilot.press("7")  # its number key
        assert main.active == "gpunodes"
        table = main.panes["gpunodes"].table
        gpu_nodes = [n.name for n in _gpu_nodes(app.snapshot)]
        assert gpu_nodes and table.row_count == len(gpu_nodes)

        await pilot.press("1", "colon")  # the jump prompt names it, and jumps to it
        assert "gn" not in main.query_one("#prompt").placeholder.split()
        assert "gpunodes" in main.query_one("#prompt").placeholder.split()
        await pilot.press(*"gn", "enter")
        assert main.active == "gpunodes"

        await pilot.press("enter")  # its detail builder
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert str(app.screen.content) == f"throwaway detail of {table.selected_key}"
        await pilot.press("escape")

        await pilot.press("question_mark")  # help: its key, title and jump name
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.body.plain
        assert "1-7" in text and "7 GPU nodes" in text and ":gpunodes" in text
        await pilot.press("escape", "1")

        names = {name: help for name, help, _cb in app.palette_commands()}
        assert names["Show GPU nodes"] == "pane 7 (:gpunodes) · nodes that have GPUs"
        assert f"Detail GPU node {gpu_nodes[0]}" in names
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"show gpu nodes")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert main.active == "gpunodes"


async def test_a_registered_pane_gets_its_grid_slot(lab, throwaway_pane):
    app = make_app(lab)
    async with app.run_test(size=(160, 60)) as pilot:
        await settle(pilot, app)
        panes = app.main.panes
        assert all(w.display and w.region.height > 3 for w in panes.values())
        extra, nodes, pools = panes["gpunodes"].region, panes["nodes"].region, panes["pools"].region
        assert extra.y >= pools.bottom  # a fourth grid row, below the built-in three
        assert extra.x == nodes.x and extra.right == pools.right  # spanning all columns


def test_a_pane_cannot_take_a_key_or_name_already_taken():
    registry = pane_registry()
    with pytest.raises(ValueError, match="1"):
        registry.register(THROWAWAY.__class__(**{**THROWAWAY.__dict__, "key": "1"}))
    with pytest.raises(ValueError, match="ks"):
        registry.register(THROWAWAY.__class__(**{**THROWAWAY.__dict__, "aliases": ("ks",)}))
    assert registry.find("gpunodes") is None
