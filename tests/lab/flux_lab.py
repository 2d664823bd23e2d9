"""A running lab whose Flux twin has settled and reconciles only when asked (no tests here):
the tests that change live Flux inputs and watch what the next reconcile does."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings


@contextlib.contextmanager
def settled_flux_lab(factory: pytest.TempPathFactory, name: str) -> Iterator[RunningLab]:
    running = start_lab(
        directory=factory.mktemp(name) / "lab",
        timings=Timings(reconcile_interval=600.0, reconcile_delay=0.05),
    )
    try:
        assert running.flux is not None
        assert running.flux.settle(timeout=90), running.flux.unsettled()
        yield running
    finally:
        running.stop()


KUBECTL = shutil.which("kubectl") or ""


def kubectl(lab: RunningLab, *args: str) -> str:
    """kubectl against the lab with its admin kubeconfig and an empty HOME."""
    home = lab.dir / "home"
    home.mkdir(exist_ok=True)
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(lab.config.kubeconfig), "--request-timeout=20s", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
