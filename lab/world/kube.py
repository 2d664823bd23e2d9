"""The lab's Kubernetes: seeding the cluster's objects, scheduling pods, node readiness.

Plays the kubelets, the scheduler and the ReplicaSet/StatefulSet/DaemonSet controllers as
far as the console and the runbooks can see them. Objects live in the world's
`ObjectStore`; every change is made under the world's lock.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable

from dapper.lab.kinds import ResourceType, by_kind
from dapper.lab.store import NotFound, WatchEvent, clone
from dapper.lab.world.kube_lifecycle import PodLifecycle
from dapper.lab.world.kube_network import PodNetwork
from dapper.lab.world.kube_objects import (
    controller_of,
    labels_match,
    name_suffix,
    node_conditions,
    node_object,
    owner_key,
    pod_conditions,
    pod_gpu_request,
    pod_object,
    pod_status,
    spread_rank,
)
from dapper.lab.world.kube_taints import (
    default_tolerations,
    lifecycle_taints,
    without_lifecycle_taints,
)
from dapper.lab.world.model import GPU_ADDRESSES, GPU_REPLICAS, NodeSpec
from dapper.lab.world.node_labels import talos_apply
from dapper.lab.world.state import WorldState

CNI_DAEMONSET = ("kube-system", "cilium")
# what a kubelet posts while no CNI plugin runs on its node (Ready=False)
CNI_NOT_READY = (
    "KubeletNotReady",
    "container runtime network not ready: NetworkReady=false "
    "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not "
    "initialized",
)
KUBELET_READY = ("KubeletReady", "kubelet is posting ready status")
# (label specs of the running config, written with the kubelet's credentials?)
MachineLabels = tuple[dict[str, str], bool]


def _no_machine(hostname: str) -> MachineLabels | None:
    return None


class KubeWorld:
    """Kubernetes objects and their consequences: Nodes, pods, DaemonSets, pools, GPUs."""

    def __init__(self, state: WorldState) -> None:
        self.state = state
        self.store = state.store
        self.lock = state.lock
        self.store.add_defaulter(PodNetwork(self.store).default)
        self.store.add_defaulter(_admit_tolerations)
        self.store.add_defaulter(_merge_string_data)
        # the world wires in the Talos side (does the node's machine run its kubelet?)
        self.pods_lifecycle = PodLifecycle(state, self.replace_pod, self.node_ready)
        # a cluster bootstrapped in the lab (stage bare) has no CNI until one is installed:
        # kubelets post NotReady until the Cilium DaemonSet exists (the running lab's is
        # seeded, so there the gate is off)
        self.cni_gate = False
        # the Talos side: (label specs, through the kubelet's credentials?) of the machine
        # running a node, None for none
        self.machine_labels: Callable[[str], MachineLabels | None] = _no_machine

    def watch_cni(self) -> None:
        """Turn the CNI gate on and follow DaemonSets created through the API: each gets
        its pods, and the Cilium one's arrival makes the nodes' network (and Ready) work."""
        self.cni_gate = True
        self.store.add_listener(self._on_store_event)

    def cni_running(self) -> bool:
        if not self.cni_gate:
            return True
        return self.store.find(by_kind("apps", "DaemonSet"), *CNI_DAEMONSET, copy=False) is not None

    def _on_store_event(self, event: WatchEvent) -> None:
        """Store listener (under the store lock): a new DaemonSet is handled on the clock."""
        if event.type != "ADDED" or tuple(event.key[:2]) != ("apps", "daemonsets"):
            return
        ns, name = event.key[2], event.key[3]
        self.state.later(0, lambda: self._daemonset_added(ns, name))

    def _daemonset_added(self, ns: str, name: str) -> None:
        """The DaemonSet controller runs its pods; a CNI's pods make every posting kubelet
        report Ready."""
        with self.lock:
            ds = self.store.find(by_kind("apps", "DaemonSet"), ns, name)
            if ds is None:
                return
            pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
            selector = pod_spec.get("nodeSelector") or None
            nodes = [
                s
                for s in self.state.specs
                if self.node_exists(s.hostname)
                and labels_match(self.node_labels(s.hostname), selector)
            ]
            # the object stays as the API client made it (a Helm chart's labels included)
            self._daemonset_pods(ns, name, nodes, cpu="100m", memory="128Mi")
            if (ns, name) != CNI_DAEMONSET:
                return
            for node in self.store.list(by_kind("", "Node"))[0]:
                hostname = node["metadata"]["name"]
                if self.ready_status(hostname) == "False" and self.pods_lifecycle.kubelet_posting(
                    hostname
                ):
                    self.set_node_ready(hostname, True, *KUBELET_READY)
            self.reschedule_pending()

    def set_kubelet_posting(self, posting: Callable[[str], bool]) -> None:
        """Who answers for a node's kubelet: the world's machines."""
        self.pods_lifecycle.kubelet_posting = posting

    def node_object(self, spec: NodeSpec, created: float | None = None) -> dict:
        """A Node for `spec`: as old as the lab's cluster unless `created` says when."""
        index = self.state.specs.index(spec) if spec in self.state.specs else 0
        node = node_object(
            spec,
            created=self.state.started - 41 * 86400 if created is None else created,
            gpu_units=self.gpu_units(spec.hostname),
            index=index,
        )
        # Talos labels a Node right after its kubelet registers it: the lab makes that one
        # write (DaemonSets then see the labels at once)
        mine = self.machine_labels(spec.hostname)
        if mine is not None:
            talos_apply(node, mine[0], restricted=mine[1])
        return node

    def sync_machine_labels(self, hostname: str) -> str:
        """Talos's NodeApplyController after a config change: the running config's labels
        onto the Node ('' or the API server's refusal). DaemonSets whose selector the Node
        now matches get their pod there."""
        mine = self.machine_labels(hostname)
        node = self.store.find(by_kind("", "Node"), "", hostname)
        if mine is None or node is None:
            return ""
        error = talos_apply(node, mine[0], restricted=mine[1])
        if not error and self._write_node_metadata(node):
            self._daemonset_pods_for(hostname, node["metadata"].get("labels") or {})
        return error

    def _daemonset_pods_for(self, hostname: str, labels: dict[str, str]) -> None:
        """The DaemonSet controller after a Node's labels changed: a pod of each DaemonSet
        whose selector the Node now matches (the DaemonSet objects stay as they are)."""
        spec = self.state.spec_of(hostname)
        if spec is None:
            return
        for ds in self.store.list(by_kind("apps", "DaemonSet"), copy=False)[0]:
            pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
            if labels_match(labels, pod_spec.get("nodeSelector") or None):
                meta = ds["metadata"]
                self._daemonset_pods(
                    meta["namespace"], meta["name"], [spec], cpu="50m", memory="64Mi"
                )

    def _write_node_metadata(self, fresh: dict) -> bool:
        """Store `fresh`'s labels and annotations on its Node; False when they are there."""
        meta = fresh["metadata"]
        rt = by_kind("", "Node")
        current = (self.store.find(rt, "", meta["name"]) or {}).get("metadata") or {}
        if (current.get("labels"), current.get("annotations")) == (
            meta.get("labels"),
            meta.get("annotations"),
        ):
            return False

        def edit(obj: dict) -> None:
            obj["metadata"]["labels"] = meta.get("labels") or {}
            if meta.get("annotations"):
                obj["metadata"]["annotations"] = meta["annotations"]
            else:
                obj["metadata"].pop("annotations", None)

        self.store.mutate(rt, "", meta["name"], edit)
        return True

    def _place_daemonsets(self) -> None:
        """Each DaemonSet's pod on the nodes its selector matches that have none yet."""
        for ds in self.store.list(by_kind("apps", "DaemonSet"))[0]:
            self.ensure_daemonset(
                ds["metadata"]["namespace"],
                ds["metadata"]["name"],
                node_selector=ds["spec"]["template"]["spec"].get("nodeSelector") or None,
            )

    def register_node(self, spec: NodeSpec) -> None:
        """A machine's kubelet comes up: a new Node (registered now) gets DaemonSet pods,
        a known one is Ready (the kubelet registers into the existing object)."""
        if not self.node_exists(spec.hostname):
            # node_object dates the first Ready 90 s after creation: make that now
            node = self.node_object(spec, created=self.state.clock.now() - 90)
            not_ready = [] if self.cni_running() else lifecycle_taints("False")
            if not_ready:
                # the kubelet's first status already says its runtime has no network: no
                # reader (the API lists without the world lock) may see the new Node Ready
                node["status"]["conditions"] = node_conditions(False, *CNI_NOT_READY, "False")
                taints = without_lifecycle_taints(node["spec"].get("taints") or [])
                node["spec"]["taints"] = taints + not_ready
            self.store.create(node)
            if not_ready:  # pods still bound to the name wait out their tolerations
                self.pods_lifecycle.taints_added(spec.hostname, not_ready)
            self._place_daemonsets()
            # the pods still bound to the name (the pod GC has not collected them yet): the
            # new kubelet finishes the Terminating ones and runs the rest
            if not all(_pod_ready(p) for p in self.pods(node=spec.hostname)):
                self._mark_pods(spec.hostname, True)
            self.pods_lifecycle.kubelet_back(spec.hostname)
        else:  # the kubelet updates the object's status: its addresses, then Ready
            self._readdress(spec)
            self.set_node_ready(spec.hostname, True, *KUBELET_READY)
            self.sync_machine_labels(spec.hostname)  # and Talos the labels of its config
        self.refresh_pools(spec.hostname)
        self.refresh_gpu_capacity(spec.hostname)

    def _readdress(self, spec: NodeSpec) -> None:
        """A kubelet registering into an existing Node (a replacement whose old Node was
        not deleted) posts its own addresses."""
        rt = by_kind("", "Node")
        fresh = self.node_object(spec)["status"]["addresses"]
        node = self.store.find(rt, "", spec.hostname) or {}
        if node.get("status", {}).get("addresses") == fresh:
            return

        def edit(obj: dict) -> None:
            obj["status"]["addresses"] = fresh

        self.store.mutate(rt, "", spec.hostname, edit, status_only=True)

    def seed(self) -> None:
        """Namespaces, a Node per spec, control-plane static pods, DaemonSets, CoreDNS."""
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease", "flux-system"):
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns},
                    "status": {"phase": "Active"},
                }
            )
        for spec in self.state.specs:
            self.store.create(self.node_object(spec))
        for spec in self.state.specs:
            self._seed_node_pods(spec)
        self._seed_daemonsets()

    def gpu_units(self, hostname: str) -> int:
        """nvidia.com/gpu the device plugin offers on a node: the P100s its VM holds and
        the host still has, times the time-slicing replicas (none without passthrough)."""
        vms = [
            self.state.vms[m.vmid]
            for m in self.state.machines.values()
            if m.hostname == hostname and m.vmid in self.state.vms
        ]
        # a parked old VM may share the name: the running one is the node's
        held = {
            a
            for vm in vms
            if vm.status == "running"
            for a in vm.pci_in_use
            if a in GPU_ADDRESSES and self.state.pci[a].present
        }
        return len(held) * GPU_REPLICAS

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
        cps = [s for s in self.state.specs if s.role == "controlplane"][:2]
        for i, spec in enumerate(cps):
            self.store.create(
                pod_object(
                    "kube-system",
                    f"coredns-6d4b9c7f5-{name_suffix(self.state.rng)}",
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
                for s in self.state.specs
                if self.node_exists(s.hostname)
                and labels_match(self.node_labels(s.hostname), node_selector)
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
            self._daemonset_pods(ns, name, nodes, cpu=cpu, memory=memory, gpu=gpu)

    def _daemonset_pods(
        self, ns: str, name: str, nodes: list[NodeSpec], *, cpu: str, memory: str, gpu: int = 0
    ) -> None:
        """One pod of the DaemonSet on each of `nodes` that has none yet."""
        existing = {
            p["spec"].get("nodeName")
            for p in self.pods(namespace=ns)
            if controller_of(p) == ("DaemonSet", name)
        }
        for s in nodes:
            if s.hostname not in existing:
                self.store.create(
                    pod_object(
                        ns,
                        f"{name}-{name_suffix(self.state.rng)}",
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

    def node_exists(self, name: str) -> bool:
        return self.store.find(by_kind("", "Node"), "", name) is not None

    def node_labels(self, name: str) -> dict[str, str]:
        node = self.store.find(by_kind("", "Node"), "", name)
        return (node or {}).get("metadata", {}).get("labels", {}) or {}

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[dict]:
        items, _ = self.store.list(by_kind("", "Pod"), namespace, copy=False)
        # copies of the matches only: a node's pods out of 20,000 copied every one
        return [
            clone(p)  # type: ignore[misc]
            for p in items
            if node is None or p.get("spec", {}).get("nodeName") == node
        ]

    def node_ready(self, name: str) -> bool:
        node = self.store.find(by_kind("", "Node"), "", name, copy=False)  # read only
        if not node:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def ready_status(self, name: str) -> str | None:
        """The Node's Ready condition status (True, False, Unknown), None without a Node."""
        node = self.store.find(by_kind("", "Node"), "", name, copy=False)
        if node is None:
            return None
        conds = node.get("status", {}).get("conditions", []) or []
        return next((c.get("status") for c in conds if c.get("type") == "Ready"), "Unknown")

    def schedule(self, pod: dict) -> str | None:
        """Pick a node for a pod the way a small scheduler would: Ready, schedulable,
        tolerated, selector-matching, with room for its GPU request; then spread from its
        siblings (`spread_rank`)."""
        spec = pod.get("spec", {})
        gpu = pod_gpu_request(pod)
        selector = spec.get("nodeSelector") or {}
        tolerates_cp = any(
            t.get("key") == "node-role.kubernetes.io/control-plane" or t.get("operator") == "Exists"
            for t in spec.get("tolerations", []) or []
        )
        nodes, _ = self.store.list(by_kind("", "Node"), copy=False)  # read only
        owner = owner_key(pod)
        siblings: dict[str, int] = {}
        if owner:  # siblings share the namespace: read only it, without copies
            ns = pod.get("metadata", {}).get("namespace")
            for other in self.store.list(by_kind("", "Pod"), ns, copy=False)[0]:
                if owner_key(other) == owner:
                    n = other.get("spec", {}).get("nodeName") or ""
                    siblings[n] = siblings.get(n, 0) + 1
        else:
            meta = pod.get("metadata", {})
            owner = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        candidates = []
        for node in nodes:
            name = node["metadata"]["name"]
            if node.get("spec", {}).get("unschedulable") or not self.node_ready(name):
                continue
            taints = node.get("spec", {}).get("taints") or []
            if any(t.get("effect") == "NoSchedule" for t in taints) and not tolerates_cp:
                continue
            if not labels_match(node["metadata"].get("labels", {}), selector):
                continue
            if gpu:
                cap = int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", 0))
                used = sum(pod_gpu_request(p) for p in self.pods(node=name))
                if used + gpu > cap:
                    continue
            candidates.append((spread_rank(owner, name, siblings.get(name, 0)), name))
        return min(candidates)[1] if candidates else None

    def set_node_ready(
        self, name: str, ready: bool, reason: str, message: str, status: str = ""
    ) -> None:
        """The Ready condition as the kubelet posts it (True, or False: NotReady) or as the
        node lifecycle controller sets it once the kubelet stopped posting (Unknown, the
        default when not ready); the controller's taints follow the condition, and pods on
        the node stop being Ready."""
        rt = by_kind("", "Node")
        if self.store.find(rt, "", name) is None:
            return
        if ready and not self.cni_running():  # the kubelet's runtime has no network yet
            ready, status, (reason, message) = False, "False", CNI_NOT_READY
        status = "True" if ready else (status or "Unknown")
        added: list[dict] = []

        def edit(node: dict) -> None:
            old = {c["type"]: c for c in node.get("status", {}).get("conditions", []) or []}
            was = old.get("Ready", {})
            changed = was.get("status") != status
            node["status"]["conditions"] = node_conditions(
                ready,
                reason,
                message,
                status,
                since=None if changed else was.get("lastTransitionTime"),
                # a kubelet that stopped posting last posted before it stopped
                heartbeat=None if ready else was.get("lastHeartbeatTime"),
            )
            taints = node.get("spec", {}).get("taints", []) or []
            if changed or not ready:
                wanted = lifecycle_taints(status)
                kept = [t for t in taints if _same_taint(t, wanted)]
                if len(kept) != len(wanted):  # new or different: timeAdded is now
                    kept = wanted
                    added.extend(wanted)
                taints = without_lifecycle_taints(taints) + kept
            node.setdefault("spec", {})["taints"] = taints

        self.store.mutate(rt, "", name, edit)
        self._mark_pods(name, ready)
        if added:
            self.pods_lifecycle.taints_added(name, added)
        if ready:
            self.pods_lifecycle.kubelet_back(name)

    def _mark_pods(self, node: str, ready: bool) -> None:
        """The pods on `node` are Ready with it (its kubelet runs them) or not."""
        for pod in self.pods(node=node):

            def mark(p: dict, ready: bool = ready) -> None:
                p.setdefault("status", {})["conditions"] = pod_conditions(ready)
                for cs in p["status"].get("containerStatuses", []):
                    cs["ready"] = ready

            self.store.mutate(
                by_kind("", "Pod"), pod["metadata"]["namespace"], pod["metadata"]["name"], mark
            )

    def set_pool_state(self, name: str, state: str) -> None:
        rt = by_kind("openebs.io", "DiskPool")
        items, _ = self.store.list(rt)
        for pool in items:
            if pool["metadata"]["name"] == name:

                def edit(p: dict) -> None:
                    p.setdefault("status", {})["pool_status"] = state

                self.store.mutate(rt, pool["metadata"]["namespace"], name, edit, status_only=True)

    def refresh_pools(self, node: str) -> None:
        """Mayastor's operator looks at the node's pools again (node registered or gone)."""
        from dapper.lab.world.pools import pool_state

        rt = by_kind("openebs.io", "DiskPool")
        items, _ = self.store.list(rt)
        for pool in items:
            if (pool.get("spec") or {}).get("node") != node or "status" not in pool:
                continue
            state, missing = pool_state(self.state, pool)

            def edit(p: dict, state: str = state, missing: list[str] = missing) -> None:
                status = p.setdefault("status", {})
                status["pool_status"] = state
                status["cr_state"] = "Creating" if missing else "Created"

            self.store.mutate(
                rt, pool["metadata"]["namespace"], pool["metadata"]["name"], edit, status_only=True
            )

    def refresh_gpu_capacity(self, hostname: str | None = None) -> None:
        """The GPU nodes' (or one node's) nvidia.com/gpu from what their VMs hold now."""
        for spec in self.state.specs:
            if not spec.gpu or (hostname is not None and spec.hostname != hostname):
                continue
            units = self.gpu_units(spec.hostname)
            if self.node_exists(spec.hostname):

                def edit(node: dict, units: int = units) -> None:
                    node["status"]["capacity"]["nvidia.com/gpu"] = str(units)
                    node["status"]["allocatable"]["nvidia.com/gpu"] = str(units)

                self.store.mutate(by_kind("", "Node"), "", spec.hostname, edit)

    def cordon_and_drain(self, name: str) -> None:
        """What Talos's graceful reset does to its Node: cordon it and evict its pods
        (controllers re-create theirs elsewhere; DaemonSet pods stay). The Node stays."""
        with self.lock:
            if not self.node_exists(name):
                return

            def cordon(node: dict) -> None:
                node.setdefault("spec", {})["unschedulable"] = True

            self.store.mutate(by_kind("", "Node"), "", name, cordon)
            for pod in self.pods(node=name):
                if controller_of(pod)[0] == "DaemonSet":
                    continue
                meta = pod["metadata"]
                marked = self.pods_lifecycle.delete(meta["namespace"], meta["name"])
                # Talos waits for the drain: its kubelet stops the pods before the reset
                with contextlib.suppress(NotFound):
                    self.pods_lifecycle.remove(marked)

    def delete_node(self, name: str) -> None:
        """The Node object goes (kubectl delete node). Its pods stay bound to the name
        until the pod GC collects them after its quarantine; Mayastor sees the node go."""
        with self.lock:
            with contextlib.suppress(NotFound):
                self.store.delete(by_kind("", "Node"), "", name)
            self.node_deleted(name)

    def node_deleted(self, name: str) -> None:
        """After a Node object was deleted (through the API or delete_node)."""
        self.refresh_pools(name)
        self.pods_lifecycle.node_deleted(name)

    def replace_pod(self, pod: dict) -> dict | None:
        """What a ReplicaSet/StatefulSet controller does when its pod is gone: a new one,
        scheduled elsewhere (or Pending). DaemonSet and mirror pods are not replaced."""
        kind, owner = controller_of(pod)
        if kind not in ("ReplicaSet", "StatefulSet", "Deployment"):
            return None
        meta = pod["metadata"]
        name = meta["name"] if kind == "StatefulSet" else f"{owner}-{name_suffix(self.state.rng)}"
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
        new["status"] = pod_status(bool(node), node is not None)
        return self.store.create(new)

    def reschedule_pending(self) -> None:
        for pod in self.pods():
            if not pod["spec"].get("nodeName"):
                node = self.schedule(pod)
                if node:

                    def bind(p: dict, node: str = node) -> None:
                        p["spec"]["nodeName"] = node
                        p["status"] = pod_status(True, True)

                    self.store.mutate(
                        by_kind("", "Pod"),
                        pod["metadata"]["namespace"],
                        pod["metadata"]["name"],
                        bind,
                    )


def _same_taint(taint: dict, wanted: list[dict]) -> bool:
    return any(taint.get("key") == w["key"] and taint.get("effect") == w["effect"] for w in wanted)


def _merge_string_data(rt: ResourceType, obj: dict, _created: bool) -> None:
    """A Secret's stringData is write-only: the API server merges it into data (base64,
    winning over data's own key) and never stores or returns it."""
    if (rt.group, rt.kind) != ("", "Secret") or "stringData" not in obj:
        return
    data = dict(obj.get("data") or {})
    for key, value in (obj.pop("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data


def _admit_tolerations(rt: ResourceType, obj: dict, created: bool) -> None:
    """The DefaultTolerationSeconds admission plugin, on every new Pod."""
    if created and rt.group == "" and rt.kind == "Pod":
        default_tolerations(obj)


def _pod_ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
