"""Shared set-up for the Kubernetes tests (no tests here): a lab World with its API server,
kubeconfigs for the admin and read-only tokens, seeded workloads, Flux objects and pools,
and a stand-in Flux controller that answers reconcile requests."""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dapper.lab.credentials import LabCredentials
from dapper.lab.kube_server import KubeApiServer
from dapper.lab.pki import Pki
from dapper.lab.store import WatchEvent, now_rfc3339
from dapper.lab.world import Timings, World, pod_object

WORKER = "talos-node-large-1"
DRAIN_NODE = "talos-node-large-3"
REVISION = "main@sha1:" + "5394cb7f" * 5


def write_kubeconfig(path: Path, port: int, ca_pem: bytes, token: str) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {base64.b64encode(ca_pem).decode()}
users:
- name: lab-user
  user:
    token: {token}
contexts:
- name: lab
  context: {{cluster: lab, user: lab-user}}
current-context: lab
"""
    )
    return path


@dataclass
class Lab:
    world: World
    pki: Pki
    creds: LabCredentials
    server: KubeApiServer
    admin: Path  # kubeconfig
    readonly: Path
    tmp: Path

    def kubeconfig(self, name: str, token: str, ca_pem: bytes | None = None) -> Path:
        ca = ca_pem if ca_pem is not None else self.pki.https_ca.cert_pem
        return write_kubeconfig(self.tmp / name, self.server.port, ca, token)


@contextlib.contextmanager
def running_lab(tmp: Path, pki: Pki | None = None, timings: Timings | None = None) -> Iterator[Lab]:
    world = World(timings=timings or Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.1))
    pki = pki or Pki()
    creds = LabCredentials()
    server = KubeApiServer(world, pki, creds)
    try:
        port = server.start()
        lab = Lab(
            world,
            pki,
            creds,
            server,
            write_kubeconfig(
                tmp / "admin.kubeconfig", port, pki.https_ca.cert_pem, creds.kube_admin_token
            ),
            write_kubeconfig(
                tmp / "readonly.kubeconfig", port, pki.https_ca.cert_pem, creds.kube_readonly_token
            ),
            tmp,
        )
        seed(world)
        yield lab
    finally:
        server.stop()
        world.close()


def _owned(ns: str, name: str, node: str, kind: str, owner: str, labels: dict) -> dict:
    return pod_object(ns, name, node, owner=(kind, owner), labels=labels)


def seed(world: World) -> None:
    """Workloads with PDBs, Flux objects and Mayastor pools, as the Dapper cluster has."""
    store = world.store
    for ns in ("apps", "openebs", "flux-system"):
        world.ensure_namespace(ns)
    web = {"app.kubernetes.io/name": "web"}
    store.create(_owned("apps", "web-7d9f8-aaaaa", WORKER, "ReplicaSet", "web-7d9f8", web))
    store.create(
        _owned("apps", "web-7d9f8-bbbbb", "talos-node-large-2", "ReplicaSet", "web-7d9f8", web)
    )
    store.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": web}},
        }
    )
    store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": web},
                "template": {"metadata": {"labels": web}},
            },
        }
    )
    api = {"app.kubernetes.io/name": "api"}
    store.create(_owned("apps", "api-5c6b-ccccc", DRAIN_NODE, "ReplicaSet", "api-5c6b", api))
    store.create(
        _owned("apps", "db-0", DRAIN_NODE, "StatefulSet", "db", {"app.kubernetes.io/name": "db"})
    )
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cluster-secrets", "namespace": "flux-system"},
            "type": "Opaque",
            "data": {"SECRET_DOMAIN": base64.b64encode(b"example.org").decode()},
        }
    )
    _seed_flux(world)
    for i, node in enumerate(("talos-node-gpu-1", WORKER)):
        store.create(
            {
                "apiVersion": "openebs.io/v1beta3",
                "kind": "DiskPool",
                "metadata": {"name": f"pool-{node}", "namespace": "openebs"},
                "spec": {"node": node, "disks": [f"aio:///dev/disk/by-id/nvme-{i}"]},
                "status": {
                    "cr_state": "Created",
                    "pool_status": "Online",
                    "capacity": 3_840_000_000_000,
                    "used": 1_000_000_000_000,
                    "available": 2_840_000_000_000,
                },
            }
        )


def _ready(message: str, status: str = "True", reason: str = "ReconciliationSucceeded") -> list:
    return [
        {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }
    ]


def _seed_flux(world: World) -> None:
    store = world.store
    store.create(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {
                "url": "https://github.com/DapperDivers/dapper-cluster.git",
                "ref": {"branch": "main"},
                "interval": "1h",
            },
            "status": {
                "artifact": {"revision": REVISION},
                "conditions": _ready(f"stored artifact for revision '{REVISION}'"),
                "observedGeneration": 1,
            },
        }
    )
    for name, path, deps in (
        ("cluster-meta", "./kubernetes/flux/meta", []),
        ("cluster-apps", "./kubernetes/apps", [{"name": "cluster-meta"}]),
    ):
        store.create(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": "flux-system"},
                "spec": {
                    "interval": "30m",
                    "prune": True,
                    "path": path,
                    "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                    "dependsOn": deps,
                },
                "status": {
                    "conditions": _ready(f"Applied revision: {REVISION}"),
                    "lastAppliedRevision": REVISION,
                    "lastAttemptedRevision": REVISION,
                    "observedGeneration": 1,
                },
            }
        )
    store.create(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "cilium", "namespace": "kube-system"},
            "spec": {
                "interval": "1h",
                "chart": {
                    "spec": {
                        "chart": "cilium",
                        "version": "1.18.1",
                        "sourceRef": {"kind": "HelmRepository", "name": "cilium"},
                    }
                },
            },
            "status": {
                "conditions": _ready("Helm upgrade succeeded", reason="UpgradeSucceeded"),
                "history": [
                    {"chartName": "cilium", "chartVersion": "1.18.1", "appVersion": "1.18.1"}
                ],
            },
        }
    )


class FakeFlux:
    """Answers reconcile.fluxcd.io/requestedAt like kustomize-controller: sets
    lastHandledReconcileAt and Ready (False for names in `failing`)."""

    def __init__(self, world: World) -> None:
        self.store = world.store
        self.failing: set[str] = set()
        self._q: queue.SimpleQueue[WatchEvent | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeFlux:
        self.store.add_listener(self._on)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.remove_listener(self._on)
        self._q.put(None)
        self._thread.join(timeout=5)

    def _on(self, ev: WatchEvent) -> None:
        if ev.key[0].endswith("toolkit.fluxcd.io") and ev.type == "MODIFIED":
            self._q.put(ev)

    def _run(self) -> None:
        while (ev := self._q.get()) is not None:
            obj = ev.obj
            asked = (obj["metadata"].get("annotations") or {}).get(
                "reconcile.fluxcd.io/requestedAt"
            )
            status = obj.get("status") or {}
            if not asked or status.get("lastHandledReconcileAt") == asked:
                continue
            name = obj["metadata"]["name"]
            failing = name in self.failing

            def edit(o: dict, asked: str = asked, failing: bool = failing) -> None:
                st = o.setdefault("status", {})
                st["lastHandledReconcileAt"] = asked
                st["observedGeneration"] = o["metadata"].get("generation", 1)
                st["conditions"] = (
                    _ready("kustomize build failed: accumulating resources", "False", "BuildFailed")
                    if failing
                    else _ready(f"Applied revision: {REVISION}")
                )

            rt = self.store.kinds_of(obj)
            self.store.mutate(rt, obj["metadata"]["namespace"], name, edit, status_only=True)


def pods_of(world: World, ns: str, prefix: str) -> list[dict]:
    return [p for p in world.pods(namespace=ns) if p["metadata"]["name"].startswith(prefix)]


def writes(world: World) -> list:
    return [w for w in world.writes if w.api == "kubernetes"]
