"""The runbook engine: check, preview, confirm, run, verify; journaled and resumable.

A `Runbook` is typed parameters plus ordered `Step`s. The engine first checks every step
(read-only; a step already done is skipped), shows one preview of what the others will
change, and changes nothing until the operator confirms. Then, step by step: check again,
`run` (idempotent), `verify` (a visible wait until the world shows it done), each phase
journaled. `resume(run_id)` replays the same loop: a step whose `check` sees its own
effect (its commit, its pushed revision, its patched Secret) is re-verified, not re-run.

Errors an operator can act on (`StepFailed`, backend, Git and SOPS errors) end the run
with one line; anything else (a crash, Ctrl+C, a killed SSH session) leaves the journal
unfinished for `resume`. Nothing here imports Textual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dapper.actions.events import (
    Confirm,
    Event,
    EventSink,
    Kind,
    Prompt,
    PromptRequest,
    StepState,
)
from dapper.actions.journal import Journal, JournalError, RunRecord, new_run_id
from dapper.actions.lock import LockedError, RepoLock
from dapper.actions.params import REDACTED, Param, ParamError, redact, resolve
from dapper.actions.run_target import RunTarget, current_target
from dapper.backends.clients.gitrepo import GitError, GitRepo
from dapper.backends.config import Config
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.backends.sops.errors import SopsError

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class StepFailed(Exception):
    """A step cannot go on; `reason` is the operator's one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Cancelled(BaseException):
    """The front end asked to stop (the console's Abort). A BaseException so no step's own
    error handling swallows it; the run ends as aborted with its journal left open, so
    `resume` finishes it, exactly as after a crash."""


OPERATOR_ERRORS = (StepFailed, BackendError, GitError, SopsError, ParamError, LockedError)


def reason_of(exc: BaseException) -> str:
    text = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


@dataclass(frozen=True)
class Check:
    """What `check` found: `done` means the step's effect is already in the world."""

    done: bool
    reason: str = ""


@dataclass
class StepPreview:
    step: str
    title: str
    diffs: list[str] = field(default_factory=list)  # unified diffs, secrets masked
    calls: list[str] = field(default_factory=list)  # API calls and Git operations
    notes: list[str] = field(default_factory=list)
    done: bool = False  # already done: nothing will happen
    reason: str = ""  # what `check` found


@dataclass
class Preview:
    runbook: str
    run_id: str
    params: dict[str, Any]
    steps: list[StepPreview] = field(default_factory=list)

    def text(self) -> str:
        out = [f"runbook {self.runbook} (run {self.run_id})"]
        for k, v in self.params.items():
            out.append(f"  {k} = {v}")
        for n, s in enumerate(self.steps, start=1):
            skip = f"  [nothing to do: {s.reason or 'already done'}]" if s.done else ""
            out.append(f"{n}. {s.title}{skip}")
            out += [f"   - {c}" for c in s.calls]
            out += [f"   note: {x}" for x in s.notes]
            for d in s.diffs:
                out += ["   " + line for line in d.rstrip("\n").splitlines()]
        return "\n".join(out)


class Step:
    """One step; subclasses override what they need. Outputs must hold no secrets."""

    id: str = "step"
    title: str = ""

    def check(self, ctx: RunContext) -> Check:
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(self.id, self.title)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        return {}


class Runbook:
    """A named list of steps over typed parameters; `preflight` runs before the preview.

    `title` (a few words, lower case: the palette says "Runbook: <title>") and `summary`
    (one line: what it does) are what the front ends list; they know runbooks only
    through these and `params`.
    """

    name: str = ""
    title: str = ""
    summary: str = ""
    params: tuple[Param, ...] = ()
    needs_cluster: bool = True

    def steps(self, ctx: RunContext) -> Sequence[Step]:
        raise NotImplementedError

    def preflight(self, ctx: RunContext) -> None:
        from dapper.actions.preflight import standard_preflight

        standard_preflight(ctx, cluster=self.needs_cluster)

    def commit_subject(self, ctx: RunContext) -> str:
        """The subject of the run's commit, after `runbook(<name>): `."""
        return self.title


