"""The seven VMs: cloned from the Talos template as vms.yaml plans them, then started and
found in Talos maintenance mode.

VMIDs come from the tree, so a resumed run finds the VMs it made by id and never clones
twice; a VM of another name at a planned id is refused by preflight, not adopted.
"""

from __future__ import annotations

from typing import Any

from dapper.actions.bootstrap.plan import machines, node_of, plans, timeout
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.vm_build import (
    clone_template,
    configure_vm,
    maintenance_probe,
    start_vm,
    template_vm,
    vm_plans,
)


def _built(ctx: RunContext, vmid: int, name: str, mac: str, hostpci: dict[str, str]) -> bool:
    vm = machines(ctx).vm(vmid)
    if vm is None or vm.template or vm.name != name:
        return False
    config = dict(vm.config)
    has_mac = not mac or mac.lower() in (x.lower() for x in vm.macs)
    return has_mac and all(config.get(k) == v for k, v in hostpci.items())


class CreateVmsStep(Step):
    id = "vms"
    title = "Create the cluster's VMs from the Talos template"

    def check(self, ctx: RunContext) -> Check:
        missing = [
            p.name for p in plans(ctx) if not _built(ctx, p.vmid, p.name, p.mac, p.hostpci())
        ]
        if missing:
            return Check(False)
        return Check(True, f"{len(plans(ctx))} VMs exist as planned")

    def preview(self, ctx: RunContext) -> StepPreview:
        template = template_vm(ctx, vm_plans(ctx).template)
        calls = []
        for p in plans(ctx):
            if _built(ctx, p.vmid, p.name, p.mac, p.hostpci()):
                continue
            devices = " ".join(f"--{k} {v}" for k, v in p.hostpci().items())
            calls.append(
                f"qm clone {template.vmid} {p.vmid} --name {p.name} --full; qm set {p.vmid} "
                f"--cores {p.cores} --memory {p.memory} --net0 virtio={p.mac.upper()} "
                f"{devices}".rstrip()
                + f"; OS disk {p.disk_gib}G"
            )
        return StepPreview(self.id, self.title, calls=calls)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        template = template_vm(ctx, vm_plans(ctx).template)
        for p in plans(ctx):
            ctx.checkpoint()
            clone_template(ctx, template.vmid, p.vmid, p.name)
            configure_vm(
                ctx,
                p.vmid,
                name=p.name,
                cores=p.cores,
                memory=p.memory,
                disk_gib=p.disk_gib,
                control_plane=p.control_plane,
                mac=p.mac,
                hostpci=p.hostpci(),
            )
        return {"vmids": [p.vmid for p in plans(ctx)]}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        for p in plans(ctx):
            if not _built(ctx, p.vmid, p.name, p.mac, p.hostpci()):
                raise StepFailed(f"VM {p.vmid} is not {p.name} with MAC {p.mac} and its devices")
        return {}


def configured(ctx: RunContext, name: str) -> bool:
    """The machine answers at its talconfig address with the cluster's credentials."""
    node = talconfig_node(ctx, name)
    return machines(ctx).hostname(node.ip) == name


def talconfig_node(ctx: RunContext, name: str) -> Any:
    plan = vm_plans(ctx).vm(name)
    if plan is None:
        raise StepFailed(f"{name} has no VM in vms.yaml")
    return node_of(ctx, plan)


class BootVmsStep(Step):
    id = "boot"
    title = "Start the VMs and wait for Talos maintenance mode"

    def _waiting(self, ctx: RunContext) -> list[Any]:
        return [p for p in plans(ctx) if not configured(ctx, p.name)]

    def check(self, ctx: RunContext) -> Check:
        waiting = self._waiting(ctx)
        if not waiting:
            return Check(True, "every node runs its config")
        found = ctx.out(self.id, "addresses") or {}
        m = machines(ctx)
        ready = [p for p in waiting if found.get(p.name) and m.in_maintenance(found[p.name])]
        if len(ready) == len(waiting):
            return Check(True, f"{len(ready)} in maintenance mode")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id,
            self.title,
            calls=[
                "qm start " + " ".join(str(p.vmid) for p in self._waiting(ctx)),
                "find each VM's address through the QEMU guest agent; wait until Talos "
                "answers there without a client certificate (maintenance mode)",
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        for p in self._waiting(ctx):
            ctx.checkpoint()
            start_vm(ctx, p.vmid)
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        addresses: dict[str, str] = dict(ctx.out(self.id, "addresses") or {})
        for p in self._waiting(ctx):
            found: dict[str, str] = {}
            probe = maintenance_probe(ctx, p.vmid, found)
            ctx.wait(f"VM {p.vmid} ({p.name}) in maintenance mode", probe, timeout=timeout(ctx))
            addresses[p.name] = found["address"]
            ctx.save(addresses=addresses)
        return {"addresses": addresses}
