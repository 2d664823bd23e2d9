"""The replacement VM: clone the Talos template, size it, give it its MAC and passthrough
devices, write a new MAC into talconfig.yaml, start it and find it in maintenance mode.

The new VMID is journaled before the clone call, so a resumed run finds its own VM and
never clones twice. Passthrough goes through PCI resource mappings: Proxmox lets only
root@pam set raw `hostpciN` addresses, and the console's API token is not root.
"""

from __future__ import annotations

from typing import Any

from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.node_replace.old_node import replacement_begun
from dapper.actions.node_replace.target import (
    machines,
    old_vm_facts,
    resolve,
    sizes,
)
from dapper.actions.vm_build import (
    clone_template,
    configure_vm,
    maintenance_probe,
    start_vm,
    template_vm,
)
from dapper.actions.yamledit import set_talconfig_mac

TALCONFIG = "kubernetes/bootstrap/talos/talconfig.yaml"


def new_vm(ctx: RunContext) -> Any | None:
    """This run's replacement VM, once its clone exists."""
    vmid = ctx.out("new-vm", "vmid")
    if vmid is None:
        return None
    vm = machines(ctx).vm(int(vmid))
    return vm if vm is not None and not vm.template else None


def wanted_mac(ctx: RunContext) -> str:
    """The MAC the new VM gets: talconfig's (mac=keep), else the clone's own."""
    target = resolve(ctx)
    if ctx.params.get("mac") == "keep" and target.node.macs:
        return target.node.macs[0]
    return ""


def passthrough(ctx: RunContext) -> dict[str, str]:
    """hostpciN lines for the new VM: every device of the old VM, as a mapping."""
    from dapper.actions.node_replace.devices import passthrough_lines

    return passthrough_lines(ctx, old_vm_facts(ctx).get("hostpci") or {})


class CreateVmStep(Step):
    id = "new-vm"
    title = "Create the replacement VM from the Talos template"

    def check(self, ctx: RunContext) -> Check:
        vm = new_vm(ctx)
        return Check(vm is not None, f"VM {vm.vmid} exists" if vm is not None else "")

    def _vmid(self, ctx: RunContext) -> str:
        if ctx.params.get("vmid") == "reuse":
            old = old_vm_facts(ctx)
            return str(old.get("vmid") or "<next free id>")
        return "<next free id>"

    def preview(self, ctx: RunContext) -> StepPreview:
        target = resolve(ctx)
        size = sizes(ctx)
        template = template_vm(ctx)
        mac = wanted_mac(ctx) or "a new one (written into talconfig.yaml)"
        calls = [
            f"qm clone {template.vmid} {self._vmid(ctx)} --name {target.hostname} --full",
            f"qm set: {size['cores']} cores, {size['memory']} MiB, net0 MAC {mac}",
            f"qm resize <new VM> <OS disk> {size['disk_gib']}G (when the template's is smaller)",
        ]
        for key, value in sorted(passthrough(ctx).items()):
            calls.append(f"qm set --{key} {value}")
        return StepPreview(self.id, self.title, calls=calls)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        m = machines(ctx)
        target = resolve(ctx)
        template = template_vm(ctx)
        vmid = ctx.out(self.id, "vmid")
        if vmid is None:
            old = old_vm_facts(ctx)
            vmid = int(old["vmid"]) if ctx.params.get("vmid") == "reuse" and old else 0
            vmid = vmid or m.pve.next_vmid()
            ctx.save(vmid=vmid)  # before the clone: a resumed run finds its own VM
        clone_template(ctx, template.vmid, int(vmid), target.hostname)
        size = sizes(ctx)
        configure_vm(
            ctx,
            int(vmid),
            name=target.hostname,
            cores=size["cores"],
            memory=size["memory"],
            disk_gib=size["disk_gib"],
            control_plane=target.control_plane,
            mac=wanted_mac(ctx),
            hostpci=passthrough(ctx),
        )
        return {"vmid": int(vmid)}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        vm = new_vm(ctx)
        if vm is None:
            raise StepFailed("the replacement VM is not on Proxmox")
        want = wanted_mac(ctx)
        if want and want.lower() not in (x.lower() for x in vm.macs):
            raise StepFailed(f"VM {vm.vmid} has MAC {', '.join(vm.macs)}, not {want}")
        config = dict(vm.config)
        missing = [k for k, v in passthrough(ctx).items() if config.get(k) != v]
        if missing:
            raise StepFailed(f"VM {vm.vmid} lacks {', '.join(missing)}")
        return {"mac": vm.macs[0] if vm.macs else ""}


