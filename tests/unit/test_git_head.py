"""HEAD and the tree's fingerprint read from the files agree with libgit2, in the shapes a
checkout takes: a branch, packed refs, a detached HEAD, an unborn branch, a worktree."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest
from dapper.backends.clients.git_head import head_commit, tree_fingerprint
from dapper.backends.clients.gitdata import tree_key

SIG = pygit2.Signature("t", "t@example.invalid")


def commit(repo: pygit2.Repository, path: str, text: str) -> str:
    workdir = Path(repo.workdir)
    (workdir / path).parent.mkdir(parents=True, exist_ok=True)
    (workdir / path).write_text(text)
    repo.index.add(path)
    repo.index.write()
    tree = repo.index.write_tree()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return str(repo.create_commit("HEAD", SIG, SIG, "c", tree, parents))


@pytest.fixture
def repo(tmp_path: Path) -> pygit2.Repository:
    r = pygit2.init_repository(str(tmp_path / "repo"), initial_head="main")
    commit(r, "kubernetes/apps/a.yaml", "a: 1\n")
    return r


def test_branch_packed_refs_and_detached_head(repo):
    root = Path(repo.workdir)
    assert head_commit(root) == str(repo.head.target)
    second = commit(repo, "kubernetes/apps/b.yaml", "b: 1\n")
    assert head_commit(root) == second
    # packed: the loose ref goes into packed-refs
    loose = root / ".git" / "refs" / "heads" / "main"
    packed = f"# pack-refs with: peeled\n{second} refs/heads/main\n"
    (root / ".git" / "packed-refs").write_text(packed)
    loose.unlink()
    assert head_commit(root) == second == str(pygit2.Repository(str(root)).head.target)
    repo.set_head(pygit2.Oid(hex=second))  # detached
    assert head_commit(root) == second


def test_unborn_branch_and_a_worktree(tmp_path, repo):
    empty = pygit2.init_repository(str(tmp_path / "empty"), initial_head="main")
    assert head_commit(Path(empty.workdir)) == ""
    assert tree_key(Path(empty.workdir)) == ("", "")
    repo.branches.local.create("side", repo.head.peel(pygit2.Commit))
    worktree = repo.add_worktree("wt", str(tmp_path / "wt"), repo.branches["side"])
    assert head_commit(Path(worktree.path)) == str(repo.head.target)


def test_not_a_repository_says_none(tmp_path):
    assert head_commit(tmp_path) is None


def test_the_key_moves_with_any_edit_and_comes_back_with_the_files(repo):
    root = Path(repo.workdir)
    head, clean = tree_key(root)
    assert head == str(repo.head.target) and clean.startswith(head)
    target = root / "kubernetes" / "apps" / "a.yaml"
    target.write_text("a: 2\n")  # same size, new content and mtime
    os.utime(target, ns=(1, 1))
    _, edited = tree_key(root)
    assert edited != clean
    (root / "kubernetes" / "apps" / "new.yaml").write_text("n: 1\n")
    _, added = tree_key(root)
    assert added not in (edited, clean)
    assert tree_fingerprint(root / "kubernetes") == tree_fingerprint(root / "kubernetes")


def test_a_tree_seen_before_is_not_parsed_again_until_it_changes(repo, monkeypatch, tmp_path):
    from dapper.backends.clients import gitdata

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parsed: list[str] = []
    real = gitdata.parse_tree

    def counted(root, head):
        parsed.append(head)
        return real(root, head)

    monkeypatch.setattr(gitdata, "parse_tree", counted)
    root = str(Path(repo.workdir))
    key, data = gitdata.tree_view(root, None)
    assert gitdata.tree_view(root, None)[1] == data  # a new process: from the disk cache
    assert gitdata.tree_view(root, (key, data)) == (key, data)  # the console: from memory
    assert len(parsed) == 1
    (Path(repo.workdir) / "kubernetes" / "apps" / "c.yaml").write_text("c: 1\n")
    edited, _ = gitdata.tree_view(root, (key, data))
    assert edited != key and len(parsed) == 2
