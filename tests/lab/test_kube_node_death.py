"""A node's death as Kubernetes v1.33 shows it, through the kubernetes client and kubectl:
the grace period, the lifecycle taints, the default tolerations, taint-based eviction,
Terminating pods that only a live kubelet or a force delete removes, StatefulSet ordinals,
the pod GC after the Node is deleted, and the console's drain on such a node (issue 19).

The lab's Kubernetes clock runs at node_grace's pace (Timings.kube_seconds): with
GRACE = 0.25 s for the real 50 s, a 300 s toleration lasts 1.5 s, the pod GC's 40 s
quarantine 0.2 s and a pod's 30 s termination grace 0.15 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.kube_drain import DrainBlocked
from dapper.lab.world import Timings

from kubernetes import client, config
from tests.lab.kube_lab import DRAIN_NODE, WORKER, Lab, running_lab
from tests.lab.test_kube_apply import KUBECTL, kubectl
from tests.waiting import eventually

GRACE = 0.25
TIMINGS = Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.1, node_grace=GRACE)
TOLERATION = TIMINGS.kube_seconds(300)  # 1.5 s
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
API_POD = "api-5c6b-ccccc"  # a ReplicaSet's pod on DRAIN_NODE
DB_POD = "db-0"  # a StatefulSet's pod on DRAIN_NODE


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path, timings=TIMINGS) as lab:
        yield lab


@pytest.fixture
def core(lab: Lab) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(lab.admin)))


def ready(core: client.CoreV1Api, node: str) -> str:
    conds = core.read_node(node).status.conditions
    return next(c.status for c in conds if c.type == "Ready")


def taints(core: client.CoreV1Api, node: str) -> dict[tuple[str, str], client.V1Taint]:
    return {(t.key, t.effect): t for t in core.read_node(node).spec.taints or []}


def pod(core: client.CoreV1Api, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, "apps")
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def apps_pods(core: client.CoreV1Api, prefix: str) -> list[client.V1Pod]:
    items = core.list_namespaced_pod("apps").items
    return [p for p in items if p.metadata.name.startswith(prefix)]


def kill(lab: Lab, core: client.CoreV1Api, node: str = DRAIN_NODE) -> None:
    """Stop the node's VM and wait out the grace period (Ready goes Unknown)."""
    lab.world.inject(f"vm-stopped:{node}")
    eventually(lambda: ready(core, node) == "Unknown", timeout=GRACE + 5, message="Unknown")


