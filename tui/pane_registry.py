"""The panes the console shows, in one registry: add a PaneSpec here and the pane bar,
number keys, `:` jump, help, palette, wide grid and header count all pick it up.

The built-in panes (builtin_panes.py) register themselves on first use of `pane_registry()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dapper.tui.pane_spec import PaneSpec

# widths of the wide grid's columns; a grid wider than this gets 1fr columns
GRID_COLUMN_WIDTHS = ("1fr", "1fr", "1.2fr")


class PaneRegistry:
    """Panes by id; every view of "all panes" (bar, keys, grid, help) comes from here."""

    def __init__(self) -> None:
        self._specs: dict[str, PaneSpec] = {}

    def register(self, spec: PaneSpec) -> PaneSpec:
        """Add a pane. Its id, number key and jump names must be new."""
        taken = {name for p in self._specs.values() for name in (p.id, p.key, *p.aliases)}
        clash = {spec.id, spec.key, *spec.aliases} & taken
        if clash:
            raise ValueError(f"pane {spec.id!r}: {', '.join(sorted(clash))} already taken")
        self._specs[spec.id] = spec
        return spec

    def unregister(self, pane_id: str) -> None:
        del self._specs[pane_id]

    @contextmanager
    def registered(self, spec: PaneSpec) -> Iterator[PaneSpec]:
        """The pane is registered inside the block only (tests, plugins tried out)."""
        self.register(spec)
        try:
            yield spec
        finally:
            self.unregister(spec.id)

    def ordered(self) -> tuple[PaneSpec, ...]:
        """Panes in pane-bar order."""
        return tuple(sorted(self._specs.values(), key=lambda p: p.order))

    def get(self, pane_id: str) -> PaneSpec:
        return self._specs[pane_id]

    def find(self, name: str) -> PaneSpec | None:
        """The pane a `:` jump name, number or id refers to."""
        name = name.strip().lower().lstrip(":")
        for p in self.ordered():
            if name in (p.id, p.key, *p.aliases):
                return p
        return None

    def jump_names(self) -> tuple[str, ...]:
        """One `:` name per pane, the one help and the jump prompt show."""
        return tuple(p.aliases[0] for p in self.ordered())

    def key_range(self) -> str:
        """The number keys as help shows them: `1-6`."""
        keys = [p.key for p in self.ordered()]
        return f"{keys[0]}-{keys[-1]}" if len(keys) > 1 else "".join(keys)

    def grid_order(self) -> tuple[PaneSpec, ...]:
        """Panes in the order a grid layout fills its cells: by row, then column."""
        return tuple(sorted(self._specs.values(), key=lambda p: (p.grid.row, p.grid.column)))

    def grid_size(self) -> tuple[int, int]:
        """(columns, rows) the wide grid needs for every pane's slot."""
        specs = self._specs.values()
        columns = max((p.grid.column + p.grid.columns for p in specs), default=1)
        rows = max((p.grid.row + p.grid.rows for p in specs), default=1)
        return columns, rows

    def grid_columns(self) -> str:
        columns, _rows = self.grid_size()
        widths = list(GRID_COLUMN_WIDTHS[:columns])
        return " ".join(widths + ["1fr"] * (columns - len(widths)))


_REGISTRY = PaneRegistry()


def pane_registry() -> PaneRegistry:
    """The registry, with the built-in panes in it (imported here, on first use: they
    import the detail builders and commands, which must not import the registry back)."""
    import dapper.tui.builtin_panes  # noqa: F401  registers the built-in panes

    return _REGISTRY


def register_builtin(spec: PaneSpec) -> PaneSpec:
    """For builtin_panes.py: register without loading the built-ins (they are loading)."""
    return _REGISTRY.register(spec)
