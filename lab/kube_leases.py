"""Node heartbeat Leases (coordination.k8s.io/v1 in kube-node-lease), as kubelets keep them.

A healthy kubelet renews its node's Lease every RENEW_SECONDS; `kubectl describe node`
shows it, and the node lifecycle controller reads it. The lab's kubelet posts while its
Node is Ready: a node whose kubelet stopped (the node-notready fault, a stopped VM) keeps a
Lease whose renewTime ages, as on a real cluster. A deleted Node's Lease goes with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time

from dapper.lab.kinds import by_kind
from dapper.lab.store import AlreadyExists, NotFound, ObjectStore

log = logging.getLogger(__name__)

NAMESPACE = "kube-node-lease"
RENEW_SECONDS = 10.0
LEASE_DURATION = 40


def micro_time(t: float | None = None) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds."""
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _kubelet_posting(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", []) or []
    )


def lease_object(node: dict, now: float) -> dict:
    name = node["metadata"]["name"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": node["metadata"].get("creationTimestamp"),
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": node["metadata"].get("uid") or hashlib.md5(name.encode()).hexdigest(),
                }
            ],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": micro_time(now),
        },
    }


class NodeLeases:
    """Renews every posting node's Lease on a timer; started and stopped with the server."""

    def __init__(self, store: ObjectStore, interval: float = RENEW_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.renew()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-node-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except Exception:  # a missed heartbeat must not end the heartbeats
                log.exception("lab node lease renewal failed")

    def renew(self) -> None:
        """One heartbeat round: renew posting nodes' Leases, drop Leases of deleted Nodes."""
        lease_rt = by_kind("coordination.k8s.io", "Lease")
        nodes, _ = self.store.list(by_kind("", "Node"), copy=False)
        names = {n["metadata"]["name"] for n in nodes}
        now = time.time()
        for node in nodes:
            if not _kubelet_posting(node):
                continue
            name = node["metadata"]["name"]
            if self.store.find(lease_rt, NAMESPACE, name, copy=False) is None:
                with contextlib.suppress(AlreadyExists):
                    self.store.create(lease_object(node, now), rt=lease_rt)
                continue

            def edit(lease: dict) -> None:
                lease["spec"]["renewTime"] = micro_time(now)

            with contextlib.suppress(NotFound):
                self.store.mutate(lease_rt, NAMESPACE, name, edit)
        for lease in self.store.list(lease_rt, NAMESPACE, copy=False)[0]:
            if lease["metadata"]["name"] not in names:
                with contextlib.suppress(NotFound):
                    self.store.delete(lease_rt, NAMESPACE, lease["metadata"]["name"])