def test_ready_goes_unknown_after_the_grace_with_noschedule_and_noexecute_taints(
    lab: Lab, core: client.CoreV1Api
) -> None:
    started = time.monotonic()
    lab.world.inject(f"vm-stopped:{DRAIN_NODE}")
    assert ready(core, DRAIN_NODE) == "True"  # within the grace period nothing shows yet
    assert not {k for k, _ in taints(core, DRAIN_NODE)} & {UNREACHABLE, NOT_READY}
    eventually(lambda: ready(core, DRAIN_NODE) == "Unknown", timeout=GRACE + 5)
    assert time.monotonic() - started >= GRACE * 0.9
    found = taints(core, DRAIN_NODE)
    assert {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= set(found)
    assert found[(UNREACHABLE, "NoExecute")].time_added is not None
    assert found[(UNREACHABLE, "NoSchedule")].time_added is None  # as the controller sets it
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={DRAIN_NODE}")
    assert on_node.items and not any(
        c.status == "True"
        for p in on_node.items
        for c in p.status.conditions or []
        if c.type == "Ready"
    )

    lab.world.clear(f"vm-stopped:{DRAIN_NODE}")  # the VM starts again: the kubelet posts
    eventually(lambda: ready(core, DRAIN_NODE) == "True", timeout=5)
    assert not {k for k, _ in taints(core, DRAIN_NODE)} & {UNREACHABLE, NOT_READY}


def test_a_kubelet_reporting_not_ready_gets_the_not_ready_taints(
    lab: Lab, core: client.CoreV1Api
) -> None:
    with lab.world.lock:
        lab.world.kube.set_node_ready(
            WORKER, False, "KubeletNotReady", "container runtime is down", status="False"
        )
    assert ready(core, WORKER) == "False"
    found = taints(core, WORKER)
    assert {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")} <= set(found)
    assert not {k for k, _ in found} & {UNREACHABLE}
    assert found[(NOT_READY, "NoExecute")].time_added is not None


def test_new_pods_get_the_default_300s_tolerations_unless_they_have_their_own(
    core: client.CoreV1Api,
) -> None:
    plain = core.create_namespaced_pod(
        "apps",
        {"metadata": {"name": "plain"}, "spec": {"containers": [{"name": "a", "image": "x"}]}},
    )
    got = {(t.key, t.effect, t.operator, t.toleration_seconds) for t in plain.spec.tolerations}
    assert got == {
        (NOT_READY, "NoExecute", "Exists", 300),
        (UNREACHABLE, "NoExecute", "Exists", 300),
    }
    own = core.create_namespaced_pod(
        "apps",
        {
            "metadata": {"name": "own"},
            "spec": {
                "containers": [{"name": "a", "image": "x"}],
                "tolerations": [
                    {
                        "key": UNREACHABLE,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 5,
                    }
                ],
            },
        },
    )
    got = {(t.key, t.toleration_seconds) for t in own.spec.tolerations}
    assert got == {(UNREACHABLE, 5), (NOT_READY, 300)}


def test_taint_eviction_after_the_toleration_leaves_pods_terminating_on_a_dead_node(
    lab: Lab, core: client.CoreV1Api
) -> None:
    db_uid = pod(core, DB_POD).metadata.uid
    kill(lab, core)
    unknown_at = time.monotonic()
    assert pod(core, API_POD).metadata.deletion_timestamp is None  # tolerated for 300 s
    api = eventually(
        lambda: (p := pod(core, API_POD)) and p.metadata.deletion_timestamp and p,
        timeout=TOLERATION + 5,
        message="the ReplicaSet pod to be marked for deletion",
    )
    assert time.monotonic() - unknown_at >= TOLERATION * 0.8
    assert api.metadata.deletion_grace_period_seconds == 30
    target = [c for c in api.status.conditions if c.type == "DisruptionTarget"]
    assert [(c.status, c.reason) for c in target] == [("True", "DeletionByTaintManager")]
    db = eventually(lambda: (p := pod(core, DB_POD)) and p.metadata.deletion_timestamp and p)
    assert db.metadata.uid == db_uid
    # the ReplicaSet replaced its pod elsewhere at once; the StatefulSet did not
    others = [p for p in apps_pods(core, "api-5c6b-") if p.metadata.name != API_POD]
    assert len(others) == 1 and others[0].spec.node_name not in ("", DRAIN_NODE)
    assert [p.metadata.uid for p in apps_pods(core, "db-")] == [db_uid]
    # DaemonSet pods tolerate the taints without limit
    ds = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={DRAIN_NODE}").items
    assert any(r.kind == "DaemonSet" for p in ds for r in p.metadata.owner_references or [])
    assert all(
        p.metadata.deletion_timestamp is None
        for p in ds
        if any(r.kind == "DaemonSet" for r in p.metadata.owner_references or [])
    )
    time.sleep(TIMINGS.kube_seconds(30) + 3 * TIMINGS.container_stop)
    assert pod(core, API_POD).metadata.deletion_timestamp  # no kubelet ever confirms
    reasons = {
        e.reason
        for e in core.list_namespaced_event("apps").items
        if e.involved_object.name == API_POD
    }
    assert "TaintManagerEviction" in reasons

    # the operator force-deletes: the object goes, the StatefulSet re-creates the ordinal
    core.delete_namespaced_pod(DB_POD, "apps", grace_period_seconds=0)
    fresh = eventually(lambda: (p := pod(core, DB_POD)) and p.metadata.uid != db_uid and p)
    assert fresh.spec.node_name not in ("", DRAIN_NODE)
    assert fresh.metadata.deletion_timestamp is None
    assert len(apps_pods(core, "db-")) == 1


@pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")
def test_kubectl_delete_on_a_dead_node_waits_until_forced(lab: Lab, core: client.CoreV1Api) -> None:
    kill(lab, core)
    out = kubectl(lab, "delete", "pod", "-n", "apps", API_POD, "--wait=false")
    assert f'pod "{API_POD}" deleted' in out.stdout
    listing = kubectl(lab, "get", "pods", "-n", "apps", "--no-headers").stdout
    row = next(line for line in listing.splitlines() if line.startswith(API_POD))
    assert "Terminating" in row.split()
    time.sleep(TIMINGS.kube_seconds(30) + 3 * TIMINGS.container_stop)
    assert pod(core, API_POD) is not None
    out = kubectl(lab, "delete", "pod", "-n", "apps", API_POD, "--force", "--grace-period=0")
    assert "force deleted" in out.stdout + out.stderr
    assert pod(core, API_POD) is None


def test_a_live_kubelet_removes_a_deleted_pod_and_the_statefulset_reuses_the_name(
    lab: Lab, core: client.CoreV1Api
) -> None:
    db_uid = pod(core, DB_POD).metadata.uid
    answer = core.delete_namespaced_pod(DB_POD, "apps")
    assert answer.metadata.deletion_timestamp is not None
    assert answer.metadata.deletion_grace_period_seconds == 30
    assert [p.metadata.uid for p in apps_pods(core, "db-")] == [db_uid]  # still Terminating
    fresh = eventually(
        lambda: (p := pod(core, DB_POD)) and p.metadata.uid != db_uid and p, timeout=5
    )
    assert fresh.metadata.deletion_timestamp is None and fresh.spec.node_name
    answer = core.delete_namespaced_pod(API_POD, "apps")
    assert answer.metadata.deletion_timestamp is not None
    eventually(lambda: pod(core, API_POD) is None, timeout=5)
    assert len(apps_pods(core, "api-5c6b-")) == 1  # replaced once


def test_the_pod_gc_deletes_pods_of_a_deleted_node_after_its_quarantine(
    lab: Lab, core: client.CoreV1Api
) -> None:
    db_uid = pod(core, DB_POD).metadata.uid
    kill(lab, core)
    core.delete_node(DRAIN_NODE)
    selector = f"spec.nodeName={DRAIN_NODE}"
    left = core.list_pod_for_all_namespaces(field_selector=selector).items
    assert {p.metadata.name for p in left} >= {API_POD, DB_POD}  # bound to a Node now gone
    eventually(
        lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
        timeout=TIMINGS.kube_seconds(40) + 5,
        message="the pod GC to collect the orphans",
    )
    fresh = eventually(lambda: (p := pod(core, DB_POD)) and p.metadata.uid != db_uid and p)
    assert fresh.spec.node_name not in ("", DRAIN_NODE)
    api = apps_pods(core, "api-5c6b-")
    assert len(api) == 1 and api[0].spec.node_name not in ("", DRAIN_NODE)


def test_console_drain_of_a_node_with_a_dead_kubelet_reports_still_terminating(
    lab: Lab,
) -> None:
    lab.world.inject(f"node-notready:{DRAIN_NODE}")  # the kubelet stopped: nothing confirms
    kube = KubeBackend.from_kubeconfig(lab.admin, timeout=5.0)
    kube.poll_interval = 0.02
    kube.evict_retry = 0.05
    try:
        with pytest.raises(DrainBlocked) as err:
            kube.drain(DRAIN_NODE, time.monotonic() + 1.0, None)
    finally:
        kube.close()
    assert dict(err.value.report.blocked) == {
        f"apps/{API_POD}": "still terminating",
        f"apps/{DB_POD}": "still terminating",
    }


def test_workload_status_follows_pod_readiness(lab: Lab, core: client.CoreV1Api) -> None:
    apps = client.AppsV1Api(config.new_client_from_config(str(lab.admin)))
    apps.create_namespaced_stateful_set(
        "apps",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app.kubernetes.io/name": "db"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "db"}]},
                },
            },
        },
    )
    nodes = len(core.list_node().items)

    def status(read: object, name: str, ns: str = "apps") -> dict:
        raw = read(name, ns, _preload_content=False)  # type: ignore[operator]
        return json.loads(raw.data)["status"]  # (the seeded Deployment has a bare template)

    def counts() -> tuple:
        web = status(apps.read_namespaced_deployment_status, "web")
        cilium = status(apps.read_namespaced_daemon_set_status, "cilium", "kube-system")
        db = status(apps.read_namespaced_stateful_set_status, "db")
        available = next(
            c["status"] for c in web.get("conditions") or [] if c["type"] == "Available"
        )
        return (
            web.get("readyReplicas"),
            available,
            cilium["desiredNumberScheduled"],
            cilium["numberReady"],
            db.get("readyReplicas"),
        )

    eventually(lambda: counts() == (2, "True", nodes, nodes, 1), timeout=5, message=counts)
    kill(lab, core, WORKER)  # web has a pod there
    eventually(lambda: counts() == (1, "False", nodes, nodes - 1, 1), timeout=5, message=counts)
    kill(lab, core, DRAIN_NODE)  # and db-0 is there
    eventually(lambda: counts() == (1, "False", nodes, nodes - 2, 0), timeout=5, message=counts)
    core.delete_node(DRAIN_NODE)  # the DaemonSet no longer wants a pod there
    eventually(lambda: counts()[2:4] == (nodes - 1, nodes - 2), timeout=5, message=counts)


