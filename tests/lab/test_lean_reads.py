"""The snapshot reads Kubernetes without the official client: the same objects, and a
one-shot snapshot never imports the `kubernetes` package (its imports cost ~1.7 s), nor
proxmoxer's `requests` (reads go over urllib3; proxmoxer only writes)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.kube import WATCH_KINDS, KubeBackend
from dapper.backends.clients.kube_reader import KubeReader, open_reader
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kube_lab() -> Iterator[RunningLab]:
    running = start_lab(repo=REPO, timings=Timings(boot=0.05, task=0.05, reconcile_interval=30))
    try:
        assert running.flux is not None and running.flux.settle(timeout=90)
        yield running
    finally:
        running.stop()


_ONE_SHOT = """
import asyncio, sys
from dapper.backends.config import load_config
from dapper.backends.snapshot.collector import Collector

async def main():
    collector = Collector(load_config(sys.argv[1], read_only=True), timeout=20)
    try:
        snap = await collector.refresh_all()
    finally:
        await collector.close()
    bad = [s.source for s in snap.sources if not s.ok]
    print(len(snap.nodes), len(snap.kustomizations), ",".join(bad) or "-")
    heavy = ("kubernetes", "requests", "proxmoxer")
    print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))

asyncio.run(main())
"""


def test_reader_lists_what_the_client_lists(kube_lab: RunningLab) -> None:
    files = kube_lab.files
    reader = open_reader(str(files.kubeconfig), None, timeout=10)
    assert isinstance(reader, KubeReader)
    client = KubeBackend.from_kubeconfig(files.kubeconfig, read_only=True)
    try:
        for kind in WATCH_KINDS:
            lean, rv = reader.list_raw(kind)
            full, _ = client.list_raw(kind)
            assert rv, kind
            names = lambda items: sorted(i["metadata"]["name"] for i in items)  # noqa: E731
            assert names(lean) == names(full), kind
    finally:
        reader.close()
        client.close()


def test_one_shot_snapshot_never_imports_the_client(kube_lab: RunningLab, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _ONE_SHOT, str(kube_lab.files.config_readonly)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    counts, modules = out.stdout.splitlines()[-2:]
    nodes, kustomizations, bad = counts.split()
    assert (int(nodes), bad) == (7, "-") and int(kustomizations) > 0
    assert modules == "[]"


def test_lists_come_in_pages_and_the_pages_add_up(
    kube_lab: RunningLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapper.backends.clients import kube_reader

    reader = open_reader(str(kube_lab.files.kubeconfig), None, timeout=10)
    assert isinstance(reader, KubeReader)
    pages: list[str] = []
    inner = reader._json

    def counting(what: str, path: str) -> dict:
        pages.append(path)
        return inner(what, path)

    monkeypatch.setattr(kube_reader, "LIST_PAGE", 10)
    monkeypatch.setattr(reader, "_json", counting)
    try:
        paged, rv = reader.list_raw("pods")
    finally:
        reader.close()
    everything = kube_lab.world.pods()
    assert sorted(p["metadata"]["name"] for p in paged) == sorted(
        p["metadata"]["name"] for p in everything
    )
    assert rv and len(pages) == -(-len(everything) // 10)
    assert "continue=" in pages[1]
    # kubectl pages too (--chunk-size, 500 by default)
    config = str(kube_lab.files.kubeconfig)
    kubectl = subprocess.run(
        ["kubectl", "--kubeconfig", config, "get", "pods", "-A", "--chunk-size=7", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if kubectl.returncode == 127:  # pragma: no cover - kubectl is on the CI machines
        pytest.skip("kubectl not installed")
    assert kubectl.returncode == 0, kubectl.stderr
    assert len(kubectl.stdout.split()) == len(everything)
