"""The Proxmox source: VMs (config and status) and each host's PCI devices."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dapper.backends.model import SourceName
from dapper.backends.snapshot.join import HostPci, ProxmoxData, SnapshotParts
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext

if TYPE_CHECKING:
    from dapper.backends.clients.proxmox import ProxmoxBackend


class ProxmoxSource:
    name = SourceName.PROXMOX
    interval = 5.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: ProxmoxBackend | None = None
        self._pci_seen: dict[str, HostPci] = {}
        self._flight = SingleFlight()

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
        return await self._flight.run(self._read)

    def _read(self) -> ProxmoxData:
        p = self.client()
        vms = tuple(p.vms())
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
