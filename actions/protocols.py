"""The runbook engine as front ends see it: a typed Protocol, so the console and a future
SSH front door depend on its shape (run, resume) rather than on the Engine class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from dapper.actions.events import Confirm, EventSink, Prompt
from dapper.backends.config import Config

if TYPE_CHECKING:
    from dapper.actions.engine import Engine, Runbook, RunResult


class RunbookRunner(Protocol):
    def run(
        self,
        runbook: Runbook,
        given: dict[str, Any],
        *,
        confirm: Confirm | None = None,
        yes: bool = False,
        dry_run: bool = False,
    ) -> RunResult: ...

    def resume(
        self,
        run_id: str,
        runbook: Runbook,
        *,
        confirm: Confirm | None = None,
        yes: bool = False,
    ) -> RunResult: ...


def runner_for(
    config: Config,
    *,
    emit: EventSink | None = None,
    prompt: Prompt | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RunbookRunner:
    """The runner for `config`: the engine, journaling to the operator's state dir."""
    from dapper.actions.engine import Engine

    return Engine(config, emit=emit, prompt=prompt, cancelled=cancelled)


if TYPE_CHECKING:

    def _engine_is_a_runner(engine: Engine) -> RunbookRunner:
        return engine  # mypy proves Engine satisfies RunbookRunner
