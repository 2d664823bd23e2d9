"""Kubernetes JSON objects -> the snapshot's dataclasses. Pure functions, no client import,
so the collector's parsing is testable and cheap (reads skip the client's model classes)."""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import re
import time
from decimal import Decimal, InvalidOperation

from dapper.backends.clients.kube_models import HelmReleaseInfo, PdbInfo, SecretInfo, SourceInfo
from dapper.backends.model import (
    Condition,
    Event,
    Kustomization,
    Node,
    PodRef,
    SourceName,
    StoragePool,
)

_SUFFIX: dict[str, Decimal | int] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QTY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: object) -> Decimal:
    """'500m' -> 0.5, '128Gi' -> 137438953472; 0 for what does not parse."""
    if value is None:
        return Decimal(0)
    m = _QTY_RE.match(str(value).strip())
    if not m or m.group(2) not in ("", *_SUFFIX):
        return Decimal(0)
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        return Decimal(0)
    return number * Decimal(_SUFFIX.get(m.group(2), 1))


def parse_time(ts: object) -> float | None:
    """RFC 3339 (seconds or fractional, Z or offset) -> epoch seconds."""
    if not isinstance(ts, str) or len(ts) < 19:
        return None
    return _parse_time(ts)


@functools.lru_cache(maxsize=65536)
def _parse_time(ts: str) -> float | None:
    # cached: a big cluster repeats the same stamps thousands of times (pod and node
    # conditions), and strptime is the costliest part of parsing a list
    try:
        base = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    rest = ts[19:]
    frac = 0.0
    if rest.startswith("."):
        digits = re.match(r"\.(\d+)", rest)
        if digits:
            frac = float("0." + digits.group(1))
            rest = rest[digits.end() :]
    if rest and rest[0] in "+-" and len(rest) >= 6:
        sign = 1 if rest[0] == "+" else -1
        base -= sign * (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60)
    return base + frac


def conditions(obj: dict) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=c.get("type", ""),
            status=c.get("status", "Unknown"),
            reason=c.get("reason", "") or "",
            message=c.get("message", "") or "",
            last_transition=parse_time(c.get("lastTransitionTime")),
        )
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _condition(obj: dict, type_: str) -> Condition | None:
    return next((c for c in conditions(obj) if c.type == type_), None)


def pod_gpu_request(pod: dict) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        val = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += int(parse_quantity(val))
    return total


def pod_ref(pod: dict) -> PodRef:
    meta = pod.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    owner = next((r for r in refs if r.get("controller")), refs[0] if refs else {})
    owner_kind = owner.get("kind", "")
    if not owner_kind and "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        owner_kind = "Node"
    ready = _condition(pod, "Ready")
    return PodRef(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        node=(pod.get("spec") or {}).get("nodeName") or "",
        phase=(pod.get("status") or {}).get("phase", "") or "",
        ready=bool(ready and ready.status == "True"),
        gpu_request=pod_gpu_request(pod),
        owner_kind=owner_kind,
        owner_name=owner.get("name", ""),
        terminating=bool(meta.get("deletionTimestamp")),
        waiting=_waiting(pod),
    )


