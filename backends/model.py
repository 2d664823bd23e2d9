"""The joined picture of the cluster: plain frozen dataclasses, shared by every layer.

Backends fill these; the collector joins them into one ClusterSnapshot; the console and
`dapper-tui status` only read them. Nothing here imports a client library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"  # never fetched yet


class SourceName(StrEnum):
    """The built-in sources (snapshot/registry.py); a StrEnum, so each equals the plain
    name operators see and that SourceHealth.source, panes and refresh() use."""

    KUBERNETES = "kubernetes"
    TALOS = "talos"
    PROXMOX = "proxmox"
    GIT = "git"
    MAYASTOR = "mayastor"


@dataclass(frozen=True)
class SourceHealth:
    """How one source (kubernetes, talos, proxmox, git) fared on its last fetch."""

    source: str
    health: Health = Health.UNKNOWN
    reason: str = ""  # one line, e.g. "401 Unauthorized: token rejected"
    last_success: float | None = None  # epoch seconds of the last good fetch
    last_attempt: float | None = None

    @property
    def ok(self) -> bool:
        return self.health is Health.OK


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" / "False" / "Unknown"
    reason: str = ""
    message: str = ""
    last_transition: float | None = None


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    node: str = ""
    phase: str = ""
    ready: bool = False
    gpu_request: int = 0
    owner_kind: str = ""  # DaemonSet, ReplicaSet, StatefulSet, Node (mirror), ""
    owner_name: str = ""
    terminating: bool = False  # deletionTimestamp set: waiting for its kubelet (or a force)
    waiting: str = ""  # a container's waiting reason (ContainerCreating, CrashLoopBackOff)


@dataclass(frozen=True)
class TalosService:
    id: str
    state: str
    healthy: bool | None = None
    message: str = ""


@dataclass(frozen=True)
class EtcdMember:
    id: int
    hostname: str
    is_learner: bool = False
    healthy: bool | None = None
    leader: bool = False
    db_size: int = 0
    errors: tuple[str, ...] = ()

    @property
    def id_hex(self) -> str:
        return f"{self.id:016x}"


@dataclass(frozen=True)
class TalosMachine:
    """What the Talos API says about one machine."""

    node: str  # the IP or name it was reached as
    hostname: str = ""
    version: str = ""
    stage: str = ""  # running, maintenance, booting, unreachable
    maintenance: bool = False
    services: tuple[TalosService, ...] = ()
    memory_total: int = 0
    memory_used: int = 0
    load1: float = 0.0
    cpu_count: int = 0
    disks: tuple[str, ...] = ()
    etcd_members: tuple[EtcdMember, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class VmDevice:
    """One hostpciN entry of a VM: a passed-through GPU, SSD or mapping."""

    slot: str  # hostpci0
    address: str  # 0000:81:00.0, or mapping=<name>
    options: str = ""
    vendor_id: str = ""
    device_id: str = ""
    description: str = ""


@dataclass(frozen=True)
class Vm:
    vmid: int
    name: str
    host: str
    status: str  # running, stopped, paused, unknown
    cpus: int = 0
    cpu_usage: float = 0.0  # 0..1 of its vCPUs
    mem_total: int = 0  # bytes
    mem_used: int = 0
    disk_total: int = 0
    uptime: int = 0  # seconds
    macs: tuple[str, ...] = ()
    devices: tuple[VmDevice, ...] = ()
    template: bool = False
    tags: tuple[str, ...] = ()
    config: tuple[tuple[str, str], ...] = ()  # raw config keys for the detail view
    node_name: str = ""  # joined: the Kubernetes node this VM runs
    # A running VM no Kubernetes node matches (a new one in maintenance mode): its IPv4
    # addresses as the QEMU guest agent reports them, and the Talos machine found there.
    addresses: tuple[str, ...] = ()
    talos: TalosMachine | None = None


@dataclass(frozen=True)
class Gpu:
    """A host PCI GPU joined through VM passthrough to a node and the pods holding it."""

    address: str
    model: str
    host: str
    vendor_id: str = "10de"
    device_id: str = ""
    present: bool = True
    vmid: int | None = None
    vm_name: str = ""
    node_name: str = ""
    capacity: int = 0  # schedulable units (time-slicing replicas) attributed to this GPU
    allocated: int = 0
    pods: tuple[PodRef, ...] = ()


@dataclass(frozen=True)
class StoragePool:
    name: str
    node: str
    disks: tuple[str, ...] = ()
    state: str = ""  # Online, Degraded, Faulted, Unknown
    cr_state: str = ""
    capacity: int = 0
    used: int = 0
    available: int = 0
    api_version: str = ""

    @property
    def percent_used(self) -> float:
        return 100.0 * self.used / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class Node:
    """A Kubernetes node joined with its Talos machine, Proxmox VM, GPUs and pool."""

    name: str
    roles: tuple[str, ...] = ()
    ready: str = "Unknown"  # True / False / Unknown
    internal_ip: str = ""
    kubelet_version: str = ""
    os_image: str = ""
    unschedulable: bool = False
    taints: tuple[str, ...] = ()
    taint_times: tuple[tuple[str, float], ...] = ()  # taint -> timeAdded (NoExecute ones)
    labels: tuple[tuple[str, str], ...] = ()
    conditions: tuple[Condition, ...] = ()
    cpu_capacity: float = 0.0  # cores
    cpu_usage: float | None = None  # 0..1
    mem_capacity: int = 0
    mem_usage: float | None = None  # 0..1
    pods_capacity: int = 0
    pods: tuple[PodRef, ...] = ()
    gpu_capacity: int = 0
    gpu_allocatable: int = 0
    gpu_allocated: int = 0
    created: float | None = None
    talos: TalosMachine | None = None
    vm: Vm | None = None
    gpus: tuple[str, ...] = ()  # PCI addresses
    pool: str = ""

    @property
    def is_control_plane(self) -> bool:
        return "control-plane" in self.roles

    @property
    def status(self) -> str:
        """STATUS as `kubectl get nodes` prints it: NotReady for a Ready condition that is
        False or Unknown, `,SchedulingDisabled` when cordoned."""
        ready = "Ready" if self.ready == "True" else "NotReady"
        return f"{ready},SchedulingDisabled" if self.unschedulable else ready

    @property
    def ready_reason(self) -> str:
        """Why it is NotReady, from its Ready condition (`Ready=Unknown, NodeStatusUnknown:
        Kubelet stopped posting node status.`); "" when Ready."""
        if self.ready == "True":
            return ""
        cond = next((c for c in self.conditions if c.type == "Ready"), None)
        why = f"Ready={self.ready}"
        if cond is not None and cond.reason:
            why += f", {cond.reason}"
        message = " ".join(cond.message.split()) if cond is not None else ""
        return f"{why}: {message}" if message else why

    @property
    def role(self) -> str:
        if self.is_control_plane:
            return "cp"
        if "gpu" in self.roles:
            return "gpu"
        return "wrk"


@dataclass(frozen=True)
class Kustomization:
    namespace: str
    name: str
    ready: str = "Unknown"
    reason: str = ""
    message: str = ""
    suspended: bool = False
    applied_revision: str = ""
    attempted_revision: str = ""
    last_transition: float | None = None
    last_handled_reconcile_at: str = ""
    path: str = ""
    source: str = ""  # kind/namespace/name
    depends_on: tuple[str, ...] = ()  # namespace/name
    conditions: tuple[Condition, ...] = ()
    files: tuple[str, ...] = ()  # repo-relative files of its path (from the tree)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Event:
    """A line for the events pane: Kubernetes events, Flux, PVE tasks, runbook log."""

    time: float
    source: str  # kubernetes, proxmox, flux, runbook
    severity: str  # info, warning, error
    object: str  # kind/namespace/name or vmid
    reason: str
    message: str


@dataclass(frozen=True)
class Fault:
    """Something wrong that a glance at the screen must tell."""

    severity: str  # error, warning
    pane: str  # nodes, vms, gpus, pools, flux, source
    subject: str
    message: str
    since: float | None = None

    def rank(self) -> tuple[int, bool, float]:
        """Most telling first: errors, then a cause before what merely waits on it (Flux's
        DependencyNotReady), then the newest; ties keep the order they were found in. The
        fault line shows the first; the events pane lists them in this order."""
        severity = {"error": 0, "warning": 1}.get(self.severity, 2)
        return (severity, "DependencyNotReady" in self.message, -(self.since or 0.0))


@dataclass(frozen=True)
class ClusterSnapshot:
    """One immutable, joined view; the console renders it, `status` prints it."""

    cluster: str
    mode: str  # LAB or LIVE
    read_only: bool
    taken_at: float
    nodes: tuple[Node, ...] = ()
    vms: tuple[Vm, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    pools: tuple[StoragePool, ...] = ()
    kustomizations: tuple[Kustomization, ...] = ()
    events: tuple[Event, ...] = ()
    sources: tuple[SourceHealth, ...] = ()
    faults: tuple[Fault, ...] = field(default=())
    # One line per API whose server certificate is not verified (see tls_posture).
    insecure_tls: tuple[str, ...] = ()

    def source(self, name: str) -> SourceHealth:
        for s in self.sources:
            if s.source == name:
                return s
        return SourceHealth(source=name)

    @property
    def healthy(self) -> bool:
        return all(s.ok for s in self.sources) and not any(
            f.severity == "error" for f in self.faults
        )


# -- health counts: the header's and `dapper-tui status`'s one summary of a snapshot --------


@dataclass(frozen=True)
class Count:
    good: int
    total: int
    faults: int = 0
    warnings: int = 0  # neither good nor a fault (a cordoned node: Ready,SchedulingDisabled)
    source: str = ""  # whose data it counts
    known: bool = True  # False until that source has answered once: unknown is not zero

    def __str__(self) -> str:
        return f"{self.good}/{self.total}" if self.known else "?"


@dataclass(frozen=True)
class Summary:
    nodes: Count  # Ready and schedulable (warnings: Ready,SchedulingDisabled)
    vms: Count  # running
    gpus: Count  # allocated units / capacity units (faults: devices gone)
    pools: Count  # Online
    kustomizations: Count  # Ready
    errors: int
    warnings: int


def answered(s: ClusterSnapshot, source: str) -> bool:
    """Has `source` answered at least once? A source the snapshot does not list (a
    hand-made snapshot in a test) counts as answered: its rows are all there is."""
    listed = next((h for h in s.sources if h.source == source), None)
    return listed is None or listed.ok or listed.last_success is not None


def summarize(s: ClusterSnapshot) -> Summary:
    def count(pane: str, source: str, good: int, total: int, warnings: int = 0) -> Count:
        faults = sum(1 for f in s.faults if f.pane == pane and f.severity == "error")
        return Count(good, total, faults, warnings, source, answered(s, source))

    kube, pve = SourceName.KUBERNETES.value, SourceName.PROXMOX.value
    vms = [v for v in s.vms if not v.template]  # templates never run
    return Summary(
        nodes=count(
            "nodes",
            kube,
            sum(n.status == "Ready" for n in s.nodes),
            len(s.nodes),
            sum(n.status == "Ready,SchedulingDisabled" for n in s.nodes),
        ),
        vms=count("vms", pve, sum(v.status == "running" for v in vms), len(vms)),
        # the GPUs are Proxmox's PCI devices (their slots come from Kubernetes)
        gpus=count("gpus", pve, sum(g.allocated for g in s.gpus), sum(g.capacity for g in s.gpus)),
        pools=count("pools", kube, sum(p.state == "Online" for p in s.pools), len(s.pools)),
        kustomizations=count(
            "flux", kube, sum(k.ready == "True" for k in s.kustomizations), len(s.kustomizations)
        ),
        errors=sum(1 for f in s.faults if f.severity == "error"),
        warnings=sum(1 for f in s.faults if f.severity == "warning"),
    )
