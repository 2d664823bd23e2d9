"""The Proxmox source: VMs (config and status) and each host's PCI devices.

A running VM that no Kubernetes node matches (a new machine in maintenance mode is in no
cluster yet) also gets the addresses its QEMU guest agent reports, so the Talos source
can ask the machine there. Only such VMs are asked, each at most once per boot while its
answer stays fresh (`AGENT_TTL`), a few per sweep: at hundreds of nodes a sweep makes no
agent call for VMs that are nodes. Which VMs are nodes comes from the other sources'
latest data (the previous sweep's when they run concurrently); only until Kubernetes has
answered once does a refresh of everything read Proxmox after it. While Kubernetes has
never answered (a bare host before bootstrap) every running VM counts as node-less.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from dapper.backends.errors import BackendError
from dapper.backends.model import SourceName, Vm
from dapper.backends.snapshot.join import (
    HostPci,
    KubeData,
    ProxmoxData,
    SnapshotParts,
    TalosData,
    vms_without_node,
)
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext

if TYPE_CHECKING:
    from dapper.backends.clients.proxmox import ProxmoxBackend


# A VM's config (devices, MACs, pending changes) is read again after this long (up to
# twice it, spread by vmid), and at once when its status or a reboot says it may have
# changed; at 500 VMs, reading every config on every sweep was 500 calls each 5 s, and
# one TTL for all made every minute's sweep read all 500 again (2-12 s).
CONFIG_TTL = 60.0


def config_ttl(vmid: int) -> float:
    """CONFIG_TTL to twice it, by vmid: configs read in one sweep expire over a minute."""
    return CONFIG_TTL * (1 + (vmid * 37 % 100) / 100)


AGENT_TTL = 60.0  # seconds an agent's addresses are reused (a machine may take a static IP)
AGENT_RETRY = 10.0  # seconds before asking an agent that did not answer (still booting) again
AGENT_PER_SWEEP = 8  # agent calls at most per sweep; the rest wait for the next sweep


@dataclass(frozen=True)
class _AgentAnswer:
    asked_at: float  # monotonic
    uptime: int  # the VM's uptime when asked: a smaller one later means it rebooted
    addresses: tuple[str, ...] = ()
    ok: bool = True


class ProxmoxSource:
    name = SourceName.PROXMOX
    interval = 5.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: ProxmoxBackend | None = None
        self._pci_seen: dict[str, HostPci] = {}
        self._agent: dict[int, _AgentAnswer] = {}
        self._swept = False  # a sweep has run (the agents wait for the second, see below)
        self._flight = SingleFlight()
        # vmid -> (read at, status, uptime, config)
        self._configs: dict[int, tuple[float, str, int, dict[str, str]]] = {}

    def client(self) -> ProxmoxBackend:
        """The Proxmox API client, built on first use."""
        with IMPORTS:
            if self._client is None:
                from dapper.backends.clients.proxmox import ProxmoxBackend

                config = self.context.config
                self._client = ProxmoxBackend.from_config(
                    config.proxmox, read_only=config.read_only, timeout=self.context.timeout
                )
            return self._client

    def refresh_after(self) -> tuple[str, ...]:
        """Never waits: VMs and configs are read alongside Kubernetes (a one-shot status
        would otherwise pay for both in turn); see _with_agent_addresses for the agents."""
        return ()

    async def fetch(self, *, fresh: bool = False) -> ProxmoxData:
        return await self._flight.run(lambda: self._read(fresh))

    def _config_of(
        self, fresh: bool, row: dict[str, Any], read: Callable[[], dict[str, str]]
    ) -> dict[str, str]:
        """The VM's config from the cache while it can still be right, else read now."""
        vmid, status = int(row["vmid"]), str(row.get("status", ""))
        uptime = int(row.get("uptime") or 0)
        cached = self._configs.get(vmid)
        now = time.monotonic()
        if (
            not fresh
            and cached is not None
            and now - cached[0] < config_ttl(vmid)
            and cached[1] == status
            and uptime >= cached[2]  # no restart since (pending changes apply on one)
        ):
            return cached[3]
        config = read()
        self._configs[vmid] = (now, status, uptime, config)
        return config

    def _read(self, fresh: bool) -> ProxmoxData:
        p = self.client()
        vms = tuple(p.vms(config_of=partial(self._config_of, fresh)))
        self._configs = {vm.vmid: self._configs[vm.vmid] for vm in vms if vm.vmid in self._configs}
        pci: list[HostPci] = []
        for node in p.node_names():
            for d in p.pci_devices(node):
                pci.append(
                    HostPci(
                        node,
                        d.address,
                        d.vendor_id,
                        d.device_id,
                        d.vendor_name,
                        d.device_name,
                        d.class_id,
                    )
                )
        # A device that was on the bus and is now gone (a GPU fallen off) keeps its identity
        # from the last time it was seen, so the console can say which GPU is missing.
        present = {d.address for d in pci}
        wanted = {dev.address.split(",")[0] for vm in vms for dev in vm.devices}
        for address, known in self._pci_seen.items():
            if address not in present and address in wanted:
                pci.append(replace(known, present=False))
        self._pci_seen.update({d.address: d for d in pci if d.present})
        return ProxmoxData(vms=self._with_agent_addresses(p, vms), pci=tuple(pci))

    def _with_agent_addresses(self, p: ProxmoxBackend, vms: tuple[Vm, ...]) -> tuple[Vm, ...]:
        """`vms` with `addresses` filled for the running VMs no node matches (see module)."""
        kube = self.context.latest(SourceName.KUBERNETES)
        first, self._swept = not self._swept, True
        if kube is None and first:
            # Kubernetes has not answered yet: every running VM would look node-less and
            # have its agent asked. Next sweep; if Kubernetes never answers (a bare host
            # before bootstrap), every running VM is then node-less indeed.
            return vms
        talos = self.context.latest(SourceName.TALOS)
        loose = vms_without_node(
            kube if isinstance(kube, KubeData) else KubeData(),
            talos if isinstance(talos, TalosData) else TalosData(),
            vms,
        )
        wanted = {vm.vmid: vm for vm in loose}
        for vmid in set(self._agent) - set(wanted):  # now a node, stopped or gone
            del self._agent[vmid]
        now = time.monotonic()
        budget = AGENT_PER_SWEEP
        found: dict[int, tuple[str, ...]] = {}
        for vmid, vm in wanted.items():
            seen = self._agent.get(vmid)
            fresh = (
                seen is not None
                and vm.uptime >= seen.uptime
                and now - seen.asked_at < (AGENT_TTL if seen.ok else AGENT_RETRY)
            )
            if not fresh and budget > 0:
                budget -= 1
                try:
                    addresses = p.guest_addresses(vmid, vm.host)
                except BackendError:  # not running yet, or no agent in this guest
                    seen = _AgentAnswer(now, vm.uptime, ok=False)
                else:
                    seen = _AgentAnswer(now, vm.uptime, addresses)
                self._agent[vmid] = seen
            if seen is not None and seen.addresses:
                self._agent[vmid] = replace(seen, uptime=vm.uptime)
                found[vmid] = seen.addresses
        if not found:
            return vms
        return tuple(
            replace(vm, addresses=found[vm.vmid]) if vm.vmid in found else vm for vm in vms
        )

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, ProxmoxData)
        parts.proxmox = data

    async def close(self) -> None:
        self._flight.cancel()
        if self._client is not None:
            self._client.close()
