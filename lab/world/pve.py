"""The lab's Proxmox host: its PCI devices and mappings, ISOs, the Talos template, and the
VMs' lifecycle and config.

Starting a VM powers its Talos machine on (a new VM without one boots into maintenance
mode) after taking its passthrough devices as qemu-server does (`pve_pci`); stopping it
takes the machine, its Node and its etcd member down with it. A template cannot start; a
clone copies its source's whole config with new MACs. What the PVE API reports from these
facts (rows, host usage, storage) is in `lab/pve_view.py`; what it refuses before a task
starts (parameters, permissions) is in `lab/pve_api.py`.
"""

from __future__ import annotations

import uuid

from dapper.backends.clients.proxmox_parse import HOSTPCI_KEYS, parse_hostpci
from dapper.lab.world.model import (
    GPU_ADDRESSES,
    HBA_ADDRESSES,
    PVE_HOST,
    SEED_ISO,
    TALOS_ISO,
    TEMPLATE_NAME,
    TEMPLATE_VMID,
    LabVm,
    NodeSpec,
    PciDevice,
    PciMapping,
)
from dapper.lab.world.pve_pci import devices_for_start
from dapper.lab.world.state import WorldError, WorldState
from dapper.lab.world.talos import TalosWorld

P100 = ("0x10de", "0x15f8", "NVIDIA Corporation", "GP100GL [Tesla P100 PCIe 16GB]", "0x030200")
SAS3008 = ("0x1000", "0x0097", "Broadcom / LSI", "SAS3008 PCI-Express Fusion-MPT SAS-3", "0x010700")
# The storages on the host: `local` (a directory: ISOs) and `local-zfs` (VM disks).
STORAGES = {"local": "iso,vztmpl,backup,snippets", "local-zfs": "images,rootdir"}
SEED_CONFIG: dict[str, str] = {
    "sockets": "1",
    "cpu": "host",
    "machine": "q35",
    "bios": "ovmf",
    "ostype": "l26",
    "agent": "1",
    "scsihw": "virtio-scsi-single",
    "boot": "order=virtio0;ide2",
}
SEED_NIC = ("virtio", "bridge=vmbr0,tag=100")
TEMPLATE_MAC = "bc:24:11:5e:90:00"
DISK_KEYS = ("ide", "sata", "scsi", "virtio", "efidisk", "tpmstate")


def is_cdrom(drive: str) -> bool:
    return "media=cdrom" in drive.split(",")[1:] or drive.split(",")[0] in ("cdrom", "none")


def drive_volid(drive: str) -> str:
    return drive.split(",")[0]


def drive_size_gib(drive: str) -> int:
    for part in drive.split(",")[1:]:
        if part.startswith("size=") and part.endswith("G") and part[5:-1].isdigit():
            return int(part[5:-1])
    return 0


