"""`dapper-tui lab`: run the lab alone until interrupted, for kubectl, talosctl and friends."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from dapper.cli.logsetup import setup_logging

# a sized lab reports its pods once Flux has applied the apps; a busy machine may take
# longer, and the lab runs on either way
SETTLE_SECONDS = 600.0


def run(args: argparse.Namespace) -> int:
    setup_logging(console=True)
    from dapper.lab.runtime import find_repo, start_lab
    from dapper.lab.world import WorldError

    directory = Path(args.dir or "lab-run").expanduser().resolve()
    repo = Path(args.repo).resolve() if args.repo else find_repo()
    try:
        lab = start_lab(
            repo=repo,
            directory=directory,
            nodes=args.nodes,
            pods=args.pods,
            churn=args.churn,
            faults=tuple(args.fault),
            stage=args.stage,
        )
    except WorldError as exc:
        print(f"dapper-tui lab: {exc}", file=sys.stderr)
        return 2
    f = lab.files
    if lab.world.stage == "bare":
        print(f"lab running: a bare Proxmox host to bootstrap; client files in {f.dir}")
        print(f"  dapper-tui --config {f.config} runbook run bootstrap")
        print(f"      (writes {f.kubeconfig} and {f.talosconfig}; helmfile is {f.helmfile})")
    else:
        print(f"lab running: {len(lab.world.specs)} nodes; client files in {f.dir}")
        if lab.flux is not None and (args.pods or args.churn):
            if not lab.flux.settle(timeout=SETTLE_SECONDS):
                print(f"  Flux has not settled in {SETTLE_SECONDS:.0f} s; the lab keeps running")
            pods = len(lab.world.pods())
            churn = f"; churn {args.churn:g} pod changes/s" if args.churn else ""
            print(f"  {pods} pods, {lab.flux.scale_apps} synthetic apps{churn}")
    print(f"  kubectl --kubeconfig {f.kubeconfig} get nodes")
    print("      (context lab-readonly gets 403 on writes)")
    print(f"  talosctl --talosconfig {f.talosconfig} -n 10.100.0.50 version")
    print(f"  set -a; . {f.proxmox_env}; set +a                     (PROXMOX_* for proxmoxer)")
    print(
        f"  dapper-tui --config {f.config}                          (or {f.config_readonly.name})"
    )
    if repo is None:
        print("  (no checkout with kubernetes/ found: the Flux twin is off; use --repo)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        # announced inside the try: a Ctrl+C right after the line must still stop cleanly
        print("Ctrl+C stops the lab.", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
        print("lab stopped")
    return 0
