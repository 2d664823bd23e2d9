"""The lab's Kubernetes API server driven by the official `kubernetes` client over TLS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.lab.store import ObjectStore, WatchEvent
from kubernetes.client.exceptions import ApiException

from kubernetes import client, config, watch
from tests.lab.kube_lab import DRAIN_NODE, WORKER, Lab, pods_of, running_lab, writes
from tests.waiting import eventually

FLUX = ("kustomize.toolkit.fluxcd.io", "v1")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("kube-server")) as lab:
        yield lab


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A client as new_client_from_config builds it, with its CA temp file kept in tmp."""
    cfg = client.Configuration()
    config.load_kube_config(
        str(kubeconfig),
        client_configuration=cfg,
        persist_config=False,
        temp_file_path=str(kubeconfig.parent / "client-files"),
    )
    return client.ApiClient(cfg)


@pytest.fixture(scope="module")
def admin(lab: Lab) -> Iterator[client.ApiClient]:
    api = api_client(lab.admin)
    yield api
    api.close()


@pytest.fixture(scope="module")
def readonly(lab: Lab) -> Iterator[client.ApiClient]:
    api = api_client(lab.readonly)
    yield api
    api.close()


def status_of(err: ApiException) -> dict:
    return json.loads(err.body)


def test_lists_the_seven_nodes_as_models(admin: client.ApiClient) -> None:
    nodes = client.CoreV1Api(admin).list_node()
    names = [n.metadata.name for n in nodes.items]
    assert len(names) == 7
    assert "talos-node-gpu-1" in names
    gpu = next(n for n in nodes.items if n.metadata.name == "talos-node-gpu-1")
    assert gpu.status.capacity["nvidia.com/gpu"] == "16"
    assert int(nodes.metadata.resource_version) > 0


def test_discovery_names_eviction_and_custom_kinds(admin: client.ApiClient) -> None:
    core = client.CoreApi(admin).get_api_versions()
    assert core.versions == ["v1"]
    res = client.CoreV1Api(admin).get_api_resources()
    by_name = {r.name: r for r in res.resources}
    evict = by_name["pods/eviction"]
    assert (evict.group, evict.version, evict.kind) == ("policy", "v1", "Eviction")
    groups = {g.name: g for g in client.ApisApi(admin).get_api_versions().groups}
    assert groups["openebs.io"].preferred_version.version == "v1beta3"
    assert "kustomize.toolkit.fluxcd.io" in groups
    crds = client.ApiextensionsV1Api(admin).list_custom_resource_definition()
    assert "kustomizations.kustomize.toolkit.fluxcd.io" in {c.metadata.name for c in crds.items}


def test_label_selectors(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)

    def names(selector: str) -> set[str]:
        pods = core.list_pod_for_all_namespaces(label_selector=selector).items
        return {p.metadata.name for p in pods}

    cilium = names("app.kubernetes.io/name=cilium")
    assert len(cilium) == 7
    assert names("app.kubernetes.io/name==cilium") == cilium
    assert names("app.kubernetes.io/name in (cilium, spegel)") >= cilium
    assert not names("app.kubernetes.io/name in (cilium),app.kubernetes.io/name notin (cilium)")
    assert names("k8s-app") and all(n.startswith(("kube-", "coredns")) for n in names("k8s-app"))
    web = names("app.kubernetes.io/name=web")
    assert len(web) == 2
    assert not (names("!app.kubernetes.io/name") & web)
    assert not (names("app.kubernetes.io/name!=web") & web)


