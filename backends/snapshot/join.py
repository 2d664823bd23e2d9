"""Join what each system knows into one ClusterSnapshot; pure functions, no I/O.

Kubernetes Node -> Talos machine (InternalIP, else hostname) -> Proxmox VM (name, else
NIC MAC) -> GPUs (host PCI device -> VM hostpci -> node allocatable -> pods) -> DiskPool.
Each source may be missing (degraded or never fetched); the join uses what there is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

from dapper.backends.model import (
    ClusterSnapshot,
    Event,
    Fault,
    Gpu,
    Kustomization,
    Node,
    PodRef,
    SourceHealth,
    StoragePool,
    TalosMachine,
    Vm,
)
from dapper.backends.snapshot.reuse import Reuse

NVIDIA_VENDOR = "10de"


@dataclass(frozen=True)
class HostPci:
    """A PCI device on a Proxmox host, as hardware/pci reports it."""

    host: str
    address: str
    vendor_id: str
    device_id: str
    vendor_name: str = ""
    device_name: str = ""
    class_id: str = ""
    present: bool = True

    @property
    def is_gpu(self) -> bool:
        return _hex(self.vendor_id) == NVIDIA_VENDOR and _hex(self.class_id).startswith("03")


@dataclass(frozen=True)
class KubeData:
    nodes: tuple[Node, ...] = ()
    pods: tuple[PodRef, ...] = ()
    kustomizations: tuple[Kustomization, ...] = ()
    pools: tuple[StoragePool, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class ProxmoxData:
    vms: tuple[Vm, ...] = ()
    pci: tuple[HostPci, ...] = ()


@dataclass(frozen=True)
class TalosData:
    machines: tuple[TalosMachine, ...] = ()


@dataclass(frozen=True)
class GitData:
    """The tree's view: files of each Kustomization's path (ns/name -> repo paths)."""

    head: str = ""
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class SnapshotParts:
    """The join's inputs, filled by each source's `feed` (see sources.Source): the four
    systems the cross-system join reads, and faults reported by sources that only report."""

    kube: KubeData = field(default_factory=KubeData)
    proxmox: ProxmoxData = field(default_factory=ProxmoxData)
    talos: TalosData = field(default_factory=TalosData)
    git: GitData = field(default_factory=GitData)
    faults: list[Fault] = field(default_factory=list)


def _hex(value: str) -> str:
    v = (value or "").lower()
    return v[2:] if v.startswith("0x") else v


def _pci_base(address: str) -> str:
    """'0000:81:00.0,pcie=1' or '81:00' -> '0000:81:00' (functions of one device join)."""
    addr = address.split(",", 1)[0].strip().lower()
    if addr.count(":") == 1:
        addr = "0000:" + addr
    return addr.split(".", 1)[0]


_T = TypeVar("_T")
POD_ORDER = attrgetter("namespace", "name")  # in C: a lambda was a tenth of the join


def evolve(obj: _T, **changes: Any) -> _T:
    """dataclasses.replace for the model's frozen dataclasses (no __post_init__, no
    slots), without re-running __init__: the join copies thousands of them per snapshot,
    and replace() was half its time at 500 nodes."""
    new = copy.copy(obj)
    new.__dict__.update(changes)
    return new


class JoinReuse:
    """What the last join made, for the next (see reuse.py); one per collector."""

    def __init__(self) -> None:
        self.nodes: Reuse[Node] = Reuse()
        self.vms: Reuse[Vm] = Reuse()
        self.kustomizations: Reuse[Kustomization] = Reuse()
        # the sorted list as a whole: under pod churn the 1,500 Kustomizations and Git's
        # files are the same objects refresh after refresh, and one pass of `is` over
        # them is far cheaper than asking for each
        self.kustomization_list: Reuse[tuple[Kustomization, ...]] = Reuse()

    def done(self) -> None:
        """`kustomizations` is a build of its own, made only when the list changed."""
        for r in (self.nodes, self.vms, self.kustomization_list):
            r.done()


def _finished(pod: PodRef) -> bool:
    return pod.phase in ("Succeeded", "Failed")  # holds no GPU any more


def _node(
    node: Node,
    machine: TalosMachine | None,
    vm: Vm | None,
    pool: StoragePool | None,
    pods: tuple[PodRef, ...],
) -> Node:
    cpu, mem = _usage(machine, vm)
    return evolve(
        node,
        cpu_usage=node.cpu_usage if node.cpu_usage is not None else cpu,
        mem_usage=node.mem_usage if node.mem_usage is not None else mem,
        talos=machine,
        vm=vm,
        pods=pods,
        gpu_allocated=sum(p.gpu_request for p in pods if not _finished(p)),
        pool=pool.name if pool else "",
    )


def _vm(reuse: Reuse[Vm], vm: Vm, node: str | None, machines_by_key: dict[str, TalosMachine]) -> Vm:
    """A VM with the node it runs, or else the Talos machine at its address."""
    if node is not None:
        return reuse.get(vm.vmid, (vm, node), partial(evolve, vm, node_name=node))
    machine = _machine_at(vm, machines_by_key)
    return reuse.get(vm.vmid, (vm, machine), partial(evolve, vm, node_name="", talos=machine))


def join(
    *,
    cluster: str,
    mode: str,
    read_only: bool,
    taken_at: float,
    kube: KubeData | None = None,
    proxmox: ProxmoxData | None = None,
    talos: TalosData | None = None,
    git: GitData | None = None,
    sources: tuple[SourceHealth, ...],
    extra_faults: tuple[Fault, ...] = (),
    reuse: JoinReuse | None = None,
) -> ClusterSnapshot:
    """One ClusterSnapshot from what each system said (a missing one joins as empty);
    `extra_faults` come from sources that only report (see SnapshotParts); `reuse` keeps
    the joined objects whose inputs did not change since its last join."""
    reuse = reuse or JoinReuse()
    kube = kube or KubeData()
    proxmox = proxmox or ProxmoxData()
    talos = talos or TalosData()
    git = git or GitData()

    machines_by_key: dict[str, TalosMachine] = {}
    for m in talos.machines:
        machines_by_key[m.node] = m
        if m.hostname:
            machines_by_key.setdefault(m.hostname, m)
    vms_by_name = {vm.name: vm for vm in proxmox.vms}
    vms_by_mac = {mac.lower(): vm for vm in proxmox.vms for mac in vm.macs}
    pools_by_node = {p.node: p for p in kube.pools}
    pods_by_node: dict[str, list[PodRef]] | None = None  # for nodes parsed without pods

    # Nodes joined with their machine and VM.
    node_of_vm: dict[int, str] = {}
    nodes: list[Node] = []
    for node in kube.nodes:
        machine = machines_by_key.get(node.internal_ip) or machines_by_key.get(node.name)
        vm = vms_by_name.get(node.name)
        if vm is None and machine is not None:
            vm = vms_by_name.get(machine.hostname)
        if vm is None:
            mac = dict(node.labels).get("dapper.io/mac", "")
            vm = vms_by_mac.get(mac.lower()) if mac else None
        if vm is not None:
            node_of_vm[vm.vmid] = node.name
        pods = node.pods  # kube_data groups them, in (namespace, name) order
        if not pods and kube.pods:
            if pods_by_node is None:
                pods_by_node = {}
                for pod in kube.pods:
                    pods_by_node.setdefault(pod.node, []).append(pod)
            pods = tuple(sorted(pods_by_node.get(node.name, ()), key=POD_ORDER))
        pool = pools_by_node.get(node.name)
        nodes.append(
            reuse.nodes.get(
                node.name,
                (node, machine, vm, pool, pods),
                partial(_node, node, machine, vm, pool, pods),
            )
        )

    vms = tuple(_vm(reuse.vms, vm, node_of_vm.get(vm.vmid), machines_by_key) for vm in proxmox.vms)
    gpus = _join_gpus(proxmox, vms, {n.name: n for n in nodes})
    gpu_addrs: dict[str, list[str]] = {}
    for g in gpus:
        if g.node_name:
            gpu_addrs.setdefault(g.node_name, []).append(g.address)
    nodes = [evolve(n, gpus=tuple(gpu_addrs[n.name])) if n.name in gpu_addrs else n for n in nodes]

    every = (git.files, git.depends_on, *kube.kustomizations)
    kustomizations = reuse.kustomization_list.get(
        "all", every, partial(_join_kustomizations, kube, git, reuse.kustomizations)
    )
    reuse.done()
    snapshot = ClusterSnapshot(
        cluster=cluster,
        mode=mode,
        read_only=read_only,
        taken_at=taken_at,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        vms=tuple(sorted(vms, key=lambda v: v.vmid)),
        gpus=gpus,
        pools=tuple(sorted(kube.pools, key=lambda p: p.name)),
        kustomizations=kustomizations,
        events=tuple(sorted(kube.events, key=lambda e: e.time, reverse=True)),
        sources=sources,
    )
    faults = find_faults(snapshot) + _missing_devices(proxmox) + list(extra_faults)
    return replace(snapshot, faults=tuple(sorted(faults, key=Fault.rank)))


def _join_kustomizations(
    kube: KubeData, git: GitData, reuse: Reuse[Kustomization]
) -> tuple[Kustomization, ...]:
    """Each Kustomization with its Git files and dependencies, sorted by key; those whose
    inputs are the same objects as at the last such build are reused."""
    joined = tuple(
        reuse.get(
            ks.key,
            (ks, files := git.files.get(ks.key, ks.files), deps := git.depends_on.get(ks.key, ())),
            partial(evolve, ks, files=files, depends_on=ks.depends_on or deps),
        )
        for ks in kube.kustomizations
    )
    reuse.done()
    return tuple(sorted(joined, key=lambda k: k.key))


def _machine_at(vm: Vm, machines_by_key: dict[str, TalosMachine]) -> TalosMachine | None:
    """The Talos machine answering at one of a node-less VM's guest-agent addresses."""
    for address in vm.addresses:
        if address in machines_by_key:
            return machines_by_key[address]
    return None