def _waiting(pod: dict) -> str:
    """The first waiting container's reason, as kubectl's STATUS column shows it."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
        if reason:
            return str(reason)
    return ""


def _taint(t: dict) -> str:
    key = t.get("key", "")
    if t.get("value"):
        key += f"={t['value']}"
    return f"{key}:{t.get('effect', '')}"


# node-role.kubernetes.io/* is what kubectl shows, but a kubelet (and so Talos nodeLabels)
# may not set it (NodeRestriction); the tree's Talos patches set node-role.home.arpa/*.
ROLE_LABEL_PREFIXES = ("node-role.kubernetes.io/", "node-role.home.arpa/")


def node_roles(labels: dict) -> list[str]:
    """Roles from either role-label namespace (and the legacy kubernetes.io/role)."""
    roles = {k.split("/", 1)[1] for k in labels if k.startswith(ROLE_LABEL_PREFIXES)}
    if labels.get("kubernetes.io/role"):
        roles.add(labels["kubernetes.io/role"])
    return sorted(r for r in roles if r)


def node(obj: dict, pods: tuple[PodRef, ...] = ()) -> Node:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    roles = node_roles(labels)
    ready = _condition(obj, "Ready")
    addrs = {a.get("type"): a.get("address", "") for a in status.get("addresses") or []}
    cap = status.get("capacity") or {}
    alloc = status.get("allocatable") or {}
    info = status.get("nodeInfo") or {}
    running = tuple(p for p in pods if p.phase not in ("Succeeded", "Failed"))
    return Node(
        name=meta.get("name", ""),
        roles=tuple(roles),
        ready=ready.status if ready else "Unknown",
        internal_ip=addrs.get("InternalIP", ""),
        kubelet_version=info.get("kubeletVersion", ""),
        os_image=info.get("osImage", ""),
        unschedulable=bool(spec.get("unschedulable")),
        taints=tuple(_taint(t) for t in spec.get("taints") or []),
        taint_times=tuple(
            (_taint(t), added)
            for t in spec.get("taints") or []
            if (added := parse_time(t.get("timeAdded"))) is not None
        ),
        labels=tuple(sorted(labels.items())),
        conditions=conditions(obj),
        cpu_capacity=float(parse_quantity(cap.get("cpu"))),
        mem_capacity=int(parse_quantity(cap.get("memory"))),
        pods_capacity=int(parse_quantity(cap.get("pods"))),
        pods=pods,
        gpu_capacity=int(parse_quantity(cap.get("nvidia.com/gpu"))),
        gpu_allocatable=int(parse_quantity(alloc.get("nvidia.com/gpu"))),
        gpu_allocated=sum(p.gpu_request for p in running),
        created=parse_time(meta.get("creationTimestamp")),
    )


def event(obj: dict) -> Event:
    inv = obj.get("involvedObject") or obj.get("regarding") or {}
    when = (
        parse_time(obj.get("lastTimestamp"))
        or parse_time(obj.get("eventTime"))
        or parse_time(obj.get("firstTimestamp"))
        or parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
        or 0.0
    )
    parts = [inv.get("kind", ""), inv.get("namespace", ""), inv.get("name", "")]
    return Event(
        time=when,
        source=SourceName.KUBERNETES,
        severity="warning" if obj.get("type") == "Warning" else "info",
        object="/".join(p for p in parts if p),
        reason=obj.get("reason", "") or "",
        message=(obj.get("message", "") or "").strip(),
    )


def pdb(obj: dict) -> PdbInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    sel = spec.get("selector") or {}
    return PdbInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        min_available=str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "",
        max_unavailable=(
            str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else ""
        ),
        match_labels=tuple(sorted((sel.get("matchLabels") or {}).items())),
        current_healthy=int(status.get("currentHealthy", 0) or 0),
        desired_healthy=int(status.get("desiredHealthy", 0) or 0),
        expected_pods=int(status.get("expectedPods", 0) or 0),
        disruptions_allowed=int(status.get("disruptionsAllowed", 0) or 0),
    )


def kustomization(obj: dict) -> Kustomization:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ns = meta.get("namespace", "")
    ready = _condition(obj, "Ready")
    src = spec.get("sourceRef") or {}
    source = (
        f"{src.get('kind', '')}/{src.get('namespace') or ns}/{src.get('name', '')}" if src else ""
    )
    deps = tuple(
        f"{d.get('namespace') or ns}/{d.get('name', '')}" for d in spec.get("dependsOn") or []
    )
    return Kustomization(
        namespace=ns,
        name=meta.get("name", ""),
        ready=ready.status if ready else "Unknown",
        reason=ready.reason if ready else "",
        message=ready.message if ready else "",
        suspended=bool(spec.get("suspend")),
        applied_revision=status.get("lastAppliedRevision", "") or "",
        attempted_revision=status.get("lastAttemptedRevision", "") or "",
        last_transition=ready.last_transition if ready else None,
        last_handled_reconcile_at=status.get("lastHandledReconcileAt", "") or "",
        path=spec.get("path", "") or "",
        source=source,
        depends_on=deps,
        conditions=conditions(obj),
    )


def source(obj: dict) -> SourceInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ready = _condition(obj, "Ready")
    artifact = (obj.get("status") or {}).get("artifact") or {}
    ref = spec.get("ref") or {}
    return SourceInfo(
        kind=obj.get("kind", ""),
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        url=spec.get("url", "") or "",
        ref=next((f"{k}:{v}" for k, v in ref.items() if v), ""),
        ready=ready.status if ready else "Unknown",
        reason=ready.reason if ready else "",
        message=ready.message if ready else "",
        suspended=bool(spec.get("suspend")),
        revision=artifact.get("revision", "") or "",
        last_handled_reconcile_at=(obj.get("status") or {}).get("lastHandledReconcileAt", "") or "",
    )


def helm_release(obj: dict) -> HelmReleaseInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = _condition(obj, "Ready")
    chart = ((spec.get("chart") or {}).get("spec")) or {}
    history = status.get("history") or []
    latest = history[0] if history else {}
    return HelmReleaseInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        chart=chart.get("chart", "") or latest.get("chartName", ""),
        chart_version=latest.get("chartVersion", "") or chart.get("version", "") or "",
        app_version=latest.get("appVersion", "") or "",
        ready=ready.status if ready else "Unknown",
        reason=ready.reason if ready else "",
        message=ready.message if ready else "",
        suspended=bool(spec.get("suspend")),
        last_attempted_revision=status.get("lastAttemptedRevision", "") or "",
        depends_on=tuple(
            f"{d.get('namespace') or meta.get('namespace', '')}/{d.get('name', '')}"
            for d in spec.get("dependsOn") or []
        ),
    )


def disk_pool(obj: dict) -> StoragePool:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}

    def num(key: str) -> int:
        if status.get(key) is not None:
            return int(status[key])
        return int(parse_quantity(status.get(f"{key}_q")))

    return StoragePool(
        name=meta.get("name", ""),
        node=spec.get("node", "") or "",
        disks=tuple(spec.get("disks") or ()),
        state=status.get("pool_status", "") or "Unknown",
        cr_state=status.get("cr_state", "") or "",
        capacity=num("capacity"),
        used=num("used"),
        available=num("available"),
        api_version=obj.get("apiVersion", ""),
    )


def secret(obj: dict, *, reveal: bool = False) -> SecretInfo:
    """Key names and a sha256 of each value; values only when `reveal` is asked for."""
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    decoded = {k: base64.b64decode(v or "") for k, v in data.items()}
    return SecretInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        type=obj.get("type", "") or "",
        hashes=tuple(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in decoded.items())),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        resource_version=meta.get("resourceVersion", ""),
        values=dict(decoded) if reveal else None,
    )
