"""Stopping a runbook run at its safe points, for the resume tests."""

from __future__ import annotations

from dapper.actions.events import Event, Kind, StepState


class StopAfter:
    """Asks the engine to stop once `n` steps have finished (done or skipped)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.finished: list[str] = []

    def __call__(self, event: Event) -> None:
        if event.kind == Kind.STEP and event.state in (StepState.DONE, StepState.SKIPPED):
            self.finished.append(event.step)

    def stop(self) -> bool:
        return len(self.finished) >= self.n
