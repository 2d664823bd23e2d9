"""The six built-in panes: their rows, columns (with drop priority), faults, detail
builders, commands and places, each declared once as a PaneSpec and registered.

Pure functions over a ClusterSnapshot, no widgets: the table widget, the header counts,
the detail view and the tests all read the same definitions.
"""

from __future__ import annotations

from dapper.backends.model import (
    ClusterSnapshot,
    Event,
    Gpu,
    Kustomization,
    Node,
    StoragePool,
    Vm,
)
from dapper.tui import format as fmt
from dapper.tui.detail_builders import (
    event_detail,
    gpu_detail,
    ks_detail,
    node_detail,
    pool_detail,
    vm_detail,
    workload,
)
from dapper.tui.format import styled
from dapper.tui.pane_commands import (
    FLUX_COMMANDS,
    NODE_COMMANDS,
    VM_COMMANDS,
    runbook_commands,
)
from dapper.tui.pane_registry import register_builtin
from dapper.tui.pane_spec import Column, GridSlot, HeaderCount, PaneSpec
from rich.text import Text

OK, BAD, WARN, DIM = "green", "bold red", "yellow", "dim"


def _ready_text(status: str, yes: str = "Ready", no: str = "NotReady") -> Text:
    if status == "True":
        return styled(yes, OK)
    if status == "False":
        return styled(no, BAD)
    return styled("Unknown", WARN)


def _node_status(n: Node, _now: float) -> Text:
    """kubectl's STATUS: NotReady in red, Ready,SchedulingDisabled (cordoned) in yellow."""
    status = n.status
    return styled(status, OK if status == "Ready" else (BAD if n.ready != "True" else WARN))


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
    parts = [  # a cordon shows in STATUS (Ready,SchedulingDisabled)
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
    Column("ready", "STATUS", 0, _node_status, lambda n: n.status, 24),
    Column("talos", "TALOS", 3, _node_talos, lambda n: n.talos.version if n.talos else "", 16),
    Column("vm", "VM", 4, _node_vm, lambda n: n.vm.vmid if n.vm else -1, 8),
    Column(
        "cpu",
        "CPU",
        1,
        lambda n, _: _pct_cell(n.cpu_usage),
        lambda n: n.cpu_usage or 0,
        4,
        bar=lambda n: n.cpu_usage,
    ),
    Column(
        "mem",
        "MEM",
        1,
        lambda n, _: _pct_cell(n.mem_usage),
        lambda n: n.mem_usage or 0,
        4,
        bar=lambda n: n.mem_usage,
    ),
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
    """Usage of its vCPUs, as the nodes pane shows it (the count is in the detail)."""
    return _pct_cell(v.cpu_usage if v.status == "running" else None)


def _vm_mem(v: Vm, _now: float) -> Text:
    running = v.status == "running" and v.mem_total
    return _pct_cell(v.mem_used / v.mem_total if running else None)


def _vm_node(v: Vm, _now: float) -> Text:
    """The node it runs, else what its machine is (a new VM in maintenance mode)."""
    if v.node_name:
        return styled(v.node_name)
    if v.talos is not None and v.talos.stage:
        return styled(v.talos.stage, WARN)
    return styled(fmt.DASH, DIM)


VM_COLUMNS = (
    Column("vmid", "VMID", 0, lambda v, _: styled(str(v.vmid)), lambda v: v.vmid, 5),
    Column("name", "NAME", 0, lambda v, _: styled(v.name), lambda v: v.name, 26, min_width=14),
    Column("host", "HOST", 5, lambda v, _: styled(v.host), lambda v: v.host, 10),
    Column(
        "status",
        "STATUS",
        0,
        lambda v, _: styled(v.status, _status_style(v.status, {"running"})),
        lambda v: v.status,
        7,
    ),
    Column("cpu", "CPU", 1, _vm_cpu, lambda v: v.cpu_usage, 4),
    Column("mem", "MEM", 1, _vm_mem, lambda v: v.mem_used, 4),
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
        _vm_node,
        lambda v: v.node_name or (v.talos.stage if v.talos else ""),
        22,
    ),
)

# --- GPUs ------------------------------------------------------------------------------


