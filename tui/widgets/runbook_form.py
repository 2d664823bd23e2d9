"""The parameter form of any runbook, built from its declared `Param`s alone.

Booleans are checkboxes, fixed choices radio buttons, secret inputs masked, everything
else an input. A parameter with a choices provider is a table of its choices (value, then
its detail lines dim) or, when it takes several values, a multi-select; a provider that
depends on another parameter is asked again (off the UI thread) when that one changes. An
input with `shown_when` hides unless the other parameter has that value. `given()`
returns what `Engine.run` takes; typed secret values the engine asks for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dapper.tui.format import middle_cut
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Checkbox, DataTable, Input, Label, RadioButton, RadioSet, SelectionList

if TYPE_CHECKING:
    from dapper.actions.engine import Runbook
    from dapper.actions.params import Choice, ChoiceContext, ChoiceList, Param


class FormError(ValueError):
    """A form value is missing or malformed; the message is one line for the operator."""


def _label(param: Param) -> Text:
    t = Text(param.prompt, style="bold")
    text = (param.hint or param.help) if param.provider is not None else param.help
    if text:
        t.append(f"  {text}", style="dim")
    return t


def choice_cell(choice: Choice, width: int = 0) -> Text:
    """The choice, then each of its detail lines indented and dim. A choice wider than
    `width` is cut in the middle: of a file path, the file's own name must stay."""
    shown = Text(choice.shown)
    if width:
        shown = middle_cut(shown, width)
    t = Text(shown.plain, no_wrap=True, overflow="ellipsis")
    for line in choice.detail:
        t.append(f"\n  {line}", style="dim")
    return t


def _multi_label(choice: Choice) -> Text:
    t = Text(choice.shown)
    if choice.detail:
        t.append(f"  {'  ·  '.join(choice.detail)}", style="dim")
    return t


