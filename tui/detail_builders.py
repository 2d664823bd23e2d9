"""Everything the snapshot knows about one row, as a Rich renderable for the detail view.

Sections are aligned `key  value` grids and small tables whose cells end in `…` when the
terminal is narrow: a line never wraps under the next one. Only free text meant to be
read whole (a failing message, an event's message) is a wrapped, indented paragraph.
Plain functions (no widgets) so tests can render them at any width; API strings always
go in as Text, never as markup.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from dapper.backends.model import (
    ClusterSnapshot,
    Condition,
    Event,
    Gpu,
    Health,
    Kustomization,
    Node,
    PodRef,
    StoragePool,
    TalosService,
    Vm,
)
from dapper.tui import format as fmt
from dapper.tui.line_table import LineTable
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text

OK, BAD, WARN, DIM, HEAD = "green", "bold red", "yellow", "dim", "bold"
LABEL_WIDTH = 13
INDENT = 2
MAX_ROWS = 30  # per small table; the rest is counted, not listed

Cell = str | Text


def _cell(value: Cell, style: str = "") -> Text:
    text = value.copy() if isinstance(value, Text) else Text(value, style=style)
    text.no_wrap, text.overflow, text.end = True, "ellipsis", ""
    return text


class _Doc:
    """A tiny builder: a title line, then titled sections of grids, tables and notes."""

    def __init__(self) -> None:
        self.parts: list[RenderableType] = []
        self._grid: LineTable | None = None

    def title(self, value: str, *extra: tuple[str, str]) -> None:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f" {value} ", style="bold reverse")
        for part, style in extra:
            if not part:
                continue
            line.append("  ")
            line.append(part, style=style)
        self.parts.append(line)

    def section(self, name: str, note: str = "") -> None:
        self._grid = None
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(name, style="bold underline")
        if note:  # `Why · HealthCheckFailed`: a separator that no renderer collapses
            head.append(" · ", style=DIM)
            head.append(note, style=DIM)
        self.parts.append(Text(""))
        self.parts.append(head)

    def line(self, label: str, value: Cell, style: str = "") -> None:
        """One `label  value` row; consecutive rows share one aligned grid."""
        if self._grid is None:
            self._grid = LineTable.grid(padding=(0, 1), expand=True)
            self._grid.add_column(width=LABEL_WIDTH, no_wrap=True, style=DIM)
            self._grid.add_column(ratio=1)
            self.parts.append(Padding(self._grid, (0, 0, 0, INDENT)))
        self._grid.add_row(_cell(label), _cell(value, style))

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        fill: int = -1,
        right: Iterable[int] = (),
        widest: int = 36,
    ) -> None:
        """A small table; column `fill` takes the rest of the width and is cut first.

        Other columns are as wide as their content up to `widest`, then end in `…`.
        """
        self._grid = None
        fill = fill % len(headers)
        right = set(right)
        table = LineTable(
            box=None,
            padding=(0, 1),
            pad_edge=False,
            expand=True,
            show_edge=False,
            header_style=DIM,
        )
        for i, header in enumerate(headers):
            table.add_column(
                header,
                no_wrap=i != fill,
                ratio=1 if i == fill else None,
                min_width=min(12, len(header) + 4) if i == fill else None,
                max_width=None if i == fill else widest,
                justify="right" if i in right else "left",
            )
        for row in rows[:MAX_ROWS]:
            table.add_row(*(_cell(c) for c in row))
        self.parts.append(Padding(table, (0, 0, 0, INDENT)))
        if len(rows) > MAX_ROWS:
            self.note(f"… {len(rows) - MAX_ROWS} more", DIM)

    def note(self, value: Cell, style: str = "") -> None:
        self._grid = None
        self.parts.append(Padding(_cell(value, style), (0, 0, 0, INDENT)))

    def paragraph(self, value: str, style: str = "") -> None:
        """Free text read whole: wrapped, indented, never cut."""
        self._grid = None
        self.parts.append(Padding(Text(value, style=style), (0, 0, 0, INDENT)))

    def render(self) -> Group:
        return Group(*self.parts)


def workload(p: PodRef) -> str:
    """The workload a pod belongs to: a ReplicaSet's Deployment name, else its owner or name."""
    if p.owner_kind == "ReplicaSet" and "-" in p.owner_name:
        return p.owner_name.rsplit("-", 1)[0]
    return p.owner_name or p.name


