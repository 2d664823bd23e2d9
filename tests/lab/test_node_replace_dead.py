"""node-replace written against a dead node's states (issue 19): end to end on the lab.

The storage node holding a volume's only replica dies; two pods there are deleted and stay
Terminating (a dead kubelet never confirms). The preview names the claims whose data goes
with the node and the pods stuck Terminating; the run force-deletes (grace period 0) only
the pod the operator confirmed and says which it left; the replacement is verified by
what the new machine provides (its config's nodeLabels on the Node, the pool Online on its
disk). Everything goes through the project's engine and CLI over the lab's real protocols;
the checks read the cluster with the official kubernetes client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.actions.engine import Engine
from dapper.actions.node_replace.runbook import NodeReplace
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.errors import BackendError
from dapper.lab.runtime import RunningLab
from dapper.lab.world.node_labels import STORAGE_LABELS
from kubernetes.client.exceptions import ApiException

from kubernetes import client as k8s
from tests.lab.runbook_support import StopAfter
from tests.lab.test_node_replace import _started, dead, node_ready, run_cli
from tests.waiting import eventually

NS = "openebs-system"
PROXY = "http:openebs-api-rest:http"
DRIVER = "io.openebs.csi-mayastor"
STORAGE_WORKERS = ("talos-node-large-1", "talos-node-large-2", "talos-node-large-3")
GPU_POOL = "talos-node-gpu-1"
MIB = 1024 * 1024


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    running = _started(tmp_path / "lab")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kube(lab: RunningLab) -> Iterator[KubeBackend]:
    backend = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    yield backend
    backend.close()


def _claims_of_pvs(core: k8s.CoreV1Api) -> dict[str, str]:
    out = {}
    for pv in core.list_persistent_volume().items:
        csi = pv.spec.csi
        if csi is not None and csi.driver == DRIVER:
            out[csi.volume_handle] = f"{pv.spec.claim_ref.namespace}/{pv.spec.claim_ref.name}"
    return out


def bare_pod(core: k8s.CoreV1Api, name: str, node: str) -> None:
    core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "lab/app"}]},
        },
    )


def _bound_claim(core: k8s.CoreV1Api, name: str, size: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        },
    )
    eventually(
        lambda: (
            core.read_namespaced_persistent_volume_claim(name, "default").status.phase == "Bound"
        ),
        message=f"{name} bound",
        timeout=30.0,  # the provisioner's queue, behind the lab's own work on a busy machine
    )


def _own_claim_on_a_large_worker(lab: RunningLab, core: k8s.CoreV1Api) -> str:
    """A claim of the default class (one replica) placed on a large worker's pool; its name.

    Mayastor (and the twin) puts a replica on the pool with the least committed, which is
    often the GPU node's (the tree's volumes sit on the workers). A ballast claim first
    commits the GPU pool past the emptiest worker's; the check is repeated in case the
    tree's own claims moved the balance meanwhile."""
    mayastor = lab.world.mayastor
    for attempt in range(3):
        with lab.world.lock:
            gpu = mayastor.committed(GPU_POOL)
            least = min(mayastor.committed(n) for n in STORAGE_WORKERS)
        if gpu <= least:
            _bound_claim(core, f"ballast-{attempt}", f"{(least - gpu) // MIB + 1024}Mi")
        name = f"replace-data-{attempt}"
        _bound_claim(core, name, "1Gi")
        with lab.world.lock:
            uid = mayastor.by_claim[("default", name)]
            if mayastor.volumes[uid].replicas[0].node in STORAGE_WORKERS:
                return name
    pytest.fail("three claims in a row landed on the GPU node's pool")


class StopAt(StopAfter):
    """Stops the run once step `step` has finished."""

    def __init__(self, step: str) -> None:
        super().__init__(0)
        self.step = step

    def stop(self) -> bool:
        return self.step in self.finished


