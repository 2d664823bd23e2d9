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


def _changed_paths(r: pygit2.Repository, old: pygit2.Oid, new: pygit2.Oid) -> set[str]:
    diff = r[old].peel(pygit2.Tree).diff_to_tree(r[new].peel(pygit2.Tree))
    out: set[str] = set()
    for delta in diff.deltas:
        out.add(delta.old_file.path)
        out.add(delta.new_file.path)
    return out


def replay_on_remote(repo: GitRepo, remote: str, branch: str, sha: str) -> str:
    """Re-create commit `sha` on top of the remote's head (it must be HEAD's tip and the
    remote's new commits must not touch its paths); moves the branch and work tree."""
    repo.fetch(remote, branch)
    r = repo.repo
    theirs_ref = r.references.get(f"refs/remotes/{remote}/{branch}")
    if theirs_ref is None:
        raise GitError(f"{remote} has no branch {branch}")
    theirs = theirs_ref.resolve().target
    if not isinstance(theirs, pygit2.Oid):
        raise GitError(f"{remote}/{branch} does not resolve to a commit")
    commit = r[pygit2.Oid(hex=sha)].peel(pygit2.Commit)
    if str(r.head.target) != sha or len(commit.parents) != 1:
        raise GitError("cannot replay the run's commit: HEAD moved; rebase by hand")
    base = commit.parents[0].id
    ours = _changed_paths(r, base, commit.id)
    if r.descendant_of(base, theirs) or base == theirs:
        return sha  # nothing new on the remote
    merge_base = r.merge_base(base, theirs)
    if merge_base is None:
        raise GitError(f"{remote}/{branch} shares no history with the local branch")
    if merge_base != base:
        raise GitError(
            f"local {branch} has commits {remote} lacks besides this run's; rebase by hand"
        )
    theirs_changed = _changed_paths(r, base, theirs)
    overlap = sorted(ours & theirs_changed)
    if overlap:
        raise GitError(
            f"{remote}/{branch} moved and changed the same files ({', '.join(overlap[:3])}); "
            "rebase by hand"
        )
    index = pygit2.Index()
    index.read_tree(r[theirs].peel(pygit2.Tree))
    for path in sorted(ours):
        try:
            entry = commit.tree[path]
        except KeyError:
            if path in index:
                index.remove(path)
            continue
        index.add(pygit2.IndexEntry(path, entry.id, entry.filemode))
    tree = index.write_tree(r)
    new = r.create_commit(None, commit.author, commit.committer, commit.message, tree, [theirs])
    r.checkout_tree(r[new].peel(pygit2.Tree), strategy=pygit2.enums.CheckoutStrategy.SAFE)
    r.references.create(f"refs/heads/{branch}", new, force=True)
    r.index.read()
    log.info("replayed %s onto %s/%s as %s", sha[:12], remote, branch, str(new)[:12])
    return str(new)


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
    new = replay_on_remote(repo, remote, branch, sha)
    repo.push(remote, branch)
    return new
