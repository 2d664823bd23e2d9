"""CSI volumes attached to nodes, as Kubernetes v1.33's attach-detach controller keeps them.

A pod bound to a node that uses a claim bound to a CSI PersistentVolume needs that volume
attached there: the controller creates a storage.k8s.io/v1 VolumeAttachment (named
`csi-<sha256 of PV name, attacher and node>`) and the CSI attacher marks it attached; the
kubelet then starts the pod. A ReadWriteOnce volume attached to another node is not
attached a second time: the pod stays ContainerCreating and gets the controller's
`FailedAttachVolume` event ("Multi-Attach error for volume ... Volume is already used by
pod(s) ..." while a pod on the other node still uses it, "... exclusively attached to one
node and can't be attached to another" once none does).

A volume no pod on its node uses any more is detached: at once from a node whose kubelet
runs (it unmounts first), else only after maxWaitForUnmountDuration (6 minutes, on the
lab's Kubernetes clock, `Timings.kube_seconds`) or at once when the node carries the
`node.kubernetes.io/out-of-service` taint. On a dead node the old pod stays Terminating
until it is force-deleted, so its StatefulSet's successor waits for the force delete and
then for the detach.

Everything follows Pod store events (only pods that use claims), and reads only the
objects it names: nothing scans all pods or all objects.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

from dapper.lab.kinds import by_kind
from dapper.lab.kube_controllers import emit_event
from dapper.lab.store import NotFound, WatchEvent, now_rfc3339
from dapper.lab.world.kube_objects import pod_status
from dapper.lab.world.state import WorldState

POD = by_kind("", "Pod")
PVC = by_kind("", "PersistentVolumeClaim")
PV = by_kind("", "PersistentVolume")
NODE = by_kind("", "Node")
ATTACHMENT = by_kind("storage.k8s.io", "VolumeAttachment")
MAX_WAIT_FOR_UNMOUNT = 360.0  # maxWaitForUnmountDuration, 6 minutes
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
COMPONENT = "attachdetach-controller"
EXCLUSIVE = "Volume is already exclusively attached to one node and can't be attached to another"


def attachment_name(pv: str, attacher: str, node: str) -> str:
    """The CSI attacher's VolumeAttachment name for (PV, driver, node)."""
    return "csi-" + hashlib.sha256(f"{pv}{attacher}{node}".encode()).hexdigest()