@dataclass
class RunContext:
    """Everything a step may use. `memory` holds in-process values (never journaled)."""

    config: Config
    repo: GitRepo
    run_id: str
    runbook: str
    params: dict[str, Any]
    emit: EventSink
    prompt: Prompt | None = None
    journal: Journal | None = None
    record: RunRecord | None = None
    cluster_factory: Callable[[Config], Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dry_run: bool = False
    step_id: str = ""
    cancelled: Callable[[], bool] | None = None
    _cluster: Any = None
    _resources: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.repo.root

    @property
    def read_only(self) -> bool:
        return self.config.read_only or self.repo.read_only

    @property
    def cluster(self) -> Any:
        if self._cluster is None:
            if self.cluster_factory is None:
                from dapper.actions.cluster import KubeCluster

                self._cluster = KubeCluster.from_config(self.config)
            else:
                self._cluster = self.cluster_factory(self.config)
        return self._cluster

    def resource(self, key: str, factory: Callable[[], _T]) -> _T:
        """A client built on first use and kept for the run (Talos, Proxmox): `close`
        closes it with the cluster client."""
        if key not in self._resources:
            self._resources[key] = factory()
        return self._resources[key]

    def close(self) -> None:
        """Close the cluster client and every resource (pooled connections) once the run
        is over."""
        held = [self._cluster, *self._resources.values()]
        self._cluster = None
        self._resources.clear()
        for client in held:
            if client is None or not hasattr(client, "close"):
                continue
            try:
                client.close()
            except Exception:  # closing must not hide the run's own result
                log.debug("closing %s failed", type(client).__name__, exc_info=True)

    def checkpoint(self) -> None:
        """Raise Cancelled if the front end asked to stop: between steps and in waits."""
        if self.cancelled is not None and self.cancelled():
            raise Cancelled()

    def progress(self, line: str) -> None:
        self.emit(Event(Kind.PROGRESS, self.run_id, self.step_id, message=line))

    def out(self, step: str, key: str, default: Any = None) -> Any:
        return self.outputs.get(step, {}).get(key, default)

    def save(self, **outputs: Any) -> None:
        """Journal outputs of the current step now (before its side effect finishes)."""
        self.outputs.setdefault(self.step_id, {}).update(outputs)
        if self.journal is not None:
            self.journal.step(self.step_id, "output", outputs=outputs)

    def wait(
        self,
        what: str,
        probe: Callable[[], tuple[bool, str]],
        *,
        timeout: float,
        interval: float = 0.1,
        max_interval: float = 2.0,
    ) -> str:
        """Poll `probe` (-> done, status line) until done; progress shows each new status.

        Raises StepFailed with the last status when `timeout` passes.
        """
        deadline = time.monotonic() + timeout
        last = None
        self.progress(f"waiting for {what} (up to {timeout:g}s)")
        while True:
            done, status = probe()
            if status != last:
                self.progress(f"{what}: {status}")
                last = status
            if done:
                return status
            self.checkpoint()
            if time.monotonic() >= deadline:
                raise StepFailed(f"timed out after {timeout:g}s waiting for {what}: {status}")
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, max_interval)


@dataclass
class RunResult:
    run_id: str
    ok: bool
    reason: str = ""
    preview: Preview | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: bool = False
    dry_run: bool = False