def vms_without_node(kube: KubeData, talos: TalosData, vms: tuple[Vm, ...]) -> tuple[Vm, ...]:
    """The running VMs that no Kubernetes node matches as `join` matches them (by name,
    by the node's machine's hostname, by the node's MAC label): new machines, in
    maintenance mode or not joined. Cheap at hundreds of nodes: sets, no per-VM search."""
    names = {n.name for n in kube.nodes}
    keys = names | {n.internal_ip for n in kube.nodes if n.internal_ip}
    names |= {m.hostname for m in talos.machines if m.hostname and m.node in keys}
    macs = {dict(n.labels).get("dapper.io/mac", "").lower() for n in kube.nodes} - {""}
    return tuple(
        vm
        for vm in vms
        if vm.status == "running"
        and not vm.template
        and vm.name not in names
        and not any(mac.lower() in macs for mac in vm.macs)
    )


def _missing_devices(proxmox: ProxmoxData) -> list[Fault]:
    """Passed-through devices the host no longer shows: the VM cannot start again."""
    if not proxmox.pci:
        return []
    on_bus = {_pci_base(d.address) for d in proxmox.pci if d.present}
    faults = []
    for vm in proxmox.vms:
        for dev in vm.devices:
            base = _pci_base(dev.address)
            if not dev.address.startswith("mapping") and base not in on_bus:
                faults.append(
                    Fault(
                        "error",
                        "vms",
                        f"{vm.vmid} {vm.name}",
                        f"{dev.slot} {dev.address} is missing from host {vm.host}",
                    )
                )
    return faults


