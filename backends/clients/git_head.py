"""HEAD's commit and a fingerprint of a directory, read from the files without libgit2.

The snapshot's Git source only needs to know whether the tree it parsed (and cached, in
memory and on disk) is still the tree on disk. Importing pygit2 for that was the largest
import of a one-shot `dapper-tui status`; reading `.git/HEAD` and stat-ing kubernetes/'s
few hundred files takes a few milliseconds. Anything unusual (a reftable repository, an
unreadable ref) answers None, and the caller asks pygit2.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _git_dir(repo: Path) -> Path | None:
    dot = repo / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot.read_text().strip()
        if text.startswith("gitdir: "):
            target = Path(text[len("gitdir: ") :])
            return target if target.is_absolute() else (repo / target).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    """Where shared refs live: a worktree's git dir names it in `commondir`."""
    try:
        common = (git_dir / "commondir").read_text().strip()
    except OSError:
        return git_dir
    path = Path(common)
    return path if path.is_absolute() else (git_dir / path).resolve()


def head_commit(repo: Path) -> str | None:
    """HEAD's commit sha; "" on an unborn branch; None when the files do not say."""
    try:
        git_dir = _git_dir(repo)
        if git_dir is None or (git_dir / "reftable").exists():
            return None
        head = (git_dir / "HEAD").read_text().strip()
        if _SHA.fullmatch(head):
            return head  # detached
        if not head.startswith("ref: "):
            return None
        ref = head[len("ref: ") :]
        common = _common_dir(git_dir)
        for base in (git_dir, common):
            loose = base / ref
            if loose.is_file():
                sha = loose.read_text().strip()
                return sha if _SHA.fullmatch(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and _SHA.fullmatch(sha):
                    return sha
        return ""  # the branch has no commit yet
    except (OSError, UnicodeDecodeError):
        return None


def tree_fingerprint(root: Path) -> str:
    """Changes whenever a file under `root` is added, removed, resized or written."""
    digest = hashlib.blake2b(digest_size=16)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
