"""Stopping the lab is prompt and total: open client connections cannot hold it up.

Each server gets the connections a real client leaves behind (an idle HTTP keep-alive
connection, a TCP connection that never speaks TLS, an open watch or gRPC connection);
stop() must still return (checked with a generous bound, so a hang fails the test rather
than the suite) and leave no thread and no listening port behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from dapper.backends.clients.talos import TalosClient
from dapper.lab.credentials import LabCredentials
from dapper.lab.kube_server import KubeApiServer
from dapper.lab.pki import Pki
from dapper.lab.pve_server import PveServer
from dapper.lab.runtime import RunningLab, find_repo, start_lab
from dapper.lab.talos_server import TalosLabServer
from dapper.lab.world import Timings, World

from kubernetes import client, config, watch

HANG = 8.0  # far above a prompt stop, below every handshake and idle timeout of the servers


@pytest.fixture
def world() -> Iterator[World]:
    w = World(timings=Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.1))
    yield w
    w.close()


def stop_within_bound(stop: Callable[[], None]) -> None:
    """Run stop() and fail (instead of hanging) when it does not return."""
    stopper = threading.Thread(target=stop, name="test-stopper")
    stopper.start()
    stopper.join(HANG)
    assert not stopper.is_alive(), "stop() is held up by an open client connection"


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


def keep_alive_https(
    port: int, ca_pem: bytes, path: str, headers: dict
) -> http.client.HTTPConnection:
    """An HTTPS connection that made one request and stays open (HTTP/1.1 keep-alive)."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=HANG * 2)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    assert resp.status < 500 and not resp.will_close
    return conn


def watch_nodes(kubeconfig: Path, context: str | None = None) -> tuple[threading.Thread, Callable]:
    """A kubernetes-client watch on nodes in a thread; returns it and its API client's close."""
    cfg = client.Configuration()
    config.load_kube_config(
        str(kubeconfig),
        context=context,
        client_configuration=cfg,
        persist_config=False,
        temp_file_path=str(kubeconfig.parent),
    )
    api = client.ApiClient(cfg)
    core = client.CoreV1Api(api)
    opened = threading.Event()

    def follow() -> None:
        with contextlib.suppress(Exception):  # the stop cuts the stream
            for _ in watch.Watch().stream(core.list_node, timeout_seconds=600):
                opened.set()
        opened.set()

    t = threading.Thread(target=follow, name="test-watch")
    t.start()
    assert opened.wait(10)
    return t, api.close


def test_kube_stop_cuts_keep_alive_silent_and_watch_connections(
    world: World, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    pki, creds = Pki(), LabCredentials()
    server = KubeApiServer(world, pki, creds)
    port = server.start()
    kubeconfig = tmp_path / "kubeconfig"
    from tests.lab.kube_lab import write_kubeconfig

    write_kubeconfig(kubeconfig, port, pki.https_ca.cert_pem, creds.kube_admin_token)
    auth = {"Authorization": f"Bearer {creds.kube_admin_token}"}
    idle = keep_alive_https(port, pki.https_ca.cert_pem, "/api/v1/namespaces", auth)
    silent = socket.create_connection(("127.0.0.1", port))  # never starts TLS
    watcher, close_api = watch_nodes(kubeconfig)
    try:
        stop_within_bound(server.stop)
        watcher.join(HANG)
        assert not watcher.is_alive()  # the watch was ended by the server, not a timeout
        assert new_threads(before) == []
        assert refused(port)
    finally:
        idle.close()
        silent.close()
        close_api()


def test_pve_stop_cuts_keep_alive_and_silent_connections(world: World, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    pki = Pki()
    server = PveServer(world, pki).start()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.https_ca.cert_pem)
    token = server.auditor_token
    auth = {"Authorization": f"PVEAPIToken={token.token_id}={token.secret}"}
    idle = keep_alive_https(server.port, pki.https_ca.cert_pem, "/api2/json/version", auth)
    session = requests.Session()  # requests' pool keeps its connection too
    silent = socket.create_connection(("127.0.0.1", server.port))
    try:
        reply = session.get(f"{server.url}/api2/json/version", headers=auth, verify=ca, timeout=5)
        assert reply.ok
        stop_within_bound(server.stop)
        assert new_threads(before) == []
        assert refused(server.port)
    finally:
        idle.close()
        session.close()
        silent.close()


def test_talos_stop_with_an_open_grpc_connection(world: World, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    server = TalosLabServer(world, Pki()).start()
    path = tmp_path / "talosconfig"
    path.write_text(server.talosconfig("os:reader"))
    path.chmod(0o600)
    loop = asyncio.new_event_loop()
    talos = TalosClient.from_config(str(path), timeout=5.0)
    loop.run_until_complete(talos.version())  # leaves its HTTP/2 connection open
    silent = socket.create_connection(("127.0.0.1", server.port))
    try:
        stop_within_bound(server.stop)
        assert new_threads(before) == []
        assert refused(server.port) and refused(int(server.maintenance_endpoint.rsplit(":", 1)[1]))
    finally:
        silent.close()
        with contextlib.suppress(Exception):
            loop.run_until_complete(talos.aclose())
        loop.close()


def lab_ports(lab: RunningLab) -> list[int]:
    kube = int(lab.world.endpoints["kubernetes"].rsplit(":", 1)[1])
    pve = int(lab.world.endpoints["proxmox"].rsplit(":", 1)[1])
    talos = int(lab.world.endpoints["talos"].rsplit(":", 1)[1])
    maintenance = int(lab.world.endpoints["talos_maintenance"].rsplit(":", 1)[1])
    return [kube, pve, talos, maintenance]


def test_whole_lab_stop_leaves_no_thread_or_port(tmp_path: Path) -> None:
    """The default lab with the Flux twin, clients connected to every API, stops cleanly."""
    assert find_repo() is not None
    before = set(threading.enumerate())
    lab = start_lab(directory=tmp_path / "lab")
    ports = lab_ports(lab)
    idle = keep_alive_https(
        ports[0],
        lab.pki.https_ca.cert_pem,
        "/version",
        {"Authorization": f"Bearer {lab.credentials.kube_admin_token}"},
    )
    silent = [socket.create_connection(("127.0.0.1", p)) for p in ports]
    watcher, close_api = watch_nodes(lab.files.kubeconfig, "lab-admin")
    try:
        assert lab.flux is not None
        stop_within_bound(lab.stop)  # the twin may still be in its first pass
        watcher.join(HANG)
        assert not watcher.is_alive()
        assert new_threads(before) == []
        assert all(refused(p) for p in ports)
        assert not (tmp_path / "lab" / "git").exists() or not any(
            (tmp_path / "lab" / "git").iterdir()
        )
    finally:
        idle.close()
        for s in silent:
            s.close()
        close_api()