def _usage(machine: TalosMachine | None, vm: Vm | None) -> tuple[float | None, float | None]:
    """CPU and memory use (0..1) of a node: the hypervisor's view of its VM when there is
    one (it sees the whole guest), else Talos's load and memory."""
    cpu: float | None = None
    mem: float | None = None
    if vm is not None and vm.status == "running":
        cpu = vm.cpu_usage
        mem = vm.mem_used / vm.mem_total if vm.mem_total else None
    if machine is not None and machine.stage == "running":
        if mem is None and machine.memory_total:
            mem = machine.memory_used / machine.memory_total
        if cpu is None and machine.cpu_count:
            cpu = min(1.0, machine.load1 / machine.cpu_count)
    return cpu, mem


def _join_gpus(
    proxmox: ProxmoxData, vms: tuple[Vm, ...], nodes: dict[str, Node]
) -> tuple[Gpu, ...]:
    vm_of_device: dict[str, Vm] = {}
    for vm in vms:
        for passed_dev in vm.devices:
            vm_of_device[_pci_base(passed_dev.address)] = vm
    host_gpus = [d for d in proxmox.pci if d.is_gpu]
    # A VM may pass through a GPU the host no longer shows (fallen off the bus).
    seen = {_pci_base(d.address) for d in host_gpus}
    for passed_vm in vms:
        for passed in passed_vm.devices:
            base = _pci_base(passed.address)
            if base in seen or base.startswith("mapping"):
                continue
            if _hex(passed.vendor_id) == NVIDIA_VENDOR:
                host_gpus.append(
                    HostPci(
                        passed_vm.host,
                        passed.address,
                        passed.vendor_id,
                        passed.device_id,
                        device_name=passed.description,
                        class_id="0x0302",
                        present=False,
                    )
                )
                seen.add(base)
    by_node: dict[str, list[HostPci]] = {}
    vm_for: dict[str, Vm | None] = {}
    for gpu_dev in host_gpus:
        gpu_vm = vm_of_device.get(_pci_base(gpu_dev.address))
        vm_for[gpu_dev.address] = gpu_vm
        if gpu_vm is not None and gpu_vm.node_name:
            by_node.setdefault(gpu_vm.node_name, []).append(gpu_dev)

    gpus: list[Gpu] = []
    for dev in sorted(host_gpus, key=lambda d: d.address):
        host_vm = vm_for.get(dev.address)
        node = nodes.get(host_vm.node_name) if host_vm is not None and host_vm.node_name else None
        capacity = 0
        pods: tuple[PodRef, ...] = ()
        allocated = 0
        if node is not None:
            present = [d for d in by_node[node.name] if d.present]
            if dev.present and present:
                capacity = node.gpu_allocatable // len(present)
                allocated, pods = _share(node, sorted(present, key=lambda d: d.address), dev)
        gpus.append(
            Gpu(
                address=dev.address,
                model=_gpu_model(dev.device_name),
                host=dev.host,
                vendor_id=_hex(dev.vendor_id),
                device_id=_hex(dev.device_id),
                present=dev.present,
                vmid=host_vm.vmid if host_vm else None,
                vm_name=host_vm.name if host_vm else "",
                node_name=node.name if node else "",
                capacity=capacity,
                allocated=allocated,
                pods=pods,
            )
        )
    return tuple(gpus)


