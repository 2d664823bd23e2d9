"""Rehearsing a replacement Talos VM on the lab's PVE, through a token as the console does:
the template and ISO are there, clone and create behave as qemu-server's, and what a real
PVE refuses (raw passthrough from a token, a GPU held by another VM, a linked clone of a
normal VM, a multicast MAC, starting a template) is refused with PVE's own text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.errors import BackendError
from dapper.lab.pve_server import PveServer
from dapper.lab.world import (
    GPU_ADDRESSES,
    HBA_ADDRESSES,
    TALOS_ISO,
    TEMPLATE_NAME,
    TEMPLATE_VMID,
    PciMapping,
    World,
)

from tests.lab.pve_lab import backend
from tests.waiting import eventually

NEW_MAC = "BC:24:11:E0:17:19"  # talos-node-large-2's, kept for its replacement


@pytest.fixture
def admin(server: PveServer, ca_file: str) -> Iterator[ProxmoxBackend]:
    b = backend(server, ca_file)
    yield b
    b.close()


def api(server: PveServer, ca_file: str, method: str, path: str, **data: str):
    headers = {"Authorization": server.admin_token.header}
    url = f"{server.url}/api2/json/{path}"
    return requests.request(method, url, headers=headers, data=data, verify=ca_file, timeout=5)


def run(admin: ProxmoxBackend, upid: str) -> list[str]:
    lines: list[str] = []
    admin.wait_task(upid, timeout=10, on_progress=lines.append)
    return lines


def test_the_template_is_listed_as_a_template_and_cannot_start(admin: ProxmoxBackend) -> None:
    template = admin.vm(TEMPLATE_VMID)
    assert template.template and template.name == TEMPLATE_NAME
    assert template.status == "stopped" and not template.devices
    cfg = admin.vm_config(TEMPLATE_VMID)
    assert cfg["template"] == "1" and cfg["agent"] == "1"
    assert cfg["virtio0"].startswith(f"local-zfs:base-{TEMPLATE_VMID}-disk-0,")
    assert cfg["net0"].startswith("virtio=BC:24:11:") and "bridge=vmbr0" in cfg["net0"]
    assert [v.vmid for v in admin.vms() if v.template] == [TEMPLATE_VMID]
    with pytest.raises(BackendError, match=r"failed: you can't start a vm if it's a template$"):
        admin.wait_task(admin.start(TEMPLATE_VMID), timeout=10)
    assert admin.vm(TEMPLATE_VMID).status == "stopped"


def test_the_talos_iso_is_on_local(server: PveServer, ca_file: str, admin: ProxmoxBackend) -> None:
    isos = admin.storage_content("local")
    assert TALOS_ISO in [v.volid for v in isos]
    assert all(v.content == "iso" and v.format == "iso" and v.size > 0 for v in isos)
    images = admin.storage_content("local-zfs", content="images")
    assert f"local-zfs:base-{TEMPLATE_VMID}-disk-0" in [v.volid for v in images]
    resp = api(server, ca_file, "GET", "nodes/pve/storage/nope/content")
    assert resp.status_code == 500 and resp.reason == "storage 'nope' does not exist"


def test_full_clone_copies_the_whole_config_with_a_new_mac(
    world: World, admin: ProxmoxBackend
) -> None:
    # a source with everything a Talos node carries: mapped GPU, extra NIC, tags, agent
    run(admin, admin.clone(TEMPLATE_VMID, 120, "source-vm", full=True))
    run(
        admin,
        admin.set_config(
            120,
            {"hostpci0": "mapping=p100-2,pcie=1", "net1": "virtio,bridge=vmbr0,tag=200"},
        ),
    )
    source = admin.vm_config(120)
    run(admin, admin.clone(120, 121, "copy-vm", full=True, description="replacement"))
    copy = admin.vm_config(121)
    assert copy["hostpci0"] == "mapping=p100-2,pcie=1"
    for key in ("cores", "memory", "agent", "boot", "ide2", "tags", "cpu", "bios", "machine"):
        assert copy[key] == source[key], key
    for nic in ("net0", "net1"):
        model_mac, _, options = copy[nic].partition(",")
        assert options == source[nic].partition(",")[2]  # bridge, VLAN tag: as they were
        assert model_mac != source[nic].partition(",")[0]  # a new MAC, always
    assert copy["virtio0"] == "local-zfs:vm-121-disk-0,iothread=1,size=32G"
    assert copy["smbios1"] != source["smbios1"] and copy["description"] == "replacement"
    assert "template" not in copy and copy["name"] == "copy-vm"


def test_linked_clones_need_a_template_and_clone_refusals(
    server: PveServer, ca_file: str, admin: ProxmoxBackend
) -> None:
    # a template clones linked by default: the disk is a child of the base volume
    run(admin, admin.clone(TEMPLATE_VMID, 130, "linked", full=None))
    assert admin.vm_config(130)["virtio0"].startswith(
        f"local-zfs:base-{TEMPLATE_VMID}-disk-0/vm-130-disk-0,"
    )
    with pytest.raises(BackendError) as err:
        admin.clone(100, 131, "x", full=False)
    assert err.value.reason.endswith(
        ": Linked clone feature is not supported for 'local-zfs:vm-100-disk-0' (virtio0)"
    )
    with pytest.raises(BackendError, match="parameter 'storage' not allowed for linked clones"):
        admin.clone(TEMPLATE_VMID, 131, "x", full=False, storage="local-zfs")
    with pytest.raises(BackendError, match=r"unable to create VM 105: config file already exists"):
        admin.clone(TEMPLATE_VMID, 105, "x")
    # the storage VMs carry raw hostpci lines: a token may not copy them
    with pytest.raises(BackendError) as err:
        admin.clone(104, 131, "x")
    assert "only root can set 'hostpci0' config for non-mapped devices" in err.value.reason
    resp = api(server, ca_file, "POST", "nodes/pve/qemu/9000/clone", newid="131", full="maybe")
    assert resp.status_code == 400 and "boolean" in resp.json()["errors"]["full"]
    assert 131 not in {v.vmid for v in admin.vms(with_config=False)}
    # the template's base volume stays while a linked clone builds on it
    with pytest.raises(BackendError, match="base volume 'local-zfs:base-9000-disk-0' is still in"):
        admin.wait_task(admin.destroy(TEMPLATE_VMID), timeout=10)
    run(admin, admin.destroy(130))
    run(admin, admin.destroy(TEMPLATE_VMID))
    assert TEMPLATE_VMID not in {v.vmid for v in admin.vms(with_config=False)}


def test_create_with_mac_disk_and_iso_then_start_boots_maintenance_mode(
    world: World, admin: ProxmoxBackend
) -> None:
    run(admin, admin.stop(105))
    run(admin, admin.destroy(105))  # reuse the VMID and the MAC of the node it replaces
    upid = admin.create_vm(
        105,
        node="pve",
        name="talos-node-large-2",
        cores=16,
        sockets=1,
        memory=131072,
        cpu="host",
        net0=f"virtio={NEW_MAC},bridge=vmbr0,tag=100",
        virtio0="local-zfs:128,iothread=1",
        ide2=f"{TALOS_ISO},media=cdrom",
        boot="order=virtio0;ide2",
        agent=1,
        hostpci0="mapping=hba-2,pcie=1",
        tags="talos;k8s;worker",
        start=0,
    )
    assert ":qmcreate:105:" in upid
    run(admin, upid)
    cfg = admin.vm_config(105)
    assert cfg["net0"] == f"virtio={NEW_MAC},bridge=vmbr0,tag=100"
    assert cfg["virtio0"] == "local-zfs:vm-105-disk-0,iothread=1,size=128G"
    assert cfg["ide2"] == f"{TALOS_ISO},media=cdrom" and cfg["hostpci0"] == "mapping=hba-2,pcie=1"
    vm = admin.vm(105)
    assert vm.status == "stopped" and vm.macs == (NEW_MAC.lower(),) and vm.cpus == 16
    with pytest.raises(BackendError, match="VM 105 already exists on node 'pve'"):
        admin.create_vm(105, node="pve", name="again")

    run(admin, admin.start(105))
    assert world.vms[105].pci_in_use == [HBA_ADDRESSES[2]]  # the mapping, resolved
    addresses = eventually(
        lambda: _agent(admin, 105), interval=0.05, message="the new VM's guest agent"
    )
    machine = world.machine_of_vm(105)
    assert machine is not None and machine.maintenance and len(addresses) == 1


def _agent(admin: ProxmoxBackend, vmid: int) -> tuple[str, ...] | None:
    try:
        return admin.guest_addresses(vmid) or None
    except BackendError:
        return None


def test_a_gpu_held_by_a_running_vm_refuses_the_start(world: World, admin: ProxmoxBackend) -> None:
    run(admin, admin.create_vm(140, node="pve", name="gpu", hostpci0="mapping=p100-0,pcie=1"))
    with pytest.raises(BackendError) as err:
        admin.wait_task(admin.start(140), timeout=10)
    assert err.value.reason == (
        f"PVE task qmstart 140 failed: PCI device '{GPU_ADDRESSES[0]}' already in use by VMID '103'"
    )
    assert admin.vm(140).status == "stopped"
    run(admin, admin.stop(103))  # the GPU node gives its GPUs up
    run(admin, admin.start(140))
    assert world.vms[140].pci_in_use == [GPU_ADDRESSES[0]]
    with pytest.raises(BackendError, match=rf"'{GPU_ADDRESSES[0]}' already in use by VMID '140'"):
        admin.wait_task(admin.start(103), timeout=10)


def test_missing_devices_and_mappings_refuse_the_start(world: World, admin: ProxmoxBackend):
    world.pci_mappings["ghost"] = PciMapping(
        "ghost", "", ["id=10de:15f8,iommugroup=90,node=pve,path=0000:99:00.0"]
    )
    cases = {
        "mapping=nope": "PCI device mapping not found for 'nope'",
        "mapping=ghost": "PCI device mapping invalid (hardware probably changed): "
        "pci device '0000:99:00.0' not found",
    }
    for vmid, (value, message) in enumerate(cases.items(), start=150):
        run(admin, admin.create_vm(vmid, node="pve", hostpci0=value))
        with pytest.raises(BackendError) as err:
            admin.wait_task(admin.start(vmid), timeout=10)
        assert err.value.reason.endswith(f"failed: {message}")
    world.inject(f"gpu-gone:{GPU_ADDRESSES[1]}")
    run(admin, admin.stop(103))
    with pytest.raises(BackendError, match=rf"no PCI device found for '{GPU_ADDRESSES[1]}'"):
        admin.wait_task(admin.start(103), timeout=10)


def test_a_pooled_mapping_hands_out_a_free_device_each(world: World, admin: ProxmoxBackend):
    world.pci_mappings["p100"] = PciMapping(
        "p100", "the four P100s", [f"id=10de:15f8,node=pve,path={a}" for a in GPU_ADDRESSES]
    )
    run(admin, admin.stop(103))
    for vmid in (160, 161):
        run(admin, admin.create_vm(vmid, node="pve", hostpci0="mapping=p100", start=1))
    assert [world.vms[v].pci_in_use for v in (160, 161)] == [[GPU_ADDRESSES[0]], [GPU_ADDRESSES[1]]]
    assert admin.vm(160).devices[0].address == "mapping=p100"  # picked at start: unknown here
    run(
        admin, admin.create_vm(162, node="pve", **{f"hostpci{i}": "mapping=p100" for i in range(3)})
    )
    with pytest.raises(BackendError, match="could not find a free device for 'hostpci2'"):
        admin.wait_task(admin.start(162), timeout=10)


def test_raw_hostpci_through_a_token_is_refused(
    server: PveServer, ca_file: str, admin: ProxmoxBackend
) -> None:
    raw = f"{GPU_ADDRESSES[3]},pcie=1"
    with pytest.raises(BackendError) as err:
        admin.wait_task(admin.set_config(100, {"hostpci0": raw}), timeout=10)
    assert err.value.reason == (
        "PVE task qmconfig 100 failed: only root can set 'hostpci0' config for non-mapped devices"
    )
    with pytest.raises(BackendError, match="only root can set 'hostpci0'"):
        admin.set_config(100, {"hostpci0": raw}, sync=True)
    with pytest.raises(BackendError, match="only root can set 'hostpci4'"):  # nor remove one
        admin.set_config(103, delete=["hostpci4"], sync=True)
    resp = api(server, ca_file, "POST", "nodes/pve/qemu", vmid="170", hostpci0=raw)
    assert resp.status_code == 500
    assert resp.reason == "only root can set 'hostpci0' config for non-mapped devices"
    assert "hostpci0" not in admin.vm_config(100) and 170 not in server.world.vms
    # a mapping is what a token may set: Mapping.Use, which the console's token holds
    admin.set_config(100, {"hostpci0": "mapping=p100-3,pcie=1"}, sync=True)
    assert admin.vm_config(100)["hostpci0"] == "mapping=p100-3,pcie=1"
    # the backend shows a one-device mapping as its device, so joins see the GPU's VM
    (dev,) = admin.vm(100).devices
    assert (dev.address, dev.options) == (GPU_ADDRESSES[3], "mapping=p100-3,pcie=1")
    assert dev.device_id == "15f8" and "P100" in dev.description
    assert [d.address for d in next(v for v in admin.vms() if v.vmid == 100).devices] == [
        GPU_ADDRESSES[3]
    ]


def test_mappings_and_the_tokens_privileges(server: PveServer, ca_file: str, admin: ProxmoxBackend):
    mappings = {m.id: m for m in admin.mappings_pci()}
    assert sorted(mappings) == [*(f"hba-{i}" for i in range(4)), *(f"p100-{i}" for i in range(4))]
    assert [mappings[f"p100-{i}"].paths("pve") for i in range(4)] == [(a,) for a in GPU_ADDRESSES]
    entry = mappings["p100-0"].entries[0]
    assert (entry.id, entry.subsystem_id, entry.iommugroup) == ("10de:15f8", "10de:118f", 40)
    one = api(server, ca_file, "GET", "cluster/mapping/pci/hba-1").json()["data"]
    assert one["map"] == [
        f"id=1000:0097,iommugroup=21,node=pve,path={HBA_ADDRESSES[1]},subsystem-id=1000:30e0"
    ]
    checked = api(server, ca_file, "GET", "cluster/mapping/pci?check-node=pve").json()["data"]
    assert all(row["checks"] == [] for row in checked)
    perms = admin.call("get", "access/permissions")["/"]
    assert {"Mapping.Use", "VM.Allocate", "VM.Clone", "Datastore.AllocateSpace", "SDN.Use"} <= set(
        perms
    )
    auditor = backend(server, ca_file, auditor=True)
    assert "Mapping.Use" not in auditor.call("get", "access/permissions")["/"]
    resp = api(server, ca_file, "POST", "cluster/mapping/pci", id="extra", map="node=pve")
    assert resp.status_code == 403  # creating mappings is root's (Mapping.Modify)
    assert resp.reason == "Permission check failed (/mapping/pci, Mapping.Modify)"
    auditor.close()


def test_a_multicast_mac_is_refused(server: PveServer, ca_file: str, admin: ProxmoxBackend):
    resp = api(server, ca_file, "PUT", "nodes/pve/qemu/100/config", net0="virtio=01:00:5E:00:00:01")
    assert resp.status_code == 400 and resp.reason == "Parameter verification failed."
    assert resp.json() == {
        "data": None,
        "errors": {
            "net0": "invalid format - format error\n"
            "net0.macaddr: invalid format - value does not look like a valid unicast MAC address\n"
        },
    }
    with pytest.raises(BackendError, match=r"^400 .*net0"):
        admin.create_vm(171, node="pve", net0="virtio=03:00:00:00:00:01,bridge=vmbr0")
    # a unicast one goes through, and a NIC without one is given one under PVE's prefix
    admin.set_config(100, {"net0": f"virtio={NEW_MAC},bridge=vmbr0"}, sync=True)
    assert admin.vm_config(100)["net0"] == f"virtio={NEW_MAC},bridge=vmbr0"
    admin.set_config(100, {"net1": "e1000,bridge=vmbr0"}, sync=True)
    assert admin.vm_config(100)["net1"].startswith("e1000=BC:24:11:")
