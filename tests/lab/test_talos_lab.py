"""The Talos client against the lab apid over real sockets with Ed25519 mutual TLS."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpclib.client
import pytest
from dapper.backends.clients.talos import TalosChannel, TalosClient
from dapper.backends.clients.talos_pb import machine_grpc, machine_pb2, storage_grpc
from dapper.backends.clients.talosconfig import (
    client_ssl_context,
    insecure_ssl_context,
    load_talosconfig,
    render_talosconfig,
    split_endpoint,
)
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.lab.pki import CertificateAuthority, Pki
from dapper.lab.talos_server import TalosLabServer
from dapper.lab.world import DAPPER_NODES, Timings, World
from google.protobuf import empty_pb2
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from tests.waiting import eventually_async

CP1, CP2, WORKER = "10.100.0.50", "10.100.0.51", "10.100.0.54"
WORKER_CONFIG = b"""version: v1alpha1
machine:
  type: worker
  network:
    hostname: talos-node-large-9
cluster:
  clusterName: kubernetes
"""


@pytest.fixture
def world() -> Iterator[World]:
    w = World(timings=Timings(boot=0.02, task=0.02, shutdown=0.02, clone=0.02))
    yield w
    w.close()


@pytest.fixture
def pki() -> Pki:
    return Pki()


@pytest.fixture
def server(world: World, pki: Pki) -> Iterator[TalosLabServer]:
    srv = TalosLabServer(world, pki, kubeconfig=lambda: b"apiVersion: v1\n" + b"#" * 40000)
    srv.start()
    yield srv
    srv.stop()


def _client(
    srv: TalosLabServer, tmp_path: Path, role: str = "os:admin", **kw: object
) -> TalosClient:
    path = tmp_path / f"talosconfig-{role.replace(':', '-')}"
    path.write_text(srv.talosconfig(role))
    path.chmod(0o600)
    return TalosClient.from_config(
        str(path), maintenance_endpoint=srv.maintenance_endpoint, timeout=3.0, **kw
    )


async def test_all_seven_nodes_through_one_endpoint(server, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        assert c.context.endpoints == (server.endpoint,)
        for spec in DAPPER_NODES:
            assert (await c.version(spec.ip)).tag == "v1.11.2"
            assert await c.hostname(spec.ip) == spec.hostname
            ids = {s.id for s in await c.services(spec.ip)}
            assert {"apid", "kubelet", "machined"} <= ids
            assert ("etcd" in ids) == (spec.role == "controlplane")
        machines = await c.machines()
    assert [m.hostname for m in machines] == [s.hostname for s in DAPPER_NODES]
    assert all(m.stage == "running" and not m.error for m in machines)
    cp = machines[0]
    assert len(cp.etcd_members) == 3 and sum(e.leader for e in cp.etcd_members) == 1
    assert machines[3].memory_total == 128 * 1024**3 and machines[3].cpu_count == 16
    assert "/dev/sda" in machines[3].disks


async def test_no_node_metadata_is_served_by_the_endpoint_machine(server, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        assert await c.hostname(None) == "talos-control-1"


async def test_legacy_nodes_metadata_fans_out(server, world, tmp_path) -> None:
    world.inject("vm-stopped:106")
    ctx = load_talosconfig(_write(server, tmp_path))
    host, port = split_endpoint(server.endpoint)
    ch = TalosChannel(host, port, ssl=client_ssl_context(ctx))
    try:
        stub = machine_grpc.MachineServiceStub(ch)
        meta = [("nodes", CP1), ("nodes", WORKER), ("nodes", "10.100.0.56")]
        resp = await stub.Hostname(empty_pb2.Empty(), metadata=meta)
        got = [(m.metadata.hostname, m.hostname, m.metadata.error) for m in resp.messages]
        assert got[:2] == [(CP1, "talos-control-1", ""), (WORKER, "talos-node-large-1", "")]
        failed = resp.messages[2].metadata
        assert failed.hostname == "10.100.0.56" and "not running" in failed.error
        assert failed.status.code == Status.UNAVAILABLE.value and not resp.messages[2].hostname
        # streams: every message tagged with the node it came from
        async with stub.Logs.open(metadata={"nodes": f"{CP1},{CP2}"}) as st:
            await st.send_message(machine_pb2.LogsRequest(id="kubelet", tail_lines=2), end=True)
            tags = [d.metadata.hostname async for d in st]
        assert tags == [CP1, CP1, CP2, CP2]
        # `node` passes the reply through verbatim: no metadata added
        one = await stub.Hostname(empty_pb2.Empty(), metadata={"node": CP2})
        assert not one.messages[0].HasField("metadata")
    finally:
        await ch.aclose()


def _write(server: TalosLabServer, tmp_path: Path, role: str = "os:admin") -> Path:
    path = tmp_path / "talosconfig"
    path.write_text(server.talosconfig(role))
    return path


def _writes(c: TalosClient):
    return [
        lambda: c.apply_configuration(WORKER, WORKER_CONFIG),
        lambda: c.bootstrap(CP1),
        lambda: c.reset(WORKER),
        lambda: c.reboot(WORKER),
        lambda: c.shutdown(WORKER),
        lambda: c.etcd_remove_member(CP1, 1),
        lambda: c.etcd_leave_cluster(CP2),
        lambda: c.service_restart(WORKER, "kubelet"),
        lambda: c.kubeconfig(CP1),
    ]


async def test_reader_is_denied_every_write(server, world, tmp_path) -> None:
    async with _client(server, tmp_path, "os:reader") as c:
        assert (await c.version(WORKER)).tag
        assert await c.etcd_members(CP1)
        for write in _writes(c):
            with pytest.raises(BackendError) as err:
                await write()
            assert err.value.code == "PERMISSION_DENIED"
            assert err.value.reason == "not authorized (os:reader)"
    assert world.writes == []
    assert world.reachable(world.machine(WORKER)) and not world.machine(WORKER).maintenance


async def test_operator_may_restart_but_not_reset(server, world, tmp_path) -> None:
    async with _client(server, tmp_path, "os:operator") as c:
        assert "restarted" in await c.service_restart(WORKER, "kubelet")
        with pytest.raises(BackendError, match=r"not authorized \(os:operator\)"):
            await c.reset(WORKER)
    assert [(w.op, w.identity) for w in world.writes] == [
        (f"ServiceRestart {WORKER}", "os:operator")
    ]


async def test_read_only_client_refuses_writes_without_network(tmp_path, pki) -> None:
    with socket.socket() as s:  # a port with nothing listening: any I/O would be refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pair = pki.talos_client("os:admin")
    path = tmp_path / "talosconfig"
    path.write_text(
        render_talosconfig(
            "ro", [f"127.0.0.1:{port}"], [], pki.talos_ca.cert_pem, pair.cert_pem, pair.key_pem
        )
    )
    async with TalosClient.from_config(str(path), read_only=True) as c:
        assert c._writer is None
        for write in _writes(c):
            with pytest.raises(ReadOnlyError, match="read-only"):
                await write()
        with pytest.raises(ReadOnlyError):
            await c.apply_configuration(WORKER, WORKER_CONFIG, maintenance=True)
        with pytest.raises(BackendError) as err:  # reads do go out, and are refused
            await c.version(WORKER)
        assert err.value.reason == f"connection refused: 127.0.0.1:{port}"


async def _in_maintenance(world: World, node: str) -> None:
    m = world.machine(node)
    await eventually_async(
        lambda: m.maintenance and world.reachable(m), message="maintenance mode", timeout=3.0
    )


async def test_maintenance_machine(server, world, tmp_path) -> None:
    world.talos_reset(WORKER)
    await _in_maintenance(world, WORKER)
    async with _client(server, tmp_path) as c:
        with pytest.raises(BackendError) as err:
            await c.version(WORKER)
        assert err.value.code == "UNAVAILABLE" and "maintenance" in err.value.reason
        # Talos answers Version only to an admin, which an insecure caller never is
        with pytest.raises(BackendError) as err:
            await c.version(WORKER, maintenance=True)
        assert err.value.code == "UNIMPLEMENTED"
        assert "API is not implemented in maintenance mode" in err.value.reason
        m = await c.machine(WORKER)
        assert (m.stage, m.maintenance, m.version, m.error) == ("maintenance", True, "", "")
        assert "/dev/sda" in m.disks
        # insecure (no client certificate) path: only Disks and ApplyConfiguration
        host, port = split_endpoint(server.maintenance_endpoint)
        ch = TalosChannel(host, port, ssl=insecure_ssl_context())
        try:
            stub = machine_grpc.MachineServiceStub(ch)
            for call, name in (
                (stub.Hostname, "Hostname"),
                (stub.ServiceList, "ServiceList"),
                (stub.Memory, "Memory"),
            ):
                with pytest.raises(GRPCError) as gerr:
                    await call(empty_pb2.Empty(), metadata={"node": WORKER})
                assert gerr.value.status is Status.UNIMPLEMENTED
                assert gerr.value.message == f"method {name} not implemented"
            with pytest.raises(GRPCError) as gerr:  # a configured machine wants a cert
                await storage_grpc.StorageServiceStub(ch).Disks(
                    empty_pb2.Empty(), metadata={"node": CP1}
                )
            assert gerr.value.status is Status.UNAVAILABLE
        finally:
            await ch.aclose()
        config = server.machine_config("talos-node-large-9")
        result = await c.apply_configuration(WORKER, config, maintenance=True)
        assert result.mode == "reboot"
        await eventually_async(
            lambda: world.reachable(world.machine(WORKER)),
            message="configured machine",
            timeout=3.0,
        )
        assert await c.hostname(WORKER) == "talos-node-large-9"
        with pytest.raises(BackendError, match="not in maintenance"):
            await c.disks(WORKER, maintenance=True)


async def test_unserved_methods_carry_a_grpc_status(server, tmp_path) -> None:
    """A path the twin does not serve is UNIMPLEMENTED, not a content-type protocol error."""
    ctx = load_talosconfig(_write(server, tmp_path))
    host, port = split_endpoint(server.endpoint)
    ch = TalosChannel(host, port, ssl=client_ssl_context(ctx))
    try:
        for path, text in (
            ("/machine.MachineService/Containers", "unknown method Containers for service"),
            ("/machine.LifecycleService/Upgrade", "unknown service machine.LifecycleService"),
        ):
            method = grpclib.client.UnaryUnaryMethod(ch, path, empty_pb2.Empty, empty_pb2.Empty)
            with pytest.raises(GRPCError) as gerr:
                await method(empty_pb2.Empty())
            assert gerr.value.status is Status.UNIMPLEMENTED and text in gerr.value.message
    finally:
        await ch.aclose()


async def test_status_codes_as_talos_sends_them(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        for call, api in (
            (lambda: c.etcd_members(WORKER), "member list"),
            (lambda: c.etcd_status(WORKER), "etcd status"),
            (lambda: c.etcd_leave_cluster(WORKER), "etcd leave"),
            (lambda: c.etcd_remove_member(WORKER, 1), "etcd remove member"),
            (lambda: c.kubeconfig(WORKER), "kubeconfig"),
        ):
            with pytest.raises(BackendError) as err:
                await call()
            assert err.value.code == "UNIMPLEMENTED"
            assert f"{api} is only available on control plane nodes" in err.value.reason
        assert await c.service_restart(WORKER, "kubelet") == 'Service "kubelet" restarted'
        with pytest.raises(BackendError) as err:
            await c.service_restart(CP1, "etcd")
        assert err.value.code == "UNKNOWN"
        assert err.value.reason.endswith(
            'service "etcd" doesn\'t support restart operation via API'
        )
        with pytest.raises(BackendError) as err:
            await c.service_restart(WORKER, "nope")
        assert err.value.code == "UNKNOWN" and 'service "nope" not defined' in err.value.reason
    assert [w.op for w in world.writes] == [f"ServiceRestart {WORKER}"]


async def test_stopped_vm_is_unreachable(server, world, tmp_path) -> None:
    world.inject("vm-stopped:104")
    async with _client(server, tmp_path) as c:
        with pytest.raises(BackendError) as err:
            await c.services(WORKER)
        assert err.value.code == "UNAVAILABLE" and "not running" in err.value.reason
        m = await c.machine(WORKER)
        assert m.stage == "unreachable" and "no route to host" in m.error
        assert (await c.machine(CP1)).stage == "running"


async def test_a_running_machine_is_read_in_one_round_trip(server, tmp_path) -> None:
    # Version is asked beside the dynamic reads, not before them: every read of a worker
    # whose static facts are cached is in flight before the first one answers.
    async with _client(server, tmp_path) as c:
        await c.machine(WORKER)  # caches hostname, system stat and disks
        in_flight: set[str] = set()
        widest = 0
        unary = c._unary

        async def counted(node, service, method, req, **kw):
            nonlocal widest
            in_flight.add(method)
            widest = max(widest, len(in_flight))
            try:
                return await unary(node, service, method, req, **kw)
            finally:
                in_flight.discard(method)

        c._unary = counted  # type: ignore[method-assign]
        machine = await c.machine(WORKER)
    assert machine.stage == "running" and machine.hostname == "talos-node-large-1"
    assert widest == 4  # Version, ServiceList, Memory and LoadAvg together


async def test_reset_removes_the_member_from_etcd(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        before = {e.hostname for e in await c.etcd_members(CP1)}
        await c.reset(CP2, graceful=True)
        assert {e.hostname for e in await c.etcd_members(CP1)} == before  # not yet: async

        await eventually_async(
            lambda: "talos-control-2" not in {e.hostname for e in world.etcd.values()},
            message="the reset to leave etcd",
            timeout=3.0,
        )
        assert before - {e.hostname for e in await c.etcd_members(CP1)} == {"talos-control-2"}
    assert [w.op for w in world.writes] == [f"Reset {CP2}"]


async def test_etcd_remove_member_by_id(server, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        members = await c.etcd_members(CP1)
        gone = next(e for e in members if e.hostname == "talos-control-3")
        await c.etcd_remove_member(CP1, gone.id)
        assert gone.id not in {e.id for e in await c.etcd_members(CP2)}
        with pytest.raises(BackendError) as err:
            await c.etcd_remove_member(CP1, gone.id)
        assert err.value.code == "NOT_FOUND"
        assert f"failed to remove member {gone.id}: etcdserver: member not found" in (
            err.value.reason
        )
        with pytest.raises(BackendError, match="only available on control plane nodes"):
            await c.etcd_members(WORKER)


async def test_kubeconfig_stream(server, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        data = await c.kubeconfig(CP1)
    assert data == b"apiVersion: v1\n" + b"#" * 40000


async def test_logs_and_dmesg_streams(server, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        chunks = [chunk async for chunk in c.logs(CP1, "etcd", tail_lines=3)]
        assert len(chunks) == 3 and all(b"etcd" in x for x in chunks)
        assert len((await c.logs_text(WORKER, "kubelet")).splitlines()) == 20
        assert await c.logs_text(WORKER, "kubelet", tail_lines=0) == ""
        dmesg = await c.dmesg_text(CP1)
    assert "Hostname set to <talos-control-1>" in dmesg
    assert dmesg.splitlines()[0].startswith("kern: info   : [")


async def test_wrong_ca_fails_tls_verification(server, tmp_path, pki) -> None:
    other = CertificateAuthority("not-talos", ed25519_keys=True)
    pair = pki.talos_client("os:admin")
    path = tmp_path / "talosconfig"
    path.write_text(
        render_talosconfig("x", [server.endpoint], [], other.cert_pem, pair.cert_pem, pair.key_pem)
    )
    async with TalosClient.from_config(str(path)) as c:
        with pytest.raises(BackendError) as err:
            await c.version(CP1)
    assert err.value.code == "TLS" and err.value.reason.startswith("TLS verify failed")


async def test_client_cert_of_another_ca_is_rejected(server, tmp_path, pki) -> None:
    other = CertificateAuthority("not-talos", ed25519_keys=True)
    pair = other.issue("os:admin", orgs=["os:admin"], client=True)
    path = tmp_path / "talosconfig"
    path.write_text(
        render_talosconfig(
            "x", [server.endpoint], [], pki.talos_ca.cert_pem, pair.cert_pem, pair.key_pem
        )
    )
    async with TalosClient.from_config(str(path)) as c:
        with pytest.raises(BackendError) as err:
            await c.version(CP1)
    assert err.value.code in {"TLS", "LOST"}


async def test_api_down_refuses_connections_until_cleared(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        assert await c.hostname(CP1)
        world.inject("api-down:talos")
        with pytest.raises(BackendError) as err:
            await c.hostname(CP1)
        assert err.value.code in {"UNAVAILABLE", "REFUSED", "LOST"}
        await eventually_async(
            lambda: not server.listening, message="listeners to close", timeout=3.0
        )
        with pytest.raises(BackendError) as err:  # the open connection is dropped
            await c.hostname(CP1)
        assert err.value.code in {"REFUSED", "LOST"}
        with pytest.raises(BackendError) as err:
            await c.hostname(CP1)
        assert err.value.reason == f"connection refused: {server.endpoint}"
        world.clear("api-down:talos")
        await eventually_async(lambda: server.listening, message="listeners to reopen", timeout=3.0)
        assert await c.hostname(CP1) == "talos-control-1"


async def test_slow_api_times_out(server, world, tmp_path) -> None:
    world.inject("api-slow:talos:2")
    c = _client(server, tmp_path)
    c.timeout = 0.1
    async with c:
        with pytest.raises(BackendError) as err:
            await c.version(CP1)
        m = await c.machine(CP1)
    assert err.value.code == "TIMEOUT" and "timeout after 0.1s" in err.value.reason
    assert m.stage == "unreachable" and "timeout" in m.error


def test_stop_leaves_no_thread_or_port(world, pki) -> None:
    srv = TalosLabServer(world, pki).start()
    ports = (srv.port, srv.maintenance_port)
    srv.stop()
    assert not [t for t in threading.enumerate() if t.name == "lab-talos"]
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free again


async def test_machine_reports_each_members_health(server, world, tmp_path) -> None:
    world.inject("etcd-unhealthy:talos-control-2")
    world.inject("vm-stopped:102")
    async with _client(server, tmp_path) as c:
        m = await c.machine(CP1)
    health = {e.hostname: (e.healthy, e.errors) for e in m.etcd_members}
    assert health["talos-control-1"] == (True, ())
    assert health["talos-control-2"] == (False, ("etcdserver: no leader",))
    assert (
        health["talos-control-3"][0] is False and "not running" in health["talos-control-3"][1][0]
    )
    # two of three members down: no quorum, so no leader (as etcd)
    assert [e.hostname for e in m.etcd_members if e.leader] == []
    world.clear("etcd-unhealthy:talos-control-2")
    async with _client(server, tmp_path) as c:
        m = await c.machine(CP1)
    assert [e.hostname for e in m.etcd_members if e.leader] == ["talos-control-1"]


async def test_each_machine_answers_at_its_own_address(server, world, tmp_path) -> None:
    """Maintenance mode as on the wire: the machine's own address, no client certificate;
    `node` metadata routes nothing there."""
    world.talos_reset(WORKER)
    await _in_maintenance(world, WORKER)
    own = server.address_of(WORKER)
    host, port = split_endpoint(own)
    assert host != "127.0.0.1" and host.startswith("127.")
    async with _client(server, tmp_path) as c:
        c.maintenance_endpoint = None
        c.maintenance_port = port
        assert "/dev/vda" in [d.device for d in await c.disks(host, maintenance=True)]
        ch = TalosChannel(host, port, ssl=insecure_ssl_context())
        try:  # metadata naming another machine still reaches this one
            stub = storage_grpc.StorageServiceStub(ch)
            resp = await stub.Disks(empty_pb2.Empty(), metadata={"node": CP1})
            assert len(resp.messages[0].disks) == 2  # the worker's, not CP1's one disk
        finally:
            await ch.aclose()
        cp_host, _ = split_endpoint(server.address_of(CP1))
        with pytest.raises(BackendError) as err:  # a configured machine wants a cert
            await c.disks(cp_host, maintenance=True)
        assert err.value.code == "UNAVAILABLE" and "certificate required" in err.value.reason


async def test_a_stopped_service_restart_is_a_start(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await c.etcd_leave_cluster(CP2)  # etcd stops (Finished)
        with pytest.raises(BackendError) as err:
            await c.service_restart(CP2, "etcd")
        assert err.value.reason.endswith('service "etcd" doesn\'t support start operation via API')
