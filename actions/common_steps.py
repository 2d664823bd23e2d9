"""Steps every GitOps runbook ends with: sync, commit, push, reconcile and wait.

Each `check` looks at the world, not at the journal, so a run that died right after a
side effect (commit made, push done, reconcile requested) does not repeat it on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pygit2
from dapper.actions import gitops
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.backends.clients.gitrepo import GitError

KsKey = tuple[str, str]
FAILED_REASONS = {
    "DecryptionFailed",
    "BuildFailed",
    "ReconciliationFailed",
    "HealthCheckFailed",
    "ArtifactFailed",
    "ValidationFailed",
}


def run_commit(ctx: RunContext) -> str:
    """This run's commit on HEAD (found by its trailer), or ""."""
    return gitops.find_run_commit(ctx.repo, ctx.run_id)


def pushed_sha(ctx: RunContext) -> str:
    return ctx.out("push", "sha") or run_commit(ctx)


def revision_sha(revision: str) -> str:
    """`main@sha1:<sha>` (Flux v2 style) or `main/<sha>` (older) -> sha."""
    if "@sha1:" in revision:
        return revision.split("@sha1:", 1)[1]
    return revision.rsplit("/", 1)[-1] if revision else ""


def at_or_after(ctx: RunContext, revision: str, sha: str) -> bool:
    rev = revision_sha(revision)
    if not rev or not sha:
        return False
    if rev == sha:
        return True
    try:
        return ctx.repo.repo.descendant_of(pygit2.Oid(hex=rev), pygit2.Oid(hex=sha))
    except (ValueError, KeyError, pygit2.GitError):
        return False


