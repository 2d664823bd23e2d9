"""The lab world's facts as plain data: the host's PCI devices, VMs, Talos machines, etcd
members, the nodes the lab starts with, and the audit trail of writes.

Only how each fact reports itself (a VM's config, a machine's services) lives here; the
area modules (kube, pve, talos, faults) change these under the world's lock.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

TALOS_VERSION = "v1.11.2"
KUBERNETES_VERSION = "v1.33.4"
PVE_HOST = "pve"
GIB = 1024**3
MIB = 1024**2
SSD_BYTES = 3_840_755_982_336  # a 3.84 TB SSD
GPU_REPLICAS = 4  # nvidia-device-plugin time-slicing

APIS = ("kubernetes", "proxmox", "talos")

# The Talos template and install ISO on the Proxmox host (what node-replace clones or boots).
TEMPLATE_VMID = 9000
TEMPLATE_NAME = f"talos-{TALOS_VERSION}-template"
TALOS_ISO = f"local:iso/talos-{TALOS_VERSION}-metal-amd64.iso"
SEED_ISO = "local:iso/talos-nocloud-amd64.iso"  # what the seeded VMs were installed from


@dataclass
class PciDevice:
    address: str  # 0000:81:00.0
    vendor_id: str  # 0x10de
    device_id: str  # 0x15f8
    vendor_name: str
    device_name: str
    class_id: str  # 0x030200
    subsystem_vendor: str = ""
    subsystem_device: str = ""
    iommugroup: int = 0
    present: bool = True


@dataclass
class PciMapping:
    """A cluster PCI resource mapping (`/cluster/mapping/pci`): per-node device entries as
    PVE stores them (`id=10de:15f8,iommugroup=40,node=pve,path=0000:81:00.0,...`)."""

    id: str
    description: str
    map: list[str]


@dataclass
class LabVm:
    vmid: int
    name: str
    cores: int
    memory_mib: int
    disk_gib: int
    macs: list[str]  # per netN slot; "" where that slot has no NIC
    hostpci: dict[str, str] = field(default_factory=dict)  # hostpci0 -> "0000:81:00.0,pcie=1"
    status: str = "stopped"  # running, stopped
    started_at: float | None = None
    template: bool = False
    tags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # other config keys, verbatim
    lock: str = ""  # clone/create in progress
    drives: dict[str, str] = field(default_factory=dict)  # virtio0, ide2...: drive strings
    nics: dict[int, tuple[str, str]] = field(default_factory=dict)  # N -> (model, options)
    pci_in_use: list[str] = field(default_factory=list)  # host devices held while running
    # changes made while running that wait for the next start (PVE's [PENDING] section)
    pending: dict[str, str] = field(default_factory=dict)
    pending_delete: list[str] = field(default_factory=list)

    def net(self, index: int) -> str:
        """netN as PVE prints it: `model=MAC` then the other options, verbatim."""
        model, options = self.nics.get(index, ("virtio", "bridge=vmbr0"))
        text = f"{model}={self.macs[index].upper()}"
        return f"{text},{options}" if options else text

    def config(self, current: bool = True) -> dict[str, str | int]:
        """The VM's config as PVE's qemu/{vmid}/config returns it; the digest covers it all,
        the pending section too. `current=False` (the API's default) takes pending values
        in and drops pending deletions, as load_current_config does."""
        cfg: dict[str, str | int] = {
            "name": self.name,
            "cores": self.cores,
            "memory": str(self.memory_mib),
        }
        cfg.update(self.extra)
        cfg.update(self.drives)
        for i, mac in enumerate(self.macs):
            if mac:
                cfg[f"net{i}"] = self.net(i)
        cfg.update(self.hostpci)
        if self.tags:
            cfg["tags"] = ";".join(self.tags)
        if self.template:
            cfg["template"] = 1
        text = "\n".join(f"{k}: {v}" for k, v in sorted(cfg.items()))
        if self.pending or self.pending_delete:
            text += "\n[PENDING]\n" + "\n".join(
                f"{k}: {v}" for k, v in sorted(self.pending.items())
            )
            text += "\ndelete: " + ",".join(self.pending_delete)
        digest = hashlib.sha1(text.encode()).hexdigest()
        if not current:
            cfg.update({k: int(v) if k == "cores" else v for k, v in self.pending.items()})
            for key in self.pending_delete:
                cfg.pop(key, None)
        cfg["digest"] = digest
        return cfg


@dataclass
class Machine:
    """A Talos machine: what apid knows, plus the lab's view of whether it answers."""

    ip: str
    vmid: int
    hostname: str
    role: str = ""  # controlplane, worker; "" while in maintenance
    version: str = TALOS_VERSION
    maintenance: bool = True
    config: bytes | None = None
    booted: bool = False  # the VM is running and Talos has started
    disks: list[tuple[str, int, str]] = field(default_factory=list)  # (dev, bytes, model)
    disk_seeds: dict[str, str] = field(default_factory=dict)  # dev -> its WWN's seed name
    service_overrides: dict[str, str] = field(default_factory=dict)
    staged: bytes | None = None  # a STAGED apply, made active by the next boot
    joins: bool = True  # its config carries the cluster's OS CA and token
    etcd_data: bool = False  # /var/lib/etcd (on EPHEMERAL) holds a member's data
    etcd_service: str = "Running"  # the etcd service's state on a control plane
    config_epoch: int = 0  # bumped by every apply: a TRY revert checks it is still current
    # False: it came up without its LAN address (its config selects no NIC of its VM, or
    # the address was taken); it answers nowhere and never joins. Decided at every boot.
    network: bool = True
    parked_from: str = ""  # the address a replacement took while this one was down
    disk_failed: bool = False  # its system disk died: the VM runs, Talos never comes up
    kubelet_wedged: bool = False  # its kubelet stopped posting, Talos still answers
    node_labels_error: str = ""  # the API server's refusal of Talos's last label update
    # (config_epoch, label specs) of the running config: parsed once per config
    label_specs: tuple[int, dict[str, str]] | None = None

    def services(self) -> list[tuple[str, str, bool]]:
        """(id, state, healthy) as ServiceList reports them."""
        if self.maintenance:
            names = ["apid", "machined", "udevd"]
        else:
            names = ["apid", "containerd", "cri", "kubelet", "machined", "udevd"]
            if self.role == "controlplane":
                names += ["etcd", "trustd"]
        out = []
        for n in sorted(names):
            default = self.etcd_service if n == "etcd" else "Running"
            state = self.service_overrides.get(n, default)
            out.append((n, state, state == "Running"))
        return out


@dataclass
class EtcdMemberState:
    id: int
    hostname: str
    ip: str
    healthy: bool = True
    is_learner: bool = False
    cluster: int = 0  # 0: the cluster; another number: one bootstrapped beside it


@dataclass(frozen=True)
class WriteRecord:
    """A mutating request that the lab carried out; read-only tests assert there are none."""

    time: float
    api: str
    op: str
    identity: str


@dataclass(frozen=True)
class NodeSpec:
    hostname: str
    ip: str
    vmid: int
    role: str  # controlplane, worker
    mac: str
    gpu: bool = False
    storage: bool = False

    @property
    def cores(self) -> int:
        return 4 if self.role == "controlplane" else 16

    @property
    def memory_mib(self) -> int:
        return 16 * 1024 if self.role == "controlplane" else 128 * 1024


DAPPER_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("talos-control-1", "10.100.0.50", 100, "controlplane", "bc:24:11:2e:9f:34"),
    NodeSpec("talos-control-2", "10.100.0.51", 101, "controlplane", "bc:24:11:b6:57:d5"),
    NodeSpec("talos-control-3", "10.100.0.52", 102, "controlplane", "bc:24:11:38:d5:d7"),
    NodeSpec("talos-node-gpu-1", "10.100.0.53", 103, "worker", "bc:24:11:d3:ff:c2", True, True),
    NodeSpec("talos-node-large-1", "10.100.0.54", 104, "worker", "bc:24:11:7d:6d:e5", False, True),
    NodeSpec("talos-node-large-2", "10.100.0.55", 105, "worker", "bc:24:11:e0:17:19", False, True),
    NodeSpec("talos-node-large-3", "10.100.0.56", 106, "worker", "bc:24:11:2e:71:24", False, True),
)

GPU_ADDRESSES = ("0000:81:00.0", "0000:82:00.0", "0000:83:00.0", "0000:84:00.0")
HBA_ADDRESSES = ("0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0")


def node_specs(count: int) -> list[NodeSpec]:
    """The real 7 nodes, then extra storage workers for scaled-up labs."""
    specs = list(DAPPER_NODES[: max(count, 0)])
    rng = random.Random(7)
    macs = {s.mac for s in specs}
    for i in range(len(specs), count):
        n = i - len(DAPPER_NODES) + 4  # talos-node-large-4 onwards
        block = i // 240  # 240 hosts (.10 to .249) a /24, 250 /24s a /16
        ip = f"10.{101 + block // 250}.{block % 250}.{10 + i % 240}"
        mac = ""
        while not mac or mac in macs:  # Proxmox never hands out one MAC twice
            mac = "bc:24:11:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        macs.add(mac)
        specs.append(NodeSpec(f"talos-node-large-{n}", ip, 100 + i, "worker", mac, False, True))
    return specs
