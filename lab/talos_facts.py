"""What a lab Talos machine answers: protobuf payloads built from the world's state.

Pure functions of a world Machine (and its VM); the server calls them under the world
lock and adds transport concerns (targeting, roles, faults). Numbers are stable per
hostname so screens and tests do not flicker between refreshes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
import time

from dapper.backends.clients.talos_pb import machine_pb2, storage_pb2
from dapper.lab.disk_links import wwn
from dapper.lab.world import EtcdMemberState, LabVm, Machine

PLATFORM = ("nocloud", "cloud")
SHA = "f2c9a3b1"  # a short commit id, as `talosctl version` prints


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def version(m: Machine) -> machine_pb2.Version:
    return machine_pb2.Version(
        version=machine_pb2.VersionInfo(
            tag=m.version,
            sha=SHA,
            built="2025-09-25T10:00:00Z",
            go_version="go1.24.6",
            os="linux",
            arch="amd64",
        ),
        platform=machine_pb2.PlatformInfo(
            name=PLATFORM[0], mode="maintenance" if m.maintenance else PLATFORM[1]
        ),
        features=machine_pb2.FeaturesInfo(rbac=True),
    )


# Talos services whose restart through the API is allowed (APIRestartAllowed): kubelet
# and every system extension service (named ext-<name>).
def restartable(service_id: str) -> bool:
    return service_id == "kubelet" or service_id.startswith("ext-")


def services(m: Machine) -> machine_pb2.ServiceList:
    out = machine_pb2.ServiceList()
    for sid, state, healthy in m.services():
        info = out.services.add(id=sid, state=state)
        info.health.healthy = healthy
        info.health.last_message = "" if healthy else f"{sid} is {state.lower()}"
        info.events.events.add(msg="Health check successful" if healthy else "Stopped", state=state)
    return out


def memory(vm: LabVm | None, m: Machine) -> machine_pb2.Memory:
    total_kb = (vm.memory_mib if vm else 4096) * 1024
    used_share = 0.25 + (_seed(m.hostname) % 40) / 100.0
    available = int(total_kb * (1 - used_share))
    mi = machine_pb2.MemInfo(
        memtotal=total_kb,
        memfree=available // 2,
        memavailable=available,
        buffers=total_kb // 100,
        cached=available // 3,
        hugepagestotal=1024 if m.role == "worker" else 0,
        hugepagesize=2048,
    )
    return machine_pb2.Memory(meminfo=mi)


def load_avg(m: Machine) -> machine_pb2.LoadAvg:
    base = (_seed(m.hostname) % 300) / 100.0
    return machine_pb2.LoadAvg(load1=base, load5=base * 0.9, load15=base * 0.8)


def system_stat(vm: LabVm | None, m: Machine) -> machine_pb2.SystemStat:
    cores = vm.cores if vm else 2
    boot = int(vm.started_at) if vm and vm.started_at else int(time.time())
    up = max(time.time() - boot, 1.0)
    busy = 0.05 + (_seed(m.hostname) % 50) / 100.0
    cpu = machine_pb2.CPUStat(user=up * busy * 0.7, system=up * busy * 0.3, idle=up * (1 - busy))
    stat = machine_pb2.SystemStat(boot_time=boot, cpu_total=cpu, context_switches=int(up * 900))
    for _ in range(cores):
        stat.cpu.add(user=cpu.user / cores, system=cpu.system / cores, idle=cpu.idle / cores)
    return stat


def disks(m: Machine) -> storage_pb2.Disks:
    out = storage_pb2.Disks()
    for i, (dev, size, model) in enumerate(m.disks):
        owner = m.disk_seeds.get(dev, m.hostname)  # a moved disk keeps its identity
        ident = wwn(owner, dev)
        out.disks.add(
            size=size,
            model=model,
            device_name=dev,
            name=dev.rsplit("/", 1)[-1],
            serial=f"LAB{_seed(owner + dev):08X}",
            wwid=f"naa.{ident}" if ident else "",
            type=storage_pb2.Disk.HDD if dev.startswith("/dev/vd") else storage_pb2.Disk.SSD,
            system_disk=i == 0,
            subsystem="/sys/class/block",
        )
    return out


def etcd_members(members: list[EtcdMemberState]) -> machine_pb2.EtcdMembers:
    out = machine_pb2.EtcdMembers()
    for e in sorted(members, key=lambda e: e.hostname):
        out.members.add(
            id=e.id,
            hostname=e.hostname,
            peer_urls=[f"https://{e.ip}:2380"],
            client_urls=[f"https://{e.ip}:2379"],
            is_learner=e.is_learner,
        )
        out.legacy_members.append(e.hostname)
    return out


def etcd_status(me: EtcdMemberState, leader: int) -> machine_pb2.EtcdStatus:
    st = machine_pb2.EtcdMemberStatus(
        protocol_version="3.5.0",
        db_size=48_000_000 + _seed(me.hostname) % 4_000_000,
        db_size_in_use=30_000_000,
        leader=leader,
        raft_index=123_456,
        raft_term=7,
        raft_applied_index=123_456,
        is_learner=me.is_learner,
        member_id=me.id,
        storage_version="3.5.0",
    )
    if not me.healthy:
        st.errors.append("etcdserver: no leader")
    return machine_pb2.EtcdStatus(member_status=st)


def log_lines(m: Machine, service: str, tail_lines: int) -> list[bytes]:
    """Log lines of a Talos service; tail_lines < 0 is all, 0 is none (as Talos)."""
    start = dt.datetime(2025, 10, 1, 8, 0, tzinfo=dt.UTC)
    lines = []
    for i in range(20):
        ts = (start + dt.timedelta(seconds=7 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        lines.append(f"{m.hostname} {ts} {service}[{100 + i}]: lab {service} event {i}\n".encode())
    if tail_lines >= 0:
        lines = lines[len(lines) - tail_lines :] if tail_lines else []
    return lines


def dmesg_lines(m: Machine) -> list[bytes]:
    start = dt.datetime(2025, 10, 1, 7, 59, tzinfo=dt.UTC)
    msgs = [
        ("kern", "info", "Linux version 6.12.48-talos (lab)"),
        ("kern", "info", f"Hostname set to <{m.hostname}>"),
        ("daemon", "notice", "[talos] machined started"),
        ("kern", "warning", "virtio_net virtio1 eth0: link up"),
    ]
    out = []
    for i, (facility, prio, msg) in enumerate(msgs):
        ts = (start + dt.timedelta(milliseconds=250 * i)).isoformat().replace("+00:00", "Z")
        out.append(f"{facility}: {prio:<7}: [{ts}]: {msg}".encode())
    return out


def kubeconfig_tar(kubeconfig: bytes) -> bytes:
    """Talos streams the admin kubeconfig as a tar.gz holding one file, `kubeconfig`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("kubeconfig")
        info.size = len(kubeconfig)
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(kubeconfig))
    return buf.getvalue()


def default_kubeconfig(server: str, cluster: str = "dapper") -> bytes:
    """A kubeconfig naming the cluster's API; the lab runtime supplies its real one."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n"
        f"users:\n- name: admin@{cluster}\n  user: {{}}\n"
        f"contexts:\n- name: admin@{cluster}\n  context:\n"
        f"    cluster: {cluster}\n    user: admin@{cluster}\n"
        f"current-context: admin@{cluster}\n"
    ).encode()
