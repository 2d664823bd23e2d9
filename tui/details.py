"""Everything the snapshot knows about one row, as rich Text for the detail view.

Plain functions (no widgets) so tests can read them and the view stays a thin shell.
All API strings go in as Text, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dapper.backends.model import (
    ClusterSnapshot,
    Condition,
    Event,
    Gpu,
    Kustomization,
    Node,
    PodRef,
    StoragePool,
    Vm,
)
from dapper.tui import format as fmt
from dapper.tui.panes import workload
from rich.text import Text

OK, BAD, WARN, DIM, HEAD = "green", "bold red", "yellow", "dim", "bold"


class _Doc:
    """A tiny builder: titled sections of `label  value` lines."""

    def __init__(self) -> None:
        self.text = Text(end="")

    def title(self, value: str, *extra: tuple[str, str]) -> None:
        self.text.append(value, style="bold reverse")
        for part, style in extra:
            self.text.append("  ")
            self.text.append(part, style=style)
        self.text.append("\n")

    def section(self, name: str) -> None:
        self.text.append(f"\n{name}\n", style="bold underline")

    def line(self, label: str, value: str | Text, style: str = "") -> None:
        self.text.append(f"  {label:<14}", style=DIM)
        if isinstance(value, Text):
            self.text.append_text(value)
        else:
            self.text.append(value, style=style)
        self.text.append("\n")

    def raw(self, value: str, style: str = "") -> None:
        self.text.append(f"  {value}\n", style=style)


def _tf(status: str) -> str:
    return OK if status == "True" else (BAD if status == "False" else WARN)


def _conditions(doc: _Doc, conditions: Iterable[Condition], now: float) -> None:
    conditions = list(conditions)
    doc.section("Conditions")
    if not conditions:
        doc.raw("none reported", DIM)
    for c in conditions:
        line = Text()
        line.append(f"{c.status:<8}", style=_tf(c.status) if c.type == "Ready" else "")
        line.append(f"{fmt.since(c.last_transition, now):>5}  ", style=DIM)
        line.append(c.reason or "-")
        if c.message:
            line.append("  " + fmt.one_line(c.message))
        doc.line(c.type, line)


def _pods(doc: _Doc, pods: Iterable[PodRef], title: str = "Pods") -> None:
    pods = sorted(pods, key=lambda p: (p.namespace, p.name))
    doc.section(f"{title} ({len(pods)})")
    if not pods:
        doc.raw("none", DIM)
    for p in pods:
        line = Text()
        line.append(f"{p.phase or '?':<10}", style=OK if p.ready else WARN)
        line.append(f"{p.namespace}/{p.name}")
        if p.gpu_request:
            line.append(f"  gpu×{p.gpu_request}", style="cyan")
        if p.owner_kind:
            line.append(f"  {p.owner_kind}/{p.owner_name}", style=DIM)
        doc.text.append("  ")
        doc.text.append_text(line)
        doc.text.append("\n")


def _events(doc: _Doc, snapshot: ClusterSnapshot, match: Iterable[str], now: float) -> None:
    needles = [m for m in match if m]
    events: list[Event] = [
        e for e in snapshot.events if any(n in e.object or n == e.object for n in needles)
    ]
    events.sort(key=lambda e: -e.time)
    doc.section(f"Recent events ({len(events)})")
    if not events:
        doc.raw("none", DIM)
    for e in events[:20]:
        line = Text()
        line.append(f"{fmt.since(e.time, now):>5} ", style=DIM)
        line.append(f"{e.severity:<8}", style={"error": BAD, "warning": WARN}.get(e.severity, DIM))
        line.append(f"{e.reason}  ", style=HEAD)
        line.append(f"{e.object}  ", style=DIM)
        line.append(fmt.one_line(e.message))
        doc.text.append("  ")
        doc.text.append_text(line)
        doc.text.append("\n")


def _faults(doc: _Doc, snapshot: ClusterSnapshot, pane: str, subject: str) -> None:
    faults = [f for f in snapshot.faults if f.pane == pane and f.subject == subject]
    if faults:
        doc.section("Faults")
        for f in faults:
            doc.raw(f"✗ {fmt.one_line(f.message)}", BAD if f.severity == "error" else WARN)


def node_detail(n: Node, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    ready = {"True": ("Ready", OK), "False": ("NotReady", BAD)}.get(n.ready, ("Unknown", WARN))
    doc.title(
        n.name,
        (n.internal_ip or "-", ""),
        (", ".join(n.roles) or "worker", ""),
        ready,
        ("cordoned" if n.unschedulable else "schedulable", WARN if n.unschedulable else DIM),
    )
    doc.section("Kubernetes")
    doc.line("kubelet", n.kubelet_version or "-")
    doc.line("os image", n.os_image or "-")
    doc.line("age", fmt.since(n.created, now))
    doc.line("cpu", f"{n.cpu_capacity:g} cores · {fmt.percent(n.cpu_usage)} used")
    doc.line("memory", f"{fmt.size(n.mem_capacity)} · {fmt.percent(n.mem_usage)} used")
    doc.line("pods", f"{len(n.pods)}/{n.pods_capacity or '-'}")
    doc.line("gpu", f"{n.gpu_allocated} allocated / {n.gpu_allocatable or n.gpu_capacity}")
    doc.line("taints", ", ".join(n.taints) or "none")
    for k, v in n.labels:
        if k.startswith(("node-role", "topology", "nvidia.com/gpu.product", "dapper")):
            doc.line("label", f"{k}={v}", DIM)
    _conditions(doc, n.conditions, now)
    t = n.talos
    doc.section("Talos")
    if t is None:
        doc.raw("no Talos data for this node", DIM)
    else:
        if t.error:
            doc.line("error", fmt.one_line(t.error), BAD)
        doc.line("version", t.version or "-")
        doc.line("stage", t.stage or "-", OK if t.stage == "running" else WARN)
        if t.maintenance:
            doc.line("maintenance", "yes", WARN)
        if t.memory_total:
            doc.line("memory", f"{fmt.size(t.memory_used)} / {fmt.size(t.memory_total)}")
        if t.cpu_count:
            doc.line("load", f"{t.load1:.2f} on {t.cpu_count} cpus")
        if t.disks:
            doc.line("disks", ", ".join(t.disks))
        svc = Text()
        for s in t.services:
            good = s.healthy if s.healthy is not None else s.state.lower() == "running"
            svc.append(f"{s.id} ", style="")
            svc.append("✓" if good else "✗", style=OK if good else BAD)
            svc.append("  ")
        doc.line("services", svc if t.services else Text("-"))
        bad = [s for s in t.services if s.message and s.healthy is False]
        for s in bad:
            doc.line(f"  {s.id}", fmt.one_line(s.message), BAD)
        if t.etcd_members or n.is_control_plane:
            doc.section(f"etcd members ({len(t.etcd_members)})")
            for m in t.etcd_members:
                line = Text()
                line.append(f"{m.id_hex}  {m.hostname:<22}")
                health = {True: ("healthy", OK), False: ("unhealthy", BAD)}.get(
                    m.healthy, ("?", WARN)
                )
                line.append(health[0], style=health[1])
                if m.leader:
                    line.append("  leader", style="cyan")
                if m.is_learner:
                    line.append("  learner", style=WARN)
                if m.db_size:
                    line.append(f"  db {fmt.size(m.db_size)}", style=DIM)
                for err in m.errors:
                    line.append(f"  {fmt.one_line(err)}", style=BAD)
                doc.text.append("  ")
                doc.text.append_text(line)
                doc.text.append("\n")
    doc.section("Proxmox")
    if n.vm is None:
        doc.raw("no VM matched this node", DIM)
    else:
        _vm_lines(doc, n.vm)
    doc.section("GPUs")
    gpus = [g for g in snapshot.gpus if g.address in n.gpus or g.node_name == n.name]
    if not gpus:
        doc.raw("none", DIM)
    for g in gpus:
        doc.line(g.address, _gpu_summary(g))
    doc.section("Storage pool")
    pool = next((p for p in snapshot.pools if p.name == n.pool or p.node == n.name), None)
    if pool is None:
        doc.raw("none", DIM)
    else:
        doc.line(pool.name, _pool_summary(pool))
    _faults(doc, snapshot, "nodes", n.name)
    _pods(doc, n.pods)
    _events(doc, snapshot, (n.name, str(n.vm.vmid) if n.vm else ""), now)
    return doc.text


def _gpu_summary(g: Gpu) -> str:
    holders = ", ".join(sorted({workload(p) for p in g.pods})) or "no pods"
    return f"{g.model} · {g.allocated}/{g.capacity or '-'} slices · {holders}"


def _pool_summary(p: StoragePool) -> str:
    return (
        f"{', '.join(p.disks) or '-'} · {p.state or 'Unknown'} · {fmt.size(p.capacity)}"
        f" · {p.percent_used:.0f}% used"
    )


def _vm_lines(doc: _Doc, v: Vm) -> None:
    doc.line("vm", f"{v.vmid} {v.name} on {v.host}")
    doc.line("status", v.status, OK if v.status == "running" else BAD)
    doc.line("uptime", fmt.duration(v.uptime))
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


def vm_detail(v: Vm, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    doc.title(
        f"VM {v.vmid} {v.name}",
        (v.host, ""),
        (v.status, OK if v.status == "running" else BAD),
        (f"node {v.node_name}" if v.node_name else "no node", DIM),
    )
    doc.section("Proxmox")
    _vm_lines(doc, v)
    if v.config:
        doc.section("Config")
        for k, val in v.config:
            doc.line(k, val)
    _faults(doc, snapshot, "vms", str(v.vmid))
    _events(doc, snapshot, (str(v.vmid), v.name), now)
    return doc.text


def gpu_detail(g: Gpu, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    doc.title(
        g.address,
        (g.model, ""),
        ("present" if g.present else "MISSING", OK if g.present else BAD),
    )
    doc.section("Passthrough")
    doc.line("host", g.host)
    doc.line("pci id", f"{g.vendor_id}:{g.device_id or '?'}")
    doc.line("vm", f"{g.vmid} {g.vm_name}" if g.vmid is not None else "not passed through")
    doc.line("node", g.node_name or "-")
    doc.line("slices", f"{g.allocated} allocated / {g.capacity or '-'} (time-slicing replicas)")
    _faults(doc, snapshot, "gpus", g.address)
    _pods(doc, g.pods, "Pods holding it")
    _events(doc, snapshot, (g.node_name,), now)
    return doc.text


def pool_detail(p: StoragePool, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    doc.title(p.name, (p.node, ""), (p.state or "Unknown", OK if p.state == "Online" else BAD))
    doc.section("Mayastor pool")
    doc.line("node", p.node)
    doc.line("disks", ", ".join(p.disks) or "-")
    doc.line("state", p.state or "-")
    doc.line("cr state", p.cr_state or "-")
    doc.line("capacity", fmt.size(p.capacity))
    doc.line("used", f"{fmt.size(p.used)} ({p.percent_used:.0f}%)")
    doc.line("available", fmt.size(p.available))
    if p.api_version:
        doc.line("api", p.api_version, DIM)
    _faults(doc, snapshot, "pools", p.name)
    _events(doc, snapshot, (p.name,), now)
    return doc.text


def ks_detail(k: Kustomization, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    ready = {"True": ("Ready", OK), "False": ("NotReady", BAD)}.get(k.ready, ("Unknown", WARN))
    doc.title(
        k.key, ready, ("suspended" if k.suspended else "active", WARN if k.suspended else DIM)
    )
    doc.section("Kustomization")
    doc.line("path", k.path or "-")
    doc.line("source", k.source or "-")
    doc.line("applied", k.applied_revision or "-")
    if k.attempted_revision and k.attempted_revision != k.applied_revision:
        doc.line("attempted", k.attempted_revision, WARN)
    doc.line("transition", fmt.since(k.last_transition, now))
    doc.line("reconciled at", k.last_handled_reconcile_at or "-")
    if k.reason or k.message:
        doc.line("reason", k.reason or "-")
        doc.line("message", fmt.one_line(k.message) or "-", BAD if k.ready == "False" else "")
    _conditions(doc, k.conditions, now)
    doc.section("dependsOn chain")
    by_key = {x.key: x for x in snapshot.kustomizations}
    if not k.depends_on:
        doc.raw("none", DIM)
    _chain(doc, k, by_key, depth=0, seen=set())
    dependents = sorted(x.key for x in snapshot.kustomizations if k.key in x.depends_on)
    if dependents:
        doc.line("needed by", ", ".join(dependents), DIM)
    doc.section(f"Files of {k.path or 'its path'} ({len(k.files)})")
    if not k.files:
        doc.raw("none known", DIM)
    for f in k.files:
        doc.raw(f)
    _faults(doc, snapshot, "flux", k.key)
    _events(doc, snapshot, (k.key, k.name), now)
    return doc.text


def _chain(
    doc: _Doc, k: Kustomization, by_key: dict[str, Kustomization], depth: int, seen: set[str]
) -> None:
    for dep in k.depends_on:
        line = Text("  " + "  " * depth + "└ ")
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
        doc.text.append_text(line)
        doc.text.append("\n")
        if target is not None and dep not in seen and depth < 8:
            _chain(doc, target, by_key, depth + 1, seen | {dep})


def event_detail(e: Event, snapshot: ClusterSnapshot, now: float) -> Text:
    doc = _Doc()
    doc.title(
        e.reason or "event", (e.severity, {"error": BAD, "warning": WARN}.get(e.severity, ""))
    )
    doc.line("object", e.object)
    doc.line("source", e.source)
    doc.line("age", fmt.since(e.time, now))
    doc.section("Message")
    doc.text.append(e.message + "\n")
    return doc.text


def detail_text(pane: str, row: Any, snapshot: ClusterSnapshot, now: float) -> Text:
    builders = {
        "nodes": node_detail,
        "vms": vm_detail,
        "gpus": gpu_detail,
        "pools": pool_detail,
        "flux": ks_detail,
        "events": event_detail,
    }
    return builders[pane](row, snapshot, now)
