"""Mayastor volumes and replicas in the lab, through the kubernetes client (issue 19, 4).

Claims on the Mayastor StorageClass get a PersistentVolume of the io.openebs.csi-mayastor
driver and a volume with replicas on DiskPools, read as `kubectl mayastor` reads them:
Mayastor's REST API behind the API server's service proxy. A stopped VM (through the
Proxmox API) takes its pool to Unknown at once, makes a single-replica volume there
Faulted and a two-replica one Degraded until its rebuild elsewhere completes; a pool that
holds replicas cannot be deleted; a pool on a fresh disk holds nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.model import ClusterSnapshot
from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.world import Timings
from dapper.tui.detail_builders import pool_detail
from rich.console import Console

from kubernetes import client, config
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
NS = "openebs-system"
PROXY = "http:openebs-api-rest:http"
DRIVER = "io.openebs.csi-mayastor"
TIMINGS = Timings(boot=0.05, task=0.05, shutdown=0.02, reconcile_interval=30, rebuild=3.0)


@pytest.fixture(scope="module")
def lab() -> Iterator[RunningLab]:
    running = start_lab(repo=REPO, timings=TIMINGS)
    try:
        assert running.flux.settle(timeout=90), running.flux.unsettled()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api(lab: RunningLab) -> client.ApiClient:
    return config.new_client_from_config(lab.config.kubeconfig, context=lab.config.kube_context)


def rest(api: client.ApiClient, path: str) -> Any:
    """GET a Mayastor REST path through the service proxy (as kubectl-mayastor does)."""
    core = client.CoreV1Api(api)
    raw = core.connect_get_namespaced_service_proxy_with_path(
        PROXY, NS, path, _preload_content=False
    )
    return json.loads(raw.data)


def pools(api: client.ApiClient) -> dict[str, dict]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "openebs.io", "v1beta3", NS, "diskpools"
    )["items"]
    return {p["metadata"]["name"]: p for p in items}


def claim(api: client.ApiClient, name: str, size: str = "2Gi", sc: str | None = None) -> None:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if sc:
        spec["storageClassName"] = sc
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}}
    client.CoreV1Api(api).create_namespaced_persistent_volume_claim(
        "default", {**body, "spec": spec}
    )


def bound(api: client.ApiClient, name: str) -> client.V1PersistentVolumeClaim | None:
    pvc = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, "default")
    return pvc if pvc.status.phase == "Bound" else None


def volume(api: client.ApiClient, name: str) -> dict:
    pvc = eventually(lambda: bound(api, name), message=f"{name} to be Bound")
    uuid = pvc.spec.volume_name.removeprefix("pvc-")
    return rest(api, f"v0/volumes/{uuid}")


def test_tree_claims_have_volumes_and_pools_count_their_replicas(
    lab: RunningLab, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    mayastor_pvs = [
        pv for pv in core.list_persistent_volume().items if pv.spec.csi.driver == DRIVER
    ]
    claims = {(pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) for pv in mayastor_pvs}
    assert len(claims) >= 5, "the volsync component's claims are provisioned"
    for ns, name in claims:
        pvc = core.read_namespaced_persistent_volume_claim(name, ns)
        assert pvc.status.phase == "Bound" and pvc.spec.volume_name.startswith("pvc-")
    entries = rest(api, "v0/volumes")["entries"]
    assert {e["state"]["uuid"] for e in entries} >= {
        pv.spec.csi.volume_handle for pv in mayastor_pvs
    }
    assert all(e["state"]["status"] == "Online" for e in entries)
    assert all(e["spec"]["num_replicas"] == 1 for e in entries)  # repl: "1" in the class
    used: dict[str, int] = {}
    for e in entries:
        for replica in e["state"]["replica_topology"].values():
            used[replica["pool"]] = used.get(replica["pool"], 0) + replica["usage"]["allocated"]
    for name, pool in pools(api).items():
        assert pool["status"]["used"] == used.get(name, 0)
        assert pool["status"]["available"] == pool["status"]["capacity"] - pool["status"]["used"]
    by_rest = {p["id"]: p for p in rest(api, "v0/pools")}
    assert set(by_rest) == set(pools(api))
    assert all(p["state"]["status"] == "Online" for p in by_rest.values())


def test_a_claim_gets_a_volume_and_its_deletion_frees_it(
    lab: RunningLab, api: client.ApiClient
) -> None:
    claim(api, "scratch", "3Gi")
    vol = volume(api, "scratch")
    assert vol["spec"]["size"] == 3 * 1024**3 and vol["state"]["status"] == "Online"
    (replica,) = vol["state"]["replica_topology"].values()
    pool = pools(api)[replica["pool"]]
    assert pool["spec"]["node"] == replica["node"]
    pv = client.CoreV1Api(api).read_persistent_volume(f"pvc-{vol['spec']['uuid']}")
    assert (pv.spec.csi.driver, pv.spec.claim_ref.name, pv.status.phase) == (
        DRIVER,
        "scratch",
        "Bound",
    )
    used = pool["status"]["used"]
    client.CoreV1Api(api).delete_namespaced_persistent_volume_claim("scratch", "default")

    def freed() -> bool:
        return pools(api)[replica["pool"]]["status"]["used"] == used - replica["usage"]["allocated"]

    eventually(freed, message="the replica's space to be freed")
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(api).read_persistent_volume(f"pvc-{vol['spec']['uuid']}")
    assert err.value.status == 404  # reclaimPolicy Delete
    with pytest.raises(client.ApiException) as err:
        rest(api, f"v0/volumes/{vol['spec']['uuid']}")
    assert err.value.status == 404 and json.loads(err.value.body)["kind"] == "NotFound"


DEFAULT_CLASS = "mayastor-single-replica"  # the tree's default StorageClass


def mark_default(api: client.ApiClient, value: str) -> None:
    """Make the tree's class the default ("true") or not ("false")."""
    annotations = {"storageclass.kubernetes.io/is-default-class": value}
    client.StorageV1Api(api).patch_storage_class(
        DEFAULT_CLASS, {"metadata": {"annotations": annotations}}
    )


