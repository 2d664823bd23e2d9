"""The lab's Proxmox host: its PCI devices and the VMs' lifecycle and config.

Starting a VM powers its Talos machine on (a clone without one boots into maintenance
mode); stopping it takes the machine, its Node and its etcd member down with it. What the
PVE API reports from these facts (rows, host usage, storage) is in `lab/pve_view.py`.
"""

from __future__ import annotations

from dapper.lab.world.model import (
    GPU_ADDRESSES,
    HBA_ADDRESSES,
    PVE_HOST,
    LabVm,
    NodeSpec,
    PciDevice,
)
from dapper.lab.world.state import WorldError, WorldState
from dapper.lab.world.talos import TalosWorld

P100 = ("0x10de", "0x15f8", "NVIDIA Corporation", "GP100GL [Tesla P100 PCIe 16GB]", "0x030200")
SAS3008 = ("0x1000", "0x0097", "Broadcom / LSI", "SAS3008 PCI-Express Fusion-MPT SAS-3", "0x010700")


class ProxmoxWorld:
    """The host's passthrough devices and its VMs."""

    def __init__(self, state: WorldState, talos: TalosWorld) -> None:
        self.state = state
        self.talos = talos
        self.lock = state.lock

    # -- the host and VMs the lab starts with ----------------------------------------------

    def seed_pci(self) -> None:
        """Four P100 GPUs and four SAS HBAs, as the Dapper host has."""
        for i, addr in enumerate(GPU_ADDRESSES):
            self.state.pci[addr] = PciDevice(addr, *P100, "0x10de", "0x118f", iommugroup=40 + i)
        for i, addr in enumerate(HBA_ADDRESSES):
            self.state.pci[addr] = PciDevice(addr, *SAS3008, "0x1000", "0x30e0", iommugroup=20 + i)

    def seed_vm(self, spec: NodeSpec, hba: str | None) -> LabVm:
        """A running VM for `spec`: the GPUs on the GPU node, `hba` on a storage node."""
        vm = LabVm(
            spec.vmid,
            spec.hostname,
            spec.cores,
            spec.memory_mib,
            32 if spec.role == "controlplane" else 128,
            [spec.mac],
            tags=["talos", "k8s", "controlplane" if spec.role == "controlplane" else "worker"],
        )
        if spec.gpu:
            for i, addr in enumerate(GPU_ADDRESSES):
                vm.hostpci[f"hostpci{i}"] = f"{addr},pcie=1"
        if spec.storage and hba is not None:
            vm.hostpci[f"hostpci{len(vm.hostpci)}"] = f"{hba},pcie=1"
        self.state.vms[vm.vmid] = vm
        vm.status = "running"
        vm.started_at = self.state.started - self.state.rng.randint(30, 45) * 86400
        return vm

    # -- lookups ---------------------------------------------------------------------------

    def vmid(self, ref: str) -> int:
        """A VM id from an id or a name, or WorldError(404)."""
        if ref.isdigit():
            return int(ref)
        for vm in self.state.vms.values():
            if vm.name == ref:
                return vm.vmid
        raise WorldError(f"no VM {ref!r}", 404)

    def vm(self, vmid: int) -> LabVm:
        try:
            return self.state.vms[vmid]
        except KeyError:
            raise WorldError(
                f"Configuration file 'nodes/{PVE_HOST}/qemu-server/{vmid}.conf' does not exist", 500
            ) from None

    # -- lifecycle -------------------------------------------------------------------------

    def vm_start(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} already running", 500)
            pci = self.state.pci
            missing = [
                a.split(",")[0]
                for a in vm.hostpci.values()
                if a.split(",")[0] in pci and not pci[a.split(",")[0]].present
            ]
            if missing:
                raise WorldError(f"PCI device {missing[0]} not found on host", 500)
            vm.status = "running"
            vm.started_at = self.state.clock.now()
            self.state.faults.discard(f"vm-stopped:{vmid}")
            self.state.faults.discard(f"vm-stopped:{vm.name}")
            self.talos.power_on(vm)
        self.talos.boot_later(vmid)

    def vm_stop(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            vm.status = "stopped"
            vm.started_at = None
            self.talos.power_off(vmid)

    def vm_reboot(self, vmid: int) -> None:
        with self.lock:
            self.vm_stop(vmid)
            self.vm_start(vmid)

    def vm_clone(self, vmid: int, newid: int, name: str | None = None) -> LabVm:
        with self.lock:
            src = self.vm(vmid)
            if newid in self.state.vms:
                raise WorldError(f"VM {newid} already exists", 500)
            rng = self.state.rng
            mac = "bc:24:11:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
            clone = LabVm(
                newid,
                name or f"Copy-of-VM-{src.name}",
                src.cores,
                src.memory_mib,
                src.disk_gib,
                [mac],
                tags=list(src.tags),
                lock="clone",
            )
            self.state.vms[newid] = clone

        def done() -> None:
            with self.lock:
                clone.lock = ""

        self.state.later(self.state.timings.clone, done)
        return clone

    def vm_destroy(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} is running - destroy failed", 500)
            self.talos.forget_vm(vmid)
            del self.state.vms[vmid]

    def vm_set_config(self, vmid: int, changes: dict[str, str], delete: list[str]) -> None:
        with self.lock:
            vm = self.vm(vmid)
            for key, value in changes.items():
                if key == "name":
                    vm.name = value
                elif key == "cores":
                    vm.cores = int(value)
                elif key == "memory":
                    vm.memory_mib = int(value)
                elif key.startswith("hostpci"):
                    vm.hostpci[key] = value
                elif key.startswith("net") and key[3:].isdigit():
                    mac = value.split("=", 1)[1].split(",")[0].lower() if "=" in value else ""
                    idx = int(key[3:])
                    while len(vm.macs) <= idx:
                        vm.macs.append("")
                    vm.macs[idx] = mac
                elif key == "tags":
                    vm.tags = [t for t in value.replace(",", ";").split(";") if t]
                else:
                    vm.extra[key] = value
            for key in delete:
                vm.hostpci.pop(key, None)
                vm.extra.pop(key, None)
