"""One world model behind the lab's three APIs, so actions have consequences across them.

The Proxmox host, its PCI devices and VMs; the Talos machines inside the VMs and etcd;
and the Kubernetes objects (through `ObjectStore`). A stopped VM makes its Talos API
unreachable and its Node NotReady; a Talos reset removes the machine from etcd and
Kubernetes; a clone boots into maintenance mode and joins when configured. Servers call
the methods here and never change each other's state directly.

Every state change happens under `World.lock`. Delayed effects (boot, task completion)
run on the world's scheduler thread, stopped by `close()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dapper.lab.kinds import by_kind
from dapper.lab.store import NotFound, ObjectStore, now_rfc3339

TALOS_VERSION = "v1.11.2"
KUBERNETES_VERSION = "v1.33.4"
PVE_HOST = "pve"
GIB = 1024**3
MIB = 1024**2
SSD_BYTES = 3_840_755_982_336  # a 3.84 TB SSD
GPU_REPLICAS = 4  # nvidia-device-plugin time-slicing

APIS = ("kubernetes", "proxmox", "talos")
FAULT_KINDS = (
    "node-notready",  # node-notready:<node>
    "vm-stopped",  # vm-stopped:<vmid or name>
    "api-down",  # api-down:<kubernetes|proxmox|talos>
    "api-slow",  # api-slow:<api>[:seconds]
    "etcd-unhealthy",  # etcd-unhealthy:<node>
    "ks-failing",  # ks-failing:<namespace>/<name>
    "pool-degraded",  # pool-degraded:<pool>
    "gpu-gone",  # gpu-gone:<pci address>
)


class WorldError(Exception):
    """An action the world refuses; `code` hints the protocol status (404, 409, 412...)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Timings:
    """How long things take in the lab; short by default so tests stay quick."""

    task: float = 0.15  # a PVE task from running to stopped
    boot: float = 0.3  # VM start to Talos API up / Node Ready
    shutdown: float = 0.1
    clone: float = 0.3
    reconcile_interval: float = 5.0  # the Flux twin's periodic reconcile
    reconcile_delay: float = 0.05  # from requestedAt to reconcile start


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
class LabVm:
    vmid: int
    name: str
    cores: int
    memory_mib: int
    disk_gib: int
    macs: list[str]
    hostpci: dict[str, str] = field(default_factory=dict)  # hostpci0 -> "0000:81:00.0,pcie=1"
    status: str = "stopped"  # running, stopped
    started_at: float | None = None
    template: bool = False
    tags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # other config keys, verbatim
    lock: str = ""  # clone/create in progress

    def config(self) -> dict[str, str | int]:
        """The VM's config as PVE's qemu/{vmid}/config returns it."""
        cfg: dict[str, str | int] = {
            "name": self.name,
            "cores": self.cores,
            "sockets": 1,
            "memory": str(self.memory_mib),
            "cpu": "host",
            "machine": "q35",
            "bios": "ovmf",
            "ostype": "l26",
            "agent": "1",
            "scsihw": "virtio-scsi-single",
            "boot": "order=virtio0;ide2",
            "virtio0": f"local-zfs:vm-{self.vmid}-disk-0,iothread=1,size={self.disk_gib}G",
            "ide2": "local:iso/talos-nocloud-amd64.iso,media=cdrom",
            "digest": hashlib.sha1(f"{self.vmid}{self.name}{self.hostpci}".encode()).hexdigest(),
        }
        for i, mac in enumerate(self.macs):
            cfg[f"net{i}"] = f"virtio={mac.upper()},bridge=vmbr0,tag=100"
        cfg.update(self.hostpci)
        if self.tags:
            cfg["tags"] = ";".join(self.tags)
        if self.template:
            cfg["template"] = 1
        cfg.update(self.extra)
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
    service_overrides: dict[str, str] = field(default_factory=dict)

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
            state = self.service_overrides.get(n, "Running")
            out.append((n, state, state == "Running"))
        return out


@dataclass
class EtcdMemberState:
    id: int
    hostname: str
    ip: str
    healthy: bool = True
    is_learner: bool = False


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
    for i in range(len(specs), count):
        n = i - len(DAPPER_NODES) + 4  # talos-node-large-4 onwards
        ip = f"10.{101 + i // 250}.{(i // 250) % 250}.{10 + i % 240}"
        mac = "bc:24:11:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        specs.append(NodeSpec(f"talos-node-large-{n}", ip, 100 + i, "worker", mac, False, True))
    return specs


