"""What each pane shows: its rows, columns (with drop priority), faults and sources.

Pure functions over a ClusterSnapshot, no widgets: the table widget, the header counts,
the detail view and the tests all read the same definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dapper.backends.model import (
    ClusterSnapshot,
    Event,
    Gpu,
    Kustomization,
    Node,
    PodRef,
    StoragePool,
    Vm,
)
from dapper.tui import format as fmt
from dapper.tui.format import styled
from rich.text import Text

OK, BAD, WARN, DIM = "green", "bold red", "yellow", "dim"


@dataclass(frozen=True)
class Column:
    """One table column. Lower `priority` survives longer when the pane is narrow."""

    key: str
    label: str
    priority: int
    cell: Callable[[Any, float], Text]
    sort: Callable[[Any], Any] | None = None
    max_width: int = 24
    fill: bool = False  # takes the width left over (the message-like column)


@dataclass(frozen=True)
class PaneSpec:
    id: str
    title: str
    key: str  # the number key that shows it
    aliases: tuple[str, ...]  # `:` jump names
    sources: tuple[str, ...]  # whose failure makes this pane stale (first is primary)
    rows: Callable[[ClusterSnapshot], Sequence[Any]]
    row_key: Callable[[Any], str]
    fault: Callable[[Any], bool]
    columns: tuple[Column, ...]
    noun: str  # "node", "VM", ...


def _ready_text(status: str, yes: str = "Ready", no: str = "NotReady") -> Text:
    if status == "True":
        return styled(yes, OK)
    if status == "False":
        return styled(no, BAD)
    return styled("Unknown", WARN)


def _status_style(value: str, good: set[str]) -> str:
    return OK if value in good else BAD


# --- nodes -----------------------------------------------------------------------------


def node_fault(n: Node) -> bool:
    if n.ready != "True":
        return True
    if n.talos is not None and (n.talos.error or n.talos.stage not in ("running", "")):
        return True
    return n.vm is not None and n.vm.status != "running"


def _node_talos(n: Node, _now: float) -> Text:
    t = n.talos
    if t is None:
        return styled(fmt.DASH, DIM)
    if t.error:
        return styled(f"{t.version or '?'} {t.stage or 'error'}".strip(), BAD)
    if t.stage == "running":
        return styled(t.version or "?")
    return styled(f"{t.version or '?'} {t.stage or '?'}", WARN)


def _node_vm(n: Node, _now: float) -> Text:
    if n.vm is None:
        return styled(fmt.DASH, DIM)
    short = {"running": "run", "stopped": "stop", "paused": "pause"}.get(n.vm.status, n.vm.status)
    return styled(f"{n.vm.vmid} {short}", "" if n.vm.status == "running" else BAD)


def _node_flags(n: Node, _now: float) -> Text:
    parts = ["cordoned"] if n.unschedulable else []
    parts += [
        t.removeprefix("node-role.kubernetes.io/") for t in n.taints if "unschedulable" not in t
    ]
    return styled(", ".join(parts) or fmt.DASH, WARN if parts else DIM)


def _node_gpu(n: Node, _now: float) -> Text:
    if not n.gpu_capacity:
        return styled(fmt.DASH, DIM)
    return styled(f"{n.gpu_allocated}/{n.gpu_capacity}")


def _pct_cell(v: float | None) -> Text:
    style = BAD if v is not None and v >= 0.9 else (WARN if v is not None and v >= 0.75 else "")
    return styled(fmt.percent(v), style)


NODE_COLUMNS = (
    Column("name", "NAME", 0, lambda n, _: styled(n.name), lambda n: n.name, 28),
    Column("role", "ROLE", 2, lambda n, _: styled(n.role), lambda n: n.role, 4),
    Column("ready", "READY", 0, lambda n, _: _ready_text(n.ready), lambda n: n.ready, 8),
    Column("talos", "TALOS", 3, _node_talos, lambda n: n.talos.version if n.talos else "", 16),
    Column("vm", "VM", 4, _node_vm, lambda n: n.vm.vmid if n.vm else -1, 8),
    Column("cpu", "CPU", 1, lambda n, _: _pct_cell(n.cpu_usage), lambda n: n.cpu_usage or 0, 4),
    Column("mem", "MEM", 1, lambda n, _: _pct_cell(n.mem_usage), lambda n: n.mem_usage or 0, 4),
    Column("pods", "PODS", 5, lambda n, _: styled(str(len(n.pods))), lambda n: len(n.pods), 5),
    Column("gpu", "GPU", 5, _node_gpu, lambda n: n.gpu_allocated, 6),
    Column(
        "pool",
        "POOL",
        7,
        lambda n, _: styled(n.pool or fmt.DASH, "" if n.pool else DIM),
        lambda n: n.pool,
        16,
    ),
    Column(
        "kubelet",
        "KUBELET",
        8,
        lambda n, _: styled(n.kubelet_version or fmt.DASH),
        lambda n: n.kubelet_version,
        10,
    ),
    Column("flags", "TAINTS", 6, _node_flags, lambda n: (n.unschedulable, n.taints), 30),
)

# --- VMs -------------------------------------------------------------------------------


def vm_fault(v: Vm) -> bool:
    return not v.template and v.status != "running"


def _vm_devices(v: Vm, _now: float) -> Text:
    addrs = [d.address.removeprefix("0000:") for d in v.devices]
    return styled(", ".join(addrs) or fmt.DASH, "" if addrs else DIM)


def _vm_cpu(v: Vm, _now: float) -> Text:
    use = fmt.percent(v.cpu_usage) if v.status == "running" else fmt.DASH
    return styled(f"{v.cpus}c {use}" if v.cpus else use)


def _vm_mem(v: Vm, _now: float) -> Text:
    if not v.mem_total:
        return styled(fmt.DASH, DIM)
    if v.status != "running":
        return styled(fmt.size(v.mem_total))
    return styled(f"{fmt.size(v.mem_total)} {fmt.percent(v.mem_used / v.mem_total)}")


VM_COLUMNS = (
    Column("vmid", "VMID", 0, lambda v, _: styled(str(v.vmid)), lambda v: v.vmid, 6),
    Column("name", "NAME", 0, lambda v, _: styled(v.name), lambda v: v.name, 26),
    Column("host", "HOST", 5, lambda v, _: styled(v.host), lambda v: v.host, 10),
    Column(
        "status",
        "STATUS",
        0,
        lambda v, _: styled(v.status, _status_style(v.status, {"running"})),
        lambda v: v.status,
        8,
    ),
    Column("cpu", "CPU", 1, _vm_cpu, lambda v: v.cpu_usage, 8),
    Column("mem", "MEM", 1, _vm_mem, lambda v: v.mem_used, 10),
    Column(
        "disk", "DISK", 6, lambda v, _: styled(fmt.size(v.disk_total)), lambda v: v.disk_total, 6
    ),
    Column(
        "uptime", "UPTIME", 3, lambda v, _: styled(fmt.duration(v.uptime)), lambda v: v.uptime, 6
    ),
    Column("devices", "DEVICES", 4, _vm_devices, lambda v: len(v.devices), 24),
    Column(
        "node",
        "NODE",
        2,
        lambda v, _: styled(v.node_name or fmt.DASH, "" if v.node_name else DIM),
        lambda v: v.node_name,
        22,
    ),
)

# --- GPUs ------------------------------------------------------------------------------


def gpu_fault(g: Gpu) -> bool:
    return not g.present or (g.capacity > 0 and g.allocated > g.capacity)


def workload(p: PodRef) -> str:
    """The workload a pod belongs to: a ReplicaSet's Deployment name, else its owner or name."""
    if p.owner_kind == "ReplicaSet" and "-" in p.owner_name:
        return p.owner_name.rsplit("-", 1)[0]
    return p.owner_name or p.name


