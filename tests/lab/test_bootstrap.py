"""bootstrap on the lab: refusals against a cluster that exists (the running lab), and the
whole way from `lab --stage bare` to a Flux-reconciled cluster.

Every call goes through the real clients: Proxmox over HTTPS, Talos over gRPC (maintenance
apply, Bootstrap, Kubeconfig), Kubernetes (server-side apply) and helmfile as a process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.cli.main import main
from dapper.lab.kinds import by_kind
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

from tests.lab.runbook_support import refused_by

TIMINGS = Timings(reconcile_interval=600.0, boot=0.05, clone=0.05, task=0.02, install=0.05)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The default lab: a cluster that exists."""
    lab = start_lab(directory=tmp_path_factory.mktemp("bootstrap-running") / "lab", timings=TIMINGS)
    try:
        yield lab
    finally:
        lab.stop()


def run_cli(config: Path, *extra: str) -> int:
    return main(
        ["--config", str(config), "runbook", "run", "bootstrap", "--param", "timeout=60", *extra]
    )


def refused(lab: RunningLab, capsys: pytest.CaptureFixture[str], config: Path | None = None) -> str:
    """Run bootstrap expecting a refusal; return its one line (nothing changed)."""
    return refused_by(lab, capsys, lambda: run_cli(config or lab.files.config, "--yes"))


