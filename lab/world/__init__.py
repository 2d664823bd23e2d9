"""One world model behind the lab's three APIs, so actions have consequences across them.

The Proxmox host, its PCI devices and VMs; the Talos machines inside the VMs and etcd;
and the Kubernetes objects (through `ObjectStore`). A stopped VM makes its Talos API
unreachable and its Node NotReady; a graceful Talos reset leaves etcd and cordons and
drains its Node; a clone boots into maintenance mode and joins when configured. Servers call
the methods here and never change each other's state directly.

Each area is its own module around one shared `WorldState` (facts, lock, clock):
`kube` (objects, scheduling), `pve` (PCI devices, VM lifecycle), `talos` (machines,
etcd), `faults` (injection). `World` builds them in dependency order (Kubernetes, then
Talos, then Proxmox, then faults) and is the one door the servers and tests go through.

Every state change happens under `World.lock`. Delayed effects (boot, task completion)
run on the world's clock thread, stopped by `close()`.
"""

from __future__ import annotations

from collections.abc import Callable

from dapper.lab.world.faults import FAULT_KINDS, FaultInjector
from dapper.lab.world.kube import KubeWorld
from dapper.lab.world.kube_objects import pod_gpu_request, pod_object
from dapper.lab.world.mayastor import MayastorWorld
from dapper.lab.world.model import (
    APIS,
    DAPPER_NODES,
    GIB,
    GPU_ADDRESSES,
    GPU_REPLICAS,
    HBA_ADDRESSES,
    KUBERNETES_VERSION,
    MIB,
    PVE_HOST,
    SSD_BYTES,
    TALOS_ISO,
    TALOS_VERSION,
    TEMPLATE_NAME,
    TEMPLATE_VMID,
    EtcdMemberState,
    LabVm,
    Machine,
    NodeSpec,
    PciDevice,
    PciMapping,
    WriteRecord,
    node_specs,
)
from dapper.lab.world.pve import ProxmoxWorld
from dapper.lab.world.state import Timings, WorldError, WorldState
from dapper.lab.world.talos import ApplyOutcome, EtcdError, TalosWorld
from dapper.lab.world.volume_attach import AttachDetach

# "running": the Dapper cluster as it runs; "bare": an empty Proxmox host to bootstrap.
STAGES = ("running", "bare")


