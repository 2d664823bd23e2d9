"""Building a Talos VM on Proxmox, shared by node-replace and bootstrap.

Clone the Talos template, size it, give it its MAC and passthrough (by PCI resource
mapping), grow its OS disk, start it and find it in Talos maintenance mode through the
QEMU guest agent. Callers journal the VMID before the clone so a resumed run finds its
own VM and never clones twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dapper.actions.engine import StepFailed
from dapper.actions.machines import Machines
from dapper.actions.pci import HOSTPCI_KEYS
from dapper.backends.errors import BackendError

if TYPE_CHECKING:
    from dapper.actions.engine import RunContext
    from dapper.backends.talosgen.vmplan import VmPlans

TASK_TIMEOUT = 120.0
OS_DISKS = ("virtio0", "scsi0", "sata0")


def vm_plans(ctx: RunContext) -> VmPlans:
    """kubernetes/bootstrap/proxmox/vms.yaml, checked against talconfig.yaml (once a run)."""
    plans = ctx.memory.get("vm-plans")
    if plans is None:
        from dapper.backends.talosgen.talconfig import load_talconfig
        from dapper.backends.talosgen.vmplan import load_vm_plans

        try:
            plans = load_vm_plans(ctx.root, load_talconfig(ctx.root))
        except BackendError as exc:
            raise StepFailed(exc.reason) from None
        ctx.memory["vm-plans"] = plans
    return plans


def template_vm(ctx: RunContext, name: str = "") -> Any:
    """The Talos template on Proxmox (the one named `name` when given), or StepFailed."""
    found = [v for v in Machines.of(ctx).pve.vms(with_config=False) if v.template]
    talos = [v for v in found if v.name == name] if name else []
    talos = talos or [v for v in found if "talos" in v.name.lower()] or found
    if not talos:
        raise StepFailed(
            "no Talos template on Proxmox: create one (a VM with the Talos ISO or nocloud "
            "image, converted to a template) first"
        )
    return talos[0]


def clone_template(ctx: RunContext, template_vmid: int, vmid: int, name: str) -> None:
    """A full clone of the template as `vmid`, unless that VM exists already."""
    m = Machines.of(ctx)
    if m.vm(vmid) is not None:
        return
    ctx.progress(f"cloning template {template_vmid} to VM {vmid} ({name})")
    m.wait_task(m.pve.clone(template_vmid, vmid, name, full=True), ctx, TASK_TIMEOUT)


def configure_vm(
    ctx: RunContext,
    vmid: int,
    *,
    name: str,
    cores: int,
    memory: int,
    disk_gib: int,
    control_plane: bool,
    mac: str,
    hostpci: dict[str, str],
) -> None:
    """Name, size, tags, MAC (when given) and exactly these hostpci lines; OS disk grown."""
    m = Machines.of(ctx)
    vm = m.vm(vmid)
    if vm is None:
        raise StepFailed(f"VM {vmid} vanished after its clone")
    config = dict(vm.config)
    values: dict[str, str | int] = {
        "name": name,
        "cores": cores,
        "memory": memory,
        "tags": "talos;k8s;" + ("controlplane" if control_plane else "worker"),
    }
    if mac and mac.lower() not in (x.lower() for x in vm.macs):
        values["net0"] = with_mac(config.get("net0", "virtio,bridge=vmbr0"), mac)
    values.update(hostpci)
    stale = [k for k in HOSTPCI_KEYS if k in config and k not in values]
    m.pve.set_config(vmid, values, delete=stale, sync=True)
    _grow_os_disk(ctx, vmid, config, disk_gib)


def _grow_os_disk(ctx: RunContext, vmid: int, config: dict[str, str], gib: int) -> None:
    """The template's OS disk grown to `gib` (Proxmox only grows disks)."""
    key = next((k for k in OS_DISKS if k in config), "")
    if not key or size_gib(config[key]) >= gib:
        return
    m = Machines.of(ctx)
    ctx.progress(f"growing {key} of VM {vmid} to {gib}G")
    upid = m.pve.resize(vmid, key, f"{gib}G")
    if upid:
        m.wait_task(upid, ctx, TASK_TIMEOUT)


def start_vm(ctx: RunContext, vmid: int) -> None:
    m = Machines.of(ctx)
    vm = m.vm(vmid)
    if vm is None:
        raise StepFailed(f"VM {vmid} is not on Proxmox")
    if vm.status != "running":
        m.wait_task(m.pve.start(vmid), ctx, TASK_TIMEOUT)


def maintenance_probe(ctx: RunContext, vmid: int, found: dict[str, str]) -> Any:
    """A `ctx.wait` probe: done once an address the guest agent reports answers Talos in
    maintenance mode (kept in `found["address"]`)."""
    m = Machines.of(ctx)

    def probe() -> tuple[bool, str]:
        try:
            addresses = m.pve.guest_addresses(vmid)
        except BackendError as exc:
            return False, exc.reason
        for address in addresses:
            if m.in_maintenance(address):
                found["address"] = address
                return True, f"maintenance mode at {address}"
        return False, f"agent reports {', '.join(addresses) or 'no address'}"

    return probe


def size_gib(drive: str) -> int:
    """`local-zfs:vm-105-disk-0,size=32G` -> 32 (0 when it says no size in GiB)."""
    for part in drive.split(",")[1:]:
        if part.startswith("size=") and part.endswith("G") and part[5:-1].isdigit():
            return int(part[5:-1])
    return 0


def with_mac(net: str, mac: str) -> str:
    """net0 `virtio=AA:..,bridge=vmbr0` with the MAC replaced (model kept)."""
    parts = net.split(",")
    model, _, _ = parts[0].partition("=")
    return ",".join([f"{model}={mac.upper()}", *parts[1:]])
