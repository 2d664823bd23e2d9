"""Pane commands: the keys that act on a pane's selected row (reconcile, cordon, drain,
start a VM, ...), how each is confirmed, what it calls and which sources it changes.

Not to be confused with runbooks (dapper.actions) or the cluster operations they call:
a pane command reaches the cluster only through `ClusterOperations`
(backends/operations.py), which is itself read-only-enforced; the console additionally
never binds these keys in read-only mode. Each pane lists its commands in its PaneSpec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dapper.backends.model import Kustomization, Node, Vm
from dapper.backends.protocols import ClusterOperations

Progress = Callable[[str], None]
KUBERNETES, TALOS, PROXMOX = "kubernetes", "talos", "proxmox"


@dataclass(frozen=True)
class PaneCommand:
    id: str
    key: str
    label: str  # footer / palette verb
    destructive: bool  # typed-name confirmation
    run: Callable[[ClusterOperations, Any, Progress], Awaitable[str | None]]  # (ops, row, ..)
    explain: str  # the confirmation's body: what it will do
    refreshes: tuple[str, ...]  # sources it changes, refreshed as soon as it finishes
    verb: Callable[[Any], str] | None = None  # a row-specific verb (suspend vs resume)
    blocked: Callable[[Any], str] | None = None  # why it cannot run on this row, or ""
    short: str = ""  # the footer's word when 80 columns must hold every action
    # A runbook this key opens with the row's name for its parameter (the runbook's own
    # form and preview confirm; `run` is not called): (runbook name, parameter name).
    runbook: tuple[str, str] | None = None

    def title(self, row: Any) -> str:
        return self.verb(row) if self.verb else self.label

    def why_blocked(self, row: Any) -> str:
        return self.blocked(row) if self.blocked else ""


def target_name(row: Any) -> str:
    """The name the operator types to confirm a destructive action."""
    if isinstance(row, Kustomization):
        return row.key
    if isinstance(row, Vm):
        return row.name or str(row.vmid)
    return str(getattr(row, "name", row))


async def _reconcile(ops: ClusterOperations, k: Kustomization, progress: Progress) -> str | None:
    return await ops.reconcile(k.namespace, k.name, with_source=False, progress=progress)


async def _reconcile_source(
    ops: ClusterOperations, k: Kustomization, progress: Progress
) -> str | None:
    return await ops.reconcile(k.namespace, k.name, with_source=True, progress=progress)


async def _suspend_resume(
    ops: ClusterOperations, k: Kustomization, _progress: Progress
) -> str | None:
    if k.suspended:
        await ops.resume(k.namespace, k.name)
        return f"resumed {k.key}"
    await ops.suspend(k.namespace, k.name)
    return f"suspended {k.key}"


async def _cordon(ops: ClusterOperations, n: Node, _progress: Progress) -> str | None:
    await ops.cordon(n.name)
    return f"cordoned {n.name}"


async def _uncordon(ops: ClusterOperations, n: Node, _progress: Progress) -> str | None:
    await ops.uncordon(n.name)
    return f"uncordoned {n.name}"


async def _drain(ops: ClusterOperations, n: Node, progress: Progress) -> str | None:
    return await ops.drain(n.name, progress=progress)


async def _vm_start(ops: ClusterOperations, v: Vm, progress: Progress) -> str | None:
    await ops.vm_start(v.vmid, progress=progress)
    return f"started VM {v.vmid} {v.name}"


async def _vm_shutdown(ops: ClusterOperations, v: Vm, progress: Progress) -> str | None:
    await ops.vm_shutdown(v.vmid, progress=progress)
    return f"shut down VM {v.vmid} {v.name}"


def _suspended_blocks(k: Kustomization) -> str:
    return "suspended: resume it first (S)" if k.suspended else ""


FLUX_COMMANDS: tuple[PaneCommand, ...] = (
    PaneCommand(
        "reconcile",
        "r",
        "Reconcile",
        False,
        _reconcile,
        "Ask Flux to reconcile it now (annotate requestedAt) and wait until handled.",
        (KUBERNETES,),
        blocked=_suspended_blocks,
        short="reconcile",
    ),
    PaneCommand(
        "reconcile_source",
        "R",
        "Reconcile with source",
        False,
        _reconcile_source,
        "Refresh its source first, then reconcile it, and wait until handled.",
        (KUBERNETES,),
        blocked=_suspended_blocks,
        short="+source",
    ),
    PaneCommand(
        "suspend_resume",
        "S",
        "Suspend/resume",
        False,
        _suspend_resume,
        "Flip spec.suspend: Flux stops (or resumes) reconciling it.",
        (KUBERNETES,),
        verb=lambda k: "Resume" if k.suspended else "Suspend",
        short="suspend/resume",
    ),
)


async def _opens_runbook(_ops: ClusterOperations, _row: Any, _progress: Progress) -> str | None:
    raise RuntimeError("a runbook command opens its runbook; it is never run directly")


NODE_COMMANDS: tuple[PaneCommand, ...] = (
    PaneCommand(
        "cordon",
        "c",
        "Cordon",
        False,
        _cordon,
        "Mark the node unschedulable; running pods stay.",
        (KUBERNETES,),
        blocked=lambda n: "already cordoned" if n.unschedulable else "",
    ),
    PaneCommand(
        "uncordon",
        "u",
        "Uncordon",
        False,
        _uncordon,
        "Let the scheduler place pods on the node again.",
        (KUBERNETES,),
        blocked=lambda n: "" if n.unschedulable else "not cordoned",
    ),
    PaneCommand(
        "drain",
        "d",
        "Drain",
        True,
        _drain,
        "Cordon the node and evict its pods (DaemonSets stay). Workloads move away.",
        (KUBERNETES,),
    ),
)


def runbook_commands(pane: str) -> tuple[PaneCommand, ...]:
    """The keys that open a runbook on one of the pane's rows (declared by the runbooks)."""
    from dapper.actions.row_actions import for_pane

    return tuple(
        PaneCommand(
            f"runbook:{a.runbook}",
            a.key,
            a.label,
            False,
            _opens_runbook,
            a.explain,
            (KUBERNETES, TALOS, PROXMOX),
            short=a.short,
            runbook=(a.runbook, a.param),
        )
        for a in for_pane(pane)
    )


VM_COMMANDS: tuple[PaneCommand, ...] = (
    PaneCommand(
        "vm_start",
        "o",
        "Start VM",
        False,
        _vm_start,
        "Power on the VM on its Proxmox host.",
        (PROXMOX, TALOS),
        blocked=lambda v: "already running" if v.status == "running" else "",
        short="start",
    ),
    PaneCommand(
        "vm_shutdown",
        "x",
        "Shut down VM",
        True,
        _vm_shutdown,
        "Ask the guest to shut down (ACPI). The node goes NotReady.",
        (PROXMOX, TALOS),
        blocked=lambda v: "" if v.status == "running" else f"not running ({v.status})",
        short="shut down",
    ),
)
