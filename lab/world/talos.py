"""The lab's Talos machines and etcd, as Talos v1.11 and etcd 3.5 behave.

A machine answers only while its VM runs, it has booted and it has its network. A
configured machine that boots applies a staged config, registers its Node once the
cluster has an API server, and
as a control plane runs etcd: with data of its own it rejoins as the member it was (a
member removed meanwhile stays out: etcd refuses to start on a removed member's data);
without data it joins an existing cluster as a learner, removing a stale member of the
same hostname first, and is promoted shortly after; with no cluster to join it waits for
Bootstrap. A config whose OS CA, machine (trustd) token or cluster (bootstrap) token are
not the cluster's installs and boots but never joins. Power belongs to Proxmox
(`ProxmoxWorld`), which calls `power_on`/`power_off` here; a reset that powers off asks it
through `stop_vm`.

etcd membership changes follow etcd's strict reconfiguration check: removing a voting
member needs the remaining started voters to hold quorum and, unless the member is down,
the active voters after the removal to hold quorum; a learner can always go; the last
member cannot. Errors carry the texts Talos wraps around etcd's.

Maintenance mode checks what a node replacement gets wrong: the machine type (config
validation), a hostname (the lab refuses a config without one, rather than join under a
generated name), and the network: a config that selects its interface by
`deviceSelector.hardwareAddr` matching none of the VM's MACs installs and reboots but
comes up without its network (answers nowhere, never joins); a matching one gives the
machine that interface's first static address, under which it answers (its own loopback
address, the Talos server and the guest agent follow) and registers its Node. The old
machine still holding that address with its VM stopped is parked (no network) so the
address is free (it takes it back at a later boot if the address is free then); a live
one keeps it and the newcomer comes up without network. The match is made at every boot,
so a MAC put right in Proxmox takes effect at the next one. Installing takes
`Timings.install`, then the reboot `Timings.boot`.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from dapper.lab import talos_config
from dapper.lab.talos_config import ConfigError, MachineConfig
from dapper.lab.world.kube import KubeWorld
from dapper.lab.world.kube_objects import name_suffix
from dapper.lab.world.model import GIB, SSD_BYTES, EtcdMemberState, LabVm, Machine, NodeSpec
from dapper.lab.world.node_labels import CONTROL_PLANE_LABEL, label_specs, seeded_node_labels
from dapper.lab.world.state import LOOPBACK_CAPACITY, WorldError, WorldState

NOT_POSTING = ("NodeStatusUnknown", "Kubelet stopped posting node status.")
READY = ("KubeletReady", "kubelet is posting ready status")
HOSTNAME_REQUIRED = (
    "machine hostname is required (.machine.network.hostname): the lab refuses a "
    "config that would join under a generated name"
)
MAIN_CLUSTER = 0
# Config sections Talos applies without a reboot (Runtime.CanApplyImmediate).
LIVE_MACHINE_KEYS = frozenset(
    {
        "ca",
        "acceptedCAs",
        "time",
        "certSANs",
        "install",
        "network",
        "sysfs",
        "sysctls",
        "logging",
        "controlPlane",
        "kubelet",
        "kernel",
        "registries",
        "pods",
        "seccompProfiles",
        "nodeAnnotations",
        "nodeLabels",
        "nodeTaints",
    }
)
LIVE_FEATURE_KEYS = frozenset(
    {
        "kubernetesTalosAPIAccess",
        "kubePrism",
        "hostDNS",
        "imageCache",
        "nodeAddressSortAlgorithm",
    }
)
APPLY_MODES = ("reboot", "auto", "no-reboot", "staged", "try")
MAINTENANCE_APPLY_MODES = ("reboot", "auto", "try")
TRY_TIMEOUT = 60.0  # constants.ConfigTryTimeout
SYSTEM_PARTITIONS = ("EFI", "META", "STATE", "EPHEMERAL")
WIPE_MODES = ("all", "system-disk", "user-disks")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class ApplyOutcome:
    """What ApplyConfiguration answers: the mode Talos chose and its details text."""

    mode: str
    details: str
    warnings: tuple[str, ...] = ()


class EtcdError(WorldError):
    """An etcd refusal: `kind` tells the server which gRPC code Talos would send."""

    def __init__(self, message: str, kind: str = "unknown") -> None:
        super().__init__(message, 409)
        self.kind = kind


class TalosWorld:
    """Talos machines (by IP) and the etcd members of the control planes."""

    def __init__(self, state: WorldState, kube: KubeWorld) -> None:
        self.state = state
        self.kube = kube
        self.lock = state.lock
        self.stop_vm: Callable[[int], None] | None = None  # set by the World (Proxmox)
        # called (under the lock) when a new machine appears, e.g. the Talos server
        # opening the machine's own address
        self.on_new_machine: list[Callable[[Machine], None]] = []
        # called on the clock (outside the lock) once etcd is bootstrapped, e.g. the
        # Kubernetes API server starting to listen at the VIP
        self.on_bootstrapped: list[Callable[[], None]] = []
        kube.machine_labels = self._machine_labels

    # -- the machines the lab starts with --------------------------------------------------

    def seed_machine(self, spec: NodeSpec, vm: LabVm) -> None:
        """A configured, booted machine in `vm`; control planes are etcd members."""
        disks = [("/dev/vda", vm.disk_gib * GIB, "QEMU HARDDISK")]
        if spec.storage:
            disks.append(("/dev/sda", SSD_BYTES, "SAMSUNG MZILT3T8HBLS"))
        labels = seeded_node_labels(spec)
        m = Machine(
            spec.ip,
            spec.vmid,
            spec.hostname,
            role=spec.role,
            maintenance=False,
            config=machine_config(spec.hostname, spec.role, labels),
            disks=disks,
        )
        # what label_specs would read from that config, without parsing 500 of them
        specs = dict(labels)
        if spec.role == "controlplane":
            specs[CONTROL_PLANE_LABEL] = ""
        m.label_specs = (m.config_epoch, specs)
        self.state.machines[spec.ip] = m
        m.booted = True
        if spec.role == "controlplane":
            self._add_etcd_member(m)
            m.etcd_data = True

    # -- the Node's labels (NodeLabelSpec and NodeApply controllers) -----------------------

    def _machine_labels(self, hostname: str) -> tuple[dict[str, str], bool] | None:
        """The label specs of the running config of the machine that is `hostname`'s
        node, and whether Talos writes them with the kubelet's credentials (a worker; a
        control plane uses an admin client). None when no such machine runs."""
        m = self._running(hostname)
        if m is None:
            return None
        if m.label_specs is None or m.label_specs[0] != m.config_epoch:
            m.label_specs = (m.config_epoch, label_specs(_load_lenient(m.config)))
        return dict(m.label_specs[1]), m.role != "controlplane"

    def _running(self, hostname: str) -> Machine | None:
        """The configured machine up on the network under `hostname`, if any."""
        for m in self.state.machines.values():
            if m.hostname == hostname and not m.maintenance and self.reachable(m):
                return m
        return None

    def _sync_labels(self, m: Machine) -> None:
        """After a config change that applies live: the Node follows its nodeLabels."""
        if m.maintenance or not m.booted or not m.network or self._running(m.hostname) is not m:
            return
        m.node_labels_error = self.kube.sync_machine_labels(m.hostname)

    # -- lookups ---------------------------------------------------------------------------

    def machine(self, node: str) -> Machine:
        """A machine by IP or hostname, or WorldError(404). Of machines sharing a hostname
        (a replacement and the old VM kept or dead), the one on the network and up wins,
        as a name resolves to the live address."""
        with self.lock:
            if node in self.state.machines:
                return self.state.machines[node]
            named = [m for m in self.state.machines.values() if m.hostname == node]
            if named:
                return max(named, key=lambda m: (m.network, self.reachable(m)))
        raise WorldError(f"no machine {node}", 404)

    def machine_of_vm(self, vmid: int) -> Machine | None:
        for m in self.state.machines.values():
            if m.vmid == vmid:
                return m
        return None

    def lab_address(self, machine: Machine) -> str:
        """The loopback address standing in for `machine`'s own LAN address (stable while
        it keeps its IP). New ones are handed out round the /24, so an address a machine
        left (a DHCP lease before its static one) is not at once another's."""
        taken = self.state.lab_addresses
        if machine.ip not in taken:
            used = set(taken.values())
            start = self.state.next_loopback
            for step in range(LOOPBACK_CAPACITY):
                address = self.state.loopback_address(start + step)
                if address not in used:
                    break
            else:
                raise WorldError("no free loopback address for another machine", 507)
            self.state.next_loopback = start + step + 1
            taken[machine.ip] = address
        return taken[machine.ip]

    def machine_at(self, address: str) -> Machine | None:
        """The machine whose own (loopback) address this is."""
        for ip, alias in self.state.lab_addresses.items():
            if alias == address:
                return self.state.machines.get(ip)
        return None

    def reachable(self, machine: Machine) -> bool:
        vm = self.state.vms.get(machine.vmid)
        return bool(vm and vm.status == "running" and machine.booted and machine.network)

    def bootstrapped(self) -> bool:
        """The cluster has etcd, hence an API server for kubelets to register with."""
        return any(e.cluster == MAIN_CLUSTER for e in self.state.etcd.values())

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
            for hook in list(self.on_new_machine):
                hook(machine)
        self._attach_disks(vm)

    def _attach_disks(self, vm: LabVm) -> None:
        """The machine sees its OS disk and one SSD per storage HBA its VM now holds: a
        replacement given the old controller finds the old disk (same WWN), one without
        a controller has no data disk."""
        machine = self.machine_of_vm(vm.vmid)
        if machine is None:
            return
        disks = [d for d in machine.disks if d[0].startswith("/dev/vd")]
        seeds: dict[str, str] = {}
        hbas = [a for a in vm.pci_in_use if a in self.state.pci and _is_hba(self.state.pci[a])]
        for i, address in enumerate(hbas):
            dev = f"/dev/sd{chr(ord('a') + i)}"
            disks.append((dev, SSD_BYTES, "SAMSUNG MZILT3T8HBLS"))
            seeds[dev] = self.state.hba_disk_seed.get(address, address)
        machine.disks = disks
        machine.disk_seeds = seeds

    def boot_later(self, vmid: int, extra: float = 0.0) -> None:
        self.state.later(self.state.timings.boot + extra, lambda: self.booted(vmid))

    def booted(self, vmid: int) -> None:
        """Boot finished: a staged config becomes active, the machine takes the address
        its config gives it; a configured machine with its network joins. A machine whose
        system disk failed never comes up."""
        with self.lock:
            vm = self.state.vms.get(vmid)
            machine = self.machine_of_vm(vmid)
            if vm is None or vm.status != "running" or machine is None or machine.disk_failed:
                return
            if machine.staged is not None and not machine.maintenance:
                self._activate(machine, machine.staged)
                machine.staged = None
            self._bring_up_network(machine)
            machine.booted = True
            if not machine.maintenance and machine.network:
                self.join(machine)

    def power_off(self, vmid: int) -> None:
        """The VM stopped: its Node stops posting status and its etcd member is unhealthy."""
        machine = self.machine_of_vm(vmid)
        if machine is None:
            return
        machine.booted = False
        if not machine.maintenance:
            self._not_posting_after_grace(machine)
            self.kube.refresh_pools(machine.hostname)  # its io-engine went with it
        for m in self.state.etcd.values():
            if m.ip == machine.ip:
                m.healthy = False

    def _not_posting_after_grace(self, machine: Machine) -> None:
        """The Node goes NotReady once the node-monitor grace period has passed without a
        status post, unless the machine came back meanwhile (Talos answers at once)."""

        def expire() -> None:
            with self.lock:
                if not machine.booted and not self._posting(machine.hostname):
                    self.kube.set_node_ready(machine.hostname, False, *NOT_POSTING)

        self.state.clock.later(self.state.timings.node_grace, expire)

    def posting(self, hostname: str) -> bool:
        return self._posting(hostname)

    def _posting(self, hostname: str) -> bool:
        """Some machine's kubelet posts status for this Node (a replacement that
        registered within the old machine's grace period keeps it Ready)."""
        return any(
            m.hostname == hostname
            and self.reachable(m)
            and not m.maintenance
            and m.joins
            and not m.kubelet_wedged
            for m in self.state.machines.values()
        )

    def forget_vm(self, vmid: int) -> None:
        """The VM was destroyed: its machine is gone (and its own address with it)."""
        machine = self.machine_of_vm(vmid)
        if machine is not None:
            del self.state.machines[machine.ip]
            self.state.lab_addresses.pop(machine.ip, None)

    # -- addresses -------------------------------------------------------------------------

    def _bring_up_network(self, m: Machine) -> None:
        """At every boot the config's interfaces are matched against the VM's MACs as
        they are now (a MAC fixed in Proxmox takes effect at the next boot)."""
        try:
            cfg = None if m.maintenance or not m.config else talos_config.load(m.config)
        except ConfigError:
            cfg = None  # the lab's seeded machines carry minimal configs: no interfaces
        m.network, ip = (True, None) if cfg is None else self._address_from(m, cfg)
        ip = ip or m.parked_from  # a parked machine wants its old address back
        if m.network and ip:
            self._take_address(m, ip)

    def _address_from(self, m: Machine, cfg: MachineConfig) -> tuple[bool, str | None]:
        """(has network, static address) the config gives this machine at its next boot.

        Interfaces selected by `deviceSelector.hardwareAddr` (Talos matches it as a glob)
        must match one of the VM's MACs, else the machine has no network; the matching
        interface's first static address, without its prefix length, becomes its address.
        A config that selects no interface by MAC keeps the address the machine has."""
        by_mac = [i for i in cfg.interfaces if i.hardware_addr]
        if not by_mac:
            return True, None
        vm = self.state.vms.get(m.vmid)
        macs = [mac.lower() for mac in (vm.macs if vm else []) if mac]
        for iface in by_mac:
            if any(fnmatchcase(mac, iface.hardware_addr) for mac in macs):
                for cidr in iface.addresses:
                    try:
                        return True, str(ipaddress.ip_interface(cidr).ip)
                    except ValueError:
                        continue
                return True, None  # DHCP on that interface: the address it has
        return False, None

    def _take_address(self, m: Machine, ip: str) -> None:
        """Re-key the machine under its new address. The machine still holding it is
        parked when it is down (no network, out of the way), else the address conflicts
        and the newcomer comes up without network."""
        if ip == m.ip:
            return
        holder = self.state.machines.get(ip)
        if holder is not None:
            if self.reachable(holder):
                m.network = False
                return
            self._rekey(holder, f"parked-vm{holder.vmid}")
            holder.network = False
            holder.parked_from = ip
        self._rekey(m, ip)
        m.parked_from = ""
        for hook in list(self.on_new_machine):  # its own address opens
            hook(m)

    def _rekey(self, m: Machine, ip: str) -> None:
        del self.state.machines[m.ip]
        self.state.lab_addresses.pop(m.ip, None)
        m.ip = ip
        self.state.machines[ip] = m

    # -- faults that stage a dead node -----------------------------------------------------

    def fail_disk(self, node: str) -> None:
        """The system disk died: Talos stops answering at once, the Node goes NotReady
        after the grace period, etcd loses the member; the VM keeps running (permanent)."""
        m = self.machine(node)
        m.disk_failed = True
        if m.booted:
            m.booted = False
            if not m.maintenance:
                self._not_posting_after_grace(m)
                self.kube.refresh_pools(m.hostname)
        for e in self.state.etcd.values():
            if e.ip == m.ip:
                e.healthy = False

    def wedge_kubelet(self, node: str) -> None:
        """The kubelet stops posting: NotReady after the grace period; Talos answers."""
        m = self.machine(node)
        m.kubelet_wedged = True

        def expire() -> None:
            with self.lock:
                if m.kubelet_wedged and not self._posting(m.hostname):
                    self.kube.set_node_ready(m.hostname, False, *NOT_POSTING)

        self.state.clock.later(self.state.timings.node_grace, expire)

    def unwedge_kubelet(self, node: str) -> None:
        """The kubelet posts again: Ready at once when the machine runs and belongs."""
        m = self.machine(node)
        m.kubelet_wedged = False
        if self.reachable(m) and not m.maintenance and m.joins:
            self.kube.set_node_ready(m.hostname, True, *READY)

    def _free_ip(self) -> str:
        used = set(self.state.machines)
        for last in range(100, 250):
            ip = f"10.100.0.{last}"
            if ip not in used:
                return ip
        raise WorldError("no free address in 10.100.0.0/24", 507)

    # -- apply -----------------------------------------------------------------------------

    def apply_config(
        self,
        node: str,
        data: bytes,
        mode: str = "auto",
        *,
        dry_run: bool = False,
        try_timeout: float | None = None,
    ) -> ApplyOutcome:
        """ApplyConfiguration as the maintenance server or machined answers it.

        Raises ConfigError for a config that does not load or validate (the server maps
        the stage to Talos's codes) and WorldError(501) for a mode maintenance refuses.
        """
        if mode not in APPLY_MODES:
            raise WorldError(f"incorrect mode '{mode}' specified for the apply config call")
        with self.lock:
            m = self.machine(node)
            if m.maintenance:
                return self._apply_in_maintenance(m, data, mode, dry_run)
            return self._apply_configured(m, data, mode, dry_run, try_timeout)

    def _apply_in_maintenance(
        self, m: Machine, data: bytes, mode: str, dry_run: bool
    ) -> ApplyOutcome:
        if mode not in MAINTENANCE_APPLY_MODES:
            raise WorldError(
                f"apply configuration --mode='{mode}' is not supported in maintenance mode", 501
            )
        cfg = talos_config.load(data)
        if not cfg.hostname:
            raise ConfigError(talos_config.multierror([HOSTNAME_REQUIRED]), "validation")
        if dry_run:
            return ApplyOutcome(
                "reboot",
                "Dry run summary:\nNode is running in maintenance mode and does not have a "
                "config yet.",
            )
        # the reply carries no mode (REBOOT, the enum's zero); the machine installs, then
        # reboots into its config with the network it gives
        self._activate(m, data, cfg)
        m.maintenance = False
        m.booted = False
        self.boot_later(m.vmid, extra=self.state.timings.install)
        return ApplyOutcome("reboot", "")

    def _apply_configured(
        self, m: Machine, data: bytes, mode: str, dry_run: bool, try_timeout: float | None
    ) -> ApplyOutcome:
        cfg = talos_config.load(data)
        blocker = self._live_blocker(m, cfg)
        details = "Applied configuration with a reboot"
        chosen = mode
        suffix = ""
        if mode in ("try", "no-reboot"):
            if blocker:
                raise ConfigError(blocker, "immediate")
            details = "Applied configuration without a reboot"
        elif mode == "staged":
            details = "Staged configuration to be applied after the next reboot"
        elif mode == "auto":
            chosen = "reboot" if blocker else "no-reboot"
            if blocker:
                suffix = ": " + blocker
            else:
                details = "Applied configuration without a reboot"
        if dry_run:
            diff = _config_diff(m.config or b"", data) or "No changes."
            return ApplyOutcome(
                chosen, f"Dry run summary:\n{details} (skipped in dry-run).\n{diff}"
            )
        if chosen == "try":
            timeout = try_timeout or TRY_TIMEOUT
            previous = m.config
            self._activate(m, data, cfg)
            epoch = m.config_epoch
            self.state.later(timeout, lambda: self._revert(m.ip, epoch, previous))
            details += (
                "\nThe config is applied in 'try' mode and will be automatically reverted "
                f"back in {_go_duration(timeout)}"
            )
        elif chosen == "no-reboot":
            self._activate(m, data, cfg)
        elif chosen == "staged":
            m.staged = data
        else:  # reboot
            m.staged = data
            self.reboot(m.ip)
        return ApplyOutcome(chosen, details + suffix)

    def _live_blocker(self, m: Machine, cfg: MachineConfig) -> str:
        """'' when the change applies live, else Talos's 'can't be applied' text."""
        old = _load_lenient(m.config)
        new = cfg.document
        if _without_live(old) == _without_live(new):
            return ""
        diff = _config_diff(m.config or b"", _dump(new).encode())
        return f"this config change can't be applied in immediate mode\ndiff:\n{diff}"

    def _revert(self, ip: str, epoch: int, previous: bytes | None) -> None:
        """TRY mode's timer: put the previous config back unless another apply came."""
        with self.lock:
            m = self.state.machines.get(ip)
            if m is None or m.config_epoch != epoch or previous is None:
                return
            self._activate(m, previous)

    def _activate(self, m: Machine, data: bytes, cfg: MachineConfig | None = None) -> None:
        """Make `data` the machine's running config (hostname, role, cluster secrets)."""
        if cfg is None:
            try:
                cfg = talos_config.load(data)
            except ConfigError:
                m.config = data
                m.config_epoch += 1
                return
        m.config = data
        m.config_epoch += 1
        m.role = cfg.role
        m.joins = self._carries_cluster_secrets(cfg)
        if cfg.hostname and cfg.hostname != m.hostname:
            m.hostname = cfg.hostname
            if m.vmid in self.state.vms:
                self.state.vms[m.vmid].name = cfg.hostname
        self._sync_labels(m)

    def _carries_cluster_secrets(self, cfg: MachineConfig) -> bool:
        """The OS CA (mTLS with the cluster), the machine token (trustd hands it its
        certificates) and the cluster's bootstrap token (the kubelet's TLS bootstrap)."""
        ca = self.state.cluster_os_ca
        if ca and cfg.os_ca_crt.strip() != ca.strip():
            return False
        return (
            cfg.machine_token == self.state.machine_token and cfg.token == self.state.cluster_token
        )

    # -- joining ---------------------------------------------------------------------------

    def join(self, machine: Machine) -> None:
        """A configured machine came up: Node and etcd, if its secrets are the cluster's."""
        if not machine.joins:
            return
        if machine.role == "controlplane":
            self._start_etcd(machine)
        if not self.bootstrapped():
            return  # no API server yet: the kubelet keeps retrying its registration
        if machine.kubelet_wedged:
            return  # its kubelet posts nothing
        self.kube.register_node(self._spec_for(machine))
        self.kube.reschedule_pending()

    def _spec_for(self, machine: Machine) -> NodeSpec:
        """The node as it now runs: a known hostname keeps its place, GPU and storage
        role but takes this machine's address, VM and MAC (a replacement)."""
        vm = self.state.vms[machine.vmid]
        mac = vm.macs[0] if vm.macs else ""
        spec = self.state.spec_of(machine.hostname)
        if spec is None:
            spec = NodeSpec(
                machine.hostname,
                machine.ip,
                machine.vmid,
                machine.role or "worker",
                mac,
                storage=machine.role == "worker",
            )
            self.state.specs.append(spec)
        elif (spec.ip, spec.vmid) != (machine.ip, machine.vmid):
            index = self.state.specs.index(spec)
            spec = dataclasses.replace(spec, ip=machine.ip, vmid=machine.vmid, mac=mac)
            self.state.specs[index] = spec
        return spec

    def _start_etcd(self, machine: Machine) -> None:
        """The etcd service on a booting control plane (Talos's argsForControlPlane)."""
        mine = [e for e in self.state.etcd.values() if e.ip == machine.ip]
        if machine.etcd_data:
            if not mine:  # its member was removed: etcd refuses to start on this data
                machine.etcd_service = "Failed"
                return
            machine.etcd_service = "Running"
            for e in mine:
                e.healthy = f"etcd-unhealthy:{e.hostname}" not in self.state.faults
            return
        if not self._has_quorum(MAIN_CLUSTER):
            machine.etcd_service = "Preparing"  # waiting to join, or for Bootstrap
            return
        stale = [
            k
            for k, e in self.state.etcd.items()
            if e.hostname == machine.hostname and e.cluster == MAIN_CLUSTER
        ]
        for k in stale:  # a member of the same name would conflict: Talos removes it
            del self.state.etcd[k]
        member = self._add_etcd_member(machine, learner=True)
        machine.etcd_data = True
        machine.etcd_service = "Running"
        self.state.later(self.state.timings.boot, lambda: self._promote(member.id))

    def _promote(self, member_id: int) -> None:
        with self.lock:
            member = self.state.etcd.get(member_id)
            if member is not None and member.healthy:
                member.is_learner = False

    # -- reboot and reset ------------------------------------------------------------------

    def reboot(self, node: str) -> None:
        with self.lock:
            m = self.machine(node)
            m.booted = False
            if not m.maintenance:
                self.kube.set_node_ready(m.hostname, False, *NOT_POSTING)
            for e in self.state.etcd.values():
                if e.ip == m.ip:
                    e.healthy = False
        self.boot_later(m.vmid)

    def check_reset(
        self,
        node: str,
        *,
        wipe: str = "all",
        partitions: tuple[tuple[str, bool], ...] = (),
        user_disks: tuple[str, ...] = (),
    ) -> None:
        """The checks Reset makes before it answers (Talos's input validation)."""
        if wipe not in WIPE_MODES:
            raise WorldError(f"unknown wipe mode {wipe!r}")
        m = self.machine(node)
        if user_disks:
            if wipe == "system-disk":
                raise WorldError(
                    "reset failed: invalid input, wipe mode SYSTEM_DISK doesn't support "
                    "UserDisksToWipe parameter"
                )
            devices = [d for d, _, _ in m.disks]
            for dev in user_disks:
                if dev not in devices:
                    raise WorldError(f"reset user disk failed: device {dev} wasn't found")
                if devices and dev == devices[0]:
                    raise WorldError(f"reset user disk failed: device {dev} is the system disk")
        if partitions:
            if wipe == "user-disks":
                raise WorldError(
                    "reset failed: invalid input, wipe mode USER_DISKS doesn't support "
                    "SystemPartitionsToWipe parameter"
                )
            for label, _ in partitions:
                if label not in SYSTEM_PARTITIONS:
                    raise WorldError(
                        f'failed to get volume status with label "{label}": resource '
                        f"VolumeStatuses.block.talos.dev(runtime/{label}@undefined) "
                        "doesn't exist"
                    )

    def reset(
        self,
        node: str,
        graceful: bool = True,
        *,
        reboot: bool = True,
        wipe: str = "all",
        partitions: tuple[tuple[str, bool], ...] = (),
        user_disks: tuple[str, ...] = (),
        delay: float | None = None,
    ) -> None:
        """Talos's Reset: checked now, run shortly after the call has returned."""
        with self.lock:
            self.check_reset(node, wipe=wipe, partitions=partitions, user_disks=user_disks)
            ip = self.machine(node).ip
        wiped = {label for label, on in partitions if on}
        if not partitions and wipe != "user-disks":
            wiped = {"STATE", "EPHEMERAL"}

        def run() -> None:
            self._run_reset(ip, graceful=graceful, reboot=reboot, wiped=wiped)

        self.state.later(self.state.timings.task if delay is None else delay, run)

    def _run_reset(self, ip: str, *, graceful: bool, reboot: bool, wiped: set[str]) -> None:
        """The reset sequence: cordon and drain, leave etcd, wipe, reboot or power off.
        A graceful reset whose etcd leave is refused stops there, as Talos's does (the
        Node stays cordoned and drained)."""
        with self.lock:
            m = self.state.machines.get(ip)
            if m is None or not self.reachable(m):
                return
            if not m.maintenance and graceful:
                # Talos's reset phases: drain (errors only logged), then leave etcd (fatal)
                self.kube.cordon_and_drain(m.hostname)
                if m.role == "controlplane" and any(e.ip == ip for e in self.state.etcd.values()):
                    try:
                        self.etcd_leave(ip)
                    except WorldError:
                        return  # the sequence fails: drained, still a member, still running
            if "EPHEMERAL" in wiped:
                m.etcd_data = False
            if "STATE" in wiped:  # reinstalled: whatever wedged its kubelet is gone too
                m.maintenance = True
                m.config = None
                m.staged = None
                m.role = ""
                m.etcd_service = "Running"
                m.kubelet_wedged = False
            m.booted = False
            if not m.maintenance or "STATE" in wiped:
                self.kube.set_node_ready(m.hostname, False, *NOT_POSTING)
            for e in self.state.etcd.values():
                if e.ip == ip:
                    e.healthy = False
            if reboot:
                self.boot_later(m.vmid)
            elif self.stop_vm is not None:
                self.stop_vm(m.vmid)

    # -- etcd ------------------------------------------------------------------------------

    def _add_etcd_member(
        self, machine: Machine, *, learner: bool = False, cluster: int = MAIN_CLUSTER
    ) -> EtcdMemberState:
        mid = self.state.rng.getrandbits(64)
        member = EtcdMemberState(
            mid, machine.hostname, machine.ip, is_learner=learner, cluster=cluster
        )
        self.state.etcd[mid] = member
        return member

    def members(self, cluster: int = MAIN_CLUSTER) -> list[EtcdMemberState]:
        return [e for e in self.state.etcd.values() if e.cluster == cluster]

    def cluster_of(self, machine: Machine) -> int:
        """The etcd cluster a control plane talks to: its own member's, else the main one."""
        for e in self.state.etcd.values():
            if e.ip == machine.ip:
                return e.cluster
        return MAIN_CLUSTER

    def leader(self, cluster: int = MAIN_CLUSTER) -> int:
        """The leader's member id: the one leadership was handed to while it is healthy,
        else the first healthy voter by hostname; 0 without quorum."""
        if not self._has_quorum(cluster):
            return 0
        voters = sorted(
            (e for e in self.members(cluster) if e.healthy and not e.is_learner),
            key=lambda e: e.hostname,
        )
        chosen = self.state.etcd.get(self.state.etcd_leader)
        if chosen is not None and chosen in voters:
            return chosen.id
        return voters[0].id if voters else 0

    def _has_quorum(self, cluster: int) -> bool:
        voters = [e for e in self.members(cluster) if not e.is_learner]
        healthy = sum(1 for e in voters if e.healthy)
        return bool(voters) and healthy >= len(voters) // 2 + 1

    def bootstrap(self, node: str) -> None:
        """Talos's Bootstrap: refused on a worker or on etcd data; otherwise a new cluster
        of one member, this machine's (a second cluster if one exists already)."""
        with self.lock:
            m = self.machine(node)
            if m.role != "controlplane":
                raise EtcdError(
                    "bootstrap can only be performed on a control plane node", "precondition"
                )
            if m.etcd_data:
                raise EtcdError("etcd data directory is not empty", "exists")
            cluster = MAIN_CLUSTER
            if self.bootstrapped():
                cluster = 1 + max(e.cluster for e in self.state.etcd.values())
            self._add_etcd_member(m, cluster=cluster)
            m.etcd_data = True
            m.etcd_service = "Running"
            if cluster == MAIN_CLUSTER:  # the API server comes up; the others' retries succeed
                for ns in SYSTEM_NAMESPACES:  # what kube-apiserver creates as it starts
                    self.kube.ensure_namespace(ns)
                for hook in list(self.on_bootstrapped):
                    self.state.later(0, hook)
                self.join(m)
                for other in self.state.machines.values():
                    if other is not m and not other.maintenance:
                        self.state.later(
                            self.state.timings.boot, lambda ip=other.ip: self._retry_join(ip)
                        )

    def _retry_join(self, ip: str) -> None:
        """A waiting kubelet or etcd tries again (Talos retries every few seconds)."""
        with self.lock:
            m = self.state.machines.get(ip)
            if m is not None and not m.maintenance and self.reachable(m):
                self.join(m)

    def _remove_check(self, member_id: int) -> None:
        """etcd's mayRemoveMember with strict reconfiguration checks."""
        target = self.state.etcd.get(member_id)
        if target is None:
            raise EtcdError(
                f"failed to remove member {member_id}: etcdserver: member not found", "notfound"
            )
        cluster = target.cluster
        if not self._has_quorum(cluster):
            raise EtcdError(f"failed to remove member {member_id}: etcdserver: no leader")
        if target.is_learner:
            return
        voters = [e for e in self.members(cluster) if not e.is_learner]
        others = [e for e in voters if e.id != member_id]
        if not others:  # the remaining voters could never reach quorum (etcd counts started ones)
            raise EtcdError(
                f"failed to remove member {member_id}: etcdserver: re-configuration failed "
                "due to not enough started members"
            )
        if not target.healthy:
            return  # a member that is down is not part of the active quorum
        active = sum(1 for e in voters if e.healthy)
        if active - 1 < 1 + (len(voters) - 1) // 2:
            raise EtcdError(f"failed to remove member {member_id}: etcdserver: unhealthy cluster")

    def etcd_remove_member(self, member_id: int) -> None:
        """EtcdRemoveMemberByID: the member goes; its machine's etcd stops (its data stays,
        so it stays out, also after a reboot, until the data is wiped)."""
        with self.lock:
            self._remove_check(member_id)
            target = self.state.etcd.pop(member_id)
            m = self.state.machines.get(target.ip)
            if m is not None and m.etcd_data:
                m.etcd_service = "Failed"

    def etcd_leave(self, node: str) -> None:
        """EtcdLeaveCluster: remove the local member, stop etcd, wipe its data."""
        with self.lock:
            m = self.machine(node)
            mine = [k for k, v in self.state.etcd.items() if v.ip == m.ip]
            if not mine:
                raise EtcdError("failed to leave cluster: etcd member not found", "precondition")
            for k in mine:
                try:
                    self._remove_check(k)
                except EtcdError as exc:
                    raise EtcdError(f"failed to leave cluster: {exc}") from None
            for k in mine:
                del self.state.etcd[k]
            m.etcd_service = "Finished"
            m.etcd_data = False

    def etcd_forfeit_leadership(self, node: str) -> str:
        """EtcdForfeitLeadership: if this member leads, hand over; the new leader's name
        (or "" when it was not the leader)."""
        with self.lock:
            m = self.machine(node)
            cluster = self.cluster_of(m)
            members = sorted(self.members(cluster), key=lambda e: e.id)
            if len(members) == 1:
                raise EtcdError(
                    "failed to forfeit leadership: cannot forfeit leadership, only one member"
                )
            me = next((e for e in members if e.ip == m.ip), None)
            if me is None:
                raise EtcdError("etcd member ID not found", "precondition")
            if self.leader(cluster) != me.id:
                return ""
            for other in members:
                if other.id != me.id:
                    if other.is_learner:
                        raise EtcdError(
                            "failed to forfeit leadership: etcdserver: can not transfer "
                            "leadership to learner"
                        )
                    self.state.etcd_leader = other.id
                    return other.hostname
            return ""

    def set_etcd_health(self, node: str, healthy: bool) -> None:
        """Mark the members on `node` (hostname or IP) healthy or not."""
        for m in self.state.etcd.values():
            if m.hostname == node or m.ip == node:
                m.healthy = healthy


