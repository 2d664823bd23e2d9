"""The lab's PVE API driven over real TLS sockets by proxmoxer, directly and via the backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.errors import BackendError
from dapper.lab.pve_server import PveServer
from dapper.lab.world import GPU_ADDRESSES, HBA_ADDRESSES, Timings, World
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.lab.pve_lab import backend
from tests.waiting import eventually

UPID = re.compile(r"^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:(\w+):(\d+):([^:]+):$")
FACT_MACS = {
    "talos-control-1": "bc:24:11:2e:9f:34",
    "talos-control-2": "bc:24:11:b6:57:d5",
    "talos-control-3": "bc:24:11:38:d5:d7",
    "talos-node-gpu-1": "bc:24:11:d3:ff:c2",
    "talos-node-large-1": "bc:24:11:7d:6d:e5",
    "talos-node-large-2": "bc:24:11:e0:17:19",
    "talos-node-large-3": "bc:24:11:2e:71:24",
}


@pytest.fixture
def world() -> Iterator[World]:
    """Clones take a little longer here, so a test can see one in progress."""
    w = World(timings=Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.1))
    yield w
    w.close()


def raw_api(server: PveServer, ca_file: str, *, auditor: bool = False) -> ProxmoxAPI:
    token = server.auditor_token if auditor else server.admin_token
    user, _, name = token.token_id.partition("!")
    return ProxmoxAPI(
        f"127.0.0.1:{server.port}",
        user=user,
        token_name=name,
        token_value=token.secret,
        verify_ssl=ca_file,
        timeout=5,
    )


@pytest.fixture
def admin(server: PveServer, ca_file: str) -> Iterator[ProxmoxBackend]:
    b = backend(server, ca_file)
    yield b
    b.close()


def test_lists_the_seven_talos_vms_with_facts(admin: ProxmoxBackend) -> None:
    vms = [v for v in admin.vms() if not v.template]
    assert {v.name: v.macs for v in vms} == {k: (m,) for k, m in FACT_MACS.items()}
    assert all(v.status == "running" and v.host == "pve" for v in vms)
    gpu = next(v for v in vms if v.name == "talos-node-gpu-1")
    assert gpu.cpus == 16 and gpu.mem_total == 128 * 1024**3
    assert gpu.uptime > 86400 and 0 < gpu.cpu_usage < 1 and 0 < gpu.mem_used < gpu.mem_total
    assert "talos" in gpu.tags
    assert [n.name for n in admin.nodes()] == ["pve"]
    assert admin.node_status()["cpuinfo"]["cpus"] == 64


def test_gpu_vm_passes_four_p100s_and_storage_vms_their_ssd_controllers(
    server: PveServer, ca_file: str, admin: ProxmoxBackend
) -> None:
    px = raw_api(server, ca_file)
    cfg = px.nodes("pve").qemu(103).config.get()
    assert [cfg[f"hostpci{i}"] for i in range(4)] == [f"{a},pcie=1" for a in GPU_ADDRESSES]
    assert re.fullmatch(r"[0-9a-f]{40}", cfg["digest"])

    vm = admin.vm(103)
    p100s = [d for d in vm.devices if d.vendor_id == "10de"]
    assert [(d.slot, d.address, d.device_id) for d in p100s] == [
        (f"hostpci{i}", a, "15f8") for i, a in enumerate(GPU_ADDRESSES)
    ]
    assert all(d.options == "pcie=1" and "P100" in d.description for d in p100s)
    storage_vms = [
        v for v in admin.vms() if v.name.startswith(("talos-node-large", "talos-node-gpu"))
    ]
    controllers = [d.address for v in storage_vms for d in v.devices if d.vendor_id != "10de"]
    assert sorted(controllers) == sorted(HBA_ADDRESSES)
    assert ("hostpci0", f"{GPU_ADDRESSES[0]},pcie=1") in vm.config


def test_hardware_pci_shows_the_p100s_with_real_ids(
    server: PveServer, ca_file: str, admin: ProxmoxBackend
) -> None:
    rows = raw_api(server, ca_file).nodes("pve").hardware.pci.get()
    nvidia = [r for r in rows if r["vendor"] == "0x10de"]
    assert [r["id"] for r in nvidia] == list(GPU_ADDRESSES)
    assert {r["device"] for r in nvidia} == {"0x15f8"}
    assert all(r["class"].startswith("0x03") for r in nvidia)
    gpus = admin.gpus()
    assert [(g.address, g.device_id, g.vmid, g.vm_name) for g in gpus] == [
        (a, "15f8", 103, "talos-node-gpu-1") for a in GPU_ADDRESSES
    ]
    # a blacklist of class 03 hides them, as PVE's pci-class-blacklist does
    hidden = raw_api(server, ca_file).nodes("pve").hardware.pci.get(**{"pci-class-blacklist": "03"})
    assert not [r for r in hidden if r["vendor"] == "0x10de"]


def test_nextid_storage_and_resources(server: PveServer, ca_file: str, admin: ProxmoxBackend):
    px = raw_api(server, ca_file)
    assert px.cluster.nextid.get() == "107"  # a string on the wire, as PVE sends it
    assert admin.next_vmid() == 107
    with pytest.raises(ResourceException) as err:
        px.cluster.nextid.get(vmid=103)
    assert err.value.status_code == 400 and "already exists" in str(err.value.errors)
    assert {s.name for s in admin.storage()} == {"local", "local-zfs"}
    kinds = {r["type"] for r in px.cluster.resources.get()}
    assert kinds == {"node", "storage", "qemu"}
    assert {r["id"] for r in px.cluster.resources.get(type="vm")} == {
        f"qemu/{i}" for i in (*range(100, 107), 9000)
    }


def test_stop_start_shutdown_through_tasks(world: World, admin: ProxmoxBackend) -> None:
    upid = admin.stop(104)
    m = UPID.match(upid)
    assert m and m.groups() == ("qmstop", "104", admin.token_id)
    lines: list[str] = []
    task = admin.wait_task(upid, timeout=10, on_progress=lines.append)
    assert task.exitstatus == "OK" and lines[-1] == "TASK OK"
    assert admin.vm(104).status == "stopped" and admin.vm(104).uptime == 0
    machine = world.machine("talos-node-large-1")
    assert not world.reachable(machine)  # the Talos API of a stopped VM is gone
    eventually(  # and its Node goes NotReady once the grace period has passed
        lambda: not world.node_ready("talos-node-large-1"),
        timeout=world.timings.node_grace + 10,
        message="the stopped VM's Node to go NotReady",
    )
    assert upid in {t.upid for t in admin.tasks()}

    # vm_stop with shutdown on a VM that is not running has nothing to do: the task ends OK
    assert admin.wait_task(admin.shutdown(104), timeout=10).exitstatus == "OK"

    admin.wait_task(admin.start(104), timeout=10)
    assert admin.vm(104).status == "running"
    with pytest.raises(BackendError, match="already running"):
        admin.wait_task(admin.start(104), timeout=10)

    admin.wait_task(admin.shutdown(105), timeout=10)
    assert admin.vm(105).status == "stopped"
    admin.wait_task(admin.reboot(104), timeout=10)
    assert admin.vm(104).status == "running"
    writes = [w.op for w in world.writes]
    assert "POST /nodes/pve/qemu/104/status/stop" in writes
    assert all(w.identity == admin.token_id for w in world.writes)


def test_clone_then_start_boots_a_new_vm(world: World, admin: ProxmoxBackend) -> None:
    newid = admin.next_vmid()
    upid = admin.clone(9000, newid, "talos-node-large-4")  # a full clone of the template
    assert UPID.match(upid).group(1) == "qmclone"
    progress: list[str] = []
    admin.wait_task(upid, timeout=10, on_progress=progress.append)
    assert progress[0].startswith("create full clone of drive virtio0")
    assert any("100.00%" in line for line in progress) and progress[-1] == "TASK OK"
    clone = admin.vm(newid)
    assert clone.name == "talos-node-large-4" and clone.status == "stopped"
    assert clone.macs and clone.macs[0] not in FACT_MACS.values()

    admin.wait_task(admin.start(newid), timeout=10)
    assert admin.vm(newid).status == "running"
    machine = next(m for m in world.machines.values() if m.vmid == newid)
    assert machine.maintenance  # a fresh clone boots into Talos maintenance mode
    assert admin.next_vmid() == newid + 1


def test_destroy_refuses_a_running_vm_then_removes_a_stopped_one(admin: ProxmoxBackend) -> None:
    with pytest.raises(BackendError, match=r"500 .*VM 106 is running - destroy failed") as err:
        admin.destroy(106)
    assert err.value.code == "HTTP_500"
    admin.wait_task(admin.stop(106), timeout=10)
    upid = admin.destroy(106)
    assert UPID.match(upid).group(1) == "qmdestroy"
    admin.wait_task(upid, timeout=10)
    assert 106 not in {v.vmid for v in admin.vms()}
    with pytest.raises(BackendError, match="does not exist"):
        admin.call("get", "nodes/pve/qemu/106/config")


def test_set_config_async_and_sync_with_digest(world: World, admin: ProxmoxBackend) -> None:
    cfg = admin.vm_config(104)
    upid = admin.set_config(104, {"hostpci1": "mapping=p100-3,pcie=1"}, digest=cfg["digest"])
    lines: list[str] = []
    admin.wait_task(upid, timeout=10, on_progress=lines.append)
    assert any("hostpci1" in line for line in lines)
    assert admin.vm_config(104)["hostpci1"] == "mapping=p100-3,pcie=1"
    assert admin.set_config(104, delete=["hostpci1"], sync=True) is None
    assert "hostpci1" not in admin.vm_config(104)
    with pytest.raises(BackendError, match="detected modified configuration"):
        admin.set_config(104, {"cores": 8}, digest="0" * 40, sync=True)
    with pytest.raises(BackendError, match=r"400 .*hostpci2"):
        admin.set_config(104, {"hostpci2": "not-a-device"})
    assert admin.vm(104).cpus == 16


WRITES = [
    ("start", lambda b: b.start(104)),
    ("stop", lambda b: b.stop(104)),
    ("shutdown", lambda b: b.shutdown(104)),
    ("reboot", lambda b: b.reboot(104)),
    ("clone", lambda b: b.clone(104, 150, "x")),
    ("destroy", lambda b: b.destroy(104)),
    ("set_config", lambda b: b.set_config(104, {"cores": 2})),
    ("set_config_sync", lambda b: b.set_config(104, {"cores": 2}, sync=True)),
    ("create_vm", lambda b: b.create_vm(150, node="pve", name="x", cores=2)),
]


def test_auditor_token_reads_but_gets_403_on_every_write(
    world: World, server: PveServer, ca_file: str
) -> None:
    auditor = backend(server, ca_file, auditor=True)
    assert len(auditor.vms()) == 8  # PVEAuditor reads everything (the template too)
    for name, write in WRITES:
        with pytest.raises(BackendError) as err:
            write(auditor)
        assert err.value.code == "PERMISSION_DENIED", name
        assert err.value.reason.startswith("403 Forbidden: permission denied (Permission check")
    # every write route the server has, straight through proxmoxer
    px = raw_api(server, ca_file, auditor=True)
    routes = server.api.write_routes
    assert len(routes) >= 8
    for method, pattern in routes:
        path = (
            pattern.strip("^$").replace("(?P<node>[^/]+)", "pve").replace("(?P<vmid>[^/]+)", "104")
        )
        with pytest.raises(ResourceException) as err:
            getattr(px(path), method.lower())()
        assert err.value.status_code == 403, (method, path)
    assert world.writes == []
    assert all(v.status == "running" for v in world.vms.values() if not v.template)
    assert world.vms[104].cores == 16 and 150 not in world.vms
    auditor.close()


def test_bad_or_missing_token_is_401(server: PveServer, ca_file: str) -> None:
    bad = ProxmoxBackend(server.url, server.admin_token.token_id, "wrong", ca_file=ca_file)
    with pytest.raises(BackendError, match=r"^401 Unauthorized: token rejected") as err:
        bad.vms()
    assert err.value.code == "UNAUTHENTICATED"
    unknown = ProxmoxBackend(server.url, "nobody@pve!x", server.admin_token.secret, ca_file=ca_file)
    with pytest.raises(BackendError, match="401"):
        unknown.nodes()
    resp = requests.get(f"{server.url}/api2/json/nodes", verify=ca_file, timeout=5)
    assert resp.status_code == 401 and resp.json()["data"] is None


def test_wire_details_errors_and_unknown_paths(server: PveServer, ca_file: str) -> None:
    headers = {"Authorization": server.admin_token.header}
    url = f"{server.url}/api2/json"
    resp = requests.post(
        f"{url}/nodes/pve/qemu/104/clone", headers=headers, verify=ca_file, timeout=5
    )
    assert resp.status_code == 400 and resp.reason == "Parameter verification failed."
    assert resp.json() == {"data": None, "errors": {"newid": resp.json()["errors"]["newid"]}}
    resp = requests.get(f"{url}/nodes/pve/bogus", headers=headers, verify=ca_file, timeout=5)
    assert resp.status_code == 501 and "not implemented" in resp.reason
    resp = requests.get(
        f"{url}/nodes/pve/qemu/999/status/current", headers=headers, verify=ca_file, timeout=5
    )
    assert resp.status_code == 500 and "999.conf' does not exist" in resp.reason
    resp = requests.get(
        f"{url}/nodes/pve/tasks/UPID:nope/status", headers=headers, verify=ca_file, timeout=5
    )
    assert resp.status_code == 400
    assert requests.get(f"{url}/version", headers=headers, verify=ca_file, timeout=5).json()[
        "data"
    ]["release"]


def test_one_backend_serves_many_threads(admin: ProxmoxBackend) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: admin.vms(with_config=False), range(12)))
    assert all([v.vmid for v in r] == [*range(100, 107), 9000] for r in results)
    # reads share one thread-safe urllib3 pool; proxmoxer (a session per thread) only writes
    assert admin._readers is not None and admin._apis == []
    admin.close()
    assert admin._apis == [] and len(admin.vms(with_config=False)) == 8