class SyncStep(Step):
    """Fast-forward the branch to the remote before editing, so the commit lands on top."""

    id = "sync"
    title = "Bring the local branch up to date with the remote"

    def _behind(self, ctx: RunContext) -> int:
        return ctx.repo.ahead_behind(ctx.config.repo_remote, ctx.config.repo_branch)[1]

    def check(self, ctx: RunContext) -> Check:
        if run_commit(ctx):
            return Check(True, "this run's commit already exists")
        behind = self._behind(ctx)
        return Check(behind == 0, "up to date" if behind == 0 else f"{behind} commit(s) behind")

    def preview(self, ctx: RunContext) -> StepPreview:
        remote = f"{ctx.config.repo_remote}/{ctx.config.repo_branch}"
        return StepPreview(self.id, self.title, calls=[f"git fast-forward to {remote}"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        sha = ctx.repo.fetch_and_fast_forward(ctx.config.repo_remote, ctx.config.repo_branch)
        return {"head": sha}


class CommitStep(Step):
    id = "commit"
    title = "Commit the change"

    def __init__(self, summary: Callable[[RunContext], str]) -> None:
        self.summary = summary

    def paths(self, ctx: RunContext) -> list[str]:
        out: list[str] = []
        for step, outputs in ctx.outputs.items():
            if step != self.id:
                out += [p for p in outputs.get("paths", []) or [] if p not in out]
        return out

    def check(self, ctx: RunContext) -> Check:
        sha = run_commit(ctx)
        return Check(bool(sha), f"commit {sha[:12]} exists" if sha else "")

    def preview(self, ctx: RunContext) -> StepPreview:
        msg = f"runbook({ctx.runbook}): {self.summary(ctx)}"
        return StepPreview(
            self.id,
            self.title,
            calls=[f"git commit -m {msg!r} (trailers Runbook-Run: {ctx.run_id}, Operator)"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        paths = self.paths(ctx)
        if not paths:
            raise StepFailed("nothing to commit: no step changed a file")
        who = gitops.operator(ctx.repo)
        sha = gitops.commit_paths(ctx.repo, paths, ctx.runbook, self.summary(ctx), ctx.run_id, who)
        return {"sha": sha}


class PushStep(Step):
    id = "push"
    title = "Push to the remote"

    def check(self, ctx: RunContext) -> Check:
        sha = run_commit(ctx)
        if not sha:
            return Check(False)
        remote, branch = ctx.config.repo_remote, ctx.config.repo_branch
        if gitops.remote_contains(ctx.repo, remote, branch, sha):
            ctx.outputs.setdefault(self.id, {})["sha"] = sha
            return Check(True, f"{remote}/{branch} has {sha[:12]}")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        remote, branch = ctx.config.repo_remote, ctx.config.repo_branch
        return StepPreview(self.id, self.title, calls=[f"git push {remote} {branch} (no force)"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        sha = run_commit(ctx)
        if not sha:
            raise StepFailed("this run's commit is not on HEAD any more")
        final = gitops.push(ctx.repo, ctx.config.repo_remote, ctx.config.repo_branch, sha)
        if final != sha:
            ctx.progress(f"the remote had moved: replayed the commit as {final[:12]}")
        return {"sha": final}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        sha = pushed_sha(ctx)
        remote, branch = ctx.config.repo_remote, ctx.config.repo_branch
        try:
            if not gitops.remote_contains(ctx.repo, remote, branch, sha):
                raise StepFailed(f"{remote}/{branch} does not contain {sha[:12]} after the push")
        except GitError as exc:
            raise StepFailed(f"cannot verify the push: {exc.reason}") from None
        return {"sha": sha}


class ReconcileStep(Step):
    """Ask Flux to reconcile Kustomizations (the first with its source) and wait until each
    is Ready at this run's revision; a decryption or build failure stops the wait early."""

    id = "reconcile"
    title = "Reconcile with Flux and wait for the new revision"

    def __init__(self, kustomizations: Callable[[RunContext], list[KsKey]], timeout_param: str):
        self.kustomizations = kustomizations
        self.timeout_param = timeout_param

    def _status(self, ctx: RunContext, key: KsKey) -> Any:
        ks = ctx.cluster.kustomization(*key)
        if ks is None:
            raise StepFailed(f"Kustomization {key[0]}/{key[1]} is not in the cluster")
        return ks

    def check(self, ctx: RunContext) -> Check:
        sha = pushed_sha(ctx)
        if not sha:
            return Check(False)
        keys = self.kustomizations(ctx)
        done = all(self._ready_at(ctx, self._status(ctx, k), sha) for k in keys)
        return Check(done, f"all {len(keys)} at {sha[:12]}" if done else "")

    def _ready_at(self, ctx: RunContext, ks: Any, sha: str) -> bool:
        return ks.ready == "True" and at_or_after(ctx, ks.applied_revision, sha)

    def preview(self, ctx: RunContext) -> StepPreview:
        keys = self.kustomizations(ctx)
        calls = []
        for i, (ns, name) in enumerate(keys):
            src = " --with-source" if i == 0 else ""
            calls.append(f"flux reconcile kustomization {name} -n {ns}{src} (annotate requestedAt)")
        calls.append(
            f"wait until Ready at the new revision (up to {ctx.params[self.timeout_param]}s)"
        )
        return StepPreview(self.id, self.title, calls=calls)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        requested: dict[str, str] = dict(ctx.out(self.id, "requested", {}) or {})
        for i, (ns, name) in enumerate(self.kustomizations(ctx)):
            key = f"{ns}/{name}"
            if key in requested:
                continue
            ctx.progress(f"requesting reconcile of {key}" + (" with source" if i == 0 else ""))
            requested[key] = ctx.cluster.reconcile(ns, name, with_source=(i == 0))
            ctx.save(requested=requested)
        return {"requested": requested}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        sha = pushed_sha(ctx)
        timeout = float(ctx.params[self.timeout_param])
        revisions: dict[str, str] = {}
        for ns, name in self.kustomizations(ctx):
            key = f"{ns}/{name}"

            def probe(ns: str = ns, name: str = name) -> tuple[bool, str]:
                ks = self._status(ctx, (ns, name))
                if self._ready_at(ctx, ks, sha):
                    return True, f"Ready at {ks.applied_revision}"
                attempted = at_or_after(ctx, ks.attempted_revision, sha)
                if ks.ready == "False" and attempted and ks.reason in FAILED_REASONS:
                    raise StepFailed(f"{ns}/{name}: {ks.reason}: {ks.message}")
                rev = ks.applied_revision or "no revision"
                return False, f"Ready={ks.ready} {ks.reason} at {rev}".strip()

            revisions[key] = ctx.wait(f"Kustomization {key}", probe, timeout=timeout)
        return {"revisions": revisions, "commit": sha}


class IfChangedCommitStep(CommitStep):
    """Commit only when `changes(ctx)` says a step of this run changed (or will change)
    the tree: runbooks whose tree edit depends on their parameters or on what exists."""

    def __init__(
        self, summary: Callable[[RunContext], str], changes: Callable[[RunContext], bool]
    ) -> None:
        super().__init__(summary)
        self.changes = changes

    def check(self, ctx: RunContext) -> Check:
        if not self.changes(ctx):
            return Check(True, "the tree needs no change")
        return super().check(ctx)


class IfChangedPushStep(PushStep):
    def __init__(self, changes: Callable[[RunContext], bool]) -> None:
        self.changes = changes

    def check(self, ctx: RunContext) -> Check:
        if not self.changes(ctx):
            return Check(True, "nothing to push")
        return super().check(ctx)

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        return super().verify(ctx) if self.changes(ctx) else {}