def plain(renderable: RenderableType, width: int = 80) -> str:
    """The renderable as plain text `width` columns wide (tests, logs)."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(renderable)
    return out.getvalue()


def _tf(status: str) -> str:
    return OK if status == "True" else (BAD if status == "False" else WARN)


def _conditions(doc: _Doc, conditions: Iterable[Condition], now: float) -> None:
    conditions = list(conditions)
    doc.section("Conditions")
    if not conditions:
        doc.note("none reported", DIM)
        return
    rows = []
    for c in conditions:
        good = _condition_ok(c)
        rows.append(
            (
                c.type,
                Text(c.status, style=OK if good else BAD),
                fmt.since(c.last_transition, now),
                c.reason or "-",
                Text(fmt.one_line(c.message) or "-", style="" if good else BAD),
            )
        )
    doc.table(("TYPE", "STATUS", "AGE", "REASON", "MESSAGE"), rows)


def _condition_ok(c: Condition) -> bool:
    """Ready/Healthy are good when True; pressures, Stalled and the like when False."""
    if c.type in ("Ready", "Healthy", "Available", "Initialized"):
        return c.status == "True"
    if c.type.endswith(("Pressure", "Unavailable")) or c.type == "Stalled":
        return c.status == "False"
    return True  # Reconciling and others: informative either way


def _taints(n: Node, now: float) -> str:
    """Each taint, with how long a NoExecute one has been on (the pods' tolerations count
    from then: 300 s by default)."""
    added = dict(n.taint_times)
    return ", ".join(f"{t} ({fmt.since(added[t], now)})" if t in added else t for t in n.taints)


def _pod_state(p: PodRef) -> Text:
    """What kubectl's STATUS says: Terminating wins over the phase (a dead node's pods
    keep their phase until a force delete or the pod GC), a waiting container's reason
    (ContainerCreating while its volume is attached elsewhere) over the phase."""
    if p.terminating:
        return Text("Terminating", style=WARN)
    if p.waiting:
        return Text(p.waiting, style=WARN)
    return Text(p.phase or "?", style=OK if p.ready else WARN)


def _pods(doc: _Doc, pods: Iterable[PodRef], title: str = "Pods") -> None:
    pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    doc.section(title, f"{len(pods)}")
    if not pods:
        doc.note("none", DIM)
        return
    rows = [
        (
            _pod_state(p),
            f"{p.namespace}/{p.name}",
            Text(str(p.gpu_request), style="cyan") if p.gpu_request else Text("-", style=DIM),
            Text(_owner(p), style=DIM),
        )
        for p in pods
    ]
    doc.table(("PHASE", "NAMESPACE/NAME", "GPU", "WORKLOAD"), rows, widest=46)


KINDS = {"ReplicaSet": "deploy", "DaemonSet": "ds", "StatefulSet": "sts", "Job": "job"}


def _owner(p: PodRef) -> str:
    """`deploy ollama`, `ds cilium`: the workload a pod belongs to, kind abbreviated."""
    if not p.owner_kind:
        return "-"
    return f"{KINDS.get(p.owner_kind, p.owner_kind.lower())} {workload(p)}"


def _events(doc: _Doc, snapshot: ClusterSnapshot, match: Iterable[str], now: float) -> None:
    needles = [m for m in match if m]
    events: list[Event] = [
        e for e in snapshot.events if any(n in e.object or n == e.object for n in needles)
    ]
    events.sort(key=lambda e: -e.time)
    doc.section("Recent events", f"{len(events)}")
    if not events:
        doc.note("none", DIM)
        return
    rows = [
        (
            fmt.since(e.time, now),
            Text(e.severity, style={"error": BAD, "warning": WARN}.get(e.severity, DIM)),
            e.reason,
            Text(e.object, style=DIM),
            fmt.one_line(e.message),
        )
        for e in events[:20]
    ]
    doc.table(("AGE", "SEV", "REASON", "OBJECT", "MESSAGE"), rows)


def _source_note(doc: _Doc, snapshot: ClusterSnapshot, source: str, now: float) -> bool:
    """Say when what follows is old or missing because `source` is failing; False when it
    never answered (then "no VM" would be a guess, not a fact)."""
    health = snapshot.source(source)
    if health.ok or all(s.source != source for s in snapshot.sources):
        return True
    reason = fmt.one_line(health.reason) or "no answer yet"
    if health.last_success is not None:
        age = fmt.fine_age(now - health.last_success)
        doc.note(f"⚠ as of {age} ago: {source} is unreachable ({reason})", WARN)
        return True
    if health.health is Health.DEGRADED:
        doc.note(f"⚠ {source} is unreachable: {reason}", BAD)
    else:
        doc.note(f"… waiting for {source}", DIM)
    return False


def _faults(doc: _Doc, snapshot: ClusterSnapshot, pane: str, subject: str, shown: str = "") -> None:
    """The collector's faults for this row, minus one whose text the view already shows."""
    faults = [
        f
        for f in snapshot.faults
        if f.pane == pane and f.subject == subject and not (shown and shown in f.message)
    ]
    if faults:
        doc.section("Faults", f"{len(faults)}")
        for f in faults:
            mark = "✗ " if f.severity == "error" else "⚠ "
            doc.paragraph(mark + fmt.one_line(f.message), BAD if f.severity == "error" else WARN)


