"""The tree's side of the snapshot: which files and dependencies each Kustomization has.

Parsing the tree costs tens of milliseconds, so the result is kept until HEAD moves.
"""

from __future__ import annotations

from pathlib import Path

from dapper.backends.join import GitData


def _head(repo: Path) -> str:
    import pygit2

    try:
        r = pygit2.Repository(str(repo))
        return str(r.head.target) if not r.head_is_unborn else ""
    except (pygit2.GitError, KeyError):
        return ""


def tree_view(repo_path: str, cached: tuple[str, GitData] | None) -> tuple[str, GitData]:
    """(HEAD sha, GitData) for the checkout at `repo_path`; reuses `cached` at the same HEAD.

    A dirty work tree is read as it is on disk: the console shows what the operator sees.
    """
    from dapper.backends.fluxtree import FluxTree

    repo = Path(repo_path).expanduser()
    head = _head(repo)
    if cached is not None and head and cached[0] == head:
        return cached
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
    return head, GitData(head=head, files=files, depends_on=deps)
