"""What the API server and kubelet fill in on every Pod: requests defaulted from limits at
creation, and once it runs on a node a pod IP from that node's slice of the pod CIDR
(10.69.<node>.0/24 of 10.69.0.0/16) and the node's address as its host IP."""

from __future__ import annotations

from dapper.lab.kinds import ResourceType, by_kind
from dapper.lab.store import ObjectStore
from dapper.lab.world.kube_objects import controller_of, default_requests_from_limits

HOSTS_PER_NODE = 253  # .2 to .254 of a /24; .1 is the node's cilium_host


class PodNetwork:
    """A store defaulter: see the module docstring. Runs under the store lock."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._next: dict[str, int] = {}

    def default(self, rt: ResourceType, obj: dict, created: bool) -> None:
        if rt.group != "" or rt.kind != "Pod":
            return
        if created:
            default_requests_from_limits(obj)
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        node_name = spec.get("nodeName")
        if not node_name or status.get("podIP") or status.get("phase") != "Running":
            return
        node = self.store.find(by_kind("", "Node"), "", node_name, copy=False)
        if node is None:
            return
        host = next(
            (
                a["address"]
                for a in node.get("status", {}).get("addresses", [])
                if a.get("type") == "InternalIP"
            ),
            "",
        )
        if spec.get("hostNetwork") or controller_of(obj)[0] == "Node":
            ip = host
        else:
            n = self._next.get(node_name, 0)
            self._next[node_name] = n + 1
            cidr = node.get("spec", {}).get("podCIDR") or "10.69.0.0/24"
            ip = f"{cidr.split('/')[0].rsplit('.', 1)[0]}.{2 + n % HOSTS_PER_NODE}"
        # a new status dict: the stored object's own must never change in place
        obj["status"] = {
            **status,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": host,
            "hostIPs": [{"ip": host}],
        }
