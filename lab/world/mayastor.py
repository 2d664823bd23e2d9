"""Mayastor's volumes and replicas, as its CSI driver and control plane keep them.

A PersistentVolumeClaim on a StorageClass of the `io.openebs.csi-mayastor` provisioner gets
a volume (uuid = its PV's name without `pvc-`) with `repl` replicas, each on an Online
DiskPool of a different node (the emptiest first), and a PersistentVolume bound to the
claim, as the external-provisioner and the CSI controller make them. A claim no pool can
take stays Pending until a pool comes Online (or its StorageClass appears); one that named
no class while there was none by default gets the default class once one appears, as the
PV controller assigns it (Kubernetes >= 1.28). Deleting the claim deletes the PV and the
volume (reclaimPolicy Delete) and frees its replicas' space.

A replica lives on its pool's disk: it is Online while that pool is Online on that same
disk, Unknown while the pool's node is down (no io-engine answers for it), and lost for
good when the pool is rebuilt on a fresh disk (a new pool starts empty). A volume is
Online with all its replicas, Degraded with some, Faulted with none; a Degraded volume
with another Online pool to use rebuilds a replica there, which takes `rebuild_seconds`
(lab time) with a visible progress. A pool that holds replicas cannot be deleted: its
DiskPool keeps the operator's finalizer and stays Terminating until it is empty.

Everything here follows store events of three kinds (claims, pools, storage classes) on
its own thread (a store listener may not wait for the world lock), and reads only the
objects it names: nothing scans all pods or all objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dapper.lab.kinds import by_kind
from dapper.lab.store import NotFound, WatchEvent, now_rfc3339
from dapper.lab.world.state import WorldState

log = logging.getLogger("dapper.lab.mayastor")

PROVISIONER = "io.openebs.csi-mayastor"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
POOL_FINALIZER = "openebs.io/diskpool-protection"
PVC = by_kind("", "PersistentVolumeClaim")
PV = by_kind("", "PersistentVolume")
STORAGE_CLASS = by_kind("storage.k8s.io", "StorageClass")
DISK_POOL = by_kind("openebs.io", "DiskPool")
_UNITS = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
}


def storage_bytes(value: object) -> int:
    """A storage quantity ("5Gi", "100G", "1073741824") in bytes."""
    text = str(value or "0").strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * _UNITS[unit])
    return int(float(text))


@dataclass
class Replica:
    uuid: str
    pool: str  # DiskPool name (= Mayastor pool id)
    pool_namespace: str
    node: str
    disk: str  # the pool's disk when the replica was made: it lives there
    allocated: int  # bytes the (thin) replica holds on the pool
    rebuild_started: float | None = None  # lab time; None: in sync


@dataclass
class Volume:
    uuid: str
    size: int
    num_replicas: int
    thin: bool
    claim: tuple[str, str]  # namespace, name
    replicas: list[Replica] = field(default_factory=list)


def _fill(claim: tuple[str, str]) -> float:
    """How full a thin volume is, stable per claim (not per uid: the lab's screens stay the
    same from run to run): 10..60 %."""
    key = "/".join(claim).encode()
    return 0.1 + (int(hashlib.sha256(key).hexdigest(), 16) % 500) / 1000


class MayastorWorld:
    """The volumes and replicas of the lab's Mayastor (see the module docstring)."""

    def __init__(self, state: WorldState) -> None:
        self.state = state
        self.store = state.store
        self.volumes: dict[str, Volume] = {}
        self.by_claim: dict[tuple[str, str], str] = {}
        self.pending: dict[tuple[str, str], None] = {}  # claims waiting for a pool
        # claims that named no class while there was no default one: a default class
        # that appears later is written into them (see `assign_default_class`)
        self.classless: dict[tuple[str, str], None] = {}
        # Store listeners run under the store lock, which must never wait for the world
        # lock (the world takes them the other way round): they only queue work, which
        # this thread does under the world lock.
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="lab-mayastor", daemon=True)
        self._worker.start()
        self.store.add_listener(self._on_store_event)
        self.store.add_defaulter(self._admit_claim)

    def _run(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # one failed step must not stop the provisioner
                log.exception("mayastor step failed")

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued work and end the thread (bounded: a stopped lab leaves none)."""
        self._work.put(None)
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)

    def _admit_claim(self, rt: Any, obj: dict[str, Any], created: bool) -> None:
        """A new claim as the API server stores it: Pending, and on the default class when
        it names none (the DefaultStorageClass admission plugin)."""
        if not created or rt.group != "" or rt.kind != "PersistentVolumeClaim":
            return
        spec = obj.get("spec") or {}
        if "storageClassName" not in spec:
            default = self.storage_class(obj)
            if default is not None:
                obj["spec"] = {**spec, "storageClassName": default["metadata"]["name"]}
        if not (obj.get("status") or {}).get("phase"):
            obj["status"] = {"phase": "Pending"}

    # -- events (under the store lock: only schedule work) ------------------------------

    def _on_store_event(self, event: WatchEvent) -> None:
        kind = tuple(event.key[:2])
        if kind == ("", "persistentvolumeclaims"):
            claim = (event.key[2], event.key[3])
            if event.type == "ADDED":
                self._work.put(lambda: self.provision(*claim))
            elif event.type == "DELETED":
                self._work.put(lambda: self.release(*claim))
        elif kind in (("openebs.io", "diskpools"), ("storage.k8s.io", "storageclasses")):
            if kind[1] == "storageclasses" and self.classless and event.type != "DELETED":
                self._work.put(self.assign_default_class)
            if self.pending and event.type != "DELETED":
                self._work.put(self.retry_pending)
            if kind[1] == "diskpools" and self.volumes:
                pool = event.key[3]
                self._work.put(lambda: self.pool_changed(pool))

    def pool_changed(self, pool: str) -> None:
        """A pool came or went: the volumes with a replica there may rebuild elsewhere."""
        with self.state.lock:
            for volume in {id(v): v for v, _ in self.replicas_on(pool)}.values():
                self.heal(volume)

    def assign_default_class(self) -> None:
        """Kubernetes' retroactive default StorageClass assignment (GA in 1.28): once a
        default class exists, the PV controller writes it into every unbound claim whose
        storageClassName is unset (not "", which asks for no class), which then
        provisions as if it had named it."""
        with self.state.lock:
            default = self.storage_class({})
            if default is None:
                return
            name = default["metadata"]["name"]

            def assign(o: dict[str, Any]) -> None:
                spec = o.setdefault("spec", {})
                if spec.get("storageClassName") is None and not spec.get("volumeName"):
                    spec["storageClassName"] = name

            for claim in list(self.classless):
                self.classless.pop(claim, None)
                with contextlib.suppress(NotFound):
                    self.store.mutate(PVC, *claim, assign)
                self.provision(*claim)

    def retry_pending(self) -> None:
        for claim in list(self.pending):
            self.provision(*claim)

    # -- provisioning ---------------------------------------------------------------------

    def storage_class(self, pvc: dict[str, Any]) -> dict[str, Any] | None:
        """The claim's StorageClass: named, or the default one when it names none."""
        name = (pvc.get("spec") or {}).get("storageClassName")
        if name:
            return self.store.find(STORAGE_CLASS, "", name, copy=False)
        if name == "":
            return None  # "" asks for no class: a pre-provisioned PV only
        for sc in self.store.list(STORAGE_CLASS)[0]:  # a handful of classes
            if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true":
                return sc
        return None

    def is_mayastor(self, pvc: dict[str, Any]) -> bool:
        """Whether Mayastor's provisioner owns this claim (also while the class it names is
        missing: the claim then waits for it). A claim of no class with no default class
        waits for a pre-provisioned PV, not for Mayastor."""
        name = (pvc.get("spec") or {}).get("storageClassName")
        sc = self.storage_class(pvc)
        if sc is None:
            return bool(name)
        return sc.get("provisioner") == PROVISIONER

    def provision(self, ns: str, name: str) -> None:
        with self.state.lock:
            pvc = self.store.find(PVC, ns, name)
            if pvc is None or (pvc.get("status") or {}).get("phase") == "Bound":
                self.pending.pop((ns, name), None)
                return
            if (pvc.get("spec") or {}).get("volumeName"):
                return  # asks for a given PV: the binder's business, not the provisioner's
            if (pvc.get("spec") or {}).get("storageClassName") is None:
                # no class yet (none was default when it was made): the provisioner never
                # takes such a claim; the retroactive assignment writes one first, also
                # when the default appeared before this step ran
                self.classless[(ns, name)] = None
                if self.storage_class(pvc) is not None:
                    self._work.put(self.assign_default_class)
                return
            sc = self.storage_class(pvc)
            if sc is None or sc.get("provisioner") != PROVISIONER:
                if sc is None and self.is_mayastor(pvc):
                    self.pending[(ns, name)] = None  # names a class not applied yet
                return
            params = sc.get("parameters") or {}
            want = max(1, int(str(params.get("repl", "1"))))
            spec = pvc.get("spec") or {}
            size = storage_bytes(
                ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            )
            pools = self._placement(want)
            if len(pools) < want:
                self.pending[(ns, name)] = None
                return
            self.pending.pop((ns, name), None)
            uid = str(pvc["metadata"].get("uid") or uuidlib.uuid4())
            volume = Volume(
                uuid=uid,
                size=size,
                num_replicas=want,
                thin=str(params.get("thin", "false")).lower() == "true",
                claim=(ns, name),
            )
            for pool in pools:
                volume.replicas.append(self._replica(volume, pool))
            self.volumes[uid] = volume
            self.by_claim[(ns, name)] = uid
            self._create_pv(pvc, sc, volume)
            self._bind(pvc, volume)
            for pool in pools:
                self.refresh_pool_usage(pool["metadata"]["namespace"], pool["metadata"]["name"])

    def _replica(self, volume: Volume, pool: dict[str, Any], *, at: float | None = None) -> Replica:
        spec = pool.get("spec") or {}
        seq = sum(1 for _ in volume.replicas)
        rid = str(
            uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"{volume.uuid}/{pool['metadata']['name']}/{seq}")
        )
        allocated = int(volume.size * _fill(volume.claim)) if volume.thin else volume.size
        return Replica(
            uuid=rid,
            pool=pool["metadata"]["name"],
            pool_namespace=pool["metadata"]["namespace"],
            node=str(spec.get("node") or ""),
            disk=str((spec.get("disks") or [""])[0]),
            allocated=allocated,
            rebuild_started=at,
        )

    def _placement(self, want: int, avoid: set[str] | None = None) -> list[dict[str, Any]]:
        """Up to `want` Online pools on distinct nodes (not in `avoid`), emptiest first."""
        pools = [
            p
            for p in self.store.list(DISK_POOL)[0]  # one per storage node
            if (p.get("status") or {}).get("pool_status") == "Online"
            and not p["metadata"].get("deletionTimestamp")
        ]
        pools.sort(key=lambda p: (self.committed(p["metadata"]["name"]), p["metadata"]["name"]))
        chosen: list[dict[str, Any]] = []
        nodes = set(avoid or ())
        for p in pools:
            node = str((p.get("spec") or {}).get("node") or "")
            if node in nodes:
                continue
            nodes.add(node)
            chosen.append(p)
            if len(chosen) == want:
                break
        return chosen

    def _create_pv(self, pvc: dict[str, Any], sc: dict[str, Any], volume: Volume) -> None:
        spec = pvc.get("spec") or {}
        meta = pvc["metadata"]
        params = {str(k): str(v) for k, v in (sc.get("parameters") or {}).items()}
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{volume.uuid}",
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                "finalizers": ["kubernetes.io/pv-protection"],
            },
            "spec": {
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {
                    "storage": str(
                        (spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi")
                    )
                },
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "csi": {
                    "driver": PROVISIONER,
                    "fsType": params.get("csi.storage.k8s.io/fstype", "ext4"),
                    "volumeHandle": volume.uuid,
                    "volumeAttributes": {
                        **{k: v for k, v in params.items() if not k.startswith("csi.storage")},
                        "storage.kubernetes.io/csiProvisionerIdentity": f"lab-{PROVISIONER}",
                    },
                },
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "storageClassName": sc["metadata"]["name"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
            },
            "status": {"phase": "Bound"},
        }
        self.store.upsert(pv, rt=PV)

    def _bind(self, pvc: dict[str, Any], volume: Volume) -> None:
        meta = pvc["metadata"]
        spec = pvc.get("spec") or {}

        def bind(o: dict[str, Any]) -> None:
            ann = o["metadata"].setdefault("annotations", {})
            ann["pv.kubernetes.io/bind-completed"] = "yes"
            ann["pv.kubernetes.io/bound-by-controller"] = "yes"
            ann["volume.beta.kubernetes.io/storage-provisioner"] = PROVISIONER
            ann["volume.kubernetes.io/storage-provisioner"] = PROVISIONER
            o.setdefault("spec", {})["volumeName"] = f"pvc-{volume.uuid}"

        def status(o: dict[str, Any]) -> None:
            o["status"] = {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {
                    "storage": str(
                        ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
                    )
                },
            }

        with contextlib.suppress(NotFound):
            self.store.mutate(PVC, meta["namespace"], meta["name"], bind)
            self.store.mutate(PVC, meta["namespace"], meta["name"], status, status_only=True)

    def release(self, ns: str, name: str) -> None:
        """The claim is gone: reclaimPolicy Delete removes its PV and volume."""
        with self.state.lock:
            self.pending.pop((ns, name), None)
            self.classless.pop((ns, name), None)
            uid = self.by_claim.pop((ns, name), None)
            volume = self.volumes.pop(uid, None) if uid else None
            if volume is None:
                return
            with contextlib.suppress(NotFound):
                self.store.delete(PV, "", f"pvc-{volume.uuid}")
            for r in volume.replicas:
                self.refresh_pool_usage(r.pool_namespace, r.pool)

    # -- pools ----------------------------------------------------------------------------

    def replicas_on(self, pool: str, disk: str | None = None) -> list[tuple[Volume, Replica]]:
        return [
            (v, r)
            for v in self.volumes.values()
            for r in v.replicas
            if r.pool == pool and (disk is None or r.disk == disk)
        ]

    def committed(self, pool: str) -> int:
        return sum(v.size for v, _ in self.replicas_on(pool))

    def usage(self, pool: dict[str, Any]) -> tuple[int, int]:
        """(used, committed) bytes of a DiskPool: what the replicas on its present disk hold.
        A pool on a fresh disk holds nothing, whatever its name held before."""
        disk = str(((pool.get("spec") or {}).get("disks") or [""])[0])
        here = self.replicas_on(pool["metadata"]["name"], disk)
        return sum(r.allocated for _, r in here), sum(v.size for v, _ in here)

    def in_use(self, pool: str) -> bool:
        return any(True for _ in self.replicas_on(pool))

    def refresh_pool_usage(self, ns: str, name: str) -> None:
        """Write a pool's used/available (and let a Terminating, now empty pool go)."""
        pool = self.store.find(DISK_POOL, ns, name, copy=False)
        if pool is None:
            return
        if pool["metadata"].get("deletionTimestamp") and not self.in_use(name):
            self.store.delete(DISK_POOL, ns, name)
            return
        if "status" not in pool:
            return
        used, _committed = self.usage(pool)

        def edit(p: dict[str, Any]) -> None:
            st = p.setdefault("status", {})
            capacity = int(st.get("capacity") or 0)
            st.update(
                {
                    "used": used,
                    "available": max(0, capacity - used),
                    "used_q": str(used),
                    "available_q": str(max(0, capacity - used)),
                }
            )

        self.store.mutate(DISK_POOL, ns, name, edit, status_only=True)

    def delete_pool(self, ns: str, name: str) -> dict[str, Any] | None:
        """A DiskPool delete: the operator's finalizer holds one that has replicas (the
        control plane refuses to destroy it: "Pool Resource id <name> still in use"); it
        stays Terminating until its replicas are gone. None: nothing holds it."""
        if not self.in_use(name):
            return None

        def terminating(p: dict[str, Any]) -> None:
            meta = p["metadata"]
            meta.setdefault("deletionTimestamp", now_rfc3339(self.state.clock.now()))
            meta.setdefault("deletionGracePeriodSeconds", 0)
            finalizers = meta.setdefault("finalizers", [])
            if POOL_FINALIZER not in finalizers:
                finalizers.append(POOL_FINALIZER)

        self.store.mutate(DISK_POOL, ns, name, terminating)

        def status(p: dict[str, Any]) -> None:
            p.setdefault("status", {})["cr_state"] = "Terminating"

        return self.store.mutate(DISK_POOL, ns, name, status, status_only=True)

    # -- what the control plane reports ----------------------------------------------------

    def replica_state(self, r: Replica) -> str:
        if r.rebuild_started is not None:
            return "Degraded"  # being rebuilt: not yet a full copy
        pool = self.store.find(DISK_POOL, r.pool_namespace, r.pool, copy=False)
        if pool is None:
            return "Unknown"
        disk = str(((pool.get("spec") or {}).get("disks") or [""])[0])
        if disk != r.disk:
            return "Faulted"  # its disk is gone: the pool on a fresh disk lacks it
        status = (pool.get("status") or {}).get("pool_status")
        return "Online" if status == "Online" else "Unknown"

    def rebuild_progress(self, r: Replica) -> int | None:
        if r.rebuild_started is None:
            return None
        elapsed = self.state.clock.now() - r.rebuild_started
        return min(99, int(100 * elapsed / max(self.state.timings.rebuild, 1e-6)))

    def volume_status(self, v: Volume) -> str:
        online = sum(1 for r in v.replicas if self.replica_state(r) == "Online")
        if online >= v.num_replicas:
            return "Online"
        return "Degraded" if online else "Faulted"

    def heal(self, v: Volume) -> None:
        """A Degraded volume with a healthy copy gets a new replica on another Online pool
        (the control plane's reconciler); the rebuild completes after `timings.rebuild`."""
        online = [r for r in v.replicas if self.replica_state(r) == "Online"]
        rebuilding = [r for r in v.replicas if r.rebuild_started is not None]
        if not online or rebuilding or len(online) >= v.num_replicas:
            return
        pools = self._placement(1, avoid={r.node for r in v.replicas})
        if not pools:
            return
        now = self.state.clock.now()
        new = self._replica(v, pools[0], at=now)
        v.replicas.append(new)
        self.refresh_pool_usage(new.pool_namespace, new.pool)

        def done() -> None:
            with self.state.lock:
                if new in v.replicas:
                    new.rebuild_started = None
                    # the lost copy is dropped once the volume is whole again
                    lost = [r for r in v.replicas if self.replica_state(r) != "Online"]
                    if len(v.replicas) - len(lost) >= v.num_replicas:
                        for r in lost:
                            v.replicas.remove(r)
                            self.refresh_pool_usage(r.pool_namespace, r.pool)

        self.state.later(self.state.timings.rebuild, done)
