"""A table's refresh: rows that come and go repaint the table, not the whole screen, and
rows worked out off the event loop apply only to the view they were worked out for.

Textual lays out every widget and repaints the terminal when a widget's virtual size
changes; at 500 nodes under churn that was most of the console's event loop. These
tests count the screen's layouts while a ResourceTable gains and loses rows, and check
that its scrollbar still follows the row count (the one change that is a real layout).
"""

from __future__ import annotations

import threading

import pytest
from dapper.backends.model import ClusterSnapshot, Node
from dapper.tui.format import styled
from dapper.tui.pane_spec import Column, GridSlot, PaneSpec
from dapper.tui.widgets.table import ResourceTable
from rich.text import Text
from textual.app import App, ComposeResult
from textual.screen import Screen

SPEC = PaneSpec(
    id="plain",
    title="Plain",
    key="9",
    order=9,
    aliases=("plain",),
    sources=("kubernetes",),
    rows=lambda s: s.nodes,
    row_key=lambda n: n.name,
    fault=lambda n: False,
    columns=(Column("name", "NAME", 0, lambda n, _: styled(n.name), lambda n: n.name, 28),),
    noun="node",
    detail=lambda n, _s, _now: Text(n.name),
    grid=GridSlot(row=0, column=0),
)


def snapshot(count: int, changed: str = "") -> ClusterSnapshot:
    nodes = tuple(
        Node(name=f"node-{i:03d}", ready="False" if f"node-{i:03d}" == changed else "True")
        for i in range(count)
    )
    return ClusterSnapshot(cluster="t", mode="LAB", read_only=True, taken_at=1.0, nodes=nodes)


class TableApp(App[None]):
    CSS = "ResourceTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield ResourceTable(SPEC, writable=False, id="t")


@pytest.fixture
def layouts(monkeypatch) -> list[bool]:
    """One entry per layout of the screen (Textual's `_refresh_layout`)."""
    done: list[bool] = []
    original = Screen._refresh_layout

    def counted(self, size=None, scroll=False):
        done.append(True)
        return original(self, size, scroll)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    return done


async def test_rows_coming_and_going_lay_out_only_when_the_scrollbar_changes(layouts):
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(ResourceTable)
        table.show(snapshot(30), 1.0)  # first rows: a rebuild, and a scrollbar appears
        await pilot.pause()
        assert table.show_vertical_scrollbar
        assert table.virtual_size.height == 31  # header and 30 rows

        layouts.clear()
        for count in (31, 29, 33, 30, 32):  # a few rows come and go each refresh
            table.show(snapshot(count), 1.0)
            await pilot.pause()
            assert table.row_count == count
            assert table.virtual_size.height == count + 1
            assert table.vertical_scrollbar.window_virtual_size == count + 1
        assert layouts == [], "row changes laid out the whole screen"

        table.show(snapshot(5), 1.0)  # now they fit: the scrollbar goes, a real layout
        await pilot.pause()
        assert not table.show_vertical_scrollbar
        assert layouts, "the scrollbar went without a layout"
        assert table.row_count == 5

        table.move_cursor(row=4)
        table.show(snapshot(40), 1.0)  # and comes back
        await pilot.pause()
        assert table.show_vertical_scrollbar
        assert table.selected_key == "node-004"  # the cursor stays on its row


async def test_a_plan_made_off_the_loop_applies_only_to_the_view_it_was_made_for():
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(ResourceTable)
        table.show(snapshot(30), 1.0)
        await pilot.pause()
        made = {}

        def prepare() -> None:
            made["thread"] = threading.current_thread()
            made["plan"] = table.prepare(snapshot(31), 2.0)

        worker = threading.Thread(target=prepare)
        worker.start()
        worker.join()
        assert made["thread"] is not threading.main_thread()
        assert table.row_count == 30  # preparing changed nothing on screen

        table.filter_text = "node-01"  # a key changed the view meanwhile
        assert not table.apply(made["plan"])
        assert table.row_count == 30 and table.showing is not made["plan"].snapshot

        table.filter_text = ""
        assert table.apply(made["plan"])
        await pilot.pause()
        assert table.row_count == 31 and table.showing is made["plan"].snapshot


async def test_a_refresh_draws_again_only_the_rows_that_changed():
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(ResourceTable)
        table.show(snapshot(30), 1.0)
        table.move_cursor(row=2)
        await pilot.pause()
        drawn: list[str] = []
        draw = table._draw

        def counted(cells, style):
            drawn.append(cells[0].plain)
            return draw(cells, style)

        table._draw = counted  # type: ignore[method-assign]
        table.show(snapshot(30, changed="node-005"), 2.0)
        await pilot.pause()
        # only the changed row is painted again: no other line of the table is touched
        assert drawn == ["node-005"]
        lines = [table.render_line(y).text for y in range(table.size.height)]
        assert lines[0].split() == ["NAME"] and "node-000" in lines[1]  # kept lines shown
        assert "node-005" in lines[6]

        drawn.clear()
        # the cursor's own row changes (and node-005 changes back): both are painted
        table.show(snapshot(30, changed="node-002"), 3.0)
        await pilot.pause()
        assert sorted(drawn) == ["node-002", "node-005"]

        drawn.clear()
        await pilot.press("down")  # a cursor move draws the two rows it touches
        await pilot.pause()
        assert sorted(drawn) == ["node-002", "node-003"]
        assert table.selected_key == "node-003"


def test_a_refresh_waits_for_a_pause_between_keys_but_not_for_long():
    from dapper.tui.screens.main import HOLD_AT_MOST, TYPING_GAP, typing_hold

    assert typing_hold(last_input=0.0, now=10.0, held_since=10.0) == 0  # no key lately
    assert typing_hold(last_input=9.95, now=10.0, held_since=10.0) == pytest.approx(
        TYPING_GAP - 0.05
    )  # a key 50 ms ago: wait for the gap
    # keys keep coming: held at most HOLD_AT_MOST in all
    assert typing_hold(last_input=10.9, now=10.95, held_since=10.0) == pytest.approx(
        HOLD_AT_MOST - 0.95
    )
    assert typing_hold(last_input=11.0, now=11.0, held_since=10.0) == 0


class PromptApp(App[None]):
    CSS = "PromptInput { height: 1; border: none; padding: 0; width: 20; }"

    def compose(self) -> ComposeResult:
        from dapper.tui.widgets.prompt import PromptInput

        yield PromptInput(id="p")


async def test_typing_in_the_prompt_repaints_the_line_not_the_screen(layouts):
    from dapper.tui.widgets.prompt import PromptInput

    app = PromptApp()
    async with app.run_test(size=(40, 5)) as pilot:
        prompt = app.query_one(PromptInput)
        prompt.focus()
        await pilot.pause()
        layouts.clear()
        await pilot.press(*"kube-system/node-feature")  # longer than the 20-cell line
        await pilot.pause()
        assert prompt.value == "kube-system/node-feature"
        assert layouts == [], "typing laid out the whole screen"
        assert prompt.max_scroll_x > 0 and prompt.scroll_x > 0  # it scrolls to the cursor
