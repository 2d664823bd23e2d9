"""`dapper-tui`: argument parsing and dispatch; each subcommand lives in its own module.

Modules are imported only for the subcommand that runs, so the console's first frame
does not wait for client libraries it does not need yet.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, function); the function takes the parsed args, returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "console": ("dapper.cli.console_cmd", "run"),
    "lab": ("dapper.cli.lab_cmd", "run"),
    "status": ("dapper.cli.status_cmd", "run"),
    "check": ("dapper.cli.check_cmd", "run"),
    "config": ("dapper.cli.config_cmd", "run"),
    "runbook": ("dapper.cli.runbook_cmd", "run"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dapper-tui",
        description="Operations console for the Dapper cluster. No subcommand opens the console.",
    )
    parser.add_argument("--config", help="config file (default: $DAPPER_TUI_CONFIG or XDG)")
    parser.add_argument("--read-only", action="store_true", help="refuse every change")
    sub = parser.add_subparsers(dest="command")

    lab = sub.add_parser("lab", help="run the lab alone and write client configs")
    lab.add_argument("--dir", help="where to write kubeconfig, talosconfig, proxmox.env")
    lab.add_argument("--nodes", type=int, default=7, help="world size (default: the real 7)")
    lab.add_argument(
        "--fault", action="append", default=[], help="inject a fault, e.g. vm-stopped:104"
    )
    lab.add_argument("--repo", help="the checkout whose kubernetes/ the lab reconciles")

    status = sub.add_parser("status", help="print the joined snapshot once; exit 0/1/2")
    status.add_argument("--json", action="store_true")
    status.add_argument("--timeout", type=float, default=10.0)

    check = sub.add_parser("check", help="validate the kubernetes/ Flux tree")
    check.add_argument("--repo", default=".", help="repository root (default: .)")
    check.add_argument("--json", action="store_true")

    config = sub.add_parser("config", help="show or check the configuration")
    config.add_argument("action", choices=["show", "check"])

    runbook = sub.add_parser("runbook", help="run, resume or list runbooks")
    rb = runbook.add_subparsers(dest="runbook_command", required=True)
    rb.add_parser("list", help="the runbooks, then past and unfinished runs")
    # --help is the runbook's own: its title, summary, parameters and their choices
    rb_run = rb.add_parser(
        "run", help="run a runbook (NAME --help: its parameters)", add_help=False
    )
    rb_run.add_argument("name", nargs="?")
    rb_run.add_argument("-h", "--help", action="store_true", help="describe the runbook")
    rb_run.add_argument("--param", action="append", default=[], metavar="K=V")
    rb_run.add_argument("--yes", action="store_true", help="do not ask before changing anything")
    rb_run.add_argument("--dry-run", action="store_true", help="check and preview only")
    rb_resume = rb.add_parser("resume", help="resume an unfinished run")
    rb_resume.add_argument("run_id")
    rb_resume.add_argument("--yes", action="store_true")
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


if __name__ == "__main__":
    sys.exit(main())
