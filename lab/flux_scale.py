"""Synthetic Kustomizations for benchmark labs: many small apps, no tree paths to build.

A benchmark lab with hundreds of nodes needs thousands of Kustomizations and pods; the
real tree has ~40. These apps look like the tree's app-template apps (a ConfigMap and a
HelmRelease on the namespace's `app-template` OCIRepository, depending on cluster-apps)
but their objects are generated, so a reconcile measures the twin, not the parser.
"""

from __future__ import annotations

from typing import Any

SYNTHETIC_LABEL = "lab.dapper.dev/synthetic"
APPS_PER_NAMESPACE = 50
STATEFUL_EVERY = 5  # every 5th synthetic app is a StatefulSet, the rest Deployments
# What the real tree runs besides the synthetic apps, measured on the default lab: 85
# pods at 7 nodes, and 7 DaemonSet pods per added node (cilium, spegel, promtail,
# node-exporter, NFD worker, Mayastor). `--pods` is a target; the lab prints the count.
REAL_TREE_PODS = 85
PODS_PER_EXTRA_NODE = 7


def replicas_plan(apps: int, nodes: int, total_pods: int | None) -> list[int]:
    """Replicas of each synthetic app so the lab runs about `total_pods` pods in all
    (None: one each). Spread evenly, never below one."""
    if apps <= 0:
        return []
    if total_pods is None:
        return [1] * apps
    rest = REAL_TREE_PODS + PODS_PER_EXTRA_NODE * max(0, nodes - 7)
    synthetic = max(apps, total_pods - rest)
    base, extra = divmod(synthetic, apps)
    return [base + (1 if i < extra else 0) for i in range(apps)]


def index_of(name: str) -> int:
    """The index a synthetic app's name carries (name_of's inverse)."""
    return int(name.rsplit("-", 1)[1])


def namespace_of(index: int) -> str:
    return f"bench-{index // APPS_PER_NAMESPACE:02d}"


def name_of(index: int) -> str:
    return f"bench-app-{index:04d}"


def kustomizations(count: int) -> list[dict[str, Any]]:
    """The Flux Kustomization objects of `count` synthetic apps."""
    out = []
    for i in range(count):
        ns, name = namespace_of(i), name_of(i)
        out.append(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {SYNTHETIC_LABEL: "true", "app.kubernetes.io/name": name},
                },
                "spec": {
                    "interval": "30m",
                    "path": f"./kubernetes/apps/{ns}/{name}/app",
                    "prune": True,
                    "wait": False,
                    "targetNamespace": ns,
                    "timeout": "5m",
                    "dependsOn": [{"name": "cluster-apps", "namespace": "flux-system"}],
                    "sourceRef": {
                        "kind": "GitRepository",
                        "name": "flux-system",
                        "namespace": "flux-system",
                    },
                },
            }
        )
    return out


def namespaces(count: int) -> list[str]:
    return sorted({namespace_of(i) for i in range(count)})


def objects(namespace: str, name: str, replicas: int = 1) -> list[dict[str, Any]]:
    """What one synthetic app applies: app-template values with `replicas` pods, as a
    StatefulSet for every STATEFUL_EVERY-th app."""
    stateful = index_of(name) % STATEFUL_EVERY == STATEFUL_EVERY - 1
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": "app-template", "namespace": namespace},
            "spec": {
                "interval": "1h",
                "url": "oci://ghcr.io/bjw-s-labs/helm/app-template",
                "ref": {"tag": "4.3.0"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-config", "namespace": namespace},
            "data": {"APP": name, "TZ": "Etc/UTC"},
        },
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "interval": "30m",
                "chartRef": {"kind": "OCIRepository", "name": "app-template"},
                "values": {
                    "controllers": {
                        name: {
                            "type": "statefulset" if stateful else "deployment",
                            "replicas": replicas,
                            "containers": {
                                "app": {
                                    "image": {"repository": "ghcr.io/lab/bench", "tag": "1.0.0"},
                                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                                }
                            },
                        }
                    }
                },
            },
        },
    ]