def test_a_claim_made_before_the_default_class_gets_it_when_it_appears(
    lab: RunningLab, api: client.ApiClient
) -> None:
    """Kubernetes >= 1.28 assigns a default class that appears later to the claims that
    named none (retroactive default StorageClass assignment): a claim created while Flux
    has not yet applied the class is provisioned once it has."""
    mark_default(api, "false")
    try:
        claim(api, "before-default")
        pvc = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(
            "before-default", "default"
        )
        assert pvc.spec.storage_class_name is None and pvc.status.phase == "Pending"
        mark_default(api, "true")
        pvc = eventually(lambda: bound(api, "before-default"), message="the claim to bind")
        assert pvc.spec.storage_class_name == DEFAULT_CLASS
    finally:
        mark_default(api, "true")
        client.CoreV1Api(api).delete_namespaced_persistent_volume_claim("before-default", "default")


def test_a_default_that_appears_before_the_provisioner_looks_is_still_written_first(
    lab: RunningLab, api: client.ApiClient
) -> None:
    # The class became default between the claim's creation and the provisioner's first
    # look at it: the claim must get the class written (as the PV controller does), not
    # be provisioned from the default while still naming none.
    mark_default(api, "false")
    hold = threading.Event()
    lab.world.mayastor._work.put(lambda: hold.wait(10))  # the provisioner is busy
    try:
        claim(api, "default-came-first")
        mark_default(api, "true")
        hold.set()
        pvc = eventually(lambda: bound(api, "default-came-first"), message="the claim to bind")
        assert pvc.spec.storage_class_name == DEFAULT_CLASS
    finally:
        hold.set()
        mark_default(api, "true")
        client.CoreV1Api(api).delete_namespaced_persistent_volume_claim(
            "default-came-first", "default"
        )


