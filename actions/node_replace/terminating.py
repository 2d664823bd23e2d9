"""A dead node's Terminating pods: force-deleted only where the operator confirmed.

A pod on a node whose kubelet is gone keeps its deletionTimestamp (Terminating) until its
kubelet confirms, which a dead one never does. `kubectl delete pod --grace-period=0 --force`
removes the object at once; for a StatefulSet pod that is what lets its successor of the
same ordinal start elsewhere, and it is unsafe if the old container might still run (the
node is only unreachable, not dead). So the runbook never does it by default: the
`force_delete` parameter names the pods (namespace/name) the operator confirmed, its
choices are the node's Terminating pods, and the step says which it left. Deleting the Node
object later lets the pod garbage collector remove what is left (after its quarantine).
"""

from __future__ import annotations

from typing import Any

from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.node_replace.old_node import old_node, replacement_begun
from dapper.actions.params import Choice, ChoiceContext, ChoicesProvider


def _key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _terminating(pod: dict) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


class TerminatingPods(ChoicesProvider):
    """The Terminating pods bound to the node chosen for another parameter (from the
    console's snapshot when there is one, else read from the cluster)."""

    heading = "POD  ·  OWNER  ·  PHASE"

    def __init__(self, node_param: str = "node") -> None:
        self.node_param = node_param
        self.depends_on = (node_param,)

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        node = str(ctx.values.get(self.node_param) or "").strip()
        if not node:
            return []
        pods = self._from_snapshot(ctx, node)
        if pods is None:
            pods = self._from_cluster(ctx, node)
        return [
            Choice(f"{ns}/{name}", detail=(f"{owner or 'no owner'}  ·  {phase or '?'}",))
            for ns, name, owner, phase in sorted(pods)
        ]

    def _from_snapshot(self, ctx: ChoiceContext, node: str) -> list[tuple] | None:
        nodes = getattr(ctx.snapshot, "nodes", None)
        if not nodes:
            return None
        found = next((n for n in nodes if n.name == node), None)
        if found is None:
            return None
        return [
            (p.namespace, p.name, f"{p.owner_kind} {p.owner_name}".strip(), p.phase)
            for p in found.pods
            if p.terminating
        ]

    def _from_cluster(self, ctx: ChoiceContext, node: str) -> list[tuple]:
        if ctx.config is None:
            return []
        from dapper.backends.clients.kube import KubeBackend

        kube = KubeBackend.from_kubeconfig(
            ctx.config.kubeconfig or None, context=ctx.config.kube_context or None, read_only=True
        )
        try:
            pods = kube.pod_objects(node=node)
        finally:
            kube.close()
        out = []
        for p in pods:
            if not _terminating(p):
                continue
            refs = (p.get("metadata") or {}).get("ownerReferences") or []
            owner = f"{refs[0].get('kind', '')} {refs[0].get('name', '')}" if refs else ""
            meta = p["metadata"]
            phase = (p.get("status") or {}).get("phase", "")
            out.append((meta.get("namespace", ""), meta.get("name", ""), owner, phase))
        return out


def confirmed(ctx: RunContext) -> list[str]:
    return [str(v) for v in ctx.params.get("force_delete") or ()]


def split(ctx: RunContext) -> tuple[list[dict], list[str], list[str]]:
    """(confirmed Terminating pods on the old node, other Terminating ones there (left),
    confirmed names not Terminating there)."""
    node = old_node(ctx)
    pods = ctx.cluster.node_pod_objects(node.name) if node is not None else []
    stuck = {_key(p): p for p in pods if _terminating(p)}
    wanted = confirmed(ctx)
    forced = [stuck[k] for k in wanted if k in stuck]
    left = sorted(k for k in stuck if k not in wanted)
    absent = [k for k in wanted if k not in stuck]
    return forced, left, absent


class ForceDeleteStep(Step):
    id = "force-delete"
    title = "Force-delete the confirmed Terminating pods of the old node"

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx):
            return Check(True, "the replacement VM exists")
        forced, left, _ = split(ctx)
        if forced:
            return Check(False)
        why = "no force delete confirmed" if not confirmed(ctx) else "none confirmed is there"
        if left:
            return Check(True, f"{why}; left Terminating: {', '.join(left)}")
        return Check(True, f"{why}; no Terminating pod")

    def preview(self, ctx: RunContext) -> StepPreview:
        forced, left, absent = split(ctx)
        calls = [
            f"kubectl delete pod -n {_key(p).split('/', 1)[0]} {p['metadata']['name']} "
            "--grace-period=0 --force"
            for p in forced
        ]
        notes = []
        if left:
            notes.append(
                "left Terminating (not confirmed; the pod GC removes them once the Node "
                "object is deleted): " + ", ".join(left)
            )
        if absent:
            notes.append("confirmed but not Terminating on this node: " + ", ".join(absent))
        return StepPreview(self.id, self.title, calls=calls, notes=notes)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        forced, left, absent = split(ctx)
        done = []
        for pod in forced:
            meta = pod["metadata"]
            if ctx.cluster.force_delete_pod(meta["namespace"], meta["name"], meta.get("uid", "")):
                done.append(_key(pod))
        ctx.progress(
            f"force-deleted: {', '.join(done) or 'none'}; left Terminating: "
            f"{', '.join(left) or 'none'}"
        )
        return {"forced": done, "left": left, "not_terminating": absent}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        forced, _, _ = split(ctx)
        if forced:
            raise StepFailed(
                "still Terminating after the force delete: " + ", ".join(_key(p) for p in forced)
            )
        return {}
