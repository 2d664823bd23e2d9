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

TIMINGS = Timings(reconcile_interval=600.0, boot=0.2, clone=0.1, task=0.05)


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
    """One line on stderr, a non-zero exit, and no write anywhere."""
    assert lab.remote is not None
    with lab.world.lock:
        before = (dict(lab.world.vms), len(lab.world.writes), len(lab.world.etcd))
    head = lab.remote.repository().references["refs/heads/main"].target
    assert run_cli(config or lab.files.config, "--yes") != 0
    err = capsys.readouterr().err.strip().splitlines()
    with lab.world.lock:
        after = (dict(lab.world.vms), len(lab.world.writes), len(lab.world.etcd))
    assert after == before
    assert lab.remote.repository().references["refs/heads/main"].target == head
    assert len(err) == 1, err
    return err[0]


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