def node_detail(n: Node, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    status = n.status
    doc.title(
        n.name,
        (n.internal_ip or "-", ""),
        (", ".join(n.roles) or "worker", ""),
        (status, OK if status == "Ready" else (BAD if n.ready != "True" else WARN)),
        (fmt.since(n.created, now), DIM),
    )
    _faults(doc, snapshot, "nodes", n.name)  # first: why NotReady, in the condition's words
    doc.section("Kubernetes")
    doc.line("kubelet", f"{n.kubelet_version or '-'} · {n.os_image or '-'}")
    doc.line("cpu", f"{n.cpu_capacity:g} cores · {fmt.percent(n.cpu_usage)} used")
    doc.line("memory", f"{fmt.size(n.mem_capacity)} · {fmt.percent(n.mem_usage)} used")
    doc.line("pods", f"{len(n.pods)} / {n.pods_capacity or '-'}")
    if n.gpu_capacity or n.gpu_allocated:
        doc.line("gpu", f"{n.gpu_allocated} allocated / {n.gpu_allocatable or n.gpu_capacity}")
    doc.line("taints", _taints(n, now) or "none", WARN if n.taints else "")
    for k, v in n.labels:
        if k.startswith(("node-role", "topology", "nvidia.com/gpu.product", "dapper")):
            doc.line("label", f"{k}={v}", DIM)
    _conditions(doc, n.conditions, now)
    _talos(doc, n)
    doc.section("Proxmox")
    known = _source_note(doc, snapshot, "proxmox", now)
    if n.vm is None and known:
        doc.note("no VM matched this node", DIM)
    elif n.vm is not None:
        _vm_lines(doc, n.vm)
    gpus = [g for g in snapshot.gpus if g.address in n.gpus or g.node_name == n.name]
    doc.section("GPUs", f"{len(gpus)}" if known else "")
    if not known:
        doc.note("unknown until Proxmox answers (their PCI devices come from it)", WARN)
    elif not gpus:
        doc.note("none", DIM)
    else:
        _gpu_table(doc, gpus)
    doc.section("Storage pool")
    pool = next((p for p in snapshot.pools if p.name == n.pool or p.node == n.name), None)
    if pool is None:
        doc.note("none", DIM)
    else:
        doc.line(
            "pool", f"{pool.name} · {_pool_summary(pool)}", "" if pool.state == "Online" else BAD
        )
    _pods(doc, n.pods)
    _events(doc, snapshot, (n.name, str(n.vm.vmid) if n.vm else ""), now)
    return doc.render()


def _talos(doc: _Doc, n: Node) -> None:
    t = n.talos
    doc.section("Talos")
    if t is None:
        doc.note("no Talos data for this node", DIM)
        return
    if t.error:
        doc.line("error", fmt.one_line(t.error), BAD)
    stage = t.stage or "-"
    doc.line(
        "version",
        Text.assemble(
            t.version or "-",
            " · stage ",
            (stage, OK if t.stage == "running" else WARN),
            (" · maintenance", WARN) if t.maintenance else "",
        ),
    )
    if t.memory_total:
        doc.line("memory", f"{fmt.size(t.memory_used)} / {fmt.size(t.memory_total)}")
    if t.cpu_count:
        doc.line("load", f"{t.load1:.2f} on {t.cpu_count} cpus")
    if t.disks:
        doc.line("disks", ", ".join(t.disks))
    if t.services:
        failing = [s for s in t.services if not _service_ok(s)]
        summary = Text(f"{len(t.services) - len(failing)}/{len(t.services)} healthy")
        if failing:
            summary.append("  ✗ " + " ".join(s.id for s in failing), style=BAD)
        doc.line("services", summary)
        doc.note(_service_list(t.services))
        for s in failing:
            if s.message:
                doc.line(f"  {s.id}", fmt.one_line(s.message), BAD)
    if t.etcd_members or n.is_control_plane:
        doc.section("etcd members", f"{len(t.etcd_members)}")
        rows = []
        for m in t.etcd_members:
            health = (
                ("?", WARN)
                if m.healthy is None
                else (("healthy", OK) if m.healthy else ("unhealthy", BAD))
            )
            role = "leader" if m.leader else ("learner" if m.is_learner else "")
            rows.append(
                (
                    m.hostname,
                    Text(health[0], style=health[1]),
                    Text(role, style="cyan" if m.leader else WARN),
                    fmt.size(m.db_size) if m.db_size else "-",
                    Text(m.id_hex, style=DIM),
                    Text("; ".join(fmt.one_line(e) for e in m.errors) or "", style=BAD),
                )
            )
        if rows:
            doc.table(("HOST", "HEALTH", "ROLE", "DB", "ID", "ERRORS"), rows, right=(3,))


def _service_ok(s: TalosService) -> bool:
    return s.healthy if s.healthy is not None else s.state.lower() == "running"


def _service_list(services: Sequence[TalosService]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for s in services:
        good = _service_ok(s)
        text.append(s.id, style="" if good else BAD)
        text.append(" ✓  " if good else " ✗  ", style=OK if good else BAD)
    return text


def _gpu_table(doc: _Doc, gpus: Sequence[Gpu]) -> None:
    rows = [
        (
            Text(g.address, style="" if g.present else BAD),
            g.model,
            f"{g.allocated}/{g.capacity or '-'}",
            ", ".join(sorted({workload(p) for p in g.pods})) or Text("no pods", style=DIM),
        )
        for g in gpus
    ]
    doc.table(("PCI", "MODEL", "SLICES", "HELD BY"), rows)


def _pool_summary(p: StoragePool) -> str:
    return (
        f"{p.state or 'Unknown'} · {fmt.size(p.capacity)} · {p.percent_used:.0f}% used"
        f" · {', '.join(p.disks) or '-'}"
    )


def _vm_lines(doc: _Doc, v: Vm) -> None:
    doc.line(
        "vm",
        Text.assemble(
            f"{v.vmid} {v.name} on {v.host} · ",
            (v.status, OK if v.status == "running" else BAD),
            f" {fmt.duration(v.uptime)}" if v.status == "running" else "",
        ),
    )
    doc.line("cpu", f"{v.cpus} vCPU · {fmt.percent(v.cpu_usage)} used")
    used = f" · {fmt.size(v.mem_used)} used" if v.mem_used else ""
    doc.line("memory", f"{fmt.size(v.mem_total)}{used}")
    doc.line("disk", fmt.size(v.disk_total))
    if v.macs:
        doc.line("macs", ", ".join(v.macs))
    if v.tags:
        doc.line("tags", ", ".join(v.tags))
    for d in v.devices:
        desc = " ".join(x for x in (d.description, d.options) if x)
        doc.line(d.slot, f"{d.address}  {desc}".rstrip())


def vm_detail(v: Vm, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    doc.title(
        f"VM {v.vmid} {v.name}",
        (v.host, ""),
        (v.status, OK if v.status == "running" else BAD),
        (f"node {v.node_name}" if v.node_name else "no node", DIM),
    )
    _faults(doc, snapshot, "vms", str(v.vmid))
    doc.section("Proxmox")
    _vm_lines(doc, v)
    if v.addresses:
        doc.line("agent", ", ".join(v.addresses))
    if v.talos is not None:  # a node-less VM's machine, asked at its agent's address
        t = v.talos
        doc.line(
            "talos",
            Text.assemble(
                f"{t.node} · ",
                (t.stage or "-", OK if t.stage == "running" else WARN),
                f" · {t.version}" if t.version else "",
                f" · disks {', '.join(t.disks)}" if t.disks else "",
            ),
        )
    if v.config:
        doc.section("Config", f"{len(v.config)} keys")
        for k, val in v.config:
            doc.line(k, val)
    _events(doc, snapshot, (str(v.vmid), v.name), now)
    return doc.render()


def gpu_detail(g: Gpu, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    doc.title(
        g.address,
        (g.model, ""),
        ("present" if g.present else "MISSING", OK if g.present else BAD),
    )
    _faults(doc, snapshot, "gpus", g.address)
    doc.section("Passthrough")
    doc.line("host", g.host)
    doc.line("pci id", f"{g.vendor_id}:{g.device_id or '?'}")
    doc.line("vm", f"{g.vmid} {g.vm_name}" if g.vmid is not None else "not passed through")
    doc.line("node", g.node_name or "-")
    doc.line("slices", f"{g.allocated} allocated / {g.capacity or '-'} (time-slicing replicas)")
    _pods(doc, g.pods, "Pods holding it")
    _events(doc, snapshot, (g.node_name,), now)
    return doc.render()


def pool_detail(p: StoragePool, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    doc.title(p.name, (p.node, ""), (p.state or "Unknown", OK if p.state == "Online" else BAD))
    _faults(doc, snapshot, "pools", p.name)
    doc.section("Mayastor pool")
    doc.line("node", p.node)
    doc.line("disks", ", ".join(p.disks) or "-")
    doc.line("state", f"{p.state or '-'} (resource: {p.cr_state or '-'})")
    doc.line("capacity", fmt.size(p.capacity))
    doc.line("used", f"{fmt.size(p.used)} ({p.percent_used:.0f}%)")
    doc.line("available", fmt.size(p.available))
    if p.api_version:
        doc.line("api", p.api_version, DIM)
    _events(doc, snapshot, (p.name,), now)
    return doc.render()


def ks_detail(k: Kustomization, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    ready = {"True": ("Ready", OK), "False": ("NotReady", BAD)}.get(k.ready, ("Unknown", WARN))
    doc.title(
        k.key,
        ready,
        ("suspended" if k.suspended else "active", WARN if k.suspended else DIM),
        (fmt.since(k.last_transition, now), DIM),
    )
    failing = k.ready != "True" and bool(k.reason or k.message)
    _faults(doc, snapshot, "flux", k.key, fmt.one_line(k.message) if failing else "")
    if failing:
        doc.section("Why", k.reason)
        doc.paragraph(fmt.one_line(k.message) or "-", BAD if k.ready == "False" else WARN)
    doc.section("Kustomization")
    doc.line("path", k.path or "-")
    doc.line("source", k.source or "-")
    doc.line("applied", k.applied_revision or "-")
    if k.attempted_revision and k.attempted_revision != k.applied_revision:
        doc.line("attempted", k.attempted_revision, WARN)
    doc.line("transition", fmt.since(k.last_transition, now))
    doc.line("reconciled at", k.last_handled_reconcile_at or "-")
    _conditions(doc, k.conditions, now)
    by_key = {x.key: x for x in snapshot.kustomizations}
    doc.section("dependsOn chain", f"{len(k.depends_on)} direct")
    if not k.depends_on:
        doc.note("none", DIM)
    _chain(doc, k, by_key, depth=0, seen=set())
    dependents = sorted(x.key for x in snapshot.kustomizations if k.key in x.depends_on)
    if dependents:
        doc.line("needed by", ", ".join(dependents), DIM)
    doc.section(f"Files of {k.path or 'its path'}", f"{len(k.files)}")
    if not k.files:
        doc.note("none known", DIM)
    for f in k.files[:MAX_ROWS]:
        doc.note(f)
    if len(k.files) > MAX_ROWS:
        doc.note(f"… {len(k.files) - MAX_ROWS} more", DIM)
    _events(doc, snapshot, (k.key, k.name), now)
    return doc.render()


def _chain(
    doc: _Doc, k: Kustomization, by_key: dict[str, Kustomization], depth: int, seen: set[str]
) -> None:
    for dep in k.depends_on:
        line = Text("  " * depth + "└ ")
        target = by_key.get(dep)
        line.append(dep)
        if target is None:
            line.append("  not found", style=BAD)
        else:
            line.append(
                "  " + {"True": "Ready"}.get(target.ready, f"Ready={target.ready}"),
                style=_tf(target.ready),
            )
            if target.suspended:
                line.append("  suspended", style=WARN)
        if dep in seen:
            line.append("  (cycle)", style=BAD)
        doc.note(line)
        if target is not None and dep not in seen and depth < 8:
            _chain(doc, target, by_key, depth + 1, seen | {dep})


def event_detail(e: Event, snapshot: ClusterSnapshot, now: float) -> Group:
    doc = _Doc()
    doc.title(
        e.reason or "event", (e.severity, {"error": BAD, "warning": WARN}.get(e.severity, ""))
    )
    doc.section("Event")
    doc.line("object", e.object)
    doc.line("source", e.source)
    doc.line("age", fmt.since(e.time, now))
    doc.section("Message")
    doc.paragraph(e.message or "-")
    return doc.render()
