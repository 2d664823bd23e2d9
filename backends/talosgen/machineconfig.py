"""The v1alpha1 machine config Talos v1.11's generator makes for one node, before patches.

Modelled on siderolabs/talos v1.11 pkg/machinery/config/generate (init.go, worker.go) with
talhelper's inputs (pkg/talos/input.go, nodeconfig.go), for the version contract >= 1.8:
rbac, stableHostname, apidCheckExtKeyUsage, diskQuotaSupport, KubePrism on 7445, host DNS
forwarding kube-dns to the host, kubelet seccomp default and no manifests directory,
PodSecurity admission and the default audit policy, secretbox encryption, discovery with
the Kubernetes registry disabled, the cluster name on workers too, and the
exclude-from-external-load-balancers label on control planes.

Where the secret bundle goes: machine.token = trustdinfo.token; machine.ca = certs.os
(its key on control planes only); cluster.id/secret = cluster.id/secret; cluster.token =
secrets.bootstraptoken; cluster.ca = certs.k8s (key on control planes only); and on
control planes only: cluster.aggregatorCA = certs.k8saggregator, cluster.serviceAccount
= certs.k8sserviceaccount, cluster.etcd.ca = certs.etcd, cluster.secretboxEncryptionSecret.

talhelper then sets, for Talos < 1.12: machine.network.hostname, the node's
networkInterfaces as machine.network.interfaces, machine.install.disk, and
machine.install.image = talosImageURL:talosVersion.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlparse

from dapper.backends.talosgen.secrets import CertPair, SecretBundle
from dapper.backends.talosgen.talconfig import TalConfig, TalNode

KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet"
APISERVER_IMAGE = "registry.k8s.io/kube-apiserver"
CONTROLLER_MANAGER_IMAGE = "registry.k8s.io/kube-controller-manager"
SCHEDULER_IMAGE = "registry.k8s.io/kube-scheduler"
PROXY_IMAGE = "registry.k8s.io/kube-proxy"
KUBEPRISM_PORT = 7445
EXCLUDE_FROM_EXTERNAL_LB = "node.kubernetes.io/exclude-from-external-load-balancers"

DEFAULT_POD_SECURITY: dict[str, Any] = {
    "name": "PodSecurity",
    "configuration": {
        "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
        "kind": "PodSecurityConfiguration",
        "defaults": {
            "audit": "restricted",
            "audit-version": "latest",
            "enforce": "baseline",
            "enforce-version": "latest",
            "warn": "restricted",
            "warn-version": "latest",
        },
        "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
    },
}
DEFAULT_AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "rules": [{"level": "Metadata"}],
}


def _ca(pair: CertPair, *, with_key: bool) -> dict[str, str]:
    return {"crt": pair.crt, "key": pair.key if with_key else ""}


def base_config(talconfig: TalConfig, node: TalNode, bundle: SecretBundle) -> dict[str, Any]:
    """The node's v1alpha1 document before any patch (plain data, Talos's key order)."""
    cp = node.control_plane
    k8s = talconfig.kubernetes_version
    features: dict[str, Any] = {
        "rbac": True,
        "stableHostname": True,
        "apidCheckExtKeyUsage": True,
        "diskQuotaSupport": True,
        "kubePrism": {"enabled": True, "port": KUBEPRISM_PORT},
        "hostDNS": {"enabled": True, "forwardKubeDNSToHost": True},
    }
    network: dict[str, Any] = {"hostname": node.hostname}
    if node.interfaces:
        network["interfaces"] = [dict(i) for i in node.interfaces]
    machine: dict[str, Any] = {
        "type": node.role,
        "token": bundle.trustd_token,
        "ca": _ca(bundle.os, with_key=cp),
        "certSANs": [*talconfig.machine_cert_sans, *node.cert_sans],
        "kubelet": {
            "image": f"{KUBELET_IMAGE}:{k8s}",
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "network": network,
        "install": {"disk": node.install_disk, "image": node.image, "wipe": False},
        "registries": {},
        "features": features,
    }
    if cp:
        machine["nodeLabels"] = {EXCLUDE_FROM_EXTERNAL_LB: ""}
    cluster_network: dict[str, Any] = {
        "dnsDomain": talconfig.dns_domain,
        "podSubnets": list(talconfig.pod_subnets),
        "serviceSubnets": list(talconfig.service_subnets),
    }
    if talconfig.cni is not None:
        cluster_network["cni"] = dict(talconfig.cni)
    cluster: dict[str, Any] = {
        "id": bundle.cluster_id,
        "secret": bundle.cluster_secret,
        "controlPlane": {"endpoint": talconfig.endpoint},
        "clusterName": talconfig.cluster_name,
        "network": cluster_network,
        "token": bundle.bootstrap_token,
    }
    if cp:
        if bundle.secretbox_encryption_secret:
            cluster["secretboxEncryptionSecret"] = bundle.secretbox_encryption_secret
        else:
            cluster["aescbcEncryptionSecret"] = bundle.aescbc_encryption_secret
    cluster["ca"] = _ca(bundle.k8s, with_key=cp)
    if cp:
        cluster.update(_control_plane_sections(talconfig, bundle))
        if talconfig.allow_scheduling_on_control_planes:
            cluster["allowSchedulingOnControlPlanes"] = True
    cluster["discovery"] = {
        "enabled": True,
        "registries": {"kubernetes": {"disabled": True}, "service": {}},
    }
    if cp:
        cluster["etcd"] = {"ca": _ca(bundle.etcd, with_key=True)}
        cluster["extraManifests"] = []
        cluster["inlineManifests"] = []
    return {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": machine,
        "cluster": cluster,
    }


def api_server_sans(talconfig: TalConfig) -> list[str]:
    """The endpoint's host, then additionalApiServerCertSans (Talos does not de-duplicate)."""
    host = urlparse(talconfig.endpoint).hostname
    return [*([host] if host else []), *talconfig.api_server_cert_sans]


def _control_plane_sections(talconfig: TalConfig, bundle: SecretBundle) -> dict[str, Any]:
    k8s = talconfig.kubernetes_version
    return {
        "aggregatorCA": _ca(bundle.k8s_aggregator, with_key=True),
        "serviceAccount": {"key": bundle.k8s_service_account_key},
        "apiServer": {
            "image": f"{APISERVER_IMAGE}:{k8s}",
            "certSANs": api_server_sans(talconfig),
            "disablePodSecurityPolicy": True,
            "admissionControl": [copy.deepcopy(DEFAULT_POD_SECURITY)],
            "auditPolicy": copy.deepcopy(DEFAULT_AUDIT_POLICY),
        },
        "controllerManager": {"image": f"{CONTROLLER_MANAGER_IMAGE}:{k8s}"},
        "proxy": {"image": f"{PROXY_IMAGE}:{k8s}"},
        "scheduler": {"image": f"{SCHEDULER_IMAGE}:{k8s}"},
    }
