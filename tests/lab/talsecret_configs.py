"""Machine configs built from the tree's talsecret bundle the way talhelper maps it, for
the lab tests until the real generator (`dapper-tui talos genconfig`) is merged. The
plaintext lives only in memory."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dapper.backends.sops.file import decrypt_file, parse_identities
from dapper.lab.cluster_identity import TALSECRET
from dapper.lab.runtime import LAB_KEY, find_repo
from ruamel.yaml import YAML

ENDPOINT = "https://10.100.0.40:6443"


def bundle(repo: Path | None = None) -> dict[str, Any]:
    """The decrypted talsecret document of the checkout (the lab key opens it)."""
    root = repo or find_repo()
    assert root is not None, "the tests run from a checkout holding kubernetes/"
    doc = decrypt_file(root / TALSECRET, parse_identities(LAB_KEY.read_text()))
    return dict(doc.documents[0])


def machine_config(
    secrets: dict[str, Any],
    hostname: str,
    role: str,
    *,
    mac: str,
    address: str,
    **overrides: str,
) -> bytes:
    """A v1alpha1 config as talhelper writes one for a node: machine.token is
    trustdinfo.token, cluster.token secrets.bootstraptoken, machine.ca the OS CA (its key
    on control planes only), cluster.ca the Kubernetes CA, the interface selected by MAC
    with a static address. `overrides` replace machine_token, cluster_token or os_ca_crt."""
    certs = secrets["certs"]
    controlplane = role == "controlplane"
    os_ca = {"crt": overrides.get("os_ca_crt", certs["os"]["crt"])}
    k8s_ca = {"crt": certs["k8s"]["crt"]}
    if controlplane:
        os_ca["key"] = certs["os"]["key"]
        k8s_ca["key"] = certs["k8s"]["key"]
    doc = {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": {
            "type": role,
            "token": overrides.get("machine_token", secrets["trustdinfo"]["token"]),
            "ca": os_ca,
            "certSANs": [],
            "network": {
                "hostname": hostname,
                "interfaces": [
                    {
                        "deviceSelector": {"hardwareAddr": mac},
                        "addresses": [address],
                        "routes": [{"network": "0.0.0.0/0", "gateway": "10.100.0.1"}],
                    }
                ],
            },
            "install": {"disk": "/dev/vda", "image": "factory.talos.dev/installer:v1.11.2"},
        },
        "cluster": {
            "id": secrets["cluster"]["id"],
            "secret": secrets["cluster"]["secret"],
            "controlPlane": {"endpoint": ENDPOINT},
            "clusterName": "kubernetes",
            "token": overrides.get("cluster_token", secrets["secrets"]["bootstraptoken"]),
            "ca": k8s_ca,
        },
    }
    out = io.StringIO()
    YAML(typ="safe").dump(doc, out)
    return out.getvalue().encode()
