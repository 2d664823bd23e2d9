"""node-replace end to end on the lab: a dead node's VM back to a Ready node, through Git.

Every run goes through the real clients: Proxmox over HTTPS (clone the template, mapped
passthrough), Talos over gRPC (maintenance-mode apply at the guest agent's address, etcd),
Kubernetes (drain, delete, Ready) and Git (the lab's bare remote). Side effects are
counted where the lab sees them: PVE tasks, etcd membership, commits on the remote.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from dapper.actions.engine import Engine
from dapper.actions.events import Event, Kind, StepState
from dapper.actions.node_replace.runbook import NodeReplace
from dapper.backends.clients.gitrepo import parse_trailers
from dapper.backends.clients.kube import KubeBackend
from dapper.cli.main import main
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

from tests.waiting import eventually

TALCONFIG = "kubernetes/bootstrap/talos/talconfig.yaml"
TIMINGS = Timings(reconcile_interval=600.0, node_grace=0.5, boot=0.3, clone=0.2, task=0.1)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    running = start_lab(directory=tmp_path / "lab", timings=TIMINGS)
    try:
        assert running.flux is not None
        running.flux.reconcile_now(timeout=60)
        yield running
    finally:
        running.stop()


def run_cli(lab: RunningLab, *params: str, extra: tuple[str, ...] = ("--yes",)) -> int:
    args = ["--config", str(lab.files.config), "runbook", "run", "node-replace"]
    for p in ("timeout=60", *params):
        args += ["--param", p]
    return main([*args, *extra])


def node_ready(lab: RunningLab, name: str) -> bool:
    with lab.world.lock:
        return lab.world.kube.node_exists(name) and lab.world.node_ready(name)


def run_commits(lab: RunningLab) -> list[pygit2.Commit]:
    assert lab.remote is not None
    repo = lab.remote.repository()
    tip = repo.references["refs/heads/main"].target
    return [c for c in repo.walk(tip) if "runbook(node-replace)" in c.message]


def vms_named(lab: RunningLab, name: str) -> list:
    with lab.world.lock:
        return [v for v in lab.world.vms.values() if v.name == name]


def etcd_names(lab: RunningLab) -> list[str]:
    with lab.world.lock:
        return sorted(e.hostname for e in lab.world.etcd.values() if not e.is_learner)


def pool_state(lab: RunningLab, name: str) -> str:
    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        return next((p.state for p in kube.disk_pools() if p.name == name), "")
    finally:
        kube.close()


def dead(lab: RunningLab, fault: str, node: str) -> None:
    """Stage a dead node and wait until Kubernetes says so (after the grace period)."""
    lab.world.inject(fault)
    eventually(lambda: not node_ready(lab, node), timeout=20, what=f"{node} NotReady")


# -- end to end from the CLI ------------------------------------------------------------------


def test_worker_from_a_destroyed_vm(lab: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    dead(lab, "vm-destroyed:talos-node-large-2", "talos-node-large-2")
    assert vms_named(lab, "talos-node-large-2") == []

    rc = run_cli(lab, "node=talos-node-large-2", "mac=new")
    out = capsys.readouterr()
    assert rc == 0, out.err

    assert node_ready(lab, "talos-node-large-2")
    (vm,) = vms_named(lab, "talos-node-large-2")
    assert vm.vmid != 105 and vm.status == "running"
    assert all(v.startswith("mapping=") for v in vm.hostpci.values()) and vm.hostpci
    commits = run_commits(lab)
    assert len(commits) == 1
    trailers = parse_trailers(commits[0].message)
    assert trailers["Runbook-Run"] and trailers["Operator"]
    talconfig = (Path(lab.config.repo_path) / TALCONFIG).read_text()
    assert vm.macs[0].lower() in talconfig.lower()
    assert "bc:24:11:e0:17:19" not in talconfig
    assert pool_state(lab, "talos-node-large-2") == "Online"