def test_a_node_registering_again_after_its_deletion_is_a_new_object(
    lab: Lab, core: client.CoreV1Api
) -> None:
    old = core.read_node(DRAIN_NODE).metadata
    kill(lab, core)
    core.delete_node(DRAIN_NODE)
    selector = f"spec.nodeName={DRAIN_NODE}"
    eventually(
        lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
        timeout=TIMINGS.kube_seconds(40) + 5,
    )
    lab.world.clear(f"vm-stopped:{DRAIN_NODE}")  # the same machine boots and registers
    eventually(lambda: DRAIN_NODE in {n.metadata.name for n in core.list_node().items})
    new = core.read_node(DRAIN_NODE).metadata
    assert new.uid != old.uid
    assert (new.creation_timestamp - old.creation_timestamp).days >= 1  # not the old age
    assert not {k for k, _ in taints(core, DRAIN_NODE)} & {UNREACHABLE, NOT_READY}

    def daemons() -> list[client.V1Pod]:
        pods = core.list_pod_for_all_namespaces(field_selector=selector).items
        return [
            p
            for p in pods
            if any(r.kind == "DaemonSet" for r in p.metadata.owner_references or [])
            and p.status.phase == "Running"
            and p.metadata.deletion_timestamp is None
        ]

    assert {p.metadata.labels["app.kubernetes.io/name"] for p in eventually(daemons)} >= {
        "cilium",
        "spegel",
    }


def test_a_kubelet_that_comes_back_finishes_the_deletions_that_waited_for_it(
    lab: Lab, core: client.CoreV1Api
) -> None:
    db_uid = pod(core, DB_POD).metadata.uid
    kill(lab, core)
    core.delete_namespaced_pod(DB_POD, "apps")
    time.sleep(TIMINGS.kube_seconds(30) + 3 * TIMINGS.container_stop)
    assert pod(core, DB_POD).metadata.uid == db_uid  # Terminating: nobody confirms
    lab.world.clear(f"vm-stopped:{DRAIN_NODE}")  # the machine boots; its kubelet posts
    fresh = eventually(
        lambda: (p := pod(core, DB_POD)) and p.metadata.uid != db_uid and p, timeout=5
    )
    assert fresh.metadata.deletion_timestamp is None
    assert ready(core, DRAIN_NODE) == "True"
