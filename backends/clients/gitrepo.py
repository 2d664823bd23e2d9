"""The GitOps repository through pygit2: what changed, history, commit, push, fast-forward.

Runbooks change the cluster only by committing to `kubernetes/` and pushing, so this is
the one place that writes Git. Commits are built from HEAD's tree plus exactly the paths
a runbook names (never whatever else the operator has staged). Pushes never force: a
remote that moved is fast-forwarded onto when our side has nothing new, and otherwise
the operator gets one clear line telling them to rebase by hand.

A repository opened read-only refuses every writing call before it touches anything.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.backends.safe_text import clean
from pygit2.enums import CredentialType, FileMode, FileStatus, SortMode

log = logging.getLogger("dapper.backends.clients.gitrepo")

SOPS_CONFIG = ".sops.yaml"
_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s*(.*)$")
_CHANGED = (
    FileStatus.INDEX_NEW
    | FileStatus.INDEX_MODIFIED
    | FileStatus.INDEX_DELETED
    | FileStatus.INDEX_RENAMED
    | FileStatus.INDEX_TYPECHANGE
    | FileStatus.WT_NEW
    | FileStatus.WT_MODIFIED
    | FileStatus.WT_DELETED
    | FileStatus.WT_TYPECHANGE
    | FileStatus.WT_RENAMED
    | FileStatus.CONFLICTED
)


class GitError(BackendError):
    """A Git operation failed; `reason` is the operator's one line."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author: str  # "Name <email>"
    time: int  # seconds since the epoch (author time)
    summary: str  # first line of the message
    trailers: dict[str, str] = field(default_factory=dict)
    parents: tuple[str, ...] = ()