def gpu_fault(g: Gpu) -> bool:
    return not g.present or (g.capacity > 0 and g.allocated > g.capacity)


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
    Column(
        "alloc",
        "SLOTS",
        0,
        _gpu_alloc,
        lambda g: g.allocated,
        6,
        bar=lambda g: g.allocated / g.capacity if g.capacity else None,
    ),
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
    Column(
        "pct",
        "USE%",
        1,
        _pool_pct,
        lambda p: p.percent_used,
        4,
        bar=lambda p: p.percent_used / 100 if p.capacity else None,
    ),
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
    Column(
        "name", "NAMESPACE/NAME", 0, lambda k, _: styled(k.key), lambda k: k.key, 64, min_width=24
    ),
    Column("ready", "READY", 0, _ks_ready, lambda k: k.ready, 8),
    Column(
        "suspended",
        "SUSP",
        1,
        lambda k, _: styled("yes", WARN) if k.suspended else styled(""),
        lambda k: k.suspended,
        4,
    ),
    Column("revision", "REV", 3, _ks_rev, lambda k: k.applied_revision, 15),
    Column(
        "age",
        "AGE",
        4,
        lambda k, now: styled(fmt.since(k.last_transition, now)),
        lambda k: -(k.last_transition or 0),
        4,
        timed=True,
    ),
    Column(
        "message",
        "MESSAGE",
        2,  # a failing row's why beats its revision
        _ks_message,
        lambda k: (k.ready == "True", k.message),
        200,
        fill=True,
        min_width=16,
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
    Column(
        "age",
        "AGE",
        0,
        lambda e, now: styled(fmt.since(e.time, now)),
        lambda e: -e.time,
        4,
        timed=True,
    ),
    Column("source", "SOURCE", 3, lambda e, _: styled(e.source), lambda e: e.source, 10),
    Column(
        "severity",
        "SEV",
        1,
        lambda e, _: styled(e.severity, {"error": BAD, "warning": WARN}.get(e.severity, DIM)),
        lambda e: e.severity,
        7,
    ),
    Column(
        "object", "OBJECT", 0, lambda e, _: styled(e.object), lambda e: e.object, 56, min_width=24
    ),
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
    """The events pane: current faults (as `fault` rows) in the snapshot's order, the worst
    and a cause before what waits on it (as the fault line), then events, newest first."""
    faults = tuple(
        Event(f.since or s.taken_at, f.pane, f.severity, f.subject, "Fault", f.message)
        for f in s.faults
    )
    return faults + tuple(sorted(s.events, key=lambda e: -e.time))


NODES = register_builtin(
    PaneSpec(
        id="nodes",
        title="Nodes",
        key="1",
        order=1,
        aliases=("nodes", "node", "no"),
        sources=("kubernetes", "talos", "proxmox"),
        rows=lambda s: s.nodes,
        row_key=lambda n: n.name,
        fault=node_fault,
        columns=NODE_COLUMNS,
        noun="node",
        detail=node_detail,
        grid=GridSlot(row=0, column=0, columns=2),
        help="Kubernetes nodes with their Talos machine and VM",
        commands=NODE_COMMANDS + runbook_commands("nodes"),
        header=HeaderCount("nodes", lambda sm, _s: sm.nodes),
    )
)

VMS = register_builtin(
    PaneSpec(
        id="vms",
        title="VMs",
        key="2",
        order=2,
        aliases=("vms", "vm"),
        sources=("proxmox",),
        rows=lambda s: tuple(v for v in s.vms if not v.template),
        row_key=lambda v: str(v.vmid),
        fault=vm_fault,
        columns=VM_COLUMNS,
        noun="VM",
        detail=vm_detail,
        grid=GridSlot(row=1, column=0),
        help="Proxmox VMs (templates left out)",
        commands=VM_COMMANDS,
        header=HeaderCount("vms", lambda sm, _s: sm.vms),
    )
)

GPUS = register_builtin(
    PaneSpec(
        id="gpus",
        title="GPUs",
        key="3",
        order=3,
        aliases=("gpus", "gpu"),
        sources=("proxmox", "kubernetes"),
        rows=lambda s: s.gpus,
        row_key=lambda g: g.address,
        fault=gpu_fault,
        columns=GPU_COLUMNS,
        noun="GPU",
        detail=gpu_detail,
        grid=GridSlot(row=1, column=1),
        help="passed-through GPUs, their VM, node and pods",
        # time-slicing slots in use / offered, not devices (the GPUs pane lists the devices)
        header=HeaderCount("gpu slots", lambda sm, _s: sm.gpus, allocation=True),
    )
)

POOLS = register_builtin(
    PaneSpec(
        id="pools",
        title="Pools",
        key="4",
        order=4,
        aliases=("pools", "pool", "dsp", "storage"),
        sources=("kubernetes", "mayastor"),
        rows=lambda s: s.pools,
        row_key=lambda p: p.name,
        fault=pool_fault,
        columns=POOL_COLUMNS,
        noun="pool",
        detail=pool_detail,
        grid=GridSlot(row=2, column=2),
        help="storage pools and their disks",
        header=HeaderCount("pools", lambda sm, _s: sm.pools),
    )
)

FLUX = register_builtin(
    PaneSpec(
        id="flux",
        title="Flux",
        key="5",
        order=5,
        aliases=("ks", "kustomizations", "flux"),
        sources=("kubernetes", "git"),
        rows=lambda s: s.kustomizations,
        row_key=lambda k: k.key,
        fault=ks_fault,
        columns=KS_COLUMNS,
        noun="Kustomization",
        detail=ks_detail,
        grid=GridSlot(row=0, column=2, rows=2),
        help="Flux Kustomizations, their revision and readiness",
        commands=FLUX_COMMANDS,
        header=HeaderCount("ks", lambda sm, _s: sm.kustomizations),
    )
)

EVENTS = register_builtin(
    PaneSpec(
        id="events",
        title="Events",
        key="6",
        order=6,
        aliases=("events", "ev", "faults"),
        sources=("kubernetes", "proxmox"),
        rows=lambda s: events_and_faults(s),
        row_key=event_key,
        fault=event_fault,
        columns=EVENT_COLUMNS,
        noun="event",
        detail=event_detail,
        grid=GridSlot(row=2, column=0, columns=2),
        help="current faults, then events, newest first",
        palette_rows=False,
    )
)