class ParamForm(VerticalScroll):
    """One runbook's inputs. `choices` holds the preloaded choices of its independent
    providers by parameter name; `context` lets the form ask dependent providers."""

    DEFAULT_CSS = """
    ParamForm { height: 1fr; padding: 0 1; }
    ParamForm .param { height: auto; margin-bottom: 1; }
    ParamForm .param Input { width: 40; }
    ParamForm .choice-table { height: auto; max-height: 16; }
    ParamForm .choice-multi { height: auto; max-height: 8; width: 60; }
    ParamForm RadioSet { layout: horizontal; width: auto; }
    """

    def __init__(
        self,
        runbook: Runbook,
        choices: Mapping[str, ChoiceList] | None = None,
        context: ChoiceContext | None = None,
        *,
        preset: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.runbook = runbook
        self.preset = dict(preset or {})  # values chosen before the form opened
        self.params: dict[str, Param] = {p.name: p for p in runbook.params}
        self.loaded: dict[str, ChoiceList] = dict(choices or {})
        self.context = context

    # -- building ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        for p in self.params.values():
            with Vertical(classes="param", id=f"row-{p.name}"):
                yield Label(_label(p))
                yield self._input(p)

    def _input(self, p: Param) -> Widget:
        wid = f"param-{p.name}"
        if p.provider is not None and p.multiple:
            return SelectionList[str](id=wid, classes="choice-multi")
        if p.provider is not None:
            table: DataTable[Any] = DataTable(
                id=wid, cursor_type="row", zebra_stripes=True, classes="choice-table"
            )
            table.add_column(p.provider.heading or p.prompt.upper(), key="choice")
            return table
        if p.type == "bool":
            return Checkbox("yes", bool(p.default), id=wid)
        if p.choices:
            buttons = [RadioButton(c, value=c == p.default, name=c) for c in p.choices]
            return RadioSet(*buttons, id=wid)
        value = "" if p.default is None else str(p.default)
        return Input(
            value,
            id=wid,
            password=p.secret,
            type="integer" if p.type == "int" else "text",
            placeholder=p.help or p.prompt,
        )

    def on_mount(self) -> None:
        if not self.query(".param"):
            return  # replaced while it mounted (a quick move through the list): no inputs
        for name, loaded in self.loaded.items():
            if name in self.params:
                self._fill(self.params[name], loaded)
        self._sync_visibility()
        for p in self.params.values():
            if p.provider is not None and p.provider.depends_on:
                self._ask_provider(p)

    def problems(self) -> list[str]:
        """One line per required picker with nothing to pick (and why, when known)."""
        out = []
        for p in self.params.values():
            if not p.required or p.provider is None or p.provider.depends_on:
                continue
            loaded = self.loaded.get(p.name)
            if loaded is None or not loaded.choices:
                why = loaded.error if loaded is not None and loaded.error else "none found"
                out.append(f"no choices for {p.prompt}: {why}")
        return out

    # -- choices -----------------------------------------------------------------------

    def _fill(self, p: Param, loaded: ChoiceList) -> None:
        self.loaded[p.name] = loaded
        widget = self.query_one(f"#param-{p.name}")
        if isinstance(widget, SelectionList):
            widget.clear_options()
            only = len(loaded.choices) == 1  # a single choice comes pre-selected
            widget.add_options([(_multi_label(c), c.value, only) for c in loaded.choices])
        elif isinstance(widget, DataTable):
            widget.clear()
            for c in loaded.choices:
                widget.add_row(
                    choice_cell(c, self._choice_width()), key=c.value, height=1 + len(c.detail)
                )
            wanted = self.preset.get(p.name)
            values = [c.value for c in loaded.choices]
            if wanted in values:
                row = values.index(wanted)
                widget.move_cursor(row=row)
                above = sum(1 + len(c.detail) for c in loaded.choices[:row])
                self.call_after_refresh(
                    self._show_row, widget, above, 1 + len(loaded.choices[row].detail)
                )
            if loaded.choices:
                self._changed(p.name)

    def _show_row(self, table: DataTable[Any], above: int, height: int) -> None:
        """Scroll the form so a preset choice (`above` lines below the table's header)
        is on screen: on a small terminal the form is taller than its window."""
        top = table.virtual_region.y + 1 + above  # the header line, then the rows above
        from textual.geometry import Region

        self.scroll_to_region(Region(0, top, 1, height), animate=False, immediate=True)

    def _choice_width(self) -> int:
        return max(0, self.content_size.width - 4)  # cell padding and scrollbar

    def on_resize(self) -> None:
        """Choices are cut to the form's width: again when that width changes."""
        width = self._choice_width()
        for name, loaded in self.loaded.items():
            for table in self.query(f"#param-{name}").results(DataTable):
                for c in loaded.choices if loaded is not None else ():
                    if c.value in table.rows:
                        table.update_cell(c.value, "choice", choice_cell(c, width))

    def _ask_provider(self, p: Param) -> None:
        """Ask a dependent provider again for the current values, off the UI thread."""
        from dapper.actions.params import ChoiceList, dependencies_met

        values = self.values()
        if self.context is None or not dependencies_met(p, values):
            self._fill(p, ChoiceList())
            return
        context = replace(self.context, values=values)
        self.run_worker(
            lambda: self._fetch(p, context),
            thread=True,
            group=f"choices-{p.name}",
            exclusive=True,
            exit_on_error=False,
        )

    def _fetch(self, p: Param, context: ChoiceContext) -> None:
        from dapper.actions.params import load_choices

        loaded = load_choices(p, context)
        self.app.call_from_thread(self._fetched, p, context, loaded)

    def _fetched(self, p: Param, context: ChoiceContext, loaded: ChoiceList) -> None:
        assert p.provider is not None
        if not self.is_mounted:
            return
        now = self.values()
        if any(now.get(d) != context.values.get(d) for d in p.provider.depends_on):
            return  # the operator moved on: a newer answer is on its way
        self._fill(p, loaded)

    # -- reacting ----------------------------------------------------------------------

    def _changed(self, name: str) -> None:
        self._sync_visibility()
        for p in self.params.values():
            if p.provider is not None and name in p.provider.depends_on:
                self._ask_provider(p)

    def _name_of(self, widget: Widget | None) -> str:
        wid = widget.id if widget is not None else None
        return wid.removeprefix("param-") if wid and wid.startswith("param-") else ""

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._changed(self._name_of(event.data_table))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._changed(self._name_of(event.radio_set))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._changed(self._name_of(event.checkbox))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._changed(self._name_of(event.input))

    def _sync_visibility(self) -> None:
        values = self.values()
        for p in self.params.values():
            if p.shown_when is not None:
                rows = self.query(f"#row-{p.name}")
                if rows:
                    rows.first().display = p.shown(values)

    # -- reading -----------------------------------------------------------------------

    def _raw(self, name: str) -> Any:
        """The widget value of one parameter (None when the runbook has no such one)."""
        found = self.query(f"#param-{name}")
        if not found:
            return None
        w = found.first()
        if isinstance(w, DataTable):
            if not w.row_count:
                return None
            return w.coordinate_to_cell_key(w.cursor_coordinate).row_key.value
        if isinstance(w, SelectionList):
            return tuple(w.selected)
        if isinstance(w, Checkbox):
            return w.value
        if isinstance(w, RadioSet):
            pressed = w.pressed_button
            return pressed.name if pressed is not None else None
        if isinstance(w, Input):
            return w.value
        return None

    def values(self) -> dict[str, Any]:
        """Every input's current value, shown or not (what providers and rules read)."""
        return {name: self._raw(name) for name in self.params}

    def given(self) -> dict[str, Any]:
        """The values for `Engine.run`: shown inputs only (hidden ones keep the defaults)."""
        out: dict[str, Any] = {}
        for p in self.params.values():
            if not self.query_one(f"#row-{p.name}").display:
                continue
            value = self._raw(p.name)
            if p.provider is not None and p.required and not value:
                if p.multiple:
                    raise FormError(f"choose at least one {p.prompt} (space selects)")
                raise FormError(f"choose a {p.prompt}")
            if isinstance(value, str) and not value.strip() and not p.required:
                continue
            out[p.name] = value
        return out
