"""Which connections the configuration leaves without TLS verification.

Turning verification off is sometimes what a homelab does (a self-signed Proxmox), but it
must never be silent: `config check`, `status` and the console's header all name it, from
this one reading of the configuration (no connection needed).
"""

from __future__ import annotations

import logging

from dapper.backends.clients.kubeconfig import kubeconfig_path, named
from dapper.backends.config import Config

log = logging.getLogger(__name__)


def kubeconfig_skips_verification(cfg: Config) -> str:
    """Where the kubeconfig turns verification off for the context in use, or ""."""
    path = kubeconfig_path(cfg.kubeconfig or None, first_of_many=True)
    if path is None or not path.is_file():
        return ""
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text())
    except (OSError, UnicodeDecodeError, YAMLError):
        return ""  # an unreadable kubeconfig is the client's to report
    if not isinstance(doc, dict):
        return ""
    context_name = cfg.kube_context or str(doc.get("current-context") or "")
    context = named(doc.get("contexts"), context_name).get("context") or {}
    cluster = named(doc.get("clusters"), str(context.get("cluster") or "")).get("cluster") or {}
    if cluster.get("insecure-skip-tls-verify") is True:
        return f"insecure-skip-tls-verify in {path} (context {context_name})"
    return ""


def insecure_tls(cfg: Config) -> tuple[str, ...]:
    """One line per API whose server certificate is not verified; () when all are."""
    out = []
    kube = kubeconfig_skips_verification(cfg)
    if kube:
        out.append(f"kubernetes: TLS verification is off ({kube})")
    if cfg.proxmox.url and not cfg.proxmox.verify_tls:
        out.append("proxmox: TLS verification is off (verify_tls = false)")
    for line in out:
        log.warning("%s", line)
    return tuple(out)
