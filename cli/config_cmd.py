"""`dapper-tui config show|check`."""

from __future__ import annotations

import argparse
import sys

from dapper.backends.config import ConfigError, load_config


def run(args: argparse.Namespace) -> int:
    from dapper.cli.logsetup import setup_logging

    setup_logging(console=False)  # a degraded source's details go to the log, not here
    try:
        cfg = load_config(args.config, read_only=args.read_only)
    except ConfigError as exc:
        print(f"dapper-tui config: {exc}", file=sys.stderr)
        return 2
    if args.action == "show":
        print(f"source      {cfg.source or '(none: the lab)'}")
        print(f"cluster     {cfg.cluster_name} ({cfg.mode})")
        print(f"read-only   {'yes' if cfg.read_only else 'no'}")
        if cfg.lab and not cfg.source:
            return 0
        print(f"kubeconfig  {cfg.kubeconfig or '(default)'} context={cfg.kube_context or '-'}")
        print(f"talosconfig {cfg.talosconfig or '(default)'} context={cfg.talos_context or '-'}")
        p = cfg.proxmox
        where = f"${p.token_secret_env}" if p.token_secret_env else p.token_secret_file
        print(f"proxmox     {p.url or '-'} token={p.token_id or '-'} secret from {where}")
        print(f"repo        {cfg.repo_path or '.'} remote={cfg.repo_remote}")
        return 0
    from dapper.backends.configcheck import check_config, insecure_warnings

    problems = check_config(cfg)
    for line in [*problems, *insecure_warnings(cfg)]:
        print(line)
    if not problems:
        print("config ok")
    return 1 if problems else 0
