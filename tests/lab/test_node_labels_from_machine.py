"""A Node's labels come from the config its machine really runs (issue 19, point 3), as
Talos v1.11 writes them: `machine.nodeLabels` (and the control-plane role label) through
its NodeApplyController, owned in the `talos.dev/owned-labels` annotation, a worker's
through its kubelet's credentials and so subject to NodeRestriction (one forbidden label
refuses the whole update). Configs go in through the project's Talos client over mTLS
gRPC; the Nodes are read with the official kubernetes client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings
from dapper.lab.world.node_labels import GPU_LABELS, STORAGE_LABELS
from dapper.lab.world.talos import cluster_machine_config

from kubernetes import client as k8s
from tests.lab.talsecret_configs import bundle, machine_config
from tests.lab.test_talos_node_replace import (
    _apply_in_maintenance,
    _kube,
    _maintenance_address,
    _new_vm,
    _pve,
    _talos,
)
from tests.waiting import eventually

LARGE1 = ("talos-node-large-1", "10.100.0.54")
CONTROL1 = ("talos-control-1", "10.100.0.50")
LARGE2 = ("talos-node-large-2", "10.100.0.55", 105, "bc:24:11:e0:17:19")


@pytest.fixture
def lab() -> Iterator[RunningLab]:
    timings = Timings(boot=0.05, task=0.05, clone=0.05, install=0.05, node_grace=0.3)
    running = start_lab(flux=False, timings=timings)
    yield running
    running.stop()


@pytest.fixture
def core(lab: RunningLab) -> Iterator[k8s.CoreV1Api]:
    kube = _kube(lab)
    yield k8s.CoreV1Api(kube._api)
    kube.close()


def _labels(core: k8s.CoreV1Api, name: str) -> dict[str, str]:
    return dict(core.read_node(name).metadata.labels or {})


def _owned(core: k8s.CoreV1Api, name: str) -> list[str] | None:
    text = (core.read_node(name).metadata.annotations or {}).get("talos.dev/owned-labels")
    return None if text is None else json.loads(text)


def _with_labels(lab: RunningLab, ip: str, labels: dict[str, str]) -> bytes:
    """A full config for the machine at `ip` (the lab's cluster secrets) with `labels` as
    its machine.nodeLabels."""
    w = lab.world
    m = w.machine(ip)
    base = cluster_machine_config(
        m.hostname,
        m.role,
        os_ca_pem=w.cluster_os_ca,
        token=w.cluster_token,
        machine_token=w.machine_token,
    )
    return _labelled(base, labels)


def _labelled(config: bytes, labels: dict[str, str]) -> bytes:
    """`config` with `labels` as its machine.nodeLabels (it has none)."""
    if not labels:
        return config
    block = "".join(f'    {k}: "{v}"\n' for k, v in labels.items())
    return config.decode().replace("machine:\n", "machine:\n  nodeLabels:\n" + block, 1).encode()


def _configure(lab: RunningLab, ip: str, labels: dict[str, str]) -> None:
    """Give a seeded machine a full config (its tokens change: Talos reboots it)."""
    assert _apply(lab, ip, _with_labels(lab, ip, labels), mode="auto") == "reboot"
    m = lab.world.machine(ip)
    eventually(lambda: lab.world.reachable(m), interval=0.05, message="the reboot")


def _pods_of(core: k8s.CoreV1Api, daemonset: str) -> list[str]:
    pods = core.list_namespaced_pod("default").items
    return [
        p.spec.node_name
        for p in pods
        if any(r.name == daemonset for r in p.metadata.owner_references or [])
    ]


def _apply(lab: RunningLab, ip: str, data: bytes, mode: str = "no-reboot") -> str:
    async def go() -> str:
        async with _talos(lab) as c:
            return (await c.apply_configuration(ip, data, mode=mode)).mode

    return asyncio.run(go())


def test_seeded_nodes_carry_their_configs_labels_owned_by_talos(lab: RunningLab, core) -> None:
    gpu = _labels(core, "talos-node-gpu-1")
    assert GPU_LABELS.items() <= gpu.items() and STORAGE_LABELS.items() <= gpu.items()
    assert _owned(core, "talos-node-gpu-1") == sorted({**GPU_LABELS, **STORAGE_LABELS})
    large = _labels(core, LARGE1[0])
    assert "node-role.home.arpa/gpu" not in large  # its config has no such label
    assert STORAGE_LABELS.items() <= large.items()
    control = _labels(core, CONTROL1[0])
    assert control["node-role.kubernetes.io/control-plane"] == ""  # Talos's own spec
    assert "openebs.io/engine" not in control
    assert "node-role.kubernetes.io/control-plane" in (_owned(core, CONTROL1[0]) or [])


def test_a_config_change_moves_the_nodes_labels_and_leaves_others_alone(
    lab: RunningLab, core
) -> None:
    name, ip = LARGE1
    _configure(lab, ip, STORAGE_LABELS)
    assert STORAGE_LABELS.items() <= _labels(core, name).items()
    # an admin's label (not Talos's) and one the config will also name, at another value
    core.patch_node(name, {"metadata": {"labels": {"team": "infra", "rack.home.arpa/row": "b"}}})
    # a DaemonSet for the nodes of a shelf: none yet
    lab.world.ensure_daemonset(
        "default", "shelf-agent", node_selector={"zone.home.arpa/shelf": "top"}
    )
    assert not _pods_of(core, "shelf-agent")
    wanted = dict(STORAGE_LABELS)
    del wanted["node-role.home.arpa/worker"]
    wanted |= {"zone.home.arpa/shelf": "top", "rack.home.arpa/row": "a"}
    assert _apply(lab, ip, _with_labels(lab, ip, wanted)) == "no-reboot"
    labels = _labels(core, name)
    assert labels["zone.home.arpa/shelf"] == "top"  # a label the config added shows
    assert _pods_of(core, "shelf-agent") == [name]  # and its DaemonSet's pod comes
    assert "node-role.home.arpa/worker" not in labels  # one it dropped, Talos's, goes
    assert labels["team"] == "infra"  # the admin's stays
    assert labels["rack.home.arpa/row"] == "b"  # not Talos's to change
    owned = _owned(core, name) or []
    assert "zone.home.arpa/shelf" in owned and "rack.home.arpa/row" not in owned
    # nodeLabels emptied: Talos removes what it owns and drops its annotation
    assert _apply(lab, ip, _with_labels(lab, ip, {})) == "no-reboot"
    labels = _labels(core, name)
    assert not set(STORAGE_LABELS) & set(labels) and "zone.home.arpa/shelf" not in labels
    assert labels["team"] == "infra" and _owned(core, name) is None


def test_node_restriction_refuses_a_workers_whole_batch_not_a_control_planes(
    lab: RunningLab, core
) -> None:
    name, ip = LARGE1
    _configure(lab, ip, STORAGE_LABELS)
    before = _labels(core, name)
    bad = {**STORAGE_LABELS, "node-role.kubernetes.io/worker": "", "zone.home.arpa/shelf": "top"}
    assert _apply(lab, ip, _with_labels(lab, ip, bad)) == "no-reboot"  # Talos takes the config
    assert _labels(core, name) == before  # the API server refused the kubelet's update
    assert lab.world.machine(ip).node_labels_error == (
        f'nodes "{name}" is forbidden: is not allowed to modify labels: '
        "node-role.kubernetes.io/worker"
    )
    restricted = {"node-restriction.kubernetes.io/pool": "gpu"}
    _apply(lab, ip, _with_labels(lab, ip, {**STORAGE_LABELS, **restricted}))
    assert "node-restriction.kubernetes.io/pool" not in _labels(core, name)
    allowed = {**STORAGE_LABELS, "topology.kubernetes.io/zone": "pve1"}  # a kubelet label
    _apply(lab, ip, _with_labels(lab, ip, allowed))
    assert _labels(core, name)["topology.kubernetes.io/zone"] == "pve1"
    assert lab.world.machine(ip).node_labels_error == ""
    # a control plane's Talos writes with an admin client: no NodeRestriction there
    cname, cip = CONTROL1
    _configure(lab, cip, {})
    _apply(lab, cip, _with_labels(lab, cip, {"node-role.kubernetes.io/etcd": ""}))
    assert _labels(core, cname)["node-role.kubernetes.io/etcd"] == ""


def test_a_replacement_gets_the_labels_of_its_own_config_not_the_old_nodes(
    lab: RunningLab, core
) -> None:
    """talos-node-large-2 dies and its Node is left in place; the replacement's config has
    no storage labels: the kubelet registers into the old object and Talos removes the
    labels it owned there. A later config that adds them brings them back."""
    hostname, ip, _vmid, mac = LARGE2
    assert STORAGE_LABELS.items() <= _labels(core, hostname).items()
    pve = _pve(lab)
    lab.world.inject(f"vm-destroyed:{hostname}")
    newid = _new_vm(lab, pve, hostname, mac)
    config = machine_config(bundle(), hostname, "worker", mac=mac, address=f"{ip}/24")
    _apply_in_maintenance(lab, _maintenance_address(pve, newid), config)
    eventually(
        lambda: (
            (m := lab.world.machine_of_vm(newid)) is not None
            and m.ip == ip
            and lab.world.reachable(m)
        ),
        interval=0.05,
        message="the replacement up at the old address",
    )
    eventually(
        lambda: not set(STORAGE_LABELS) & set(_labels(core, hostname)),
        interval=0.05,
        message="the old node's storage labels to go",
    )
    assert _owned(core, hostname) is None
    _apply(lab, ip, _labelled(config, STORAGE_LABELS))
    assert STORAGE_LABELS.items() <= _labels(core, hostname).items()
    # deleted and registered anew, a Node starts from the kubelet's labels plus the config's
    core.delete_node(hostname)
    _apply(lab, ip, config)

    async def reboot() -> None:
        async with _talos(lab) as c:
            await c.reboot(ip)

    asyncio.run(reboot())
    eventually(
        lambda: hostname in {n.metadata.name for n in core.list_node().items},
        interval=0.05,
        message="the kubelet to register the Node again",
    )
    labels = _labels(core, hostname)
    assert not set(STORAGE_LABELS) & set(labels)
    assert labels["kubernetes.io/hostname"] == hostname
    pve.close()