def test_the_read_only_identity_cannot_reach_the_service_proxy(lab: RunningLab) -> None:
    reader = config.new_client_from_config(lab.config.kubeconfig, context="lab-readonly")
    with pytest.raises(client.ApiException) as err:
        rest(reader, "v0/volumes")
    assert err.value.status == 403 and "services/proxy" in err.value.body


def test_a_read_only_console_logs_the_unreadable_volumes_once(lab: RunningLab, caplog) -> None:
    readonly = dataclasses.replace(lab.config, kube_context="lab-readonly", read_only=True)

    async def three_refreshes() -> list[ClusterSnapshot]:
        collector = Collector(readonly, timeout=10)
        try:
            return [await collector.refresh("mayastor") for _ in range(3)]
        finally:
            await collector.close()

    with caplog.at_level("INFO", logger="dapper.backends.snapshot.mayastor_source"):
        snaps = asyncio.run(three_refreshes())
    assert all(s.source("mayastor").health.value == "ok" for s in snaps)  # pools still shown
    said = [r.getMessage() for r in caplog.records if "not readable" in r.getMessage()]
    assert len(said) == 1 and "services/proxy" in said[0]


def test_a_dead_node_degrades_and_faults_volumes_and_a_pool_in_use_stays(
    lab: RunningLab, api: client.ApiClient
) -> None:
    storage = client.StorageV1Api(api)
    storage.create_storage_class(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "mayastor-two-replicas"},
            "provisioner": DRIVER,
            "parameters": {"repl": "2", "protocol": "nvmf", "thin": "true"},
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
    )
    claim(api, "single", "1Gi")
    claim(api, "double", "1Gi", sc="mayastor-two-replicas")
    single, double = volume(api, "single"), volume(api, "double")
    assert double["spec"]["num_replicas"] == 2
    double_nodes = {r["node"] for r in double["state"]["replica_topology"].values()}
    assert len(double_nodes) == 2, "replicas of one volume go to different nodes"
    (victim,) = {r["node"] for r in single["state"]["replica_topology"].values()}
    if victim not in double_nodes:  # kill a node holding both volumes' replicas if any
        pytest.skip("placement put the two volumes apart")  # pragma: no cover
    dead_pool = next(r["pool"] for r in single["state"]["replica_topology"].values())

    pve = ProxmoxBackend.from_config(lab.config.proxmox)
    try:
        vmid = next(v.vmid for v in pve.vms() if v.name == victim)
        pve.wait_task(pve.stop(vmid), timeout=10)
        # the io-engine went with the machine: Unknown now, not when the Node goes
        assert pools(api)[dead_pool]["status"]["pool_status"] == "Unknown"
        assert client.CoreV1Api(api).read_node(victim) is not None
        uuid_single, uuid_double = single["spec"]["uuid"], double["spec"]["uuid"]
        assert rest(api, f"v0/volumes/{uuid_single}")["state"]["status"] == "Faulted"
        vol = rest(api, f"v0/volumes/{uuid_double}")
        states = {r["node"]: r["state"] for r in vol["state"]["replica_topology"].values()}
        assert states[victim] == "Unknown"

        # the two-replica volume rebuilds onto a third node's pool, visibly
        def rebuilding() -> dict | None:
            v = rest(api, f"v0/volumes/{uuid_double}")
            fresh = [
                r for r in v["state"]["replica_topology"].values() if r["node"] not in double_nodes
            ]
            return v if fresh and "rebuild-progress" in fresh[0] else None

        vol = eventually(rebuilding, message="a rebuild to start")
        assert vol["state"]["status"] == "Degraded"
        vol = eventually(
            lambda: (
                (v := rest(api, f"v0/volumes/{uuid_double}"))["state"]["status"] == "Online" and v
            ),
            message="the rebuild to complete",
        )
        assert victim not in {r["node"] for r in vol["state"]["replica_topology"].values()}
        assert rest(api, f"v0/volumes/{uuid_single}")["state"]["status"] == "Faulted"

        # a pool holding a replica stays (Terminating) when deleted
        custom = client.CustomObjectsApi(api)
        custom.delete_namespaced_custom_object("openebs.io", "v1beta3", NS, "diskpools", dead_pool)
        held = pools(api)[dead_pool]
        assert held["metadata"]["deletionTimestamp"]
        assert "openebs.io/diskpool-protection" in held["metadata"]["finalizers"]
        assert held["status"]["cr_state"] == "Terminating"

        # its VM back, the single replica is Online again; once the claim is gone the
        # Terminating pool is empty and goes
        pve.wait_task(pve.start(vmid), timeout=10)
        eventually(
            lambda: rest(api, f"v0/volumes/{uuid_single}")["state"]["status"] == "Online",
            message="the single-replica volume to come back",
        )
        core = client.CoreV1Api(api)
        holders = [
            (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name)
            for pv in core.list_persistent_volume().items
            if any(
                r["pool"] == dead_pool
                for r in rest(api, f"v0/volumes/{pv.spec.csi.volume_handle}")["state"][
                    "replica_topology"
                ].values()
            )
        ]
        assert ("default", "single") in holders
        for ns, name in holders:
            assert dead_pool in pools(api), "held while any replica is on it"
            core.delete_namespaced_persistent_volume_claim(name, ns)
        eventually(lambda: dead_pool not in pools(api), message="the emptied pool to go")
    finally:
        pve.close()


