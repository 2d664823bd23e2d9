"""The lab's Talos machines and etcd: boot, join, apply, reboot, reset, bootstrap, members.

A machine answers only while its VM runs and it has booted. A configured machine that
boots registers its Node and, as a control plane, joins etcd; a reset machine leaves both
and comes back in maintenance mode. Power itself belongs to Proxmox (`ProxmoxWorld`),
which calls `power_on`/`power_off` here.
"""

from __future__ import annotations

from dapper.lab.world.kube import KubeWorld
from dapper.lab.world.kube_objects import name_suffix
from dapper.lab.world.model import GIB, SSD_BYTES, EtcdMemberState, LabVm, Machine, NodeSpec
from dapper.lab.world.state import WorldError, WorldState

NOT_POSTING = ("NodeStatusUnknown", "Kubelet stopped posting node status.")


class TalosWorld:
    """Talos machines (by IP) and the etcd members of the control planes."""

    def __init__(self, state: WorldState, kube: KubeWorld) -> None:
        self.state = state
        self.kube = kube
        self.lock = state.lock

    # -- the machines the lab starts with --------------------------------------------------

    def seed_machine(self, spec: NodeSpec, vm: LabVm) -> None:
        """A configured, booted machine in `vm`; control planes are etcd members."""
        disks = [("/dev/vda", vm.disk_gib * GIB, "QEMU HARDDISK")]
        if spec.storage:
            disks.append(("/dev/sda", SSD_BYTES, "SAMSUNG MZILT3T8HBLS"))
        m = Machine(
            spec.ip,
            spec.vmid,
            spec.hostname,
            role=spec.role,
            maintenance=False,
            config=machine_config(spec.hostname, spec.role),
            disks=disks,
        )
        self.state.machines[spec.ip] = m
        m.booted = True
        if spec.role == "controlplane":
            self._add_etcd_member(m)

    # -- lookups ---------------------------------------------------------------------------

    def machine(self, node: str) -> Machine:
        """A machine by IP or hostname, or WorldError(404)."""
        with self.lock:
            if node in self.state.machines:
                return self.state.machines[node]
            for m in self.state.machines.values():
                if m.hostname == node:
                    return m
        raise WorldError(f"no machine {node}", 404)

    def machine_of_vm(self, vmid: int) -> Machine | None:
        for m in self.state.machines.values():
            if m.vmid == vmid:
                return m
        return None

    def reachable(self, machine: Machine) -> bool:
        vm = self.state.vms.get(machine.vmid)
        return bool(vm and vm.status == "running" and machine.booted)

    # -- power, as Proxmox drives it -------------------------------------------------------

    def power_on(self, vm: LabVm) -> None:
        """The VM started: its machine (a new maintenance-mode one if it has none) boots."""
        if self.machine_of_vm(vm.vmid) is None:
            machine = Machine(
                self._free_ip(),
                vm.vmid,
                f"talos-{name_suffix(self.state.rng)}",
                disks=[("/dev/vda", vm.disk_gib * GIB, "QEMU HARDDISK")],
            )
            self.state.machines[machine.ip] = machine

    def boot_later(self, vmid: int) -> None:
        self.state.later(self.state.timings.boot, lambda: self.booted(vmid))

    def booted(self, vmid: int) -> None:
        """Boot finished: the machine answers, and a configured one joins the cluster."""
        with self.lock:
            vm = self.state.vms.get(vmid)
            machine = self.machine_of_vm(vmid)
            if vm is None or vm.status != "running" or machine is None:
                return
            machine.booted = True
            if not machine.maintenance:
                self.join(machine)

    def power_off(self, vmid: int) -> None:
        """The VM stopped: its Node stops posting status and its etcd member is unhealthy."""
        machine = self.machine_of_vm(vmid)
        if machine is None:
            return
        machine.booted = False
        if not machine.maintenance:
            self.kube.set_node_ready(machine.hostname, False, *NOT_POSTING)
        for m in self.state.etcd.values():
            if m.ip == machine.ip:
                m.healthy = False

    def forget_vm(self, vmid: int) -> None:
        """The VM was destroyed: its machine is gone."""
        machine = self.machine_of_vm(vmid)
        if machine is not None:
            del self.state.machines[machine.ip]

    def _free_ip(self) -> str:
        used = set(self.state.machines)
        for last in range(100, 250):
            ip = f"10.100.0.{last}"
            if ip not in used:
                return ip
        raise WorldError("no free address in 10.100.0.0/24", 507)

    # -- the machine API's actions ---------------------------------------------------------

    def apply_config(self, node: str, data: bytes, mode: str = "auto") -> str:
        """Apply a machine config; a maintenance-mode machine installs, reboots and joins."""
        hostname, role = parse_machine_config(data)
        with self.lock:
            m = self.machine(node)
            if m.maintenance:
                m.config = data
                m.role = role
                if hostname:
                    m.hostname = hostname
                    if m.vmid in self.state.vms:
                        self.state.vms[m.vmid].name = hostname
                m.maintenance = False
                m.booted = False
                self.boot_later(m.vmid)
                return "Applied configuration; the machine installs Talos and reboots"
            m.config = data
            if mode == "reboot":
                self.reboot(node)
                return "Applied configuration with a reboot"
            return "Applied configuration without a reboot"

    def join(self, machine: Machine) -> None:
        """A configured machine comes up: its Node registers, control planes join etcd."""
        spec = self.state.spec_of(machine.hostname)
        if spec is None:
            vm = self.state.vms[machine.vmid]
            spec = NodeSpec(
                machine.hostname,
                machine.ip,
                machine.vmid,
                machine.role or "worker",
                vm.macs[0] if vm.macs else "",
                storage=machine.role == "worker",
            )
            self.state.specs.append(spec)
        self.kube.register_node(spec)
        etcd = self.state.etcd
        if (
            machine.role == "controlplane"
            and etcd
            and not any(m.ip == machine.ip for m in etcd.values())
        ):
            self._add_etcd_member(machine)
        for m in etcd.values():
            if m.ip == machine.ip and f"etcd-unhealthy:{m.hostname}" not in self.state.faults:
                m.healthy = True
        self.kube.reschedule_pending()

    def reboot(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            m.booted = False
            if not m.maintenance:
                self.kube.set_node_ready(m.hostname, False, *NOT_POSTING)
        self.boot_later(m.vmid)

    def reset(self, node: str, graceful: bool = True) -> None:
        """Leave etcd (graceful), leave Kubernetes, wipe, reboot into maintenance mode."""
        with self.lock:
            m = self.machine(node)
            if graceful and m.role == "controlplane":
                self._remove_etcd_members_at(m.ip)
            self.kube.delete_node(m.hostname)
            m.maintenance = True
            m.config = None
            m.role = ""
            m.booted = False
        self.boot_later(m.vmid)

    # -- etcd ------------------------------------------------------------------------------

    def _add_etcd_member(self, machine: Machine) -> None:
        mid = self.state.rng.getrandbits(64)
        self.state.etcd[mid] = EtcdMemberState(mid, machine.hostname, machine.ip)

    def _remove_etcd_members_at(self, ip: str) -> list[int]:
        ids = [k for k, v in self.state.etcd.items() if v.ip == ip]
        for k in ids:
            del self.state.etcd[k]
        return ids

    def bootstrap(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            if m.role != "controlplane":
                raise WorldError("etcd is not configured on this node", 400)
            if self.state.etcd:
                raise WorldError("etcd data directory is not empty", 409)
            self._add_etcd_member(m)

    def etcd_remove_member(self, member_id: int) -> None:
        with self.lock:
            if member_id not in self.state.etcd:
                raise WorldError(f"etcd member {member_id:016x} not found", 404)
            del self.state.etcd[member_id]

    def etcd_leave(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            if not any(v.ip == m.ip for v in self.state.etcd.values()):
                raise WorldError("this node is not an etcd member", 412)
            self._remove_etcd_members_at(m.ip)

    def set_etcd_health(self, node: str, healthy: bool) -> None:
        """Mark the members on `node` (hostname or IP) healthy or not."""
        for m in self.state.etcd.values():
            if m.hostname == node or m.ip == node:
                m.healthy = healthy


def machine_config(hostname: str, role: str) -> bytes:
    """The minimal Talos config the lab's seeded machines carry."""
    return (
        "version: v1alpha1\nmachine:\n"
        f"  type: {role}\n  network:\n    hostname: {hostname}\n"
        "cluster:\n  clusterName: kubernetes\n"
        "  controlPlane:\n    endpoint: https://10.100.0.40:6443\n"
    ).encode()


def parse_machine_config(data: bytes) -> tuple[str, str]:
    """(hostname, role) from a Talos machine config; raises WorldError if it is not one."""
    from ruamel.yaml import YAML

    try:
        doc = YAML(typ="safe").load(data.decode())
    except Exception as exc:
        raise WorldError(f"failed to parse config: {str(exc).splitlines()[0]}", 400) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("machine"), dict):
        raise WorldError("failed to parse config: not a Talos machine config", 400)
    machine = doc["machine"]
    role = machine.get("type", "")
    if role not in ("controlplane", "worker", "init"):
        raise WorldError(f"invalid machine type {role!r}", 400)
    hostname = ((machine.get("network") or {}).get("hostname")) or ""
    return hostname, "controlplane" if role == "init" else role
