"""Preflight and impact of replacing a node: what is refused, and what the operator reads
before anything happens (etcd members and leader, the pool, GPU pods and devices, the
PodDisruptionBudgets that will block the drain)."""

from __future__ import annotations

from typing import Any

from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.node_replace.target import machines, observe_old_vm, resolve
from dapper.actions.node_replace.volumes import volume_notes
from dapper.backends.errors import BackendError
from dapper.backends.model import EtcdMember


def etcd_view(ctx: RunContext) -> tuple[tuple[EtcdMember, ...], str]:
    """The etcd members as another control plane reports them, and which one said so."""
    target = resolve(ctx)
    others = target.other_control_planes
    last = "no other control plane in talconfig.yaml"
    for cp in others:
        try:
            return machines(ctx).etcd_members(cp.ip), cp.hostname
        except BackendError as exc:
            last = f"{cp.hostname}: {exc.reason}"
    raise StepFailed(f"cannot read etcd membership through another control plane ({last})")


def check_quorum(ctx: RunContext) -> None:
    """Refuse when replacing the node would cost quorum: another member is unhealthy."""
    target = resolve(ctx)
    members, _ = etcd_view(ctx)
    sick = [
        m.hostname
        for m in members
        if m.hostname != target.hostname and not m.is_learner and m.healthy is False
    ]
    if sick:
        voters = [m for m in members if not m.is_learner]
        left = len(voters) - len(sick) - 1
        raise StepFailed(
            f"etcd quorum at risk: {', '.join(sick)} unhealthy; replacing {target.hostname} "
            f"now would leave {max(left, 0)} healthy of {len(voters)} members: fix that first"
        )


def _selects(match: tuple[tuple[str, str], ...], labels: dict[str, str]) -> bool:
    return bool(match) and all(labels.get(k) == v for k, v in match)


def blocking_pdbs(ctx: RunContext, node: str) -> list[str]:
    """PDBs allowing no disruption that select a pod on the node."""
    pods = ctx.cluster.node_pod_objects(node)
    out = []
    for pdb in ctx.cluster.pdbs():
        if pdb.disruptions_allowed > 0:
            continue
        hit = [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"].get("namespace") == pdb.namespace
            and _selects(pdb.match_labels, p["metadata"].get("labels") or {})
        ]
        if hit:
            out.append(f"{pdb.namespace}/{pdb.name} (pods {', '.join(hit)})")
    return out


def impact_notes(ctx: RunContext) -> list[str]:
    """Lines the preview shows before anything happens."""
    target = resolve(ctx)
    notes = [f"{target.hostname}: {target.kind} at {target.node.ip}"]
    old = observe_old_vm(ctx)
    if old:
        notes.append(
            f"old VM {old['vmid']} ({old['status']}): {old['cores']} cores, "
            f"{old['memory']} MiB, MAC {', '.join(old['macs']) or 'none'}"
        )
    else:
        notes.append("old VM: none of that name on Proxmox (deleted?)")
    node = ctx.cluster.node(target.hostname)
    if node is None:
        notes.append("Kubernetes: no Node object (already deleted)")
    else:
        notes.append(f"Kubernetes: Ready={node.ready}, {len(node.pods)} pod(s) bound")
    if target.control_plane:
        members, through = etcd_view(ctx)
        shown = [
            f"{m.hostname}{' (leader)' if m.leader else ''}"
            f"{' learner' if m.is_learner else ''}"
            f"{'' if m.healthy is not False else ' UNHEALTHY'}"
            for m in members
        ]
        notes.append(f"etcd (through {through}): {', '.join(shown)}")
    if target.storage_pool:
        pools = {p.name: p for p in ctx.cluster.disk_pools()}
        pool = pools.get(target.storage_pool)
        state = f"{pool.state}, {pool.used // 2**30} GiB used" if pool else "not in the cluster"
        notes.append(f"DiskPool {target.storage_pool} ({state}) on {', '.join(target.pool_disks)}")
    notes += volume_notes(ctx, target.hostname)[0]
    terminating = [p for p in (node.pods if node else ()) if p.terminating]
    if terminating:
        confirmed = set(ctx.params.get("force_delete") or ())
        notes.append(
            "Terminating pods (their kubelet never confirms): "
            + ", ".join(
                f"{p.namespace}/{p.name}"
                + (" [force delete confirmed]" if f"{p.namespace}/{p.name}" in confirmed else "")
                for p in terminating
            )
        )
    if target.gpu:
        gpu_pods = [p for p in (node.pods if node else ()) if p.gpu_request]
        names = ", ".join(f"{p.namespace}/{p.name}" for p in gpu_pods) or "none"
        notes.append(f"GPU pods that will stop: {names}")
        passthrough = ", ".join(sorted((old.get("hostpci") or {}).values())) or "from mappings"
        notes.append(f"passthrough the new VM needs: {passthrough}")
    if node is not None:
        blocking = blocking_pdbs(ctx, target.hostname)
        notes.append("PodDisruptionBudgets blocking the drain: " + (", ".join(blocking) or "none"))
    return notes


class ImpactStep(Step):
    """Journals the old VM's facts (later steps destroy it) and shows the impact."""

    id = "impact"
    title = "Preflight and impact"

    def check(self, ctx: RunContext) -> Check:
        saved = ctx.out(self.id, "old_vm")
        return Check(saved is not None, "the old VM's facts are journaled" if saved else "")

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(self.id, self.title, notes=impact_notes(ctx))

    def run(self, ctx: RunContext) -> dict[str, Any]:
        target = resolve(ctx)
        node = ctx.cluster.node(target.hostname)
        return {
            "old_vm": observe_old_vm(ctx),
            "node_created": node.created if node is not None else None,
            # what the old machine provided, for the replacement's verification
            "gpu_allocatable": node.gpu_allocatable if node is not None else 0,
            "volumes_lost": volume_notes(ctx, target.hostname)[1],
        }
