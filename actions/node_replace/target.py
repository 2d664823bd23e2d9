"""What node-replace works on, resolved once per run from the tree, the cluster and Proxmox.

The tree says what the node must be (talconfig.yaml: hostname, role, address, MAC; a
DiskPool in the Flux tree makes it a storage node; the GPU patch makes it the GPU node).
The old VM is found by name on Proxmox; when it is gone (deleted by mistake) its facts come
from the journal of this run, or from the tree's VM plan (vms.yaml). Facts that later steps
destroy (the old VMID, its CPU, memory and passthrough lines) are journaled by the first
step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.actions.engine import RunContext, StepFailed
from dapper.actions.machines import Machines
from dapper.actions.pci import HOSTPCI_KEYS
from dapper.actions.preflight import identities
from dapper.backends.gitops.yamldocs import parse_text
from dapper.backends.talosgen.talconfig import TalConfig, TalNode, load_talconfig

DISKPOOLS = "kubernetes/apps/openebs-system/openebs/pools/diskpools.yaml"
GPU_PATCH_MARK = "patches/gpu/"
# The Dapper VMs' sizes per role, used when the old VM is gone and the run never saw it.


@dataclass(frozen=True)
class Target:
    """The node to replace as the tree declares it."""

    node: TalNode
    talconfig: TalConfig
    storage_pool: str  # the DiskPool's name in the tree, or ""
    pool_disks: tuple[str, ...]
    gpu: bool

    @property
    def hostname(self) -> str:
        return self.node.hostname

    @property
    def control_plane(self) -> bool:
        return self.node.control_plane

    @property
    def other_control_planes(self) -> list[TalNode]:
        return [n for n in self.talconfig.nodes if n.control_plane and n.hostname != self.hostname]

    @property
    def kind(self) -> str:
        parts = ["control plane" if self.control_plane else "worker"]
        if self.storage_pool:
            parts.append("storage")
        if self.gpu:
            parts.append("GPU")
        return " + ".join(parts)


def disk_pools_in_tree(root: Path) -> dict[str, tuple[str, tuple[str, ...], int]]:
    """node -> (DiskPool name, disks, line) from the tree's diskpools.yaml."""
    path = root / DISKPOOLS
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, tuple[str, ...], int]] = {}
    for doc, line in parse_text(path.read_text(), DISKPOOLS):
        if not isinstance(doc, dict) or doc.get("kind") != "DiskPool":
            continue
        spec = doc.get("spec") or {}
        name = str((doc.get("metadata") or {}).get("name") or "")
        node = str(spec.get("node") or "")
        if node:
            out[node] = (name, tuple(str(d) for d in spec.get("disks") or ()), line)
    return out


def resolve(ctx: RunContext) -> Target:
    """The Target of this run (cached in memory): refuses a node the tree does not have."""
    cached = ctx.memory.get("target")
    if cached is not None:
        return cached
    name = str(ctx.params.get("node") or "").strip()
    if not name:
        raise StepFailed("parameter node= is required (a hostname from talconfig.yaml)")
    tal = load_talconfig(ctx.root)
    node = tal.node(name)
    if node is None:
        known = ", ".join(n.hostname for n in tal.nodes)
        raise StepFailed(f"no node {name} in talconfig.yaml; nodes: {known}")
    pools = disk_pools_in_tree(ctx.root)
    pool, disks, _ = pools.get(name, ("", (), 0))
    gpu = any(GPU_PATCH_MARK in p for p in node.patches)
    target = Target(node, tal, pool, disks, gpu)
    ctx.memory["target"] = target
    return target


def machines(ctx: RunContext) -> Machines:
    return Machines.of(ctx)


def old_vm_facts(ctx: RunContext) -> dict[str, Any]:
    """The old VM as the first step journaled it, or as Proxmox shows it now."""
    saved = ctx.out("impact", "old_vm")
    if saved is not None:
        return dict(saved)
    return observe_old_vm(ctx)


def observe_old_vm(ctx: RunContext) -> dict[str, Any]:
    """{} when Proxmox has no VM of the node's name; else its id, size and passthrough."""
    target = resolve(ctx)
    vm = machines(ctx).vm_named(target.hostname)
    if vm is None:
        return {}
    config = dict(vm.config)
    return {
        "vmid": vm.vmid,
        "status": vm.status,
        "cores": vm.cpus or int(config.get("cores", "0") or 0),
        "memory": int(config.get("memory", "0") or 0),
        "disk_gib": vm.disk_total // (1024**3) if vm.disk_total else 0,
        "macs": list(vm.macs),
        "hostpci": {k: config[k] for k in HOSTPCI_KEYS if k in config},
    }


def sizes(ctx: RunContext) -> dict[str, int]:
    """CPU, memory and OS disk for the new VM: the old VM's, else the tree's plan
    (kubernetes/bootstrap/proxmox/vms.yaml, as bootstrap creates it)."""
    from dapper.actions.vm_build import vm_plans

    target = resolve(ctx)
    old = old_vm_facts(ctx)
    plans = vm_plans(ctx)
    plan = plans.vm(target.hostname)
    if plan is not None:
        base = {"cores": plan.cores, "memory": plan.memory, "disk_gib": plan.disk_gib}
    else:
        role = plans.roles[target.node.role]
        base = {"cores": role["cores"], "memory": role["memory"], "disk_gib": role["disk"]}
    for key in ("cores", "memory", "disk_gib"):
        if old.get(key):
            base[key] = int(old[key])
    return base


def generated_config(ctx: RunContext) -> bytes:
    """The node's machine config from the tree as it is now (decrypted in memory only)."""
    from dapper.backends.talosgen.generate import generate_configs

    target = resolve(ctx)
    generated = generate_configs(ctx.root, identities(ctx), nodes=[target.hostname])
    return generated.config_for(target.hostname)
