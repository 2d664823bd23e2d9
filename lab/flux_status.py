"""Flux status vocabulary for the lab's twin: revisions, conditions, inventory entries.

Kept apart from the reconcile loop so every Flux object the twin writes (Kustomization,
GitRepository, HelmRelease, chart sources) gets conditions the same way: a condition's
lastTransitionTime changes only when its status flips, as metav1.Condition requires and
as `flux get` and kstatus read it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dapper.lab.store import now_rfc3339

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
KS_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KS_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"

# Condition reasons (fluxcd/pkg apis/meta and kustomize-controller)
SUCCEEDED = "ReconciliationSucceeded"
PROGRESSING = "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
BUILD_FAILED = "BuildFailed"
RECONCILIATION_FAILED = "ReconciliationFailed"
DECRYPTION_FAILED = "DecryptionFailed"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
DEPENDENCY_NOT_READY = "DependencyNotReady"
ARTIFACT_FAILED = "ArtifactFailed"


def revision(branch: str, sha: str) -> str:
    """Flux's Git revision string: `main@sha1:<40 hex>`."""
    return f"{branch}@sha1:{sha}" if branch else f"sha1:{sha}"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_ready(obj: dict[str, Any] | None) -> bool:
    c = condition((obj or {}).get("status") or {}, "Ready")
    return bool(c and c.get("status") == "True")


def set_condition(
    status: dict[str, Any],
    type_: str,
    value: str,
    reason: str,
    message: str,
    generation: int | None = None,
) -> None:
    """Set one condition in place; lastTransitionTime moves only on a status flip."""
    conds: list[dict[str, Any]] = status.setdefault("conditions", [])
    old = condition(status, type_)
    new: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_rfc3339(),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    if old is not None:
        if old.get("status") == value:
            new["lastTransitionTime"] = old.get("lastTransitionTime", new["lastTransitionTime"])
        conds[conds.index(old)] = new
    else:
        conds.append(new)
    # Ready first, as the controllers order them
    conds.sort(key=lambda c: c.get("type") != "Ready")


def drop_condition(status: dict[str, Any], type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def inventory_id(obj: dict[str, Any]) -> dict[str, str]:
    """`<namespace>_<name>_<group>_<kind>` with the version, as Flux's inventory writes it."""
    api = str(obj.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    meta = obj.get("metadata") or {}
    return {
        "id": f"{meta.get('namespace', '')}_{meta.get('name', '')}_{group}_{obj.get('kind', '')}",
        "v": version,
    }


def parse_inventory_id(entry: dict[str, str]) -> tuple[str, str, str, str]:
    """(namespace, name, group, kind) of an inventory entry."""
    ns, name, rest = entry["id"].split("_", 2)
    group, _, kind = rest.rpartition("_")
    return ns, name, group, kind


def requested_at(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT, ""))


def now() -> str:
    return now_rfc3339()
