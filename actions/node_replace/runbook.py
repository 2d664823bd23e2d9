"""node-replace: from a dead or failing node's VM to a Ready node, through Git.

Order matters and follows the procedure an operator would run by hand: impact first
(refusing what would cost etcd quorum, a missing template, a GPU held elsewhere, a tree
whose secrets this key cannot open; naming the Mayastor volumes whose only copy is on the
node); then the old node out (drain, force-delete only the Terminating pods the operator
confirmed, reset, etcd, Node, VM); then the new VM from the Talos template with the tree's
MAC (or a new MAC written into the tree and committed); its config generated from the
tree and applied in maintenance mode; then Ready, etcd whole, uncordoned and verified by
what the new machine provides (the device plugin's GPUs, the pool Online on its disk, the
nodeLabels of its config on the Node). A storage node's data disk is kept: the new VM gets
the old VM's storage controller, so its DiskPool is unchanged (replacing a failed SSD,
which changes the pool's disk link, is not handled).
"""

from __future__ import annotations

from collections.abc import Sequence

from dapper.actions.choices import TalosNodes
from dapper.actions.common_steps import (
    IfChangedCommitStep,
    IfChangedPushStep,
    SyncStep,
    run_commit,
)
from dapper.actions.engine import Runbook, RunContext, Step, StepFailed
from dapper.actions.node_replace.devices import check_devices_free
from dapper.actions.node_replace.impact import ImpactStep, check_quorum
from dapper.actions.node_replace.join import (
    ApplyConfigStep,
    ReadyStep,
    UncordonStep,
    VerifyStep,
)
from dapper.actions.node_replace.new_vm import (
    BootStep,
    CreateVmStep,
    TreeMacStep,
    passthrough,
    template_vm,
)
from dapper.actions.node_replace.old_node import (
    DeleteNodeStep,
    DrainStep,
    EtcdRemoveStep,
    OldVmStep,
    ResetStep,
    replacement_begun,
)
from dapper.actions.node_replace.target import (
    generated_config,
    observe_old_vm,
    old_vm_facts,
    resolve,
)
from dapper.actions.node_replace.terminating import ForceDeleteStep, TerminatingPods
from dapper.actions.params import Param


def _tree_changes(ctx: RunContext) -> bool:
    """Whether this run commits: mac=new writes talconfig.yaml (or did, before a crash)."""
    return ctx.params.get("mac") == "new" or bool(run_commit(ctx) or ctx.out("tree", "paths"))


class NodeReplace(Runbook):
    name = "node-replace"
    title = "replace a node"
    summary = "Replace a node's VM: drain, etcd, Proxmox clone, config from the tree, Ready"
    params = (
        Param(
            "node",
            help="the node to replace (a hostname in talconfig.yaml)",
            hint="↑↓ chooses the node (role and address shown)",
            required=True,
            provider=TalosNodes(),
        ),
        Param(
            "vmid",
            help="reuse the old VM's id (needs old_vm=destroy) or take the next free one",
            default="new",
            choices=("new", "reuse"),
        ),
        Param(
            "mac",
            help="keep talconfig.yaml's MAC, or take the new VM's and write it into the tree",
            default="keep",
            choices=("keep", "new"),
        ),
        Param(
            "old_vm",
            help="keep the old VM stopped (renamed <node>-replaced) or destroy it",
            default="keep",
            choices=("keep", "destroy"),
        ),
        Param(
            "force_delete",
            "list",
            help="Terminating pods of the old node to force-delete (namespace/name, "
            "comma-separated); none unless named: only when the node is surely dead",
            hint="space picks each pod to force-delete (its kubelet never confirms)",
            default=(),
            provider=TerminatingPods("node"),
        ),
        Param("timeout", "int", help="seconds each wait may take", default=600),
    )

    def preflight(self, ctx: RunContext) -> None:
        super().preflight(ctx)
        target = resolve(ctx)
        if ctx.params.get("vmid") == "reuse" and ctx.params.get("old_vm") != "destroy":
            raise StepFailed("vmid=reuse needs old_vm=destroy: one VMID cannot hold two VMs")
        fresh = ctx.record is None
        if fresh:
            old = observe_old_vm(ctx)
            if not old and ctx.cluster.node(target.hostname) is None:
                raise StepFailed(
                    f"{target.hostname} is in talconfig.yaml but not in the cluster "
                    "(no Node, no VM): nothing to replace"
                )
        if target.control_plane and not replacement_begun(ctx):
            check_quorum(ctx)
        template_vm(ctx)
        old_vmid = old_vm_facts(ctx).get("vmid")
        check_devices_free(ctx, passthrough(ctx), int(old_vmid) if old_vmid else None)
        generated_config(ctx)  # a wrong age key or a broken tree is refused here

    def steps(self, ctx: RunContext) -> Sequence[Step]:
        target = resolve(ctx)
        out: list[Step] = [ImpactStep(), SyncStep(), DrainStep(), ForceDeleteStep(), ResetStep()]
        if target.control_plane:
            out.append(EtcdRemoveStep())
        out += [
            DeleteNodeStep(),
            OldVmStep(),
            CreateVmStep(),
            TreeMacStep(),
            IfChangedCommitStep(self.commit_subject, _tree_changes),
            IfChangedPushStep(_tree_changes),
            BootStep(),
            ApplyConfigStep(),
            ReadyStep(),
            UncordonStep(),
            VerifyStep(),
        ]
        return out

    def commit_subject(self, ctx: RunContext) -> str:
        target = resolve(ctx)
        mac = ctx.out("tree", "mac") or ""
        return f"replace {target.hostname}" + (f" (new MAC {mac})" if mac else "")
