"""The lab's consequences cross protocols: each step through a different real client.

This is the node-replacement path in miniature: clone the Talos template (Proxmox), boot it
into Talos maintenance mode (Talos, insecure), configure it (Talos) and watch it join Kubernetes;
then reset a node (Talos) and watch it leave etcd and its Node be cordoned and drained.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.clients.talos import TalosClient
from dapper.backends.errors import BackendError
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import TEMPLATE_VMID, Timings
from dapper.lab.world.talos import cluster_machine_config

from tests.waiting import eventually


@pytest.fixture
def lab() -> Iterator[RunningLab]:
    running = start_lab(flux=False, timings=Timings(boot=0.05, task=0.05, clone=0.05))
    yield running
    running.stop()


def worker_config(lab: RunningLab, hostname: str) -> bytes:
    """A valid worker config carrying the lab cluster's OS CA and tokens."""
    return cluster_machine_config(
        hostname,
        "worker",
        os_ca_pem=lab.world.cluster_os_ca,
        token=lab.world.cluster_token,
        machine_token=lab.world.machine_token,
    )


def test_clone_boot_configure_join(lab: RunningLab) -> None:
    cfg = lab.config
    pve = ProxmoxBackend.from_config(cfg.proxmox)
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)
    newid = pve.next_vmid()
    pve.wait_task(pve.clone(TEMPLATE_VMID, newid, "talos-node-large-4"), timeout=10)
    pve.wait_task(pve.start(newid), timeout=10)
    ip = lab.world.machine_of_vm(newid).ip

    async def talos_steps() -> str:
        async with TalosClient.from_config(
            cfg.talosconfig,
            cfg.talos_context,
            maintenance_endpoint=cfg.talos_maintenance_endpoint,
        ) as talos:
            await asyncio.sleep(0.2)  # boot
            disks = await talos.disks(ip, maintenance=True)  # what maintenance mode serves
            await talos.apply_configuration(
                ip, worker_config(lab, "talos-node-large-4"), maintenance=True
            )
            return disks[0].device

    assert asyncio.run(talos_steps()) == "/dev/vda"
    node = eventually(
        lambda: next((n for n in kube.nodes() if n.name == "talos-node-large-4"), None),
        interval=0.05,
        message="the clone's Node to register",
    )
    assert node.internal_ip == ip
    eventually(
        lambda: next(n for n in kube.nodes() if n.name == "talos-node-large-4").ready == "True",
        interval=0.05,
        message="the clone's Node to be Ready",
    )
    assert any(v.vmid == newid and v.status == "running" for v in pve.vms())
    kube.close()
    pve.close()


def test_new_vm_is_found_by_its_guest_agent_and_configured_at_its_own_address(
    lab: RunningLab,
) -> None:
    """The runbooks' discovery path: Proxmox's guest agent names the address, and the
    machine answers there without a client certificate (no shared endpoint, no metadata)."""
    cfg = lab.config
    pve = ProxmoxBackend.from_config(cfg.proxmox)
    newid = pve.next_vmid()
    pve.wait_task(pve.clone(TEMPLATE_VMID, newid, "talos-node-large-5"), timeout=10)
    with pytest.raises(BackendError, match="not running"):
        pve.guest_addresses(newid)
    pve.wait_task(pve.start(newid), timeout=10)
    addresses = eventually(
        lambda: _agent(pve, newid), interval=0.05, message="the guest agent to answer"
    )
    assert len(addresses) == 1
    port = int(lab.world.endpoints["talos_machine_port"])

    async def talos_steps() -> str:
        async with TalosClient.from_config(
            cfg.talosconfig, cfg.talos_context, maintenance_port=port
        ) as talos:
            with pytest.raises(BackendError) as err:  # Talos answers Version to admins only
                await talos.version(addresses[0], maintenance=True)
            assert err.value.code == "UNIMPLEMENTED"
            disks = await talos.disks(addresses[0], maintenance=True)
            await talos.apply_configuration(
                addresses[0], worker_config(lab, "talos-node-large-5"), maintenance=True
            )
            return disks[0].device

    assert asyncio.run(talos_steps()) == "/dev/vda"
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)
    eventually(
        lambda: any(n.name == "talos-node-large-5" for n in kube.nodes()),
        interval=0.05,
        message="the new machine's Node",
    )
    kube.close()
    pve.close()


