"""Which Mayastor volumes a node takes with it: read from Mayastor's control plane (the
api-rest volumes, each with its replica topology) and named by their claims.

A volume whose replicas on other nodes include no healthy one (Online and not being
rebuilt) has its only copy on this node: replacing the node loses that data unless the
node's pool comes back on the same disk (restore from backup otherwise). A volume with a
healthy replica elsewhere is rebuilt by Mayastor on another pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dapper.actions.engine import RunContext


@dataclass(frozen=True)
class VolumeOnNode:
    claim: str  # namespace/name of its PersistentVolumeClaim, else "volume <uuid>"
    status: str  # the volume's: Online, Degraded, Faulted
    pools: tuple[str, ...]  # the node's pools holding its replicas
    replica_states: tuple[str, ...]  # those replicas' states
    only_copy: bool  # no healthy replica on another node

    def text(self) -> str:
        where = ", ".join(
            f"pool {p} replica {s}" for p, s in zip(self.pools, self.replica_states, strict=True)
        )
        return f"{self.claim} ({self.status}; {where})"


def _healthy(replica: dict[str, Any]) -> bool:
    return replica.get("state") == "Online" and "rebuild-progress" not in replica


def volumes_on(
    volumes: list[dict[str, Any]], claims: dict[str, str], node: str
) -> list[VolumeOnNode]:
    """The volumes with a replica on `node`, sorted by claim."""
    out = []
    for v in volumes:
        state = v.get("state") or {}
        replicas = list((state.get("replica_topology") or {}).values())
        here = [r for r in replicas if r.get("node") == node]
        if not here:
            continue
        uuid = str(state.get("uuid") or (v.get("spec") or {}).get("uuid") or "")
        elsewhere = [r for r in replicas if r.get("node") != node and _healthy(r)]
        out.append(
            VolumeOnNode(
                claims.get(uuid, f"volume {uuid}"),
                str(state.get("status") or "?"),
                tuple(str(r.get("pool", "?")) for r in here),
                tuple(str(r.get("state", "?")) for r in here),
                not elsewhere,
            )
        )
    return sorted(out, key=lambda v: v.claim)


def volume_notes(ctx: RunContext, node: str) -> tuple[list[str], list[str]]:
    """(preview lines, claims whose only copy is on `node`)."""
    read = ctx.cluster.mayastor_volumes()
    if read is None:
        return ["Mayastor volumes: not readable here (no api-rest, or no access to it)"], []
    volumes, claims = read
    found = volumes_on(volumes, claims, node)
    lost = [v for v in found if v.only_copy]
    kept = [v for v in found if not v.only_copy]
    lines = [
        f"Mayastor volumes that lose their data with {node} (their only copy is there; "
        "restore from backup unless its pool comes back on the same disk): "
        + (", ".join(v.text() for v in lost) or "none")
    ]
    if kept:
        lines.append(
            "Mayastor volumes with a healthy replica elsewhere (Mayastor rebuilds them): "
            + ", ".join(v.text() for v in kept)
        )
    return lines, [v.claim for v in lost]
