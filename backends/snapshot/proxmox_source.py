"""The Proxmox source: VMs (config and status) and each host's PCI devices."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from dapper.backends.model import SourceName
from dapper.backends.snapshot.join import HostPci, ProxmoxData, SnapshotParts
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext

if TYPE_CHECKING:
    from dapper.backends.clients.proxmox import ProxmoxBackend


# A VM's config (devices, MACs, pending changes) is read again after this long, and at
# once when its status or a reboot says it may have changed; at 500 VMs, reading every
# config on every sweep was 500 calls each 5 s.
CONFIG_TTL = 60.0


class ProxmoxSource:
    name = SourceName.PROXMOX
    interval = 5.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: ProxmoxBackend | None = None
        self._pci_seen: dict[str, HostPci] = {}
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
            and now - cached[0] < CONFIG_TTL
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
        return ProxmoxData(vms=vms, pci=tuple(pci))

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, ProxmoxData)
        parts.proxmox = data

    async def close(self) -> None:
        self._flight.cancel()
        if self._client is not None:
            self._client.close()
