"""Workload status from pod readiness, as the DaemonSet, ReplicaSet, Deployment and
StatefulSet controllers write it: a pod that is not Ready (its node died) no longer counts
as ready or available, a Terminating pod is no longer a ReplicaSet's replica, and a
DaemonSet wants one pod per existing Node its selector matches.

Pure over the store (no world import: the world imports the controllers); run by
`LabControllers` after pod and node changes. A status is written only when it changes.
"""

from __future__ import annotations

import contextlib

from dapper.lab.kinds import ResourceType, by_kind
from dapper.lab.store import NotFound, ObjectStore

POD = by_kind("", "Pod")
NODE = by_kind("", "Node")
DEPLOYMENT = by_kind("apps", "Deployment")
REPLICASET = by_kind("apps", "ReplicaSet")
DAEMONSET = by_kind("apps", "DaemonSet")
STATEFULSET = by_kind("apps", "StatefulSet")

Workload = tuple[str, str]  # (kind, name) in a namespace


def _controller(pod: dict) -> Workload:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    mine = next((r for r in refs if r.get("controller")), refs[0] if refs else {})
    return mine.get("kind", ""), mine.get("name", "")


def _ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _active(pod: dict) -> bool:
    """Not Terminating and not finished: what ReplicaSets count as replicas."""
    phase = (pod.get("status") or {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def _counts(pods: list[dict]) -> tuple[int, int]:
    active = [p for p in pods if _active(p)]
    return len(active), sum(1 for p in active if _ready(p))


_KIND_OF = {rt.plural: rt.kind for rt in (REPLICASET, DEPLOYMENT, STATEFULSET, DAEMONSET)}


def changed_workloads(store: ObjectStore, plural: str, obj: dict) -> set[Workload]:
    """The workloads (kind, name) whose status a change to `obj` (a pod or a workload,
    in the form its event carries) may change: a pod's controller, a ReplicaSet's
    Deployment too."""
    if plural == "pods":
        kind, name = _controller(obj)
    else:
        kind, name = _KIND_OF.get(plural, ""), obj["metadata"]["name"]
    if not kind:
        return set()
    changed = {(kind, name)}
    if kind == "ReplicaSet":
        ns = obj["metadata"].get("namespace", "")
        rs = obj if plural == "replicasets" else store.find(REPLICASET, ns, name, copy=False)
        changed.add(("Deployment", _deployment_of(rs, name)))
    return changed


def _deployment_of(rs: dict | None, name: str) -> str:
    """The Deployment a ReplicaSet belongs to: its owner, else the name it was made from
    (as `_deployments` counts a ReplicaSet nobody owns)."""
    refs = ((rs or {}).get("metadata") or {}).get("ownerReferences") or []
    owner = next((r.get("name", "") for r in refs if r.get("kind") == "Deployment"), "")
    return owner or name.rsplit("-", 1)[0]


class WorkloadStatus:
    """Recomputes the status counts of a namespace's workloads."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def refresh_changed(self, changed: dict[str, set[Workload]]) -> None:
        """Only the named workloads (kind, name) of each namespace: as the controllers work
        from a queue of keys. At 20,000 pods, recomputing a whole namespace for each pod
        the churn replaced kept a core busy."""
        for ns in sorted(changed):
            self._refresh(ns, changed[ns])

    def _refresh(self, ns: str, only: set[Workload]) -> None:
        pods, _ = self.store.list(POD, ns, copy=False)
        owned: dict[Workload, list[dict]] = {}
        for p in pods:
            owned.setdefault(_controller(p), []).append(p)
        self._replicasets(ns, owned, self._objects(REPLICASET, ns, only))
        self._deployments(ns, owned, self._objects(DEPLOYMENT, ns, only))
        self._statefulsets(ns, owned, self._objects(STATEFULSET, ns, only))
        self._daemonsets(ns, owned, self._objects(DAEMONSET, ns, only))

    def _objects(self, rt: ResourceType, ns: str, only: set[Workload]) -> list[dict]:
        """The objects of `rt` that `only` names (read only)."""
        found = (
            self.store.find(rt, ns, name, copy=False) for kind, name in only if kind == rt.kind
        )
        return [o for o in found if o is not None]

    def _write(self, rt: object, ns: str, name: str, counts: dict) -> None:
        """Merge `counts` into the status; a count of None is dropped (an omitempty 0)."""
        obj = self.store.find(rt, ns, name, copy=False)  # type: ignore[arg-type]
        if obj is None:
            return
        status = obj.get("status") or {}
        if all(status.get(k) == v for k, v in counts.items()):
            return

        def edit(o: dict) -> None:
            merged = {**(o.get("status") or {}), **counts}
            o["status"] = {k: v for k, v in merged.items() if v is not None}

        with contextlib.suppress(NotFound):
            self.store.mutate(rt, ns, name, edit, status_only=True)  # type: ignore[arg-type]

    def _replicasets(self, ns: str, owned: dict, replicasets: list[dict]) -> None:
        for rs in replicasets:
            name = rs["metadata"]["name"]
            replicas, ready = _counts(owned.get(("ReplicaSet", name), []))
            self._write(
                REPLICASET,
                ns,
                name,
                {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready},
            )

    def _deployments(self, ns: str, owned: dict, deployments: list[dict]) -> None:
        if not deployments:
            return
        replicasets = self.store.list(REPLICASET, ns, copy=False)[0]
        for dep in deployments:
            name = dep["metadata"]["name"]
            mine = {
                rs["metadata"]["name"]
                for rs in replicasets
                if any(
                    r.get("kind") == "Deployment" and r.get("name") == name
                    for r in rs["metadata"].get("ownerReferences") or []
                )
            }
            pods = [
                p
                for (kind, owner), ps in owned.items()
                if kind == "ReplicaSet"
                and (owner in mine or (not mine and owner.rsplit("-", 1)[0] == name))
                for p in ps
            ]
            replicas, ready = _counts(pods)
            want = int((dep.get("spec") or {}).get("replicas", 1))
            available = ready >= want
            old = {c.get("type"): c for c in (dep.get("status") or {}).get("conditions") or []}
            conditions = [c for t, c in old.items() if t != "Available"]
            conditions.insert(
                0,
                {
                    **old.get("Available", {}),
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                },
            )
            counts: dict = {
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": conditions,
                "unavailableReplicas": want - ready if want > ready else None,
            }
            self._write(DEPLOYMENT, ns, name, counts)

    def _statefulsets(self, ns: str, owned: dict, statefulsets: list[dict]) -> None:
        for sts in statefulsets:
            name = sts["metadata"]["name"]
            pods = owned.get(("StatefulSet", name), [])
            ready = sum(1 for p in pods if _active(p) and _ready(p))
            self._write(
                STATEFULSET,
                ns,
                name,
                {
                    "replicas": len(pods),  # created pods, Terminating ones included
                    "currentReplicas": len(pods),
                    "updatedReplicas": len(pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                },
            )

    def _daemonsets(self, ns: str, owned: dict, daemonsets: list[dict]) -> None:
        if not daemonsets:
            return
        nodes = self.store.list(NODE, copy=False)[0]
        for ds in daemonsets:
            name = ds["metadata"]["name"]
            template = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
            selector = template.get("nodeSelector") or {}
            wanted = {
                n["metadata"]["name"]
                for n in nodes
                if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            }
            pods = [
                p
                for p in owned.get(("DaemonSet", name), [])
                if _active(p) and p["spec"].get("nodeName") in wanted
            ]
            scheduled = len({p["spec"]["nodeName"] for p in pods})
            ready = len({p["spec"]["nodeName"] for p in pods if _ready(p)})
            self._write(
                DAEMONSET,
                ns,
                name,
                {
                    "desiredNumberScheduled": len(wanted),
                    "currentNumberScheduled": scheduled,
                    "updatedNumberScheduled": scheduled,
                    "numberReady": ready,
                    "numberAvailable": ready,
                    "numberUnavailable": len(wanted) - ready if len(wanted) > ready else None,
                },
            )
