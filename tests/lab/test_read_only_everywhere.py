"""Read-only holds below the UI: every writer of every backend, the operations facade and
the runbook engine refuse before any network I/O, and the lab records no write.

All APIs are taken down first, so a writer that reached the network would fail with a
connection error instead of ReadOnlyError: the test could not pass by accident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.gitrepo import GitRepo
from dapper.backends.errors import ReadOnlyError
from dapper.backends.operations import Operations
from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import RunningLab, start_lab

APIS = ("kubernetes", "proxmox", "talos")


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab(flux=False)
    for api in APIS:
        running.world.inject(f"api-down:{api}")
    yield running
    running.stop()


def test_kubernetes_writers(lab: RunningLab) -> None:
    kube = Collector(lab.readonly_config).kube()
    calls = [
        lambda: kube.cordon("talos-node-large-1"),
        lambda: kube.uncordon("talos-node-large-1"),
        lambda: kube.drain("talos-node-large-1", deadline=time.monotonic() + 1),
        lambda: kube.evict("kube-system", "cilium-x"),
        lambda: kube.reconcile("flux-system", "cluster-apps", with_source=True),
        lambda: kube.suspend("flux-system", "cluster-apps"),
        lambda: kube.resume("flux-system", "cluster-apps"),
        lambda: kube.rollout_restart("Deployment", "media", "plex"),
        lambda: kube.patch_secret("network", "cloudflared-secret", {"TUNNEL_ID": "x"}),
    ]
    for call in calls:
        with pytest.raises(ReadOnlyError):
            call()


def test_proxmox_writers(lab: RunningLab) -> None:
    pve = Collector(lab.readonly_config).proxmox()
    calls = [
        lambda: pve.start(104),
        lambda: pve.stop(104),
        lambda: pve.shutdown(104),
        lambda: pve.reboot(104),
        lambda: pve.clone(104, 900, "x"),
        lambda: pve.destroy(104),
        lambda: pve.set_config(104, {"cores": 2}),
    ]
    for call in calls:
        with pytest.raises(ReadOnlyError):
            call()


def test_talos_writers(lab: RunningLab) -> None:
    talos = Collector(lab.readonly_config).talos()
    node = "10.100.0.54"
    calls = [
        lambda: talos.apply_configuration(node, b"machine: {}"),
        lambda: talos.bootstrap(node),
        lambda: talos.reset(node),
        lambda: talos.reboot(node),
        lambda: talos.shutdown(node),
        lambda: talos.etcd_remove_member("10.100.0.50", 1),
        lambda: talos.etcd_leave_cluster("10.100.0.50"),
        lambda: talos.service_restart(node, "kubelet"),
        lambda: talos.kubeconfig("10.100.0.50"),
    ]

    async def go() -> None:
        for call in calls:
            with pytest.raises(ReadOnlyError):
                await call()

    asyncio.run(go())


def test_git_writers(tmp_path: Path) -> None:
    import pygit2

    repo = pygit2.init_repository(str(tmp_path / "r"))
    (tmp_path / "r" / "kubernetes").mkdir()
    (tmp_path / "r" / "kubernetes" / "a.yaml").write_text("a: 1\n")
    git = GitRepo.open(repo.workdir, read_only=True)
    for call in (
        lambda: git.commit(["kubernetes/a.yaml"], "x"),
        lambda: git.push(),
        lambda: git.fetch_and_fast_forward(),
        lambda: git.replay_onto_remote("origin", "main", "0" * 40),
    ):
        with pytest.raises(ReadOnlyError):
            call()
    assert repo.head_is_unborn


# -- the raw paths below the public writers: nothing calls them so today, and the guard
# must not depend on that --------------------------------------------------------------


def test_raw_kubernetes_requests(lab: RunningLab) -> None:
    kube = Collector(lab.readonly_config).kube()
    patch = {"spec": {"suspend": True}}
    with pytest.raises(ReadOnlyError):
        kube._patch_custom("Kustomization", "flux-system", "cluster-apps", patch, "suspend")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(ReadOnlyError, match=method):
            kube._api.call_api(method, f"{kube.server}/api/v1/nodes/talos-node-large-1")


def test_raw_proxmox_calls(lab: RunningLab) -> None:
    pve = Collector(lab.readonly_config).proxmox()
    for method in ("post", "put", "delete", "create", "set"):
        with pytest.raises(ReadOnlyError):
            pve.call(method, "/nodes/pve/qemu/104/config", cores=1)


def test_raw_talos_rpcs(lab: RunningLab) -> None:
    from google.protobuf import empty_pb2

    talos = Collector(lab.readonly_config).talos()

    async def go() -> None:
        for method in ("ServiceRestart", "Reboot", "Reset", "Bootstrap", "EtcdLeaveCluster"):
            with pytest.raises(ReadOnlyError, match=method):
                await talos._unary("10.100.0.54", "machine", method, empty_pb2.Empty())
        with pytest.raises(ReadOnlyError, match="Kubeconfig"):
            [c async for c in talos._stream("10.100.0.50", "Kubeconfig", empty_pb2.Empty())]

    asyncio.run(go())


def test_no_operations_facade_and_no_runbook_run(lab: RunningLab) -> None:
    assert Collector(lab.readonly_config).operations is None
    with pytest.raises(ReadOnlyError):
        Operations(Collector(lab.readonly_config))
    from dapper.actions.engine import Engine
    from dapper.actions.registry import get

    engine = Engine(lab.readonly_config)
    with pytest.raises(ReadOnlyError):
        engine.run(get("secret-rotate"), {"file": "x", "keys": "y"}, yes=True)
    with pytest.raises(ReadOnlyError):
        engine.run(get("node-replace"), {"node": "talos-node-large-2"}, yes=True)


def test_the_lab_recorded_no_write(lab: RunningLab) -> None:
    assert lab.world.writes == []
