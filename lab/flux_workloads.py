"""What a HelmRelease runs in the lab: a Deployment with ReplicaSet-owned pods, or DaemonSets.

The lab has no Helm, so the chart is summarised: DaemonSet-shaped charts (CNI, node
agents, GPU plugins, Mayastor's io-engine) get one pod per matching node through
`World.ensure_daemonset`; everything else gets a Deployment whose pods carry the GPU
request found in the release values (`nvidia.com/gpu`, searched recursively, as
app-template nests it under controllers.*.containers.*.resources.limits). GPU pods go
through `World.schedule` (GPU capacity); other pods use a per-pass placement table with
the same rules, because the world's scheduler rescans every pod for every decision and
the benchmark labs have thousands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dapper.lab.kinds import by_kind
from dapper.lab.store import NotFound
from dapper.lab.world import World, pod_gpu_request, pod_object
from dapper.lab.world.kube_objects import spread_rank

GPU_SELECTOR = {"nvidia.feature.node.kubernetes.io/gpu": "true"}
STORAGE_SELECTOR = {"openebs.io/engine": "mayastor"}
GPU_RESOURCE = "nvidia.com/gpu"
HR_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HR_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"

# chart -> DaemonSets it runs: (name template, node selector or None for every node)
DAEMONSET_CHARTS: dict[str, tuple[tuple[str, dict[str, str] | None], ...]] = {
    "cilium": (("cilium", None),),
    "spegel": (("spegel", None),),
    "promtail": (("promtail", None),),
    "prometheus-node-exporter": (("{release}", None),),
    "kube-prometheus-stack": (("{release}-prometheus-node-exporter", None),),
    "node-feature-discovery": (("node-feature-discovery-worker", None),),
    "nvidia-device-plugin": (("nvidia-device-plugin", GPU_SELECTOR),),
    "dcgm-exporter": (("dcgm-exporter", GPU_SELECTOR),),
    "openebs": (("openebs-io-engine", STORAGE_SELECTOR), ("openebs-csi-node", STORAGE_SELECTOR)),
}
# DaemonSet charts that also run a controller Deployment
WITH_DEPLOYMENT = frozenset({"kube-prometheus-stack", "node-feature-discovery", "openebs"})
# charts that only install CRDs or configure something else
NO_WORKLOAD = frozenset({"prometheus-operator-crds", "flux-instance", "snapshot-controller-crds"})

Ref = tuple[str, str, str, str]  # group, kind, namespace, name


def find_key(values: Any, key: str) -> Any:
    """The first value stored under `key` anywhere in nested values (depth first)."""
    for found in _iter_key(values, key):
        return found
    return None


def _iter_key(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        if key in node:
            yield node[key]
        for v in node.values():
            yield from _iter_key(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _iter_key(v, key)


def gpu_units(values: Any) -> int:
    raw = find_key(values, GPU_RESOURCE)
    try:
        return max(int(str(raw)), 0) if raw is not None else 0
    except ValueError:
        return 0


def controller_type(values: Any) -> str:
    """app-template's controllers.<c>.type (first controller): deployment or statefulset."""
    controllers = values.get("controllers") if isinstance(values, dict) else None
    if isinstance(controllers, dict):
        for ctl in controllers.values():
            if isinstance(ctl, dict) and ctl.get("type") == "statefulset":
                return "statefulset"
    return "deployment"


def replicas_of(values: Any) -> int:
    """app-template's controllers.<c>.replicas (first controller), else 1."""
    controllers = values.get("controllers") if isinstance(values, dict) else None
    if isinstance(controllers, dict):
        for ctl in controllers.values():
            if isinstance(ctl, dict) and isinstance(ctl.get("replicas"), int):
                return max(ctl["replicas"], 0)
    return 1


@dataclass
class _NodeRow:
    name: str
    labels: dict[str, str]
    schedulable: bool
    tolerating_needed: bool  # a NoSchedule taint (control plane, unreachable)


