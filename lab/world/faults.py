"""Faults the lab can inject, so the console and the runbooks can be tried against them.

A fault is a string `kind:argument` (see FAULT_KINDS). Injecting one changes the facts the
other areas own (a VM stops, a Node goes NotReady, a GPU leaves the bus); the rest (an API
down or slow, a failing Kustomization) is read by the servers and the Flux twin through
`api_down`, `api_delay` and `failing_kustomization`.

Three stage a dead node for the node-replace runbook: `vm-destroyed` (the VM deleted by
mistake: machine gone, Node NotReady after the grace period), `disk-failed` (the VM runs,
its OS is dead: Talos stops answering, Node NotReady after grace; stopping or destroying
the VM still works) and `node-wedged` (the kubelet stops posting: NotReady after grace,
Talos still answers). The first two are permanent (clearing them is refused: rebuild the
node); clearing `node-wedged` lets the kubelet post again.
"""

from __future__ import annotations

from collections.abc import Callable

from dapper.lab.world.kube import KubeWorld
from dapper.lab.world.pve import ProxmoxWorld
from dapper.lab.world.state import WorldError, WorldState
from dapper.lab.world.talos import NOT_POSTING, READY, TalosWorld

FAULT_KINDS = (
    "node-notready",  # node-notready:<node>
    "vm-stopped",  # vm-stopped:<vmid or name>
    "api-down",  # api-down:<kubernetes|proxmox|talos>
    "api-slow",  # api-slow:<api>[:seconds]
    "etcd-unhealthy",  # etcd-unhealthy:<node>
    "ks-failing",  # ks-failing:<namespace>/<name>
    "pool-degraded",  # pool-degraded:<pool>
    "gpu-gone",  # gpu-gone:<pci address>
    "vm-destroyed",  # vm-destroyed:<vmid or name> (permanent)
    "disk-failed",  # disk-failed:<node> (permanent)
    "node-wedged",  # node-wedged:<node>
)
PERMANENT = ("vm-destroyed", "disk-failed")


def parse_fault(fault: str) -> tuple[str, str]:
    """(kind, argument) of a fault string, or WorldError naming the known kinds."""
    kind, _, arg = fault.partition(":")
    if kind not in FAULT_KINDS:
        raise WorldError(f"unknown fault {fault!r}; known: {', '.join(FAULT_KINDS)}")
    return kind, arg


class FaultInjector:
    """Turns faults on and off and tells subscribed servers (api-down closes listeners)."""

    def __init__(
        self, state: WorldState, kube: KubeWorld, talos: TalosWorld, pve: ProxmoxWorld
    ) -> None:
        self.state = state
        self.kube = kube
        self.talos = talos
        self.pve = pve
        self.lock = state.lock
        self._listeners: list[Callable[[str, bool], None]] = []

    def inject(self, fault: str) -> None:
        """Turn a fault on; see FAULT_KINDS for the forms."""
        kind, arg = parse_fault(fault)
        with self.lock:
            if kind == "vm-stopped":
                self.pve.vm_stop(self.pve.vmid(arg))
                return
            if kind == "vm-destroyed":
                self._destroy_vm(self.pve.vmid(arg))
            elif kind == "disk-failed":
                self.talos.fail_disk(arg)
            elif kind == "node-wedged":
                self.talos.wedge_kubelet(arg)
            self.state.faults.add(fault)
            if kind == "node-notready":
                # the kubelet stopped: Kubernetes stops hearing from it, Talos sees it fail
                self.kube.set_node_ready(arg, False, *NOT_POSTING)
                self.talos.machine(arg).service_overrides["kubelet"] = "Failed"
            elif kind == "etcd-unhealthy":
                self.talos.set_etcd_health(arg, False)
            elif kind == "pool-degraded":
                self.kube.set_pool_state(arg, "Degraded")
            elif kind == "gpu-gone":
                if arg not in self.state.pci:
                    raise WorldError(f"no PCI device {arg}")
                self.state.pci[arg].present = False
                self.kube.refresh_gpu_capacity()
        self._notify(fault, True)

    def clear(self, fault: str) -> None:
        """Turn a fault off (for vm-stopped: start the VM again). vm-destroyed and
        disk-failed are permanent: WorldError(409), nothing changes."""
        kind, _, arg = fault.partition(":")
        if kind in PERMANENT:
            raise WorldError(
                f"fault {kind} is permanent: the node must be rebuilt (node-replace)", 409
            )
        with self.lock:
            if kind == "vm-stopped":
                self.pve.vm_start(self.pve.vmid(arg))
                return
            self.state.faults.discard(fault)
            if kind == "node-wedged":
                self.talos.unwedge_kubelet(arg)
            if kind == "node-notready":
                self.kube.set_node_ready(arg, True, *READY)
                self.talos.machine(arg).service_overrides.pop("kubelet", None)
            elif kind == "etcd-unhealthy":
                self.talos.set_etcd_health(arg, True)
            elif kind == "pool-degraded":
                self.kube.set_pool_state(arg, "Online")
            elif kind == "gpu-gone":
                self.state.pci[arg].present = True
                self.kube.refresh_gpu_capacity()
        self._notify(fault, False)

    def _destroy_vm(self, vmid: int) -> None:
        """Gone from Proxmox as if deleted by mistake: powered off (its Node stops
        posting), then destroyed with its machine; its etcd member stays, unhealthy."""
        vm = self.pve.vm(vmid)
        if vm.status == "running":
            self.pve.vm_stop(vmid)
        self.pve.vm_destroy(vmid)

    def on_fault(self, fn: Callable[[str, bool], None]) -> None:
        """Servers subscribe to open/close their listeners on api-down."""
        self._listeners.append(fn)

    def _notify(self, fault: str, active: bool) -> None:
        for fn in list(self._listeners):
            fn(fault, active)

    def api_down(self, api: str) -> bool:
        return f"api-down:{api}" in self.state.faults

    def api_delay(self, api: str) -> float:
        for f in self.state.faults:
            parts = f.split(":")
            if parts[0] == "api-slow" and len(parts) > 1 and parts[1] == api:
                return float(parts[2]) if len(parts) > 2 else 3.0
        return 0.0

    def failing_kustomization(self, namespace: str, name: str) -> bool:
        return f"ks-failing:{namespace}/{name}" in self.state.faults
