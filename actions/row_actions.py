"""Runbooks a console row can start: the key on a pane's row that opens a runbook's form
with the row's name as one parameter (the form and the preview still confirm).

Declared here, next to the runbooks, so the console knows no runbook by name: it turns
each entry into a key on the pane it names. Light on purpose (no runbook is imported).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowAction:
    runbook: str
    pane: str  # the console pane's id whose rows it acts on
    param: str  # the runbook parameter the row's name fills
    key: str
    label: str
    explain: str
    short: str = ""


ROW_ACTIONS: tuple[RowAction, ...] = (
    RowAction(
        "node-replace",
        "nodes",
        "node",
        "R",
        "Replace node",
        "Open the node-replace runbook on this node; its preview shows the impact first.",
        "replace",
    ),
)


def for_pane(pane: str) -> tuple[RowAction, ...]:
    return tuple(a for a in ROW_ACTIONS if a.pane == pane)
