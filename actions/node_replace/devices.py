"""Passthrough for the replacement VM, through Proxmox PCI resource mappings.

An API token may not set a raw `hostpciN: 0000:81:00.0` (only root@pam may), so every
device goes in as `mapping=<id>`: the old VM's raw lines are translated through
`/cluster/mapping/pci`, and when the old VM is gone the node's role picks them (the GPU
node takes every GPU mapping; a storage node takes a storage-controller mapping no other
VM uses). A device some other running VM holds is refused before anything happens.
"""

from __future__ import annotations

from dapper.actions.engine import RunContext, StepFailed
from dapper.actions.node_replace.target import resolve
from dapper.actions.pci import PciMapping, address_of, in_use, mappings, pci_props


def _as_mapping(value: str, known: list[PciMapping]) -> str:
    props = pci_props(value)
    if "mapping" in props:
        return value
    addresses = address_of(value, known)
    hit = [m for m in known if addresses and set(addresses) <= set(m.paths)]
    if not hit:
        raise StepFailed(
            f"no PCI resource mapping covers {', '.join(addresses)}: add one under "
            "Datacenter > Resource Mappings (an API token cannot set raw hostpci)"
        )
    rest = [f"{k}={v}" for k, v in props.items() if k not in ("", "host")]
    return ",".join([f"mapping={hit[0].id}", *rest])


def passthrough_lines(ctx: RunContext, old: dict[str, str]) -> dict[str, str]:
    """hostpciN -> `mapping=<id>,pcie=1` for the new VM."""
    known = mappings(ctx)
    if old:
        return {key: _as_mapping(value, known) for key, value in sorted(old.items())}
    target = resolve(ctx)
    chosen: list[PciMapping] = []
    if target.gpu:
        chosen += [m for m in known if m.gpu]
    if target.storage_pool:
        used = in_use(ctx, known, besides=set())
        free = [m for m in known if not m.gpu and not any(p in used for p in m.paths)]
        chosen += free[:1]
    return {f"hostpci{i}": f"mapping={m.id},pcie=1" for i, m in enumerate(chosen)}


def check_devices_free(ctx: RunContext, lines: dict[str, str], old_vmid: int | None) -> None:
    """Refuse when a device the new VM needs is held by another running VM."""
    known = mappings(ctx)
    besides = {old_vmid} if old_vmid is not None else set()
    vmid = ctx.out("new-vm", "vmid")
    if vmid is not None:
        besides.add(int(vmid))
    held = in_use(ctx, known, besides=besides)
    for value in lines.values():
        for address in address_of(value, known):
            vm = held.get(address)
            if vm is not None:
                raise StepFailed(
                    f"PCI device {address} is attached to running VM {vm.vmid} ({vm.name}): "
                    "stop that VM or remove the device from it first"
                )
