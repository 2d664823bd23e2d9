"""The shared parse cache: a file is parsed once per content, across commits and loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pygit2
from dapper.backends.gitops.fluxtree import FluxTree
from dapper.backends.gitops.treesource import DirSource, GitTreeSource
from dapper.backends.gitops.yamldocs import ParseCache
from dapper.lab.runtime import find_repo

SOPS = "kubernetes/apps/network/cloudflared/app/secret.sops.yaml"
HR = "kubernetes/apps/network/cloudflared/app/helmrelease.yaml"


def copy_tree(dest: Path) -> Path:
    root = find_repo()
    assert root is not None
    shutil.copytree(root / "kubernetes", dest / "kubernetes")
    return dest


def summary(tree: FluxTree) -> tuple:
    return (
        sorted(k.key for k in tree.kustomizations),
        sorted((h.namespace, h.name) for h in tree.helm_releases),
        sorted(tree.errors),
    )


def commit_all(repo: pygit2.Repository, message: str) -> str:
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("test", "test@example.invalid")
    parents = [] if repo.head_is_unborn else [repo.head.target]
    ref = "HEAD" if parents else "refs/heads/main"
    return str(repo.create_commit(ref, sig, sig, message, repo.index.write_tree(), parents))


def test_a_new_commit_reparses_only_the_changed_file(tmp_path: Path) -> None:
    work = copy_tree(tmp_path)
    repo = pygit2.init_repository(str(work), initial_head="main")
    first = commit_all(repo, "tree")
    cache = ParseCache()
    cold = FluxTree.load(GitTreeSource(repo, first), parses=cache)
    parsed_once = cache.misses
    assert parsed_once > 50 and not cold.errors
    (work / SOPS).write_text((work / SOPS).read_text() + "# rotated\n")
    (work / HR).write_text((work / HR).read_text())  # rewritten, same content: same blob
    second = commit_all(repo, "one SOPS file")
    warm = FluxTree.load(GitTreeSource(repo, second), parses=cache)
    assert cache.misses - parsed_once == 1  # the SOPS file; the HelmRelease is the same blob
    assert summary(warm) == summary(cold)
    assert summary(warm) == summary(FluxTree.load(GitTreeSource(repo, second), parses=None))


def test_a_checkout_is_keyed_by_content_not_by_mtime(tmp_path: Path) -> None:
    work = copy_tree(tmp_path)
    cache = ParseCache()
    before = FluxTree.load(DirSource(work), parses=cache)
    misses = cache.misses
    FluxTree.load(DirSource(work), parses=cache)
    assert cache.misses == misses
    ks = work / "kubernetes/flux/cluster/ks.yaml"
    text = ks.read_text()
    # the same size, rewritten at once: an mtime/size key could miss this change
    changed = text.replace("interval: 1h", "interval: 2h", 1)
    assert changed != text and len(changed) == len(text)
    ks.write_text(changed)
    after = FluxTree.load(DirSource(work), parses=cache)
    assert cache.misses == misses + 1
    assert {k.interval for k in after.kustomizations} != {k.interval for k in before.kustomizations}
