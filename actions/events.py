"""What the engine tells a front end: step states, progress lines, the preview, prompts.

The CLI prints these and the console renders them; both get the same `Event`s through one
callback, so neither needs to know how a runbook works. Events never carry secret values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepState(StrEnum):
    PENDING = "pending"
    CHECKING = "checking"
    SKIPPED = "skipped"  # `check` found it already done
    RUNNING = "running"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


class Kind(StrEnum):
    RUN = "run"  # a run started or resumed: data = {run_id, runbook, resumed}
    STEP = "step"  # a step changed state: step, state, message
    PROGRESS = "progress"  # one progress line of a step (waits print these)
    PREVIEW = "preview"  # data = {"preview": Preview}
    FINISHED = "finished"  # data = {"ok": bool, "reason": str}


@dataclass(frozen=True)
class Event:
    kind: Kind
    run_id: str = ""
    step: str = ""
    state: StepState | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class PromptRequest:
    """A question to the operator. `secret` answers are masked and asked twice."""

    question: str
    secret: bool = False
    confirm_twice: bool = False


Prompt = Callable[[PromptRequest], str]
Confirm = Callable[[Any], bool]  # gets the Preview; True means go ahead
