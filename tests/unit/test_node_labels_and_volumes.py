"""The pure rules behind issue 19's node identity and node-replace impact: Talos's label
ownership with NodeRestriction (lab), and which Mayastor volumes a node takes with it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from dapper.actions.node_replace.terminating import TerminatingPods
from dapper.actions.node_replace.volumes import volumes_on
from dapper.actions.params import ChoiceContext
from dapper.backends.model import Node, PodRef
from dapper.lab.world.node_labels import apply_labels, forbidden_changes, talos_apply


def test_talos_takes_over_adopts_changes_only_its_own_and_removes_what_it_dropped() -> None:
    labels = {"a": "1", "b": "admin", "old": "x", "same": "v"}
    out, owned = apply_labels(labels, {"old"}, {"a": "2", "b": "talos", "new": "n", "same": "v"})
    assert out == {"a": "1", "b": "admin", "new": "n", "same": "v"}
    assert owned == {"new", "same"}  # "a" and "b" are someone else's; "old" went


def test_node_restriction_judges_added_changed_and_removed_labels() -> None:
    old = {"node-role.kubernetes.io/worker": "", "x": "1"}
    assert forbidden_changes(old, {"x": "2"}) == ["node-role.kubernetes.io/worker"]
    assert forbidden_changes({}, {"node.kubernetes.io/instance-type": "a", "k8s.io/y": ""}) == [
        "k8s.io/y"
    ]
    node = {"metadata": {"name": "w", "labels": {"x": "1"}}}
    error = talos_apply(node, {"node-restriction.kubernetes.io/a": "b", "y": "1"}, restricted=True)
    assert error == 'nodes "w" is forbidden: is not allowed to modify labels: ' + (
        "node-restriction.kubernetes.io/a"
    )
    assert node["metadata"] == {"name": "w", "labels": {"x": "1"}}  # nothing of the batch
    assert talos_apply(node, {"y": "1"}, restricted=True) == ""
    assert node["metadata"]["annotations"] == {"talos.dev/owned-labels": '["y"]'}


def _volume(uuid: str, status: str, *replicas: tuple[str, str, bool]) -> dict:
    topology = {}
    for i, (node, state, rebuilding) in enumerate(replicas):
        entry = {"node": node, "pool": f"pool-{node}", "state": state}
        if rebuilding:
            entry["rebuild-progress"] = 40
        topology[f"r{i}"] = entry
    return {"state": {"uuid": uuid, "status": status, "replica_topology": topology}}


def test_a_volume_without_a_healthy_replica_elsewhere_has_its_only_copy_here() -> None:
    volumes = [
        _volume("1", "Faulted", ("n1", "Unknown", False)),
        _volume("2", "Degraded", ("n1", "Unknown", False), ("n2", "Online", False)),
        _volume("3", "Degraded", ("n1", "Unknown", False), ("n2", "Degraded", True)),
        _volume("4", "Online", ("n2", "Online", False)),
    ]
    found = volumes_on(volumes, {"1": "a/one", "2": "a/two"}, "n1")
    assert [(v.claim, v.only_copy) for v in found] == [
        ("a/one", True),
        ("a/two", False),
        ("volume 3", True),  # a rebuild in progress is not yet a copy
    ]
    assert found[0].text() == "a/one (Faulted; pool pool-n1 replica Unknown)"


def test_the_force_delete_choices_are_the_nodes_terminating_pods_only() -> None:
    pods = (
        PodRef(
            "db",
            "pg-0",
            "w1",
            "Running",
            owner_kind="StatefulSet",
            owner_name="pg",
            terminating=True,
        ),
        PodRef("db", "api-1", "w1", "Running", owner_kind="ReplicaSet", owner_name="api"),
    )
    snapshot = SimpleNamespace(nodes=(Node(name="w1", pods=pods),))
    provider = TerminatingPods("node")
    assert provider.depends_on == ("node",)
    ctx = ChoiceContext(Path("."), values={"node": "w1"}, snapshot=snapshot)
    (choice,) = provider.choices(ctx)
    assert choice.value == "db/pg-0" and choice.detail == ("StatefulSet pg  ·  Running",)
    assert provider.choices(ChoiceContext(Path("."), values={}, snapshot=snapshot)) == []