def test_a_page_continues_after_its_last_object_not_at_an_offset(
    admin: client.ApiClient,
) -> None:
    # An object deleted between two pages must not push another out of both, as the API
    # server's continue key (the last key served) guarantees.
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": "paging"}})
    for i in range(6):
        labels = {"page": "even" if i % 2 == 0 else "odd"}
        core.create_namespaced_config_map(
            "paging", {"metadata": {"name": f"cm-{i}", "labels": labels}}
        )
    first = core.list_namespaced_config_map("paging", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 4
    core.delete_namespaced_config_map("cm-0", "paging")
    second = core.list_namespaced_config_map("paging", limit=2, _continue=first.metadata._continue)
    assert [c.metadata.name for c in second.items] == ["cm-2", "cm-3"]
    # with a selector: pages of matching objects, the last one without a token
    seen, token = [], None
    while True:
        page = core.list_namespaced_config_map(
            "paging", label_selector="page=odd", limit=1, _continue=token
        )
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == ["cm-1", "cm-3", "cm-5"]
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_config_map("paging", limit=2, _continue="not-a-token")
    assert bad.value.status == 400


def test_field_selectors(admin: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(admin)
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={WORKER}").items
    assert on_node and all(p.spec.node_name == WORKER for p in on_node)
    assert not core.list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={WORKER},status.phase!=Running"
    ).items
    one = core.list_namespaced_pod("apps", field_selector="metadata.name=db-0").items
    assert [p.metadata.name for p in one] == ["db-0"]
    with pytest.raises(ApiException) as err:
        core.list_pod_for_all_namespaces(field_selector="spec.bogus=1")
    assert err.value.status == 400
    assert status_of(err.value)["kind"] == "Status"


def test_strategic_merge_patch_merges_maps_and_keyed_lists(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    core.patch_node(WORKER, {"metadata": {"labels": {"dapper.io/test": "a"}}})
    node = core.patch_node(WORKER, {"metadata": {"labels": {"dapper.io/test": None}}})
    assert "dapper.io/test" not in node.metadata.labels
    assert node.metadata.labels["kubernetes.io/hostname"] == WORKER  # merged, not replaced
    pod = core.patch_namespaced_pod(
        "db-0", "apps", {"spec": {"containers": [{"name": "app", "image": "lab/app:v2"}]}}
    )
    assert [(c.name, c.image) for c in pod.spec.containers] == [("app", "lab/app:v2")]
    assert pod.spec.containers[0].resources.requests["cpu"] == "50m"  # kept by merge key
    patched = core.patch_node(
        WORKER, [{"op": "add", "path": "/metadata/annotations/x", "value": "1"}]
    )
    assert patched.metadata.annotations["x"] == "1"


def test_merge_patch_on_custom_resources_and_smp_refused(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    obj = custom.patch_namespaced_custom_object(
        *FLUX, "flux-system", "kustomizations", "cluster-apps", {"spec": {"suspend": True}}
    )
    assert obj["spec"]["suspend"] is True
    assert obj["spec"]["path"] == "./kubernetes/apps"
    obj = custom.patch_namespaced_custom_object(
        *FLUX, "flux-system", "kustomizations", "cluster-apps", {"spec": {"suspend": None}}
    )
    assert "suspend" not in obj["spec"]
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            *FLUX,
            "flux-system",
            "kustomizations",
            "cluster-apps",
            {"spec": {"suspend": True}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415


def test_status_subresource_changes_only_status(admin: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(admin)
    obj = custom.patch_namespaced_custom_object_status(
        *FLUX,
        "flux-system",
        "kustomizations",
        "cluster-meta",
        {"spec": {"path": "./elsewhere"}, "status": {"lastAttemptedRevision": "x"}},
    )
    assert obj["status"]["lastAttemptedRevision"] == "x"
    assert obj["spec"]["path"] == "./kubernetes/flux/meta"


def test_an_identical_write_changes_nothing(admin: client.ApiClient, lab: Lab) -> None:
    """A patch or PUT that leaves the object as it is: same resourceVersion, no event."""
    core = client.CoreV1Api(admin)
    body = {"metadata": {"name": "same", "labels": {"a": "1"}}, "data": {"k": "v"}}
    created = core.create_namespaced_config_map("default", body)
    events: list[WatchEvent] = []
    lab.world.store.add_listener(events.append)
    try:
        rv = created.metadata.resource_version
        again = core.patch_namespaced_config_map("same", "default", {"data": {"k": "v"}})
        raw = json.loads(
            core.read_namespaced_config_map("same", "default", _preload_content=False).data
        )
        put = core.replace_namespaced_config_map("same", "default", raw)
        assert again.metadata.resource_version == rv == put.metadata.resource_version
        assert events == []
        changed = core.patch_namespaced_config_map("same", "default", {"data": {"k": "w"}})
        assert int(changed.metadata.resource_version) > int(rv)
        assert [e.type for e in events] == ["MODIFIED"]
    finally:
        lab.world.store.remove_listener(events.append)
        core.delete_namespaced_config_map("same", "default")


def test_watch_sees_a_cordon(admin: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(admin)
    rv = core.list_node().metadata.resource_version
    seen: list[tuple[str, bool]] = []
    w = watch.Watch()
    started = threading.Event()

    def follow() -> None:
        started.set()
        for ev in w.stream(core.list_node, resource_version=rv, timeout_seconds=10):
            if ev["object"].metadata.name == "talos-node-large-2":
                seen.append((ev["type"], bool(ev["object"].spec.unschedulable)))
                if ev["object"].spec.unschedulable:
                    w.stop()

    t = threading.Thread(target=follow)
    t.start()
    started.wait()
    core.patch_node("talos-node-large-2", {"spec": {"unschedulable": True}})
    t.join(timeout=15)
    core.patch_node("talos-node-large-2", {"spec": {"unschedulable": False}})
    assert ("MODIFIED", True) in seen


def test_cordon_taints_the_node_and_emits_an_event(admin: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(admin)
    core.patch_node("talos-control-3", {"spec": {"unschedulable": True}})
    w = watch.Watch()
    for ev in w.stream(
        core.list_namespaced_event,
        "default",
        field_selector="involvedObject.kind=Node,involvedObject.name=talos-control-3",
        timeout_seconds=5,
    ):
        if ev["object"].reason == "NodeNotSchedulable":
            w.stop()
    node = core.read_node("talos-control-3")
    assert any(t.key == "node.kubernetes.io/unschedulable" for t in node.spec.taints)
    core.patch_node("talos-control-3", {"spec": {"unschedulable": False}})


def test_eviction_honours_the_pdb(admin: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(admin)
    policy = client.PolicyV1Api(admin)
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name="web-7d9f8-aaaaa", namespace="apps"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("web-7d9f8-aaaaa", "apps", body)
    assert err.value.status == 429
    status = status_of(err.value)
    assert status["reason"] == "TooManyRequests"
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert core.read_namespaced_pod("web-7d9f8-aaaaa", "apps").spec.node_name == WORKER

    policy.patch_namespaced_pod_disruption_budget("web", "apps", {"spec": {"minAvailable": 1}})
    core.create_namespaced_pod_eviction("web-7d9f8-aaaaa", "apps", body)
    # Terminating until its (live) kubelet has stopped it, then gone
    evicted = core.read_namespaced_pod("web-7d9f8-aaaaa", "apps")
    assert evicted.metadata.deletion_timestamp is not None
    assert any(c.type == "DisruptionTarget" for c in evicted.status.conditions)
    eventually(lambda: len(pods_of(lab.world, "apps", "web-7d9f8-")) == 2, timeout=5)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("web-7d9f8-aaaaa", "apps")
    assert gone.value.status == 404
    web = pods_of(lab.world, "apps", "web-7d9f8-")
    assert len(web) == 2  # the ReplicaSet replaced it
    assert "web-7d9f8-aaaaa" not in {p["metadata"]["name"] for p in web}
    assert all(p["status"]["phase"] == "Running" for p in web)
    assert any(w.op == "create pods/eviction" and w.identity == "admin" for w in writes(lab.world))
    events = core.list_namespaced_event("apps", field_selector="reason=Evicted").items
    assert any(e.involved_object.name == "web-7d9f8-aaaaa" for e in events)
    policy.patch_namespaced_pod_disruption_budget("web", "apps", {"spec": {"minAvailable": 2}})


def test_readonly_token_is_refused_every_write(readonly: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(readonly)
    custom = client.CustomObjectsApi(readonly)
    node = core.read_node(WORKER)
    before = len(writes(lab.world))
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="db-0", namespace="apps"))
    attempts = {
        "patch nodes": lambda: core.patch_node(WORKER, {"spec": {"unschedulable": True}}),
        "update nodes": lambda: core.replace_node(WORKER, node),
        "patch nodes/status": lambda: core.patch_node_status(WORKER, {"status": {}}),
        "create configmaps": lambda: core.create_namespaced_config_map(
            "apps", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
        ),
        "delete pods": lambda: core.delete_namespaced_pod("db-0", "apps"),
        "create pods/eviction": lambda: core.create_namespaced_pod_eviction(
            "db-0", "apps", eviction
        ),
        "patch kustomizations": lambda: custom.patch_namespaced_custom_object(
            *FLUX, "flux-system", "kustomizations", "cluster-apps", {"spec": {"suspend": True}}
        ),
        "get secrets": lambda: core.read_namespaced_secret("cluster-secrets", "flux-system"),
        "list secrets": lambda: core.list_secret_for_all_namespaces(),
    }
    for label, call in attempts.items():
        verb, resource = label.split(" ")
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403, label
        message = status_of(err.value)["message"]
        assert f'User "dapper-lab-readonly" cannot {verb} resource "{resource}"' in message
    assert len(writes(lab.world)) == before
    assert core.read_node(WORKER).spec.unschedulable is not True


def test_bad_token_is_unauthorized(lab: Lab) -> None:
    api = api_client(lab.kubeconfig("bad.kubeconfig", "not-a-token"))
    try:
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).list_node()
    finally:
        api.close()
    assert err.value.status == 401
    assert status_of(err.value)["reason"] == "Unauthorized"


def test_watch_from_a_compacted_resource_version_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ObjectStore, "HISTORY", 20)
    with running_lab(tmp_path) as small:
        api = api_client(small.admin)
        try:
            core = client.CoreV1Api(api)
            with pytest.raises(ApiException) as err:
                for _ in watch.Watch().stream(
                    core.list_node, resource_version="2", timeout_seconds=2
                ):
                    pass
        finally:
            api.close()
    assert err.value.status == 410


def test_drained_node_pods_move_through_plain_delete(admin: client.ApiClient, lab: Lab) -> None:
    core = client.CoreV1Api(admin)
    core.delete_namespaced_pod("api-5c6b-ccccc", "apps")
    # the kubelet confirms a moment later; the ReplicaSet's new pod is already elsewhere
    moved = eventually(lambda: len(p := pods_of(lab.world, "apps", "api-5c6b-")) == 1 and p)
    assert len(moved) == 1 and moved[0]["spec"]["nodeName"] not in ("", DRAIN_NODE)


def test_stop_ends_watches_threads_and_port(tmp_path: Path) -> None:
    import socket

    before = set(threading.enumerate())
    with running_lab(tmp_path) as small:
        port = small.server.port
        api = api_client(small.admin)
        core = client.CoreV1Api(api)
        opened = threading.Event()
        done = threading.Event()

        def follow() -> None:
            try:
                for _ in watch.Watch().stream(core.list_node, timeout_seconds=60):
                    opened.set()
            except Exception:
                pass
            done.set()

        t = threading.Thread(target=follow)
        t.start()
        assert opened.wait(5)
    assert done.wait(5)  # the server's stop() cut the watch
    t.join(timeout=5)
    api.close()
    assert not [th for th in set(threading.enumerate()) - before if th.name.startswith("lab-")]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