class ProxmoxWorld:
    """The host's passthrough devices, mappings, ISOs and its VMs."""

    def vm_resize(self, vmid: int, disk: str, size: str) -> int:
        """Grow a disk as `qm resize` does (`32G` absolute or `+8G`); returns the new GiB.
        Shrinking, a CD-ROM or a disk the VM lacks is refused with PVE's text."""
        with self.lock:
            vm = self.vm(vmid)
            drive = vm.drives.get(disk)
            if drive is None:
                raise WorldError(f"disk '{disk}' does not exist", 500)
            if "media=cdrom" in drive:
                raise WorldError("you can't resize a cdrom", 500)
            current = drive_size_gib(drive)
            grow, number = size.startswith("+"), size.lstrip("+").rstrip("G")
            if not number.isdigit():
                raise WorldError(f"unable to parse size '{size}' (whole GiB only in the lab)", 400)
            new = current + int(number) if grow else int(number)
            if new < current:
                raise WorldError("shrinking disks is not supported", 500)
            parts = [p for p in drive.split(",") if not p.startswith("size=")]
            vm.drives[disk] = ",".join([*parts, f"size={new}G"])
            if disk in ("virtio0", "scsi0", "sata0", "ide0"):
                vm.disk_gib = new
            return new

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
        """A running VM for `spec`: the GPUs on the GPU node, `hba` on a storage node (raw
        hostpci lines: root made these VMs)."""
        disk = 32 if spec.role == "controlplane" else 128
        vm = LabVm(
            spec.vmid,
            spec.hostname,
            spec.cores,
            spec.memory_mib,
            disk,
            [spec.mac],
            tags=["talos", "k8s", "controlplane" if spec.role == "controlplane" else "worker"],
            extra=dict(SEED_CONFIG),
            drives={
                "virtio0": f"local-zfs:vm-{spec.vmid}-disk-0,iothread=1,size={disk}G",
                "ide2": f"{SEED_ISO},media=cdrom",
            },
            nics={0: SEED_NIC},
        )
        if spec.gpu:
            for i, addr in enumerate(GPU_ADDRESSES):
                vm.hostpci[f"hostpci{i}"] = f"{addr},pcie=1"
        if spec.storage and hba is not None:
            self.state.hba_disk_seed[hba] = spec.hostname
            vm.hostpci[f"hostpci{len(vm.hostpci)}"] = f"{hba},pcie=1"
        self.state.vms[vm.vmid] = vm
        vm.status = "running"
        vm.pci_in_use = [parse_hostpci(v).addresses[0] for v in vm.hostpci.values()]
        vm.started_at = self.state.started - self.state.rng.randint(30, 45) * 86400
        return vm

    def seed_template(self) -> LabVm:
        """The Talos template node-replace clones: small, no passthrough, never started."""
        vm = LabVm(
            TEMPLATE_VMID,
            TEMPLATE_NAME,
            2,
            2048,
            32,
            [TEMPLATE_MAC],
            template=True,
            tags=["talos", "template"],
            extra={
                **SEED_CONFIG,
                "boot": "order=virtio0;ide2;net0",
                "description": "Talos Linux (factory image, qemu-guest-agent); clone me",
                "smbios1": "uuid=6f0c2a51-5d1e-4b7a-9d3c-2b8e1f9a9000",
            },
            drives={
                "virtio0": f"local-zfs:base-{TEMPLATE_VMID}-disk-0,iothread=1,size=32G",
                "ide2": f"{TALOS_ISO},media=cdrom",
            },
            nics={0: SEED_NIC},
        )
        self.state.vms[vm.vmid] = vm
        return vm

    def seed_storage(self) -> None:
        """The Talos ISOs on `local`, and one PCI mapping per P100 and per HBA."""
        self.state.isos[TALOS_ISO] = 104_857_600
        self.state.isos[SEED_ISO] = 88_080_384
        devices = [(f"p100-{i}", a) for i, a in enumerate(GPU_ADDRESSES)]
        devices += [(f"hba-{i}", a) for i, a in enumerate(HBA_ADDRESSES)]
        for mapping_id, addr in devices:
            d = self.state.pci[addr]
            ids = f"{d.vendor_id[2:]}:{d.device_id[2:]}"
            sub = f"{d.subsystem_vendor[2:]}:{d.subsystem_device[2:]}"
            line = (
                f"id={ids},iommugroup={d.iommugroup},node={PVE_HOST},path={addr},subsystem-id={sub}"
            )
            what = "Tesla P100 16GB" if mapping_id.startswith("p100") else "SAS3008 HBA"
            self.state.pci_mappings[mapping_id] = PciMapping(mapping_id, f"{what} {addr}", [line])

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

    def volume_exists(self, volid: str) -> bool:
        if volid in self.state.isos:
            return True
        return any(
            drive_volid(d) == volid for vm in self.state.vms.values() for d in vm.drives.values()
        )

    # -- lifecycle -------------------------------------------------------------------------

    def vm_start(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.template:
                raise WorldError("you can't start a vm if it's a template", 500)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} already running", 500)
            for drive in vm.drives.values():
                volid = drive_volid(drive)
                wanted = is_cdrom(drive) and volid not in ("none", "cdrom")
                if wanted and not self.volume_exists(volid):
                    raise WorldError(f"volume '{volid}' does not exist", 500)
            if vm.pending or vm.pending_delete:
                self.apply_pending(vm)
            vm.pci_in_use = devices_for_start(self.state, vm)
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
            vm.pci_in_use = []
            self.talos.power_off(vmid)

    def vm_reset(self, vmid: int) -> None:
        """system_reset: the guest restarts in the same QEMU process (devices kept, pending
        config untouched)."""
        with self.lock:
            vm = self.vm(vmid)
            self.talos.power_off(vmid)
            vm.started_at = self.state.clock.now()
            self.talos.power_on(vm)
        self.talos.boot_later(vmid)

    def vm_make_template(self, vmid: int) -> None:
        """template_create: the flag, and each disk renamed `vm-` -> `base-`."""
        with self.lock:
            vm = self.vm(vmid)
            vm.template = True
            for key in sorted(vm.drives):
                drive = vm.drives[key]
                if is_cdrom(drive) or key.startswith("unused"):
                    continue
                volid, *options = drive.split(",")
                storage, _, volname = volid.partition(":")
                if volname.startswith("vm-"):
                    vm.drives[key] = ",".join([f"{storage}:base-{volname[3:]}", *options])

    def vm_reboot(self, vmid: int) -> None:
        with self.lock:
            self.vm_stop(vmid)
            self.vm_start(vmid)

    def new_mac(self) -> str:
        """A random MAC under Proxmox's prefix, as PVE gives a NIC without one."""
        rng = self.state.rng
        return "bc:24:11:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self.state.rng.getrandbits(128), version=4))

    def new_volume(self, storage: str, vmid: int) -> str:
        """The next free `vm-<vmid>-disk-N` on `storage`."""
        used = {
            drive_volid(d).split("/")[-1].split(":")[-1]
            for vm in self.state.vms.values()
            for d in vm.drives.values()
        }
        n = 0
        while f"vm-{vmid}-disk-{n}" in used:
            n += 1
        return f"{storage}:vm-{vmid}-disk-{n}"

    def linked_clone_blocker(self, vm: LabVm) -> tuple[str, str] | None:
        """(drive, volid) of the first disk that cannot be linked-cloned: on ZFS only a
        template's base volumes can."""
        for key in sorted(vm.drives):
            drive = vm.drives[key]
            if is_cdrom(drive) or key.startswith("unused"):
                continue
            volid = drive_volid(drive)
            if not volid.split(":")[-1].startswith("base-"):
                return key, volid
        return None

    def vm_clone(
        self,
        vmid: int,
        newid: int,
        name: str | None = None,
        *,
        full: bool | None = None,
        storage: str = "",
        description: str = "",
    ) -> LabVm:
        """Copy `vmid`'s whole config to `newid` as qmclone does: new MACs, new SMBIOS
        uuid, disks copied (full) or linked to the template's base volumes, no template
        flag; locked until the clone finishes."""
        with self.lock:
            src = self.vm(vmid)
            if newid in self.state.vms:
                raise WorldError(f"unable to create VM {newid}: config file already exists", 500)
            full = (not src.template) if full is None else full
            extra = dict(src.extra)
            extra["smbios1"] = _with_uuid(extra.get("smbios1", ""), self._new_uuid())
            if "vmgenid" in extra:
                extra["vmgenid"] = self._new_uuid()
            if description:
                extra["description"] = description
            clone = LabVm(
                newid,
                name or f"Copy-of-VM-{src.name}",
                src.cores,
                src.memory_mib,
                src.disk_gib,
                [self.new_mac() if mac else "" for mac in src.macs],
                hostpci=dict(src.hostpci),
                tags=list(src.tags),
                extra=extra,
                lock="clone",
                nics=dict(src.nics),
            )
            self.state.vms[newid] = clone
            for key in sorted(src.drives):
                drive = src.drives[key]
                if key.startswith("unused"):
                    continue
                if is_cdrom(drive):
                    clone.drives[key] = drive
                    continue
                volid, *options = drive.split(",")
                source_storage, volname = volid.split(":", 1)
                if full:
                    new = self.new_volume(storage or source_storage, newid)
                else:
                    new = f"{source_storage}:{volname}/{self.new_volume('', newid)[1:]}"
                clone.drives[key] = ",".join([new, *options])

        def done() -> None:
            with self.lock:
                clone.lock = ""

        self.state.later(self.state.timings.clone, done)
        return clone

    def vm_create(self, vmid: int, changes: dict[str, str]) -> LabVm:
        """A new VM from validated create parameters: disks `storage:size` allocated, NICs
        without a MAC given one, SMBIOS uuid and vmgenid generated, a default boot order."""
        with self.lock:
            if vmid in self.state.vms:
                raise WorldError(
                    f"unable to create VM {vmid} - VM {vmid} already exists on node '{PVE_HOST}'",
                    500,
                )
            vm = LabVm(vmid, f"VM {vmid}", 1, 512, 0, [], lock="create")
            vm.extra["smbios1"] = f"uuid={self._new_uuid()}"
            vm.extra["vmgenid"] = self._new_uuid()
            vm.extra["meta"] = f"creation-qemu=9.2.0,ctime={int(self.state.clock.now())}"
            self.state.vms[vmid] = vm
            try:
                self.vm_set_config(vmid, changes, [])
            except WorldError:
                del self.state.vms[vmid]
                raise
            if "boot" not in changes:
                disks = [k for k in sorted(vm.drives) if not is_cdrom(vm.drives[k])]
                cds = [k for k in sorted(vm.drives) if is_cdrom(vm.drives[k])]
                nets = [f"net{i}" for i, mac in enumerate(vm.macs) if mac]
                vm.extra["boot"] = "order=" + ";".join(disks[:1] + cds + nets[:1])
            vm.lock = ""
            return vm

    def vm_destroy(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} is running - destroy failed", 500)
            if vm.template:  # a base volume a linked clone still builds on stays
                for key in sorted(vm.drives):
                    base = drive_volid(vm.drives[key])
                    if not is_cdrom(vm.drives[key]) and self._linked_to(base):
                        raise WorldError(
                            f"base volume '{base}' is still in use by linked cloned", 500
                        )
            self.talos.forget_vm(vmid)
            del self.state.vms[vmid]

    def _linked_to(self, base: str) -> bool:
        return any(
            drive_volid(d).startswith(f"{base}/")
            for vm in self.state.vms.values()
            for d in vm.drives.values()
        )

    def vm_set_config(self, vmid: int, changes: dict[str, str], delete: list[str]) -> None:
        """Apply validated config keys: structured ones to their fields, drives (new disks
        allocated), NICs (model and options kept as given), the rest verbatim. On a running
        VM, cores, memory and hostpci cannot be hot-plugged (PVE's default `hotplug` is
        network,disk,usb): they wait in the pending section for the next start."""
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                changes, delete = self._defer(vm, changes, delete)
            self._apply(vm, changes, delete)

    def _defer(
        self, vm: LabVm, changes: dict[str, str], delete: list[str]
    ) -> tuple[dict[str, str], list[str]]:
        """Move the keys a running VM cannot take now into its pending section; a pending
        value equal to the running one is dropped, as cleanup_pending does."""
        running = vm.config(current=True)
        now: dict[str, str] = {}
        for key, value in changes.items():
            if not _cold(key):
                now[key] = value
                continue
            if key in vm.pending_delete:
                vm.pending_delete.remove(key)
            if str(running.get(key, "")) == value:
                vm.pending.pop(key, None)
            else:
                vm.pending[key] = value
        later = [k for k in delete if _cold(k)]
        for key in later:
            vm.pending.pop(key, None)
            if key in running and key not in vm.pending_delete:
                vm.pending_delete.append(key)
        return now, [k for k in delete if not _cold(k)]

    def apply_pending(self, vm: LabVm) -> None:
        """A (re)start: the pending section becomes the config."""
        changes, delete = dict(vm.pending), list(vm.pending_delete)
        vm.pending.clear()
        vm.pending_delete.clear()
        self._apply(vm, changes, delete)

    def _apply(self, vm: LabVm, changes: dict[str, str], delete: list[str]) -> None:
        for key, value in changes.items():
            if key == "name":
                vm.name = value
            elif key == "cores":
                vm.cores = int(value)
            elif key == "memory":
                vm.memory_mib = int(value)
            elif key in HOSTPCI_KEYS:
                vm.hostpci[key] = value
            elif key.startswith("net") and key[3:].isdigit():
                self._set_nic(vm, int(key[3:]), value)
            elif key == "tags":
                vm.tags = [t for t in value.replace(",", ";").split(";") if t]
            elif key.startswith(DISK_KEYS) and key.rstrip("0123456789") in DISK_KEYS:
                self._set_drive(vm, key, value)
            else:
                vm.extra[key] = value
        for key in delete:
            vm.hostpci.pop(key, None)
            vm.extra.pop(key, None)
            vm.drives.pop(key, None)
            if key.startswith("net") and key[3:].isdigit() and int(key[3:]) < len(vm.macs):
                vm.macs[int(key[3:])] = ""
            if key == "tags":
                vm.tags = []

    def _set_nic(self, vm: LabVm, index: int, value: str) -> None:
        first, _, options = value.partition(",")
        model, _, mac = first.partition("=")
        while len(vm.macs) <= index:
            vm.macs.append("")
        vm.macs[index] = mac.lower() if mac else self.new_mac()
        vm.nics[index] = (model, options)

    def _set_drive(self, vm: LabVm, key: str, value: str) -> None:
        volid, *options = value.split(",")
        storage, _, rest = volid.partition(":")
        if rest.isdigit() and not is_cdrom(value):  # `local-zfs:32`: allocate 32 GiB
            volid = self.new_volume(storage, vm.vmid)
            options = sorted([o for o in options if not o.startswith("size=")] + [f"size={rest}G"])
        vm.drives[key] = ",".join([volid, *options])
        disks = [d for k, d in sorted(vm.drives.items()) if not is_cdrom(d)]
        if disks:
            vm.disk_gib = max(drive_size_gib(disks[0]), 0) or vm.disk_gib


def _cold(key: str) -> bool:
    """A key PVE applies to a running VM only at its next start."""
    return key in ("cores", "memory") or key in HOSTPCI_KEYS


def _with_uuid(smbios1: str, new_uuid: str) -> str:
    parts = [p for p in smbios1.split(",") if p and not p.startswith("uuid=")]
    return ",".join([f"uuid={new_uuid}", *parts])


__all__ = ["STORAGES", "ProxmoxWorld", "drive_size_gib", "drive_volid", "is_cdrom"]
