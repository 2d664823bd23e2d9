"""What a bootstrap helmfile release leaves on a cluster, made through the Kubernetes API.

The lab has no Helm: the helmfile shim (`helmfile_shim`) creates, for each release, the
objects the chart would leave (its workloads, CRDs, the FluxInstance) and the Helm release
Secret `sh.helm.release.v1.<name>.v1` that `helm list` and Flux's adoption read. The lab's
world reacts to them as it does to the real ones: the Cilium DaemonSet gives the nodes
their network (Ready), the FluxInstance starts Flux.

Installing is idempotent (a release whose Secret exists is left alone, as helm upgrade
with nothing changed); uninstalling deletes the release Secret and the workloads the
release created but keeps what carries `helm.sh/resource-policy: keep` (the CRDs).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

KEEP = {"helm.sh/resource-policy": "keep"}
PROMETHEUS_CRDS = (
    ("alertmanagerconfigs", "AlertmanagerConfig"),
    ("alertmanagers", "Alertmanager"),
    ("podmonitors", "PodMonitor"),
    ("probes", "Probe"),
    ("prometheusagents", "PrometheusAgent"),
    ("prometheuses", "Prometheus"),
    ("prometheusrules", "PrometheusRule"),
    ("scrapeconfigs", "ScrapeConfig"),
    ("servicemonitors", "ServiceMonitor"),
    ("thanosrulers", "ThanosRuler"),
)


@dataclass
class Release:
    """One helmfile release: where it goes, its chart, and its values (already read)."""

    name: str
    namespace: str
    chart: str
    version: str
    values: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def secret_name(self) -> str:
        return f"sh.helm.release.v1.{self.name}.v1"


def _meta(release: Release, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/instance": release.name,
            "app.kubernetes.io/name": name,
        },
        "annotations": {
            "meta.helm.sh/release-name": release.name,
            "meta.helm.sh/release-namespace": release.namespace,
        },
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _deployment(release: Release, name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(release, name, release.namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": f"{release.chart}:{name}"}]},
            },
        },
    }


def _daemonset(release: Release, name: str) -> dict[str, Any]:
    obj = _deployment(release, name)
    obj["kind"] = "DaemonSet"
    del obj["spec"]["replicas"]
    obj["spec"]["template"]["spec"]["tolerations"] = [{"operator": "Exists"}]
    return obj


def _crd(release: Release, group: str, plural: str, kind: str) -> dict[str, Any]:
    meta = _meta(release, f"{plural}.{group}")
    meta["annotations"].update(KEEP)
    version = (
        "v1alpha1" if kind in ("AlertmanagerConfig", "ScrapeConfig", "PrometheusAgent") else "v1"
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta,
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def _flux_instance(release: Release) -> dict[str, Any]:
    return {
        "apiVersion": "fluxcd.controlplane.io/v1",
        "kind": "FluxInstance",
        "metadata": _meta(release, "flux", release.namespace),
        "spec": dict(release.values.get("instance") or {}),
    }


def chart_objects(release: Release) -> list[dict[str, Any]]:
    """The objects the release's chart leaves (by release name, as the tree's charts do)."""
    name = release.name
    if name == "prometheus-operator-crds":
        return [_crd(release, "monitoring.coreos.com", p, k) for p, k in PROMETHEUS_CRDS]
    if name == "cilium":
        return [_daemonset(release, "cilium"), _deployment(release, "cilium-operator")]
    if name == "coredns":
        return [_deployment(release, "coredns", 2)]
    if name == "cert-manager":
        return [
            _deployment(release, n)
            for n in ("cert-manager", "cert-manager-cainjector", "cert-manager-webhook")
        ]
    if name == "external-secrets":
        return [
            _deployment(release, n)
            for n in (
                "external-secrets",
                "external-secrets-cert-controller",
                "external-secrets-webhook",
            )
        ]
    if name == "flux-operator":
        return [_deployment(release, "flux-operator")]
    if name == "flux-instance":
        return [_flux_instance(release)]
    return []


def release_secret(release: Release, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Helm's storage record: gzip'd JSON, base64'd, in `data.release` (values left out)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {
        "name": release.name,
        "namespace": release.namespace,
        "version": 1,
        "info": {
            "first_deployed": now,
            "last_deployed": now,
            "status": "deployed",
            "description": "Install complete",
        },
        "chart": {
            "metadata": {"name": release.chart.rsplit("/", 1)[-1], "version": release.version}
        },
        "manifest": "\n---\n".join(json.dumps(o, sort_keys=True) for o in objects),
    }
    blob = base64.b64encode(gzip.compress(json.dumps(record).encode())).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": release.secret_name,
            "namespace": release.namespace,
            "labels": {
                "owner": "helm",
                "name": release.name,
                "status": "deployed",
                "version": "1",
            },
        },
        "data": {"release": base64.b64encode(blob.encode()).decode()},
    }


def installed_objects(secret: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest a release Secret recorded (what uninstall removes)."""
    raw = base64.b64decode(((secret.get("data") or {}).get("release") or "").encode())
    record = json.loads(gzip.decompress(base64.b64decode(raw)))
    return [json.loads(doc) for doc in str(record.get("manifest") or "").split("\n---\n") if doc]
