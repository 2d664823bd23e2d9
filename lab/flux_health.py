"""kstatus over live objects, and the Flux clock: how the lab's Flux decides "healthy".

kustomize-controller (`wait: true` or `healthChecks`) and helm-controller (install and
upgrade wait) both poll the objects they applied until every one is Current or the
timeout passes; fluxcd/pkg's ssa.WaitForSet then reports
`timeout waiting for: [Deployment/media/plex status: 'InProgress']` (each object as
`Kind/namespace/name`), or `failed early due to stalled resources: [...]` when only
Current and Failed remain. The status of each object follows kstatus (sigs.k8s.io
cli-utils): Deployments, StatefulSets and DaemonSets by their replica counts, PVCs by
phase, Pods by phase and Ready, anything else by observedGeneration and its
Reconciling/Stalled conditions (so a HelmRelease that is still installing is InProgress
and one that ran out of retries is Failed). Readiness comes from the workload status
the lab's controllers write, never from the twin's own bookkeeping.

Flux durations are real (`timeout: 5m`), but the twin runs its clock `DEFAULT_TIME_SCALE`
times faster, so a 5 minute health check times out after 3 lab seconds and tests stay
quick while every state comes in the real order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dapper.lab.flux_status import condition, parse_inventory_id
from dapper.lab.kinds import by_kind

CURRENT = "Current"
IN_PROGRESS = "InProgress"
FAILED = "Failed"
NOT_FOUND = "NotFound"

# one Flux second lasts 1/DEFAULT_TIME_SCALE lab seconds (5m -> 10 s, 1m -> 2 s): fast enough
# for tests, slow enough that a loaded 2-core machine does not fail the tree's health checks
DEFAULT_TIME_SCALE = 30.0
DEFAULT_TIMEOUT = 300.0  # kustomize-controller and helm-controller: 5m0s

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(text: Any, default: float = DEFAULT_TIMEOUT) -> float:
    """A Go duration ("5m", "1h30m", "90s") in seconds; `default` when absent or bad."""
    raw = str(text or "").strip()
    if not raw:
        return default
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return default
    return sum(float(n) * _UNIT[u] for n, u in parts)


def go_string(total: float) -> str:
    """Seconds as Go's time.Duration.String() prints them: 5m0s, 1h0m0s, 1.5s."""
    if total < 1:
        return f"{total * 1000:g}ms" if total else "0s"
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    sec = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{sec}"
    if m:
        return f"{int(m)}m{sec}"
    return sec


def _int(obj: dict[str, Any], *path: str) -> int:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    try:
        return int(node or 0)
    except (TypeError, ValueError):
        return 0


def _generation_current(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if "observedGeneration" not in status:
        return True
    return _int(obj, "status", "observedGeneration") >= _int(obj, "metadata", "generation")


def object_status(obj: dict[str, Any] | None) -> str:
    """kstatus of one live object (NotFound when it is gone)."""
    if obj is None:
        return NOT_FOUND
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return IN_PROGRESS
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        return _replicated(obj, status)
    if kind == "DaemonSet":
        if not _generation_current(obj) or "desiredNumberScheduled" not in status:
            return IN_PROGRESS
        desired = _int(status, "desiredNumberScheduled")
        have = ("updatedNumberScheduled", "numberAvailable", "numberReady")
        return CURRENT if all(_int(status, k) >= desired for k in have) else IN_PROGRESS
    if kind == "PersistentVolumeClaim":
        return CURRENT if status.get("phase") == "Bound" else IN_PROGRESS
    if kind == "Pod":
        phase = status.get("phase")
        if phase == "Succeeded":
            return CURRENT
        if phase == "Failed":
            return FAILED
        ready = condition(status, "Ready")
        return (
            CURRENT if phase == "Running" and ready and ready["status"] == "True" else (IN_PROGRESS)
        )
    if kind == "Namespace":
        return IN_PROGRESS if status.get("phase") == "Terminating" else CURRENT
    return _generic(obj, status)


def _replicated(obj: dict[str, Any], status: dict[str, Any]) -> str:
    if not _generation_current(obj):
        return IN_PROGRESS
    progressing = condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return FAILED
    spec = obj.get("spec") or {}
    want = int(spec.get("replicas", 1) or 0)
    counts = ["replicas", "readyReplicas"]
    if obj.get("kind") != "ReplicaSet":
        counts += ["updatedReplicas"]
    if obj.get("kind") == "Deployment":
        counts += ["availableReplicas"]
    if any(_int(status, k) < want for k in counts):
        return IN_PROGRESS
    if _int(status, "replicas") > want:  # old pods still terminating
        return IN_PROGRESS
    return CURRENT


def _generic(obj: dict[str, Any], status: dict[str, Any]) -> str:
    """Custom resources: observedGeneration, then Reconciling/Stalled (kstatus generic)."""
    if not _generation_current(obj):
        return IN_PROGRESS
    for c in status.get("conditions") or []:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return IN_PROGRESS
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return FAILED
    ready = condition(status, "Ready")
    if ready is not None and ready.get("status") != "True":
        return IN_PROGRESS
    return CURRENT


def fmt_entry(entry: dict[str, str]) -> str:
    """`Kind/namespace/name` (fluxcd/pkg ssa utils.FmtObjMetadata)."""
    ns, name, _group, kind = parse_inventory_id(entry)
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def live_statuses(store: Any, entries: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    """(Kind/ns/name, kstatus) of each inventory entry the lab serves, in entry order.

    Kinds the lab does not serve (Ingress, ExternalSecret...) have no live object to
    read; they are left out, as an object nothing reports on."""
    out = []
    for entry in entries:
        ns, name, group, kind = parse_inventory_id(entry)
        try:
            rt = by_kind(group, kind)
        except KeyError:
            continue
        out.append((fmt_entry(entry), object_status(store.find(rt, ns, name, copy=False))))
    return out


def wait_verdict(statuses: list[tuple[str, str]], timed_out: bool) -> tuple[str, str]:
    """("current" | "waiting" | "failed", message) as ssa.WaitForSet decides it."""
    kinds = {s for _, s in statuses}
    if kinds <= {CURRENT}:
        return "current", ""
    terminal = kinds <= {CURRENT, FAILED}
    if not (terminal or timed_out):
        return "waiting", ""
    bad = sorted(f"{ref} status: '{s}'" for ref, s in statuses if s != CURRENT)
    what = (
        "timeout waiting for"
        if timed_out and not terminal
        else ("failed early due to stalled resources")
    )
    return "failed", f"{what}: [{', '.join(bad)}]"


__all__ = [
    "CURRENT",
    "DEFAULT_TIME_SCALE",
    "FAILED",
    "IN_PROGRESS",
    "NOT_FOUND",
    "go_string",
    "live_statuses",
    "object_status",
    "seconds",
    "wait_verdict",
]
