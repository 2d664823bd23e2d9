"""`dapper-tui check`: validate the kubernetes/ Flux tree; a line per problem, exit 1 on errors."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dapper.backends.gitops.treecheck import CheckReport

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    from dapper.backends.gitops.treecheck import run_checks

    repo = Path(getattr(args, "repo", ".") or ".")
    if not (repo / "kubernetes").is_dir():
        print(f"dapper-tui check: {repo}: no kubernetes/ directory here", file=sys.stderr)
        return 1
    try:
        report = run_checks(repo)
    except Exception as exc:  # one line for the operator, details in the log
        log.debug("check failed", exc_info=True)
        print(f"dapper-tui check: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(report.to_json())
    else:
        for problem in report.problems:
            print(problem)
        print(f"checked {report.kustomizations} Flux Kustomizations, {_counts(report)}")
    return 0 if report.ok else 1


def _counts(report: CheckReport) -> str:
    """ "3 problems", or "0 problems, 1 warning": warnings never fail the check."""
    from dapper.backends.gitops.treecheck import WARNING

    warnings = sum(p.severity == WARNING for p in report.problems)
    errors = len(report.problems) - warnings
    text = f"{errors} problem{'' if errors == 1 else 's'}"
    return text + (f", {warnings} warning{'' if warnings == 1 else 's'}" if warnings else "")
