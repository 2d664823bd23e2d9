"""Every `--fault` is checked against the lab before anything starts: its kind, and that
its target exists (a node, a VM, an API, a Kustomization, a pool, a GPU). A typo used to
start a healthy lab without a word, which reads as "the console missed the fault"."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dapper.lab import flux_scale
from dapper.lab.world import World, WorldError
from dapper.lab.world.faults import FAULT_KINDS, parse_fault

APIS = ("kubernetes", "proxmox", "talos")
FORMS = {
    "node-notready": "node-notready:<node>",
    "vm-stopped": "vm-stopped:<vmid or name>",
    "api-down": "api-down:<kubernetes|proxmox|talos>",
    "api-slow": "api-slow:<kubernetes|proxmox|talos>[:seconds]",
    "etcd-unhealthy": "etcd-unhealthy:<control-plane node>",
    "ks-failing": "ks-failing:<namespace>/<name>",
    "pool-degraded": "pool-degraded:<DiskPool name>",
    "gpu-gone": "gpu-gone:<PCI address>",
    "vm-destroyed": "vm-destroyed:<vmid or name> (permanent)",
    "disk-failed": "disk-failed:<node> (permanent)",
    "node-wedged": "node-wedged:<node>",
}
assert set(FORMS) == set(FAULT_KINDS)
_KIND_LINE = re.compile(r"^kind:\s*(\S+)\s*$", re.M)
_NAME = re.compile(r"^  name:\s*(\S+)\s*$", re.M)
_NAMESPACE = re.compile(r"^  namespace:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class FaultTargets:
    nodes: tuple[str, ...]
    control_planes: tuple[str, ...]
    vms: dict[str, int]  # name -> vmid
    pci: tuple[str, ...]
    kustomizations: tuple[str, ...]  # namespace/name
    pools: tuple[str, ...]

    @classmethod
    def of(cls, world: World, repo: Path | None, scale_apps: int) -> FaultTargets:
        ks, pools = _tree_objects(repo)
        synthetic = [
            f"{o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in flux_scale.kustomizations(scale_apps)
        ]
        return cls(
            nodes=tuple(s.hostname for s in world.specs),
            control_planes=tuple(s.hostname for s in world.specs if s.role == "controlplane"),
            vms={vm.name: vm.vmid for vm in world.vms.values()},
            pci=tuple(world.pci),
            kustomizations=(*ks, *synthetic),
            pools=pools,
        )


def _tree_objects(repo: Path | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Flux Kustomizations (namespace/name) and DiskPool names the tree declares; a plain
    scan of the YAML documents, enough to tell a typo from a real target."""
    if repo is None or not (repo / "kubernetes").is_dir():
        return (), ()
    ks, pools = [], []
    for path in sorted((repo / "kubernetes").rglob("*.yaml")):
        for doc in path.read_text(errors="replace").split("\n---"):
            kind = _KIND_LINE.search(doc)
            name = _NAME.search(doc)
            if not kind or not name:
                continue
            if kind.group(1) == "Kustomization" and "kustomize.toolkit.fluxcd.io" in doc:
                namespace = _NAMESPACE.search(doc)
                ks.append(f"{namespace.group(1) if namespace else 'flux-system'}/{name.group(1)}")
            elif kind.group(1) == "DiskPool":
                pools.append(name.group(1))
    return (*dict.fromkeys(["flux-system/flux-system", *ks]),), tuple(dict.fromkeys(pools))


def _one_of(what: str, value: str, known: Iterable[str]) -> WorldError:
    names = list(known)
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return WorldError(f"no {what} {value!r} in the lab (known: {shown or 'none'})")


def check_fault(fault: str, targets: FaultTargets) -> None:
    """WorldError, in the operator's terms, unless `fault` names a kind and a real target."""
    kind, arg = parse_fault(fault)
    if not arg:
        raise WorldError(f"fault {kind} needs a target: {FORMS[kind]}")
    if kind in ("node-notready", "disk-failed", "node-wedged") and arg not in targets.nodes:
        raise _one_of("node", arg, targets.nodes)
    if kind == "etcd-unhealthy" and arg not in targets.control_planes:
        raise _one_of("control-plane node", arg, targets.control_planes)
    if (
        kind in ("vm-stopped", "vm-destroyed")
        and arg not in targets.vms
        and (not arg.isdigit() or int(arg) not in targets.vms.values())
    ):
        raise _one_of("VM", arg, [f"{vmid} {name}" for name, vmid in targets.vms.items()])
    if kind in ("api-down", "api-slow"):
        api, _, seconds = arg.partition(":")
        if api not in APIS:
            raise _one_of("API", api, APIS)
        if seconds and not _positive(seconds):
            raise WorldError(f"api-slow seconds must be a positive number, not {seconds!r}")
    if kind == "ks-failing" and arg not in targets.kustomizations:
        raise _one_of("Flux Kustomization", arg, targets.kustomizations)
    if kind == "pool-degraded" and arg not in targets.pools:
        raise _one_of("DiskPool", arg, targets.pools)
    if kind == "gpu-gone" and arg not in targets.pci:
        raise _one_of("PCI device", arg, targets.pci)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False
