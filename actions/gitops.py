"""Git for runbooks: find a run's own commit, push it, and replay it when the remote moved.

Every runbook commit carries `Runbook-Run: <id>`, so a resumed run recognises its own
commit instead of making a second one. A push the remote refuses because it moved is
retried once on top of the remote's head, but only when the remote's new commits did not
touch the run's files; otherwise the run stops with one line telling what to do.
"""

from __future__ import annotations

import logging

import pygit2
from dapper.backends.clients.gitrepo import GitError, GitRepo, format_message

log = logging.getLogger(__name__)

TRAILER_RUN = "Runbook-Run"
TRAILER_OPERATOR = "Operator"


def operator(repo: GitRepo) -> str:
    sig = repo.signature()
    return f"{sig.name} <{sig.email}>"


def find_run_commit(repo: GitRepo, run_id: str, ref: str | None = None, n: int = 500) -> str:
    """The newest commit on `ref` (default HEAD) whose trailer names this run, or ""."""
    r = repo.repo
    if ref is None:
        if r.head_is_unborn:
            return ""
        start = r.head.target
    else:
        found = r.references.get(ref)
        if found is None:
            return ""
        start = found.resolve().target
    for i, commit in enumerate(r.walk(start, pygit2.enums.SortMode.TIME)):
        if i >= n:
            break
        if f"{TRAILER_RUN}: {run_id}" in commit.message:
            return str(commit.id)
    return ""


def contains(repo: GitRepo, ref: str, sha: str) -> bool:
    """Whether `ref` exists and is `sha` or a descendant of it."""
    found = repo.repo.references.get(ref)
    if found is None or not sha:
        return False
    tip = found.resolve().target
    oid = pygit2.Oid(hex=sha)
    return tip == oid or repo.repo.descendant_of(tip, oid)


def remote_contains(repo: GitRepo, remote: str, branch: str, sha: str) -> bool:
    repo.fetch(remote, branch)
    return contains(repo, f"refs/remotes/{remote}/{branch}", sha)


def commit_paths(
    repo: GitRepo, paths: list[str], runbook: str, summary: str, run_id: str, who: str
) -> str:
    message = f"runbook({runbook}): {summary}"
    trailers = {TRAILER_RUN: run_id, TRAILER_OPERATOR: who}
    format_message(message, trailers)  # validate before touching anything
    return repo.commit(paths, message, trailers)


def push(repo: GitRepo, remote: str, branch: str, sha: str) -> str:
    """Push; when the remote moved, replay the commit on its head once and push again."""
    try:
        repo.push(remote, branch)
        return sha
    except GitError as exc:
        if "non-fast-forward" not in exc.reason and "you do not have" not in exc.reason:
            raise
        log.info("push rejected (%s); trying to replay on the remote head", exc.reason)
    new = repo.replay_onto_remote(remote, branch, sha)
    repo.push(remote, branch)
    return new
