"""`kubectl drain` semantics over the eviction API (k8s.io/kubectl/pkg/drain):
cordon, skip DaemonSet and mirror pods, evict the rest, retry those a
PodDisruptionBudget protects until the deadline, wait until they are gone."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from dapper.backends.clients.kube_models import DrainReport
from dapper.backends.errors import BackendError

if TYPE_CHECKING:
    from dapper.backends.clients.kube import KubeBackend, Progress

_PDB_RE = re.compile(r"disruption budget (\S+)")


class DrainBlocked(BackendError):
    """The deadline passed with pods still on the node; `report` names them and why."""

    def __init__(self, report: DrainReport) -> None:
        super().__init__(str(report), code="DRAIN_BLOCKED")
        self.report = report


def _say(progress: Progress, line: str) -> None:
    if progress is not None:
        progress(line)


def _skip_reason(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return "mirror"
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "DaemonSet":
            return "DaemonSet"
    return ""


def _blocking_pdb(kube: KubeBackend, namespace: str, pod: dict, message: str) -> str:
    m = _PDB_RE.search(message)
    if m:
        return f"{namespace}/{m.group(1)}"
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for p in kube.pdbs(namespace):
        if p.match_labels and all(labels.get(k) == v for k, v in p.match_labels):
            return f"{namespace}/{p.name}"
    return "a PodDisruptionBudget"


def drain(kube: KubeBackend, node: str, deadline: float, progress: Progress) -> DrainReport:
    _say(progress, f"cordoning {node}")
    kube.cordon(node)
    pods = kube.pod_objects(node=node)
    skipped, todo = [], {}
    for pod in pods:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if _skip_reason(pod):
            skipped.append(key)
        else:
            todo[key] = pod
    if skipped:
        _say(progress, f"ignoring DaemonSet and mirror pods: {', '.join(sorted(skipped))}")
    evicted: list[str] = []
    blocked: dict[str, str] = {}
    pending = dict(todo)
    while pending:
        for key, pod in list(pending.items()):
            ns, name = key.split("/", 1)
            try:
                kube.evict(ns, name)
            except BackendError as err:
                if err.code == "NOT_FOUND":
                    pass
                elif err.code == "TOO_MANY_REQUESTS":
                    pdb = _blocking_pdb(kube, ns, pod, err.reason)
                    if blocked.get(key) != pdb:
                        _say(progress, f"{key}: eviction blocked by PDB {pdb}; retrying")
                    blocked[key] = pdb
                    continue
                else:
                    blocked[key] = err.reason
                    raise DrainBlocked(
                        DrainReport(
                            node, tuple(evicted), tuple(sorted(skipped)), tuple(blocked.items())
                        )
                    ) from None
            _say(progress, f"evicted {key}")
            evicted.append(key)
            blocked.pop(key, None)
            del pending[key]
        if not pending:
            break
        if time.monotonic() + kube.evict_retry > deadline:
            raise DrainBlocked(
                DrainReport(
                    node, tuple(evicted), tuple(sorted(skipped)), tuple(sorted(blocked.items()))
                )
            )
        time.sleep(kube.evict_retry)
    # wait for the evicted pods to be gone from the node (or replaced under a new uid)
    uids = {k: todo[k]["metadata"].get("uid") for k in evicted}
    while True:
        left = [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in kube.pod_objects(node=node)
            if uids.get(f"{p['metadata']['namespace']}/{p['metadata']['name']}")
            == p["metadata"].get("uid")
        ]
        if not left:
            break
        if time.monotonic() >= deadline:
            raise DrainBlocked(
                DrainReport(
                    node,
                    tuple(evicted),
                    tuple(sorted(skipped)),
                    tuple((k, "still terminating") for k in left),
                )
            )
        time.sleep(kube.poll_interval)
    report = DrainReport(node, tuple(evicted), tuple(sorted(skipped)), (), True)
    _say(progress, str(report))
    return report