@dataclass
class Placer:
    """A pass-long table of the nodes pods may land on (read once per pass, not per pod)."""

    rows: list[_NodeRow] = field(default_factory=list)

    @classmethod
    def from_world(cls, world: World) -> Placer:
        nodes, _ = world.store.list(by_kind("", "Node"), copy=False)  # read only
        rows = []
        for node in nodes:
            name = node["metadata"]["name"]
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            taints = node.get("spec", {}).get("taints") or []
            rows.append(
                _NodeRow(
                    name,
                    node["metadata"].get("labels", {}) or {},
                    ready and not node.get("spec", {}).get("unschedulable"),
                    any(t.get("effect") == "NoSchedule" for t in taints),
                )
            )
        return cls(rows)

    def place(self, selector: dict[str, str], owner: str, siblings: list[dict]) -> str:
        """The node for one more pod of `owner`, given the pods it already has."""
        held: dict[str, int] = {}
        for p in siblings:
            n = p.get("spec", {}).get("nodeName") or ""
            held[n] = held.get(n, 0) + 1
        best: tuple[tuple[int, str], str] | None = None
        for row in self.rows:
            if not row.schedulable or row.tolerating_needed:
                continue
            if any(row.labels.get(k) != v for k, v in selector.items()):
                continue
            rank = spread_rank(owner, row.name, held.get(row.name, 0))
            if best is None or rank < best[0]:
                best = (rank, row.name)
        return best[1] if best is not None else ""


