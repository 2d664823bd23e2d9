"""The cluster as runbooks see it: a few calls over `KubeBackend`, absent objects as None.

Runbooks (and their tests) depend on this small surface only, so later runbooks can add
Talos and Proxmox calls here without touching the engine. Reads return hashes and
statuses, never Secret values.
"""

from __future__ import annotations

from typing import Any

from dapper.backends.config import Config
from dapper.backends.errors import BackendError

FLUX_ROOT = ("flux-system", "flux-system")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def _absent(exc: BackendError) -> bool:
    return exc.code == "NOT_FOUND"


class KubeCluster:
    def __init__(self, kube: Any) -> None:
        self.kube = kube

    @classmethod
    def from_config(cls, config: Config, timeout: float = 10.0) -> KubeCluster:
        from dapper.backends.clients.kube import KubeBackend

        return cls(
            KubeBackend.from_kubeconfig(
                config.kubeconfig or None,
                context=config.kube_context or None,
                read_only=config.read_only,
                timeout=timeout,
            )
        )

    def close(self) -> None:
        self.kube.close()

    def identity(self) -> tuple[str, str]:
        """(API server URL, kube-system namespace uid): which cluster this is."""
        return self.kube.server, self.kube.namespace_uid("kube-system")

    def ping(self) -> None:
        """Reachable, authorised, and Flux is installed (its root Kustomization answers)."""
        self.kube.kustomization(*FLUX_ROOT)

    def kustomization(self, namespace: str, name: str) -> Any | None:
        try:
            return self.kube.kustomization(namespace, name)
        except BackendError as exc:
            if _absent(exc):
                return None
            raise

    def reconcile(self, namespace: str, name: str, *, with_source: bool) -> str:
        return self.kube.reconcile(namespace, name, with_source=with_source)

    def secret(self, namespace: str, name: str) -> Any | None:
        """SecretInfo (key names and sha256 per value) or None."""
        try:
            return self.kube.secret(namespace, name)
        except BackendError as exc:
            if _absent(exc):
                return None
            raise

    def secrets_named(self, name: str) -> list[Any]:
        return [s for s in self.kube.secrets() if s.name == name]

    def patch_secret(self, namespace: str, name: str, values: dict[str, str]) -> Any:
        return self.kube.patch_secret(namespace, name, values)

    def rollout_restart(self, kind: str, namespace: str, name: str) -> str:
        return self.kube.rollout_restart(kind, namespace, name)

    def restarted_at(self, kind: str, namespace: str, name: str) -> str | None:
        """The workload's pod-template restartedAt stamp ("" if none; None if absent)."""
        info = self.workload(kind, namespace, name)
        return None if info is None else info.restarted_at

    # -- nodes (node-replace) -------------------------------------------------------------

    def node(self, name: str) -> Any | None:
        """The Node (model.Node, with its pods) or None when there is no such object."""
        found = [n for n in self.kube.nodes(self.kube.pods(node=name)) if n.name == name]
        return found[0] if found else None

    def node_pod_objects(self, name: str) -> list[dict]:
        """The raw pods bound to a node (labels included, for PodDisruptionBudgets)."""
        return self.kube.pod_objects(node=name)

    def pdbs(self) -> list[Any]:
        return self.kube.pdbs()

    def disk_pools(self) -> list[Any]:
        return self.kube.disk_pools()

    def cordon(self, name: str) -> None:
        self.kube.cordon(name)

    def uncordon(self, name: str) -> None:
        self.kube.uncordon(name)

    def drain(self, name: str, deadline: float, on_progress: Any = None) -> Any:
        return self.kube.drain(name, deadline, on_progress)

    def force_delete_pod(self, namespace: str, name: str, uid: str = "") -> bool:
        """Delete a pod with grace period 0 (its kubelet is not waited for); False when it
        was already gone (with `uid`: also when a successor now has its name)."""
        try:
            self.kube.force_delete_pod(namespace, name, uid)
        except BackendError as exc:
            if _absent(exc) or (uid and exc.code == "CONFLICT"):
                return False
            raise
        return True

    def mayastor_volumes(self) -> tuple[list[dict], dict[str, str]] | None:
        """Mayastor's volumes (api-rest, through the service proxy) and their claims
        (volume uuid -> "namespace/claim"); None where api-rest is not there (404) or
        this identity may not reach it (403)."""
        from dapper.backends.snapshot.mayastor_source import DRIVER, NAMESPACE, SERVICE

        try:
            volumes = self.kube.mayastor_volumes(NAMESPACE, SERVICE)
        except BackendError as exc:
            if exc.code in ("NOT_FOUND", "FORBIDDEN"):
                return None
            raise
        return volumes, self.kube.volume_claims(DRIVER)

    def delete_node(self, name: str) -> None:
        try:
            self.kube.delete_node(name)
        except BackendError as exc:
            if not _absent(exc):
                raise

    def workload(self, kind: str, namespace: str, name: str) -> Any | None:
        """WorkloadInfo of a Deployment/StatefulSet/DaemonSet; None if absent or not one."""
        if kind not in WORKLOAD_KINDS:
            return None
        try:
            return self.kube.workload(kind, namespace, name)
        except BackendError as exc:
            if _absent(exc):
                return None
            raise
