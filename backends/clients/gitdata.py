"""The tree's side of the snapshot: which files and dependencies each Kustomization has.

Parsing the whole tree costs about half a second, so the result is kept in memory until
the tree changes, and on disk (XDG cache, keyed by HEAD and a fingerprint of kubernetes/),
so a one-shot `dapper-tui status` does not parse again a tree it has already seen.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from dapper.backends.clients.git_head import head_commit, tree_fingerprint
from dapper.backends.config import xdg_dir
from dapper.backends.snapshot.join import GitData

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: keyed by HEAD and a fingerprint of kubernetes/
CACHE_KEEP = 16


def _head_and_clean(repo: Path) -> tuple[str, bool]:
    """HEAD's sha and whether kubernetes/ matches it, by libgit2 (the files did not say)."""
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


def tree_key(repo: Path) -> tuple[str, str]:
    """(HEAD sha, a key for the parsed tree): the same key means the same kubernetes/.

    Read from the files (HEAD, and each file's size and mtime) when they say; a key ""
    means the tree cannot be told apart from another and is not cached on disk."""
    head = head_commit(repo)
    if head is not None:
        if not head:
            return "", ""
        return head, f"{head}-{tree_fingerprint(repo / 'kubernetes')}"
    head, clean = _head_and_clean(repo)
    return head, (head if clean and head else "")


def _cache_file(key: str) -> Path:
    return xdg_dir("CACHE") / f"tree-{key}.json"


def _load_cached(key: str, head: str) -> GitData | None:
    try:
        doc = json.loads(_cache_file(key).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("version") != CACHE_VERSION or doc.get("key") != key or doc.get("head") != head:
        return None
    return GitData(
        head=head,
        files={k: tuple(v) for k, v in doc["files"].items()},
        depends_on={k: tuple(v) for k, v in doc["depends_on"].items()},
    )


def _store_cached(key: str, data: GitData) -> None:
    path = _cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _prune(path.parent)
        doc = {
            "version": CACHE_VERSION,
            "key": key,
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


def _prune(cache: Path, keep: int = CACHE_KEEP) -> None:
    """Every edit of the tree is a new key: keep only the newest few parses."""
    files = sorted(cache.glob("tree-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep - 1 :]:
        old.unlink(missing_ok=True)


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
    """(a key for the tree, GitData) for the checkout at `repo_path`; reuses `cached`
    while the key is the same. A tree with edits is read as it is on disk (the console
    shows what the operator sees), and is cached under its own key."""
    repo = Path(repo_path).expanduser()
    head, key = tree_key(repo)
    if cached is not None and key and cached[0] == key:
        return cached
    if key:
        data = _load_cached(key, head)
        if data is not None:
            return key, data
    data = parse_tree(repo, head)
    if key:
        _store_cached(key, data)
    return key or head, data