def parse_trailers(message: str) -> dict[str, str]:
    """`Key: value` lines of the message's last paragraph (git's trailer block)."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    out: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        m = _TRAILER_RE.match(line.strip())
        if not m:
            return {}
        out[m.group(1)] = m.group(2).strip()
    return out


def format_message(message: str, trailers: Mapping[str, str] | None) -> str:
    """The commit message with a trailer block, one `Key: value` per line."""
    body = message.strip()
    if not trailers:
        return body + "\n"
    for key, value in trailers.items():
        if not _TRAILER_RE.match(f"{key}: x") or "\n" in value:
            raise GitError(f"invalid commit trailer {key!r}")
    block = "\n".join(f"{k}: {v}" for k, v in trailers.items())
    return f"{body}\n\n{block}\n"


def is_local_url(url: str) -> bool:
    """file:// URLs and plain paths need no credentials."""
    if url.startswith("file://"):
        return True
    return "://" not in url and not re.match(r"^[^/]+@[^/:]+:", url)


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials from the environment: an SSH agent, or a token over HTTPS."""

    def __init__(self, explicit: Any = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._explicit = explicit
        self._env = dict(os.environ if env is None else env)
        self._tries = 0
        self.rejected: list[tuple[str, str]] = []

    def credentials(self, url: str, username_from_url: str | None, allowed_types: int) -> Any:
        self._tries += 1
        if self._tries > 1:  # libgit2 asks again after a refusal: stop the loop here
            raise GitError(f"authentication to {url} failed")
        if self._explicit is not None:
            return self._explicit
        token = self._env.get("GIT_TOKEN") or self._env.get("GITHUB_TOKEN")
        if allowed_types & CredentialType.SSH_KEY and self._env.get("SSH_AUTH_SOCK"):
            return pygit2.KeypairFromAgent(username_from_url or "git")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and token:
            return pygit2.UserPass(username_from_url or "x-access-token", token)
        raise GitError(
            f"no credentials for {url}: start an ssh-agent with your key, "
            "or set GIT_TOKEN / GITHUB_TOKEN"
        )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected.append((refname, message))


class GitRepo:
    """One repository (working checkout); see the module docstring."""

    def __init__(self, repo: pygit2.Repository, *, read_only: bool = False) -> None:
        self.repo = repo
        self.read_only = read_only
        workdir = repo.workdir
        self.root = Path(workdir if workdir else repo.path).resolve()

    @classmethod
    def open(cls, path: str | os.PathLike[str], read_only: bool = False) -> GitRepo:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitError(f"{path}: not inside a Git repository")
        return cls(pygit2.Repository(found), read_only=read_only)

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[str, str]:
        """(branch, sha) of HEAD; sha is "" on an unborn branch, branch "" when detached."""
        if self.repo.head_is_unborn:
            target = self.repo.references["HEAD"].target
            return str(target).removeprefix("refs/heads/"), ""
        branch = "" if self.repo.head_is_detached else self.repo.head.shorthand
        return branch, str(self.repo.head.target)

    def status(self) -> list[str]:
        """Paths (relative, POSIX) with staged, unstaged or untracked changes, sorted."""
        return sorted(p for p, flags in self.repo.status().items() if flags & _CHANGED)

    def dirty_paths(self, under: str = "kubernetes/") -> list[str]:
        """Changed paths that matter to the cluster: under `under`, and `.sops.yaml` files."""
        prefix = under if under.endswith("/") or not under else under + "/"
        return [
            p for p in self.status() if p.startswith(prefix) or posixpath.basename(p) == SOPS_CONFIG
        ]

    def log(self, path: str | None = None, n: int = 20) -> list[CommitInfo]:
        """Newest first; with `path`, only commits that changed it (vs. the first parent)."""
        if self.repo.head_is_unborn or n <= 0:
            return []
        out: list[CommitInfo] = []
        want = path.strip("/") if path else ""
        for commit in self.repo.walk(self.repo.head.target, SortMode.TIME):
            if want and not self._touches(commit, want):
                continue
            out.append(_info(commit))
            if len(out) >= n:
                break
        return out

    def _touches(self, commit: pygit2.Commit, path: str) -> bool:
        mine = _entry_id(commit.tree, path)
        if not commit.parents:
            return mine is not None
        return mine != _entry_id(commit.parents[0].tree, path)

    def ahead_behind(self, remote: str = "origin", branch: str = "main") -> tuple[int, int]:
        """(local-only, remote-only) commit counts of HEAD against the remote-tracking
        branch: what a commit made now would sit on, even on a detached HEAD."""
        local = None if self.repo.head_is_unborn else self.repo.head.target
        theirs = self._ref_target(f"refs/remotes/{remote}/{branch}")
        if local is None or theirs is None:
            return (0, 0) if theirs is None and local is None else (int(local is not None), 0)
        ahead, behind = self.repo.ahead_behind(local, theirs)
        return ahead, behind

    def _ref_target(self, name: str) -> pygit2.Oid | None:
        ref = self.repo.references.get(name)
        target = None if ref is None else ref.resolve().target
        return target if isinstance(target, pygit2.Oid) else None  # a resolved ref is an Oid

    # -- writing ---------------------------------------------------------------------------

    def _refuse(self, operation: str) -> None:
        if self.read_only:
            raise ReadOnlyError(operation)

    def signature(self) -> pygit2.Signature:
        """Author from Git config (repository, then global, then system)."""
        try:
            name = self.repo.config["user.name"]
            email = self.repo.config["user.email"]
        except KeyError:
            raise GitError(
                "no Git identity: set user.name and user.email "
                "(git config --global user.name 'You'; git config --global user.email you@…)"
            ) from None
        return pygit2.Signature(str(name), str(email))

    def commit(
        self,
        paths: Iterable[str],
        message: str,
        trailers: Mapping[str, str] | None = None,
        *,
        signature: pygit2.Signature | None = None,
    ) -> str:
        """Commit exactly `paths` (as they are in the work tree; missing = deleted) on HEAD."""
        self._refuse("git commit")
        rel = sorted({self._relative(p) for p in paths})
        if not rel:
            raise GitError("nothing to commit: no paths given")
        sig = signature or self.signature()
        text = format_message(message, trailers)
        unborn = self.repo.head_is_unborn
        parent = None if unborn else self.repo.head.peel(pygit2.Commit)
        staging = pygit2.Index()
        if parent is not None:
            staging.read_tree(parent.tree)
        changed = False
        for p in rel:
            full = self.root / p
            if full.is_file():
                blob = self.repo.create_blob_fromworkdir(p)
                executable = os.access(full, os.X_OK)
                mode = FileMode.BLOB_EXECUTABLE if executable else FileMode.BLOB
                old = staging[p] if p in staging else None  # noqa: SIM401 (no Index.get)
                if old is None or old.id != blob or old.mode != mode:
                    staging.add(pygit2.IndexEntry(p, blob, mode))
                    changed = True
            elif p in staging:
                staging.remove(p)
                changed = True
            elif full.is_dir():
                raise GitError(f"{p}: is a directory; name the files to commit")
        if not changed:
            raise GitError("nothing to commit: the named paths have no changes")
        tree = staging.write_tree(self.repo)
        ref = "HEAD" if not self.repo.head_is_detached else None
        parents = [] if parent is None else [parent.id]
        oid = self.repo.create_commit(ref, sig, sig, text, tree, parents)
        if ref is None:
            self.repo.set_head(oid)
        self._sync_index(rel)
        log.info("committed %s (%d paths)", str(oid)[:12], len(rel))
        return str(oid)

    def _sync_index(self, rel: list[str]) -> None:
        """Make the real index agree with the new commit for the committed paths."""
        index = self.repo.index
        index.read()
        for p in rel:
            if (self.root / p).is_file():
                index.add(p)
            elif p in index:
                index.remove(p)
        index.write()

    def _relative(self, path: str | os.PathLike[str]) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.root)
            except ValueError:
                raise GitError(f"{path}: outside the repository {self.root}") from None
        text = posixpath.normpath(p.as_posix())
        if text.startswith("../") or text in ("..", "."):
            raise GitError(f"{path}: outside the repository")
        return text

    def push(
        self,
        remote: str = "origin",
        branch: str = "main",
        credentials: Any = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Push `branch` (never forced); a rejection becomes a GitError telling what to do."""
        self._refuse("git push")
        rem = self._remote(remote)
        callbacks = self._callbacks(rem, credentials, env)
        spec = f"refs/heads/{branch}:refs/heads/{branch}"
        try:
            rem.push([spec], callbacks=callbacks)
        except GitError:
            raise
        except pygit2.GitError as exc:
            log.debug("push to %s failed", remote, exc_info=True)
            raise self._push_error(remote, branch, str(exc), credentials, env) from None
        if callbacks.rejected:
            refname, msg = callbacks.rejected[0]
            raise GitError(f"push to {remote} rejected for {refname}: {msg}")
        # keep the remote-tracking branch in step, as `git push` does
        local = self._ref_target(f"refs/heads/{branch}")
        if local is not None:
            self.repo.references.create(f"refs/remotes/{remote}/{branch}", local, force=True)

    def _push_error(
        self, remote: str, branch: str, text: str, credentials: Any, env: Mapping[str, str] | None
    ) -> GitError:
        lowered = text.lower()
        if "non-fast" in lowered or "not present locally" in lowered or "fastforward" in lowered:
            try:
                self.fetch(remote, branch, credentials=credentials, env=env)
                ahead, behind = self.ahead_behind(remote, branch)
            except GitError:
                return GitError(
                    f"push to {remote} rejected: the remote has commits you do not have; "
                    "fetch and fast-forward, or rebase by hand"
                )
            if ahead:
                return GitError(
                    f"push to {remote} rejected (non-fast-forward): remote has diverged: "
                    f"{ahead} local, {behind} remote commits; rebase by hand"
                )
            return GitError(
                f"push to {remote} rejected (non-fast-forward): the remote is {behind} "
                "commits ahead; fast-forward first"
            )
        return GitError(f"push to {remote} failed: {text.strip().splitlines()[0]}")

    def fetch(
        self,
        remote: str = "origin",
        branch: str = "main",
        *,
        credentials: Any = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Update refs/remotes/<remote>/<branch> (reading; allowed read-only)."""
        rem = self._remote(remote)
        spec = f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}"
        try:
            rem.fetch([spec], callbacks=self._callbacks(rem, credentials, env))
        except GitError:
            raise
        except pygit2.GitError as exc:
            log.debug("fetch from %s failed", remote, exc_info=True)
            raise GitError(f"fetch from {remote} failed: {str(exc).strip()}") from None

    def fetch_and_fast_forward(
        self,
        remote: str = "origin",
        branch: str = "main",
        *,
        credentials: Any = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Move `branch` (and the work tree) to the remote's head when that is a
        fast-forward; returns the new head sha. Diverged histories stop with a clear line."""
        self._refuse("git fast-forward")
        self.fetch(remote, branch, credentials=credentials, env=env)
        theirs = self._ref_target(f"refs/remotes/{remote}/{branch}")
        if theirs is None:
            raise GitError(f"{remote} has no branch {branch}")
        local = self._ref_target(f"refs/heads/{branch}")
        if local is not None:
            ahead, behind = self.repo.ahead_behind(local, theirs)
            if ahead and behind:
                raise GitError(
                    f"remote has diverged: {ahead} local, {behind} remote commits; rebase by hand"
                )
            if not behind:
                return str(local)
        on_branch = self.repo.head_is_unborn or (
            not self.repo.head_is_detached and self.repo.head.shorthand == branch
        )
        if on_branch and self.repo.workdir:
            try:
                self.repo.checkout_tree(self.repo[theirs].peel(pygit2.Tree))
            except pygit2.GitError as exc:
                log.debug("checkout failed", exc_info=True)
                raise GitError(
                    "cannot fast-forward: local uncommitted changes conflict with "
                    f"{remote}/{branch} ({str(exc).strip().splitlines()[0]})"
                ) from None
        self.repo.references.create(f"refs/heads/{branch}", theirs, force=True)
        if self.repo.head_is_unborn:
            self.repo.set_head(f"refs/heads/{branch}")
        log.info("fast-forwarded %s to %s", branch, str(theirs)[:12])
        return str(theirs)

    def replay_onto_remote(self, remote: str, branch: str, sha: str) -> str:
        """Re-create commit `sha` on top of the remote's head (it must be HEAD's tip and the
        remote's new commits must not touch its paths); moves the branch and work tree."""
        self._refuse("git replay onto the remote")
        self.fetch(remote, branch)
        r = self.repo
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

    def remote_url(self, name: str = "origin") -> str:
        """The remote's URL, or "" when there is no such remote."""
        try:
            return str(self.repo.remotes[name].url or "")
        except (KeyError, ValueError):
            return ""

    def _remote(self, name: str) -> pygit2.Remote:
        try:
            return self.repo.remotes[name]
        except (KeyError, ValueError):
            raise GitError(f"no remote named {name!r}") from None

    def _callbacks(
        self, rem: pygit2.Remote, credentials: Any, env: Mapping[str, str] | None
    ) -> _Callbacks:
        if credentials is None and is_local_url(rem.url or ""):
            return _Callbacks(None, env={})
        return _Callbacks(credentials, env)


def _entry_id(tree: pygit2.Tree, path: str) -> pygit2.Oid | None:
    try:
        return tree[path].id
    except KeyError:
        return None


def _info(commit: pygit2.Commit) -> CommitInfo:
    message = clean(commit.message)  # anyone who can push writes this text
    summary = message.strip().splitlines()[0] if message.strip() else ""
    return CommitInfo(
        sha=str(commit.id),
        author=clean(f"{commit.author.name} <{commit.author.email}>"),
        time=commit.author.time,
        summary=summary,
        trailers=parse_trailers(message),
        parents=tuple(str(p) for p in commit.parent_ids),
    )


def _changed_paths(r: pygit2.Repository, old: pygit2.Oid, new: pygit2.Oid) -> set[str]:
    diff = r[old].peel(pygit2.Tree).diff_to_tree(r[new].peel(pygit2.Tree))
    out: set[str] = set()
    for delta in diff.deltas:
        out.add(delta.old_file.path)
        out.add(delta.new_file.path)
    return out
