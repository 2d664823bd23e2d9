"""Shared helpers for the Proxmox tests (no tests here); their fixtures (pki, world, server,
ca_file: a lab World behind its PVE server and the lab CA as a file) are in conftest.py."""

from __future__ import annotations

from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.lab.pve_server import PveServer


def backend(server: PveServer, ca_file: str, *, auditor: bool = False, **kw) -> ProxmoxBackend:
    token = server.auditor_token if auditor else server.admin_token
    return ProxmoxBackend(server.url, token.token_id, token.secret, ca_file=ca_file, **kw)
