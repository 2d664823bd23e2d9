"""Pods through a node's death, as Kubernetes v1.33 runs them: graceful deletion that only
the pod's kubelet completes, taint-based eviction and the pod garbage collector.

- A graceful delete (kubectl delete, the eviction API, the taint eviction controller) sets
  metadata.deletionTimestamp and deletionGracePeriodSeconds: the pod is Terminating. A
  ReplicaSet replaces it at once elsewhere (a terminating pod is not active); a StatefulSet
  waits until the object is gone (never two pods of one ordinal). The pod's kubelet, when
  it posts, stops the containers and removes the object (`Timings.container_stop`, at most
  the grace period); a dead kubelet never does, so the pod stays until a force delete
  (gracePeriodSeconds=0), the kubelet's return, or the pod GC once the Node is deleted.
- The taint eviction controller marks a pod on a NoExecute-tainted node for deletion once
  its least tolerationSeconds has passed since the taint's timeAdded (0: at once).
- The pod GC force-deletes pods bound to a Node that no longer exists after its 40 s
  quarantine, first marking them Failed with a DisruptionTarget condition.

Every delay is on the Kubernetes clock (`Timings.kube_seconds`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from dapper.lab.kinds import by_kind
from dapper.lab.kube_controllers import emit_event
from dapper.lab.store import NotFound, now_rfc3339
from dapper.lab.world.kube_objects import controller_of
from dapper.lab.world.kube_taints import eviction_delay
from dapper.lab.world.state import WorldState

POD = by_kind("", "Pod")
NODE = by_kind("", "Node")
DEFAULT_GRACE = 30  # a pod's terminationGracePeriodSeconds when it sets none
POD_GC_QUARANTINE = 40.0  # seconds a Node must have been gone before the pod GC acts
REPLACED_AT_MARK = ("ReplicaSet", "Deployment")


def terminating(pod: dict) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def disruption_condition(reason: str, message: str) -> dict:
    return {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_rfc3339(),
    }


def _with_condition(pod: dict, condition: dict) -> None:
    status = dict(pod.get("status") or {})
    conds = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
    status["conditions"] = [*conds, condition]
    pod["status"] = status


class PodLifecycle:
    """See the module docstring. `kubelet_posting(node)` says whether that node's kubelet
    runs and posts (set by the world: the machine answers and its kubelet is not stopped);
    `replace(pod)` is the owning controller creating a successor."""

    def __init__(
        self,
        state: WorldState,
        replace: Callable[[dict], object],
        kubelet_posting: Callable[[str], bool],
    ) -> None:
        self.state = state
        self.store = state.store
        self.replace = replace
        self.kubelet_posting = kubelet_posting

    # -- deletion --------------------------------------------------------------------------

    def delete(
        self, ns: str, name: str, grace: int | None = None, condition: dict | None = None
    ) -> dict:
        """The API server's pod delete: at once when forced (grace 0), unscheduled or
        finished; otherwise Terminating until the kubelet confirms. Returns the object as
        the DELETE answers it."""
        with self.state.lock:
            pod = self.store.get(POD, ns, name)
            spec = pod.get("spec") or {}
            if grace is None:
                grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
            phase = (pod.get("status") or {}).get("phase")
            if grace <= 0 or not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                return self.remove(pod)
            meta = pod["metadata"]
            if terminating(pod) and grace >= int(meta.get("deletionGracePeriodSeconds") or 0):
                return pod  # already going, no sooner

            def mark(p: dict) -> None:
                p["metadata"]["deletionTimestamp"] = now_rfc3339(self.state.clock.now() + grace)
                p["metadata"]["deletionGracePeriodSeconds"] = grace
                if condition is not None:
                    _with_condition(p, condition)

            first = not terminating(pod)
            marked = self.store.mutate(POD, ns, name, mark)
            if first and controller_of(pod)[0] in REPLACED_AT_MARK:
                self.replace(marked)
            if self.kubelet_posting(spec["nodeName"]):
                self._confirm_later(marked, grace)
            return marked

    def remove(self, pod: dict) -> dict:
        """The object goes for good. A StatefulSet now re-creates the ordinal; a ReplicaSet
        replaces a pod it had not replaced yet (one removed without Terminating first)."""
        meta = pod["metadata"]
        gone = self.store.delete(POD, meta["namespace"], meta["name"])
        kind = controller_of(pod)[0]
        if kind == "StatefulSet" or (kind in REPLACED_AT_MARK and not terminating(pod)):
            self.replace(pod)
        return gone

    def _confirm_later(self, pod: dict, grace: float) -> None:
        """The kubelet stops the containers (SIGKILL at the grace's end) and removes the pod."""
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta.get("uid")
        node = pod["spec"]["nodeName"]
        delay = min(self.state.timings.container_stop, self.state.timings.kube_seconds(grace))

        def confirm() -> None:
            with self.state.lock:
                live = self.store.find(POD, ns, name)
                if live is None or live["metadata"].get("uid") != uid or not terminating(live):
                    return
                if self.kubelet_posting(node):
                    self.remove(live)

        self.state.later(delay, confirm)

    def kubelet_back(self, node: str) -> None:
        """A kubelet posts again (or a new Node registered under the name): it finishes
        the deletions that waited for it."""
        for pod in self._pods_on(node):
            if terminating(pod):
                self._confirm_later(pod, pod["metadata"].get("deletionGracePeriodSeconds") or 0)

    # -- taint-based eviction --------------------------------------------------------------

    def taints_added(self, node: str, taints: list[dict]) -> None:
        """NoExecute taints went on `node`: each pod is marked for deletion when its
        toleration runs out, unless the taints are gone by then."""
        added = {t.get("timeAdded") for t in taints if t.get("effect") == "NoExecute"}
        for pod in self._pods_on(node):
            delay = eviction_delay(pod, taints)
            if delay is None or terminating(pod):
                continue
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"], str(meta.get("uid", "")))
            self.state.later(
                self.state.timings.kube_seconds(delay),
                lambda key=key: self._taint_evict(node, *key, added),
            )

    def _taint_evict(self, node: str, ns: str, name: str, uid: str, added: set) -> None:
        with self.state.lock:
            live = self.store.find(POD, ns, name)
            node_obj = self.store.find(NODE, "", node)
            if live is None or live["metadata"].get("uid") != uid or terminating(live):
                return
            if node_obj is None or live["spec"].get("nodeName") != node:
                return
            taints = (node_obj.get("spec") or {}).get("taints") or []
            if not any(t.get("timeAdded") in added for t in taints):
                return  # the node came back (or was tainted anew: that pass decides)
            delay = eviction_delay(live, taints)
            if delay is None:
                return
            emit_event(
                self.store,
                live,
                "TaintManagerEviction",
                f"Marking for deletion Pod {ns}/{name}",
                component="taint-eviction-controller",
            )
            with contextlib.suppress(NotFound):
                self.delete(
                    ns,
                    name,
                    condition=disruption_condition(
                        "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"
                    ),
                )

    # -- pod GC ----------------------------------------------------------------------------

    def node_deleted(self, node: str) -> None:
        """The Node object went: after the quarantine, its pods are orphans (unless a Node
        of that name registered meanwhile)."""
        delay = self.state.timings.kube_seconds(POD_GC_QUARANTINE)
        self.state.later(delay, lambda: self._collect_orphans(node))

    def _collect_orphans(self, node: str) -> None:
        with self.state.lock:
            if self.store.find(NODE, "", node) is not None:
                return
            for pod in self._pods_on(node):
                meta = pod["metadata"]

                def fail(p: dict) -> None:
                    _with_condition(
                        p, disruption_condition("DeletionByPodGC", "PodGC: node no longer exists")
                    )
                    p["status"]["phase"] = "Failed"

                with contextlib.suppress(NotFound):
                    failed = self.store.mutate(POD, meta["namespace"], meta["name"], fail)
                    # replaced as the pod was before it failed (the GC's force delete)
                    self.remove({**failed, "metadata": meta})

    def _pods_on(self, node: str) -> list[dict]:
        items, _ = self.store.list(POD)
        return [p for p in items if (p.get("spec") or {}).get("nodeName") == node]
