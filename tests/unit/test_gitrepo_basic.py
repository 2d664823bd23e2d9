"""GitRepo against real repositories on disk: a bare remote and two clones of it."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from dapper.backends.clients.gitrepo import (
    GitError,
    GitRepo,
    _Callbacks,
    format_message,
    is_local_url,
    parse_trailers,
)
from dapper.backends.errors import ReadOnlyError
from pygit2.enums import CredentialType

SIG = pygit2.Signature("Lab Tester", "tester@lab.invalid")


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _configure(repo_path: Path, name: str = "Lab Tester") -> None:
    cfg = pygit2.Repository(str(repo_path)).config
    cfg["user.name"] = name
    cfg["user.email"] = "tester@lab.invalid"


@pytest.fixture
def remote_and_clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare remote with one commit on main, and two independent clones of it."""
    seed = tmp_path / "seed"
    repo = pygit2.init_repository(str(seed), initial_head="main")
    _write(seed, "kubernetes/apps/a.yaml", "a: 1\n")
    _write(seed, "README.md", "hello\n")
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    repo.create_commit("HEAD", SIG, SIG, "seed\n", tree, [])
    bare = tmp_path / "remote.git"
    pygit2.clone_repository(str(seed), str(bare), bare=True)
    one = tmp_path / "one"
    two = tmp_path / "two"
    for clone in (one, two):
        pygit2.clone_repository(str(bare), str(clone))
        _configure(clone)
    return bare, one, two


def test_commit_with_trailers_and_log(remote_and_clones) -> None:
    _, one, _ = remote_and_clones
    repo = GitRepo.open(one)
    _write(one, "kubernetes/apps/a.yaml", "a: 2\n")
    _write(one, "kubernetes/apps/b.yaml", "b: 1\n")
    _write(one, "notes.txt", "not committed\n")
    sha = repo.commit(
        ["kubernetes/apps/a.yaml", one / "kubernetes/apps/b.yaml"],
        "fix(apps): bump a",
        {"Runbook-Run": "r-123", "Operator": "alice"},
    )
    assert repo.head() == ("main", sha)
    entries = repo.log(n=5)
    assert entries[0].sha == sha
    assert entries[0].summary == "fix(apps): bump a"
    assert entries[0].trailers == {"Runbook-Run": "r-123", "Operator": "alice"}
    assert entries[0].author == "Lab Tester <tester@lab.invalid>"
    # only the named paths were committed; the index agrees with the commit
    assert repo.status() == ["notes.txt"]
    assert [e.sha for e in repo.log(path="kubernetes/apps/b.yaml")] == [sha]
    assert [e.summary for e in repo.log(path="README.md")] == ["seed"]


def test_commit_deleted_path_and_nothing_to_commit(remote_and_clones) -> None:
    _, one, _ = remote_and_clones
    repo = GitRepo.open(one)
    (one / "kubernetes/apps/a.yaml").unlink()
    repo.commit(["kubernetes/apps/a.yaml"], "remove a", signature=SIG)
    tree = repo.repo.head.peel(pygit2.Commit).tree
    with pytest.raises(KeyError):
        tree["kubernetes/apps/a.yaml"]
    with pytest.raises(GitError, match="nothing to commit"):
        repo.commit(["README.md"], "no change", signature=SIG)


def test_dirty_paths_limited_to_kubernetes_and_sops_config(remote_and_clones) -> None:
    _, one, _ = remote_and_clones
    repo = GitRepo.open(one)
    assert repo.dirty_paths() == []
    _write(one, "kubernetes/apps/a.yaml", "a: 3\n")
    _write(one, "kubernetes/apps/new.sops.yaml", "x: 1\n")
    _write(one, "docs/x.md", "doc\n")
    _write(one, ".sops.yaml", "creation_rules: []\n")
    _write(one, "kubernetes-other/y.yaml", "y: 1\n")
    assert repo.dirty_paths() == [
        ".sops.yaml",
        "kubernetes/apps/a.yaml",
        "kubernetes/apps/new.sops.yaml",
    ]
    assert "docs/x.md" in repo.status()


def test_push_then_rejected_when_remote_diverged(remote_and_clones) -> None:
    bare, one, two = remote_and_clones
    first, second = GitRepo.open(one), GitRepo.open(two)
    _write(one, "kubernetes/apps/a.yaml", "a: from-one\n")
    sha = first.commit(["kubernetes/apps/a.yaml"], "one edits a")
    first.push()
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == sha

    _write(two, "kubernetes/apps/a.yaml", "a: from-two\n")
    second.commit(["kubernetes/apps/a.yaml"], "two edits a too")
    with pytest.raises(GitError) as err:
        second.push()
    assert "remote has diverged: 1 local, 1 remote commits; rebase by hand" in err.value.reason
    with pytest.raises(GitError, match="remote has diverged: 1 local, 1 remote commits"):
        second.fetch_and_fast_forward()
    # nothing moved on the remote
    assert str(pygit2.Repository(str(bare)).references["refs/heads/main"].target) == sha


