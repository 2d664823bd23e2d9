"""kubectl against the lab API server: discovery, Tables, describe, cordon, drain, patch."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.kube_lab import DRAIN_NODE, WORKER, Lab, pods_of, running_lab, writes

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("kubectl")) as lab:
        yield lab


def kubectl(lab: Lab, *args: str, readonly: bool = False, ok: bool = True) -> str:
    config = lab.readonly if readonly else lab.admin
    home = lab.tmp / "home"  # kubectl's discovery cache stays in tmp
    home.mkdir(exist_ok=True)
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(config), "--request-timeout=10s", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_get_nodes_prints_the_table(lab: Lab) -> None:
    out = kubectl(lab, "get", "nodes").splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert len(out) == 8
    gpu = next(line for line in out if line.startswith("talos-node-gpu-1"))
    # roles a kubelet may set live under node-role.home.arpa/; kubectl shows none
    assert gpu.split()[1:3] == ["Ready", "<none>"]


def test_get_follows_the_table_pages_to_the_last_row(lab: Lab) -> None:
    # kubectl asks for Tables a page at a time (--chunk-size, 500 by default) and stops
    # when a page carries no continue token
    whole = kubectl(lab, "get", "pods", "-A", "--no-headers", "--chunk-size=0").splitlines()
    paged = kubectl(lab, "get", "pods", "-A", "--no-headers", "--chunk-size=3").splitlines()
    assert len(whole) > 6
    assert sorted(paged) == sorted(whole)


def test_describe_node_lists_its_pods(lab: Lab) -> None:
    out = kubectl(lab, "describe", "node", WORKER)
    assert f"Name:               {WORKER}" in out
    assert "InternalIP:  10.100.0.54" in out
    assert "web-7d9f8-aaaaa" in out
    assert "KubeletReady" in out


def test_custom_kinds_by_short_name(lab: Lab) -> None:
    ks = kubectl(lab, "get", "ks", "-A")
    assert ks.split()[:5] == ["NAMESPACE", "NAME", "AGE", "READY", "STATUS"]
    assert "cluster-apps" in ks and "Applied revision: main@sha1:" in ks
    dsp = kubectl(lab, "get", "dsp", "-A")
    assert f"pool-{WORKER}" in dsp and "Online" in dsp
    crd = kubectl(lab, "get", "crd")
    assert "diskpools.openebs.io" in crd


def test_cordon_annotate_and_patch(lab: Lab) -> None:
    assert "cordoned" in kubectl(lab, "cordon", "talos-node-large-2")
    assert "SchedulingDisabled" in kubectl(lab, "get", "node", "talos-node-large-2")
    kubectl(lab, "uncordon", "talos-node-large-2")
    kubectl(lab, "annotate", "node", "talos-node-large-2", "dapper.io/note=hello")
    kubectl(
        lab,
        "patch",
        "node",
        "talos-node-large-2",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"labels":{"dapper.io/lab":"yes"}}}',
    )
    kubectl(
        lab,
        "patch",
        "ks",
        "cluster-apps",
        "-n",
        "flux-system",
        "--type",
        "merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    out = kubectl(
        lab,
        "get",
        "node",
        "talos-node-large-2",
        "-o",
        "jsonpath={.metadata.annotations.dapper\\.io/note} {.metadata.labels.dapper\\.io/lab} "
        "{.spec.unschedulable}",
    )
    assert out.split() == ["hello", "yes"]
    spec = kubectl(
        lab, "get", "ks", "cluster-apps", "-n", "flux-system", "-o", "jsonpath={.spec.suspend}"
    )
    assert spec == "true"


def test_drain_evicts_and_ignores_daemonsets(lab: Lab) -> None:
    out = kubectl(
        lab, "drain", DRAIN_NODE, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s"
    )
    assert "evicting pod apps/db-0" in out and f"node/{DRAIN_NODE} drained" in out
    assert "ignoring DaemonSet-managed Pods" in out
    [db] = pods_of(lab.world, "apps", "db-0")
    assert db["spec"]["nodeName"] != DRAIN_NODE
    assert any(w.op == "create pods/eviction" for w in writes(lab.world))
    kubectl(lab, "uncordon", DRAIN_NODE)


def test_readonly_kubectl_is_forbidden(lab: Lab) -> None:
    before = len(writes(lab.world))
    out = kubectl(lab, "cordon", WORKER, readonly=True, ok=False)
    assert 'User "dapper-lab-readonly" cannot patch resource "nodes"' in out
    out = kubectl(lab, "get", "secrets", "-A", readonly=True, ok=False)
    assert "Forbidden" in out
    assert "talos-node-gpu-1" in kubectl(lab, "get", "nodes", readonly=True)
    assert len(writes(lab.world)) == before
