"""Taints and tolerations as Kubernetes v1.33 applies them through a node's death.

Pure rules, no world state: the node lifecycle controller's `not-ready`/`unreachable`
taints (NoSchedule without a time, NoExecute with `timeAdded`), the DefaultTolerationSeconds
admission plugin's 300 s tolerations, and the taint eviction controller's choice of when a
pod on a NoExecute-tainted node is marked for deletion.
"""

from __future__ import annotations

from dapper.lab.store import now_rfc3339

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
LIFECYCLE_KEYS = (NOT_READY, UNREACHABLE)
DEFAULT_TOLERATION_SECONDS = 300  # kube-apiserver's --default-*-toleration-seconds


def lifecycle_taints(ready_status: str, at: float | None = None) -> list[dict]:
    """The taints the node lifecycle controller keeps on a node whose Ready condition is
    `ready_status`: none when True; `not-ready` when the kubelet reports False;
    `unreachable` when it stopped posting (Unknown). Only NoExecute carries timeAdded."""
    if ready_status == "True":
        return []
    key = NOT_READY if ready_status == "False" else UNREACHABLE
    return [
        {"key": key, "effect": "NoSchedule"},
        {"key": key, "effect": "NoExecute", "timeAdded": now_rfc3339(at)},
    ]


def without_lifecycle_taints(taints: list[dict]) -> list[dict]:
    return [t for t in taints if t.get("key") not in LIFECYCLE_KEYS]


def default_tolerations(pod: dict) -> None:
    """DefaultTolerationSeconds: a pod that does not tolerate `not-ready` (or `unreachable`)
    NoExecute by itself gets a 300 s toleration for it (a toleration with no key or no
    effect counts as its own, as in the plugin)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tolerations = list(spec.get("tolerations") or [])
    added = False
    for key in LIFECYCLE_KEYS:
        own = any(
            t.get("key", "") in (key, "") and t.get("effect", "") in ("NoExecute", "")
            for t in tolerations
        )
        if not own:
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                }
            )
            added = True
    if added:
        pod["spec"] = {**spec, "tolerations": tolerations}


def tolerates(toleration: dict, taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect", "")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key", "")
    if key and key != taint.get("key"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


def eviction_delay(pod: dict, taints: list[dict]) -> float | None:
    """Seconds after the taints were added that the taint eviction controller marks the pod
    for deletion: 0 when a NoExecute taint is not tolerated, the least tolerationSeconds of
    the matching tolerations, or None (never) when none of them is bounded."""
    no_execute = [t for t in taints if t.get("effect") == "NoExecute"]
    if not no_execute:
        return None
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    matching = []
    for taint in no_execute:
        found = [t for t in tolerations if tolerates(t, taint)]
        if not found:
            return 0.0
        matching.extend(found)
    bounded = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
    if not bounded:
        return None
    return max(0.0, float(min(bounded)))
