"""The collector against the lab over real sockets: joins, each fault, read-only."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.errors import ReadOnlyError
from dapper.backends.model import ClusterSnapshot, Health
from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab(repo=REPO, timings=Timings(boot=0.05, task=0.05, reconcile_interval=30))
    try:
        assert running.flux.settle(timeout=90), running.flux.unsettled()
        yield running
    finally:
        running.stop()


def snap(config, *, timeout: float = 3.0) -> ClusterSnapshot:
    async def go() -> ClusterSnapshot:
        collector = Collector(config, timeout=timeout)
        try:
            return await collector.refresh_all()
        finally:
            await collector.close()

    return asyncio.run(go())


@pytest.fixture
def fault(lab: RunningLab) -> Iterator:
    injected: list[str] = []

    def inject(spec: str) -> None:
        lab.world.inject(spec)
        injected.append(spec)

    yield inject
    for spec in reversed(injected):
        lab.world.clear(spec)


def test_default_lab_is_healthy_and_joined(lab: RunningLab) -> None:
    s = snap(lab.config)
    assert [src.health for src in s.sources] == [Health.OK] * 5, s.sources
    assert len(s.nodes) == 7 and all(n.ready == "True" for n in s.nodes)
    gpu_node = next(n for n in s.nodes if n.name == "talos-node-gpu-1")
    assert gpu_node.vm is not None and gpu_node.vm.vmid == 103
    assert gpu_node.talos is not None and gpu_node.talos.stage == "running"
    assert gpu_node.pool, "the GPU node is also a Mayastor storage node"
    cp = next(n for n in s.nodes if n.name == "talos-control-1")
    assert cp.talos is not None and len(cp.talos.etcd_members) == 3
    assert len(s.pools) == 4 and all(p.state == "Online" for p in s.pools)
    assert len(s.kustomizations) >= 30
    assert s.healthy, s.faults


def test_four_p100s_joined_end_to_end(lab: RunningLab) -> None:
    """Host PCI device -> VM hostpci -> node allocatable -> pods holding GPU slices."""
    s = snap(lab.config)
    assert [g.address for g in s.gpus] == [f"0000:{b}:00.0" for b in ("81", "82", "83", "84")]
    node = next(n for n in s.nodes if n.name == "talos-node-gpu-1")
    assert node.gpu_allocatable == 16 and node.gpus == tuple(g.address for g in s.gpus)
    for g in s.gpus:
        assert (g.vendor_id, g.device_id, g.model) == ("10de", "15f8", "Tesla P100 PCIe 16GB")
        assert (g.vmid, g.node_name, g.capacity) == (103, "talos-node-gpu-1", 4)
    holders = {p.name.split("-")[0] for g in s.gpus for p in g.pods}
    assert {"plex", "ollama", "tdarr"} <= holders
    assert sum(g.allocated for g in s.gpus) == node.gpu_allocated == 5


@pytest.mark.parametrize(
    ("api", "source"),
    [("kubernetes", "kubernetes"), ("proxmox", "proxmox"), ("talos", "talos")],
)
def test_api_down_degrades_only_its_source(lab: RunningLab, fault, api: str, source: str) -> None:
    good = snap(lab.config)
    collector = Collector(lab.config, timeout=2.0)

    async def go() -> ClusterSnapshot:
        await collector.refresh_all()
        fault(f"api-down:{api}")
        try:
            return await collector.refresh_all()
        finally:
            await collector.close()

    s = asyncio.run(go())
    health = {src.source: src for src in s.sources}
    assert health[source].health is Health.DEGRADED
    assert "refused" in health[source].reason or "unreachable" in health[source].reason.lower()
    assert health[source].last_success is not None, "the time of the last good fetch is kept"
    assert all(h.ok for name, h in health.items() if name != source)
    # The failed source keeps its last good data.
    assert len(s.nodes) == len(good.nodes) and len(s.vms) == len(good.vms)
    assert not s.healthy and any(f.pane == "source" and f.subject == source for f in s.faults)


def test_slow_api_times_out_with_a_reason(lab: RunningLab, fault) -> None:
    fault("api-slow:proxmox:3")
    s = snap(lab.config, timeout=0.5)
    src = s.source("proxmox")
    assert src.health is Health.DEGRADED and "time" in src.reason.lower()


def test_node_notready_fault(lab: RunningLab, fault) -> None:
    fault("node-notready:talos-node-large-2")
    s = snap(lab.config)
    node = next(n for n in s.nodes if n.name == "talos-node-large-2")
    assert node.ready != "True"
    assert any(f.subject == "talos-node-large-2" and f.severity == "error" for f in s.faults)


def test_vm_stopped_reaches_all_three_systems(lab: RunningLab, fault) -> None:
    fault("vm-stopped:105")
    s = snap(lab.config)
    node = next(n for n in s.nodes if n.name == "talos-node-large-2")
    assert node.vm is not None and node.vm.status == "stopped"
    assert node.talos is not None and node.talos.stage == "unreachable"
    # Kubernetes notices after the node-monitor grace period (lab time scale)
    time.sleep(lab.world.timings.node_grace + 0.5)
    s = snap(lab.config)
    node = next(n for n in s.nodes if n.name == "talos-node-large-2")
    assert node.ready != "True"
    assert any(f.pane == "vms" and "105" in f.subject for f in s.faults)


def test_etcd_member_unhealthy(lab: RunningLab, fault) -> None:
    fault("etcd-unhealthy:talos-control-2")
    s = snap(lab.config)
    members = next(n for n in s.nodes if n.name == "talos-control-1").talos.etcd_members
    bad = [m for m in members if m.healthy is False]
    assert [m.hostname for m in bad] == ["talos-control-2"], members
    assert any("etcd" in f.message for f in s.faults)


def test_pool_degraded(lab: RunningLab, fault) -> None:
    pool = snap(lab.config).pools[0].name
    fault(f"pool-degraded:{pool}")
    s = snap(lab.config)
    assert next(p for p in s.pools if p.name == pool).state == "Degraded"
    assert any(f.pane == "pools" and f.subject == pool for f in s.faults)


def test_gpu_gone_from_the_bus(lab: RunningLab, fault) -> None:
    """A running console knows the GPU it saw; a fresh one still flags the missing device."""
    collector = Collector(lab.config, timeout=3.0)

    async def go() -> ClusterSnapshot:
        await collector.refresh_all()
        fault("gpu-gone:0000:83:00.0")
        try:
            return await collector.refresh_all()
        finally:
            await collector.close()

    s = asyncio.run(go())
    gone = next(g for g in s.gpus if g.address == "0000:83:00.0")
    assert not gone.present and gone.vmid == 103 and gone.model == "Tesla P100 PCIe 16GB"
    node = next(n for n in s.nodes if n.name == "talos-node-gpu-1")
    assert node.gpu_allocatable == 12
    assert any(f.pane == "gpus" and f.subject == "0000:83:00.0" for f in s.faults)
    fresh = snap(lab.config)
    assert any(f.pane == "vms" and "0000:83:00.0" in f.message for f in fresh.faults)


def test_kustomization_failing(lab: RunningLab, fault) -> None:
    fault("ks-failing:observability/loki")
    lab.flux.reconcile_now(timeout=10)
    s = snap(lab.config)
    loki = next(k for k in s.kustomizations if k.key == "observability/loki")
    assert loki.ready == "False" and loki.reason
    assert any(f.pane == "flux" and f.subject == "observability/loki" for f in s.faults)


def test_wrong_token_and_wrong_ca_give_one_line_reasons(lab: RunningLab, tmp_path: Path) -> None:
    kubeconfig = lab.files.kubeconfig.read_text().replace(
        lab.credentials.kube_admin_token, "not-a-token"
    )
    bad_kube = tmp_path / "kubeconfig"
    bad_kube.write_text(kubeconfig)
    other_ca = tmp_path / "ca.pem"
    from dapper.lab.pki import Pki

    other_ca.write_bytes(Pki().https_ca.cert_pem)
    cfg = dataclasses.replace(
        lab.config,
        kubeconfig=str(bad_kube),
        proxmox=dataclasses.replace(lab.config.proxmox, ca_file=str(other_ca)),
    )
    s = snap(cfg)
    assert "401" in s.source("kubernetes").reason or "token" in s.source("kubernetes").reason
    assert "TLS" in s.source("proxmox").reason
    assert "\n" not in s.source("kubernetes").reason + s.source("proxmox").reason


def test_read_only_collector_has_no_operations_and_backends_refuse(lab: RunningLab) -> None:
    before = len(lab.world.writes)
    collector = Collector(lab.readonly_config)
    assert collector.operations is None
    with pytest.raises(ReadOnlyError):
        collector.kube().cordon("talos-node-large-1")
    with pytest.raises(ReadOnlyError):
        collector.proxmox().shutdown(104)
    with pytest.raises(ReadOnlyError):
        asyncio.run(collector.talos().reboot("10.100.0.54"))
    asyncio.run(collector.close())
    assert len(lab.world.writes) == before
