"""PCI devices on the Proxmox host as runbooks see them: resource mappings and who holds what.

Passthrough goes through PCI resource mappings (`/cluster/mapping/pci`): an API token may
not set a raw `hostpciN: 0000:81:00.0` (only root@pam may).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dapper.actions.machines import Machines

if TYPE_CHECKING:
    from dapper.actions.engine import RunContext

HOSTPCI_KEYS = tuple(f"hostpci{i}" for i in range(16))
NVIDIA = "10de"


@dataclass(frozen=True)
class PciMapping:
    id: str
    paths: tuple[str, ...]  # PCI addresses on this host
    vendor: str  # of the first device, e.g. 10de

    @property
    def gpu(self) -> bool:
        return self.vendor == NVIDIA


def pci_props(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
        elif part.strip():
            out.setdefault("", part.strip())
    return out


def mappings(ctx: RunContext) -> list[PciMapping]:
    """The host's PCI resource mappings (GET /cluster/mapping/pci)."""
    pve = Machines.of(ctx).pve
    host = pve.default_node()
    out = []
    for row in pve.call("get", "cluster/mapping/pci") or []:
        paths: list[str] = []
        vendor = ""
        for entry in row.get("map") or []:
            props = pci_props(str(entry))
            if props.get("node", host) != host:
                continue
            paths += [p for p in props.get("path", "").split(";") if p]
            vendor = vendor or props.get("id", "").split(":")[0]
        out.append(PciMapping(str(row.get("id", "")), tuple(paths), vendor))
    return out


def address_of(value: str, known: list[PciMapping]) -> tuple[str, ...]:
    """The PCI addresses a hostpci line stands for (raw or through a mapping)."""
    props = pci_props(value)
    if "mapping" in props:
        found = [m for m in known if m.id == props["mapping"]]
        return found[0].paths if found else ()
    raw = props.get("host") or props.get("", "")
    return tuple(a if a.count(":") == 2 else f"0000:{a}" for a in raw.split(";") if a)


def in_use(ctx: RunContext, known: list[PciMapping], *, besides: set[int]) -> dict[str, Any]:
    """PCI address -> the running VM holding it (VMs in `besides` ignored)."""
    out: dict[str, Any] = {}
    for vm in Machines.of(ctx).pve.vms(with_config=True):
        if vm.vmid in besides or vm.status != "running":
            continue
        for key, value in vm.config:
            if key in HOSTPCI_KEYS:
                for address in address_of(value, known):
                    out[address] = vm
    return out
