"""kubernetes/bootstrap/proxmox/vms.yaml: the Proxmox VM behind each talconfig node.

talconfig.yaml says what runs on a machine (hostname, address, MAC, role); this file
says what the machine is (VMID, CPU, memory, OS disk, passthrough by PCI resource
mapping). Both are read together so a VM is never planned for a node talconfig.yaml does
not have, nor a node left without a VM. Unknown keys are refused with their file:line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.backends.errors import BackendError
from dapper.backends.talosgen.talconfig import TalConfig
from dapper.backends.talosgen.yamlio import YamlLoadError, line_of, load_documents, to_plain

VMS_FILE = Path("kubernetes/bootstrap/proxmox/vms.yaml")
_TOP = {"template", "roles", "vms"}
_ROLE = {"cores", "memory", "disk"}
_VM = {"name", "vmid", "pci", "cores", "memory", "disk"}
ROLES = ("controlplane", "worker")


@dataclass(frozen=True)
class VmPlan:
    """One VM as the tree wants it (MAC and role from talconfig.yaml)."""

    name: str
    vmid: int
    role: str
    mac: str
    cores: int
    memory: int  # MiB
    disk_gib: int
    mappings: tuple[str, ...]  # PCI resource mapping ids, in hostpci order

    @property
    def control_plane(self) -> bool:
        return self.role == "controlplane"

    def hostpci(self) -> dict[str, str]:
        """hostpciN lines: every device through its mapping, PCIe on q35."""
        return {f"hostpci{i}": f"mapping={m},pcie=1" for i, m in enumerate(self.mappings)}


@dataclass(frozen=True)
class VmPlans:
    template: str
    roles: dict[str, dict[str, int]]
    vms: tuple[VmPlan, ...]

    def vm(self, name: str) -> VmPlan | None:
        return next((v for v in self.vms if v.name == name), None)


def load_vm_plans(root: Path, talconfig: TalConfig) -> VmPlans:
    """The tree's VM plans, checked against talconfig.yaml; BackendError with file:line."""
    path = root / VMS_FILE
    where = str(VMS_FILE)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BackendError(f"{where}: missing (the VMs bootstrap creates)", code="TREE") from None
    try:
        docs = load_documents(text)
    except YamlLoadError as exc:
        raise BackendError(f"{where}:{exc.line}: {exc.reason}", code="TREE") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise BackendError(f"{where}: expected one mapping", code="TREE")
    raw = docs[0]
    _only(raw, _TOP, where)
    roles = _roles(raw, where)
    nodes = {n.hostname: n for n in talconfig.nodes}
    plans: list[VmPlan] = []
    seen_ids: set[int] = set()
    for item in raw.get("vms") or []:
        at = f"{where}:{line_of(item)}"
        if not isinstance(item, dict):
            raise BackendError(f"{at}: a VM is a mapping", code="TREE")
        _only(item, _VM, where)
        name = str(item.get("name") or "")
        node = nodes.get(name)
        if node is None:
            raise BackendError(
                f"{at}: {name or 'a VM'} is not a node in talconfig.yaml", code="TREE"
            )
        vmid = _int(item, "vmid", at)
        if vmid in seen_ids or any(p.name == name for p in plans):
            raise BackendError(f"{at}: {name} (VMID {vmid}) is planned twice", code="TREE")
        seen_ids.add(vmid)
        size = roles[node.role]
        plans.append(
            VmPlan(
                name,
                vmid,
                node.role,
                node.macs[0] if node.macs else "",
                _int(item, "cores", at, size["cores"]),
                _int(item, "memory", at, size["memory"]),
                _int(item, "disk", at, size["disk"]),
                tuple(str(m) for m in to_plain(item.get("pci") or [])),
            )
        )
    missing = [n for n in nodes if not any(p.name == n for p in plans)]
    if missing:
        raise BackendError(f"{where}: no VM for {', '.join(missing)}", code="TREE")
    template = str(raw.get("template") or "")
    return VmPlans(template, roles, tuple(plans))


def _roles(raw: dict[str, Any], where: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    given = raw.get("roles") or {}
    for role in ROLES:
        entry = given.get(role)
        at = f"{where}:{line_of(given)}"
        if not isinstance(entry, dict):
            raise BackendError(f"{at}: roles.{role} is missing", code="TREE")
        _only(entry, _ROLE, where)
        out[role] = {k: _int(entry, k, at) for k in ("cores", "memory", "disk")}
    return out


def _only(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = [k for k in mapping if k not in allowed]
    if extra:
        raise BackendError(f"{where}:{line_of(mapping)}: unknown key {extra[0]!r}", code="TREE")


def _int(mapping: dict[str, Any], key: str, at: str, default: int | None = None) -> int:
    value = mapping.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BackendError(f"{at}: {key} must be a positive whole number", code="TREE")
    return value
