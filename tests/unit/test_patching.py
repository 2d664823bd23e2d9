"""The one patch engine: JSON merge patch, strategic merge with merge keys, JSON patch."""

from __future__ import annotations

import copy

import pytest
from dapper.backends.patching import PatchError, json_patch, merge_patch, strategic_merge

DEPLOY = {
    "metadata": {"name": "web", "finalizers": ["a"], "labels": {"app": "web", "tier": "x"}},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "name": "http"}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "args": ["--one"],
                    },
                    {"name": "sidecar", "image": "side:1"},
                ],
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
            }
        }
    },
}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": None}}
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {}}
    assert target == before  # inputs are never modified
    assert merge_patch({"a": 1}, ["x"]) == ["x"]
    assert merge_patch("scalar", {"a": 1}) == {"a": 1}


def test_strategic_merge_merges_keyed_lists_item_by_item() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:2",
                            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "volumeMounts": [{"name": "other", "mountPath": "/data"}],
                            "args": ["--two"],
                        }
                    ]
                }
            }
        }
    }
    out = strategic_merge(DEPLOY, patch)
    app, sidecar = containers(out)
    assert sidecar == {"name": "sidecar", "image": "side:1"}  # untouched, not replaced
    assert app["image"] == "app:2"
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert app["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert app["volumeMounts"] == [{"name": "other", "mountPath": "/data"}]  # by mountPath
    assert app["args"] == ["--two"]  # no merge strategy: replaced
    assert containers(DEPLOY)[0]["image"] == "app:1"


def test_strategic_merge_replaces_lists_without_a_merge_key() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "new"}]}}}}
    out = strategic_merge(DEPLOY, patch)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "new"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    out = strategic_merge(svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}})
    assert out["spec"]["ports"] == [
        {"port": 80, "name": "http"},
        {"port": 443, "name": "https", "targetPort": 8443},
    ]


def test_strategic_merge_directives() -> None:
    patch = {
        "metadata": {
            "labels": {"tier": None},
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "$setElementOrder/finalizers": [],
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar", "$patch": "delete"},
                        {"name": "app", "env": [{"name": "A", "$patch": "delete"}]},
                    ]
                }
            }
        },
    }
    out = strategic_merge(DEPLOY, patch)
    assert out["metadata"] == {"name": "web", "finalizers": [], "labels": {"app": "web"}}
    assert [c["name"] for c in containers(out)] == ["app"]
    assert containers(out)[0]["env"] == [{"name": "B", "value": "2"}]

    replaced = strategic_merge(DEPLOY, {"metadata": {"labels": {"$patch": "replace", "new": "1"}}})
    assert replaced["metadata"]["labels"] == {"new": "1"}
    whole_list = {
        "spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "x"}]}}}
    }
    assert containers(strategic_merge(DEPLOY, whole_list)) == [{"name": "x"}]
    gone = strategic_merge(DEPLOY, {"spec": {"template": {"$patch": "delete"}}})
    assert gone["spec"] == {}
    assert strategic_merge(DEPLOY, {"$patch": "delete"}) is None
    retained = strategic_merge({"a": 1, "b": 2, "c": 3}, {"$retainKeys": ["a", "c"], "c": 4})
    assert retained == {"a": 1, "c": 4}
    assert strategic_merge(DEPLOY, {"metadata": {"finalizers": ["b", "a"]}})["metadata"][
        "finalizers"
    ] == ["a", "b"]  # a list of scalars with the merge strategy: a set


def test_strategic_merge_keeps_keys_that_only_look_like_directives() -> None:
    """`${VAR}` keys are postBuild's to substitute later; kustomize keeps them."""
    patched = strategic_merge(
        DEPLOY,
        {"metadata": {"labels": {"${LABEL}": "x", "$patch": "merge"}, "$retainKeys": None}},
    )
    assert patched["metadata"]["labels"]["${LABEL}"] == "x"
    assert "$patch" not in patched["metadata"]["labels"]
    assert "$retainKeys" not in patched["metadata"]
    added = strategic_merge(DEPLOY, {"spec": {"${KEY}": {"$patch": "replace", "a": "1"}}})
    assert added["spec"]["${KEY}"] == {"a": "1"}


def test_strategic_merge_without_merge_keys_replaces_lists() -> None:
    """Custom resources: no schema names merge keys."""
    out = strategic_merge(
        DEPLOY, {"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}, {}
    )
    assert containers(out) == [{"name": "x"}]


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2, 3]}, "c": "d"}
    ops = [
        {"op": "add", "path": "/a/b/1", "value": 9},
        {"op": "add", "path": "/a/b/-", "value": 4},
        {"op": "remove", "path": "/a/b/0"},
        {"op": "replace", "path": "/c", "value": "e"},
        {"op": "copy", "from": "/c", "path": "/f"},
        {"op": "move", "from": "/f", "path": "/g~1h"},
        {"op": "test", "path": "/a/b", "value": [9, 2, 3, 4]},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [9, 2, 3, 4]}, "c": "e", "g/h": "e"}
    assert doc == {"a": {"b": [1, 2, 3]}, "c": "d"}
    assert json_patch(doc, [{"op": "replace", "path": "", "value": [1]}]) == [1]


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([{"op": "test", "path": "/c", "value": "x"}], "testing value /c failed"),
        ([{"op": "replace", "path": "/nope", "value": 1}], "missing path: nope"),
        ([{"op": "remove", "path": "/a/b/7"}], "index 7 out of range"),
        ([{"op": "add", "path": "/a/b/9", "value": 1}], "index 9 out of range"),
        ([{"op": "add", "path": "a", "value": 1}], "must start with '/'"),
        ([{"op": "frobnicate", "path": "/a"}], "unexpected kind of operation"),
        ([{"path": "/a"}], "needs 'op' and 'path'"),
        ({"op": "add"}, "must be a list"),
    ],
)
def test_json_patch_refuses_with_a_reason(ops: object, reason: str) -> None:
    with pytest.raises(PatchError, match=reason):
        json_patch({"a": {"b": [1]}, "c": "d"}, ops)
