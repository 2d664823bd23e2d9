"""Which host PCI devices a VM takes when it starts, decided as qemu-server decides.

At start PVE parses every hostpciN (a raw address, or `mapping=<id>` resolved to this
node's entries of the cluster mapping), picks one free alternative for pooled mappings,
then reserves every device; a device held by another running VM, a device the host does
not have, or a mapping with no entry for the node fails the start task with PVE's text.
"""

from __future__ import annotations

from dapper.backends.clients.proxmox_parse import (
    HOSTPCI_KEYS,
    normalize_pci_id,
    parse_hostpci,
    pci_matches,
    split_property_string,
)
from dapper.lab.world.model import PVE_HOST, LabVm, PciMapping
from dapper.lab.world.state import WorldError, WorldState


def map_entries(mapping: PciMapping, node: str = PVE_HOST) -> list[dict[str, str]]:
    """The mapping's entries for `node`, each a dict of its property string."""
    entries = [dict(split_property_string(line)) for line in mapping.map]
    return [e for e in entries if e.get("node") == node]


def _host_functions(state: WorldState, address: str) -> list[str]:
    """lspci for one id: its functions on the host (all of them for a bare slot)."""
    return sorted(
        a for a, d in state.pci.items() if d.present and pci_matches(normalize_pci_id(address), a)
    )


def _alternatives(state: WorldState, slot: str, value: str) -> list[list[str]]:
    """The device sets one hostpciN may take, each expanded to host functions."""
    hp = parse_hostpci(value)
    if hp.mapping:
        mapping = state.pci_mappings.get(hp.mapping)
        entries = map_entries(mapping) if mapping is not None else []
        if not entries:
            raise WorldError(f"PCI device mapping not found for '{hp.mapping}'", 500)
        paths = [[p for p in e.get("path", "").split(";") if p] for e in entries]
        for alternative in paths:
            for path in alternative:
                if not _host_functions(state, path):
                    raise WorldError(
                        "PCI device mapping invalid (hardware probably changed): "
                        f"pci device '{path}' not found",
                        500,
                    )
    elif hp.addresses:
        paths = [list(hp.addresses)]
    else:
        raise WorldError("Either 'host' or 'mapping' must be set.", 500)
    out: list[list[str]] = []
    for alternative in paths:
        ids: list[str] = []
        for path in alternative:
            found = _host_functions(state, path)
            if not found:
                raise WorldError(f"no PCI device found for '{path}'", 500)
            ids.extend(found)
        out.append(ids)
    return out


def devices_for_start(state: WorldState, vm: LabVm) -> list[str]:
    """The host functions `vm` takes when it starts, or WorldError with PVE's message."""
    held = {
        addr: other.vmid
        for other in state.vms.values()
        if other.vmid != vm.vmid and other.status == "running"
        for addr in other.pci_in_use
    }
    slots = [s for s in HOSTPCI_KEYS if s in vm.hostpci]
    parsed = {slot: _alternatives(state, slot, vm.hostpci[slot]) for slot in slots}
    used: list[str] = []
    for slot in slots:
        alternatives = parsed[slot]
        if len(alternatives) == 1:
            chosen = alternatives[0]
            for addr in chosen:
                if addr in used:
                    raise WorldError(f"device '{addr}' assigned more than once", 500)
        else:
            free = [alt for alt in alternatives if not any(a in used or a in held for a in alt)]
            if not free:
                raise WorldError(f"could not find a free device for '{slot}'", 500)
            chosen = free[0]
        used.extend(chosen)
    for addr in used:  # reserve_pci_usage: every id, in order
        if addr in held:
            raise WorldError(f"PCI device '{addr}' already in use by VMID '{held[addr]}'", 500)
    return used