def test_a_cluster_that_exists_is_refused(
    running: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(running, capsys)
    assert "the cluster already exists" in line
    assert f"the API server in {running.files.kubeconfig} answers" in line


def test_an_age_key_that_is_no_recipient_is_refused(
    running: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pyrage

    other = tmp_path / "other.agekey"
    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    config = tmp_path / "config.toml"
    text = running.files.config.read_text()
    config.write_text(text.replace(str(running.files.age_key), str(other)))
    line = refused(running, capsys, config)
    assert "is not a recipient of kubernetes/bootstrap/talos/talsecret.sops.yaml" in line


def test_server_side_apply_of_namespaces_secrets_and_configmaps(running: RunningLab) -> None:
    from dapper.backends.clients.kube import KubeBackend
    from dapper.backends.errors import ReadOnlyError

    kube = KubeBackend.from_kubeconfig(running.config.kubeconfig, context="lab-admin")
    ro = KubeBackend.from_kubeconfig(running.config.kubeconfig, context="lab-admin", read_only=True)
    try:
        kube.apply_core({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bs-test"}})
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s1", "namespace": "bs-test"},
            "stringData": {"k": "v"},
        }
        kube.apply_core(secret)
        kube.apply_core(secret)  # a second apply changes nothing and does not conflict
        cm = {"kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "bs-test"}, "data": {}}
        kube.apply_core({"apiVersion": "v1", **cm})
        assert "bs-test" in kube.core_names("Namespace")
        assert "s1" in kube.core_names("Secret", "bs-test")
        assert "c1" in kube.core_names("ConfigMap", "bs-test")
        managed = running.world.store.find(by_kind("", "Secret"), "bs-test", "s1")["metadata"][
            "managedFields"
        ]
        assert [m["manager"] for m in managed] == ["dapper-tui"]
        with pytest.raises(ReadOnlyError):
            ro.apply_core({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        assert "x" not in kube.core_names("Namespace")
    finally:
        kube.close()
        ro.close()


def test_etcd_is_found_through_any_control_plane_so_bootstrap_is_never_called_again(
    running: RunningLab,
) -> None:
    """talos-control-1 left etcd (its data wiped): asking it alone finds no etcd, and a
    Bootstrap there would start a second cluster. The step asks every control plane."""
    from dapper.actions.bootstrap.runbook import Bootstrap
    from dapper.actions.bootstrap.talos import EtcdBootstrapStep, use_generated_talosconfig
    from dapper.actions.engine import Engine

    running.world.talos.etcd_leave("talos-control-1")
    ctx = Engine(running.config)._context(Bootstrap(), "etcd-check", {"timeout": 5})
    try:
        use_generated_talosconfig(ctx)
        found = EtcdBootstrapStep().check(ctx)
    finally:
        ctx.close()
    assert found.done and found.reason == "etcd has 2 member(s)"
    with running.world.lock:
        assert not [w for w in running.world.writes if w.op.startswith("Bootstrap")]


# -- from a bare host -------------------------------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[RunningLab]:
    """A bare Proxmox host of its own: the test builds a cluster on it."""
    lab = start_lab(directory=tmp_path / "lab", timings=TIMINGS, stage="bare")
    try:
        yield lab
    finally:
        lab.stop()


def bootstraps(lab: RunningLab) -> list[str]:
    with lab.world.lock:
        return [w.op for w in lab.world.writes if w.op.startswith("Bootstrap")]


def vm_creations(lab: RunningLab) -> list[str]:
    """Proxmox writes that create a VM (a clone or a create), one per VM if none repeats."""
    with lab.world.lock:
        return [
            w.op
            for w in lab.world.writes
            if w.op.startswith("POST") and w.op.rstrip("/").endswith(("/clone", "/qemu"))
        ]


def assert_end_state(lab: RunningLab) -> None:
    """7 Ready nodes, three healthy etcd voters, 16 GPU slots, 4 pools Online, every
    Kustomization Ready: the running lab's picture, read through the project's clients."""
    from dapper.backends.clients.kube import KubeBackend

    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        nodes = kube.nodes()
        assert sorted(n.name for n in nodes if n.ready == "True") == sorted(
            s.hostname for s in lab.world.specs
        )
        assert sum(n.gpu_allocatable for n in nodes) == 16
        assert [p.state for p in kube.disk_pools()] == ["Online"] * 4
        kss = kube.kustomizations()
        assert len(kss) > 40 and all(k.ready == "True" for k in kss), [
            k.key for k in kss if k.ready != "True"
        ]
    finally:
        kube.close()
    with lab.world.lock:
        voters = [e for e in lab.world.etcd.values() if not e.is_learner and e.healthy]
    assert len(voters) == 3


def test_bootstrap_from_a_bare_host(bare: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import stat

    from dapper.lab.helmfile_shim import read_log

    assert run_cli(bare.files.config, "--yes") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Kustomizations 4" in out and "pools 4/4 Online" in out  # the final picture
    assert_end_state(bare)
    assert len(bootstraps(bare)) == 1
    assert len(vm_creations(bare)) == 7
    for path in (bare.config.kubeconfig, bare.config.talosconfig):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    calls = [entry["argv"][1:] for entry in read_log(bare.files.dir)]
    assert calls == [
        [
            "--file",
            "kubernetes/bootstrap/apps/helmfile.yaml",
            "apply",
            "--skip-diff-on-install",
            "--suppress-diff",
        ],
        [
            "--file",
            "kubernetes/bootstrap/apps/helmfile.yaml",
            "destroy",
            "--selector",
            "name=prometheus-operator-crds",
        ],
    ]
    assert all(entry["env"] == ["KUBECONFIG"] for entry in read_log(bare.files.dir))

    # a second run on the finished cluster finds every step done and changes nothing
    with bare.world.lock:
        writes = len(bare.world.writes)
    assert run_cli(bare.files.config, "--yes") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "] running" not in out and out.count("] skipped") == 14, out
    with bare.world.lock:
        assert len(bare.world.writes) == writes
    assert len(read_log(bare.files.dir)) == 2


def test_a_run_stopped_after_each_step_resumes_to_the_same_end(bare: RunningLab) -> None:
    from dapper.actions.bootstrap.runbook import Bootstrap
    from dapper.actions.engine import Engine

    from tests.lab.runbook_support import StopAfter

    runbook = Bootstrap()
    stopper = StopAfter(1)
    result = Engine(bare.config, emit=stopper, cancelled=stopper.stop).run(
        runbook, {"timeout": 60}, yes=True
    )
    assert result.cancelled and not result.ok, result.reason
    steps = [s.step for s in result.preview.steps] if result.preview else []
    assert len(steps) > 10
    for n in range(2, len(steps) + 1):
        stopper = StopAfter(n)  # each resume re-checks the done steps, goes one further
        engine = Engine(bare.config, emit=stopper, cancelled=stopper.stop)
        result = engine.resume(result.run_id, runbook, yes=True)
        if result.ok:
            break
        assert result.cancelled, result.reason
    else:
        result = Engine(bare.config).resume(result.run_id, runbook, yes=True)
    assert result.ok, result.reason
    assert_end_state(bare)
    assert len(bootstraps(bare)) == 1, "Bootstrap is never called twice"
    assert len(vm_creations(bare)) == 7, "no VM is created twice"


@pytest.fixture(scope="module")
def bare_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """One bare host for the refusals: each changes nothing, which `refused` proves."""
    lab = start_lab(
        directory=tmp_path_factory.mktemp("bootstrap-bare") / "lab", timings=TIMINGS, stage="bare"
    )
    try:
        yield lab
    finally:
        lab.stop()


def _foreign_vm(lab: RunningLab, vmid: int, name: str, mac: str = "") -> None:
    """A VM that is not the plan's, made on the host as an operator would (through PVE)."""
    from dapper.backends.clients.proxmox import ProxmoxBackend

    pve = ProxmoxBackend.from_config(lab.config)
    try:
        params = {"vmid": vmid, "name": name, "memory": 512, "cores": 1}
        if mac:
            params["net0"] = f"virtio={mac},bridge=vmbr0"
        pve.call("post", f"nodes/{pve.default_node()}/qemu", **params)
    finally:
        pve.close()
    from tests.waiting import eventually

    eventually(lambda: vmid in lab.world.vms and not lab.world.vms[vmid].lock, timeout=10)


def _remove_vm(lab: RunningLab, vmid: int) -> None:
    with lab.world.lock:
        lab.world.vms.pop(vmid, None)


def test_a_planned_vmid_taken_by_another_vm_is_refused(
    bare_shared: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    _foreign_vm(bare_shared, 101, "pihole")
    try:
        line = refused(bare_shared, capsys)
    finally:
        _remove_vm(bare_shared, 101)
    assert "VMID 101 is taken by VM 'pihole' on the host (vms.yaml plans talos-control-2" in line


def test_a_planned_mac_taken_by_another_vm_is_refused(
    bare_shared: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    _foreign_vm(bare_shared, 150, "old-gpu-box", mac="BC:24:11:D3:FF:C2")
    try:
        line = refused(bare_shared, capsys)
    finally:
        _remove_vm(bare_shared, 150)
    assert "MAC bc:24:11:d3:ff:c2 is taken by VM 150 (old-gpu-box)" in line
    assert "talos-node-gpu-1" in line


def test_helmfile_missing_on_a_real_cluster_is_refused(
    bare_shared: RunningLab,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config.toml"
    text = bare_shared.files.config.read_text()
    config.write_text(text.replace(f'helmfile = "{bare_shared.files.helmfile}"', 'helmfile = ""'))
    monkeypatch.setenv("PATH", str(tmp_path))  # no helmfile, no helm
    line = refused(bare_shared, capsys, config)
    assert line.endswith(
        "helmfile is not on PATH: install helmfile 1.1.7 and helm 3.18.5 (mise install), "
        "or set helmfile = <path> in the configuration"
    )


def test_a_dry_run_on_a_bare_host_shows_every_step_and_changes_nothing(
    bare_shared: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    with bare_shared.world.lock:
        writes = len(bare_shared.world.writes)
    assert run_cli(bare_shared.files.config, "--dry-run") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for expected in (
        "qm clone 9000 103 --name talos-node-gpu-1 --full",
        "--hostpci0 mapping=p100-0,pcie=1",
        "talosctl bootstrap -n 10.100.0.50 (talos-control-1), after etcd is checked",
        "helmfile.yaml apply --skip-diff-on-install --suppress-diff",
        "dry run: nothing changed",
    ):
        assert expected in out, expected
    with bare_shared.world.lock:
        assert len(bare_shared.world.writes) == writes
    assert not Path(bare_shared.config.kubeconfig).exists()
