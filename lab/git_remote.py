"""The lab's Git remote: a bare repository the Flux twin watches, and a scratch clone.

In lab mode runbooks must never touch the operator's checkout, so the lab copies the
checkout's HEAD commit (with its history) into a bare repository of its own, branch
`main`, and gives runbooks a scratch working clone whose `origin` is that bare remote.
Pushing from the scratch clone is then exactly what pushing to GitHub is for real Flux.
Everything lives in temporary directories the lab owns and removes on `close()`; the
one copy of the history kept per process (so later labs start in milliseconds, not
seconds) is removed when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pygit2

log = logging.getLogger("dapper.lab.git_remote")

BRANCH = "main"
LAB_NAME = "dapper-tui lab"
LAB_EMAIL = "lab@dapper.invalid"


class LabGitError(Exception):
    """The lab cannot build its remote (e.g. the checkout has no commit); one line."""


@dataclass
class LabGitRemote:
    bare_path: Path
    scratch_path: Path
    _temp_dirs: tuple[Path, ...]

    @classmethod
    def create(cls, source_checkout: Path, workdir: Path | None = None) -> LabGitRemote:
        """Bare remote with `main` = the checkout's HEAD, plus a scratch clone of it.

        `workdir` is where the lab's temporary directories go (None: the system temp).
        """
        found = pygit2.discover_repository(str(source_checkout))
        if found is None:
            raise LabGitError(f"{source_checkout}: not a Git repository")
        source = pygit2.Repository(found)
        if source.head_is_unborn:
            raise LabGitError(f"{source_checkout}: the checkout has no commit yet")
        head = source.head.peel(pygit2.Commit).id
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix="dapper-lab-git-", dir=workdir))
        try:
            bare_path = temp / "remote.git"
            scratch_path = temp / "scratch"
            seed = _seed(source, head)
            shutil.copytree(seed / "remote.git", bare_path, symlinks=True)
            shutil.copytree(seed / "scratch", scratch_path, symlinks=True)
            scratch = pygit2.Repository(str(scratch_path))
            scratch.remotes.set_url("origin", str(bare_path))
            _ensure_identity(scratch)
        except Exception:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        log.info("lab git remote at %s (main@%s)", bare_path, str(head)[:12])
        return cls(bare_path, scratch_path, (temp,))

    @property
    def url(self) -> str:
        return self.bare_path.as_uri()

    def repository(self) -> pygit2.Repository:
        """A fresh handle on the bare remote (pygit2 objects are not shared across threads)."""
        return pygit2.Repository(str(self.bare_path))

    def head(self) -> tuple[str, str]:
        """(branch, sha) of the remote's `main`, read fresh each time."""
        ref = self.repository().references.get(f"refs/heads/{BRANCH}")
        if ref is None:
            return BRANCH, ""
        return BRANCH, str(ref.resolve().target)

    def close(self) -> None:
        for d in self._temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


_SEEDS: dict[tuple[str, str], Path] = {}
_SEEDS_LOCK = threading.Lock()


def _seed(source: pygit2.Repository, head: pygit2.Oid) -> Path:
    """A bare copy of HEAD's history and a clone of it, made once per process and commit:
    every later lab copies these files (milliseconds) instead of fetching the history
    again (over a second), so starting labs in a row stays quick. Removed at exit."""
    key = (str(Path(source.path).resolve()), str(head))
    with _SEEDS_LOCK:
        found = _SEEDS.get(key)
        if found is not None and found.is_dir():
            return found
        seed = Path(tempfile.mkdtemp(prefix="dapper-lab-seed-"))
        try:
            bare = pygit2.init_repository(str(seed / "remote.git"), bare=True, initial_head=BRANCH)
            _copy_history(source, bare, head)
            bare.references.create(f"refs/heads/{BRANCH}", head, force=True)
            pygit2.clone_repository(str(seed / "remote.git"), str(seed / "scratch"))
        except Exception:
            shutil.rmtree(seed, ignore_errors=True)
            raise
        if not _SEEDS:
            atexit.register(_remove_seeds)
        _SEEDS[key] = seed
        return seed


def _remove_seeds() -> None:
    with _SEEDS_LOCK:
        for seed in _SEEDS.values():
            shutil.rmtree(seed, ignore_errors=True)
        _SEEDS.clear()


def _copy_history(source: pygit2.Repository, bare: pygit2.Repository, head: pygit2.Oid) -> None:
    """Fetch HEAD's commit and ancestors from the checkout (local transport, no network)."""
    remote = bare.remotes.create_anonymous(source.path)
    remote.fetch([f"+{head}:refs/heads/{BRANCH}"])
    if bare.get(head) is None:
        raise LabGitError("could not copy the checkout's HEAD into the lab remote")


def _ensure_identity(repo: pygit2.Repository) -> None:
    """Commits in the scratch clone need an author; use the operator's, else the lab's."""
    try:
        repo.config["user.name"]
        repo.config["user.email"]
    except KeyError:
        repo.config["user.name"] = LAB_NAME
        repo.config["user.email"] = LAB_EMAIL