def _gpu_pods(g: Gpu, _now: float) -> Text:
    counts: dict[str, int] = {}
    for p in g.pods:
        label = workload(p)
        counts[label] = counts.get(label, 0) + max(1, p.gpu_request)
    parts = [f"{k}({c})" if c > 1 else k for k, c in sorted(counts.items())]
    return styled(", ".join(parts) or fmt.DASH, "" if parts else DIM)


def _gpu_alloc(g: Gpu, _now: float) -> Text:
    if not g.capacity:
        return styled(f"{g.allocated}/-", DIM)
    style = BAD if g.allocated > g.capacity else ("" if g.allocated < g.capacity else WARN)
    return styled(f"{g.allocated}/{g.capacity}", style)


def _gpu_vm(g: Gpu, _now: float) -> Text:
    if g.vmid is None:
        return styled(fmt.DASH, DIM)
    return styled(str(g.vmid))


GPU_COLUMNS = (
    Column(
        "address",
        "PCI",
        0,
        lambda g, _: styled(g.address, "" if g.present else BAD),
        lambda g: g.address,
        12,
    ),
    Column("model", "MODEL", 3, lambda g, _: styled(g.model), lambda g: g.model, 20),
    Column("host", "HOST", 5, lambda g, _: styled(g.host), lambda g: g.host, 10),
    Column("vm", "VM", 4, _gpu_vm, lambda g: g.vmid or -1, 5),
    Column(
        "node",
        "NODE",
        1,
        lambda g, _: styled(g.node_name or fmt.DASH, "" if g.node_name else DIM),
        lambda g: g.node_name,
        20,
    ),
    Column("alloc", "ALLOC", 0, _gpu_alloc, lambda g: g.allocated, 6),
    Column("pods", "PODS", 2, _gpu_pods, lambda g: len(g.pods), 40, fill=True),
)

