"""KubeBackend against the lab API server: reads as snapshot models, writes, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dapper.backends.clients.kube import REQUESTED_AT, KubeBackend
from dapper.backends.clients.kube_drain import DrainBlocked
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.lab.kinds import by_kind
from dapper.lab.pki import Pki

from tests.lab.kube_lab import DRAIN_NODE, REVISION, WORKER, FakeFlux, Lab, pods_of, running_lab
from tests.lab.kube_lab import writes as kube_writes
from tests.waiting import eventually

KS = by_kind("kustomize.toolkit.fluxcd.io", "Kustomization")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("kube-backend")) as lab, FakeFlux(lab.world) as flux:
        lab.flux = flux  # type: ignore[attr-defined]
        yield lab


@pytest.fixture(scope="module")
def kube(lab: Lab) -> Iterator[KubeBackend]:
    k = KubeBackend.from_kubeconfig(lab.admin, timeout=5.0)
    k.poll_interval = 0.02
    k.evict_retry = 0.05
    yield k
    k.close()


def test_nodes_with_roles_capacity_gpus_and_pods(kube: KubeBackend) -> None:
    pods = kube.pods()
    nodes = {n.name: n for n in kube.nodes(pods)}
    assert len(nodes) == 7
    gpu = nodes["talos-node-gpu-1"]
    assert gpu.roles == ("gpu", "storage", "worker")
    assert gpu.internal_ip == "10.100.0.53"
    assert (gpu.gpu_capacity, gpu.gpu_allocatable) == (16, 16)
    assert gpu.cpu_capacity == 16.0 and gpu.mem_capacity == 128 * 1024**3
    assert gpu.ready == "True" and gpu.kubelet_version == "v1.33.4"
    cp = nodes["talos-control-1"]
    assert cp.is_control_plane
    assert "node-role.kubernetes.io/control-plane:NoSchedule" in cp.taints
    owners = {p.owner_kind for p in cp.pods}
    assert {"DaemonSet", "Node"} <= owners
    assert sum(len(n.pods) for n in nodes.values()) == len(pods)


def test_flux_objects_pools_pdbs(kube: KubeBackend) -> None:
    ks = {k.name: k for k in kube.kustomizations()}
    apps = ks["cluster-apps"]
    assert apps.ready == "True" and apps.applied_revision == REVISION
    assert apps.depends_on == ("flux-system/cluster-meta",)
    assert apps.source == "GitRepository/flux-system/flux-system"
    assert apps.path == "./kubernetes/apps"
    [repo] = kube.git_repositories()
    assert repo.revision == REVISION and repo.ref == "branch:main"
    [hr] = kube.helm_releases()
    assert (hr.name, hr.chart, hr.chart_version, hr.ready) == ("cilium", "cilium", "1.18.1", "True")
    assert kube.diskpool_version() == "v1beta3"
    pools = {p.name: p for p in kube.disk_pools()}
    assert pools[f"pool-{WORKER}"].node == WORKER
    assert pools[f"pool-{WORKER}"].state == "Online"
    assert pools[f"pool-{WORKER}"].api_version == "openebs.io/v1beta3"
    [pdb] = kube.pdbs("apps")
    assert pdb.name == "web" and pdb.min_available == "2"


def test_secrets_are_hashed_unless_revealed(kube: KubeBackend) -> None:
    [s] = [s for s in kube.secrets("flux-system") if s.name == "cluster-secrets"]
    assert s.keys == ("SECRET_DOMAIN",)
    assert s.values is None and "example.org" not in repr(s)
    assert kube.secret("flux-system", "cluster-secrets", reveal=True).values == {
        "SECRET_DOMAIN": b"example.org"
    }
    out = kube.patch_secret("flux-system", "cluster-secrets", {"NEW": "v"})
    assert out.keys == ("NEW", "SECRET_DOMAIN") and out.values is None


def test_events_include_cordon_and_notready(kube: KubeBackend, lab: Lab) -> None:
    kube.cordon("talos-control-2")
    lab.world.inject("node-notready:talos-control-2")
    lab.world.clear("node-notready:talos-control-2")
    kube.uncordon("talos-control-2")
    wanted = {"NodeNotSchedulable", "NodeNotReady", "NodeReady", "NodeSchedulable"}

    def reasons() -> set[str]:
        return {e.reason for e in kube.events() if e.object == "Node/talos-control-2"}

    # The lab's node controller emits these a moment after each change: wait for all four.
    eventually(lambda: wanted <= reasons(), timeout=5, message=lambda: f"{wanted}, got {reasons()}")


def test_drain_moves_pods_and_skips_daemonsets(kube: KubeBackend, lab: Lab) -> None:
    before = {p.name for p in kube.pods(DRAIN_NODE)}
    lines: list[str] = []
    report = kube.drain(DRAIN_NODE, time.monotonic() + 10, lines.append)
    try:
        assert report.complete
        assert set(report.evicted) == {"apps/api-5c6b-ccccc", "apps/db-0"}
        left = kube.pods(DRAIN_NODE)
        assert left and all(p.owner_kind == "DaemonSet" for p in left)
        assert {p.name for p in left} == {n for n in before if not n.startswith(("api", "db"))}
        [db] = pods_of(lab.world, "apps", "db-0")
        assert db["spec"]["nodeName"] not in ("", DRAIN_NODE)
        assert any("evicted apps/db-0" in line for line in lines)
        assert {p.name for p in kube.pods()} >= {"db-0"}
        assert next(n for n in kube.nodes() if n.name == DRAIN_NODE).unschedulable
    finally:
        kube.uncordon(DRAIN_NODE)


def test_drain_blocked_by_pdb_names_it(kube: KubeBackend, lab: Lab) -> None:
    with pytest.raises(DrainBlocked) as err:
        kube.drain(WORKER, time.monotonic() + 0.3, None)
    kube.uncordon(WORKER)
    assert err.value.report.blocked == (("apps/web-7d9f8-aaaaa", "apps/web"),)
    assert "apps/web" in err.value.reason
    assert [p.name for p in kube.pods(WORKER) if p.name.startswith("web-")] == ["web-7d9f8-aaaaa"]


def test_reconcile_annotates_and_waits(kube: KubeBackend, lab: Lab) -> None:
    stamp = kube.reconcile("flux-system", "cluster-apps", with_source=True)
    obj = lab.world.store.get(KS, "flux-system", "cluster-apps")
    assert obj["metadata"]["annotations"][REQUESTED_AT] == stamp
    repo = lab.world.store.get(
        by_kind("source.toolkit.fluxcd.io", "GitRepository"), "flux-system", "flux-system"
    )
    assert repo["metadata"]["annotations"][REQUESTED_AT] == stamp
    assert kube.wait_reconciled("flux-system", "cluster-apps", stamp, timeout=5) == REVISION


def test_reconcile_failure_is_reported(kube: KubeBackend, lab: Lab) -> None:
    lab.flux.failing.add("cluster-meta")  # type: ignore[attr-defined]
    try:
        stamp = kube.reconcile("flux-system", "cluster-meta")
        with pytest.raises(BackendError) as err:
            kube.wait_reconciled("flux-system", "cluster-meta", stamp, timeout=5)
    finally:
        lab.flux.failing.clear()  # type: ignore[attr-defined]
    assert err.value.code == "FAILED" and "BuildFailed" in err.value.reason


def test_suspend_resume_and_reconcile_refused_while_suspended(kube: KubeBackend) -> None:
    kube.suspend("flux-system", "cluster-meta")
    assert kube.kustomization("flux-system", "cluster-meta").suspended
    with pytest.raises(BackendError) as err:
        kube.reconcile("flux-system", "cluster-meta")
    assert err.value.code == "SUSPENDED"
    kube.resume("flux-system", "cluster-meta")
    assert not kube.kustomization("flux-system", "cluster-meta").suspended


def test_rollout_restart_stamps_the_template(kube: KubeBackend, lab: Lab) -> None:
    stamp = kube.rollout_restart("Deployment", "apps", "web")
    dep = lab.world.store.get(by_kind("apps", "Deployment"), "apps", "web")
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == stamp
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/name": "web"}
    info = kube.workload("Deployment", "apps", "web")
    assert (info.kind, info.namespace, info.name) == ("Deployment", "apps", "web")
    assert info.restarted_at == stamp and info.desired == 2 and not info.reloads


def test_workload_reads_reloader_annotations_and_absence(kube: KubeBackend, lab: Lab) -> None:
    lab.world.store.mutate(
        by_kind("apps", "Deployment"),
        "apps",
        "web",
        lambda d: (
            d["metadata"]
            .setdefault("annotations", {})
            .update({"secret.reloader.stakater.com/reload": "web-secret", "other/x": "y"})
        ),
    )
    info = kube.workload("Deployment", "apps", "web")
    assert info.reloader == (("secret.reloader.stakater.com/reload", "web-secret"),)
    assert info.reloads and info.resource_version
    with pytest.raises(BackendError) as err:
        kube.workload("StatefulSet", "apps", "nope")
    assert err.value.code == "NOT_FOUND"
    with pytest.raises(BackendError) as err:
        kube.workload("Pod", "apps", "web")
    assert err.value.code == "INVALID"


def test_read_only_backend_refuses_writes_without_io(lab: Lab) -> None:
    ro = KubeBackend.from_kubeconfig(lab.admin, read_only=True)
    before = len(kube_writes(lab.world))
    lab.world.inject("api-down:kubernetes")  # any network I/O would fail differently
    try:
        calls = [
            lambda: ro.cordon(WORKER),
            lambda: ro.uncordon(WORKER),
            lambda: ro.drain(WORKER, time.monotonic() + 1),
            lambda: ro.evict("apps", "db-0"),
            lambda: ro.reconcile("flux-system", "cluster-apps"),
            lambda: ro.suspend("flux-system", "cluster-apps"),
            lambda: ro.resume("flux-system", "cluster-apps"),
            lambda: ro.rollout_restart("Deployment", "apps", "web"),
            lambda: ro.patch_secret("flux-system", "cluster-secrets", {"k": "v"}),
        ]
        for call in calls:
            with pytest.raises(ReadOnlyError):
                call()
    finally:
        lab.world.clear("api-down:kubernetes")
        ro.close()
    assert len(kube_writes(lab.world)) == before


def test_readonly_token_writes_are_forbidden(lab: Lab) -> None:
    k = KubeBackend.from_kubeconfig(lab.readonly)
    try:
        assert len(k.nodes()) == 7
        with pytest.raises(BackendError) as err:
            k.cordon(WORKER)
        with pytest.raises(BackendError) as secrets:
            k.secrets()
    finally:
        k.close()
    assert err.value.code == "FORBIDDEN"
    assert err.value.reason.startswith('forbidden: nodes "talos-node-large-1" is forbidden')
    assert secrets.value.code == "FORBIDDEN"


def test_api_down_is_connection_refused_then_recovers(kube: KubeBackend, lab: Lab) -> None:
    assert kube.nodes()
    lab.world.inject("api-down:kubernetes")
    try:
        with pytest.raises(BackendError) as err:
            kube.nodes()
    finally:
        lab.world.clear("api-down:kubernetes")
    assert err.value.code == "REFUSED"
    assert err.value.reason.startswith("connection refused")
    assert len(kube.nodes()) == 7


def test_wrong_ca_is_a_tls_verify_failure(lab: Lab) -> None:
    other = Pki().https_ca.cert_pem
    k = KubeBackend.from_kubeconfig(
        lab.kubeconfig("wrong-ca.kubeconfig", lab.creds.kube_admin_token, other)
    )
    try:
        with pytest.raises(BackendError) as err:
            k.nodes()
    finally:
        k.close()
    assert err.value.code == "TLS"
    assert err.value.reason.startswith("TLS verify failed")


def test_bad_token_and_bad_kubeconfig(lab: Lab) -> None:
    k = KubeBackend.from_kubeconfig(lab.kubeconfig("bad.kubeconfig", "nope"))
    try:
        with pytest.raises(BackendError) as err:
            k.nodes()
    finally:
        k.close()
    assert err.value.reason == "token rejected (401 Unauthorized)"
    with pytest.raises(BackendError) as cfg:
        KubeBackend.from_kubeconfig(lab.tmp / "missing.kubeconfig")
    assert cfg.value.code == "CONFIG"


def test_slow_api_is_a_timeout(lab: Lab) -> None:
    k = KubeBackend.from_kubeconfig(lab.admin, timeout=0.2)
    lab.world.inject("api-slow:kubernetes:1")
    try:
        with pytest.raises(BackendError) as err:
            k.nodes()
    finally:
        lab.world.clear("api-slow:kubernetes:1")
        k.close()
    assert err.value.code == "TIMEOUT"
