"""A kubeconfig's client key never stays on disk: the client library unpacks it into a
scratch directory that is gone before the first request, so SIGHUP (a dropped SSH
session), SIGTERM or SIGKILL leave nothing behind. The client certificate is still sent:
a server that requires one sees it."""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.kube_reader import open_reader
from dapper.lab.pki import Pki

# both ways to the API: the full client, and the lean GET-only reader of the snapshot
OPENERS = {
    "client": "KubeBackend.from_kubeconfig(sys.argv[1])",
    "lean": "open_reader(sys.argv[1], None, timeout=5.0)",
}


class _NodeList(http.server.BaseHTTPRequestHandler):
    peers: list[dict] = []

    def do_GET(self) -> None:
        self.peers.append(self.connection.getpeercert() or {})  # type: ignore[attr-defined]
        body = json.dumps({"kind": "NodeList", "items": [], "metadata": {"resourceVersion": "7"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mtls_server(tmp_path: Path) -> Iterator[tuple[int, Pki]]:
    """An HTTPS server that refuses clients without a certificate from the lab's CA."""
    pki = Pki()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "srv.pem").write_bytes(pki.https_server.cert_pem + pki.https_server.key_pem)
    ctx.load_cert_chain(tmp_path / "srv.pem")
    ctx.load_verify_locations(cadata=pki.https_ca.cert_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NodeList)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], pki
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(path: Path, port: int, pki: Pki) -> Path:
    pair = pki.https_ca.issue("operator", orgs=["system:masters"], client=True)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: "https://127.0.0.1:{port}"
    certificate-authority-data: {b64(pki.https_ca.cert_pem)}
users:
- name: u
  user: {{client-certificate-data: {b64(pair.cert_pem)}, client-key-data: {b64(pair.key_pem)}}}
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
"""
    )
    return path


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_client_certificate_is_sent_from_memory(
    mtls_server: tuple[int, Pki], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: str
) -> None:
    port, pki = mtls_server
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    _NodeList.peers.clear()
    kubeconfig = _kubeconfig(tmp_path / "kc", port, pki)
    backend = (
        KubeBackend.from_kubeconfig(kubeconfig)
        if opener == "client"
        else open_reader(str(kubeconfig), None, timeout=5.0)
    )
    assert backend is not None
    assert list(runtime.iterdir()) == []  # nothing on disk before the first request
    try:
        assert backend.list_raw("nodes") == ([], "7")
        assert backend.list_raw("nodes") == ([], "7")  # new connections need no files either
    finally:
        backend.close()
    subjects = [dict(x[0] for x in peer["subject"]) for peer in _NodeList.peers]
    assert subjects and all(s["commonName"] == "operator" for s in subjects)


_HOLDER = """
import sys, time
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.kube_reader import open_reader
backend = OPENER
backend.list_raw("nodes")
print("loaded", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGKILL])
def test_no_key_left_after_any_exit(
    mtls_server: tuple[int, Pki], tmp_path: Path, sig: signal.Signals, opener: str
) -> None:
    port, pki = mtls_server
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLDER.replace("OPENER", OPENERS[opener]),
            str(_kubeconfig(tmp_path / "kc", port, pki)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "loaded", proc.stderr.read() if proc.stderr else ""
        assert list(runtime.iterdir()) == []
        proc.send_signal(sig)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert list(runtime.iterdir()) == []
