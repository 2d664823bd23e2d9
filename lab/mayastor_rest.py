"""Mayastor's REST API (control plane v0), as `kubectl mayastor` reaches it: through the
Kubernetes API server's service proxy to the chart's `<release>-api-rest` Service
(`/api/v1/namespaces/<ns>/services/http:<release>-api-rest:http/proxy/v0/...`).

Served read-only from the world's Mayastor (`world.mayastor`): GET /v0/volumes,
/v0/volumes/{id}, /v0/pools, /v0/pools/{id}, in the shapes of the control plane's
OpenAPI spec (Volume = spec + state with `replica_topology`; Pool = spec + state); an
unknown id answers 404 with the RestJsonError shape. The proxy needs `get` on
`services/proxy`, which the `view` role (the lab's read-only identity) does not grant.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from dapper.lab.kinds import by_kind
from dapper.lab.world import World
from dapper.lab.world.mayastor import DISK_POOL, Volume

RELEASE = ("openebs-system", "openebs")  # the tree's HelmRelease of the openebs chart
SERVICE = f"{RELEASE[1]}-api-rest"
PORTS = ("", "http", "8081")
_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/services/([^/]+)/proxy(/.*)?$")


def proxy_target(path: str) -> tuple[str, str, str] | None:
    """(namespace, service as named in the URL, path behind the proxy) of a service-proxy
    URL, or None when `path` is none."""
    m = _PROXY.match(path)
    if m is None:
        return None
    return unquote(m.group(1)), unquote(m.group(2)), unquote(m.group(3) or "/")


def _service_name(spec: str) -> tuple[str, str]:
    """'http:openebs-api-rest:http' -> ('openebs-api-rest', 'http') (scheme and port are
    optional, as the API server parses them)."""
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return parts[0], ""


def serves(world: World, namespace: str, service: str) -> bool:
    """Whether this proxied Service is Mayastor's api-rest (its release is installed)."""
    name, port = _service_name(service)
    if (namespace, name) != (RELEASE[0], SERVICE) or port not in PORTS:
        return False
    hr = by_kind("helm.toolkit.fluxcd.io", "HelmRelease")
    return world.store.find(hr, *RELEASE, copy=False) is not None


def _error(code: int, kind: str, details: str) -> tuple[int, dict[str, Any]]:
    return code, {"details": details, "kind": kind, "message": details}


def answer(world: World, method: str, path: str) -> tuple[int, dict[str, Any] | list[Any]]:
    """(HTTP status, JSON body) of one request to the api-rest service."""
    if method != "GET":
        return _error(405, "Unimplemented", f"{method} is not served by the lab's Mayastor")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != "v0":
        return _error(404, "NotFound", f"no route for {path}")
    rest = parts[1:]
    m = world.mayastor
    with world.lock:
        if rest == ["volumes"]:
            return 200, {"entries": [volume_json(world, v) for v in m.volumes.values()]}
        if len(rest) == 2 and rest[0] == "volumes":
            v = m.volumes.get(rest[1])
            if v is None:
                return _error(404, "NotFound", f"Volume '{rest[1]}' not found")
            return 200, volume_json(world, v)
        if rest == ["pools"]:
            return 200, [pool_json(world, p) for p in world.store.list(DISK_POOL)[0]]
        if len(rest) == 2 and rest[0] == "pools":
            found = [p for p in world.store.list(DISK_POOL)[0] if p["metadata"]["name"] == rest[1]]
            if not found:
                return _error(404, "NotFound", f"Pool '{rest[1]}' not found")
            return 200, pool_json(world, found[0])
    return _error(404, "NotFound", f"no route for {path}")


def volume_json(world: World, v: Volume) -> dict[str, Any]:
    m = world.mayastor
    topology: dict[str, Any] = {}
    for r in v.replicas:
        entry: dict[str, Any] = {"node": r.node, "pool": r.pool, "state": m.replica_state(r)}
        entry["usage"] = {"capacity": v.size, "allocated": r.allocated}
        progress = m.rebuild_progress(r)
        if progress is not None:
            entry["rebuild-progress"] = progress
        topology[r.uuid] = entry
    return {
        "spec": {
            "num_replicas": v.num_replicas,
            "size": v.size,
            "status": "Created",
            "uuid": v.uuid,
            "thin": v.thin,
            "labels": {"openebs.io/created-by": "csi-controller"},
            "policy": {"self_heal": True},
            "topology": {"pool_topology": {"labelled": {"exclusion": {}, "inclusion": {}}}},
        },
        "state": {
            "size": v.size,
            "status": m.volume_status(v),
            "uuid": v.uuid,
            "replica_topology": topology,
        },
    }


def pool_json(world: World, pool: dict[str, Any]) -> dict[str, Any]:
    spec = pool.get("spec") or {}
    status = pool.get("status") or {}
    name = pool["metadata"]["name"]
    used, committed = world.mayastor.usage(pool)
    disks = [str(d) for d in spec.get("disks") or []]
    out: dict[str, Any] = {
        "id": name,
        "spec": {"disks": disks, "id": name, "node": spec.get("node", ""), "status": "Created"},
    }
    out["state"] = {
        "capacity": int(status.get("capacity") or 0),
        "disks": disks,
        "id": name,
        "node": spec.get("node", ""),
        "status": status.get("pool_status") or "Unknown",
        "used": used,
        "committed": committed,
    }
    return out