def test_a_pool_on_a_fresh_disk_starts_empty(lab: RunningLab, api: client.ApiClient) -> None:
    """The same pool name on another disk holds none of the replicas its old disk held."""
    claim(api, "kept", "1Gi")
    vol = volume(api, "kept")
    (replica,) = vol["state"]["replica_topology"].values()
    pool = pools(api)[replica["pool"]]
    assert lab.world.mayastor.usage(pool)[0] > 0
    fresh = {**pool, "spec": {**pool["spec"], "disks": ["/dev/disk/by-id/wwn-0x5002538000000001"]}}
    assert lab.world.mayastor.usage(fresh) == (0, 0)


def snap(config) -> ClusterSnapshot:
    async def go() -> ClusterSnapshot:
        collector = Collector(config, timeout=3.0)
        try:
            return await collector.refresh_all()
        finally:
            await collector.close()

    return asyncio.run(go())


def test_the_console_names_the_claims_a_dead_node_took(
    lab: RunningLab, api: client.ApiClient
) -> None:
    """The collector's Mayastor source: a Faulted volume is an error of its pool, shown in
    the Pools pane's detail with the claim's name."""
    claim(api, "lonely", "1Gi")
    vol = volume(api, "lonely")
    (replica,) = vol["state"]["replica_topology"].values()
    s = snap(lab.config)
    assert s.source("mayastor").ok
    assert not [f for f in s.faults if "default/lonely" in f.message]

    pve = ProxmoxBackend.from_config(lab.config.proxmox)
    try:
        vmid = next(v.vmid for v in pve.vms() if v.name == replica["node"])
        pve.wait_task(pve.stop(vmid), timeout=10)
        s = snap(lab.config)
        fault = next(f for f in s.faults if "default/lonely" in f.message)
        assert (fault.severity, fault.pane, fault.subject) == ("error", "pools", replica["pool"])
        assert "Faulted" in fault.message
        pool = next(p for p in s.pools if p.name == replica["pool"])
        console = Console(width=160, record=True)
        console.print(pool_detail(pool, s, s.taken_at))
        assert "default/lonely Faulted" in console.export_text()

        # the read-only identity may not use the proxy: no volume faults, source fine
        reader = dataclasses.replace(lab.config, kube_context="lab-readonly", read_only=True)
        r = snap(reader)
        assert r.source("mayastor").ok
        assert not [f for f in r.faults if "default/lonely" in f.message]
    finally:
        pve.wait_task(pve.start(vmid), timeout=10)
        pve.close()
