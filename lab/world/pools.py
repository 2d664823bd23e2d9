"""Mayastor's view of a DiskPool: Online once its node is registered and presents the
pool's disks, Unknown while the node is gone or lacks them, Degraded under the fault.

Shared by the Flux twin (when it applies a DiskPool) and by the Kubernetes world (when a
node registers or is deleted: Mayastor's operator re-evaluates the node's pools then, so a
replacement node that presents the same disk brings its pool back without a reconcile).
"""

from __future__ import annotations

from typing import Any

from dapper.lab.disk_links import by_id_links
from dapper.lab.kinds import by_kind
from dapper.lab.world.state import WorldState


def missing_disks(state: WorldState, node: str, disks: list[Any]) -> list[str]:
    """The pool's disks its node does not present (Mayastor cannot create the pool)."""
    machine = next((m for m in state.machines.values() if m.hostname == node), None)
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
    if node_obj is None or missing:
        return "Unknown", missing
    return "Online", missing
