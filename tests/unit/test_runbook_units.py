"""Runbook engine pieces without a lab: params, journal, lock, YAML edits, masked diffs, Git."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest
from dapper.actions import gitops
from dapper.actions.diffs import NEW, OLD, SAME, sops_masked
from dapper.actions.journal import Journal, list_runs, new_run_id
from dapper.actions.lock import LockedError, RepoLock
from dapper.actions.params import REDACTED, Param, ParamError, parse_pairs, redact, resolve
from dapper.actions.yamledit import edit_text, set_age_recipients
from dapper.backends.clients.gitrepo import GitError, GitRepo
from dapper.backends.sops.file import encrypt_documents, load_yaml_documents
from dapper.backends.sops.rules import CreationRule, ValueSelector
from pyrage import x25519

SOPS_YAML = """\
---
# Rules for the whole repository; the first must stay first.
creation_rules:
  - # Talos bundle: every value encrypted.
    path_regex: talos/.*\\.sops\\.ya?ml
    key_groups:
      - age:
          - {old}
  - # Secrets: data only
    path_regex: kubernetes/.*\\.sops\\.ya?ml
    encrypted_regex: ^(data|stringData)$
    age: {old},{other}  # two operators
stores:
  yaml:
    indent: 2
"""


def test_params_parse_resolve_and_redact() -> None:
    declared = (
        Param("file", required=True),
        Param("keys", "list"),
        Param("restart", "bool", default=False),
        Param("n", "int", default=3),
        Param("mode", choices=("a", "b"), default="a"),
        Param("token", secret=True, default=""),
    )
    given = parse_pairs(["file=x.yaml", "keys=a, b", "restart=yes", "n=7", "token=s3cr=t"])
    values = resolve(declared, given)
    assert values == {
        "file": "x.yaml",
        "keys": ("a", "b"),
        "restart": True,
        "n": 7,
        "mode": "a",
        "token": "s3cr=t",
    }
    assert redact(declared, values)["token"] == REDACTED
    assert "s3cr" not in str(redact(declared, values))
    with pytest.raises(ParamError, match="missing parameter file"):
        resolve(declared, {})
    with pytest.raises(ParamError, match="unknown parameter"):
        resolve(declared, {"file": "x", "bogus": "1"})
    with pytest.raises(ParamError, match="one of a, b"):
        resolve(declared, {"file": "x", "mode": "c"})
    with pytest.raises(ParamError, match="not an integer"):
        resolve(declared, {"file": "x", "n": "many"})
    with pytest.raises(ParamError, match="NAME=VALUE"):
        parse_pairs(["novalue"])


def test_journal_reads_back_and_survives_a_torn_line(tmp_path: Path) -> None:
    run_id = new_run_id()
    j = Journal.create(run_id, tmp_path)
    j.start(
        run_id=run_id, runbook="rb", params={"a": 1}, operator="Op <op@x>", repo="/r", head="abc"
    )
    j.step("one", "start")
    j.step("one", "ran", outputs={"sha": "123"})
    j.step("one", "verified")
    j.step("two", "start")
    with j.path.open("a") as f:
        f.write('{"type": "step", "step": "two", "pha')  # killed mid-write
    rec = j.read()
    assert rec.runbook == "rb" and rec.operator == "Op <op@x>" and rec.head == "abc"
    assert rec.done("one") and not rec.done("two")
    assert rec.outputs["one"] == {"sha": "123"}
    assert rec.status == "unfinished"
    assert oct(j.path.stat().st_mode & 0o777) == "0o600"
    assert [r.run_id for r in list_runs(tmp_path)] == [run_id]


def test_lock_keeps_a_second_run_off_the_repository(tmp_path: Path) -> None:
    with RepoLock(tmp_path, "run-1"), pytest.raises(LockedError, match="run-1"):
        RepoLock(tmp_path, "run-2").acquire()
    with RepoLock(tmp_path, "run-2"):  # released: free again
        pass


def test_sops_yaml_edit_keeps_comments_order_and_layout() -> None:
    old_r = str(x25519.Identity.generate().to_public())
    other = str(x25519.Identity.generate().to_public())
    new_r = str(x25519.Identity.generate().to_public())
    text = SOPS_YAML.format(old=old_r, other=other)
    out = edit_text(text, lambda docs: set_age_recipients(docs, [old_r], new_r, keep_old=False))
    expected = text.replace(f"- {old_r}", f"- {new_r}").replace(
        f"age: {old_r},{other}", f"age: {other},{new_r}"
    )
    assert out == expected  # only the recipient lines changed; every comment is intact
    assert "# Rules for the whole repository" in out and "- # Talos bundle" in out
    kept = edit_text(text, lambda docs: set_age_recipients(docs, [old_r], new_r, keep_old=True))
    assert f"- {old_r}\n          - {new_r}\n" in kept
    assert f"age: {old_r},{other},{new_r}" in kept


def test_masked_diff_shows_which_values_changed_never_the_values() -> None:
    ident = x25519.Identity.generate()
    rule = CreationRule(
        age=(str(ident.to_public()),),
        selector=ValueSelector(encrypted_regex="^(data|stringData)$").normalized(),
    )
    doc = "kind: Secret\nmetadata:\n  name: s\nstringData:\n  a: alpha-secret\n  b: beta-secret\n"
    old = encrypt_documents(load_yaml_documents(doc, "x"), rule)
    new = encrypt_documents(
        load_yaml_documents(doc.replace("alpha-secret", "gamma-secret"), "x"), rule
    )
    diff = sops_masked("s.sops.yaml", old, new, [ident])
    assert "alpha" not in diff and "gamma" not in diff and "beta" not in diff
    assert f"-  a: '{OLD}'" in diff and f"+  a: '{NEW}'" in diff
    assert f"   b: {SAME}\n" in diff and "-  b:" not in diff  # b unchanged: context only


def _repo(path: Path) -> GitRepo:
    repo = pygit2.init_repository(str(path), initial_head="main")
    repo.config["user.name"] = "Op"
    repo.config["user.email"] = "op@example.invalid"
    return GitRepo(repo)


def _write_commit(repo: GitRepo, rel: str, text: str, msg: str = "change") -> str:
    (repo.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (repo.root / rel).write_text(text)
    return repo.commit([rel], msg)


def test_push_replays_on_a_moved_remote_unless_the_same_file_changed(tmp_path: Path) -> None:
    bare = pygit2.init_repository(str(tmp_path / "remote.git"), bare=True, initial_head="main")
    seed = _repo(tmp_path / "seed")
    _write_commit(seed, "kubernetes/a.yaml", "a: 1\n")
    _write_commit(seed, "kubernetes/b.yaml", "b: 1\n")
    seed.repo.remotes.create("origin", bare.path)
    seed.push("origin", "main")
    mine = GitRepo(pygit2.clone_repository(bare.path, str(tmp_path / "mine")))
    mine.repo.config["user.name"] = "Op"
    mine.repo.config["user.email"] = "op@example.invalid"

    _write_commit(seed, "kubernetes/b.yaml", "b: 2\n", "someone else")
    seed.push("origin", "main")
    (mine.root / "kubernetes/a.yaml").write_text("a: 2\n")
    sha = gitops.commit_paths(mine, ["kubernetes/a.yaml"], "rb", "edit a", "run-x", "Op <o@x>")
    final = gitops.push(mine, "origin", "main", sha)
    assert final != sha and gitops.remote_contains(mine, "origin", "main", final)
    assert (mine.root / "kubernetes/b.yaml").read_text() == "b: 2\n"  # work tree moved too
    assert gitops.find_run_commit(mine, "run-x") == final
    trailer = f"{gitops.TRAILER_RUN}: run-x"
    assert sum(trailer in c.message for c in mine.repo.walk(mine.repo.head.target)) == 1

    seed.fetch_and_fast_forward("origin", "main")
    _write_commit(seed, "kubernetes/a.yaml", "a: 3\n", "conflicting")
    seed.push("origin", "main")
    (mine.root / "kubernetes/a.yaml").write_text("a: 4\n")
    sha = gitops.commit_paths(mine, ["kubernetes/a.yaml"], "rb", "edit a", "run-y", "Op <o@x>")
    with pytest.raises(GitError, match=r"changed the same files .*rebase by hand"):
        gitops.push(mine, "origin", "main", sha)
    assert not gitops.remote_contains(mine, "origin", "main", sha)
    assert os.path.exists(mine.root / "kubernetes/a.yaml")
