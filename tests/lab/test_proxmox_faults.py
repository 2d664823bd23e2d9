"""Failure paths of the Proxmox side: read-only, API down/slow, TLS trust, DNS, task errors,
and a server that leaves no thread or port behind."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.config import Config, ProxmoxConfig
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.lab.pki import Pki
from dapper.lab.pve_server import PveServer
from dapper.lab.world import World

from tests.lab.pve_lab import backend


def write_ca(path: Path, pem: bytes) -> str:
    path.write_bytes(pem)
    return str(path)


READ_ONLY_WRITES = [
    lambda b: b.start(100),
    lambda b: b.stop(100),
    lambda b: b.shutdown(100),
    lambda b: b.reboot(100),
    lambda b: b.clone(100, 200, "x"),
    lambda b: b.destroy(100),
    lambda b: b.set_config(100, {"cores": 2}),
    lambda b: b.set_config(100, delete=["hostpci0"], sync=True),
    lambda b: b.create_vm(200, node="pve", name="x", virtio0="local-zfs:32"),
]


def test_read_only_refuses_every_write_before_any_network_io() -> None:
    # `.invalid` never resolves: any I/O would surface as a DNS BackendError instead.
    ro = ProxmoxBackend("https://pve.invalid:8006", "root@pam!ro", "s", node="pve", read_only=True)
    assert ro.capabilities == frozenset({"read"}) and ro._writer is None
    for write in READ_ONLY_WRITES:
        with pytest.raises(ReadOnlyError, match="read-only: refusing"):
            write(ro)
    with pytest.raises(BackendError, match=r"^DNS failure: cannot resolve pve\.invalid") as err:
        ro.vms()
    assert err.value.code == "DNS"


def test_read_only_backend_from_config_on_the_lab(
    monkeypatch: pytest.MonkeyPatch, world: World, server: PveServer, ca_file: str
) -> None:
    monkeypatch.setenv("PROXMOX_TOKEN_SECRET", server.admin_token.secret)
    cfg = Config(
        lab=False,
        read_only=True,
        proxmox=ProxmoxConfig(
            url=server.url, token_id=server.admin_token.token_id, ca_file=ca_file
        ),
    )
    ro = ProxmoxBackend.from_config(cfg)
    assert len([v for v in ro.vms() if not v.template]) == 7 and ro.read_only
    with pytest.raises(ReadOnlyError):
        ro.stop(103)
    assert world.writes == [] and world.vms[103].status == "running"
    assert "secret" not in repr(ro) and server.admin_token.secret not in repr(ro)


def test_api_down_refuses_connections_and_recovers_on_the_same_port(
    world: World, server: PveServer, ca_file: str
) -> None:
    b = backend(server, ca_file)
    assert b.nodes()  # a pooled keep-alive connection now exists
    port = server.port
    world.inject("api-down:proxmox")
    assert not server.listening
    with pytest.raises(BackendError, match=rf"^connection refused: 127\.0\.0\.1:{port}$") as err:
        b.nodes()
    assert err.value.code == "REFUSED"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    world.clear("api-down:proxmox")
    assert server.port == port and server.listening
    assert [n.name for n in b.nodes()] == ["pve"]


def test_api_slow_times_the_client_out(world: World, server: PveServer, ca_file: str) -> None:
    b = backend(server, ca_file, timeout=0.2)
    world.inject("api-slow:proxmox:0.6")
    with pytest.raises(BackendError, match=r"^timeout after 0\.2s talking to 127\.0\.0\.1") as err:
        b.vms(with_config=False)
    assert err.value.code == "TIMEOUT"
    world.clear("api-slow:proxmox:0.6")
    assert len(b.vms(with_config=False)) == 8  # the seven nodes and the Talos template


def test_tls_with_the_wrong_ca_fails_with_a_clear_reason(
    tmp_path: Path, server: PveServer, caplog: pytest.LogCaptureFixture
) -> None:
    other = write_ca(tmp_path / "other-ca.pem", Pki().https_ca.cert_pem)
    with pytest.raises(BackendError, match=r"^TLS verify failed: .*not signed by the trusted CA"):
        backend(server, other).nodes()
    with pytest.raises(BackendError, match=r"^TLS verify failed"):  # system CAs only
        backend(server, "").nodes()
    with caplog.at_level("WARNING"):
        insecure = backend(server, "", verify_tls=False)
        assert insecure.nodes()
    # said once, in the log (and by tls_posture in status, check and the header), not
    # as a urllib3 warning on the terminal per request
    assert "TLS verification is disabled" in caplog.text


def test_wait_task_times_out_with_one_line(world: World, server: PveServer, ca_file: str) -> None:
    world.timings.task = 30.0  # the task outlives the wait; stop() abandons it
    b = backend(server, ca_file)
    upid = b.start(103)
    with pytest.raises(BackendError, match=r"^PVE task qmstart 103 still running after 0\.2s$"):
        b.wait_task(upid, timeout=0.2)
    assert b.task_status(upid).running
    assert [t.status for t in b.tasks() if t.upid == upid] == ["running"]


def test_bad_configuration_is_one_line() -> None:
    with pytest.raises(BackendError, match="user@realm!tokenid"):
        ProxmoxBackend("https://pve:8006", "root@pam", "x")
    with pytest.raises(BackendError, match="https://"):
        ProxmoxBackend("http://pve:8006", "root@pam!t", "x")
    with pytest.raises(BackendError, match="CA file not found"):
        ProxmoxBackend("https://pve:8006", "root@pam!t", "x", ca_file="/nonexistent/ca.pem")


def test_stop_leaves_no_thread_or_port(world: World, pki: Pki, ca_file: str) -> None:
    before = set(threading.enumerate())
    srv = PveServer(world, pki).start()
    b = backend(srv, ca_file)
    assert b.vms()
    b.wait_task(b.stop(104), timeout=10)
    srv.stop()
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", srv.port)):
        pass
    world.inject("api-down:proxmox")  # a stopped server ignores faults
    world.clear("api-down:proxmox")
    assert not srv.listening
