"""Server-side Tables (meta.k8s.io/v1) so `kubectl get` prints the usual columns.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io`; built-in kinds get the
columns their upstream printers have, custom kinds the CRD's additionalPrinterColumns.
"""

from __future__ import annotations

import calendar
import re
import time

from dapper.lab.kinds import ResourceType
from dapper.lab.kube_discovery import printer_columns


def human_age(ts: str | None, now: float | None = None) -> str:
    """Like k8s.io/apimachinery duration.HumanDuration."""
    if not ts:
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<invalid>"
    s = int((now or time.time()) - t)
    if s < 0:
        return "0s"
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    y = d // 365
    return f"{y}y{d % 365}d" if y < 8 and d % 365 else f"{y}y"


_FILTER_RE = re.compile(r'^\[\?\(@\.([\w.]+)==["\']([^"\']*)["\']\)\]$')


def jsonpath(obj: object, path: str) -> object:
    """The small JSONPath subset CRD printer columns use: `.a.b` and `[?(@.k=="v")]`."""
    cur: list[object] = [obj]
    for token in re.findall(r"\.[\w-]+|\[[^\]]*\]", path):
        nxt: list[object] = []
        for c in cur:
            if token.startswith("."):
                if isinstance(c, dict) and token[1:] in c:
                    nxt.append(c[token[1:]])
            else:
                m = _FILTER_RE.match(token)
                if m and isinstance(c, list):
                    key, val = m.groups()
                    nxt.extend(
                        i for i in c if isinstance(i, dict) and str(jsonpath(i, "." + key)) == val
                    )
                elif token[1:-1].isdigit() and isinstance(c, list) and int(token[1:-1]) < len(c):
                    nxt.append(c[int(token[1:-1])])
        cur = nxt
    return cur[0] if cur else None


