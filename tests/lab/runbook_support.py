"""Shared by the runbook tests on the lab: stopping a run at its safe points (resume
tests) and proving a refusal changed nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dapper.actions.events import Event, Kind, StepState
from dapper.lab.runtime import RunningLab


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


def refused_by(lab: RunningLab, capsys: pytest.CaptureFixture[str], run: Callable[[], int]) -> str:
    """`run` (a CLI call) must fail with one line on stderr and change nothing: no VM,
    Talos, Proxmox or Kubernetes write, no etcd change, no commit on the remote."""
    assert lab.remote is not None
    with lab.world.lock:
        before = (dict(lab.world.vms), len(lab.world.writes), len(lab.world.etcd))
    head = lab.remote.repository().references["refs/heads/main"].target
    assert run() != 0
    err = capsys.readouterr().err.strip().splitlines()
    with lab.world.lock:
        after = (dict(lab.world.vms), len(lab.world.writes), len(lab.world.etcd))
    assert after == before
    assert lab.remote.repository().references["refs/heads/main"].target == head
    assert len(err) == 1, err
    return err[0]
