"""The end: every node Ready and every Flux Kustomization Ready at the pushed revision,
then the picture an operator checks by hand (nodes, GPUs, pools, Kustomizations)."""

from __future__ import annotations

from typing import Any

from dapper.actions.bootstrap.kube import kube
from dapper.actions.bootstrap.plan import kubeconfig_path, plans, timeout
from dapper.actions.engine import Check, RunContext, Step, StepPreview
from dapper.backends.errors import BackendError


def picture(ctx: RunContext) -> dict[str, Any]:
    """What the cluster looks like now, in counts (and what is not there yet)."""
    k = kube(ctx)
    wanted = {p.name for p in plans(ctx)}
    nodes = [n for n in k.nodes() if n.name in wanted]
    sha = ctx.repo.head()[1]
    kss = k.kustomizations()
    at_head = [ks for ks in kss if ks.ready == "True" and ks.applied_revision.endswith(sha)]
    pools = k.disk_pools()
    return {
        "nodes_ready": sum(1 for n in nodes if n.ready == "True"),
        "nodes": len(wanted),
        "gpus": sum(n.gpu_allocatable for n in nodes),
        "pools_online": sum(1 for p in pools if p.state == "Online"),
        "pools": len(pools),
        "ks_ready": len(at_head),
        "ks": len(kss),
        "waiting": sorted(ks.key for ks in kss if ks not in at_head)[:5],
        "revision": sha[:12],
    }


def _done(p: dict[str, Any]) -> bool:
    return p["nodes_ready"] == p["nodes"] and p["ks"] > 0 and p["ks_ready"] == p["ks"]


def _line(p: dict[str, Any]) -> str:
    line = (
        f"nodes {p['nodes_ready']}/{p['nodes']} Ready · GPUs {p['gpus']} allocatable · "
        f"pools {p['pools_online']}/{p['pools']} Online · "
        f"Kustomizations {p['ks_ready']}/{p['ks']} Ready at {p['revision']}"
    )
    if p["waiting"] and p["ks_ready"] < p["ks"]:
        line += f" (waiting: {', '.join(p['waiting'])})"
    return line


class ConvergedStep(Step):
    id = "converged"
    title = "Wait until every node is Ready and Flux has reconciled the pushed revision"

    def check(self, ctx: RunContext) -> Check:
        if not kubeconfig_path(ctx).exists():
            return Check(False)
        try:
            now = picture(ctx)
        except BackendError:
            return Check(False)
        return Check(True, _line(now)) if _done(now) else Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id,
            self.title,
            calls=[
                "kubectl get nodes; flux get ks -A (until all Ready at the pushed revision)",
                "show nodes, GPUs, pools and Kustomizations",
            ],
        )

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def probe() -> tuple[bool, str]:
            try:
                now = picture(ctx)
            except BackendError as exc:
                return False, exc.reason
            seen.update(now)
            return _done(now), _line(now)

        ctx.wait("the cluster to converge", probe, timeout=timeout(ctx))
        return {k: v for k, v in seen.items() if k != "waiting"}
