"""What the lab's control plane does behind the API: events, taints, PDB status.

A store listener queues changes (it runs under the store lock and must not block); one
thread then plays the node lifecycle controller and kubelet (NodeNotReady/NodeReady and
NodeNotSchedulable/NodeSchedulable Events, the node.kubernetes.io/unschedulable taint on a
cordoned node), the disruption controller (PodDisruptionBudget status) and the workload
controllers' status counts (kube_workloads).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid

from dapper.lab.kinds import by_kind
from dapper.lab.kube_eviction import budget_state, status_of
from dapper.lab.kube_workloads import Workload, WorkloadStatus, changed_workloads
from dapper.lab.store import NotFound, ObjectStore, WatchEvent, now_rfc3339

log = logging.getLogger(__name__)

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
WATCHED = frozenset(
    {
        ("", "nodes"),
        ("", "pods"),
        ("policy", "poddisruptionbudgets"),
        *(("apps", k) for k in ("deployments", "replicasets", "statefulsets", "daemonsets")),
    }
)


def emit_event(
    store: ObjectStore,
    involved: dict,
    reason: str,
    message: str,
    *,
    type_: str = "Normal",
    component: str = "lab",
    at: float | None = None,
    host: str = "",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict:
    """Create a core/v1 Event about `involved` (a full object), happening now or `at`."""
    meta = involved.get("metadata", {})
    kind = involved.get("kind", "")
    ns = meta.get("namespace") or "default"
    now = now_rfc3339(at)
    # kubelet and node-controller events about nodes carry the node name as uid
    uid = meta.get("name", "") if kind == "Node" else meta.get("uid", "")
    return store.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', '')}.{uuid.uuid4().hex[:16]}",
                "namespace": ns,
                "creationTimestamp": now,
                **({"labels": labels} if labels else {}),
                **({"annotations": annotations} if annotations else {}),
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "v1"),
                "kind": kind,
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component, **({"host": host} if host else {})},
            "reportingComponent": component,
            "reportingInstance": "",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
    )


def _node_state(node: dict) -> tuple[bool, bool]:
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", []) or []
    )
    return ready, bool(node.get("spec", {}).get("unschedulable"))


class LabControllers:
    """Started and stopped with the API server; see the module docstring."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[WatchEvent | None] = queue.SimpleQueue()
        self._nodes: dict[str, tuple[bool, bool]] = {}
        self._thread: threading.Thread | None = None
        self._workloads = WorkloadStatus(store)

    def start(self) -> None:
        nodes, _ = self.store.list(by_kind("", "Node"))
        self._nodes = {n["metadata"]["name"]: _node_state(n) for n in nodes}
        self.store.add_listener(self._on_change)
        self._thread = threading.Thread(target=self._run, name="lab-kube-controllers", daemon=True)
        self._thread.start()
        self._refresh_budgets({p["metadata"]["namespace"] for p in self._pdbs()})

    def stop(self) -> None:
        self.store.remove_listener(self._on_change)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _on_change(self, event: WatchEvent) -> None:
        if event.key[:2] in WATCHED:
            self._queue.put(event)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            namespaces: set[str] = set()
            changed: dict[str, set[Workload]] = {}
            nodes_changed = False
            for event in batch:
                if event is None:
                    return
                try:
                    if event.key[1] == "nodes":
                        nodes_changed = True
                        self._node_changed(event)
                        continue
                    ns = event.key[2]
                    namespaces.add(ns)
                    found = changed_workloads(self.store, event.key[1], event.obj)
                    changed.setdefault(ns, set()).update(found)
                except Exception:  # a controller hiccup must not stop the others
                    log.exception("lab controller failed on %s", event.key)
            try:
                self._refresh_budgets(namespaces)
            except Exception:
                log.exception("lab disruption controller failed")
            try:
                if nodes_changed:  # a DaemonSet wants a pod per matching Node
                    daemonsets, _ = self.store.list(by_kind("apps", "DaemonSet"), copy=False)
                    for d in daemonsets:
                        ns = d["metadata"]["namespace"]
                        changed.setdefault(ns, set()).add(("DaemonSet", d["metadata"]["name"]))
                self._workloads.refresh_changed(changed)
            except Exception:
                log.exception("lab workload status controllers failed")

    def _node_changed(self, event: WatchEvent) -> None:
        name = event.key[3]
        if event.type == "DELETED":
            self._nodes.pop(name, None)
            return
        ready, unschedulable = _node_state(event.obj)
        before = self._nodes.get(name)
        self._nodes[name] = (ready, unschedulable)
        if before is None:
            return
        if before[0] != ready:
            status = "NodeReady" if ready else "NodeNotReady"
            emit_event(
                self.store,
                event.obj,
                status,
                f"Node {name} status is now: {status}",
                component="node-controller",
            )
        if before[1] != unschedulable:
            status = "NodeNotSchedulable" if unschedulable else "NodeSchedulable"
            emit_event(
                self.store,
                event.obj,
                status,
                f"Node {name} status is now: {status}",
                component="kubelet",
            )
        self._sync_taint(name, unschedulable)

    def _sync_taint(self, name: str, unschedulable: bool) -> None:
        def edit(node: dict) -> None:
            spec = node.setdefault("spec", {})
            taints = [t for t in spec.get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT]
            if unschedulable:
                taints.append(
                    {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_rfc3339()}
                )
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)

        node = self.store.find(by_kind("", "Node"), "", name)
        if node is None:
            return
        has = any(
            t.get("key") == UNSCHEDULABLE_TAINT for t in node.get("spec", {}).get("taints") or []
        )
        if has != unschedulable:
            with contextlib.suppress(NotFound):
                self.store.mutate(by_kind("", "Node"), "", name, edit)

    def _pdbs(self) -> list[dict]:
        return self.store.list(by_kind("policy", "PodDisruptionBudget"), copy=False)[0]

    def _refresh_budgets(self, namespaces: set[str]) -> None:
        if not namespaces:
            return
        rt = by_kind("policy", "PodDisruptionBudget")
        for pdb in self._pdbs():
            ns = pdb["metadata"]["namespace"]
            if ns not in namespaces:
                continue
            pods, _ = self.store.list(by_kind("", "Pod"), ns, copy=False)  # read only
            status = status_of(budget_state(pdb, pods), pdb["metadata"].get("generation", 1))

            def edit(obj: dict, status: dict = status) -> None:
                obj["status"] = status

            with contextlib.suppress(NotFound):
                self.store.mutate(rt, ns, pdb["metadata"]["name"], edit, status_only=True)
