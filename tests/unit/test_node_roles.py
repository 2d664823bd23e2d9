"""Node roles come from node-role.kubernetes.io/* (kubectl, admins) and node-role.home.arpa/*
(what Talos may set under NodeRestriction): a storage or GPU node is found either way."""

from __future__ import annotations

from dapper.backends.clients.kube_parse import node


def _node(labels: dict[str, str]) -> dict:
    return {"metadata": {"name": "n", "labels": labels}, "status": {}}


def test_roles_from_the_tree_labels() -> None:
    n = node(_node({"node-role.home.arpa/gpu": "p100", "node-role.home.arpa/storage": "ssd"}))
    assert n.roles == ("gpu", "storage") and n.role == "gpu"


def test_roles_from_kubectl_labels_and_both_merge() -> None:
    n = node(
        _node(
            {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.home.arpa/storage": "ssd",
                "node-role.kubernetes.io/storage": "",
                "kubernetes.io/role": "worker",
            }
        )
    )
    assert n.roles == ("control-plane", "storage", "worker") and n.is_control_plane


def test_other_labels_are_not_roles() -> None:
    n = node(_node({"openebs.io/engine": "mayastor", "node.kubernetes.io/instance-type": "x"}))
    assert n.roles == () and n.role == "wrk"
