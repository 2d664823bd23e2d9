"""The lab rehearses a node replacement with configs from the tree (issue 12, "The lab"):
its Talos identity is the tree's talsecret bundle, maintenance mode checks a config
against the machine it lands on (hostname, MAC, secrets) and gives it the config's
static address, and the faults that stage a dead node. Each step goes through the
project's clients over the lab's sockets (Talos gRPC, Proxmox, Kubernetes)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.clients.talos import TalosClient
from dapper.backends.clients.talosconfig import load_talosconfig, render_talosconfig
from dapper.backends.errors import BackendError
from dapper.backends.model import Node
from dapper.lab.pki import CertificateAuthority
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings, WorldError
from dapper.lab.world.talos import cluster_machine_config

from kubernetes import client as k8s
from tests.lab.talsecret_configs import bundle, machine_config
from tests.waiting import eventually

LARGE2 = ("talos-node-large-2", "10.100.0.55", 105, "bc:24:11:e0:17:19")
GRACE = 0.3


@pytest.fixture
def lab() -> Iterator[RunningLab]:
    timings = Timings(boot=0.05, task=0.05, clone=0.05, install=0.05, node_grace=GRACE)
    running = start_lab(flux=False, timings=timings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secrets() -> dict:
    return bundle()


def _pve(lab: RunningLab) -> ProxmoxBackend:
    return ProxmoxBackend.from_config(lab.config.proxmox)


def _kube(lab: RunningLab) -> KubeBackend:
    return KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)


def _talos(lab: RunningLab, path: str | None = None) -> TalosClient:
    port = int(lab.world.endpoints["talos_machine_port"])
    return TalosClient.from_config(
        path or lab.config.talosconfig,
        None if path else lab.config.talos_context,
        maintenance_port=port,
        timeout=3.0,
    )


def _node(kube: KubeBackend, name: str) -> Node | None:
    return next((n for n in kube.nodes() if n.name == name), None)


def _talos_error(lab: RunningLab, call) -> BackendError:
    """The BackendError `call(client)` ends in (it must fail)."""

    async def go() -> BackendError:
        async with _talos(lab) as c:
            with pytest.raises(BackendError) as err:
                await call(c)
            return err.value

    return asyncio.run(go())


def _talos_value(lab: RunningLab, call):
    async def go():
        async with _talos(lab) as c:
            return await call(c)

    return asyncio.run(go())


def _new_vm(lab: RunningLab, pve: ProxmoxBackend, name: str, mac: str = "") -> int:
    """A clone of the Talos template (else of a VM without passthrough), with `mac` on
    net0 when given, started: it boots into maintenance mode."""
    source = next((v.vmid for v in pve.vms() if v.template), 100)
    newid = pve.next_vmid()
    pve.wait_task(pve.clone(source, newid, name), timeout=10)
    if mac:
        pve.set_config(newid, {"net0": f"virtio={mac.upper()},bridge=vmbr0,tag=100"}, sync=True)
    pve.wait_task(pve.start(newid), timeout=10)
    return newid


def _vm_mac(pve: ProxmoxBackend, vmid: int) -> str:
    return pve.vm_config(vmid)["net0"].split("=", 1)[1].split(",")[0].lower()


def _maintenance_address(pve: ProxmoxBackend, vmid: int) -> str:
    """Where the new VM's machine answers, as its guest agent says (the runbooks' way)."""

    def ask() -> str | None:
        try:
            found = pve.guest_addresses(vmid)
        except BackendError:
            return None
        return found[0] if found else None

    return eventually(ask, interval=0.05, message="the guest agent to answer")


def _apply_in_maintenance(lab: RunningLab, address: str, config: bytes) -> None:
    async def go() -> None:
        async with _talos(lab) as c:
            await c.disks(address, maintenance=True)  # it is in maintenance mode
            await c.apply_configuration(address, config, maintenance=True)

    asyncio.run(go())


def _settled(lab: RunningLab, vmid: int) -> None:
    """The machine installed and rebooted (whatever came of its config)."""
    eventually(
        lambda: (m := lab.world.machine_of_vm(vmid)) is not None and not m.maintenance and m.booted,
        interval=0.05,
        message="the install and reboot",
    )


# -- identity ----------------------------------------------------------------------------


def test_the_lab_cluster_identity_is_the_tree_bundle(lab: RunningLab, secrets, tmp_path) -> None:
    os_crt = base64.b64decode(secrets["certs"]["os"]["crt"])
    os_key = base64.b64decode(secrets["certs"]["os"]["key"])
    bundle_ca = x509.load_pem_x509_certificate(os_crt)
    assert x509.load_pem_x509_certificate(lab.world.cluster_os_ca.encode()) == bundle_ca
    assert lab.world.machine_token == secrets["trustdinfo"]["token"]
    assert lab.world.cluster_token == secrets["secrets"]["bootstraptoken"]
    # the talosconfig the lab wrote trusts that CA, and that CA issued its client cert
    ctx = load_talosconfig(lab.config.talosconfig, lab.config.talos_context)
    assert x509.load_pem_x509_certificate(ctx.ca_pem) == bundle_ca
    x509.load_pem_x509_certificate(ctx.crt_pem).verify_directly_issued_by(bundle_ca)

    def talosconfig(ca: CertificateAuthority, name: str) -> str:
        pair = ca.issue("os:admin", orgs=["os:admin"], client=True)
        path = tmp_path / name
        path.write_text(
            render_talosconfig(
                name,
                [lab.world.endpoints["talos"]],
                ["10.100.0.50"],
                os_crt,
                pair.cert_pem,
                pair.key_pem,
            )
        )
        path.chmod(0o600)
        return str(path)

    async def hostname(path: str) -> str:
        async with _talos(lab, path) as c:
            return await c.hostname("10.100.0.50")

    # a client certificate the bundle's OS CA issues (as a talosconfig made from the tree)
    # is accepted; one from any other CA is not
    issued = talosconfig(CertificateAuthority.from_pem(os_crt, os_key), "from-bundle")
    assert asyncio.run(hostname(issued)) == "talos-control-1"
    stranger = talosconfig(CertificateAuthority("talos", ed25519_keys=True), "stranger")
    with pytest.raises(BackendError):
        asyncio.run(hostname(stranger))


def test_without_a_bundle_the_lab_keeps_an_identity_of_its_own(tmp_path) -> None:
    running = start_lab(repo=tmp_path, flux=False)
    try:
        assert running.world.cluster_os_ca == running.pki.talos_ca.cert_pem.decode()
        assert running.world.machine_token == running.world.cluster_token
        assert _talos_value(running, lambda c: c.hostname("10.100.0.50")) == "talos-control-1"
    finally:
        running.stop()


# -- the replacement -----------------------------------------------------------------------


def test_replacing_a_destroyed_worker_joins_at_the_config_address(lab: RunningLab, secrets) -> None:
    """talos-node-large-2's VM is deleted by mistake; a new VM with its MAC, configured from
    the bundle in maintenance mode, comes back as talos-node-large-2 at 10.100.0.55."""
    hostname, ip, vmid, mac = LARGE2
    pve, kube = _pve(lab), _kube(lab)
    lab.world.inject(f"vm-destroyed:{hostname}")
    assert vmid not in {v.vmid for v in pve.vms()}
    eventually(
        lambda: _node(kube, hostname).ready != "True",
        timeout=GRACE + 5,
        interval=0.05,
        message="the Node to go NotReady after the grace period",
    )
    k8s.CoreV1Api(kube._api).delete_node(hostname)  # the runbook deletes the Node object
    assert _node(kube, hostname) is None

    newid = _new_vm(lab, pve, hostname, mac)
    found = _maintenance_address(pve, newid)
    assert not found.startswith("10.100.")  # its own (loopback) stand-in for a DHCP lease
    config = machine_config(secrets, hostname, "worker", mac=mac, address=f"{ip}/24")
    _apply_in_maintenance(lab, found, config)
    assert not lab.world.machine_of_vm(newid).booted  # installing: it does not answer yet

    node = eventually(
        lambda: (n := _node(kube, hostname)) is not None and n.ready == "True" and n,
        interval=0.05,
        message="the replacement's Node to register and be Ready",
    )
    assert node.internal_ip == ip
    assert node.created is not None and node.created > time.time() - 600  # a new Node
    # the cluster's talosconfig reaches it by its new address and name
    assert _talos_value(lab, lambda c: c.hostname(ip)) == hostname
    assert _talos_value(lab, lambda c: c.hostname(hostname)) == hostname
    # the guest agent reports where it answers now; the DHCP-time address is gone
    moved = _maintenance_address(pve, newid)
    assert moved != found
    gone = _talos_error(lab, lambda c: c.disks(found, maintenance=True))
    assert gone.code == "UNAVAILABLE"
    configured = _talos_error(lab, lambda c: c.disks(moved, maintenance=True))
    assert "not in maintenance mode" in configured.reason
    kube.close()
    pve.close()


def test_a_replacement_next_to_the_stopped_old_vm_takes_its_address(
    lab: RunningLab, secrets
) -> None:
    """The old VM kept stopped for forensics: the new machine takes 10.100.0.55 and the old
    one, if started again, comes up without network and never answers."""
    hostname, ip, vmid, mac = LARGE2
    pve, kube = _pve(lab), _kube(lab)
    pve.wait_task(pve.stop(vmid), timeout=10)
    newid = _new_vm(lab, pve, hostname, mac)
    found = _maintenance_address(pve, newid)
    _apply_in_maintenance(
        lab, found, machine_config(secrets, hostname, "worker", mac=mac, address=f"{ip}/24")
    )
    # the old Node object still exists: the kubelet registers into it (it turns Ready)
    eventually(
        lambda: lab.world.machine(ip).vmid == newid and _node(kube, hostname).ready == "True",
        interval=0.05,
        message="the replacement at the old address",
    )
    assert _node(kube, hostname).internal_ip == ip
    pve.wait_task(pve.start(vmid), timeout=10)
    _settled(lab, vmid)
    old = lab.world.machine_of_vm(vmid)
    assert not old.network and not lab.world.reachable(old)
    assert _talos_value(lab, lambda c: c.hostname(ip)) == hostname
    # by name, the live machine answers (not the old one that has no network)
    assert _talos_value(lab, lambda c: c.hostname(hostname)) == hostname
    assert lab.world.machine(ip).vmid == newid
    kube.close()
    pve.close()


def test_a_kubelet_registers_into_a_node_that_was_not_deleted(lab: RunningLab, secrets) -> None:
    """The runbook should delete the old Node first; if it did not, the new kubelet takes
    the object over (Ready, its own address), as a real one does."""
    pve, kube = _pve(lab), _kube(lab)
    lab.world.inject("vm-destroyed:talos-node-large-3")
    newid = _new_vm(lab, pve, "talos-node-large-3")
    config = machine_config(
        secrets, "talos-node-large-3", "worker", mac=_vm_mac(pve, newid), address="10.100.0.70/24"
    )
    _apply_in_maintenance(lab, _maintenance_address(pve, newid), config)
    node = eventually(
        lambda: (n := _node(kube, "talos-node-large-3")).internal_ip == "10.100.0.70" and n,
        interval=0.05,
        message="the kubelet to post its address into the old Node",
    )
    assert node.ready == "True"
    assert node.created is not None and node.created < time.time() - 86400  # the old object
    kube.close()
    pve.close()


def test_the_old_machine_grace_period_does_not_touch_its_replacement(secrets) -> None:
    """The old VM stops, and its replacement registers before the old kubelet's grace
    period ends: the Node stays Ready (its status comes from the new kubelet)."""
    grace = 3.0
    timings = Timings(boot=0.05, task=0.05, clone=0.05, install=0.05, node_grace=grace)
    lab = start_lab(flux=False, timings=timings)
    try:
        hostname, ip, vmid, mac = LARGE2
        pve, kube = _pve(lab), _kube(lab)
        stopped = time.monotonic()
        pve.wait_task(pve.stop(vmid), timeout=10)
        pve.wait_task(pve.destroy(vmid), timeout=10)
        newid = _new_vm(lab, pve, hostname, mac)
        config = machine_config(secrets, hostname, "worker", mac=mac, address=f"{ip}/24")
        _apply_in_maintenance(lab, _maintenance_address(pve, newid), config)
        eventually(
            lambda: (
                (m := lab.world.machines.get(ip)) is not None
                and m.vmid == newid
                and lab.world.reachable(m)
            ),
            interval=0.05,
            message="the replacement to come up",
        )
        assert time.monotonic() - stopped < grace, "too slow to test the grace period"
        asyncio.run(asyncio.sleep(grace - (time.monotonic() - stopped) + 0.3))
        assert _node(kube, hostname).ready == "True"
        kube.close()
        pve.close()
    finally:
        lab.stop()


def test_a_config_for_another_mac_never_joins(lab: RunningLab, secrets) -> None:
    pve, kube = _pve(lab), _kube(lab)
    newid = _new_vm(lab, pve, "talos-node-large-9")
    found = _maintenance_address(pve, newid)
    config = machine_config(
        secrets, "talos-node-large-9", "worker", mac="bc:24:11:00:00:01", address="10.100.0.60/24"
    )
    _apply_in_maintenance(lab, found, config)  # accepted: Talos cannot tell beforehand
    _settled(lab, newid)
    assert any(v.vmid == newid and v.status == "running" for v in pve.vms())
    by_address = _talos_error(lab, lambda c: c.hostname("10.100.0.60"))
    assert by_address.code == "UNAVAILABLE"
    by_name = _talos_error(lab, lambda c: c.hostname("talos-node-large-9"))
    assert "came up without its network" in by_name.reason
    asyncio.run(asyncio.sleep(GRACE))
    assert _node(kube, "talos-node-large-9") is None
    # the MAC put right in Proxmox takes effect at the next boot, as Talos matches then
    pve.set_config(newid, {"net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=100"}, sync=True)
    pve.wait_task(pve.reboot(newid), timeout=10)
    node = eventually(
        lambda: _node(kube, "talos-node-large-9"), interval=0.05, message="the Node after the fix"
    )
    assert node.internal_ip == "10.100.0.60"
    kube.close()
    pve.close()


def test_a_mac_pattern_with_dhcp_keeps_the_lease(lab: RunningLab) -> None:
    """Talos matches hardwareAddr as a glob; an interface on DHCP keeps the address the
    machine has (the lab's stand-in for its lease)."""
    pve, kube = _pve(lab), _kube(lab)
    newid = _new_vm(lab, pve, "talos-node-large-9")
    found = _maintenance_address(pve, newid)
    lease = lab.world.machine_of_vm(newid).ip
    world = lab.world
    config = cluster_machine_config(
        "talos-node-large-9",
        "worker",
        os_ca_pem=world.cluster_os_ca,
        token=world.cluster_token,
        machine_token=world.machine_token,
        mac="bc:24:11:*",
    )
    _apply_in_maintenance(lab, found, config)
    node = eventually(lambda: _node(kube, "talos-node-large-9"), interval=0.05, message="the Node")
    assert node.internal_ip == lease
    kube.close()
    pve.close()


@pytest.mark.parametrize(
    "wrong",
    [
        {"machine_token": "abcdef.0123456789abcdef"},
        {"cluster_token": "abcdef.0123456789abcdef"},
        {
            "os_ca_crt": base64.b64encode(
                CertificateAuthority("talos", ed25519_keys=True).cert_pem
            ).decode()
        },
    ],
    ids=["machine-token", "cluster-token", "os-ca"],
)
def test_a_config_with_a_wrong_secret_installs_but_never_joins(
    lab: RunningLab, secrets, wrong: dict[str, str]
) -> None:
    pve, kube = _pve(lab), _kube(lab)
    newid = _new_vm(lab, pve, "talos-node-large-9")
    found = _maintenance_address(pve, newid)
    mac = _vm_mac(pve, newid)
    config = machine_config(
        secrets, "talos-node-large-9", "worker", mac=mac, address="10.100.0.61/24", **wrong
    )
    _apply_in_maintenance(lab, found, config)
    _settled(lab, newid)
    assert lab.world.machine_of_vm(newid).ip == "10.100.0.61"  # it has its network
    refused = _talos_error(lab, lambda c: c.hostname("10.100.0.61"))
    assert "certificate signed by unknown authority" in refused.reason
    asyncio.run(asyncio.sleep(GRACE))
    assert _node(kube, "talos-node-large-9") is None
    kube.close()
    pve.close()


def test_maintenance_refuses_a_config_without_a_hostname(lab: RunningLab, secrets) -> None:
    pve = _pve(lab)
    newid = _new_vm(lab, pve, "talos-node-large-9")
    found = _maintenance_address(pve, newid)
    config = machine_config(
        secrets, "", "worker", mac=_vm_mac(pve, newid), address="10.100.0.62/24"
    )
    for dry_run in (True, False):
        refused = _talos_error(
            lab,
            lambda c, d=dry_run: c.apply_configuration(found, config, maintenance=True, dry_run=d),
        )
        assert refused.code == "INVALID_ARGUMENT"
        assert "machine hostname is required (.machine.network.hostname)" in refused.reason
    assert lab.world.machine_of_vm(newid).maintenance
    pve.close()


def test_a_control_plane_replacement_rejoins_etcd(lab: RunningLab, secrets) -> None:
    """talos-control-2's member is removed through a healthy control plane, its VM
    destroyed and its Node deleted; the replacement joins etcd (a learner, then promoted)."""
    hostname, ip, vmid = "talos-control-2", "10.100.0.51", 101
    pve, kube = _pve(lab), _kube(lab)
    mac = _vm_mac(pve, vmid)
    lab.world.inject(f"disk-failed:{hostname}")

    async def remove_member() -> None:
        async with _talos(lab) as c:
            member = next(m for m in await c.etcd_members("10.100.0.50") if m.hostname == hostname)
            await c.etcd_remove_member("10.100.0.50", member.id)

    asyncio.run(remove_member())
    pve.wait_task(pve.stop(vmid), timeout=10)
    pve.wait_task(pve.destroy(vmid), timeout=10)
    k8s.CoreV1Api(kube._api).delete_node(hostname)
    newid = _new_vm(lab, pve, hostname, mac)
    found = _maintenance_address(pve, newid)
    _apply_in_maintenance(
        lab, found, machine_config(secrets, hostname, "controlplane", mac=mac, address=f"{ip}/24")
    )

    async def voters() -> list[str]:
        async with _talos(lab) as c:
            members = await c.etcd_members("10.100.0.50")
        return sorted(m.hostname for m in members if not m.is_learner)

    eventually(
        lambda: asyncio.run(voters()) == ["talos-control-1", hostname, "talos-control-3"],
        interval=0.1,
        message="the replacement to be a voting etcd member",
    )
    eventually(
        lambda: (n := _node(kube, hostname)) is not None and n.ready == "True",
        interval=0.05,
        message="the control plane's Node",
    )
    assert _talos_value(lab, lambda c: c.etcd_status(ip)).member_id
    kube.close()
    pve.close()


# -- the faults that stage a dead node -------------------------------------------------------


def test_vm_destroyed_is_gone_for_good(lab: RunningLab) -> None:
    pve, kube = _pve(lab), _kube(lab)
    lab.world.inject("vm-destroyed:106")
    assert 106 not in {v.vmid for v in pve.vms()}
    assert _talos_error(lab, lambda c: c.hostname("10.100.0.56")).code == "UNAVAILABLE"
    assert _node(kube, "talos-node-large-3").ready == "True"  # until the grace period ends
    eventually(
        lambda: _node(kube, "talos-node-large-3").ready != "True",
        timeout=GRACE + 5,
        interval=0.05,
        message="NotReady after the grace period",
    )
    with pytest.raises(WorldError, match="permanent"):
        lab.world.clear("vm-destroyed:106")
    asyncio.run(asyncio.sleep(GRACE))
    assert _node(kube, "talos-node-large-3").ready != "True"
    kube.close()
    pve.close()


def test_disk_failed_keeps_the_vm_running_but_talos_silent(lab: RunningLab) -> None:
    pve, kube = _pve(lab), _kube(lab)
    lab.world.inject("disk-failed:talos-node-large-3")
    assert pve.vm(106).status == "running"
    err = _talos_error(lab, lambda c: c.hostname("10.100.0.56"))
    assert err.code == "UNAVAILABLE" and "system disk failed" in err.reason
    assert _node(kube, "talos-node-large-3").ready == "True"
    eventually(
        lambda: _node(kube, "talos-node-large-3").ready != "True",
        timeout=GRACE + 5,
        interval=0.05,
        message="NotReady after the grace period",
    )
    # a reboot does not bring it back; stopping and destroying the VM still work
    pve.wait_task(pve.reboot(106), timeout=10)
    asyncio.run(asyncio.sleep(0.3))
    assert _talos_error(lab, lambda c: c.hostname("10.100.0.56")).code == "UNAVAILABLE"
    with pytest.raises(WorldError, match="permanent"):
        lab.world.clear("disk-failed:talos-node-large-3")
    pve.wait_task(pve.stop(106), timeout=10)
    pve.wait_task(pve.destroy(106), timeout=10)
    assert 106 not in {v.vmid for v in pve.vms()}
    kube.close()
    pve.close()


def test_a_wedged_node_goes_notready_but_talos_answers(lab: RunningLab) -> None:
    kube = _kube(lab)
    lab.world.inject("node-wedged:talos-node-large-1")
    assert _node(kube, "talos-node-large-1").ready == "True"
    eventually(
        lambda: _node(kube, "talos-node-large-1").ready != "True",
        timeout=GRACE + 5,
        interval=0.05,
        message="NotReady after the grace period",
    )
    assert _talos_value(lab, lambda c: c.hostname("10.100.0.54")) == "talos-node-large-1"
    lab.world.clear("node-wedged:talos-node-large-1")
    assert _node(kube, "talos-node-large-1").ready == "True"
    kube.close()