def pod_or_none(core: k8s.CoreV1Api, name: str) -> k8s.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, "default")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_dead_storage_node_is_replaced_forcing_only_the_confirmed_pod(
    lab: RunningLab, kube: KubeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    core = k8s.CoreV1Api(kube._api)

    def pools_online() -> bool:
        pools = k8s.CustomObjectsApi(kube._api).list_namespaced_custom_object(
            "openebs.io", "v1beta3", NS, "diskpools"
        )["items"]
        online = {
            p["spec"]["node"]
            for p in pools
            if (p.get("status") or {}).get("pool_status") == "Online"
        }
        return online >= set(STORAGE_WORKERS)

    # Every pool Online first: a claim provisioned while only one pool was (the tree's, as
    # Flux applies the pools) lands there, and all of them on the GPU node left no victim.
    eventually(pools_online, message="the storage workers' pools Online", timeout=60.0)
    # a claim of our own on a large worker, whose pool then holds its only replica
    mine = _own_claim_on_a_large_worker(lab, core)
    claims = _claims_of_pvs(core)
    by_node: dict[str, set[str]] = {}
    for v in kube.mayastor_volumes(NS, PROXY):
        nodes = {r["node"] for r in v["state"]["replica_topology"].values()}
        if len(nodes) == 1:
            by_node.setdefault(nodes.pop(), set()).add(claims[v["state"]["uuid"]])
    victim = next(n for n, held in by_node.items() if f"default/{mine}" in held)
    assert victim in STORAGE_WORKERS
    lost = by_node[victim]

    bare_pod(core, "force-me", victim)
    bare_pod(core, "keep-me", victim)
    dead(lab, f"disk-failed:{victim}", victim)
    for name in ("force-me", "keep-me"):
        core.delete_namespaced_pod(name, "default")  # graceful: Terminating, never confirmed
    assert pod_or_none(core, "keep-me").metadata.deletion_timestamp is not None

    # the preview: the claims that lose their data, the pods stuck, only one forced
    rc = run_cli(
        lab,
        f"node={victim}",
        "mac=new",
        "force_delete=default/force-me",
        extra=("--dry-run",),
    )
    out = capsys.readouterr().out
    assert rc == 0
    line = next(x for x in out.splitlines() if "Mayastor volumes that lose their data" in x)
    assert all(c in line for c in lost), (lost, line)
    assert "default/force-me [force delete confirmed]" in out
    assert "kubectl delete pod -n default force-me --grace-period=0 --force" in out
    assert "keep-me --grace-period=0" not in out
    assert "left Terminating (not confirmed" in out and "default/keep-me" in out
    assert "the nodeLabels of its config on the Node:" in out
    assert pod_or_none(core, "force-me") is not None  # a dry run forces nothing

    # the run, stopped right after the force delete: one gone, the other still there
    runbook = NodeReplace()
    params = {"node": victim, "mac": "new", "timeout": 60, "force_delete": "default/force-me"}
    stopper = StopAt("force-delete")
    result = Engine(lab.config, emit=stopper, cancelled=stopper.stop).run(runbook, params, yes=True)
    assert result.cancelled, result.reason
    assert pod_or_none(core, "force-me") is None
    kept = pod_or_none(core, "keep-me")
    assert kept is not None and kept.metadata.deletion_timestamp is not None
    # a force delete bound to another object's uid (a successor of the name) is refused
    with pytest.raises(BackendError) as err:
        kube.force_delete_pod("default", "keep-me", uid="0" * 8)
    assert err.value.code == "CONFLICT"
    assert f"UID in object meta: {kept.metadata.uid}" in err.value.reason

    result = Engine(lab.config).resume(result.run_id, runbook, yes=True)
    assert result.ok, result.reason
    assert node_ready(lab, victim)
    node = core.read_node(victim)
    assert STORAGE_LABELS.items() <= (node.metadata.labels or {}).items()  # from its config
    assert "node-role.home.arpa/gpu" not in node.metadata.labels
    pools = {p.name: p for p in kube.disk_pools()}
    assert pools[victim].state == "Online"
