"""The new machine joins: its config from the tree applied in maintenance mode (as
`talosctl apply-config --insecure` does), then Ready, etcd whole again, uncordoned and
verified (DaemonSet pods, GPUs, the pool)."""

from __future__ import annotations

from typing import Any

from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.node_replace.old_node import replacement_begun
from dapper.actions.node_replace.target import generated_config, machines, resolve
from dapper.backends.errors import BackendError
from dapper.backends.gitops.nodelabels import is_forbidden

GPU_RESOURCE_COUNT = 16  # four P100s as the device plugin's time-sliced replicas


def _timeout(ctx: RunContext) -> float:
    return float(ctx.params.get("timeout") or 600)


def config_labels(ctx: RunContext) -> tuple[dict[str, str], list[str]]:
    """(the nodeLabels of the config the run applies, those NodeRestriction refuses).

    Talos writes a worker's labels with its kubelet's credentials, and the API server
    refuses the whole update when one is forbidden: then none is expected on the Node."""
    cached = ctx.memory.get("config_labels")
    if cached is not None:
        return cached
    from ruamel.yaml import YAML

    labels: dict[str, str] = {}
    for doc in YAML(typ="safe").load_all(generated_config(ctx).decode()):
        machine = doc.get("machine") if isinstance(doc, dict) else None
        raw = machine.get("nodeLabels") if isinstance(machine, dict) else None
        if isinstance(raw, dict):
            labels.update({str(k): "" if v is None else str(v) for k, v in raw.items()})
    refused = [] if resolve(ctx).control_plane else sorted(k for k in labels if is_forbidden(k))
    result = ({} if refused else labels), refused
    ctx.memory["config_labels"] = result
    return result


def gpus_wanted(ctx: RunContext) -> int:
    """nvidia.com/gpu the replacement must offer: what the old node's device plugin did
    (journaled by the impact step), else the four P100s' time-sliced count; 0 for a node
    that is not the GPU node."""
    if not resolve(ctx).gpu:
        return 0
    return int(ctx.out("impact", "gpu_allocatable") or 0) or GPU_RESOURCE_COUNT


def configured(ctx: RunContext) -> bool:
    """The node answers the cluster's Talos credentials at its address, as itself."""
    target = resolve(ctx)
    return machines(ctx).hostname(target.node.ip) == target.hostname