def _agent(pve: ProxmoxBackend, vmid: int) -> tuple[str, ...] | None:
    try:
        return pve.guest_addresses(vmid) or None
    except BackendError:
        return None


def test_reset_leaves_etcd_and_kubernetes(lab: RunningLab) -> None:
    cfg = lab.config
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)
    assert "talos-control-3" in {n.name for n in kube.nodes()}

    async def reset() -> None:
        async with TalosClient.from_config(cfg.talosconfig, cfg.talos_context) as talos:
            await talos.reset("10.100.0.52", graceful=True, reboot=True)

    async def members() -> int:
        async with TalosClient.from_config(cfg.talosconfig, cfg.talos_context) as talos:
            return len(await talos.etcd_members("10.100.0.50"))

    asyncio.run(reset())  # answers at once; the reset runs after
    machine = lab.world.machine("10.100.0.52")
    eventually(lambda: machine.maintenance, interval=0.05, message="the reset to run")
    assert asyncio.run(members()) == 2
    # a graceful reset cordons and drains its Node but does not delete it
    node = next(n for n in kube.nodes() if n.name == "talos-control-3")
    assert node.unschedulable and node.ready != "True"
    assert machine.config is None
    kube.close()


def test_stopped_vm_reaches_talos_and_kubernetes(lab: RunningLab) -> None:
    cfg = lab.config
    pve = ProxmoxBackend.from_config(cfg.proxmox)
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)
    pve.wait_task(pve.stop(106), timeout=10)

    async def machine_stage() -> str:
        async with TalosClient.from_config(cfg.talosconfig, cfg.talos_context) as talos:
            return (await talos.machine("10.100.0.56")).stage

    assert asyncio.run(machine_stage()) == "unreachable"  # Talos knows at once
    # Kubernetes only after the node-monitor grace period without a status post
    assert next(n for n in kube.nodes() if n.name == "talos-node-large-3").ready == "True"
    eventually(
        lambda: next(n for n in kube.nodes() if n.name == "talos-node-large-3").ready != "True",
        timeout=lab.world.timings.node_grace + 10,
        interval=0.1,
        message="the stopped VM's Node to go NotReady after the grace period",
    )
    pve.wait_task(pve.start(106), timeout=10)
    eventually(
        lambda: next(n for n in kube.nodes() if n.name == "talos-node-large-3").ready == "True",
        interval=0.05,
        message="the restarted VM's Node to be Ready",
    )
    kube.close()
    pve.close()


def test_drain_evicts_and_pods_move(lab: RunningLab) -> None:
    cfg = lab.config
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)
    before = {p.name for p in kube.pods("talos-control-1") if p.owner_kind == "ReplicaSet"}
    assert before, "coredns runs on the first control plane"
    kube.drain("talos-control-1", deadline=time.monotonic() + 10)
    after = kube.pods("talos-control-1")
    assert not [p for p in after if p.owner_kind == "ReplicaSet"]
    moved = [
        p for p in kube.pods() if p.namespace == "kube-system" and p.name.startswith("coredns")
    ]
    assert len(moved) == 2 and all(p.node != "talos-control-1" for p in moved)
    kube.close()


def test_a_notready_fault_shows_in_kubernetes_and_talos_alike(lab: RunningLab) -> None:
    """node-notready is a kubelet that stopped: Kubernetes hears nothing, and Talos reports
    the kubelet service unhealthy on that machine; clearing it heals both."""
    cfg = lab.config
    kube = KubeBackend.from_kubeconfig(cfg.kubeconfig, context=cfg.kube_context)

    async def kubelet() -> tuple[str, bool | None]:
        async with TalosClient.from_config(cfg.talosconfig, cfg.talos_context) as talos:
            services = await talos.services("10.100.0.55")
        found = next(s for s in services if s.id == "kubelet")
        return found.state, found.healthy

    def ready() -> str:
        return next(n for n in kube.nodes() if n.name == "talos-node-large-2").ready

    lab.world.inject("node-notready:talos-node-large-2")
    assert ready() != "True"
    assert asyncio.run(kubelet()) == ("Failed", False)
    lab.world.clear("node-notready:talos-node-large-2")
    assert ready() == "True"
    assert asyncio.run(kubelet()) == ("Running", True)
    kube.close()