class World(WorldState):
    """The twin's state and its areas; see the module docstring for the consequences."""

    def __init__(
        self,
        nodes: int = 7,
        timings: Timings | None = None,
        seed: int = 1,
        *,
        stage: str = "running",
    ) -> None:
        if stage not in STAGES:
            raise WorldError(f"unknown lab stage {stage!r}: one of {', '.join(STAGES)}")
        super().__init__(nodes, timings, seed)
        self.stage = stage
        self.kube = KubeWorld(self)
        self.mayastor = MayastorWorld(self)  # volumes of the claims Kubernetes gets
        # CSI volumes attached to the nodes their pods run on (VolumeAttachments)
        self.attach_detach = AttachDetach(self, self._kubelet_posting)
        self.talos = TalosWorld(self, self.kube)
        self.pve = ProxmoxWorld(self, self.talos)
        self.talos.stop_vm = self.pve.vm_stop
        self.kube.set_kubelet_posting(self._kubelet_posting)
        self.fault_injector = FaultInjector(self, self.kube, self.talos, self.pve)
        if stage == "bare":
            self._seed_host()
            self.kube.watch_cni()
        else:
            self._seed()
        self.clock.start()

    def _seed_host(self) -> None:
        """The bare stage: the Proxmox host alone (devices, mappings, ISOs, template), no
        VM, machine, etcd or Kubernetes object. Each storage HBA's SSD is the one the
        running lab's storage node of that rank holds, so the tree's DiskPools (which name
        disks by WWN) find their disks on whichever VM the runbook gives hba-N."""
        self.pve.seed_pci()
        storage = [s for s in self.specs if s.storage]
        for hba, spec in zip(HBA_ADDRESSES, storage, strict=False):
            self.hba_disk_seed[hba] = spec.hostname
        self.pve.seed_template()
        self.pve.seed_storage()

    def _seed(self) -> None:
        """The Dapper cluster as it runs: host devices, one VM and machine per node, then
        the Kubernetes objects (the order keeps the seeded random choices stable)."""
        self.pve.seed_pci()
        hbas = iter(HBA_ADDRESSES)
        for spec in self.specs:
            hba = next(hbas, None) if spec.storage else None
            vm = self.pve.seed_vm(spec, hba)
            self.talos.seed_machine(spec, vm)
        self.kube.seed()
        self.pve.seed_template()
        self.pve.seed_storage()

    def _kubelet_posting(self, node: str) -> bool:
        """A node's kubelet runs and posts: its Node's Ready condition is the kubelet's own
        (True or False, not Unknown), a machine of that name answers with its kubelet up
        (not stopped by the node-notready fault)."""
        return (
            self.kube.ready_status(node) in ("True", "False")
            and self.talos.posting(node)
            and f"node-notready:{node}" not in self.faults
        )

    def close(self) -> None:
        self.mayastor.close()
        self.clock.stop()
        self.store.close()
        self.clock.join()

    # -- Kubernetes ------------------------------------------------------------------------

    def ensure_daemonset(
        self,
        ns: str,
        name: str,
        *,
        cpu: str = "50m",
        memory: str = "64Mi",
        node_selector: dict[str, str] | None = None,
        gpu: int = 0,
        tolerate_control_plane: bool = True,
    ) -> None:
        self.kube.ensure_daemonset(
            ns,
            name,
            cpu=cpu,
            memory=memory,
            node_selector=node_selector,
            gpu=gpu,
            tolerate_control_plane=tolerate_control_plane,
        )

    def ensure_namespace(self, ns: str) -> None:
        self.kube.ensure_namespace(ns)

    def pods(self, *, node: str | None = None, namespace: str | None = None) -> list[dict]:
        return self.kube.pods(node=node, namespace=namespace)

    def node_ready(self, name: str) -> bool:
        return self.kube.node_ready(name)

    def schedule(self, pod: dict) -> str | None:
        return self.kube.schedule(pod)

    def delete_node(self, name: str) -> None:
        self.kube.delete_node(name)

    def replace_pod(self, pod: dict) -> dict | None:
        return self.kube.replace_pod(pod)

    # -- Proxmox ---------------------------------------------------------------------------

    def vm(self, vmid: int) -> LabVm:
        return self.pve.vm(vmid)

    def vm_start(self, vmid: int) -> None:
        self.pve.vm_start(vmid)

    def vm_stop(self, vmid: int) -> None:
        self.pve.vm_stop(vmid)

    def vm_reboot(self, vmid: int) -> None:
        self.pve.vm_reboot(vmid)

    def vm_reset(self, vmid: int) -> None:
        self.pve.vm_reset(vmid)

    def vm_clone(
        self,
        vmid: int,
        newid: int,
        name: str | None = None,
        *,
        full: bool | None = None,
        storage: str = "",
        description: str = "",
    ) -> LabVm:
        return self.pve.vm_clone(
            vmid, newid, name, full=full, storage=storage, description=description
        )

    def vm_create(self, vmid: int, config: dict[str, str]) -> LabVm:
        return self.pve.vm_create(vmid, config)

    def vm_destroy(self, vmid: int) -> None:
        self.pve.vm_destroy(vmid)

    def vm_set_config(self, vmid: int, changes: dict[str, str], delete: list[str]) -> None:
        self.pve.vm_set_config(vmid, changes, delete)

    # -- Talos and etcd --------------------------------------------------------------------

    def machine(self, node: str) -> Machine:
        return self.talos.machine(node)

    def machine_of_vm(self, vmid: int) -> Machine | None:
        return self.talos.machine_of_vm(vmid)

    def reachable(self, machine: Machine) -> bool:
        return self.talos.reachable(machine)

    def talos_apply_config(
        self,
        node: str,
        data: bytes,
        mode: str = "auto",
        *,
        dry_run: bool = False,
        try_timeout: float | None = None,
    ) -> ApplyOutcome:
        return self.talos.apply_config(node, data, mode, dry_run=dry_run, try_timeout=try_timeout)

    def talos_reboot(self, node: str) -> None:
        self.talos.reboot(node)

    def talos_shutdown(self, node: str) -> None:
        """Talos powers the machine off; Proxmox sees its VM stop."""
        with self.lock:
            self.pve.vm_stop(self.talos.machine(node).vmid)

    def talos_reset(
        self,
        node: str,
        graceful: bool = True,
        *,
        reboot: bool = True,
        wipe: str = "all",
        partitions: tuple[tuple[str, bool], ...] = (),
        user_disks: tuple[str, ...] = (),
    ) -> None:
        """Checked now; the reset itself runs a moment after (the call has returned)."""
        self.talos.reset(
            node, graceful, reboot=reboot, wipe=wipe, partitions=partitions, user_disks=user_disks
        )

    def talos_bootstrap(self, node: str) -> None:
        self.talos.bootstrap(node)

    def etcd_remove_member(self, member_id: int) -> None:
        self.talos.etcd_remove_member(member_id)

    def etcd_leave(self, node: str) -> None:
        self.talos.etcd_leave(node)

    def etcd_forfeit_leadership(self, node: str) -> str:
        return self.talos.etcd_forfeit_leadership(node)

    # -- faults ----------------------------------------------------------------------------

    def inject(self, fault: str) -> None:
        """Turn a fault on; see FAULT_KINDS for the forms."""
        self.fault_injector.inject(fault)

    def clear(self, fault: str) -> None:
        self.fault_injector.clear(fault)

    def on_fault(self, fn: Callable[[str, bool], None]) -> None:
        self.fault_injector.on_fault(fn)

    def api_down(self, api: str) -> bool:
        return self.fault_injector.api_down(api)

    def api_delay(self, api: str) -> float:
        return self.fault_injector.api_delay(api)

    def failing_kustomization(self, namespace: str, name: str) -> bool:
        return self.fault_injector.failing_kustomization(namespace, name)


__all__ = [
    "APIS",
    "DAPPER_NODES",
    "FAULT_KINDS",
    "GIB",
    "GPU_ADDRESSES",
    "GPU_REPLICAS",
    "HBA_ADDRESSES",
    "KUBERNETES_VERSION",
    "MIB",
    "PVE_HOST",
    "SSD_BYTES",
    "STAGES",
    "TALOS_ISO",
    "TALOS_VERSION",
    "TEMPLATE_NAME",
    "TEMPLATE_VMID",
    "ApplyOutcome",
    "EtcdError",
    "EtcdMemberState",
    "LabVm",
    "Machine",
    "NodeSpec",
    "PciDevice",
    "PciMapping",
    "Timings",
    "World",
    "WorldError",
    "WriteRecord",
    "node_specs",
    "pod_gpu_request",
    "pod_object",
]
