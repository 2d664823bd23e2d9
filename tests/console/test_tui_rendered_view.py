"""The detail view's RenderedView: a renderable is drawn once per update (a Static in a
VerticalScroll draws it twice, to measure and to paint), without laying out the screen,
and scrolls through what was drawn."""

from __future__ import annotations

from dapper.tui.widgets.rendered_view import RenderedView
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual.app import App, ComposeResult
from textual.screen import Screen


class Counted:
    """Numbered lines; counts how often Rich is asked to draw them."""

    def __init__(self, label: str, lines: int = 60) -> None:
        self.label = label
        self.lines = lines
        self.drawn = 0

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        self.drawn += 1
        yield Text("\n".join(f"{self.label} {i}" for i in range(self.lines)))


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RenderedView(id="v")


async def test_an_update_is_drawn_once_and_scrolls_to_its_last_line(monkeypatch):
    layouts: list[bool] = []
    original = Screen._refresh_layout

    def counted(self, size=None, scroll=False):
        layouts.append(True)
        return original(self, size, scroll)

    app = ViewApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(RenderedView)
        view.focus()
        first = Counted("row")
        view.update(first)  # the scrollbar appears: one layout
        await pilot.pause()
        assert first.drawn == 1
        assert view.virtual_size.height == 60
        await pilot.press("end")
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 0
        assert "row 59" in view.render_line(view.size.height - 1).text
        monkeypatch.setattr(Screen, "_refresh_layout", counted)
        second = Counted("next", lines=80)
        view.update(second)
        await pilot.pause()
        assert second.drawn == 1 and first.drawn == 1
        assert view.virtual_size.height == 80
        assert layouts == []  # a new content height is no layout of the screen
        assert "next 59" in view.render_line(view.size.height - 1).text  # scroll kept


async def test_a_new_width_draws_again_at_that_width():
    app = ViewApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(RenderedView)
        content = Counted("row")
        view.update(content)
        await pilot.pause()
        narrow = view.render_line(0).cell_length
        await pilot.resize_terminal(60, 10)
        await pilot.pause()
        assert content.drawn == 2
        assert view.render_line(0).cell_length == narrow + 20