class ApplyConfigStep(Step):
    id = "apply-config"
    title = "Apply the machine config from the tree in maintenance mode"

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx) and configured(ctx):
            return Check(True, "the node runs its config")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        target = resolve(ctx)
        generated_config(ctx)  # refuses now (one line) if the tree or its secrets are wrong
        return StepPreview(
            self.id,
            self.title,
            calls=[
                f"generate {target.talconfig.cluster_name}-{target.hostname}.yaml from the "
                "tree (in memory; talsecret.sops.yaml decrypted in memory)",
                "talosctl apply-config --insecure -n <maintenance address> (mode auto)",
                f"wait for install and reboot; then reach {target.node.ip} with the "
                "cluster's talosconfig",
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        address = ctx.out("boot", "address")
        if not address:
            raise StepFailed("no maintenance-mode address journaled by the boot step")
        m = machines(ctx)
        if not m.in_maintenance(address):
            if ctx.out(self.id, "applied"):
                return {}  # applied before a crash: the machine is installing
            raise StepFailed(f"the new machine no longer answers in maintenance mode at {address}")
        data = generated_config(ctx)
        ctx.save(applied=address)
        ctx.progress(f"applied at {address}: {m.apply_in_maintenance(address, data)}")
        return {"applied": address}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        target = resolve(ctx)
        machines(ctx).wait_configured(ctx, target.hostname, target.node.ip, _timeout(ctx))
        return {}


class ReadyStep(Step):
    id = "ready"
    title = "Wait until the node is Ready (and etcd has every member again)"

    def _state(self, ctx: RunContext) -> tuple[bool, str]:
        target = resolve(ctx)
        node = ctx.cluster.node(target.hostname)
        if node is None:
            return False, "not registered yet"
        if node.ready != "True":
            return False, f"registered, Ready={node.ready}"
        if target.control_plane:
            return self._etcd(ctx)
        return True, "Ready"

    def _etcd(self, ctx: RunContext) -> tuple[bool, str]:
        target = resolve(ctx)
        planes = [n for n in target.talconfig.nodes if n.control_plane]
        try:
            members = machines(ctx).etcd_members(target.node.ip)
        except BackendError as exc:
            return False, f"etcd: {exc.reason}"
        voters = [m for m in members if not m.is_learner and m.healthy is not False]
        names = sorted(m.hostname for m in voters)
        done = len(voters) == len(planes) and target.hostname in names
        return done, f"etcd voters: {', '.join(names)}"

    def check(self, ctx: RunContext) -> Check:
        if not replacement_begun(ctx):
            return Check(False)
        done, status = self._state(ctx)
        return Check(done, status if done else "")

    def preview(self, ctx: RunContext) -> StepPreview:
        target = resolve(ctx)
        calls = [f"wait for Node {target.hostname} Ready"]
        if target.control_plane:
            calls.append("wait until etcd has every control plane as a healthy voter")
        return StepPreview(self.id, self.title, calls=calls)

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        status = ctx.wait(
            f"{resolve(ctx).hostname} to be Ready",
            lambda: self._state(ctx),
            timeout=_timeout(ctx),
        )
        return {"status": status}


class UncordonStep(Step):
    id = "uncordon"
    title = "Uncordon the node"

    def check(self, ctx: RunContext) -> Check:
        node = ctx.cluster.node(resolve(ctx).hostname)
        if replacement_begun(ctx) and node is not None and not node.unschedulable:
            return Check(True, "schedulable")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(self.id, self.title, calls=[f"kubectl uncordon {resolve(ctx).hostname}"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        ctx.cluster.uncordon(resolve(ctx).hostname)
        return {}


class VerifyStep(Step):
    """The node is back as the cluster needs it: the last word of the run."""

    id = "verify"
    title = "Verify by what the new machine provides: DaemonSets, nodeLabels, GPUs, pool"

    def _state(self, ctx: RunContext) -> tuple[bool, str]:
        target = resolve(ctx)
        node = ctx.cluster.node(target.hostname)
        if node is None or node.ready != "True" or node.unschedulable:
            return False, "node not Ready and schedulable"
        daemons = [p for p in node.pods if p.owner_kind == "DaemonSet"]
        waiting = [p.name for p in daemons if p.phase != "Running"]
        if not daemons or waiting:
            return False, f"DaemonSet pods not running: {', '.join(waiting) or 'none yet'}"
        wanted, _ = config_labels(ctx)
        labels = dict(node.labels)
        missing = [f"{k}={v}" for k, v in sorted(wanted.items()) if labels.get(k) != v]
        if missing:
            return False, f"its config's nodeLabels not on the Node: {', '.join(missing)}"
        gpus = gpus_wanted(ctx)
        if gpus and node.gpu_allocatable < gpus:
            return False, (
                f"nvidia.com/gpu allocatable {node.gpu_allocatable} (the device plugin's), "
                f"want {gpus}"
            )
        if target.storage_pool:
            pools = {p.name: p for p in ctx.cluster.disk_pools()}
            pool = pools.get(target.storage_pool)
            if pool is None or pool.state != "Online":
                return False, f"DiskPool {target.storage_pool}: {pool.state if pool else 'absent'}"
            if pool.node != target.hostname or tuple(pool.disks) != target.pool_disks:
                return False, (
                    f"DiskPool {target.storage_pool} is on {pool.node} {', '.join(pool.disks)}, "
                    f"not {target.hostname} {', '.join(target.pool_disks)}"
                )
        parts = [f"{len(daemons)} DaemonSet pod(s) running"]
        if wanted:
            parts.append(f"{len(wanted)} nodeLabel(s) of its config")
        if gpus:
            parts.append(f"{node.gpu_allocatable} nvidia.com/gpu allocatable")
        if target.storage_pool:
            parts.append(f"DiskPool {target.storage_pool} Online")
        return True, ", ".join(parts)

    def check(self, ctx: RunContext) -> Check:
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        target = resolve(ctx)
        calls = ["node Ready and schedulable; its DaemonSet pods running"]
        wanted, refused = config_labels(ctx)
        if wanted:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
            calls.append(f"the nodeLabels of its config on the Node: {shown}")
        gpus = gpus_wanted(ctx)
        if gpus:
            calls.append(f"nvidia.com/gpu allocatable (the device plugin's) back to {gpus}")
        if target.storage_pool:
            calls.append(f"DiskPool {target.storage_pool} Online on {', '.join(target.pool_disks)}")
        notes = []
        if refused:
            notes.append(
                "nodeLabels NodeRestriction refuses a worker (Talos applies them with the "
                f"kubelet's credentials; none of the batch lands): {', '.join(refused)}"
            )
        return StepPreview(self.id, self.title, calls=calls, notes=notes)

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        status = ctx.wait(
            f"{resolve(ctx).hostname} to be back", lambda: self._state(ctx), timeout=_timeout(ctx)
        )
        return {"status": status}