def _node_row(o: dict) -> list:
    labels = o["metadata"].get("labels", {}) or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    ready = next(
        (c for c in o.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None
    )
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if ready is None:
        status = "Unknown"
    if o.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    info = o.get("status", {}).get("nodeInfo", {})
    addrs = {a["type"]: a["address"] for a in o.get("status", {}).get("addresses", [])}
    return [
        o["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        human_age(o["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
        addrs.get("InternalIP", "<none>"),
        addrs.get("ExternalIP", "<none>"),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _pod_status(o: dict) -> str:
    """The STATUS column as the API server prints it: Terminating once deletion began
    (Unknown for a pod the node controller found unreachable)."""
    status = o.get("status", {}) or {}
    if o["metadata"].get("deletionTimestamp"):
        return "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return status.get("reason") or status.get("phase", "")


def _pod_row(o: dict) -> list:
    statuses = o.get("status", {}).get("containerStatuses", []) or []
    total = len(o.get("spec", {}).get("containers", []) or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    return [
        o["metadata"]["name"],
        f"{ready}/{total}",
        _pod_status(o),
        sum(int(c.get("restartCount", 0)) for c in statuses),
        human_age(o["metadata"].get("creationTimestamp")),
        o.get("status", {}).get("podIP", "<none>"),
        o.get("spec", {}).get("nodeName") or "<none>",
    ]


def _event_row(o: dict) -> list:
    inv = o.get("involvedObject", {})
    return [
        human_age(o.get("lastTimestamp") or o.get("eventTime")),
        o.get("type", ""),
        o.get("reason", ""),
        f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
        o.get("message", ""),
    ]


def _pdb_row(o: dict) -> list:
    spec = o.get("spec", {})
    return [
        o["metadata"]["name"],
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        o.get("status", {}).get("disruptionsAllowed", 0),
        human_age(o["metadata"].get("creationTimestamp")),
    ]


def _namespace_row(o: dict) -> list:
    return [
        o["metadata"]["name"],
        o.get("status", {}).get("phase", "Active"),
        human_age(o["metadata"].get("creationTimestamp")),
    ]


def _daemonset_row(o: dict) -> list:
    st = o.get("status", {})
    selector = (o.get("spec", {}).get("template", {}).get("spec", {}) or {}).get("nodeSelector")
    return [
        o["metadata"]["name"],
        st.get("desiredNumberScheduled", 0),
        st.get("currentNumberScheduled", 0),
        st.get("numberReady", 0),
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in (selector or {}).items()) or "<none>",
        human_age(o["metadata"].get("creationTimestamp")),
    ]


def _deployment_row(o: dict) -> list:
    st = o.get("status", {})
    want = o.get("spec", {}).get("replicas", 1)
    return [
        o["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{want}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        human_age(o["metadata"].get("creationTimestamp")),
    ]


def _volume_attachment_row(o: dict) -> list:
    spec = o.get("spec", {})
    return [
        o["metadata"]["name"],
        spec.get("attacher", ""),
        (spec.get("source") or {}).get("persistentVolumeName", ""),
        spec.get("nodeName", ""),
        bool((o.get("status") or {}).get("attached")),
        human_age(o["metadata"].get("creationTimestamp")),
    ]


def _s(name: str, priority: int = 0, type_: str = "string") -> dict:
    return {
        "name": name,
        "type": type_,
        "format": "name" if name == "Name" else "",
        "description": "",
        "priority": priority,
    }


_BUILTIN = {
    "Namespace": ([_s("Name"), _s("Status"), _s("Age")], _namespace_row),
    "DaemonSet": (
        [
            _s("Name"),
            _s("Desired", 0, "integer"),
            _s("Current", 0, "integer"),
            _s("Ready", 0, "integer"),
            _s("Up-to-date", 0, "integer"),
            _s("Available", 0, "integer"),
            _s("Node Selector"),
            _s("Age"),
        ],
        _daemonset_row,
    ),
    "Deployment": (
        [
            _s("Name"),
            _s("Ready"),
            _s("Up-to-date", 0, "integer"),
            _s("Available", 0, "integer"),
            _s("Age"),
        ],
        _deployment_row,
    ),
    "Node": (
        [
            _s("Name"),
            _s("Status"),
            _s("Roles"),
            _s("Age"),
            _s("Version"),
            _s("Internal-IP", 1),
            _s("External-IP", 1),
            _s("OS-Image", 1),
            _s("Kernel-Version", 1),
            _s("Container-Runtime", 1),
        ],
        _node_row,
    ),
    "Pod": (
        [
            _s("Name"),
            _s("Ready"),
            _s("Status"),
            _s("Restarts", 0, "integer"),
            _s("Age"),
            _s("IP", 1),
            _s("Node", 1),
        ],
        _pod_row,
    ),
    "Event": (
        [_s("Last Seen"), _s("Type"), _s("Reason"), _s("Object"), _s("Message")],
        _event_row,
    ),
    "VolumeAttachment": (
        [
            _s("Name"),
            _s("Attacher"),
            _s("PV"),
            _s("Node"),
            _s("Attached", 0, "boolean"),
            _s("Age"),
        ],
        _volume_attachment_row,
    ),
    "PodDisruptionBudget": (
        [
            _s("Name"),
            _s("Min Available"),
            _s("Max Unavailable"),
            _s("Allowed Disruptions", 0, "integer"),
            _s("Age"),
        ],
        _pdb_row,
    ),
}


def _custom(rt: ResourceType) -> tuple[list[dict], object]:
    cols = printer_columns(rt)

    def row(o: dict) -> list:
        cells: list = [o["metadata"]["name"]]
        for _, type_, path in cols:
            value = jsonpath(o, path)
            if type_ == "date":
                value = human_age(value if isinstance(value, str) else None)
            cells.append(value)
        return cells

    defs = [_s("Name")] + [_s(n, 0, "string" if t == "date" else t) for n, t, _ in cols]
    return defs, row


def _default(o: dict) -> list:
    return [o["metadata"]["name"], human_age(o["metadata"].get("creationTimestamp"))]


def to_table(rt: ResourceType, objects: list[dict], resource_version: str) -> dict:
    if rt.kind in _BUILTIN:
        defs, row = _BUILTIN[rt.kind]
    elif printer_columns(rt):
        defs, row = _custom(rt)
    elif rt.kind == "CustomResourceDefinition":
        defs = [_s("Name"), _s("Created At", 0, "date")]

        def row(o: dict) -> list:
            return [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")]
    else:
        defs, row = [_s("Name"), _s("Age")], _default
    rows = [
        {
            "cells": row(o),
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            },
        }
        for o in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    }
