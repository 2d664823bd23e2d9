"""The lab's identities: an admin and a read-only one for each API, made fresh per start."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabCredentials:
    """Bearer tokens for Kubernetes, API tokens for Proxmox; Talos roles live in client certs
    (see lab/pki.py). The read-only identities are refused every write at the server."""

    kube_admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    kube_readonly_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    pve_admin_token_id: str = "root@pam!dapper-tui"
    pve_admin_secret: str = field(default_factory=lambda: str(uuid.uuid4()))
    pve_auditor_token_id: str = "auditor@pve!dapper-tui"
    pve_auditor_secret: str = field(default_factory=lambda: str(uuid.uuid4()))

    def kube_identity(self, token: str) -> str | None:
        """'admin', 'readonly' or None (401) for a bearer token."""
        if secrets.compare_digest(token, self.kube_admin_token):
            return "admin"
        if secrets.compare_digest(token, self.kube_readonly_token):
            return "readonly"
        return None

    def pve_identity(self, token_id: str, secret: str) -> str | None:
        """'admin', 'auditor' or None (401) for a `PVEAPIToken=id=secret` pair."""
        if token_id == self.pve_admin_token_id and secrets.compare_digest(
            secret, self.pve_admin_secret
        ):
            return "admin"
        if token_id == self.pve_auditor_token_id and secrets.compare_digest(
            secret, self.pve_auditor_secret
        ):
            return "auditor"
        return None
