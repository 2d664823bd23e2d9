"""Kubernetes objects as the lab's kubelets and controllers would write them.

Pure builders (no world state): Nodes, Pods with their status and conditions, and the
small selector and owner helpers the scheduler uses.
"""

from __future__ import annotations

import hashlib
import random

from dapper.lab.store import now_rfc3339
from dapper.lab.world.model import KUBERNETES_VERSION, TALOS_VERSION, NodeSpec


def name_suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def controller_of(pod: dict) -> tuple[str, str]:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return (refs[0].get("kind", ""), refs[0].get("name", "")) if refs else ("", "")


def owner_key(pod: dict) -> str:
    """`namespace/Kind/name` of the pod's controller, "" for a pod nothing owns."""
    kind, name = controller_of(pod)
    return f"{pod.get('metadata', {}).get('namespace', '')}/{kind}/{name}" if name else ""


def spread_rank(owner: str, node: str, siblings: int) -> tuple[int, str]:
    """How much a pod of `owner` prefers `node` (lower first): spread over nodes holding
    fewer of its siblings, as kube-scheduler's default topology spreading does, then a
    hash of owner and node. The result depends on the workload alone, never on the order
    other workloads happened to be placed in, so the lab lays pods out the same on every
    start (a fewest-pods-overall rule moved pods with the order HelmReleases got ready)."""
    return siblings, hashlib.sha256(f"{owner}|{node}".encode()).hexdigest()


def labels_match(labels: dict[str, str], selector: dict[str, str] | None) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def node_conditions(
    ready: bool,
    reason: str,
    message: str,
    status: str | None = None,
    *,
    since: str | None = None,
    heartbeat: str | None = None,
) -> list:
    """A kubelet's node conditions: `since` is when they last changed (default now),
    `heartbeat` when the kubelet last posted (default now)."""
    now = now_rfc3339()
    since = since or now
    heartbeat = heartbeat or now
    conds = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "message": msg,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": since,
        }
        for t, r, msg in (
            (
                "MemoryPressure",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    if not ready:
        for c in conds:
            c.update(status="Unknown", reason="NodeStatusUnknown", message=message)
    conds.append(
        {
            "type": "Ready",
            "status": status or ("True" if ready else "False"),
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": since,
        }
    )
    return conds


def pod_conditions(ready: bool) -> list:
    now = now_rfc3339()
    s = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": s, "lastTransitionTime": now},
        {"type": "Ready", "status": s, "lastTransitionTime": now},
    ]


def pod_status(scheduled: bool, ready: bool) -> dict:
    if not scheduled:
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/0 nodes are available",
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
        }
    return {
        "phase": "Running",
        "conditions": pod_conditions(ready),
        "startTime": now_rfc3339(),
        "containerStatuses": [
            {
                "name": "app",
                "ready": ready,
                "restartCount": 0,
                "image": "lab/app:latest",
                # required by typed clients (V1ContainerStatus.imageID)
                "imageID": "docker.io/lab/app@sha256:" + "0" * 64,
                "started": True,
            }
        ],
    }


def default_requests_from_limits(pod: dict) -> None:
    """As the API server defaults a container: a resource with a limit and no request is
    requested at its limit (extended resources like nvidia.com/gpu must be)."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        limits = res.get("limits") or {}
        if not limits:
            continue
        requests = res.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)
        c["resources"] = res


def pod_gpu_request(pod: dict) -> int:
    total = 0
    for c in pod.get("spec", {}).get("containers", []) or []:
        res = c.get("resources", {}) or {}
        val = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += int(val or 0)
    return total


def pod_object(
    ns: str,
    name: str,
    node: str,
    *,
    owner: tuple[str, str] = ("", ""),
    labels: dict[str, str] | None = None,
    cpu: str = "50m",
    memory: str = "64Mi",
    gpu: int = 0,
    node_selector: dict[str, str] | None = None,
    tolerate_control_plane: bool = False,
    index: int = 0,
    runtime_class: str | None = None,
) -> dict:
    """A Pod as the kubelet would report it running on `node` (or Pending when node is '')."""
    resources: dict = {"requests": {"cpu": cpu, "memory": memory}}
    if gpu:
        resources["limits"] = {"nvidia.com/gpu": str(gpu)}
    spec: dict = {
        "nodeName": node,
        "containers": [{"name": "app", "image": "lab/app:latest", "resources": resources}],
        "restartPolicy": "Always",
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerate_control_plane:
        spec["tolerations"] = [{"operator": "Exists"}]
    elif owner[0] == "Node":  # static pods stay on their node, as kubeadm's and Talos's do
        spec["tolerations"] = [{"operator": "Exists", "effect": "NoExecute"}]
    if runtime_class or gpu:
        spec["runtimeClassName"] = runtime_class or "nvidia"
    meta: dict = {"name": name, "namespace": ns, "labels": dict(labels or {})}
    if owner[0]:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1" if owner[0] == "Node" else "apps/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": hashlib.md5(f"{ns}/{owner[1]}".encode()).hexdigest(),
                "controller": True,
            }
        ]
    if owner[0] == "Node":
        meta["annotations"] = {
            "kubernetes.io/config.mirror": hashlib.md5(name.encode()).hexdigest()
        }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": pod_status(bool(node), bool(node)),
    }
    default_requests_from_limits(pod)
    return pod


def node_object(spec: NodeSpec, *, created: float, gpu_units: int, index: int = 0) -> dict:
    """A Node as the kubelet registers it, Ready, with the kubelet's own labels (and NFD's
    for the GPUs its machine shows); the labels of the machine's config are Talos's to add
    (`node_labels.talos_apply`). The `index`th /24 of the pod CIDR (10.69.0.0/16) is its
    own."""
    labels = {
        "kubernetes.io/hostname": spec.hostname,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
    }
    capacity = {
        "cpu": str(spec.cores),
        "memory": f"{spec.memory_mib * 1024}Ki",
        "pods": "250",
        "ephemeral-storage": "62914560Ki",
    }
    taints = []
    if spec.role == "controlplane":  # Talos's NodeTaintSpec on a control plane
        taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
    if spec.storage:
        capacity["hugepages-2Mi"] = "2Gi"
    cidr = f"10.69.{index}.0/24"
    if spec.gpu:
        capacity["nvidia.com/gpu"] = str(gpu_units)
    if gpu_units:  # NFD labels what the machine's PCI bus shows
        labels.update(
            {
                "nvidia.feature.node.kubernetes.io/gpu": "true",
                "feature.node.kubernetes.io/pci-0302_10de.present": "true",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.hostname,
            "labels": labels,
            "creationTimestamp": now_rfc3339(created),
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": taints}
        if taints
        else {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "addresses": [
                {"type": "InternalIP", "address": spec.ip},
                {"type": "Hostname", "address": spec.hostname},
            ],
            "conditions": node_conditions(
                True,
                "KubeletReady",
                "kubelet is posting ready status",
                since=now_rfc3339(created + 90),  # the kubelet's first Ready, after boot
            ),
            "nodeInfo": {
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": KUBERNETES_VERSION,
                "osImage": f"Talos ({TALOS_VERSION})",
                "kernelVersion": "6.12.48-talos",
                "containerRuntimeVersion": "containerd://2.1.4",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": hashlib.md5(spec.hostname.encode()).hexdigest(),
                "systemUUID": hashlib.md5(spec.mac.encode()).hexdigest(),
                "bootID": hashlib.md5(spec.ip.encode()).hexdigest(),
            },
        },
    }