class TreeMacStep(Step):
    """mac=new: the tree must describe the machine that exists, or the generated config
    selects an interface the VM does not have and the node never comes up."""

    id = "tree"
    title = "Write the new VM's MAC into talconfig.yaml"

    def _mac(self, ctx: RunContext) -> str:
        vm = new_vm(ctx)
        return (vm.macs[0] if vm is not None and vm.macs else "").lower()

    def check(self, ctx: RunContext) -> Check:
        if ctx.params.get("mac") == "keep":
            return Check(True, "mac=keep: talconfig.yaml already has it")
        mac = self._mac(ctx)
        target = resolve(ctx)
        now = _tree_macs(ctx, target.hostname)
        if mac and mac in now:
            return Check(True, f"talconfig.yaml has {mac}")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        target = resolve(ctx)
        return StepPreview(
            self.id,
            self.title,
            calls=[f"{TALCONFIG}: {target.hostname} hardwareAddr -> the new VM's MAC"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        mac = self._mac(ctx)
        if not mac:
            raise StepFailed("the replacement VM has no MAC yet")
        target = resolve(ctx)
        ctx.save(paths=[TALCONFIG])  # before the write: resume accepts this dirty file
        set_talconfig_mac(ctx.root / TALCONFIG, target.hostname, mac)
        ctx.memory.pop("target", None)  # re-read the tree: the generator must see the MAC
        return {"paths": [TALCONFIG], "mac": mac}


def _tree_macs(ctx: RunContext, hostname: str) -> tuple[str, ...]:
    from dapper.backends.talosgen.talconfig import load_talconfig

    node = load_talconfig(ctx.root).node(hostname)
    return node.macs if node is not None else ()


class BootStep(Step):
    id = "boot"
    title = "Start the VM and wait for Talos maintenance mode"

    def _configured(self, ctx: RunContext) -> bool:
        target = resolve(ctx)
        return machines(ctx).hostname(target.node.ip) == target.hostname

    def check(self, ctx: RunContext) -> Check:
        if not replacement_begun(ctx):
            return Check(False)  # what answers now is the old machine
        if self._configured(ctx):
            return Check(True, "the node already runs its config")
        vm = new_vm(ctx)
        address = ctx.out(self.id, "address")
        running = vm is not None and vm.status == "running"
        if running and address and machines(ctx).in_maintenance(address):
            return Check(True, f"in maintenance mode at {address}")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id,
            self.title,
            calls=[
                "qm start <new VM>",
                "find its address through the QEMU guest agent; wait until Talos answers "
                "there without a client certificate (maintenance mode)",
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        vm = new_vm(ctx)
        if vm is None:
            raise StepFailed("the replacement VM is not on Proxmox")
        start_vm(ctx, vm.vmid)
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        if self._configured(ctx):
            return {}
        vm = new_vm(ctx)
        if vm is None:
            raise StepFailed("the replacement VM is not on Proxmox")
        found: dict[str, str] = {}
        probe = maintenance_probe(ctx, vm.vmid, found)
        timeout = float(ctx.params.get("timeout") or 600)
        ctx.wait(f"VM {vm.vmid} to boot into maintenance mode", probe, timeout=timeout)
        ctx.save(address=found["address"])
        return {"address": found["address"]}