def claims_of(pod: dict) -> list[str]:
    return [
        str(v["persistentVolumeClaim"]["claimName"])
        for v in (pod.get("spec") or {}).get("volumes") or []
        if isinstance(v, dict) and (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def _key(pod: dict) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def creating_status() -> dict:
    """A scheduled pod whose volumes are not attached: ContainerCreating, not Ready."""
    now = now_rfc3339()
    status = pod_status(True, False)
    status["phase"] = "Pending"
    status["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "False", "lastTransitionTime": now},
        {"type": "Ready", "status": "False", "lastTransitionTime": now},
    ]
    for c in status.get("containerStatuses") or []:
        c.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
    return status


class AttachDetach:
    """See the module docstring. `node_healthy(node)` says whether a node's kubelet posts
    (it would unmount a volume no pod uses)."""

    def __init__(self, state: WorldState, node_healthy: Callable[[str], bool]) -> None:
        self.state = state
        self.store = state.store
        self.node_healthy = node_healthy
        # PV -> {(namespace, pod): node} of the pods bound to a node that use it
        self.users: dict[str, dict[tuple[str, str], str]] = {}
        self.waiting: dict[str, set[tuple[str, str]]] = {}  # PV -> pods it blocks
        self.detach_due: dict[tuple[str, str], int] = {}  # (PV, node) -> detach token
        self.attached: dict[str, dict[str, str]] = {}  # PV -> node -> VolumeAttachment
        self._tokens = 0
        self.store.add_listener(self._on_store_event)

    # -- events (under the store lock: only schedule work) ------------------------------

    def _on_store_event(self, event: WatchEvent) -> None:
        if tuple(event.key[:2]) != ("", "pods") or not claims_of(event.obj):
            return
        key = (str(event.key[2]), str(event.key[3]))
        if event.type == "DELETED":
            gone = event.obj
            self.state.later(0, lambda: self._pod_gone(key, gone))
        else:
            self.state.later(0, lambda: self._reconcile(key))

    # -- attach -----------------------------------------------------------------------------

    def _volume(self, ns: str, claim: str) -> tuple[str, str, bool] | None:
        """(PV name, CSI driver, ReadWriteOnce) of a claim bound to a CSI volume."""
        pvc = self.store.find(PVC, ns, claim, copy=False)
        name = ((pvc or {}).get("spec") or {}).get("volumeName")
        if not name:
            return None
        pv = self.store.find(PV, "", name, copy=False)
        spec = (pv or {}).get("spec") or {}
        driver = (spec.get("csi") or {}).get("driver")
        if not driver:
            return None
        modes = spec.get("accessModes") or (pvc or {}).get("spec", {}).get("accessModes") or []
        return str(name), str(driver), "ReadWriteOnce" in modes

    def _attached_to(self, pv: str) -> list[str]:
        """The nodes `pv` is attached to (their VolumeAttachment exists)."""
        return [
            node
            for node, name in self.attached.get(pv, {}).items()
            if self.store.find(ATTACHMENT, "", name, copy=False) is not None
        ]

    def _reconcile(self, key: tuple[str, str]) -> None:
        with self.state.lock:
            pod = self.store.find(POD, *key, copy=False)
            if pod is None:
                return
            node = (pod.get("spec") or {}).get("nodeName") or ""
            blocked: list[str] = []
            for claim in claims_of(pod):
                vol = self._volume(key[0], claim)
                if vol is None:
                    continue
                pv, driver, rwo = vol
                if node:
                    self.users.setdefault(pv, {})[key] = node
                    self.detach_due.pop((pv, node), None)  # in use there again
                if not node or pod["metadata"].get("deletionTimestamp"):
                    continue
                elsewhere = [n for n in self._attached_to(pv) if n != node]
                if rwo and elsewhere:
                    blocked.append(pv)
                    self.waiting.setdefault(pv, set()).add(key)
                    continue
                self.waiting.get(pv, set()).discard(key)
                self._attach(pv, driver, node)
            self._set_started(key, pod, blocked)

    def _attach(self, pv: str, driver: str, node: str) -> None:
        name = attachment_name(pv, driver, node)
        self.attached.setdefault(pv, {})[node] = name
        if self.store.find(ATTACHMENT, "", name, copy=False) is not None:
            return
        self.store.create(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "VolumeAttachment",
                "metadata": {
                    "name": name,
                    "annotations": {"csi.alpha.kubernetes.io/node-id": node},
                },
                "spec": {
                    "attacher": driver,
                    "nodeName": node,
                    "source": {"persistentVolumeName": pv},
                },
                "status": {"attached": True},
            },
            rt=ATTACHMENT,
        )

    def _set_started(self, key: tuple[str, str], pod: dict, blocked: list[str]) -> None:
        """ContainerCreating (with the controller's event, once per pod) while a volume is
        attached elsewhere; running once all are attached."""
        creating = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get(
            "state", {}
        ).get("waiting", {}).get("reason") == "ContainerCreating"
        if blocked and not creating:
            self.store.mutate(POD, *key, lambda p: p.update(status=creating_status()))
            for pv in blocked:
                emit_event(
                    self.store,
                    pod,
                    "FailedAttachVolume",
                    self._multi_attach_message(pv, key),
                    type_="Warning",
                    component=COMPONENT,
                )
        elif not blocked and creating:
            self.store.mutate(POD, *key, lambda p: p.update(status=pod_status(True, True)))

    def _multi_attach_message(self, pv: str, key: tuple[str, str]) -> str:
        mine = self.users.get(pv, {}).get(key, "")
        others = [(ns, n) for (ns, n), node in self.users.get(pv, {}).items() if node != mine]
        same = sorted(n for ns, n in others if ns == key[0])
        foreign = [n for ns, n in others if ns != key[0]]
        if not others:
            detail = EXCLUSIVE
        elif same and not foreign:
            detail = f"Volume is already used by pod(s) {', '.join(same)}"
        elif not same:
            detail = f"Volume is already used by {len(foreign)} pod(s) in different namespaces"
        else:
            detail = (
                f"Volume is already used by pod(s) {', '.join(same)} and "
                f"{len(foreign)} pod(s) in different namespaces"
            )
        return f'Multi-Attach error for volume "{pv}" {detail}'

    # -- detach -----------------------------------------------------------------------------

    def _pod_gone(self, key: tuple[str, str], pod: dict) -> None:
        with self.state.lock:
            for claim in claims_of(pod):
                vol = self._volume(key[0], claim)
                if vol is None:
                    continue
                pv = vol[0]
                node = self.users.get(pv, {}).pop(key, None)
                self.waiting.get(pv, set()).discard(key)
                if node and node not in self.users.get(pv, {}).values():
                    self._detach_later(pv, node)

    def _detach_later(self, pv: str, node: str) -> None:
        self._tokens += 1
        token = self._tokens
        self.detach_due[(pv, node)] = token
        at_once = self.node_healthy(node) or self._out_of_service(node)
        delay = 0.0 if at_once else self.state.timings.kube_seconds(MAX_WAIT_FOR_UNMOUNT)
        self.state.later(delay, lambda: self._detach(pv, node, token))

    def _out_of_service(self, node: str) -> bool:
        obj = self.store.find(NODE, "", node, copy=False)
        taints = ((obj or {}).get("spec") or {}).get("taints") or []
        return any(t.get("key") == OUT_OF_SERVICE for t in taints)

    def _detach(self, pv: str, node: str, token: int) -> None:
        with self.state.lock:
            if self.detach_due.get((pv, node)) != token:
                return  # used there again, or a later detach is due
            del self.detach_due[(pv, node)]
            name = self.attached.get(pv, {}).pop(node, "")
            if name:
                with contextlib.suppress(NotFound):
                    self.store.delete(ATTACHMENT, "", name)
            for key in sorted(self.waiting.pop(pv, set())):
                self.state.later(0, lambda key=key: self._reconcile(key))
