"""The lab's Kubernetes identities: an admin and a read-only token, made fresh per start."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabCredentials:
    """Bearer tokens for Kubernetes (Proxmox tokens live in its server, Talos roles in client
    certificates from lab/pki.py). The read-only identity is refused every write."""

    kube_admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    kube_readonly_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def kube_identity(self, token: str) -> str | None:
        """'admin', 'readonly' or None (401) for a bearer token."""
        if secrets.compare_digest(token, self.kube_admin_token):
            return "admin"
        if secrets.compare_digest(token, self.kube_readonly_token):
            return "readonly"
        return None
