"""The collector finds a new VM's machine in maintenance mode where the guest agent says.

A clone of the Talos template, started through the Proxmox twin, boots into maintenance
mode: it is no Kubernetes node and in no talosconfig, so only its guest agent's address
leads to it. The collector asks the agent for such VMs only (never for VMs that are
nodes), reuses the answer, and shows the VM's machine as "maintenance".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.model import ClusterSnapshot, Vm
from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import TEMPLATE_VMID, Timings
from dapper.tui.builtin_panes import VM_COLUMNS


@pytest.fixture
def lab() -> Iterator[RunningLab]:
    running = start_lab(flux=False, timings=Timings(boot=0.05, task=0.05, clone=0.05))
    yield running
    running.stop()


class AgentCalls:
    """Counts the guest-agent calls the collector's Proxmox client makes, per VM."""

    def __init__(self, pve: ProxmoxBackend) -> None:
        self.calls: list[int] = []
        real = pve.guest_addresses

        def counted(vmid: int, node: str = "") -> tuple[str, ...]:
            self.calls.append(vmid)
            return real(vmid, node)

        pve.guest_addresses = counted  # type: ignore[method-assign]


def _vm(s: ClusterSnapshot, vmid: int) -> Vm:
    return next(v for v in s.vms if v.vmid == vmid)


def _node_cell(vm: Vm) -> str:
    column = next(c for c in VM_COLUMNS if c.key == "node")
    return column.cell(vm, 0.0).plain


async def _sweep(collector: Collector) -> ClusterSnapshot:
    """One refresh of every source, then Proxmox and Talos once more: the Proxmox source
    reads which VMs are nodes from the latest Kubernetes data, the Talos source the
    agent's addresses from the latest Proxmox data (neither waits for the other)."""
    await collector.refresh_all()
    await collector.refresh("proxmox")
    return await collector.refresh("talos")


def test_new_vm_in_maintenance_is_found_at_its_guest_agent_address(lab: RunningLab) -> None:
    admin = ProxmoxBackend.from_config(lab.config.proxmox)

    async def go() -> None:
        collector = Collector(lab.config, timeout=3.0)
        agent = AgentCalls(collector.proxmox())
        try:
            s = await _sweep(collector)
            assert len(s.nodes) == 7
            assert all(_vm(s, n.vm.vmid).node_name == n.name for n in s.nodes if n.vm)
            await _sweep(collector)
            assert agent.calls == [], "VMs that are nodes are never asked through the agent"

            newid = admin.next_vmid()
            admin.wait_task(admin.clone(TEMPLATE_VMID, newid, "talos-node-large-9"), timeout=10)
            admin.wait_task(admin.start(newid), timeout=10)
            for _ in range(200):  # the machine boots, then its agent answers
                vm = _vm(await _sweep(collector), newid)
                if vm.talos is not None:
                    break
                await asyncio.sleep(0.05)
            assert vm.talos is not None, vm
            assert vm.node_name == "" and vm.status == "running"
            assert vm.addresses == admin.guest_addresses(newid)
            assert (vm.talos.node, vm.talos.stage, vm.talos.maintenance) == (
                vm.addresses[0],
                "maintenance",
                True,
            )
            assert vm.talos.disks, "maintenance mode serves Disks"
            assert _node_cell(vm) == "maintenance"

            # Later sweeps reuse the agent's answer and still reach the machine there.
            assert set(agent.calls) == {newid}
            asked = len(agent.calls)
            await _sweep(collector)
            s = await _sweep(collector)
            assert len(agent.calls) == asked
            again = _vm(s, newid)
            assert again.talos is not None and again.talos.stage == "maintenance"
            assert len(s.nodes) == 7, "a maintenance machine is no Kubernetes node"
            assert not any(f.subject.startswith(str(newid)) for f in s.faults)
        finally:
            await collector.close()

    try:
        asyncio.run(go())
    finally:
        admin.close()


def test_stopped_new_vm_is_not_asked(lab: RunningLab) -> None:
    """A VM that is not running has no agent to ask (and nothing to show)."""
    admin = ProxmoxBackend.from_config(lab.config.proxmox)
    newid = admin.next_vmid()
    admin.wait_task(admin.clone(TEMPLATE_VMID, newid, "talos-node-large-9"), timeout=10)

    async def go() -> None:
        collector = Collector(lab.config, timeout=3.0)
        agent = AgentCalls(collector.proxmox())
        try:
            vm = _vm(await _sweep(collector), newid)
            assert (vm.status, vm.addresses, vm.talos) == ("stopped", (), None)
            assert agent.calls == [] and _node_cell(vm) == "-"
        finally:
            await collector.close()

    try:
        asyncio.run(go())
    finally:
        admin.close()
