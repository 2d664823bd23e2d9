"""The parameter form of one runbook, built from its typed `Param`s.

Booleans are checkboxes, choices radio buttons, everything else an input (masked when the
parameter is secret). secret-rotate's `file` is a table of the SOPS files (each with its
owning Kustomization and its key NAMES, never values) and its `keys` a multi-select of
the chosen file's keys. `given()` returns what `Engine.run` takes; typed secret values
are not part of the form: the engine asks for them (twice) once the run is confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Checkbox, DataTable, Input, Label, RadioButton, RadioSet, SelectionList

# secret-rotate: which inputs only matter for one value source (hidden otherwise)
SHOWN_WHEN = {
    "length": ("source", "generate"),
    "alphabet": ("source", "generate"),
    "from-command": ("source", "command"),
}
FILE_PICKER = {"secret-rotate": ("file", "keys")}  # runbook -> (file param, keys param)


class FormError(ValueError):
    """A form value is missing or malformed; the message is one line for the operator."""


PICKER_HELP = {
    "file": "↑↓ chooses the SOPS file (its Kustomization and key names shown; no values)",
    "keys": "space selects the keys to rotate",
}


def _label(param: Any, picker: bool = False) -> Text:
    t = Text(param.name, style="bold")
    text = PICKER_HELP.get(param.name, param.help) if picker else param.help
    if text:
        t.append(f"  {text}", style="dim")
    return t


def file_cell(f: Any) -> Text:
    """Two lines: the path, then its owning Kustomization and its key names."""
    owner = "/".join(f.owner) if f.owner else "no Kustomization applies it"
    t = Text(f.path, no_wrap=True, overflow="ellipsis")
    t.append(f"\n  → {owner}  ·  keys: {', '.join(f.keys)}", style="dim")
    return t


class ParamForm(VerticalScroll):
    """One runbook's inputs. `files` (plain `SecretFile`s) feeds the SOPS file picker."""

    DEFAULT_CSS = """
    ParamForm { height: 1fr; padding: 0 1; }
    ParamForm .param { height: auto; margin-bottom: 1; }
    ParamForm .param Input { width: 40; }
    ParamForm #param-file { height: auto; max-height: 16; }
    ParamForm #param-keys { height: auto; max-height: 8; width: 60; }
    ParamForm RadioSet { layout: horizontal; width: auto; }
    """

    def __init__(self, runbook: Any, files: Sequence[Any] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.runbook = runbook
        self.files = list(files)
        self.picker = FILE_PICKER.get(runbook.name)

    # -- building ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        for p in self.runbook.params:
            with Vertical(classes="param", id=f"row-{p.name}"):
                yield Label(_label(p, bool(self.picker and p.name in self.picker)))
                yield from self._input(p)

    def _input(self, p: Any) -> ComposeResult:
        wid = f"param-{p.name}"
        if self.picker and p.name == self.picker[0]:
            table: DataTable[Any] = DataTable(id=wid, cursor_type="row", zebra_stripes=True)
            table.add_column("FILE  ·  applied by KUSTOMIZATION  ·  KEY NAMES", key="file")
            for f in self.files:
                table.add_row(file_cell(f), key=f.path, height=2)
            yield table
        elif self.picker and p.name == self.picker[1]:
            yield SelectionList[str](id=wid)
        elif p.type == "bool":
            yield Checkbox("yes", bool(p.default), id=wid)
        elif p.choices:
            with RadioSet(id=wid):
                for choice in p.choices:
                    yield RadioButton(choice, value=choice == p.default, name=choice)
        else:
            value = "" if p.default is None else str(p.default)
            yield Input(
                value,
                id=wid,
                password=p.secret,
                type="integer" if p.type == "int" else "text",
                placeholder=p.help or p.name,
            )

    def on_mount(self) -> None:
        self._sync_visibility()
        if self.picker and self.files:
            self._show_keys(self.files[0].path)

    # -- reacting ----------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.picker and event.row_key.value is not None:
            self._show_keys(str(event.row_key.value))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._sync_visibility()

    def _show_keys(self, path: str) -> None:
        assert self.picker is not None
        chosen = next((f for f in self.files if f.path == path), None)
        keys = self.query_one(f"#param-{self.picker[1]}", SelectionList)
        keys.clear_options()
        if chosen is not None:
            only = len(chosen.keys) == 1
            keys.add_options([(k, k, only) for k in chosen.keys])

    def _sync_visibility(self) -> None:
        for name, (other, wanted) in SHOWN_WHEN.items():
            rows = self.query(f"#row-{name}")
            if rows:
                rows.first().display = self._raw(other) == wanted

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

    def given(self) -> dict[str, Any]:
        """The values for `Engine.run`: shown inputs only (hidden ones keep the defaults)."""
        out: dict[str, Any] = {}
        for p in self.runbook.params:
            row = self.query_one(f"#row-{p.name}")
            if not row.display:
                continue
            value = self._raw(p.name)
            if self.picker and p.name == self.picker[0] and not value:
                raise FormError("choose a SOPS file")
            if self.picker and p.name == self.picker[1] and not value:
                raise FormError("choose at least one key to rotate (space selects)")
            if isinstance(value, str) and not value.strip() and not p.required:
                continue
            out[p.name] = value
        return out
