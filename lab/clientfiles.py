"""Client configuration files for the lab: kubeconfig, talosconfig, Proxmox env, config.toml.

Each comes in an admin and a read-only variant, so kubectl, talosctl, proxmoxer and
dapper-tui itself can talk to the lab exactly as they would to the real cluster.
Files are written 0600: they hold the lab's (throwaway) credentials.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dapper.lab.credentials import LabCredentials
from dapper.lab.pki import Pki


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


@dataclass(frozen=True)
class LabFiles:
    dir: Path
    ca: Path
    kubeconfig: Path  # contexts: lab-admin (current), lab-readonly
    talosconfig: Path  # contexts: lab-admin (current), lab-reader
    proxmox_env: Path
    pve_admin_secret: Path
    pve_auditor_secret: Path
    age_key: Path  # the operator's age key file in the lab (a copy of the LAB-ONLY key)
    config: Path  # dapper-tui config.toml (admin)
    config_readonly: Path
    helmfile: Path | None = None  # the lab's helmfile shim (<dir>/bin/helmfile)


def kubeconfig_text(url: str, ca_pem: bytes, creds: LabCredentials) -> str:
    """A kubeconfig (JSON is valid YAML) with an admin and a read-only context."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "dapper-lab",
                "cluster": {"server": url, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {"name": "lab-admin", "user": {"token": creds.kube_admin_token}},
            {"name": "lab-readonly", "user": {"token": creds.kube_readonly_token}},
        ],
        "contexts": [
            {"name": "lab-admin", "context": {"cluster": "dapper-lab", "user": "lab-admin"}},
            {"name": "lab-readonly", "context": {"cluster": "dapper-lab", "user": "lab-readonly"}},
        ],
        "current-context": "lab-admin",
        "preferences": {},
    }
    return json.dumps(doc, indent=2) + "\n"


def talosconfig_text(endpoint: str, nodes: list[str], pki: Pki) -> str:
    """A talosconfig whose keys carry the `ED25519 PRIVATE KEY` label, as talosctl writes."""

    def ctx(role: str) -> dict:
        pair = pki.talos_client(role)
        key = pair.key_pem.replace(b"BEGIN PRIVATE KEY", b"BEGIN ED25519 PRIVATE KEY")
        key = key.replace(b"END PRIVATE KEY", b"END ED25519 PRIVATE KEY")
        return {
            "endpoints": [endpoint],
            "nodes": nodes,
            "ca": _b64(pki.talos_ca.cert_pem),
            "crt": _b64(pair.cert_pem),
            "key": _b64(key),
        }

    doc = {
        "context": "lab-admin",
        "contexts": {"lab-admin": ctx("os:admin"), "lab-reader": ctx("os:reader")},
    }
    return json.dumps(doc, indent=2) + "\n"


def write_client_files(
    directory: Path,
    *,
    kube_url: str,
    pve_url: str,
    pve_admin: tuple[str, str],
    pve_auditor: tuple[str, str],
    talos_endpoint: str,
    talos_maintenance_endpoint: str,
    talos_maintenance_port: int,
    talos_nodes: list[str],
    pki: Pki,
    creds: LabCredentials,
    repo_path: str,
    age_key_text: str,
    helmfile: Path,
    talos_context: str = "",
    cluster_files: bool = True,
) -> LabFiles:
    """Write every client file. Without `cluster_files` (a cluster still to bootstrap) the
    kubeconfig and talosconfig are not written: the bootstrap writes them, and the configs
    name the context it will write (`talos_context`)."""
    directory.mkdir(parents=True, exist_ok=True)
    age_key = _write_private(directory / "age.key", age_key_text)
    ca = directory / "ca.pem"
    ca.write_bytes(pki.https_ca.cert_pem)
    kubeconfig = directory / "kubeconfig"
    talosconfig = directory / "talosconfig"
    if cluster_files:
        _write_private(kubeconfig, kubeconfig_text(kube_url, pki.https_ca.cert_pem, creds))
        _write_private(talosconfig, talosconfig_text(talos_endpoint, talos_nodes, pki))
    else:  # a previous run's files in the same --dir would be another cluster's
        kubeconfig.unlink(missing_ok=True)
        talosconfig.unlink(missing_ok=True)
    admin_secret = _write_private(directory / "pve-admin.secret", pve_admin[1] + "\n")
    auditor_secret = _write_private(directory / "pve-auditor.secret", pve_auditor[1] + "\n")
    proxmox_env = _write_private(
        directory / "proxmox.env",
        (
            f"PROXMOX_URL={pve_url}\n"
            f"PROXMOX_TOKEN_ID={pve_admin[0]}\n"
            f"PROXMOX_TOKEN_SECRET={pve_admin[1]}\n"
            f"PROXMOX_AUDITOR_TOKEN_ID={pve_auditor[0]}\n"
            f"PROXMOX_AUDITOR_TOKEN_SECRET={pve_auditor[1]}\n"
            f"PROXMOX_CA_FILE={ca}\n"
        ),
    )

    def config_toml(read_only: bool) -> str:
        token_id = pve_auditor[0] if read_only else pve_admin[0]
        secret = auditor_secret if read_only else admin_secret
        talos_ctx = talos_context or ("lab-reader" if read_only else "lab-admin")
        return (
            'cluster_name = "LAB"\n'
            "lab = true\n"
            f'kubeconfig = "{kubeconfig}"\n'
            f'kube_context = "{"lab-readonly" if read_only else "lab-admin"}"\n'
            f'talosconfig = "{talosconfig}"\n'
            f'talos_context = "{talos_ctx}"\n'
            f'talos_maintenance_endpoint = "{talos_maintenance_endpoint}"\n'
            f"talos_maintenance_port = {talos_maintenance_port}\n"
            f'talos_endpoint = "{talos_endpoint}"\n'
            f'helmfile = "{helmfile}"\n'
            f'repo_path = "{repo_path}"\n'
            f'sops_age_key_file = "{age_key}"\n'
            f"read_only = {'true' if read_only else 'false'}\n\n"
            "[proxmox]\n"
            f'url = "{pve_url}"\n'
            f'token_id = "{token_id}"\n'
            'token_secret_env = ""\n'
            f'token_secret_file = "{secret}"\n'
            f'ca_file = "{ca}"\n'
        )

    config = _write_private(directory / "config.toml", config_toml(False))
    config_ro = _write_private(directory / "config-readonly.toml", config_toml(True))
    return LabFiles(
        directory,
        ca,
        kubeconfig,
        talosconfig,
        proxmox_env,
        admin_secret,
        auditor_secret,
        age_key,
        config,
        config_ro,
        helmfile,
    )
