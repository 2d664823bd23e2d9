"""`dapper-tui lab` as a user runs it: a process that serves until interrupted, and kubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 30) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed; got {seen}")


@pytest.fixture
def lab_process(tmp_path: Path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dapper.cli.main",
            "lab",
            "--dir",
            str(tmp_path / "lab"),
            "--repo",
            str(REPO),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_for_line(proc, "Ctrl+C stops the lab.")
        yield proc, tmp_path / "lab"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()


def test_lab_writes_client_files_and_stops_on_interrupt(lab_process) -> None:
    proc, lab_dir = lab_process
    for name in (
        "kubeconfig",
        "talosconfig",
        "proxmox.env",
        "config.toml",
        "config-readonly.toml",
        "ca.pem",
    ):
        assert (lab_dir / name).is_file(), name
    assert oct((lab_dir / "kubeconfig").stat().st_mode & 0o777) == "0o600"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert "lab stopped" in proc.stdout.read()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
def test_kubectl_lists_the_nodes_and_the_kustomizations(lab_process) -> None:
    _, lab_dir = lab_process
    kubeconfig = str(lab_dir / "kubeconfig")

    def kubectl(*args: str) -> str:
        out = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes)[:3] == [
        "talos-control-1",
        "talos-control-2",
        "talos-control-3",
    ]
    assert len(nodes) == 7

    def kustomizations() -> str | None:
        table = kubectl("get", "ks", "-A")
        return table if "cluster-apps" in table and "plex" in table else None

    table = eventually(kustomizations, timeout=30, interval=0.3, message="the Flux twin's apps")
    assert "flux-system" in table and "media" in table
    for verb in (
        ["cordon", "talos-node-large-1"],
        ["annotate", "node", "talos-node-large-1", "dapper.io/x=y"],
    ):
        denied = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig, "--context", "lab-readonly", *verb],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "forbidden" in denied.stderr.lower(), verb
    assert denied.returncode != 0
