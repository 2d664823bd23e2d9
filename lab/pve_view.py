"""What the lab's PVE API reports, built from the shared World: host, VMs, PCI, storage.

The World holds the facts that other twins also see (VMs, their status and passthrough,
PCI devices); the host's hardware and its storage are PVE-only, so they live here. All
reads take `World.lock` so a row is never half a change.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from dapper.lab.world import GIB, MIB, PVE_HOST, LabVm, World

PVE_VERSION = {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}
PVE_MANAGER = "pve-manager/8.4.1/2a5fa54a8503f96d"
KERNEL = "6.8.12-9-pve"
# The README's host: 2x E5-2697A v4 (16 cores, 32 threads each), 512 GB.
HOST_CPU_MODEL = "Intel(R) Xeon(R) CPU E5-2697A v4 @ 2.60GHz"
HOST_SOCKETS = 2
HOST_CORES = 16
HOST_THREADS = 64
HOST_MEMORY = 512 * GIB
ROOTFS = 100 * GIB
LOCAL_ZFS = 2 * 1024 * GIB


def _jitter(vmid: int, salt: str) -> float:
    """A stable 0..1 per VM, so usage looks alive without randomness in tests."""
    return int(hashlib.sha1(f"{vmid}:{salt}".encode()).hexdigest()[:6], 16) / 0xFFFFFF


def vm_uptime(vm: LabVm, now: float | None = None) -> int:
    if vm.status != "running" or vm.started_at is None:
        return 0
    return max(0, int((now or time.time()) - vm.started_at))


def vm_row(vm: LabVm, node: str = PVE_HOST) -> dict[str, Any]:
    """The fields shared by `qemu` lists, `status/current` and `cluster/resources`."""
    running = vm.status == "running"
    maxmem = vm.memory_mib * MIB
    row: dict[str, Any] = {
        "vmid": vm.vmid,
        "name": vm.name,
        "status": vm.status,
        "cpus": vm.cores,
        "maxcpu": vm.cores,
        "cpu": round(0.02 + 0.3 * _jitter(vm.vmid, "cpu"), 4) if running else 0,
        "maxmem": maxmem,
        "mem": int(maxmem * (0.25 + 0.5 * _jitter(vm.vmid, "mem"))) if running else 0,
        "maxdisk": vm.disk_gib * GIB,
        "disk": 0,
        "uptime": vm_uptime(vm),
        "netin": 0,
        "netout": 0,
        "diskread": 0,
        "diskwrite": 0,
        "template": 1 if vm.template else 0,
        "node": node,
    }
    if vm.tags:
        row["tags"] = ";".join(vm.tags)
    if vm.lock:
        row["lock"] = vm.lock
    if running:
        row["pid"] = 10_000 + vm.vmid
        row["qmpstatus"] = "running"
    return row


def vm_status_current(vm: LabVm, node: str = PVE_HOST) -> dict[str, Any]:
    row = vm_row(vm, node)
    row.update(
        {
            "qmpstatus": vm.status,
            "agent": 1,
            "ha": {"managed": 0},
            "running-machine": "pc-q35-9.2+pve1" if vm.status == "running" else None,
            "running-qemu": "9.2.0" if vm.status == "running" else None,
        }
    )
    return {k: v for k, v in row.items() if v is not None}


def agent_interfaces(vm: LabVm, address: str) -> dict[str, Any]:
    """guest-network-get-interfaces as PVE passes it on: `{"result": [...]}`."""
    ifaces: list[dict[str, Any]] = [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [
                {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
            ],
        }
    ]
    mac = next((m.lower() for m in vm.macs if m), "bc:24:11:00:00:00")
    ifaces.append(
        {
            "name": "eth0",
            "hardware-address": mac,
            "ip-addresses": [{"ip-address": address, "ip-address-type": "ipv4", "prefix": 24}],
        }
    )
    return {"result": ifaces}


def vm_config(vm: LabVm, *, current: bool = False) -> dict[str, Any]:
    cfg = dict(vm.config(current=current))
    if vm.lock:
        cfg["lock"] = vm.lock
    return cfg


def vm_pending(vm: LabVm) -> list[dict[str, Any]]:
    """`qemu/{vmid}/pending`: every config key with its `value`, a `pending` one where a
    change waits for the next start, `delete: 1` where a removal does (and keys only
    pending, with no value yet)."""
    cfg = vm.config(current=True)
    rows: list[dict[str, Any]] = []
    for key in sorted(cfg):
        row: dict[str, Any] = {"key": key, "value": cfg[key]}
        if key in vm.pending:
            row["pending"] = int(vm.pending[key]) if key == "cores" else vm.pending[key]
        if key in vm.pending_delete:
            row["delete"] = 1
        rows.append(row)
    rows += [{"key": k, "pending": v} for k, v in sorted(vm.pending.items()) if k not in cfg]
    rows += [{"key": k, "delete": 1} for k in vm.pending_delete if k not in cfg]
    return rows


def cluster_status_node(world: World, node: str = PVE_HOST) -> dict[str, Any]:
    """The node entry of `cluster/status` on a host that is in no cluster."""
    return {
        "type": "node",
        "id": f"node/{node}",
        "name": node,
        "nodeid": 0,
        "ip": "127.0.0.1",
        "local": 1,
        "online": 1,
        "level": "",
    }


def host_memory_used(world: World) -> int:
    with world.lock:
        guests = sum(vm.memory_mib * MIB for vm in world.vms.values() if vm.status == "running")
    return min(HOST_MEMORY - GIB, 6 * GIB + int(guests * 0.6))


def host_cpu(world: World) -> float:
    with world.lock:
        running = [vm for vm in world.vms.values() if vm.status == "running"]
    busy = sum(vm_row(vm)["cpu"] * vm.cores for vm in running)
    return round(min(1.0, 0.01 + busy / HOST_THREADS), 4)


def host_uptime(world: World) -> int:
    return int(time.time() - world.started) + 86 * 86400


def node_row(world: World, node: str = PVE_HOST) -> dict[str, Any]:
    return {
        "id": f"node/{node}",
        "type": "node",
        "node": node,
        "status": "online",
        "cpu": host_cpu(world),
        "maxcpu": HOST_THREADS,
        "mem": host_memory_used(world),
        "maxmem": HOST_MEMORY,
        "disk": 9 * GIB,
        "maxdisk": ROOTFS,
        "uptime": host_uptime(world),
        "level": "",
        "ssl_fingerprint": "",
    }


def node_status(world: World) -> dict[str, Any]:
    used = host_memory_used(world)
    return {
        "cpu": host_cpu(world),
        "wait": 0.0,
        "loadavg": ["3.12", "2.87", "2.65"],
        "uptime": host_uptime(world),
        "memory": {
            "total": HOST_MEMORY,
            "used": used,
            "free": HOST_MEMORY - used,
            "available": HOST_MEMORY - used,
        },
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {
            "total": ROOTFS,
            "used": 9 * GIB,
            "free": ROOTFS - 9 * GIB,
            "avail": ROOTFS - 9 * GIB,
        },
        "cpuinfo": {
            "model": HOST_CPU_MODEL,
            "sockets": HOST_SOCKETS,
            "cores": HOST_CORES,
            "cpus": HOST_THREADS,
            "mhz": "2600.000",
            "hvm": "1",
            "flags": "",
        },
        "current-kernel": {
            "sysname": "Linux",
            "release": KERNEL,
            "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9 (2025-03-16T19:18Z)",
            "machine": "x86_64",
        },
        "kversion": f"Linux {KERNEL}",
        "boot-info": {"mode": "efi", "secureboot": 0},
        "pveversion": PVE_MANAGER,
    }


def storage_rows(world: World, node: str = PVE_HOST) -> list[dict[str, Any]]:
    """`local` (dir: ISOs, templates) and `local-zfs` (the VMs' OS disks)."""
    with world.lock:
        vm_disks = sum(vm.disk_gib * GIB for vm in world.vms.values())
    rows = [
        ("local", "dir", "iso,vztmpl,backup,snippets", ROOTFS, 9 * GIB + 2 * GIB),
        ("local-zfs", "zfspool", "images,rootdir", LOCAL_ZFS, min(LOCAL_ZFS, vm_disks // 3)),
    ]
    out = []
    for name, kind, content, total, used in rows:
        out.append(
            {
                "storage": name,
                "type": kind,
                "content": content,
                "active": 1,
                "enabled": 1,
                "shared": 0,
                "total": total,
                "used": used,
                "avail": total - used,
                "used_fraction": round(used / total, 6),
                "node": node,
            }
        )
    return out


def storage_resource(row: dict[str, Any]) -> dict[str, Any]:
    """`cluster/resources` names the same numbers disk/maxdisk."""
    return {
        "id": f"storage/{row['node']}/{row['storage']}",
        "type": "storage",
        "node": row["node"],
        "storage": row["storage"],
        "plugintype": row["type"],
        "content": row["content"],
        "shared": row["shared"],
        "status": "available",
        "disk": row["used"],
        "maxdisk": row["total"],
    }


def storage_content(world: World, storage: str) -> list[dict[str, Any]]:
    """`storage/{storage}/content`: the ISOs on `local`, the VMs' volumes elsewhere."""
    created = int(world.started) - 40 * 86400
    if storage == "local":
        return [
            {"volid": v, "content": "iso", "format": "iso", "size": size, "ctime": created}
            for v, size in sorted(world.isos.items())
        ]
    out = []
    for vm in sorted(world.vms.values(), key=lambda v: v.vmid):
        for _key, drive in sorted(vm.drives.items()):
            volid, *options = drive.split(",")
            if not volid.startswith(f"{storage}:") or "media=cdrom" in options:
                continue
            size = next((o[5:] for o in options if o.startswith("size=")), "0G")
            row: dict[str, Any] = {
                "volid": volid,
                "content": "images",
                "format": "raw",
                "size": int(float(size.rstrip("GM")) * (GIB if size.endswith("G") else MIB)),
                "vmid": vm.vmid,
            }
            if "/" in volid:  # a linked clone: its base volume's snapshot
                row["parent"] = volid.split(":", 1)[1].split("/")[0] + "@__base__"
            out.append(row)
    return out


def mapping_rows(world: World, *, check_node: str | None = None) -> list[dict[str, Any]]:
    """`/cluster/mapping/pci`: each mapping with its entries; `checks` for one node."""
    digest = hashlib.sha1(
        repr(sorted((m.id, m.description, m.map) for m in world.pci_mappings.values())).encode()
    ).hexdigest()
    out = []
    for mapping in sorted(world.pci_mappings.values(), key=lambda m: m.id):
        row: dict[str, Any] = {
            "id": mapping.id,
            "type": "pci",
            "description": mapping.description,
            "map": list(mapping.map),
            "digest": digest,
        }
        if check_node is not None:
            checks = []
            entries = [e for e in mapping.map if f"node={check_node}" in e.split(",")]
            if not entries:
                checks.append(
                    {"severity": "warning", "message": f"No mapping for node {check_node}."}
                )
            for entry in entries:
                path = dict(p.split("=", 1) for p in entry.split(",") if "=" in p).get("path", "")
                for dev in path.split(";"):
                    if dev not in world.pci or not world.pci[dev].present:
                        checks.append(
                            {
                                "severity": "error",
                                "message": f"Invalid configuration: pci device '{dev}' not found",
                            }
                        )
            row["checks"] = checks
        out.append(row)
    return out


def pci_rows(world: World, blacklist: tuple[str, ...] = ("05", "06", "0b")) -> list[dict]:
    """`hardware/pci`: present devices, classes filtered by prefix as PVE does."""
    with world.lock:
        devices = [d for d in world.pci.values() if d.present]
    out = []
    for d in sorted(devices, key=lambda d: d.address):
        cls = d.class_id.lower().removeprefix("0x")
        if any(cls.startswith(b.lower()) for b in blacklist if b):
            continue
        out.append(
            {
                "id": d.address,
                "class": d.class_id,
                "vendor": d.vendor_id,
                "device": d.device_id,
                "vendor_name": d.vendor_name,
                "device_name": d.device_name,
                "subsystem_vendor": d.subsystem_vendor,
                "subsystem_device": d.subsystem_device,
                "subsystem_vendor_name": d.vendor_name if d.subsystem_vendor else "",
                "subsystem_device_name": "",
                "iommugroup": d.iommugroup,
                "mdev": 0,
            }
        )
    return out


__all__ = [
    "PVE_HOST",
    "PVE_VERSION",
    "mapping_rows",
    "node_row",
    "node_status",
    "pci_rows",
    "storage_content",
    "storage_resource",
    "storage_rows",
    "vm_config",
    "vm_row",
    "vm_status_current",
]