def _is_hba(device: Any) -> bool:
    """A mass-storage controller (PCI class 01xx): the SAS HBAs the SSDs hang off."""
    return str(device.class_id).startswith("0x01")


def machine_config(hostname: str, role: str, node_labels: dict[str, str] | None = None) -> bytes:
    """The minimal Talos config the lab's seeded machines carry (they never re-join), with
    the nodeLabels the tree's patches give their role."""
    labels = "".join(f'    {k}: "{v}"\n' for k, v in sorted((node_labels or {}).items()))
    return (
        "version: v1alpha1\nmachine:\n"
        f"  type: {role}\n  network:\n    hostname: {hostname}\n"
        + (f"  nodeLabels:\n{labels}" if labels else "")
        + "cluster:\n  clusterName: kubernetes\n"
        "  controlPlane:\n    endpoint: https://10.100.0.40:6443\n"
    ).encode()


def cluster_machine_config(
    hostname: str,
    role: str,
    *,
    os_ca_pem: str,
    token: str,
    endpoint: str = "https://10.100.0.40:6443",
    install_disk: str = "/dev/vda",
    os_ca_key_pem: str = "",
    machine_token: str | None = None,
    mac: str = "",
    addresses: tuple[str, ...] = (),
) -> bytes:
    """A valid v1alpha1 config for the lab's cluster (what a generator would write):
    `token` is .cluster.token, `machine_token` .machine.token (default: the same); with
    `mac`, one interface selected by that hardware address with static `addresses`."""
    ca = base64.b64encode(os_ca_pem.encode()).decode()
    lines = [
        "version: v1alpha1",
        "machine:",
        f"  type: {role}",
        f"  token: {token if machine_token is None else machine_token}",
        "  ca:",
        f"    crt: {ca}",
    ]
    if role == "controlplane":
        key = base64.b64encode((os_ca_key_pem or "lab-key").encode()).decode()
        lines.append(f"    key: {key}")
    lines.append("  network:")
    if hostname:
        lines.append(f"    hostname: {hostname}")
    if mac:
        lines += ["    interfaces:", "      - deviceSelector:", f"          hardwareAddr: '{mac}'"]
        if addresses:
            lines += ["        addresses:", *(f"          - {a}" for a in addresses)]
        else:
            lines.append("        dhcp: true")
    lines += [
        "  install:",
        f"    disk: {install_disk}",
        "cluster:",
        "  clusterName: kubernetes",
        f"  token: {token}",
        "  controlPlane:",
        f"    endpoint: {endpoint}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _load_lenient(data: bytes | None) -> dict[str, Any]:
    from ruamel.yaml import YAML

    if not data:
        return {}
    try:
        doc = YAML(typ="safe").load(data.decode())
    except Exception:  # the lab's own configs always parse; a foreign one compares unequal
        return {}
    return doc if isinstance(doc, dict) else {}


def _without_live(doc: dict[str, Any]) -> dict[str, Any]:
    """The config minus what Talos can change without a reboot."""
    out = {k: v for k, v in doc.items() if k not in ("debug", "cluster")}
    machine = dict(doc.get("machine") or {})
    for key in LIVE_MACHINE_KEYS:
        machine.pop(key, None)
    features = machine.get("features")
    if isinstance(features, dict):
        machine["features"] = {k: v for k, v in features.items() if k not in LIVE_FEATURE_KEYS}
    out["machine"] = machine
    return out


def _dump(doc: dict[str, Any]) -> str:
    import io

    from ruamel.yaml import YAML

    buf = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump(doc, buf)
    return buf.getvalue()


def _config_diff(old: bytes, new: bytes) -> str:
    """A unified diff of two configs, as Talos's configdiff prints one ('' when equal)."""
    a = _dump(_load_lenient(old)).splitlines(keepends=True)
    b = _dump(_load_lenient(new)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, "a", "b"))


def _go_duration(seconds: float) -> str:
    """Go's time.Duration String for whole seconds and minutes (1m0s, 30s)."""
    total = int(seconds)
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