def _share(node: Node, devices: list[HostPci], dev: HostPci) -> tuple[int, tuple[PodRef, ...]]:
    """Time-slicing does not report which device serves a pod; fill devices in address
    order with the node's GPU pods (sorted by name) so the totals per device add up."""
    per = node.gpu_allocatable // len(devices) if devices else 0
    holders = sorted((p for p in node.pods if p.gpu_request), key=lambda p: (p.namespace, p.name))
    index = devices.index(dev)
    start, end = index * per, (index + 1) * per
    used = 0
    mine: list[PodRef] = []
    cursor = 0
    for pod in holders:
        lo, hi = cursor, cursor + pod.gpu_request
        overlap = max(0, min(hi, end) - max(lo, start))
        if overlap:
            used += overlap
            mine.append(pod)
        cursor = hi
    return used, tuple(mine)


def _gpu_model(name: str) -> str:
    if "[" in name and "]" in name:
        return name[name.index("[") + 1 : name.rindex("]")]
    return name or "NVIDIA GPU"


def find_faults(s: ClusterSnapshot) -> list[Fault]:
    """What a glance must tell, most severe first."""
    faults: list[Fault] = []
    for src in s.sources:
        if src.health.value == "degraded":
            faults.append(Fault("error", "source", src.source, src.reason, src.last_attempt))
    for n in s.nodes:
        if n.ready != "True":
            faults.append(Fault("error", "nodes", n.name, f"NotReady ({n.ready_reason})"))
        elif n.unschedulable:
            faults.append(Fault("warning", "nodes", n.name, "cordoned: Ready,SchedulingDisabled"))
        if n.talos is not None:
            for m in n.talos.etcd_members:
                if m.healthy is False:
                    faults.append(
                        Fault("error", "nodes", n.name, f"etcd member {m.hostname} unhealthy")
                    )
            bad = [svc.id for svc in n.talos.services if svc.healthy is False]
            if bad:
                faults.append(
                    Fault("warning", "nodes", n.name, f"talos services unhealthy: {', '.join(bad)}")
                )
    for vm in s.vms:
        if vm.node_name and vm.status != "running":
            faults.append(Fault("error", "vms", f"{vm.vmid} {vm.name}", f"VM {vm.status}"))
    for g in s.gpus:
        if not g.present:
            faults.append(Fault("error", "gpus", g.address, f"{g.model} is gone from the PCI bus"))
    for p in s.pools:
        if p.state and p.state != "Online":
            faults.append(Fault("error", "pools", p.name, f"pool {p.state}"))
    for k in s.kustomizations:
        if k.suspended:
            faults.append(Fault("warning", "flux", k.key, "suspended"))
        elif k.ready == "False":
            faults.append(
                Fault(
                    "error",
                    "flux",
                    k.key,
                    f"{k.reason}: {k.message}".strip(": "),
                    k.last_transition,
                )
            )
    return sorted(faults, key=Fault.rank)
