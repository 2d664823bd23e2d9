"""Which workloads a change touches: the lab's controllers recompute only those."""

from __future__ import annotations

from dapper.lab.kube_workloads import changed_workloads
from dapper.lab.store import ObjectStore


def _rs(name: str, deployment: str | None) -> dict:
    refs = [{"kind": "Deployment", "name": deployment, "controller": True}] if deployment else []
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "media", "ownerReferences": refs},
    }


def _pod(owner_kind: str, owner: str) -> dict:
    return {
        "metadata": {
            "name": "p",
            "namespace": "media",
            "ownerReferences": [{"kind": owner_kind, "name": owner, "controller": True}],
        }
    }


def test_a_pod_changes_its_replicaset_and_the_deployment_that_owns_it() -> None:
    store = ObjectStore()
    store.create(_rs("web-7d9f", "frontend"))
    assert changed_workloads(store, "pods", _pod("ReplicaSet", "web-7d9f")) == {
        ("ReplicaSet", "web-7d9f"),
        ("Deployment", "frontend"),
    }


def test_a_replicaset_nobody_owns_counts_for_the_deployment_it_is_named_after() -> None:
    store = ObjectStore()
    assert changed_workloads(store, "pods", _pod("ReplicaSet", "plex-5c4b")) == {
        ("ReplicaSet", "plex-5c4b"),
        ("Deployment", "plex"),
    }
    assert changed_workloads(store, "replicasets", _rs("jellyfin-88aa", None)) == {
        ("ReplicaSet", "jellyfin-88aa"),
        ("Deployment", "jellyfin"),
    }


def test_other_controllers_are_themselves_and_a_bare_pod_is_nothing() -> None:
    store = ObjectStore()
    assert changed_workloads(store, "pods", _pod("StatefulSet", "db")) == {("StatefulSet", "db")}
    assert changed_workloads(store, "daemonsets", {"metadata": {"name": "cilium"}}) == {
        ("DaemonSet", "cilium")
    }
    assert changed_workloads(store, "pods", {"metadata": {"name": "bare"}}) == set()
