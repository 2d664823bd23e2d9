"""CSI volumes and their VolumeAttachments through a node's death (issue 19, the
VolumeAttachment part), read with the official kubernetes client as storage.k8s.io/v1.

A ReadWriteOnce volume attached to a node stays attached while its pod is Terminating on
that dead node; after the force delete the StatefulSet's successor waits in
ContainerCreating with the attach-detach controller's Multi-Attach event until the volume
is detached, which on an unhealthy node takes maxWaitForUnmountDuration (6 minutes on the
lab's Kubernetes clock: Timings.kube_seconds, 360 * GRACE / 50 s here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.lab.world import Timings
from dapper.lab.world.volume_attach import EXCLUSIVE, attachment_name

from kubernetes import client, config
from tests.lab.kube_lab import Lab, running_lab
from tests.lab.test_kube_apply import KUBECTL, kubectl
from tests.waiting import eventually

GRACE = 0.3
TIMINGS = Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.1, node_grace=GRACE)
DRIVER = "io.openebs.csi-mayastor"
NODE = "talos-node-large-1"
OTHER = "talos-node-large-2"
PV = "pvc-0c4f1b7e-2a1d-4d55-9c7e-6f1f3c2b9a01"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path, timings=TIMINGS) as lab:
        yield lab


@pytest.fixture
def api(lab: Lab) -> client.ApiClient:
    return config.new_client_from_config(str(lab.admin))


def volume(core: client.CoreV1Api) -> None:
    """A pre-provisioned Mayastor volume and its claim (data-web-0)."""
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": PV},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": DRIVER, "volumeHandle": PV[4:]},
                "claimRef": {"namespace": "default", "name": "data-web-0"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-web-0"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": PV,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


def pod_using_the_claim(core: client.CoreV1Api, name: str, node: str, owner: str = "") -> None:
    meta: dict = {"name": name, "labels": {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": owner,
                "uid": "5d1f3c2e-0000-4000-8000-000000000001",
                "controller": True,
            }
        ]
    core.create_namespaced_pod(
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": node,
                "containers": [{"name": "app", "image": "lab/app"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}],
            },
        },
    )


def attachments(api: client.ApiClient) -> dict[str, client.V1VolumeAttachment]:
    """node -> the VolumeAttachment of PV there."""
    items = client.StorageV1Api(api).list_volume_attachment().items
    return {a.spec.node_name: a for a in items if a.spec.source.persistent_volume_name == PV}


def waiting_reason(pod: client.V1Pod) -> str:
    statuses = pod.status.container_statuses or []
    state = statuses[0].state if statuses else None
    return state.waiting.reason if state is not None and state.waiting is not None else ""


def attach_events(core: client.CoreV1Api, pod: str) -> list[str]:
    items = core.list_namespaced_event("default").items
    return [
        e.message
        for e in items
        if e.involved_object.name == pod
        and e.reason == "FailedAttachVolume"
        and e.type == "Warning"
    ]


def test_a_second_node_waits_while_the_first_pod_uses_the_volume(lab: Lab, api) -> None:
    core = client.CoreV1Api(api)
    volume(core)
    pod_using_the_claim(core, "web-0", NODE, owner="web")
    va = eventually(lambda: attachments(api).get(NODE), message="the volume attached to NODE")
    assert va.metadata.name == attachment_name(PV, DRIVER, NODE)
    assert va.spec.attacher == DRIVER and va.status.attached is True

    if KUBECTL:
        listing = kubectl(lab, "get", "volumeattachments", "-o", "wide").stdout
        row = next(line for line in listing.splitlines() if PV in line)
        assert NODE in row and DRIVER in row and "true" in row, listing

    pod_using_the_claim(core, "reader", OTHER)
    eventually(
        lambda: (
            waiting_reason(core.read_namespaced_pod("reader", "default")) == "ContainerCreating"
        ),
        message="the second pod held in ContainerCreating",
    )
    assert attach_events(core, "reader") == [
        f'Multi-Attach error for volume "{PV}" Volume is already used by pod(s) web-0'
    ]
    assert set(attachments(api)) == {NODE}
    kube = KubeBackend.from_kubeconfig(str(lab.admin))  # what the console reads
    try:
        (ref,) = [p for p in kube.pods(node=OTHER) if p.name == "reader"]
    finally:
        kube.close()
    assert ref.waiting == "ContainerCreating" and not ref.ready
    core.delete_namespaced_pod("reader", "default", grace_period_seconds=0)


def test_the_successor_waits_for_the_force_delete_then_the_detach(lab: Lab, api) -> None:
    core = client.CoreV1Api(api)
    volume(core)
    pod_using_the_claim(core, "web-0", NODE, owner="web")
    eventually(lambda: NODE in attachments(api), message="attached to NODE")

    lab.world.inject(f"vm-stopped:{NODE}")
    eventually(
        lambda: any(
            c.type == "Ready" and c.status == "Unknown"
            for c in core.read_node(NODE).status.conditions
        ),
        timeout=GRACE + 5,
        message="NODE Unknown",
    )
    core.delete_namespaced_pod("web-0", "default")  # graceful: its dead kubelet never confirms
    time.sleep(TIMINGS.kube_seconds(30) + 0.2)
    old = core.read_namespaced_pod("web-0", "default")
    assert old.metadata.deletion_timestamp is not None and old.spec.node_name == NODE
    assert set(attachments(api)) == {NODE}  # still attached to the dead node

    core.delete_namespaced_pod("web-0", "default", grace_period_seconds=0)  # --force
    new = eventually(
        lambda: (
            (p := core.read_namespaced_pod("web-0", "default")).metadata.uid != old.metadata.uid
            and p.spec.node_name not in ("", None, NODE)
            and p
        ),
        message="the StatefulSet's successor scheduled elsewhere",
    )
    eventually(
        lambda: waiting_reason(core.read_namespaced_pod("web-0", "default")) == "ContainerCreating",
        message="the successor in ContainerCreating",
    )
    assert attach_events(core, "web-0") == [f'Multi-Attach error for volume "{PV}" {EXCLUSIVE}']
    assert set(attachments(api)) == {NODE}  # maxWaitForUnmountDuration not yet over

    eventually(
        lambda: set(attachments(api)) == {new.spec.node_name},
        timeout=TIMINGS.kube_seconds(360) + 5,
        message="the force detach from the dead node, then the attach to the new one",
    )
    running = eventually(
        lambda: (p := core.read_namespaced_pod("web-0", "default")).status.phase == "Running" and p,
        message="the successor running",
    )
    assert waiting_reason(running) == ""
    assert any(c.type == "Ready" and c.status == "True" for c in running.status.conditions)