# --- pools -----------------------------------------------------------------------------


def pool_fault(p: StoragePool) -> bool:
    return p.state != "Online"


def _pool_pct(p: StoragePool, _now: float) -> Text:
    if not p.capacity:
        return styled(fmt.DASH, DIM)
    pct = p.percent_used
    return styled(f"{pct:.0f}%", BAD if pct >= 90 else (WARN if pct >= 75 else ""))


POOL_COLUMNS = (
    Column("name", "NAME", 0, lambda p, _: styled(p.name), lambda p: p.name, 28),
    Column("node", "NODE", 2, lambda p, _: styled(p.node), lambda p: p.node, 22),
    Column(
        "state",
        "STATE",
        0,
        lambda p, _: styled(p.state or "Unknown", _status_style(p.state, {"Online"})),
        lambda p: p.state,
        9,
    ),
    Column(
        "capacity", "CAP", 3, lambda p, _: styled(fmt.size(p.capacity)), lambda p: p.capacity, 6
    ),
    Column("used", "USED", 4, lambda p, _: styled(fmt.size(p.used)), lambda p: p.used, 6),
    Column(
        "avail", "AVAIL", 5, lambda p, _: styled(fmt.size(p.available)), lambda p: p.available, 6
    ),
    Column("pct", "USE%", 1, _pool_pct, lambda p: p.percent_used, 4),
    Column(
        "disks",
        "DISKS",
        6,
        lambda p, _: styled(", ".join(p.disks) or fmt.DASH),
        lambda p: p.disks,
        30,
        fill=True,
    ),
)

# --- Flux ------------------------------------------------------------------------------


def ks_fault(k: Kustomization) -> bool:
    return k.ready != "True"


def _ks_ready(k: Kustomization, _now: float) -> Text:
    if k.ready == "Unknown" and k.reason in ("Progressing", "DependencyNotReady"):
        return styled("Progress" if k.reason == "Progressing" else "Waiting", WARN)
    return _ready_text(k.ready, "True", "False")


def _ks_rev(k: Kustomization, _now: float) -> Text:
    """The applied commit's short sha; `→ attempted` when a newer one failed to apply."""
    applied = fmt.short_sha(k.applied_revision)
    if k.attempted_revision and k.attempted_revision != k.applied_revision:
        return styled(f"{applied}→{fmt.short_sha(k.attempted_revision)}", WARN)
    return styled(applied, "" if k.applied_revision else DIM)


def _ks_message(k: Kustomization, _now: float) -> Text:
    """Only a Kustomization that is not Ready has something to say ("Applied revision: …"
    on every healthy row is noise that would eat the narrow screen)."""
    if k.ready == "True":
        return styled("")
    text = fmt.one_line(k.message)
    if k.reason and not text.startswith(k.reason):
        text = f"{k.reason}: {text}" if text else k.reason
    return styled(text or fmt.DASH, BAD if k.ready == "False" else WARN)


KS_COLUMNS = (
    Column("name", "NAMESPACE/NAME", 0, lambda k, _: styled(k.key), lambda k: k.key, 28),
    Column("ready", "READY", 0, _ks_ready, lambda k: k.ready, 8),
    Column(
        "suspended",
        "SUSP",
        1,
        lambda k, _: styled("yes", WARN) if k.suspended else styled(""),
        lambda k: k.suspended,
        4,
    ),
    Column("revision", "REV", 2, _ks_rev, lambda k: k.applied_revision, 15),
    Column(
        "age",
        "AGE",
        3,
        lambda k, now: styled(fmt.since(k.last_transition, now)),
        lambda k: -(k.last_transition or 0),
        4,
    ),
    Column(
        "message",
        "MESSAGE",
        4,
        _ks_message,
        lambda k: (k.ready == "True", k.message),
        200,
        fill=True,
    ),
    Column(
        "depends",
        "DEPENDS ON",
        5,
        lambda k, _: styled(", ".join(d.split("/")[-1] for d in k.depends_on) or fmt.DASH),
        lambda k: len(k.depends_on),
        24,
    ),
)

# --- events ----------------------------------------------------------------------------


