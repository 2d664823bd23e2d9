"""`dapper-tui config check`: what is missing or unreachable, one line each.

It reads files and tries each API once with a short timeout; it never changes anything.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dapper.backends.config import Config, ConfigError


def _file(label: str, path: str) -> list[str]:
    if not path:
        return []
    p = Path(path).expanduser()
    if not p.exists():
        return [f"{label}: {p} does not exist"]
    if not p.is_file():
        return [f"{label}: {p} is not a file"]
    return []


def _talos_context(cfg: Config) -> list[str]:
    """The talosconfig names the configured context (read only; no connection)."""
    from dapper.backends.clients.talosconfig import load_talosconfig
    from dapper.backends.errors import BackendError

    try:
        load_talosconfig(cfg.talosconfig or None, cfg.talos_context or None)
    except BackendError as exc:
        return [str(exc)]
    return []


def static_problems(cfg: Config) -> list[str]:
    """What makes `cfg` unusable before any connection: missing files, contexts, secrets."""
    if cfg.lab and not cfg.source:
        return []
    problems: list[str] = []
    problems += _file("kubeconfig", cfg.kubeconfig)
    talos_file = _file("talosconfig", cfg.talosconfig)
    problems += talos_file or _talos_context(cfg)
    if not cfg.proxmox.url:
        problems.append("proxmox.url: not set")
    if not cfg.proxmox.token_id:
        problems.append("proxmox.token_id: not set (user@realm!tokenid)")
    elif "!" not in cfg.proxmox.token_id or "@" not in cfg.proxmox.token_id:
        problems.append(f"proxmox.token_id: {cfg.proxmox.token_id!r} is not user@realm!tokenid")
    try:
        cfg.proxmox.token_secret()
    except ConfigError as exc:
        problems.append(str(exc))
    repo = Path(cfg.repo_path or ".").expanduser()
    if not (repo / "kubernetes").is_dir():
        problems.append(f"repo_path: {repo} has no kubernetes/ tree")
    return problems


def insecure_warnings(cfg: Config) -> list[str]:
    """The APIs whose certificates go unverified: named, though they do not fail the check."""
    from dapper.backends.tls_posture import insecure_tls

    return [f"warning: {line}" for line in insecure_tls(cfg)]


def check_config(cfg: Config, *, timeout: float = 5.0) -> list[str]:
    """Problems with `cfg`, one line each; empty when everything answered."""
    problems = static_problems(cfg)
    if problems or (cfg.lab and not cfg.source):
        return problems

    from dapper.backends.snapshot.collector import Collector

    async def probe() -> list[str]:
        collector = Collector(cfg, timeout=timeout)
        try:
            await collector.refresh_all()
        finally:
            await collector.close()
        return [f"{s.source}: {s.reason}" for s in collector.snapshot.sources if not s.ok]

    return asyncio.run(probe())
