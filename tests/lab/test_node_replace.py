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
from dapper.actions.node_replace.runbook import NodeReplace
from dapper.backends.clients.gitrepo import parse_trailers
from dapper.backends.clients.kube import KubeBackend
from dapper.cli.main import main
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

from tests.lab.runbook_support import StopAfter, refused_by
from tests.waiting import eventually

TALCONFIG = "kubernetes/bootstrap/talos/talconfig.yaml"
TIMINGS = Timings(reconcile_interval=600.0, node_grace=0.5, boot=0.3, clone=0.2, task=0.1)


def _started(directory: Path) -> RunningLab:
    running = start_lab(directory=directory, timings=TIMINGS)
    assert running.flux is not None
    running.flux.reconcile_now(timeout=60)
    return running


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    """A lab of its own: the test kills a node and rebuilds it."""
    running = _started(tmp_path / "lab")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """One lab for the refusals and the dry run: each changes nothing (and undoes what it
    staged), which `refused` proves."""
    running = _started(tmp_path_factory.mktemp("node-replace") / "lab")
    try:
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


def pods_on(lab: RunningLab, node: str) -> list[dict]:
    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        return kube.pod_objects(node=node)
    finally:
        kube.close()


def settled(pod: dict) -> bool:
    """Not Terminating and Ready: run by the node's (new) kubelet."""
    conds = pod.get("status", {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds
    )


def dead(lab: RunningLab, fault: str, node: str) -> None:
    """Stage a dead node and wait until Kubernetes says so (after the grace period)."""
    lab.world.inject(fault)
    eventually(lambda: not node_ready(lab, node), timeout=20, message=f"{node} NotReady")


# -- end to end from the CLI ------------------------------------------------------------------


def test_worker_from_a_destroyed_vm(lab: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    dead(lab, "vm-destroyed:talos-node-large-2", "talos-node-large-2")
    assert vms_named(lab, "talos-node-large-2") == []

    rc = run_cli(lab, "node=talos-node-large-2", "mac=new")
    out = capsys.readouterr()
    assert rc == 0, out.err

    assert node_ready(lab, "talos-node-large-2")
    (vm,) = vms_named(lab, "talos-node-large-2")
    assert vm.status == "running" and vm.macs[0] != "bc:24:11:e0:17:19"
    assert (vm.cores, vm.memory_mib, vm.disk_gib) == (16, 128 * 1024, 128)  # role defaults
    assert all(v.startswith("mapping=") for v in vm.hostpci.values()) and vm.hostpci
    commits = run_commits(lab)
    assert len(commits) == 1
    trailers = parse_trailers(commits[0].message)
    assert trailers["Runbook-Run"] and trailers["Operator"]
    talconfig = (Path(lab.config.repo_path) / TALCONFIG).read_text()
    assert vm.macs[0].lower() in talconfig.lower()
    assert "bc:24:11:e0:17:19" not in talconfig
    assert pool_state(lab, "talos-node-large-2") == "Online"
    # the dead node's pods went with its Node (pod GC); what runs there now is the new one's
    pods = pods_on(lab, "talos-node-large-2")
    assert pods and all(settled(p) for p in pods), [
        p["metadata"]["name"] for p in pods if not settled(p)
    ]


def test_control_plane_from_a_failed_disk(
    lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    dead(lab, "disk-failed:talos-control-2", "talos-control-2")

    rc = run_cli(lab, "node=talos-control-2", "vmid=reuse", "old_vm=destroy", "mac=new")
    out = capsys.readouterr()
    assert rc == 0, out.err

    assert node_ready(lab, "talos-control-2")
    (vm,) = vms_named(lab, "talos-control-2")
    assert vm.vmid == 101 and vm.macs != ["bc:24:11:b6:57:d5"]
    assert etcd_names(lab) == ["talos-control-1", "talos-control-2", "talos-control-3"]
    with lab.world.lock:
        assert all(e.healthy for e in lab.world.etcd.values())
    (commit,) = run_commits(lab)
    assert vm.macs[0].lower() in (Path(lab.config.repo_path) / TALCONFIG).read_text()
    assert parse_trailers(commit.message)["Runbook-Run"]


def test_gpu_node_keeps_the_old_vm_and_gets_its_gpus_back(
    lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    dead(lab, "disk-failed:talos-node-gpu-1", "talos-node-gpu-1")

    rc = run_cli(lab, "node=talos-node-gpu-1", "mac=new", "old_vm=keep")
    out = capsys.readouterr()
    assert rc == 0, out.err

    (vm,) = vms_named(lab, "talos-node-gpu-1")
    (old,) = vms_named(lab, "talos-node-gpu-1-replaced")
    assert old.vmid == 103 and old.status == "stopped"
    mapped = sorted(v for v in vm.hostpci.values() if "p100" in v)
    assert len(mapped) == 4
    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        node = next(n for n in kube.nodes() if n.name == "talos-node-gpu-1")
    finally:
        kube.close()
    assert node.ready == "True" and node.gpu_allocatable == 16
    assert len(run_commits(lab)) == 1
    assert pool_state(lab, "talos-node-gpu-1") == "Online"


# -- crash and resume -------------------------------------------------------------------------


def vmids(lab: RunningLab) -> set[int]:
    with lab.world.lock:
        return set(lab.world.vms)


def test_a_run_stopped_after_each_step_resumes_to_the_same_end_without_repeats(
    lab: RunningLab,
) -> None:
    dead(lab, "vm-destroyed:talos-node-large-3", "talos-node-large-3")
    before = vmids(lab)
    runbook = NodeReplace()
    params = {"node": "talos-node-large-3", "mac": "new", "timeout": 60}
    stopper = StopAfter(1)
    engine = Engine(lab.config, emit=stopper, cancelled=stopper.stop)
    result = engine.run(runbook, params, yes=True)
    assert result.cancelled and not result.ok
    run_id = result.run_id
    steps = [s.step for s in result.preview.steps] if result.preview else []
    assert len(steps) > 10
    for n in range(2, len(steps) + 1):
        stopper = StopAfter(n)  # each resume re-checks the done steps, goes one further
        engine = Engine(lab.config, emit=stopper, cancelled=stopper.stop)
        result = engine.resume(run_id, runbook, yes=True)
        if result.ok:
            break
        assert result.cancelled, result.reason
    else:
        result = Engine(lab.config).resume(run_id, runbook, yes=True)
    assert result.ok, result.reason

    assert node_ready(lab, "talos-node-large-3")
    assert len(vms_named(lab, "talos-node-large-3")) == 1
    assert len(vmids(lab) - before) == 1  # one clone, never a second
    assert len(run_commits(lab)) == 1


# -- refusals: one line, nothing changed ----------------------------------------------------


def refused(lab: RunningLab, capsys: pytest.CaptureFixture[str], *params: str) -> str:
    """Run the runbook expecting a refusal; return its one line (nothing changed)."""
    return refused_by(lab, capsys, lambda: run_cli(lab, *params))


def test_a_node_not_in_the_tree_is_refused(
    shared_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(shared_lab, capsys, "node=talos-node-huge-9")
    assert "no node talos-node-huge-9 in talconfig.yaml" in line


def test_quorum_at_risk_is_refused(
    shared_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    shared_lab.world.inject("etcd-unhealthy:talos-control-1")
    try:
        line = refused(shared_lab, capsys, "node=talos-control-2")
    finally:
        shared_lab.world.clear("etcd-unhealthy:talos-control-1")
    assert "etcd quorum at risk: talos-control-1 unhealthy" in line


def test_a_missing_template_is_refused(
    shared_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    world = shared_lab.world
    with world.lock:
        templates = {k: v for k, v in world.vms.items() if v.template}
        for vmid in templates:
            del world.vms[vmid]
    try:
        line = refused(shared_lab, capsys, "node=talos-node-large-2")
    finally:
        with world.lock:
            world.vms.update(templates)
    assert "no Talos template on Proxmox" in line


def test_a_gpu_held_by_another_vm_is_refused(
    lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    dead(lab, "disk-failed:talos-node-gpu-1", "talos-node-gpu-1")
    thief = lab.world.vm_clone(103, 120, "gpu-thief")
    eventually(lambda: not thief.lock, timeout=10, message="the clone")
    with lab.world.lock:
        gpus = dict(lab.world.vm(103).hostpci)
        lab.world.vm_stop(103)
        lab.world.vm(120).hostpci.update(gpus)
    lab.world.vm_start(120)
    line = refused(lab, capsys, "node=talos-node-gpu-1")
    assert "is attached to running VM 120 (gpu-thief)" in line


def test_a_wrong_age_key_is_refused(
    shared_lab: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pyrage

    other = tmp_path / "other.agekey"
    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    config = shared_lab.files.config.read_text()
    shared_lab.files.config.write_text(config.replace(str(shared_lab.files.age_key), str(other)))
    try:
        line = refused(shared_lab, capsys, "node=talos-node-large-2")
    finally:
        shared_lab.files.config.write_text(config)
    assert "talsecret.sops.yaml" in line


def test_a_dry_run_shows_the_impact_and_changes_nothing(
    shared_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = shared_lab
    with lab.world.lock:
        before = (dict(lab.world.vms), len(lab.world.writes))
    rc = run_cli(lab, "node=talos-control-3", extra=("--dry-run",))
    out = capsys.readouterr().out
    assert rc == 0
    assert "talos-control-3: control plane at 10.100.0.52" in out
    assert "etcd (through talos-control-1):" in out and "(leader)" in out
    assert "qm clone 9000" in out and "talosctl apply-config --insecure" in out
    with lab.world.lock:
        assert (dict(lab.world.vms), len(lab.world.writes)) == before


def test_a_node_dead_for_less_than_the_grace_period_is_cordoned_not_drained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kubernetes still says Ready (the grace period has not run out) but the machine is
    gone: draining would leave every pod Terminating; the run cordons and goes on."""
    timings = Timings(reconcile_interval=600.0, node_grace=30.0, boot=0.3, clone=0.2, task=0.1)
    running = start_lab(directory=tmp_path / "lab", timings=timings)
    try:
        assert running.flux is not None
        running.flux.reconcile_now(timeout=60)
        running.world.inject("disk-failed:talos-node-large-1")
        assert node_ready(running, "talos-node-large-1")
        rc = run_cli(running, "node=talos-node-large-1", "mac=new")
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert "does not answer: cordoned, not drained" in out.out
        assert node_ready(running, "talos-node-large-1")
    finally:
        running.stop()


def test_read_only_previews_and_refuses_to_run(shared_lab: RunningLab) -> None:
    from dapper.backends.errors import ReadOnlyError

    engine = Engine(shared_lab.readonly_config)
    with shared_lab.world.lock:
        writes = len(shared_lab.world.writes)
    preview = engine.run(NodeReplace(), {"node": "talos-node-large-2"}, dry_run=True)
    assert preview.ok and preview.dry_run, preview.reason
    with pytest.raises(ReadOnlyError):
        engine.run(NodeReplace(), {"node": "talos-node-large-2"}, yes=True)
    with shared_lab.world.lock:
        assert len(shared_lab.world.writes) == writes
