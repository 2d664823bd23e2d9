"""The tree's side of the snapshot: which files and dependencies each Kustomization has.

Parsing the whole tree costs about half a second, so the result is kept in memory until
HEAD moves, and on disk (XDG cache, keyed by the commit) for a clean tree, so a one-shot
`dapper-tui status` does not parse it again for a commit it has already seen.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from dapper.backends.config import xdg_dir
from dapper.backends.snapshot.join import GitData

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def _head_and_clean(repo: Path) -> tuple[str, bool]:
    """HEAD's sha and whether kubernetes/ matches it (the disk cache needs both)."""
    import pygit2

    try:
        r = pygit2.Repository(str(repo))
        if r.head_is_unborn:
            return "", False
        dirty = any(
            path.startswith("kubernetes/") and flags != pygit2.GIT_STATUS_IGNORED
            for path, flags in r.status().items()
        )
        return str(r.head.target), not dirty
    except (pygit2.GitError, KeyError):
        return "", False


def _cache_file(head: str) -> Path:
    return xdg_dir("CACHE") / f"tree-{head}.json"


def _load_cached(head: str) -> GitData | None:
    try:
        doc = json.loads(_cache_file(head).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("version") != CACHE_VERSION or doc.get("head") != head:
        return None
    return GitData(
        head=head,
        files={k: tuple(v) for k, v in doc["files"].items()},
        depends_on={k: tuple(v) for k, v in doc["depends_on"].items()},
    )


def _store_cached(data: GitData) -> None:
    path = _cache_file(data.head)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": CACHE_VERSION,
            "head": data.head,
            "files": data.files,
            "depends_on": data.depends_on,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tree-")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except OSError:
        log.warning("cannot write the tree cache %s", path, exc_info=True)


def parse_tree(repo: Path, head: str) -> GitData:
    from dapper.backends.gitops.fluxtree import FluxTree

    tree = FluxTree.load(repo)
    files: dict[str, tuple[str, ...]] = {}
    deps: dict[str, tuple[str, ...]] = {}
    for ks in tree.kustomizations:
        key = f"{ks.namespace}/{ks.name}"
        try:
            files[key] = tuple(tree.files_of(ks))
        except Exception:  # a broken path has no file list; `check` reports why
            files[key] = ()
        deps[key] = tuple(f"{ns}/{name}" for ns, name in ks.depends_on)
    return GitData(head=head, files=files, depends_on=deps)


def tree_view(repo_path: str, cached: tuple[str, GitData] | None) -> tuple[str, GitData]:
    """(HEAD sha, GitData) for the checkout at `repo_path`; reuses `cached` at the same HEAD.

    A dirty tree is read as it is on disk (the console shows what the operator sees) and
    never cached on disk.
    """
    repo = Path(repo_path).expanduser()
    head, clean = _head_and_clean(repo)
    key = head if clean else f"{head}+dirty"
    if cached is not None and head and cached[0] == key:
        return cached
    if clean and head:
        data = _load_cached(head)
        if data is not None:
            return key, data
    data = parse_tree(repo, head)
    if clean and head:
        _store_cached(data)
    return key, data