def event_fault(e: Event) -> bool:
    return e.severity in ("warning", "error")


def event_key(e: Event) -> str:
    return f"{e.time:.3f}|{e.source}|{e.object}|{e.reason}|{hash(e.message) & 0xFFFFFF:06x}"


EVENT_COLUMNS = (
    Column("age", "AGE", 0, lambda e, now: styled(fmt.since(e.time, now)), lambda e: -e.time, 4),
    Column("source", "SOURCE", 3, lambda e, _: styled(e.source), lambda e: e.source, 10),
    Column(
        "severity",
        "SEV",
        1,
        lambda e, _: styled(e.severity, {"error": BAD, "warning": WARN}.get(e.severity, DIM)),
        lambda e: e.severity,
        7,
    ),
    Column("object", "OBJECT", 0, lambda e, _: styled(e.object), lambda e: e.object, 34),
    Column("reason", "REASON", 2, lambda e, _: styled(e.reason), lambda e: e.reason, 22),
    Column(
        "message",
        "MESSAGE",
        1,
        lambda e, _: styled(fmt.one_line(e.message)),
        lambda e: e.message,
        200,
        fill=True,
    ),
)


def events_and_faults(s: ClusterSnapshot) -> tuple[Event, ...]:
    """The events pane: current faults (as `fault` rows) then events, newest first."""
    faults = [
        Event(f.since or s.taken_at, f.pane, f.severity, f.subject, "Fault", f.message)
        for f in s.faults
    ]
    return tuple(sorted(faults, key=lambda e: -e.time)) + tuple(
        sorted(s.events, key=lambda e: -e.time)
    )


PANES: tuple[PaneSpec, ...] = (
    PaneSpec(
        "nodes",
        "Nodes",
        "1",
        ("nodes", "node", "no"),
        ("kubernetes", "talos", "proxmox"),
        lambda s: s.nodes,
        lambda n: n.name,
        node_fault,
        NODE_COLUMNS,
        "node",
    ),
    PaneSpec(
        "vms",
        "VMs",
        "2",
        ("vms", "vm"),
        ("proxmox",),
        lambda s: tuple(v for v in s.vms if not v.template),
        lambda v: str(v.vmid),
        vm_fault,
        VM_COLUMNS,
        "VM",
    ),
    PaneSpec(
        "gpus",
        "GPUs",
        "3",
        ("gpus", "gpu"),
        ("proxmox", "kubernetes"),
        lambda s: s.gpus,
        lambda g: g.address,
        gpu_fault,
        GPU_COLUMNS,
        "GPU",
    ),
    PaneSpec(
        "pools",
        "Pools",
        "4",
        ("pools", "pool", "dsp", "storage"),
        ("kubernetes",),
        lambda s: s.pools,
        lambda p: p.name,
        pool_fault,
        POOL_COLUMNS,
        "pool",
    ),
    PaneSpec(
        "flux",
        "Flux",
        "5",
        ("ks", "kustomizations", "flux"),
        ("kubernetes", "git"),
        lambda s: s.kustomizations,
        lambda k: k.key,
        ks_fault,
        KS_COLUMNS,
        "Kustomization",
    ),
    PaneSpec(
        "events",
        "Events",
        "6",
        ("events", "ev", "faults"),
        ("kubernetes", "proxmox"),
        lambda s: events_and_faults(s),
        event_key,
        event_fault,
        EVENT_COLUMNS,
        "event",
    ),
)

PANE_BY_ID = {p.id: p for p in PANES}


def find_pane(name: str) -> PaneSpec | None:
    """The pane a `:` jump name, number or id refers to."""
    name = name.strip().lower().lstrip(":")
    for p in PANES:
        if name in (p.id, p.key, *p.aliases):
            return p
    return None


def fault_subjects(snapshot: ClusterSnapshot, pane: str) -> set[str]:
    """Subjects the collector itself flagged for a pane."""
    return {f.subject for f in snapshot.faults if f.pane == pane}


def is_fault(spec: PaneSpec, row: Any, flagged: set[str]) -> bool:
    return spec.fault(row) or spec.row_key(row) in flagged


def fit_columns(
    columns: Sequence[Column], widths: dict[str, int], available: int, padding: int = 2
) -> list[Column]:
    """Keep the most important columns that fit in `available` cells, in display order.

    Columns are dropped lowest-priority first, never wrapped; the first column always stays.
    """
    keep = list(columns)
    while len(keep) > 1 and sum(widths[c.key] + padding for c in keep) > available:
        victim = max(keep[1:], key=lambda c: (c.priority, columns.index(c)))
        keep.remove(victim)
    return keep
