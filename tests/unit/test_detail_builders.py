"""The detail builders on hand-made snapshots (no lab): what the enter-on-a-row view says."""

from __future__ import annotations

from dapper.backends.clients.kube_parse import pod_ref
from dapper.backends.model import (
    ClusterSnapshot,
    Condition,
    EtcdMember,
    Event,
    Fault,
    Gpu,
    Kustomization,
    Node,
    PodRef,
    StoragePool,
    TalosMachine,
    TalosService,
    Vm,
)
from dapper.tui.detail_builders import (
    event_detail,
    gpu_detail,
    ks_detail,
    node_detail,
    plain,
    pool_detail,
    vm_detail,
    workload,
)
from dapper.tui.pane_registry import pane_registry

NOW = 1_000_000.0
POD = PodRef("ai", "ollama-7d9f-abcde", "gpu-1", "Running", True, 1, "ReplicaSet", "ollama-7d9f")
VM = Vm(201, "gpu-1", "pve1", "running", cpus=8, mem_total=2**34, uptime=3600, node_name="gpu-1")
GPU = Gpu(
    "0000:81:00.0",
    "RTX 4090",
    "pve1",
    vmid=201,
    vm_name="gpu-1",
    node_name="gpu-1",
    capacity=4,
    allocated=1,
    pods=(POD,),
)
TALOS = TalosMachine(
    "10.0.0.21",
    version="v1.9.1",
    stage="running",
    services=(TalosService("kubelet", "Running", True), TalosService("etcd", "Failed", False)),
    etcd_members=(EtcdMember(0xAB, "cp-1", leader=True, healthy=True),),
)
NODE = Node(
    "gpu-1",
    roles=("gpu",),
    ready="False",
    internal_ip="10.0.0.21",
    conditions=(Condition("Ready", "False", "KubeletDown", "kubelet stopped posting"),),
    pods=(POD,),
    gpu_capacity=4,
    gpu_allocated=1,
    talos=TALOS,
    vm=VM,
    gpus=(GPU.address,),
    pool="pool-gpu-1",
)
POOL = StoragePool("pool-gpu-1", "gpu-1", ("/dev/nvme1n1",), "Degraded", capacity=100, used=91)
BROKEN = Kustomization(
    "flux-system",
    "apps",
    ready="False",
    reason="HealthCheckFailed",
    message="deployment ai/ollama not ready",
    depends_on=("flux-system/infra", "flux-system/missing"),
)
INFRA = Kustomization("flux-system", "infra", ready="True", suspended=True)
EVENT = Event(NOW - 120, "kubernetes", "warning", "Node/gpu-1", "NodeNotReady", "kubelet down")
SNAPSHOT = ClusterSnapshot(
    cluster="LAB",
    mode="LAB",
    read_only=False,
    taken_at=NOW,
    nodes=(NODE,),
    vms=(VM,),
    gpus=(GPU,),
    pools=(POOL,),
    kustomizations=(BROKEN, INFRA),
    events=(EVENT,),
    faults=(Fault("error", "nodes", "gpu-1", "node gpu-1 is NotReady", NOW - 60),),
)


def test_node_detail_joins_kubernetes_talos_proxmox_gpus_pool_and_events() -> None:
    text = plain(node_detail(NODE, SNAPSHOT, NOW), width=120)
    assert text.splitlines()[0].startswith(" gpu-1 ") and "NotReady" in text.splitlines()[0]
    assert "✗ node gpu-1 is NotReady" in text  # the collector's fault for this row
    assert "KubeletDown" in text and "kubelet stopped posting" in text
    assert "1/2 healthy" in text and "✗ etcd" in text  # the failing Talos service
    assert "leader" in text and "00000000000000ab" in text
    assert "201 gpu-1 on pve1" in text
    assert "RTX 4090" in text and "ollama" in text  # its GPU, held by the workload
    assert "pool-gpu-1 · Degraded" in text
    assert "NodeNotReady" in text  # its events


def test_node_detail_without_joined_sources_says_so() -> None:
    lone = Node("wrk-9", ready="True")
    text = plain(node_detail(lone, SNAPSHOT, NOW))
    assert "no Talos data for this node" in text and "no VM matched this node" in text
    assert "Faults" not in text


def test_vm_gpu_pool_and_event_details() -> None:
    vm = plain(vm_detail(VM, SNAPSHOT, NOW), width=100)
    assert "VM 201 gpu-1" in vm and "node gpu-1" in vm and "8 vCPU" in vm
    gpu = plain(gpu_detail(GPU, SNAPSHOT, NOW), width=100)
    assert "present" in gpu and "201 gpu-1" in gpu
    assert "1 allocated / 4" in gpu and "ai/ollama-7d9f-abcde" in gpu
    pool = plain(pool_detail(POOL, SNAPSHOT, NOW))
    assert "Degraded" in pool and "(91%)" in pool and "/dev/nvme1n1" in pool
    event = plain(event_detail(EVENT, SNAPSHOT, NOW))
    assert "NodeNotReady" in event and "Node/gpu-1" in event and "kubelet down" in event


def test_ks_detail_explains_why_and_walks_dependencies() -> None:
    text = plain(ks_detail(BROKEN, SNAPSHOT, NOW), width=100)
    assert "Why" in text and "deployment ai/ollama not ready" in text
    assert "flux-system/infra" in text and "suspended" in text
    assert "flux-system/missing  not found" in text
    needed = plain(ks_detail(INFRA, SNAPSHOT, NOW), width=100)
    assert "needed by" in needed and "flux-system/apps" in needed


def test_workload_names_the_deployment_of_a_replicaset_pod() -> None:
    assert workload(POD) == "ollama"
    daemon = PodRef("kube-system", "cilium-x", owner_kind="DaemonSet", owner_name="cilium")
    assert workload(daemon) == "cilium"
    assert workload(PodRef("default", "bare")) == "bare"


def test_every_registered_pane_builds_a_detail_for_its_rows() -> None:
    for spec in pane_registry().ordered():
        for row in spec.rows(SNAPSHOT):
            assert plain(spec.detail(row, SNAPSHOT, NOW)).strip(), (spec.id, spec.row_key(row))


def test_a_pod_waiting_for_its_volume_shows_container_creating() -> None:
    """kubectl's STATUS: a waiting container's reason over the phase, Terminating over
    both; parsed from the container statuses the API server sends."""
    raw = {
        "metadata": {"namespace": "db", "name": "pg-0"},
        "spec": {"nodeName": "wrk-2"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "pg", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ],
        },
    }
    waiting = pod_ref(raw)
    assert waiting.waiting == "ContainerCreating"
    node = Node(
        "wrk-2", ready="True", pods=(waiting, PodRef("db", "old-0", terminating=True, waiting="x"))
    )
    text = plain(node_detail(node, SNAPSHOT, NOW), width=120)
    rows = [line for line in text.splitlines() if "db/" in line]
    assert any("ContainerCreating" in r and "db/pg-0" in r for r in rows)
    assert any("Terminating" in r and "db/old-0" in r for r in rows)
