"""The lab's PVE where qemu-server and pve-manager are particular: changes that wait for a
restart (the pending section), templates, reset, `cluster/status`, and the shapes of a few
refusals and task fields, all through the project's ProxmoxBackend over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.errors import BackendError
from dapper.lab.pve_server import PveServer
from dapper.lab.world import World

from tests.lab.pve_lab import backend

Q = "nodes/pve/qemu"


@pytest.fixture
def admin(server: PveServer, ca_file: str) -> Iterator[ProxmoxBackend]:
    b = backend(server, ca_file)
    yield b
    b.close()


def _stop(admin: ProxmoxBackend, vmid: int) -> None:
    admin.wait_task(admin.call("post", f"{Q}/{vmid}/status/stop"), timeout=10)


def _start(admin: ProxmoxBackend, vmid: int) -> None:
    admin.wait_task(admin.call("post", f"{Q}/{vmid}/status/start"), timeout=10)


def _raw(server: PveServer, ca_file: str, method: str, path: str, auth: str | None = None):
    headers = {"Authorization": auth or server.admin_token.header}
    url = f"{server.url}/api2/json/{path}"
    return requests.request(method, url, headers=headers, verify=ca_file, timeout=5)


# -- 5: pending changes


def test_cores_memory_and_hostpci_on_a_running_vm_wait_for_a_restart(
    world: World, admin: ProxmoxBackend
) -> None:
    running = admin.call("get", f"{Q}/104/config", current=1)
    assert admin.call("get", f"{Q}/104/status/current")["status"] == "running"
    admin.set_config(
        104,
        {"cores": 12, "memory": 40960, "hostpci1": "mapping=p100-3,pcie=1", "description": "x"},
        sync=True,
    )
    # the API's default (current=0) takes pending values in; current=1 is what runs
    merged = admin.call("get", f"{Q}/104/config")
    now = admin.call("get", f"{Q}/104/config", current=1)
    assert (merged["cores"], merged["memory"], merged["hostpci1"]) == (
        12,
        "40960",
        "mapping=p100-3,pcie=1",
    )
    assert (now["cores"], now["memory"]) == (running["cores"], running["memory"])
    assert "hostpci1" not in now and now["description"] == "x"  # hot-pluggable: applied
    assert merged["digest"] == now["digest"] != running["digest"]
    rows = {r["key"]: r for r in admin.call("get", f"{Q}/104/pending")}
    assert rows["cores"] == {"key": "cores", "value": running["cores"], "pending": 12}
    assert rows["memory"]["pending"] == "40960" and rows["memory"]["value"] == running["memory"]
    assert rows["hostpci1"] == {"key": "hostpci1", "pending": "mapping=p100-3,pcie=1"}
    assert "pending" not in rows["description"] and rows["name"]["value"] == running["name"]
    # what runs is what the VM lists show
    assert admin.call("get", f"{Q}/104/status/current")["cpus"] == running["cores"]
    # a reset keeps the same QEMU process: still pending
    admin.wait_task(admin.call("post", f"{Q}/104/status/reset"), timeout=10)
    assert any("pending" in r for r in admin.call("get", f"{Q}/104/pending"))
    # stop + start applies them (the GPU node lets go of the P100 the mapping names)
    _stop(admin, 103)
    _stop(admin, 104)
    _start(admin, 104)
    assert not any("pending" in r or "delete" in r for r in admin.call("get", f"{Q}/104/pending"))
    after = admin.call("get", f"{Q}/104/config", current=1)
    assert (after["cores"], after["memory"], after["hostpci1"]) == (
        12,
        "40960",
        "mapping=p100-3,pcie=1",
    )
    assert admin.call("get", f"{Q}/104/status/current")["cpus"] == 12
    # a pending removal: `delete: 1` on the key, gone from the merged view only
    admin.set_config(104, delete=["hostpci1"], sync=True)
    rows = {r["key"]: r for r in admin.call("get", f"{Q}/104/pending")}
    assert rows["hostpci1"]["delete"] == 1 and "value" in rows["hostpci1"]
    assert "hostpci1" not in admin.call("get", f"{Q}/104/config")
    assert "hostpci1" in admin.call("get", f"{Q}/104/config", current=1)
    _stop(admin, 104)
    _start(admin, 104)
    assert "hostpci1" not in admin.call("get", f"{Q}/104/config", current=1)


def test_a_stopped_vm_takes_changes_at_once_and_a_reboot_applies_pending(
    admin: ProxmoxBackend,
) -> None:
    _stop(admin, 104)
    admin.set_config(104, {"cores": 6}, sync=True)
    assert admin.call("get", f"{Q}/104/config", current=1)["cores"] == 6
    assert not any("pending" in r for r in admin.call("get", f"{Q}/104/pending"))
    _start(admin, 104)
    admin.set_config(104, {"cores": 7}, sync=True)
    assert admin.call("get", f"{Q}/104/config", current=1)["cores"] == 6
    admin.wait_task(admin.call("post", f"{Q}/104/status/reboot"), timeout=10)
    assert admin.call("get", f"{Q}/104/config", current=1)["cores"] == 7
    # setting the running value again leaves nothing pending
    admin.set_config(104, {"cores": 9}, sync=True)
    admin.set_config(104, {"cores": 7}, sync=True)
    assert not any("pending" in r for r in admin.call("get", f"{Q}/104/pending"))


def test_revert_drops_pending_changes(admin: ProxmoxBackend, server: PveServer, ca_file: str):
    """`revert=` on POST .../config: a key that runs goes back to its running value (its
    pending change or pending deletion goes), a key set only in the pending section goes."""
    running = admin.call("get", f"{Q}/104/config", current=1)
    admin.set_config(104, {"cores": 12, "hostpci1": "mapping=p100-3,pcie=1"}, sync=True)
    admin.set_config(104, delete=["memory"], sync=True)
    rows = {r["key"]: r for r in admin.call("get", f"{Q}/104/pending")}
    assert rows["cores"]["pending"] == 12 and rows["memory"]["delete"] == 1
    upid = admin.set_config(104, {"revert": "cores,hostpci1,memory"})
    assert isinstance(upid, str)
    admin.wait_task(upid, timeout=10)
    rows = {r["key"]: r for r in admin.call("get", f"{Q}/104/pending")}
    assert not any("pending" in r or "delete" in r for r in rows.values())
    assert "hostpci1" not in rows
    merged = admin.call("get", f"{Q}/104/config")
    assert (merged["cores"], merged["memory"]) == (running["cores"], running["memory"])
    # qemu-server's own checks, before any task: known options, not set or deleted too
    url = f"{server.url}/api2/json/{Q}/104/config"
    headers = {"Authorization": server.admin_token.header}
    for data, errors in (
        ({"revert": "bogus"}, {"revert": "unknown option 'bogus'"}),
        (
            {"revert": "cores", "cores": "4"},
            {"delete": "you can't use '-cores' and -revert cores' at the same time"},
        ),
        (
            {"revert": "cores", "delete": "cores"},
            {"revert": "you can't use '-delete cores' and -revert cores' at the same time"},
        ),
    ):
        resp = requests.post(url, data=data, headers=headers, verify=ca_file, timeout=5)
        assert resp.status_code == 400 and resp.reason == "Parameter verification failed."
        assert resp.json()["errors"] == errors


# -- 7: template, reset, cluster/status


def test_a_stopped_vm_becomes_a_template_that_cannot_start(admin: ProxmoxBackend) -> None:
    with pytest.raises(BackendError, match="you can't convert a VM to template if VM is running"):
        admin.call("post", f"{Q}/104/template")
    _stop(admin, 104)
    upid = admin.call("post", f"{Q}/104/template")
    assert ":qmtemplate:104:" in upid
    admin.wait_task(upid, timeout=10)
    cfg = admin.call("get", f"{Q}/104/config")
    assert cfg["template"] == 1
    assert cfg["virtio0"].startswith("local-zfs:base-104-disk-0")
    with pytest.raises(BackendError, match="you can't convert a template to a template"):
        admin.call("post", f"{Q}/104/template")
    with pytest.raises(BackendError, match="you can't start a vm if it's a template"):
        _start(admin, 104)


def test_reset_is_a_task_and_a_stopped_vm_is_refused(admin: ProxmoxBackend) -> None:
    upid = admin.call("post", f"{Q}/104/status/reset")
    assert ":qmreset:104:" in upid
    assert admin.wait_task(upid, timeout=10).exitstatus == "OK"
    assert admin.call("get", f"{Q}/104/status/current")["status"] == "running"
    _stop(admin, 104)
    before = len(admin.call("get", "nodes/pve/tasks"))
    with pytest.raises(BackendError, match="VM 104 not running"):
        admin.call("post", f"{Q}/104/status/reset")
    assert len(admin.call("get", "nodes/pve/tasks")) == before


def test_cluster_status_of_a_single_host(admin: ProxmoxBackend) -> None:
    (entry,) = admin.call("get", "cluster/status")
    assert entry["type"] == "node" and entry["id"] == "node/pve" and entry["name"] == "pve"
    assert (entry["nodeid"], entry["local"], entry["online"]) == (0, 1, 1)
    assert "ip" in entry and "quorate" not in entry


# -- 8: error shapes and task fields


def test_an_unknown_upid_is_a_parameter_error(server: PveServer, ca_file: str) -> None:
    upid = "UPID:pve:0002A3B0:00000001:65000000:qmstart:104:root@pam!dapper-tui:"
    resp = _raw(server, ca_file, "GET", f"nodes/pve/tasks/{upid}/status")
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"upid": "no such task"}
    resp = _raw(server, ca_file, "GET", "nodes/pve/tasks/not-a-upid/status")
    assert resp.json()["errors"] == {"upid": "unable to parse worker upid"}


def test_shutdown_of_a_stopped_vm_ends_ok_and_reboot_is_refused(admin: ProxmoxBackend) -> None:
    _stop(admin, 104)
    assert admin.wait_task(admin.shutdown(104), timeout=10).exitstatus == "OK"
    before = len(admin.call("get", "nodes/pve/tasks"))
    with pytest.raises(BackendError, match="VM 104 not running"):
        admin.reboot(104)
    assert len(admin.call("get", "nodes/pve/tasks")) == before


def test_the_token_header_may_use_a_space(server: PveServer, ca_file: str) -> None:
    t = server.admin_token
    for auth in (
        f"PVEAPIToken {t.token_id}={t.secret}",
        f"PVEAPIToken={t.token_id}= {t.secret}",
        f"PVEAPIToken={t.token_id}={t.secret}",
    ):
        assert _raw(server, ca_file, "GET", "version", auth).status_code == 200, auth
    assert (
        _raw(server, ca_file, "GET", "version", f"PVEAPITokenX={t.token_id}={t.secret}").status_code
        == 401
    )
    assert (
        _raw(server, ca_file, "GET", "version", f"PVEAPIToken={t.token_id}=wrong").status_code
        == 401
    )


def test_tasks_report_the_user_and_the_token_apart(admin: ProxmoxBackend) -> None:
    upid = admin.call("post", f"{Q}/104/status/reset")
    assert upid.endswith(":root@pam!dapper-tui:")  # the UPID keeps the full token id
    status = admin.call("get", f"nodes/pve/tasks/{upid}/status")
    assert (status["user"], status["tokenid"]) == ("root@pam", "dapper-tui")
    (row,) = [r for r in admin.call("get", "nodes/pve/tasks") if r["upid"] == upid]
    assert (row["user"], row["tokenid"]) == ("root@pam", "dapper-tui")
    admin.wait_task(upid, timeout=10)
