"""bootstrap: from an empty Proxmox host to a Flux-reconciled cluster, resumable.

The procedure of kubernetes/bootstrap (talhelper, talosctl retry loops, a helmfile and
secrets applied by hand) as steps that each check, preview, run and verify: the VMs from
vms.yaml, configs generated from the tree and applied in maintenance mode, etcd
bootstrapped once, the kubeconfig through Talos, namespaces and Flux's secrets, the
bootstrap releases, then Flux reconciling the pushed revision. A resumed run (or a second
run on the finished cluster) finds done steps done and changes nothing; a fresh run
against a cluster that exists and is not this runbook's finished work is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from dapper.actions.bootstrap.charts import ReleasesStep
from dapper.actions.bootstrap.converge import ConvergedStep
from dapper.actions.bootstrap.host import BootVmsStep, CreateVmsStep
from dapper.actions.bootstrap.kube import (
    SECRET_FILES,
    FluxSecretsStep,
    NamespacesStep,
    NodesRegisteredStep,
)
from dapper.actions.bootstrap.plan import helmfile_command, machines, plans
from dapper.actions.bootstrap.talos import (
    ApplyConfigsStep,
    EtcdBootstrapStep,
    KubeconfigStep,
    TalosconfigStep,
    etcd_members,
    kube_answers,
    use_generated_talosconfig,
)
from dapper.actions.bootstrap.talsecret import TALSECRET, TalsecretStep, tree_changes
from dapper.actions.common_steps import IfChangedCommitStep, IfChangedPushStep
from dapper.actions.engine import Runbook, RunContext, Step, StepFailed
from dapper.actions.params import Param
from dapper.actions.pci import in_use, mappings
from dapper.actions.preflight import identities, standard_preflight
from dapper.actions.vm_build import template_vm, vm_plans
from dapper.backends.errors import BackendError


class Bootstrap(Runbook):
    name = "bootstrap"
    title = "bootstrap the cluster"
    summary = "From an empty Proxmox host to a Flux-reconciled cluster, from the tree"
    params = (Param("timeout", "int", help="seconds each wait may take", default=900),)
    needs_cluster = False

    def preflight(self, ctx: RunContext) -> None:
        standard_preflight(ctx, cluster=False)
        check_recipients(ctx)
        vm_plans(ctx)  # a tree whose VMs and nodes disagree is refused here
        use_generated_talosconfig(ctx)  # decrypts talsecret: a wrong key is refused here
        if ctx.record is None:
            check_not_existing(ctx, self.steps(ctx))
        template_vm(ctx, vm_plans(ctx).template)
        check_host(ctx)
        helmfile_command(ctx)

    def steps(self, ctx: RunContext) -> Sequence[Step]:
        return (
            TalsecretStep(),
            IfChangedCommitStep(self.commit_subject, tree_changes),
            IfChangedPushStep(tree_changes),
            CreateVmsStep(),
            TalosconfigStep(),
            BootVmsStep(),
            ApplyConfigsStep(),
            EtcdBootstrapStep(),
            KubeconfigStep(),
            NodesRegisteredStep(),
            NamespacesStep(),
            FluxSecretsStep(),
            ReleasesStep(),
            ConvergedStep(),
        )

    def commit_subject(self, ctx: RunContext) -> str:
        return "new Talos secrets for the cluster (talsecret.sops.yaml)"


def check_recipients(ctx: RunContext) -> None:
    """The operator's age key must be a recipient of what bootstrap decrypts."""
    from dapper.backends.sops.errors import SopsError
    from dapper.backends.sops.rules import find_creation_rule

    mine = {str(i.to_public()) for i in identities(ctx)}
    for rel in (TALSECRET, *SECRET_FILES):
        try:
            rule = find_creation_rule(ctx.root, rel)
        except SopsError as exc:
            raise StepFailed(f".sops.yaml: {exc}") from None
        if not mine & set(rule.age):
            key = sorted(mine)[0] if mine else "none"
            raise StepFailed(
                f"the age key ({key[:16]}…) is not a recipient of {rel} in .sops.yaml: "
                "it cannot open what bootstrap decrypts"
            )


def check_not_existing(ctx: RunContext, steps: Sequence[Step]) -> None:
    """A fresh run refuses a cluster that exists, unless it is this runbook's finished
    work (every step done: the run then changes nothing)."""
    why = ""
    if not kube_answers(ctx):
        why = f"the API server in {ctx.config.kubeconfig} answers"
    elif etcd_members(ctx):
        why = "etcd has members on the first control plane"
    if not why:
        return
    for step in steps:
        if not step.check(ctx).done:
            raise StepFailed(
                f"the cluster already exists ({why}): bootstrap builds a new cluster and "
                "will not touch this one"
            )


def check_host(ctx: RunContext) -> None:
    """Planned VMIDs and MACs free (or already this plan's), planned devices not held by
    a VM outside the plan."""
    m = machines(ctx)
    planned = {p.vmid: p for p in plans(ctx)}
    macs = {p.mac.lower(): p for p in plans(ctx) if p.mac}
    try:
        vms = m.pve.vms(with_config=True)
    except BackendError as exc:
        raise StepFailed(f"proxmox: {exc.reason}") from None
    for vm in vms:
        plan = planned.get(vm.vmid)
        ours = plan is not None and vm.name == plan.name and not vm.template
        if plan is not None and not ours:
            raise StepFailed(
                f"VMID {vm.vmid} is taken by VM {vm.name!r} on the host (vms.yaml plans "
                f"{plan.name} there)"
            )
        for mac in vm.macs:
            other = macs.get(mac.lower())
            if other is not None and not ours:
                raise StepFailed(
                    f"MAC {mac.lower()} is taken by VM {vm.vmid} ({vm.name}) on the host "
                    f"(talconfig.yaml gives it to {other.name})"
                )
    known = mappings(ctx)
    held = in_use(ctx, known, besides=set(planned))
    for p in plans(ctx):
        for mapping_id in p.mappings:
            found = next((k for k in known if k.id == mapping_id), None)
            if found is None:
                raise StepFailed(
                    f"no PCI resource mapping {mapping_id!r} on Proxmox (vms.yaml gives it "
                    f"to {p.name}): add it under Datacenter > Resource Mappings"
                )
            for address in found.paths:
                if address in held:
                    vm = held[address]
                    raise StepFailed(
                        f"PCI device {address} ({mapping_id}) is attached to running VM "
                        f"{vm.vmid} ({vm.name})"
                    )
