"""Mayastor's view of a DiskPool: Online once its node is registered and presents the
pool's disks, Unknown while the node's machine is down (its io-engine does not answer),
the Node is gone or lacks the disks, Degraded under the fault.

Shared by the Flux twin (when it applies a DiskPool) and by the Kubernetes world (when a
node registers or is deleted: Mayastor's operator re-evaluates the node's pools then, so a
replacement node that presents the same disk brings its pool back without a reconcile).
"""

from __future__ import annotations

from typing import Any

from dapper.lab.disk_links import by_id_links
from dapper.lab.kinds import by_kind
from dapper.lab.world.model import Machine
from dapper.lab.world.state import WorldState


def _machine(state: WorldState, node: str) -> Machine | None:
    """The machine running as `node` (a booted one first: a replacement may share the name)."""
    named = [m for m in state.machines.values() if m.hostname == node]
    return next((m for m in named if m.booted), named[0] if named else None)


def missing_disks(state: WorldState, node: str, disks: list[Any]) -> list[str]:
    """The pool's disks its node does not present (Mayastor cannot create the pool)."""
    machine = _machine(state, node)
    present = by_id_links(node, machine.disks, machine.disk_seeds) if machine else {}
    return [str(d) for d in disks if str(d) not in present]


def pool_state(state: WorldState, pool: dict[str, Any]) -> tuple[str, list[str]]:
    """(pool_status, missing disks) of a DiskPool object."""
    name = pool["metadata"]["name"]
    spec = pool.get("spec") or {}
    node = str(spec.get("node") or "")
    node_obj = state.store.find(by_kind("", "Node"), "", node)
    missing = missing_disks(state, node, spec.get("disks") or [])
    if f"pool-degraded:{name}" in state.faults:
        return "Degraded", missing
    machine = _machine(state, node)
    if node_obj is None or missing or machine is None or not machine.booted:
        return "Unknown", missing  # no io-engine answers for it (node down or gone)
    return "Online", missing