def test_fast_forward_when_remote_moved(remote_and_clones) -> None:
    _, one, two = remote_and_clones
    first, second = GitRepo.open(one), GitRepo.open(two)
    _write(one, "kubernetes/apps/c.yaml", "c: 1\n")
    sha = first.commit(["kubernetes/apps/c.yaml"], "add c")
    first.push()
    assert second.fetch_and_fast_forward() == sha
    assert second.head() == ("main", sha)
    assert (two / "kubernetes/apps/c.yaml").read_text() == "c: 1\n"
    assert second.status() == []
    # then the second clone can push on top
    _write(two, "kubernetes/apps/c.yaml", "c: 2\n")
    new = second.commit(["kubernetes/apps/c.yaml"], "bump c")
    second.push()
    assert first.fetch_and_fast_forward() == new


def test_read_only_refuses_before_touching_anything(remote_and_clones) -> None:
    _, one, _ = remote_and_clones
    repo = GitRepo.open(one, read_only=True)
    before = repo.head()
    _write(one, "kubernetes/apps/a.yaml", "a: 9\n")
    with pytest.raises(ReadOnlyError):
        repo.commit(["kubernetes/apps/a.yaml"], "nope", signature=SIG)
    with pytest.raises(ReadOnlyError):
        repo.push()
    with pytest.raises(ReadOnlyError):
        repo.fetch_and_fast_forward()
    assert repo.head() == before
    assert repo.dirty_paths() == ["kubernetes/apps/a.yaml"]  # reading still works


def test_missing_identity_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    repo_path = tmp_path / "r"
    pygit2.init_repository(str(repo_path), initial_head="main")
    empty = tmp_path / "emptyhome"
    empty.mkdir()
    levels = (
        pygit2.enums.ConfigLevel.GLOBAL,
        pygit2.enums.ConfigLevel.XDG,
        pygit2.enums.ConfigLevel.SYSTEM,
    )
    saved = {lvl: pygit2.settings.search_path[lvl] for lvl in levels}
    try:
        for lvl in levels:
            pygit2.settings.search_path[lvl] = str(empty)
        repo = GitRepo.open(repo_path)
        _write(repo_path, "kubernetes/x.yaml", "x: 1\n")
        with pytest.raises(GitError, match="no Git identity"):
            repo.commit(["kubernetes/x.yaml"], "first")
        sha = repo.commit(["kubernetes/x.yaml"], "first", signature=SIG)  # explicit works
        assert repo.head() == ("main", sha)
    finally:
        for lvl, value in saved.items():
            pygit2.settings.search_path[lvl] = value


def test_push_to_unreachable_remote_is_one_line(remote_and_clones) -> None:
    _, one, _ = remote_and_clones
    repo = GitRepo.open(one)
    repo.repo.remotes.create("gh", "ssh://git@127.0.0.1:1/nobody/none.git")
    with pytest.raises(GitError) as err:
        repo.push("gh", env={})
    assert err.value.reason.startswith("push to gh failed: ")
    assert "\n" not in err.value.reason


def test_credentials_come_from_the_environment() -> None:
    allowed = CredentialType.USERPASS_PLAINTEXT | CredentialType.SSH_KEY
    with pytest.raises(GitError, match=r"no credentials for https://h/r\.git"):
        _Callbacks(env={}).credentials("https://h/r.git", None, allowed)
    token = _Callbacks(env={"GITHUB_TOKEN": "t0k"}).credentials(
        "https://h/r.git", None, CredentialType.USERPASS_PLAINTEXT
    )
    assert isinstance(token, pygit2.UserPass)
    assert token.credential_tuple == ("x-access-token", "t0k")
    agent = _Callbacks(env={"SSH_AUTH_SOCK": "/run/agent"}).credentials(
        "ssh://git@h/r.git", "git", allowed
    )
    assert isinstance(agent, pygit2.KeypairFromAgent)
    cb = _Callbacks(env={"GIT_TOKEN": "x"})
    cb.credentials("https://h/r.git", None, allowed)
    with pytest.raises(GitError, match=r"authentication to https://h/r\.git failed"):
        cb.credentials("https://h/r.git", None, allowed)  # no endless retry loop
    assert is_local_url("file:///tmp/x.git") and is_local_url("/tmp/x.git")
    assert not is_local_url("git@github.com:o/r.git")


def test_trailer_helpers() -> None:
    text = format_message("feat: x\n\nbody line", {"Runbook": "node-replace", "Run-Id": "7"})
    assert parse_trailers(text) == {"Runbook": "node-replace", "Run-Id": "7"}
    assert parse_trailers("just a summary\n") == {}
    with pytest.raises(GitError):
        format_message("x", {"bad key": "v"})
