"""What bootstrap works from, read once per run: the tree's nodes and VMs, the paths the
kubeconfig and talosconfig go to, and the helmfile command.

The tree is the whole plan: talconfig.yaml (nodes, addresses, MACs, roles),
kubernetes/bootstrap/proxmox/vms.yaml (VMIDs, sizes, passthrough) and
kubernetes/bootstrap/apps/helmfile.yaml (the releases Flux needs to start).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dapper.actions.engine import RunContext, StepFailed
from dapper.actions.machines import Machines
from dapper.actions.vm_build import vm_plans
from dapper.backends.errors import BackendError

if TYPE_CHECKING:
    from dapper.backends.talosgen.talconfig import TalConfig, TalNode
    from dapper.backends.talosgen.vmplan import VmPlan

HELMFILE = "kubernetes/bootstrap/apps/helmfile.yaml"
CRDS_RELEASE = "prometheus-operator-crds"


def talconfig(ctx: RunContext) -> TalConfig:
    found = ctx.memory.get("talconfig")
    if found is None:
        from dapper.backends.talosgen.talconfig import load_talconfig

        try:
            found = load_talconfig(ctx.root)
        except BackendError as exc:
            raise StepFailed(exc.reason) from None
        ctx.memory["talconfig"] = found
    return found


def node_of(ctx: RunContext, plan: VmPlan) -> TalNode:
    node = talconfig(ctx).node(plan.name)
    if node is None:  # load_vm_plans refuses this; kept for the type checker
        raise StepFailed(f"{plan.name} is not in talconfig.yaml")
    return node


def plans(ctx: RunContext) -> tuple[VmPlan, ...]:
    return vm_plans(ctx).vms


def first_control_plane(ctx: RunContext) -> TalNode:
    planes = [n for n in talconfig(ctx).nodes if n.control_plane]
    if not planes:
        raise StepFailed("talconfig.yaml has no control plane node")
    return planes[0]


def machines(ctx: RunContext) -> Machines:
    return Machines.of(ctx)


def timeout(ctx: RunContext) -> float:
    return float(ctx.params.get("timeout") or 900)


def kubeconfig_path(ctx: RunContext) -> Path:
    if not ctx.config.kubeconfig:
        raise StepFailed("no kubeconfig path configured (kubeconfig in config.toml)")
    return Path(os.path.expanduser(ctx.config.kubeconfig))


def talosconfig_path(ctx: RunContext) -> Path:
    if not ctx.config.talosconfig:
        raise StepFailed("no talosconfig path configured (talosconfig in config.toml)")
    return Path(os.path.expanduser(ctx.config.talosconfig))


def helmfile_command(ctx: RunContext) -> str:
    """The helmfile executable: the configured one, else helmfile on PATH (with helm)."""
    configured = ctx.config.helmfile
    if configured:
        path = os.path.expanduser(configured)
        if not os.access(path, os.X_OK):
            raise StepFailed(f"helmfile {path} is not an executable file")
        return path
    found = shutil.which("helmfile")
    if not found or not shutil.which("helm"):
        missing = "helmfile" if not found else "helm"
        raise StepFailed(
            f"{missing} is not on PATH: install helmfile 1.1.7 and helm 3.18.5 (mise install), "
            "or set helmfile = <path> in the configuration"
        )
    return found
