"""The lab's Git remote: a bare copy of the checkout's HEAD and a scratch clone of it."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from dapper.lab.git_remote import LabGitError, LabGitRemote

SIG = pygit2.Signature("Lab Tester", "tester@lab.invalid")


def _commit(repo: pygit2.Repository, root: Path, rel: str, text: str, msg: str) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
    repo.index.add(rel)
    repo.index.write()
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return str(repo.create_commit("HEAD", SIG, SIG, msg, repo.index.write_tree(), parents))


def test_remote_is_the_checkouts_head_on_main(tmp_path: Path) -> None:
    src = tmp_path / "checkout"
    repo = pygit2.init_repository(str(src), initial_head="work")
    _commit(repo, src, "kubernetes/a.yaml", "a: 1\n", "first")
    head = _commit(repo, src, "kubernetes/a.yaml", "a: 2\n", "second")
    (src / "kubernetes/a.yaml").write_text("a: uncommitted\n")  # never copied

    remote = LabGitRemote.create(src, tmp_path / "labdir")
    try:
        assert remote.head() == ("main", head)
        assert remote.bare_path.is_relative_to(tmp_path / "labdir")
        bare = pygit2.Repository(str(remote.bare_path))
        assert bare.is_bare
        assert len(list(bare.walk(bare.references["refs/heads/main"].target))) == 2
        scratch = pygit2.Repository(str(remote.scratch_path))
        assert scratch.remotes["origin"].url == str(remote.bare_path)
        assert scratch.head.shorthand == "main"
        assert (remote.scratch_path / "kubernetes/a.yaml").read_text() == "a: 2\n"
        assert scratch.config["user.email"]  # the scratch clone can always commit
        assert remote.url.startswith("file://")
        # the operator's checkout is untouched
        assert (src / "kubernetes/a.yaml").read_text() == "a: uncommitted\n"
    finally:
        remote.close()
    assert not remote.bare_path.exists()
    assert not remote.scratch_path.exists()


def test_an_empty_checkout_is_refused(tmp_path: Path) -> None:
    pygit2.init_repository(str(tmp_path / "empty"))
    with pytest.raises(LabGitError, match="no commit"):
        LabGitRemote.create(tmp_path / "empty", tmp_path / "labdir")
    with pytest.raises(LabGitError, match="not a Git repository"):
        LabGitRemote.create(tmp_path / "nowhere", tmp_path / "labdir")