class Engine:
    """Runs runbooks for one configuration; front ends pass an event sink and confirm.

    `cancelled` (optional) is polled between steps and during waits; when it returns True
    the run stops there (see `Cancelled`).
    """

    def __init__(
        self,
        config: Config,
        *,
        emit: EventSink | None = None,
        prompt: Prompt | None = None,
        journal_base: Path | None = None,
        cluster_factory: Callable[[Config], Any] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.emit = emit or (lambda e: None)
        self.prompt = prompt
        self.journal_base = journal_base
        self.cluster_factory = cluster_factory
        self.cancelled = cancelled

    def _repo(self) -> GitRepo:
        if not self.config.repo_path:
            raise StepFailed("no repository configured (repo_path)")
        return GitRepo.open(self.config.repo_path, read_only=self.config.read_only)

    def _context(self, runbook: Runbook, run_id: str, params: dict[str, Any]) -> RunContext:
        return RunContext(
            config=self.config,
            repo=self._repo(),
            run_id=run_id,
            runbook=runbook.name,
            params=params,
            emit=self.emit,
            prompt=self.prompt,
            cluster_factory=self.cluster_factory,
            cancelled=self.cancelled,
        )

    # -- entry points --------------------------------------------------------------------

    def run(
        self,
        runbook: Runbook,
        given: dict[str, Any],
        *,
        confirm: Confirm | None = None,
        yes: bool = False,
        dry_run: bool = False,
    ) -> RunResult:
        run_id = new_run_id()
        try:
            params = resolve(runbook.params, given)
            ctx = self._context(runbook, run_id, params)
        except OPERATOR_ERRORS as exc:
            return self._finish(None, run_id, False, reason_of(exc))
        if ctx.read_only and not dry_run:
            raise ReadOnlyError(f"runbook {runbook.name}; --dry-run previews it")
        ctx.dry_run = dry_run
        if ctx.dry_run:
            try:
                return self._go(runbook, ctx, confirm=confirm, yes=yes, resumed=False)
            finally:
                ctx.close()
        lock = RepoLock(ctx.repo.repo.path, run_id)
        try:
            lock.acquire()
        except LockedError as exc:
            return self._finish(None, run_id, False, reason_of(exc))
        try:
            return self._go(runbook, ctx, confirm=confirm, yes=yes, resumed=False)
        finally:
            lock.release()
            ctx.close()

    def resume(
        self,
        run_id: str,
        runbook: Runbook,
        *,
        confirm: Confirm | None = None,
        yes: bool = False,
    ) -> RunResult:
        try:
            journal = Journal.open(run_id, self.journal_base)
            record = journal.read()
        except FileNotFoundError as exc:
            return self._finish(None, run_id, False, str(exc))
        except JournalError as exc:
            return self._finish(None, run_id, False, exc.reason)
        if record.finished and record.ok:
            return self._finish(None, run_id, True, "already finished")
        if self.config.read_only:
            return self._finish(None, run_id, False, ReadOnlyError("resume a run").reason)
        try:
            given = self._journaled_params(runbook, record)
            params = resolve(runbook.params, given)
            ctx = self._context(runbook, run_id, params)
        except OPERATOR_ERRORS as exc:
            return self._finish(None, run_id, False, reason_of(exc))
        then = RunTarget.from_json(record.target)
        now = current_target(ctx, cluster=runbook.needs_cluster)
        if then.differs_from(now):
            ctx.close()
            return self._finish(
                None,
                run_id,
                False,
                f"run {run_id} was made against {then.describe()}; this configuration "
                f"points at {now.describe()}: resume it with the configuration it ran with",
            )
        ctx.journal, ctx.record = journal, record
        ctx.outputs = {k: dict(v) for k, v in record.outputs.items()}
        lock = RepoLock(ctx.repo.repo.path, run_id)
        try:
            lock.acquire()
        except LockedError as exc:
            return self._finish(None, run_id, False, reason_of(exc))
        try:
            journal.append({"type": "resume", "head": ctx.repo.head()[1]})
            return self._go(runbook, ctx, confirm=confirm, yes=yes, resumed=True)
        finally:
            lock.release()
            ctx.close()

    def _journaled_params(self, runbook: Runbook, record: RunRecord) -> dict[str, Any]:
        """The parameters a run was started with. Secret ones were never journaled: ask
        for them again (masked) when the run had one, or let `resolve` say it is missing."""
        given = {k: v for k, v in record.params.items() if v != REDACTED}
        for p in runbook.params:
            if p.secret and record.params.get(p.name) == REDACTED and self.prompt is not None:
                question = f"{p.prompt} (secret, not journaled: type it again)"
                try:
                    given[p.name] = self.prompt(PromptRequest(question, secret=True))
                except EOFError as exc:
                    raise ParamError(f"{p.name} is secret and not journaled: {exc}") from None
        return given

    # -- the loop --------------------------------------------------------------------------

    def _finish(
        self, ctx: RunContext | None, run_id: str, ok: bool, reason: str, **kw: Any
    ) -> RunResult:
        if ctx is not None and ctx.journal is not None and not kw.get("dry_run"):
            ctx.journal.end(ok, reason)
        self.emit(Event(Kind.FINISHED, run_id, message=reason, data={"ok": ok}))
        outputs = ctx.outputs if ctx is not None else {}
        return RunResult(run_id, ok, reason, outputs=outputs, **kw)

    def _state(self, ctx: RunContext, step: Step, state: StepState, message: str = "") -> None:
        self.emit(Event(Kind.STEP, ctx.run_id, step.id, state, message))

    def _go(
        self,
        runbook: Runbook,
        ctx: RunContext,
        *,
        confirm: Confirm | None,
        yes: bool,
        resumed: bool,
    ) -> RunResult:
        shown = redact(runbook.params, ctx.params)
        self.emit(
            Event(
                Kind.RUN,
                ctx.run_id,
                data={"run_id": ctx.run_id, "runbook": runbook.name, "resumed": resumed},
            )
        )
        try:
            runbook.preflight(ctx)
            steps = list(runbook.steps(ctx))
            preview = Preview(runbook.name, ctx.run_id, shown)
            for step in steps:
                ctx.step_id = step.id
                ctx.checkpoint()
                self._state(ctx, step, StepState.CHECKING)
                found = step.check(ctx)
                sp = step.preview(ctx) if not found.done else StepPreview(step.id, step.title)
                sp.done, sp.reason = found.done, found.reason
                preview.steps.append(sp)
                self._state(ctx, step, StepState.PENDING, found.reason)
        except OPERATOR_ERRORS as exc:
            return self._finish(ctx, ctx.run_id, False, reason_of(exc), dry_run=ctx.dry_run)
        except Cancelled:
            return self._finish(
                None, ctx.run_id, False, "cancelled: nothing changed", cancelled=True
            )
        self.emit(Event(Kind.PREVIEW, ctx.run_id, data={"preview": preview}))
        if ctx.dry_run:
            return self._finish(
                ctx, ctx.run_id, True, "dry run: nothing changed", preview=preview, dry_run=True
            )
        if ctx.read_only:
            raise ReadOnlyError(f"run runbook {runbook.name}")
        if not yes and (confirm is None or not confirm(preview)):
            if ctx.journal is not None:
                ctx.journal.end(False, "cancelled by the operator")
            return self._finish(
                None,
                ctx.run_id,
                False,
                "cancelled: nothing changed",
                preview=preview,
                cancelled=True,
            )
        if ctx.journal is None:
            ctx.journal = Journal.create(ctx.run_id, self.journal_base)
            from dapper.actions.gitops import operator

            ctx.journal.start(
                run_id=ctx.run_id,
                runbook=runbook.name,
                params=shown,
                operator=operator(ctx.repo),
                repo=str(ctx.repo.root),
                head=ctx.repo.head()[1],
                target=current_target(ctx, cluster=runbook.needs_cluster).to_json(),
            )
        for step in steps:
            try:
                ctx.checkpoint()
                self._step(ctx, step)
            except Cancelled:
                return self._aborted(ctx, step, preview)
            except OPERATOR_ERRORS as exc:
                reason = reason_of(exc)
                log.info("run %s step %s failed: %s", ctx.run_id, step.id, reason, exc_info=True)
                ctx.journal.step(step.id, "failed", reason=reason)
                self._state(ctx, step, StepState.FAILED, reason)
                return self._finish(
                    ctx, ctx.run_id, False, f"{step.title}: {reason}", preview=preview
                )
            except Exception as exc:
                ctx.journal.step(step.id, "failed", reason=f"internal error: {type(exc).__name__}")
                self._state(ctx, step, StepState.FAILED, reason_of(exc))
                raise
        return self._finish(ctx, ctx.run_id, True, "done", preview=preview)

    def _aborted(self, ctx: RunContext, step: Step, preview: Preview) -> RunResult:
        """Stopped on request at `step`: journaled as such but not ended, so resumable."""
        assert ctx.journal is not None
        ctx.journal.append({"type": "abort", "step": step.id})
        self._state(ctx, step, StepState.PENDING, "aborted")
        reason = f"aborted at: {step.title}; resume run {ctx.run_id} to finish it"
        self.emit(
            Event(Kind.FINISHED, ctx.run_id, message=reason, data={"ok": False, "aborted": True})
        )
        return RunResult(
            ctx.run_id, False, reason, preview=preview, outputs=ctx.outputs, cancelled=True
        )

    def _step(self, ctx: RunContext, step: Step) -> None:
        ctx.step_id = step.id
        assert ctx.journal is not None
        self._state(ctx, step, StepState.CHECKING)
        found = step.check(ctx)
        if found.done:
            ctx.journal.step(step.id, "checked", reason=found.reason)
            self._state(ctx, step, StepState.SKIPPED, found.reason or "already done")
        else:
            ctx.journal.step(step.id, "start")
            self._state(ctx, step, StepState.RUNNING)
            outputs = step.run(ctx) or {}
            ctx.outputs.setdefault(step.id, {}).update(outputs)
            ctx.journal.step(step.id, "ran", outputs=outputs)
        self._state(ctx, step, StepState.VERIFYING)
        verified = step.verify(ctx) or {}
        ctx.outputs.setdefault(step.id, {}).update(verified)
        ctx.journal.step(step.id, "verified", outputs=verified)
        self._state(ctx, step, StepState.DONE)
