"""`dapper-tui`: argument parsing and dispatch; each subcommand lives in its own module.

Modules are imported only for the subcommand that runs, so the console's first frame
does not wait for client libraries it does not need yet.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

# subcommand -> (module, function); the function takes the parsed args, returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "console": ("dapper.cli.console_cmd", "run"),
    "lab": ("dapper.cli.lab_cmd", "run"),
    "status": ("dapper.cli.status_cmd", "run"),
    "check": ("dapper.cli.check_cmd", "run"),
    "config": ("dapper.cli.config_cmd", "run"),
    "runbook": ("dapper.cli.runbook_cmd", "run"),
    "talos": ("dapper.cli.talos_cmd", "run"),
}


# Kept in step with lab/fault_targets.FORMS by a test (the CLI does not import the lab).
FAULT_HELP = """faults (--fault KIND:TARGET):
  node-notready:<node>                 the kubelet stops posting status
  vm-stopped:<vmid or name>            the VM is stopped on Proxmox
  api-down:<kubernetes|proxmox|talos>  the API refuses connections
  api-slow:<api>[:seconds]             the API answers late (default 3 s)
  etcd-unhealthy:<control-plane node>  that etcd member reports unhealthy
  ks-failing:<namespace>/<name>        a Flux Kustomization fails to build
  pool-degraded:<DiskPool name>        a Mayastor pool reports Degraded
  gpu-gone:<PCI address>               a passed-through GPU falls off the bus
  vm-destroyed:<vmid or name>          the VM is deleted from Proxmox (permanent)
  disk-failed:<node>                   the VM runs, its OS disk is dead (permanent)
  node-wedged:<node>                   the kubelet stops posting, Talos still answers
"""
MAX_LAB_NODES = 2000


def _node_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_LAB_NODES:
        raise argparse.ArgumentTypeError(f"{count} is not between 1 and {MAX_LAB_NODES}")
    return count


def _bounded(text: str, kind: type, low: float, high: float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
    return value


def _pod_count(text: str) -> int:
    return int(_bounded(text, int, 1, 100_000))


def _churn_rate(text: str) -> float:
    return _bounded(text, float, 0, 1000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dapper-tui",
        description="Operations console for the Dapper cluster. No subcommand opens the console.",
    )
    parser.add_argument("--config", help="config file (default: $DAPPER_TUI_CONFIG or XDG)")
    parser.add_argument("--read-only", action="store_true", help="refuse every change")
    sub = parser.add_subparsers(dest="command")

    lab = sub.add_parser(
        "lab",
        help="run the lab alone and write client configs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FAULT_HELP,
    )
    lab.add_argument("--dir", help="where to write kubeconfig, talosconfig, proxmox.env")
    lab.add_argument(
        "--nodes", type=_node_count, default=7, help="world size, 1-2000 (default: the real 7)"
    )
    lab.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET",
        help="inject a fault (repeatable); the kinds are listed below",
    )
    lab.add_argument(
        "--pods",
        type=_pod_count,
        default=None,
        metavar="N",
        help="about N pods in all: the synthetic apps' replicas grow to fill it",
    )
    lab.add_argument(
        "--churn",
        type=_churn_rate,
        default=0.0,
        metavar="PER_SECOND",
        help="pod changes per second (restarts, and replaced pods), for watches under load",
    )
    lab.add_argument("--repo", help="the checkout whose kubernetes/ the lab reconciles")
    lab.add_argument(
        "--stage",
        choices=("running", "bare"),
        default="running",
        help="running: the cluster as it runs (default); bare: an empty Proxmox host (no "
        "cluster VMs, no Kubernetes API until etcd exists)",
    )

    status = sub.add_parser("status", help="print the joined snapshot once; exit 0/1/2")
    status.add_argument(
        "--json", action="store_true", help="the whole snapshot as JSON (a stable shape)"
    )
    status.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long each source may take before it counts as degraded (default: 10)",
    )

    check = sub.add_parser("check", help="validate the kubernetes/ Flux tree")
    check.add_argument("--repo", default=".", help="repository root (default: .)")
    check.add_argument("--json", action="store_true", help="the problems as JSON")

    config = sub.add_parser("config", help="show or check the configuration")
    config.add_argument(
        "action",
        choices=["show", "check"],
        help="show: where each source is read from (no secret); "
        "check: what is missing or unreachable, one line each",
    )

    runbook = sub.add_parser("runbook", help="run, resume or list runbooks")
    rb = runbook.add_subparsers(dest="runbook_command", required=True)
    rb.add_parser("list", help="the runbooks, then past and unfinished runs")
    # --help is the runbook's own: its title, summary, parameters and their choices
    rb_run = rb.add_parser(
        "run", help="run a runbook (NAME --help: its parameters)", add_help=False
    )
    rb_run.add_argument("name", nargs="?")
    rb_run.add_argument("-h", "--help", action="store_true", help="describe the runbook")
    rb_run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter (repeatable; NAME --help lists them)",
    )
    rb_run.add_argument("--yes", action="store_true", help="do not ask before changing anything")
    rb_run.add_argument("--dry-run", action="store_true", help="check and preview only")
    rb_resume = rb.add_parser("resume", help="resume an unfinished run")
    rb_resume.add_argument("run_id", help="as `runbook list` shows it")
    rb_resume.add_argument("--yes", action="store_true", help="do not ask before changing anything")

    talos = sub.add_parser("talos", help="Talos machine configs from the tree")
    talos_verbs = talos.add_subparsers(dest="talos_command", required=True)
    genconfig = talos_verbs.add_parser(
        "genconfig",
        help="write the nodes' machine configs and a talosconfig (as talhelper genconfig)",
    )
    genconfig.add_argument(
        "--node",
        action="append",
        metavar="NAME",
        help="only this node (repeatable; default: every node in talconfig.yaml)",
    )
    genconfig.add_argument(
        "--out",
        metavar="DIR",
        help="where to write (default: kubernetes/bootstrap/talos/clusterconfig/, git-ignored)",
    )
    genconfig.add_argument(
        "--repo",
        metavar="PATH",
        help="repository root (default: the configuration's repo_path, else .)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "console"
    module_name, func_name = COMMANDS[command]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`status --json | head`): not an error of ours, and the
        # interpreter must not try to flush into the closed pipe again on the way out
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
