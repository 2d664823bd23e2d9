"""The console's actions: which pane, which key, how they are confirmed, what they call.

Actions reach the cluster only through `Operations` (backends/operations.py), which is
itself read-only-enforced; the console additionally never binds these keys in read-only mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dapper.backends.model import Kustomization, Node, Vm

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ActionSpec:
    id: str
    pane: str
    key: str
    label: str  # footer / palette verb
    destructive: bool  # typed-name confirmation
    run: Callable[[Any, Any, Progress], Awaitable[str | None]]  # (operations, row, progress)
    verb: Callable[[Any], str] | None = None  # a row-specific verb (suspend vs resume)
    blocked: Callable[[Any], str] | None = None  # why it cannot run on this row, or ""

    def title(self, row: Any) -> str:
        return self.verb(row) if self.verb else self.label


def target_name(row: Any) -> str:
    """The name the operator types to confirm a destructive action."""
    if isinstance(row, Kustomization):
        return row.key
    if isinstance(row, Vm):
        return row.name or str(row.vmid)
    return str(getattr(row, "name", row))


async def _reconcile(ops: Any, k: Kustomization, progress: Progress) -> str | None:
    return await ops.reconcile(k.namespace, k.name, with_source=False, progress=progress)


async def _reconcile_source(ops: Any, k: Kustomization, progress: Progress) -> str | None:
    return await ops.reconcile(k.namespace, k.name, with_source=True, progress=progress)


async def _suspend_resume(ops: Any, k: Kustomization, _progress: Progress) -> str | None:
    if k.suspended:
        await ops.resume(k.namespace, k.name)
        return f"resumed {k.key}"
    await ops.suspend(k.namespace, k.name)
    return f"suspended {k.key}"


async def _cordon(ops: Any, n: Node, _progress: Progress) -> str | None:
    await ops.cordon(n.name)
    return f"cordoned {n.name}"


async def _uncordon(ops: Any, n: Node, _progress: Progress) -> str | None:
    await ops.uncordon(n.name)
    return f"uncordoned {n.name}"


async def _drain(ops: Any, n: Node, progress: Progress) -> str | None:
    return await ops.drain(n.name, progress=progress)


async def _vm_start(ops: Any, v: Vm, progress: Progress) -> str | None:
    await ops.vm_start(v.vmid, progress=progress)
    return f"started VM {v.vmid} {v.name}"


async def _vm_shutdown(ops: Any, v: Vm, progress: Progress) -> str | None:
    await ops.vm_shutdown(v.vmid, progress=progress)
    return f"shut down VM {v.vmid} {v.name}"


def _suspended_blocks(k: Kustomization) -> str:
    return "suspended: resume it first (S)" if k.suspended else ""


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("reconcile", "flux", "r", "Reconcile", False, _reconcile, None, _suspended_blocks),
    ActionSpec(
        "reconcile_source",
        "flux",
        "R",
        "Reconcile with source",
        False,
        _reconcile_source,
        None,
        _suspended_blocks,
    ),
    ActionSpec(
        "suspend_resume",
        "flux",
        "S",
        "Suspend/resume",
        False,
        _suspend_resume,
        lambda k: "Resume" if k.suspended else "Suspend",
    ),
    ActionSpec(
        "cordon",
        "nodes",
        "c",
        "Cordon",
        False,
        _cordon,
        None,
        lambda n: "already cordoned" if n.unschedulable else "",
    ),
    ActionSpec(
        "uncordon",
        "nodes",
        "u",
        "Uncordon",
        False,
        _uncordon,
        None,
        lambda n: "" if n.unschedulable else "not cordoned",
    ),
    ActionSpec("drain", "nodes", "d", "Drain", True, _drain),
    ActionSpec(
        "vm_start",
        "vms",
        "o",
        "Start VM",
        False,
        _vm_start,
        None,
        lambda v: "already running" if v.status == "running" else "",
    ),
    ActionSpec(
        "vm_shutdown",
        "vms",
        "x",
        "Shut down VM",
        True,
        _vm_shutdown,
        None,
        lambda v: "" if v.status == "running" else f"not running ({v.status})",
    ),
)

ACTION_BY_ID = {a.id: a for a in ACTIONS}


def actions_for(pane: str) -> tuple[ActionSpec, ...]:
    return tuple(a for a in ACTIONS if a.pane == pane)
