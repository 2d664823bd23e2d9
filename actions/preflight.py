"""Preconditions every changing runbook shares, checked before the preview.

The work tree must be clean under kubernetes/ and .sops.yaml (apart from files this run
itself already wrote, on resume), the Git remote and the cluster must answer, and the
operator's age identities must be there. Each failure is one line naming what to fix.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from dapper.actions.engine import RunContext, StepFailed
from dapper.backends.clients.gitrepo import GitError
from dapper.backends.errors import BackendError
from dapper.backends.sops.errors import NoKeyError
from dapper.backends.sops.keys import ENV_KEY, ENV_KEY_FILE, load_identities, read_identity_file

log = logging.getLogger(__name__)


def own_paths(ctx: RunContext) -> set[str]:
    """Paths this run wrote (journaled before each write), so resume does not refuse them."""
    out: set[str] = set()
    for outputs in ctx.outputs.values():
        out.update(outputs.get("paths", []) or [])
    return out


def check_clean(ctx: RunContext) -> None:
    dirty = [p for p in ctx.repo.dirty_paths("kubernetes/") if p not in own_paths(ctx)]
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise StepFailed(f"uncommitted changes in the tree: {shown}; commit or stash them first")


def check_branch(ctx: RunContext) -> None:
    """Commits land on the configured branch only: a detached HEAD or another branch would
    commit where the push cannot follow (found at push time, after the edits)."""
    branch, sha = ctx.repo.head()
    want = ctx.config.repo_branch
    if not branch:
        raise StepFailed(f"HEAD is detached at {sha[:7]}; check out {want} first")
    if branch != want:
        raise StepFailed(f"on branch {branch}, not the configured {want}; check out {want} first")


def check_remote(ctx: RunContext) -> None:
    try:
        ctx.repo.fetch(ctx.config.repo_remote, ctx.config.repo_branch)
    except GitError as exc:
        raise StepFailed(f"Git remote {ctx.config.repo_remote} unreachable: {exc.reason}") from None


def check_cluster(ctx: RunContext) -> None:
    try:
        ctx.cluster.ping()
    except BackendError as exc:
        raise StepFailed(f"cluster unreachable: {exc.reason}") from None


def identities(ctx: RunContext) -> list[Any]:
    """The operator's age identities: the configured key file, else sops's own lookup."""
    cached = ctx.memory.get("identities")
    if cached is not None:
        return cached
    if ctx.config.sops_age_key_file:
        found = read_identity_file(ctx.config.sops_age_key_file)
    else:
        found = load_identities()
    if not found:
        where = ctx.config.sops_age_key_file or f"${ENV_KEY_FILE}, ${ENV_KEY} or keys.txt"
        raise NoKeyError(f"no age key found in {where}")
    ctx.memory["identities"] = found
    return found


def key_file(ctx: RunContext) -> str:
    """The file a new age key is appended to: config, then $SOPS_AGE_KEY_FILE."""
    path = ctx.config.sops_age_key_file or os.environ.get(ENV_KEY_FILE, "")
    if not path:
        raise StepFailed("no age key file configured (sops_age_key_file or $SOPS_AGE_KEY_FILE)")
    return os.path.expanduser(path)


def standard_preflight(ctx: RunContext, *, cluster: bool = True) -> None:
    check_branch(ctx)
    check_clean(ctx)
    identities(ctx)
    check_remote(ctx)
    if cluster:
        check_cluster(ctx)
