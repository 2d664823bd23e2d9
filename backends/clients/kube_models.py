"""Kubernetes-only results that the joined snapshot model does not carry."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PdbInfo:
    namespace: str
    name: str
    min_available: str = ""
    max_unavailable: str = ""
    match_labels: tuple[tuple[str, str], ...] = ()
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    disruptions_allowed: int = 0


@dataclass(frozen=True)
class SourceInfo:
    """A Flux source (GitRepository, OCIRepository, HelmRepository)."""

    kind: str
    namespace: str
    name: str
    url: str = ""
    ref: str = ""  # branch:main, tag:v1
    ready: str = "Unknown"
    reason: str = ""
    message: str = ""
    suspended: bool = False
    revision: str = ""
    last_handled_reconcile_at: str = ""


@dataclass(frozen=True)
class HelmReleaseInfo:
    namespace: str
    name: str
    chart: str = ""
    chart_version: str = ""
    app_version: str = ""
    ready: str = "Unknown"
    reason: str = ""
    message: str = ""
    suspended: bool = False
    last_attempted_revision: str = ""
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretInfo:
    """A Secret's metadata and per-key sha256; `values` only when revealed on purpose."""

    namespace: str
    name: str
    type: str = ""
    hashes: tuple[tuple[str, str], ...] = ()  # (key, sha256 hex of the decoded value)
    labels: tuple[tuple[str, str], ...] = ()
    resource_version: str = ""
    values: dict[str, bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.hashes)


@dataclass(frozen=True)
class WorkloadInfo:
    """A Deployment, StatefulSet or DaemonSet as runbooks need it (no pod template)."""

    kind: str
    namespace: str
    name: str
    restarted_at: str = ""  # the pod template's kubectl.kubernetes.io/restartedAt
    reloader: tuple[
        tuple[str, str], ...
    ] = ()  # the workload's *reloader.stakater.com/* annotations
    desired: int = 0  # spec.replicas (DaemonSet: desiredNumberScheduled)
    ready: int = 0
    generation: int = 0
    observed_generation: int = 0
    resource_version: str = ""

    @property
    def reloads(self) -> bool:
        """Reloader restarts it by itself when its Secrets or ConfigMaps change."""
        return any(v.strip().lower() not in ("", "false") for _k, v in self.reloader)


@dataclass(frozen=True)
class DrainReport:
    """What a drain did; str() is the one line an operator reads."""

    node: str
    evicted: tuple[str, ...] = ()  # namespace/name
    skipped: tuple[str, ...] = ()  # DaemonSet and mirror pods
    blocked: tuple[tuple[str, str], ...] = ()  # (pod, pdb or reason) still there at the end
    complete: bool = False

    def __str__(self) -> str:
        if self.complete:
            return (
                f"{self.node} drained: {len(self.evicted)} pod(s) evicted, "
                f"{len(self.skipped)} DaemonSet/mirror pod(s) left"
            )
        what = ", ".join(f"{p} (blocked by {why})" for p, why in self.blocked) or "pods remain"
        return f"{self.node} not drained: {what}"
