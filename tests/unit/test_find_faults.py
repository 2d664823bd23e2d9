"""find_faults on hand-made snapshots: what the fault bar says, and in which order."""

from __future__ import annotations

from dapper.backends.model import (
    ClusterSnapshot,
    EtcdMember,
    Gpu,
    Health,
    Kustomization,
    Node,
    SourceHealth,
    StoragePool,
    TalosMachine,
    TalosService,
    Vm,
)
from dapper.backends.snapshot.join import find_faults


def faults_of(**parts) -> list[tuple[str, str, str, str]]:
    s = ClusterSnapshot(cluster="c", mode="LAB", read_only=True, taken_at=0.0, **parts)
    return [(f.severity, f.pane, f.subject, f.message) for f in find_faults(s)]


def test_a_healthy_snapshot_has_no_faults() -> None:
    assert (
        faults_of(
            sources=(SourceHealth("kubernetes", Health.OK),),
            nodes=(Node("n", ready="True"),),
            vms=(Vm(1, "n", "pve", "running", node_name="n"),),
            gpus=(Gpu("0000:81:00.0", "P100", "pve"),),
            pools=(StoragePool("p", "n", state="Online"),),
            kustomizations=(Kustomization("flux-system", "apps", ready="True"),),
        )
        == []
    )


def test_a_degraded_source_is_an_error_with_its_reason() -> None:
    assert faults_of(sources=(SourceHealth("proxmox", Health.DEGRADED, "401 Unauthorized"),)) == [
        ("error", "source", "proxmox", "401 Unauthorized")
    ]


def test_nodes_not_ready_cordoned_etcd_and_talos_services() -> None:
    talos = TalosMachine(
        "10.0.0.1",
        etcd_members=(EtcdMember(1, "cp-1", healthy=False), EtcdMember(2, "cp-2", healthy=None)),
        services=(TalosService("etcd", "Failed", healthy=False), TalosService("apid", "Running")),
    )
    got = faults_of(
        nodes=(
            Node("cp-1", ready="True", talos=talos),
            Node("w-1", ready="Unknown", unschedulable=True),
            Node("w-2", ready="True", unschedulable=True),
        )
    )
    assert got == [
        ("error", "nodes", "cp-1", "etcd member cp-1 unhealthy"),
        ("error", "nodes", "w-1", "NotReady (Ready=Unknown)"),  # says more than cordoned
        ("warning", "nodes", "cp-1", "talos services unhealthy: etcd"),
        ("warning", "nodes", "w-2", "cordoned: Ready,SchedulingDisabled"),
    ]


def test_vms_gpus_and_pools() -> None:
    got = faults_of(
        vms=(
            Vm(104, "w-1", "pve", "stopped", node_name="w-1"),
            Vm(900, "template", "pve", "stopped"),  # no node: not a fault
        ),
        gpus=(Gpu("0000:82:00.0", "Tesla P100", "pve", present=False),),
        pools=(StoragePool("pool-w-1", "w-1", state="Degraded"), StoragePool("new", "w-2")),
    )
    assert got == [
        ("error", "vms", "104 w-1", "VM stopped"),
        ("error", "gpus", "0000:82:00.0", "Tesla P100 is gone from the PCI bus"),
        ("error", "pools", "pool-w-1", "pool Degraded"),
    ]


def test_kustomizations_failing_and_suspended() -> None:
    got = faults_of(
        kustomizations=(
            Kustomization(
                "media", "plex", ready="False", reason="BuildFailed", message="kustomize build"
            ),
            Kustomization("media", "jellyfin", ready="False"),  # no reason, no message
            Kustomization("media", "extra", ready="False", suspended=True),
        )
    )
    assert got == [
        ("error", "flux", "media/plex", "BuildFailed: kustomize build"),
        ("error", "flux", "media/jellyfin", ""),
        ("warning", "flux", "media/extra", "suspended"),
    ]


def test_errors_come_first_and_the_newest_error_leads() -> None:
    s = ClusterSnapshot(
        cluster="c",
        mode="LAB",
        read_only=True,
        taken_at=0.0,
        sources=(SourceHealth("talos", Health.DEGRADED, "old", last_attempt=10.0),),
        nodes=(Node("w-2", ready="True", unschedulable=True),),
        kustomizations=(
            Kustomization("a", "new", ready="False", reason="R", last_transition=20.0),
        ),
    )
    assert [(f.severity, f.subject) for f in find_faults(s)] == [
        ("error", "a/new"),
        ("error", "talos"),
        ("warning", "w-2"),
    ]
