"""A runbook commits only on the configured branch: a detached HEAD or another branch is
refused in one line before anything changes (it used to commit on the detached HEAD,
claim "up to date" while a commit behind, and fail only at the push)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from dapper.actions import registry
from dapper.actions.engine import Engine, RunResult
from dapper.actions.events import Event, Kind, StepState
from dapper.actions.journal import list_runs
from dapper.backends.clients.gitrepo import GitRepo
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    running = start_lab(directory=tmp_path / "lab", timings=Timings(reconcile_interval=600.0))
    try:
        yield running
    finally:
        running.stop()


def rotate(lab: RunningLab) -> RunResult:
    params = {"file": CF_FILE, "keys": "api-token", "reconcile-timeout": "5"}
    return Engine(lab.config).run(registry.get("secret-rotate"), params, yes=True)


def state(lab: RunningLab) -> tuple:
    repo = GitRepo.open(lab.config.repo_path)
    remote = lab.remote.repository()
    return (
        repo.repo.head.target,
        repo.repo.references["refs/heads/main"].target,
        remote.references["refs/heads/main"].target,
        len(lab.world.writes),
    )


def test_detached_head_and_other_branch_are_refused(lab: RunningLab) -> None:
    repo = GitRepo.open(lab.config.repo_path).repo
    tip = repo.head.target
    parent = repo[tip].parents[0].id
    repo.set_head(parent)  # detached, one commit behind the remote
    repo.checkout_tree(repo[parent], strategy=pygit2.enums.CheckoutStrategy.FORCE)
    before = state(lab)
    result = rotate(lab)
    assert not result.ok and "\n" not in result.reason
    assert result.reason.endswith(f"HEAD is detached at {str(parent)[:7]}; check out main first")
    assert state(lab) == before

    repo.branches.local.create("feature", repo[tip])
    repo.checkout("refs/heads/feature")
    before = state(lab)
    result = rotate(lab)
    assert not result.ok
    assert result.reason.endswith(
        "on branch feature, not the configured main; check out main first"
    )
    assert state(lab) == before
    assert list_runs() == []


def test_ahead_behind_counts_from_head(tmp_path: Path) -> None:
    """A HEAD behind its remote is behind even when the branch ref itself is current."""
    remote = pygit2.init_repository(str(tmp_path / "remote.git"), bare=True)
    work = pygit2.init_repository(str(tmp_path / "work"), initial_head="main")
    sig = pygit2.Signature("t", "t@example.invalid")
    first = work.create_commit("HEAD", sig, sig, "one", work.TreeBuilder().write(), [])
    second = work.create_commit("HEAD", sig, sig, "two", work.TreeBuilder().write(), [first])
    work.remotes.create("origin", remote.path)
    work.remotes["origin"].push(["refs/heads/main"])
    work.remotes["origin"].fetch()
    git = GitRepo(work)
    assert git.ahead_behind() == (0, 0)
    work.set_head(first)  # detached one behind; refs/heads/main is still current
    assert git.ahead_behind() == (0, 1)
    work.set_head("refs/heads/main")
    assert work.head.target == second and git.ahead_behind() == (0, 0)


class _Crash(Exception):
    pass


def test_resume_refuses_another_cluster_and_repository(tmp_path: Path) -> None:
    """A run journaled against one lab (repository and cluster) is not finished against
    a second one: one line naming both, and the second lab sees no write."""
    first = start_lab(directory=tmp_path / "first", timings=Timings(reconcile_interval=600.0))
    try:

        def crash(event: Event) -> None:
            if event.kind == Kind.STEP and event.step == "edit" and event.state == StepState.DONE:
                raise _Crash()

        params = {"file": CF_FILE, "keys": "api-token", "reconcile-timeout": "5"}
        with pytest.raises(_Crash):
            Engine(first.config, emit=crash).run(registry.get("secret-rotate"), params, yes=True)
        run = list_runs()[0]
        assert run.status == "unfinished" and run.target["cluster_uid"]
    finally:
        first.stop()

    second = start_lab(directory=tmp_path / "second", timings=Timings(reconcile_interval=600.0))
    try:
        before = state(second)
        result = Engine(second.config).resume(run.run_id, registry.get("secret-rotate"), yes=True)
        assert not result.ok and "\n" not in result.reason
        assert result.reason.startswith(f"run {run.run_id} was made against https://127.0.0.1:")
        assert "this configuration points at https://127.0.0.1:" in result.reason
        assert str(first.remote.bare_path) in result.reason
        assert str(second.remote.bare_path) in result.reason
        assert state(second) == before
        assert list_runs()[0].status == "unfinished"  # still the first lab's to finish
    finally:
        second.stop()