class Workloads:
    """Creates and removes the objects HelmReleases run; one instance per twin."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.derived: dict[tuple[str, str], list[Ref]] = {}  # HelmRelease -> what it runs
        self._pods: dict[tuple[str, str, str], list[dict]] | None = None
        self._placer: Placer | None = None

    def begin_pass(self) -> None:
        """Forget the pass-long indexes (pods by owner, node table)."""
        self._pods = None
        self._placer = None

    def _index(self) -> tuple[dict[tuple[str, str, str], list[dict]], Placer]:
        if self._pods is None or self._placer is None:
            # the store's own objects, read only (its writes replace them): a copy of
            # 20,000 pods once a pass was most of the twin's CPU at 500 nodes
            pods, _ = self.world.store.list(by_kind("", "Pod"), copy=False)
            index: dict[tuple[str, str, str], list[dict]] = {}
            for p in pods:
                refs = p["metadata"].get("ownerReferences") or []
                if refs:
                    key = (p["metadata"]["namespace"], refs[0]["kind"], refs[0]["name"])
                    index.setdefault(key, []).append(p)
            self._pods = index
            self._placer = Placer.from_world(self.world)
        return self._pods, self._placer

    # -- HelmRelease -> workload ------------------------------------------------------

    def ensure(self, hr: dict[str, Any], chart: str) -> list[Ref]:
        """Make the release's workload exist as its values say; returns what it runs."""
        meta = hr["metadata"]
        ns, name = meta["namespace"], meta["name"]
        spec = hr.get("spec") or {}
        release = str(spec.get("releaseName") or name)
        values = spec.get("values") or {}
        refs: list[Ref] = []
        with self.world.lock:
            if chart in NO_WORKLOAD:
                pass
            elif chart in DAEMONSET_CHARTS:
                selector_override = values.get("nodeSelector") if isinstance(values, dict) else None
                for template, selector in DAEMONSET_CHARTS[chart]:
                    ds_name = template.format(release=release)
                    chosen = selector_override if isinstance(selector_override, dict) else selector
                    wanted = _strs(chosen)
                    if not self._daemonset_complete(ns, ds_name, wanted):
                        self.world.ensure_daemonset(ns, ds_name, node_selector=wanted)
                    refs.append(("apps", "DaemonSet", ns, ds_name))
                if chart in WITH_DEPLOYMENT:
                    refs += self._deployment(ns, f"{release}-controller", name, {}, 1)
            elif controller_type(values) == "statefulset":
                refs += self._statefulset(ns, release, name, replicas_of(values))
            else:
                refs += self._deployment(ns, release, name, values, replicas_of(values))
        old = self.derived.get((ns, name), [])
        self.remove([r for r in old if r not in refs])
        self.derived[(ns, name)] = refs
        return refs

    def _deployment(
        self, ns: str, name: str, hr_name: str, values: Any, replicas: int
    ) -> list[Ref]:
        gpu = gpu_units(values)
        selector = find_key(values, "nodeSelector")
        selector = (
            {str(k): str(v) for k, v in selector.items()} if isinstance(selector, dict) else {}
        )
        if gpu and not selector:
            selector = dict(GPU_SELECTOR)
        runtime = find_key(values, "runtimeClassName")
        runtime = str(runtime) if runtime else ("nvidia" if gpu else None)
        template_hash = _template_hash(ns, name, values)
        rs_name = f"{name}-{template_hash}"
        labels = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": hr_name,
            "app.kubernetes.io/managed-by": "Helm",
            HR_NAME_LABEL: hr_name,
            HR_NAMESPACE_LABEL: ns,
        }
        pod_labels = {"app.kubernetes.io/name": name, "pod-template-hash": template_hash}
        template = pod_object(
            ns,
            "template",
            "",
            owner=("ReplicaSet", rs_name),
            labels=pod_labels,
            gpu=gpu,
            node_selector=selector or None,
            runtime_class=runtime,
        )
        pods, placer = self._index()
        # a Terminating pod is no replica: the ReplicaSet has already replaced it, and
        # scaling down must never pick the healthy replacement over it
        mine = [
            p
            for p in pods.get((ns, "ReplicaSet", rs_name), [])
            if not p["metadata"].get("deletionTimestamp")
        ]
        ready = 0
        for p in mine:
            ready += bool(p["spec"].get("nodeName"))
        store = self.world.store
        fresh = not mine
        for _ in range(len(mine), replicas):
            node = (
                self.world.schedule(template)
                if gpu
                else placer.place(selector, f"{ns}/ReplicaSet/{rs_name}", mine)
            )
            pod = pod_object(
                ns,
                f"{rs_name}-{_suffix(self.world.rng)}",
                node or "",
                owner=("ReplicaSet", rs_name),
                labels=pod_labels,
                gpu=gpu,
                node_selector=selector or None,
                runtime_class=runtime,
            )
            mine.append(store.create(pod))
            ready += bool(node)
        pods[(ns, "ReplicaSet", rs_name)] = mine
        for p in mine[replicas:]:
            _delete(store, "", "Pod", ns, p["metadata"]["name"])
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": pod_labels}, "spec": template["spec"]},
            },
        }
        old = store.find(by_kind("apps", "Deployment"), ns, name, copy=False)
        kept = (((old or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
        if kept.get("annotations"):  # `kubectl rollout restart`'s restartedAt survives
            deployment["spec"]["template"]["metadata"]["annotations"] = dict(kept["annotations"])
        live = store.upsert(deployment, rt=by_kind("apps", "Deployment"))
        ready = min(ready, replicas)
        status = {
            "observedGeneration": live["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready >= replicas else "False",
                    "reason": "MinimumReplicasAvailable"
                    if ready >= replicas
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if ready >= replicas
                    else "Deployment does not have minimum availability.",
                }
            ],
        }
        _set_status(store, "Deployment", ns, name, status)
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": pod_labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": name,
                        "uid": live["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels}},
        }
        store.upsert(rs, rt=by_kind("apps", "ReplicaSet"))
        rs_status = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}
        _set_status(store, "ReplicaSet", ns, rs_name, rs_status)
        if fresh:  # a new template: the older ReplicaSets and their pods go (rollout)
            for old in store.list(by_kind("apps", "ReplicaSet"), ns)[0]:
                owners = old["metadata"].get("ownerReferences") or []
                other = old["metadata"]["name"]
                if other != rs_name and owners and owners[0].get("name") == name:
                    self._remove_owned(ns, "ReplicaSet", other)
                    _delete(store, "apps", "ReplicaSet", ns, other)
        return [("apps", "Deployment", ns, name), ("apps", "ReplicaSet", ns, rs_name)]

    def _statefulset(self, ns: str, name: str, hr_name: str, replicas: int) -> list[Ref]:
        """A StatefulSet: pods named by ordinal (name-0, name-1, ...), one per ordinal;
        an ordinal whose pod is still Terminating is not re-created (the invariant the
        node-death twin keeps)."""
        labels = {"app.kubernetes.io/name": name, HR_NAME_LABEL: hr_name, HR_NAMESPACE_LABEL: ns}
        pod_labels = {"app.kubernetes.io/name": name}
        store = self.world.store
        live = store.upsert(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": pod_labels},
                    "template": {"metadata": {"labels": pod_labels}},
                },
            },
            rt=by_kind("apps", "StatefulSet"),
        )
        pods, placer = self._index()
        mine = pods.get((ns, "StatefulSet", name), [])
        held = {p["metadata"]["name"]: p for p in mine}
        owner = f"{ns}/StatefulSet/{name}"
        for ordinal in range(replicas):
            pod_name = f"{name}-{ordinal}"
            if pod_name in held:
                continue
            node = placer.place({}, owner, mine)
            pod = pod_object(ns, pod_name, node, owner=("StatefulSet", name), labels=pod_labels)
            mine.append(store.create(pod))
        pods[(ns, "StatefulSet", name)] = mine
        wanted = {f"{name}-{i}" for i in range(replicas)}
        for pod in [p for p in mine if p["metadata"]["name"] not in wanted]:
            _delete(store, "", "Pod", ns, pod["metadata"]["name"])
        ready = sum(
            1 for p in mine if p["metadata"]["name"] in wanted and p["spec"].get("nodeName")
        )
        status = {
            "observedGeneration": live["metadata"].get("generation", 1),
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
        }
        _set_status(store, "StatefulSet", ns, name, status)
        return [("apps", "StatefulSet", ns, name)]

    def _daemonset_complete(self, ns: str, name: str, selector: dict[str, str]) -> bool:
        """The DaemonSet exists as wanted with a pod per desired node (nothing to do)."""
        ds = self.world.store.find(by_kind("apps", "DaemonSet"), ns, name)
        if ds is None:
            return False
        spec = ds["spec"]["template"]["spec"]
        if (spec.get("nodeSelector") or {}) != selector:
            return False
        pods, _ = self._index()
        desired = int((ds.get("status") or {}).get("desiredNumberScheduled") or 0)
        return len(pods.get((ns, "DaemonSet", name), [])) >= desired

    # -- removal ------------------------------------------------------------------------

    def remove(self, refs: list[Ref]) -> None:
        """Delete derived objects and the pods they own (a helm uninstall)."""
        for group, kind, ns, name in refs:
            if kind in ("ReplicaSet", "DaemonSet", "StatefulSet"):
                self._remove_owned(ns, kind, name)
            _delete(self.world.store, group, kind, ns, name)

    def uninstall(self, ns: str, hr_name: str) -> None:
        self.remove(self.derived.pop((ns, hr_name), []))

    def _remove_owned(self, ns: str, kind: str, name: str) -> None:
        pods, _ = self._index()
        for p in pods.pop((ns, kind, name), []):
            _delete(self.world.store, "", "Pod", ns, p["metadata"]["name"])
        # pods created outside this pass's index (the world's DaemonSet helper)
        for p in self.world.pods(namespace=ns):
            refs = p["metadata"].get("ownerReferences") or []
            if refs and refs[0].get("kind") == kind and refs[0].get("name") == name:
                _delete(self.world.store, "", "Pod", ns, p["metadata"]["name"])

    def gpu_pods(self) -> list[dict]:
        return [p for p in self.world.pods() if pod_gpu_request(p)]


def _strs(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def _template_hash(ns: str, name: str, values: Any) -> str:
    """pod-template-hash: of the pod template (the Deployment's own labels and values,
    not its replica count), in the API server's safe alphabet; one per Deployment."""
    digest = json.dumps([ns, name, values], sort_keys=True, default=str)
    number = int(hashlib.sha256(digest.encode()).hexdigest(), 16)
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    chars = []
    for _ in range(10):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(chars)


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _delete(store: Any, group: str, kind: str, ns: str, name: str) -> None:
    with contextlib.suppress(NotFound, KeyError):
        store.delete(by_kind(group, kind), ns, name)


def _set_status(store: Any, kind: str, ns: str, name: str, status: dict) -> None:
    def edit(obj: dict) -> None:
        obj["status"] = status

    with contextlib.suppress(NotFound):
        store.mutate(by_kind("apps", kind), ns, name, edit, status_only=True)