class World:
    """The twin's state; see the module docstring for the consequences it models."""

    def __init__(self, nodes: int = 7, timings: Timings | None = None, seed: int = 1) -> None:
        self.lock = threading.RLock()
        self.timings = timings or Timings()
        self.rng = random.Random(seed)
        self.store = ObjectStore()
        self.specs = node_specs(nodes)
        self.pci: dict[str, PciDevice] = {}
        self.vms: dict[int, LabVm] = {}
        self.machines: dict[str, Machine] = {}  # by IP
        self.etcd: dict[int, EtcdMemberState] = {}
        self.faults: set[str] = set()
        self.writes: list[WriteRecord] = []
        self.endpoints: dict[str, str] = {}  # filled by the runtime: kubernetes url, ca pem...
        self.started = time.time()
        self._fault_listeners: list[Callable[[str, bool], None]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self.lock)
        self._closed = False
        self._build()
        self._thread = threading.Thread(target=self._run_timers, name="lab-world", daemon=True)
        self._thread.start()

    # -- construction ------------------------------------------------------------------

    def _build(self) -> None:
        for addr in GPU_ADDRESSES:
            self.pci[addr] = PciDevice(
                addr,
                "0x10de",
                "0x15f8",
                "NVIDIA Corporation",
                "GP100GL [Tesla P100 PCIe 16GB]",
                "0x030200",
                "0x10de",
                "0x118f",
                iommugroup=40 + GPU_ADDRESSES.index(addr),
            )
        for addr in HBA_ADDRESSES:
            self.pci[addr] = PciDevice(
                addr,
                "0x1000",
                "0x0097",
                "Broadcom / LSI",
                "SAS3008 PCI-Express Fusion-MPT SAS-3",
                "0x010700",
                "0x1000",
                "0x30e0",
                iommugroup=20 + HBA_ADDRESSES.index(addr),
            )
        storage_idx = 0
        for spec in self.specs:
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
            if spec.storage:
                slot = f"hostpci{len(vm.hostpci)}"
                if storage_idx < len(HBA_ADDRESSES):
                    vm.hostpci[slot] = f"{HBA_ADDRESSES[storage_idx]},pcie=1"
                storage_idx += 1
            self.vms[vm.vmid] = vm
            disks = [("/dev/vda", vm.disk_gib * GIB, "QEMU HARDDISK")]
            if spec.storage:
                disks.append(("/dev/sda", SSD_BYTES, "SAMSUNG MZILT3T8HBLS"))
            m = Machine(
                spec.ip,
                spec.vmid,
                spec.hostname,
                role=spec.role,
                maintenance=False,
                config=_machine_config(spec.hostname, spec.role),
                disks=disks,
            )
            self.machines[spec.ip] = m
            vm.status = "running"
            vm.started_at = self.started - self.rng.randint(30, 45) * 86400
            m.booted = True
            if spec.role == "controlplane":
                mid = self.rng.getrandbits(64)
                self.etcd[mid] = EtcdMemberState(mid, spec.hostname, spec.ip)
        self._seed_kubernetes()

    def _seed_kubernetes(self) -> None:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "flux-system"):
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns},
                    "status": {"phase": "Active"},
                }
            )
        for spec in self.specs:
            self.store.create(self._node_object(spec))
        for spec in self.specs:
            self._seed_node_pods(spec)
        self._seed_daemonsets()

    def _node_object(self, spec: NodeSpec) -> dict:
        labels = {
            "kubernetes.io/hostname": spec.hostname,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
        }
        capacity = {
            "cpu": str(spec.cores),
            "memory": f"{spec.memory_mib * 1024}Ki",
            "pods": "250",
            "ephemeral-storage": "62914560Ki",
        }
        taints = []
        if spec.role == "controlplane":
            labels["node-role.kubernetes.io/control-plane"] = ""
            taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        if spec.storage:
            labels.update(
                {
                    "openebs.io/engine": "mayastor",
                    "node.kubernetes.io/instance-type": "mayastor-storage",
                    "node-role.kubernetes.io/storage": "ssd",
                    "node-role.kubernetes.io/worker": "worker",
                }
            )
            capacity["hugepages-2Mi"] = "2Gi"
        if spec.gpu:
            labels.update(
                {
                    "node-role.kubernetes.io/gpu": "p100",
                    "nvidia.feature.node.kubernetes.io/gpu": "true",
                    "feature.node.kubernetes.io/pci-0302_10de.present": "true",
                }
            )
            capacity["nvidia.com/gpu"] = str(self._gpu_units())
        created = self.started - 41 * 86400
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": spec.hostname,
                "labels": labels,
                "annotations": {"talos.dev/owned-labels": "[]"},
                "creationTimestamp": now_rfc3339(created),
            },
            "spec": {"podCIDR": "10.69.0.0/24", "taints": taints}
            if taints
            else {"podCIDR": "10.69.0.0/24"},
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
                "addresses": [
                    {"type": "InternalIP", "address": spec.ip},
                    {"type": "Hostname", "address": spec.hostname},
                ],
                "conditions": _node_conditions(
                    True, "KubeletReady", "kubelet is posting ready status"
                ),
                "nodeInfo": {
                    "kubeletVersion": KUBERNETES_VERSION,
                    "kubeProxyVersion": KUBERNETES_VERSION,
                    "osImage": f"Talos ({TALOS_VERSION})",
                    "kernelVersion": "6.12.48-talos",
                    "containerRuntimeVersion": "containerd://2.1.4",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "machineID": hashlib.md5(spec.hostname.encode()).hexdigest(),
                    "systemUUID": hashlib.md5(spec.mac.encode()).hexdigest(),
                    "bootID": hashlib.md5(spec.ip.encode()).hexdigest(),
                },
            },
        }

    def _gpu_units(self) -> int:
        return sum(1 for a in GPU_ADDRESSES if self.pci[a].present) * GPU_REPLICAS

    def _seed_node_pods(self, spec: NodeSpec) -> None:
        if spec.role == "controlplane":
            for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                self.store.create(
                    pod_object(
                        "kube-system",
                        f"{comp}-{spec.hostname}",
                        spec.hostname,
                        owner=("Node", spec.hostname),
                        labels={"k8s-app": comp, "tier": "control-plane"},
                        cpu="200m",
                        memory="512Mi",
                    )
                )

    def _seed_daemonsets(self) -> None:
        daemonsets = [
            ("kube-system", "cilium", "100m", "256Mi", None),
            ("kube-system", "spegel", "10m", "64Mi", None),
        ]
        for ns, name, cpu, mem, selector in daemonsets:
            self.ensure_daemonset(ns, name, cpu=cpu, memory=mem, node_selector=selector)
        cps = [s for s in self.specs if s.role == "controlplane"][:2]
        for i, spec in enumerate(cps):
            self.store.create(
                pod_object(
                    "kube-system",
                    f"coredns-6d4b9c7f5-{_suffix(self.rng)}",
                    spec.hostname,
                    owner=("ReplicaSet", "coredns-6d4b9c7f5"),
                    labels={"k8s-app": "kube-dns"},
                    cpu="100m",
                    memory="128Mi",
                    tolerate_control_plane=True,
                    index=i,
                )
            )

    # -- helpers used by the servers and the Flux twin -----------------------------------

    def ensure_daemonset(
        self,
        ns: str,
        name: str,
        *,
        cpu: str = "50m",
        memory: str = "64Mi",
        node_selector: dict[str, str] | None = None,
        gpu: int = 0,
        tolerate_control_plane: bool = True,
    ) -> None:
        """A DaemonSet object and one pod on every matching Ready node."""
        with self.lock:
            ds_rt = by_kind("apps", "DaemonSet")
            if self.store.find(by_kind("", "Namespace"), "", ns) is None:
                self.ensure_namespace(ns)
            nodes = [
                s
                for s in self.specs
                if self._node_exists(s.hostname)
                and _matches(self._node_labels(s.hostname), node_selector)
                and (tolerate_control_plane or s.role != "controlplane")
            ]
            ds = {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {"app.kubernetes.io/name": name},
                },
                "spec": {
                    "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name}},
                        "spec": {"nodeSelector": node_selector or {}},
                    },
                },
                "status": {
                    "desiredNumberScheduled": len(nodes),
                    "currentNumberScheduled": len(nodes),
                    "numberReady": len(nodes),
                    "numberAvailable": len(nodes),
                    "updatedNumberScheduled": len(nodes),
                    "numberMisscheduled": 0,
                },
            }
            self.store.upsert(ds, rt=ds_rt)
            existing = {
                p["spec"].get("nodeName")
                for p in self.pods(namespace=ns)
                if _owner(p) == ("DaemonSet", name)
            }
            for s in nodes:
                if s.hostname not in existing:
                    self.store.create(
                        pod_object(
                            ns,
                            f"{name}-{_suffix(self.rng)}",
                            s.hostname,
                            owner=("DaemonSet", name),
                            labels={"app.kubernetes.io/name": name},
                            cpu=cpu,
                            memory=memory,
                            gpu=gpu,
                            tolerate_control_plane=True,
                        )
                    )

    def ensure_namespace(self, ns: str) -> None:
        rt = by_kind("", "Namespace")
        if self.store.find(rt, "", ns) is None:
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns},
                    "status": {"phase": "Active"},
                },
                rt=rt,
            )

    def _node_exists(self, name: str) -> bool:
        return self.store.find(by_kind("", "Node"), "", name) is not None

    def _node_labels(self, name: str) -> dict[str, str]:
        node = self.store.find(by_kind("", "Node"), "", name)
        return (node or {}).get("metadata", {}).get("labels", {}) or {}

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[dict]:
        items, _ = self.store.list(by_kind("", "Pod"), namespace)
        return [p for p in items if node is None or p.get("spec", {}).get("nodeName") == node]

    def node_ready(self, name: str) -> bool:
        node = self.store.find(by_kind("", "Node"), "", name)
        if not node:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def schedule(self, pod: dict) -> str | None:
        """Pick a node for a pod the way a small scheduler would: Ready, schedulable,
        tolerated, selector-matching, with room for its GPU request; fewest pods first."""
        spec = pod.get("spec", {})
        gpu = pod_gpu_request(pod)
        selector = spec.get("nodeSelector") or {}
        tolerates_cp = any(
            t.get("key") == "node-role.kubernetes.io/control-plane" or t.get("operator") == "Exists"
            for t in spec.get("tolerations", []) or []
        )
        nodes, _ = self.store.list(by_kind("", "Node"))
        candidates = []
        for node in nodes:
            name = node["metadata"]["name"]
            if node.get("spec", {}).get("unschedulable") or not self.node_ready(name):
                continue
            taints = node.get("spec", {}).get("taints") or []
            if any(t.get("effect") == "NoSchedule" for t in taints) and not tolerates_cp:
                continue
            if not _matches(node["metadata"].get("labels", {}), selector):
                continue
            if gpu:
                cap = int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", 0))
                used = sum(pod_gpu_request(p) for p in self.pods(node=name))
                if used + gpu > cap:
                    continue
            candidates.append((len(self.pods(node=name)), name))
        return min(candidates)[1] if candidates else None

    # -- faults ------------------------------------------------------------------------

    def inject(self, fault: str) -> None:
        """Turn a fault on; see FAULT_KINDS for the forms."""
        kind, _, arg = fault.partition(":")
        if kind not in FAULT_KINDS:
            raise WorldError(f"unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")
        with self.lock:
            if kind == "vm-stopped":
                self.vm_stop(self._vmid(arg))
                return
            self.faults.add(fault)
            if kind == "node-notready":
                self._set_node_ready(
                    arg, False, "NodeStatusUnknown", "Kubelet stopped posting node status."
                )
            elif kind == "etcd-unhealthy":
                for m in self.etcd.values():
                    if m.hostname == arg or m.ip == arg:
                        m.healthy = False
            elif kind == "pool-degraded":
                self._set_pool_state(arg, "Degraded")
            elif kind == "gpu-gone":
                if arg not in self.pci:
                    raise WorldError(f"no PCI device {arg}")
                self.pci[arg].present = False
                self._refresh_gpu_capacity()
        self._notify_fault(fault, True)

    def clear(self, fault: str) -> None:
        kind, _, arg = fault.partition(":")
        with self.lock:
            if kind == "vm-stopped":
                self.vm_start(self._vmid(arg))
                return
            self.faults.discard(fault)
            if kind == "node-notready":
                self._set_node_ready(arg, True, "KubeletReady", "kubelet is posting ready status")
            elif kind == "etcd-unhealthy":
                for m in self.etcd.values():
                    if m.hostname == arg or m.ip == arg:
                        m.healthy = True
            elif kind == "pool-degraded":
                self._set_pool_state(arg, "Online")
            elif kind == "gpu-gone":
                self.pci[arg].present = True
                self._refresh_gpu_capacity()
        self._notify_fault(fault, False)

    def on_fault(self, fn: Callable[[str, bool], None]) -> None:
        """Servers subscribe to open/close their listeners on api-down."""
        self._fault_listeners.append(fn)

    def _notify_fault(self, fault: str, active: bool) -> None:
        for fn in list(self._fault_listeners):
            fn(fault, active)

    def api_down(self, api: str) -> bool:
        return f"api-down:{api}" in self.faults

    def api_delay(self, api: str) -> float:
        for f in self.faults:
            parts = f.split(":")
            if parts[0] == "api-slow" and len(parts) > 1 and parts[1] == api:
                return float(parts[2]) if len(parts) > 2 else 3.0
        return 0.0

    def failing_kustomization(self, namespace: str, name: str) -> bool:
        return f"ks-failing:{namespace}/{name}" in self.faults

    def record_write(self, api: str, op: str, identity: str) -> None:
        with self.lock:
            self.writes.append(WriteRecord(time.time(), api, op, identity))

    # -- Kubernetes consequences ---------------------------------------------------------

    def _set_node_ready(self, name: str, ready: bool, reason: str, message: str) -> None:
        rt = by_kind("", "Node")
        if self.store.find(rt, "", name) is None:
            return

        def edit(node: dict) -> None:
            status = "True" if ready else "Unknown"
            node["status"]["conditions"] = _node_conditions(ready, reason, message, status)
            taints = [
                t
                for t in node.get("spec", {}).get("taints", []) or []
                if t.get("key") != "node.kubernetes.io/unreachable"
            ]
            if not ready:
                taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})
            node.setdefault("spec", {})["taints"] = taints

        self.store.mutate(rt, "", name, edit)
        for pod in self.pods(node=name):

            def mark(p: dict, ready: bool = ready) -> None:
                p.setdefault("status", {})["conditions"] = _pod_conditions(ready)
                for cs in p["status"].get("containerStatuses", []):
                    cs["ready"] = ready

            self.store.mutate(
                by_kind("", "Pod"), pod["metadata"]["namespace"], pod["metadata"]["name"], mark
            )

    def _set_pool_state(self, name: str, state: str) -> None:
        rt = by_kind("openebs.io", "DiskPool")
        items, _ = self.store.list(rt)
        for pool in items:
            if pool["metadata"]["name"] == name:

                def edit(p: dict) -> None:
                    p.setdefault("status", {})["pool_status"] = state

                self.store.mutate(rt, pool["metadata"]["namespace"], name, edit, status_only=True)

    def _refresh_gpu_capacity(self) -> None:
        units = self._gpu_units()
        for spec in self.specs:
            if spec.gpu and self._node_exists(spec.hostname):

                def edit(node: dict) -> None:
                    node["status"]["capacity"]["nvidia.com/gpu"] = str(units)
                    node["status"]["allocatable"]["nvidia.com/gpu"] = str(units)

                self.store.mutate(by_kind("", "Node"), "", spec.hostname, edit)

    def delete_node(self, name: str) -> None:
        """The Node goes; its pods go; controllers re-create what they own elsewhere."""
        with self.lock:
            for pod in self.pods(node=name):
                self.store.delete(
                    by_kind("", "Pod"), pod["metadata"]["namespace"], pod["metadata"]["name"]
                )
                self.replace_pod(pod)
            with contextlib.suppress(NotFound):
                self.store.delete(by_kind("", "Node"), "", name)

    def replace_pod(self, pod: dict) -> dict | None:
        """What a ReplicaSet/StatefulSet controller does when its pod is gone: a new one,
        scheduled elsewhere (or Pending). DaemonSet and mirror pods are not replaced."""
        kind, owner = _owner(pod)
        if kind not in ("ReplicaSet", "StatefulSet", "Deployment"):
            return None
        meta = pod["metadata"]
        name = meta["name"] if kind == "StatefulSet" else f"{owner}-{_suffix(self.rng)}"
        new = pod_object(
            meta["namespace"],
            name,
            "",
            owner=(kind, owner),
            labels=meta.get("labels", {}),
            gpu=pod_gpu_request(pod),
            node_selector=pod.get("spec", {}).get("nodeSelector"),
        )
        new["spec"] = {**pod.get("spec", {}), "nodeName": ""}
        node = self.schedule(new)
        new["spec"]["nodeName"] = node or ""
        new["status"] = _pod_status(bool(node), node is not None)
        return self.store.create(new)

    # -- Proxmox actions -------------------------------------------------------------------

    def _vmid(self, ref: str) -> int:
        if ref.isdigit():
            return int(ref)
        for vm in self.vms.values():
            if vm.name == ref:
                return vm.vmid
        raise WorldError(f"no VM {ref!r}", 404)

    def vm(self, vmid: int) -> LabVm:
        try:
            return self.vms[vmid]
        except KeyError:
            raise WorldError(
                f"Configuration file 'nodes/{PVE_HOST}/qemu-server/{vmid}.conf' does not exist", 500
            ) from None

    def machine_of_vm(self, vmid: int) -> Machine | None:
        for m in self.machines.values():
            if m.vmid == vmid:
                return m
        return None

    def vm_start(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} already running", 500)
            missing = [
                a.split(",")[0]
                for a in vm.hostpci.values()
                if a.split(",")[0] in self.pci and not self.pci[a.split(",")[0]].present
            ]
            if missing:
                raise WorldError(f"PCI device {missing[0]} not found on host", 500)
            vm.status = "running"
            vm.started_at = time.time()
            self.faults.discard(f"vm-stopped:{vmid}")
            self.faults.discard(f"vm-stopped:{vm.name}")
            machine = self.machine_of_vm(vmid)
            if machine is None:
                machine = Machine(
                    self._free_ip(),
                    vmid,
                    f"talos-{_suffix(self.rng)}",
                    disks=[("/dev/vda", vm.disk_gib * GIB, "QEMU HARDDISK")],
                )
                self.machines[machine.ip] = machine
        self.later(self.timings.boot, lambda: self._booted(vmid))

    def _booted(self, vmid: int) -> None:
        with self.lock:
            vm = self.vms.get(vmid)
            machine = self.machine_of_vm(vmid)
            if vm is None or vm.status != "running" or machine is None:
                return
            machine.booted = True
            if not machine.maintenance:
                self._join(machine)

    def _free_ip(self) -> str:
        used = set(self.machines)
        for last in range(100, 250):
            ip = f"10.100.0.{last}"
            if ip not in used:
                return ip
        raise WorldError("no free address in 10.100.0.0/24", 507)

    def vm_stop(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            vm.status = "stopped"
            vm.started_at = None
            machine = self.machine_of_vm(vmid)
            if machine is not None:
                machine.booted = False
                if not machine.maintenance:
                    self._set_node_ready(
                        machine.hostname,
                        False,
                        "NodeStatusUnknown",
                        "Kubelet stopped posting node status.",
                    )
                for m in self.etcd.values():
                    if m.ip == machine.ip:
                        m.healthy = False

    def vm_reboot(self, vmid: int) -> None:
        with self.lock:
            self.vm_stop(vmid)
            self.vm_start(vmid)

    def vm_clone(self, vmid: int, newid: int, name: str | None = None) -> LabVm:
        with self.lock:
            src = self.vm(vmid)
            if newid in self.vms:
                raise WorldError(f"VM {newid} already exists", 500)
            mac = "bc:24:11:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(3))
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
            self.vms[newid] = clone

        def done() -> None:
            with self.lock:
                clone.lock = ""

        self.later(self.timings.clone, done)
        return clone

    def vm_destroy(self, vmid: int) -> None:
        with self.lock:
            vm = self.vm(vmid)
            if vm.status == "running":
                raise WorldError(f"VM {vmid} is running - destroy failed", 500)
            machine = self.machine_of_vm(vmid)
            if machine is not None:
                del self.machines[machine.ip]
            del self.vms[vmid]

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

    # -- Talos actions ---------------------------------------------------------------------

    def machine(self, node: str) -> Machine:
        """A machine by IP or hostname, or WorldError(404)."""
        with self.lock:
            if node in self.machines:
                return self.machines[node]
            for m in self.machines.values():
                if m.hostname == node:
                    return m
        raise WorldError(f"no machine {node}", 404)

    def reachable(self, machine: Machine) -> bool:
        vm = self.vms.get(machine.vmid)
        return bool(vm and vm.status == "running" and machine.booted)

    def talos_apply_config(self, node: str, data: bytes, mode: str = "auto") -> str:
        """Apply a machine config; a maintenance-mode machine installs, reboots and joins."""
        hostname, role = _parse_machine_config(data)
        with self.lock:
            m = self.machine(node)
            if m.maintenance:
                m.config = data
                m.role = role
                if hostname:
                    m.hostname = hostname
                    if m.vmid in self.vms:
                        self.vms[m.vmid].name = hostname
                m.maintenance = False
                m.booted = False
                self.later(self.timings.boot, lambda: self._booted(m.vmid))
                return "Applied configuration; the machine installs Talos and reboots"
            m.config = data
            if mode == "reboot":
                self.talos_reboot(node)
                return "Applied configuration with a reboot"
            return "Applied configuration without a reboot"

    def _join(self, machine: Machine) -> None:
        """A configured machine comes up: its Node registers, control planes join etcd."""
        spec = next((s for s in self.specs if s.hostname == machine.hostname), None)
        if spec is None:
            vm = self.vms[machine.vmid]
            spec = NodeSpec(
                machine.hostname,
                machine.ip,
                machine.vmid,
                machine.role or "worker",
                vm.macs[0] if vm.macs else "",
                storage=machine.role == "worker",
            )
            self.specs.append(spec)
        if not self._node_exists(machine.hostname):
            self.store.create(self._node_object(spec))
            for ds in self.store.list(by_kind("apps", "DaemonSet"))[0]:
                self.ensure_daemonset(
                    ds["metadata"]["namespace"],
                    ds["metadata"]["name"],
                    node_selector=ds["spec"]["template"]["spec"].get("nodeSelector") or None,
                )
        else:
            self._set_node_ready(
                machine.hostname, True, "KubeletReady", "kubelet is posting ready status"
            )
        if (
            machine.role == "controlplane"
            and self.etcd
            and not any(m.ip == machine.ip for m in self.etcd.values())
        ):
            mid = self.rng.getrandbits(64)
            self.etcd[mid] = EtcdMemberState(mid, machine.hostname, machine.ip)
        for m in self.etcd.values():
            if m.ip == machine.ip and f"etcd-unhealthy:{m.hostname}" not in self.faults:
                m.healthy = True
        self._reschedule_pending()

    def _reschedule_pending(self) -> None:
        for pod in self.pods():
            if not pod["spec"].get("nodeName"):
                node = self.schedule(pod)
                if node:

                    def bind(p: dict, node: str = node) -> None:
                        p["spec"]["nodeName"] = node
                        p["status"] = _pod_status(True, True)

                    self.store.mutate(
                        by_kind("", "Pod"),
                        pod["metadata"]["namespace"],
                        pod["metadata"]["name"],
                        bind,
                    )

    def talos_reboot(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            m.booted = False
            if not m.maintenance:
                self._set_node_ready(
                    m.hostname, False, "NodeStatusUnknown", "Kubelet stopped posting node status."
                )
        self.later(self.timings.boot, lambda: self._booted(m.vmid))

    def talos_shutdown(self, node: str) -> None:
        with self.lock:
            self.vm_stop(self.machine(node).vmid)

    def talos_reset(self, node: str, graceful: bool = True) -> None:
        """Leave etcd (graceful), leave Kubernetes, wipe, reboot into maintenance mode."""
        with self.lock:
            m = self.machine(node)
            if graceful and m.role == "controlplane":
                for mid in [k for k, v in self.etcd.items() if v.ip == m.ip]:
                    del self.etcd[mid]
            self.delete_node(m.hostname)
            m.maintenance = True
            m.config = None
            m.role = ""
            m.booted = False
        self.later(self.timings.boot, lambda: self._booted(m.vmid))

    def talos_bootstrap(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            if m.role != "controlplane":
                raise WorldError("etcd is not configured on this node", 400)
            if self.etcd:
                raise WorldError("etcd data directory is not empty", 409)
            mid = self.rng.getrandbits(64)
            self.etcd[mid] = EtcdMemberState(mid, m.hostname, m.ip)

    def etcd_remove_member(self, member_id: int) -> None:
        with self.lock:
            if member_id not in self.etcd:
                raise WorldError(f"etcd member {member_id:016x} not found", 404)
            del self.etcd[member_id]

    def etcd_leave(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            ids = [k for k, v in self.etcd.items() if v.ip == m.ip]
            if not ids:
                raise WorldError("this node is not an etcd member", 412)
            for k in ids:
                del self.etcd[k]

    # -- the scheduler thread ------------------------------------------------------------

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` on the world thread after `delay` seconds (0: as soon as possible)."""
        with self.lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))
            self._wake.notify_all()

    def _run_timers(self) -> None:
        import logging

        log = logging.getLogger("dapper.lab.world")
        while True:
            with self.lock:
                while not self._closed and (
                    not self._timers or self._timers[0][0] > time.monotonic()
                ):
                    wait = self._timers[0][0] - time.monotonic() if self._timers else None
                    self._wake.wait(wait)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:  # a failed timer must not kill the world
                log.exception("lab world timer failed")

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._wake.notify_all()
        self.store.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)


# -- object helpers ------------------------------------------------------------------------


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _owner(pod: dict) -> tuple[str, str]:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return (refs[0].get("kind", ""), refs[0].get("name", "")) if refs else ("", "")


def _matches(labels: dict[str, str], selector: dict[str, str] | None) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _node_conditions(ready: bool, reason: str, message: str, status: str | None = None) -> list:
    now = now_rfc3339()
    conds = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "message": msg,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for t, r, msg in (
            (
                "MemoryPressure",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    if not ready:
        for c in conds:
            c.update(status="Unknown", reason="NodeStatusUnknown", message=message)
    conds.append(
        {
            "type": "Ready",
            "status": status or ("True" if ready else "False"),
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    )
    return conds


def _pod_conditions(ready: bool) -> list:
    now = now_rfc3339()
    s = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": s, "lastTransitionTime": now},
        {"type": "Ready", "status": s, "lastTransitionTime": now},
    ]


def _pod_status(scheduled: bool, ready: bool) -> dict:
    if not scheduled:
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/0 nodes are available",
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
        }
    return {
        "phase": "Running",
        "conditions": _pod_conditions(ready),
        "startTime": now_rfc3339(),
        "containerStatuses": [
            {
                "name": "app",
                "ready": ready,
                "restartCount": 0,
                "image": "lab/app:latest",
                # required by typed clients (V1ContainerStatus.imageID)
                "imageID": "docker.io/lab/app@sha256:" + "0" * 64,
                "started": True,
            }
        ],
    }


def pod_gpu_request(pod: dict) -> int:
    total = 0
    for c in pod.get("spec", {}).get("containers", []) or []:
        res = c.get("resources", {}) or {}
        val = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += int(val or 0)
    return total


def pod_object(
    ns: str,
    name: str,
    node: str,
    *,
    owner: tuple[str, str] = ("", ""),
    labels: dict[str, str] | None = None,
    cpu: str = "50m",
    memory: str = "64Mi",
    gpu: int = 0,
    node_selector: dict[str, str] | None = None,
    tolerate_control_plane: bool = False,
    index: int = 0,
    runtime_class: str | None = None,
) -> dict:
    """A Pod as the kubelet would report it running on `node` (or Pending when node is '')."""
    resources: dict = {"requests": {"cpu": cpu, "memory": memory}}
    if gpu:
        resources["limits"] = {"nvidia.com/gpu": str(gpu)}
    spec: dict = {
        "nodeName": node,
        "containers": [{"name": "app", "image": "lab/app:latest", "resources": resources}],
        "restartPolicy": "Always",
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerate_control_plane:
        spec["tolerations"] = [{"operator": "Exists"}]
    if runtime_class or gpu:
        spec["runtimeClassName"] = runtime_class or "nvidia"
    meta: dict = {"name": name, "namespace": ns, "labels": dict(labels or {})}
    if owner[0]:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1" if owner[0] == "Node" else "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": hashlib.md5(f"{ns}/{owner[1]}".encode()).hexdigest(),
                "controller": True,
            }
        ]
    if owner[0] == "Node":
        meta["annotations"] = {
            "kubernetes.io/config.mirror": hashlib.md5(name.encode()).hexdigest()
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": _pod_status(bool(node), bool(node)),
    }


def _machine_config(hostname: str, role: str) -> bytes:
    return (
        "version: v1alpha1\nmachine:\n"
        f"  type: {role}\n  network:\n    hostname: {hostname}\n"
        "cluster:\n  clusterName: kubernetes\n"
        "  controlPlane:\n    endpoint: https://10.100.0.40:6443\n"
    ).encode()


def _parse_machine_config(data: bytes) -> tuple[str, str]:
    """(hostname, role) from a Talos machine config; raises WorldError if it is not one."""
    from ruamel.yaml import YAML

    try:
        doc = YAML(typ="safe").load(data.decode())
    except Exception as exc:
        raise WorldError(f"failed to parse config: {str(exc).splitlines()[0]}", 400) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("machine"), dict):
        raise WorldError("failed to parse config: not a Talos machine config", 400)
    machine = doc["machine"]
    role = machine.get("type", "")
    if role not in ("controlplane", "worker", "init"):
        raise WorldError(f"invalid machine type {role!r}", 400)
    hostname = ((machine.get("network") or {}).get("hostname")) or ""
    return hostname, "controlplane" if role == "init" else role
