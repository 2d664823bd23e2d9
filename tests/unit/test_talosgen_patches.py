"""Talos's config-patch merge rules, which are not Kubernetes' strategic merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.backends.talosgen.generate import generate_configs
from dapper.backends.talosgen.talconfig import TalConfigError
from dapper.backends.talosgen.talosmerge import (
    ConfigPatch,
    MergeError,
    apply_patch,
    load_patch,
    talos_merge,
)

from tests.unit.talosgen_support import TALOS, copy_repo, identities, load_yaml


def test_lists_are_appended_and_maps_merged() -> None:
    left = {"machine": {"kernel": {"modules": [{"name": "a"}]}, "sysctls": {"x": "1"}}}
    right = {"machine": {"kernel": {"modules": [{"name": "b"}]}, "sysctls": {"y": "2"}}}
    assert talos_merge(left, right) == {
        "machine": {
            "kernel": {"modules": [{"name": "a"}, {"name": "b"}]},
            "sysctls": {"x": "1", "y": "2"},
        }
    }
    assert left["machine"]["kernel"]["modules"] == [{"name": "a"}]  # input untouched


def test_subnets_are_replaced_not_appended() -> None:
    left = {"cluster": {"network": {"podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["a"]}}}
    right = {"cluster": {"network": {"podSubnets": ["10.69.0.0/16"]}}}
    merged = talos_merge(left, right)
    assert merged["cluster"]["network"] == {"podSubnets": ["10.69.0.0/16"], "serviceSubnets": ["a"]}


def test_interfaces_merge_by_device_selector_or_name() -> None:
    left = {
        "machine": {
            "network": {
                "interfaces": [
                    {
                        "deviceSelector": {"hardwareAddr": "bc:24:11:00:00:01"},
                        "mtu": 1500,
                        "addresses": ["10.0.0.1/24"],
                    },
                    {"interface": "eth1", "dhcp": True},
                ]
            }
        }
    }
    right = {
        "machine": {
            "network": {
                "interfaces": [
                    {
                        "deviceSelector": {"hardwareAddr": "bc:24:11:00:00:01"},
                        "mtu": 9000,
                        "addresses": ["10.0.0.2/24"],
                    },
                    {"interface": "eth1", "dhcp": False},
                    {"interface": "eth2", "dhcp": True},
                ]
            }
        }
    }
    interfaces = talos_merge(left, right)["machine"]["network"]["interfaces"]
    assert interfaces == [
        {
            "deviceSelector": {"hardwareAddr": "bc:24:11:00:00:01"},
            "mtu": 9000,
            "addresses": ["10.0.0.1/24", "10.0.0.2/24"],
        },
        {"interface": "eth1", "dhcp": False},
        {"interface": "eth2", "dhcp": True},
    ]


def test_admission_plugins_merge_by_name_and_their_lists_append() -> None:
    left = {
        "cluster": {
            "apiServer": {
                "admissionControl": [
                    {
                        "name": "PodSecurity",
                        "configuration": {"exemptions": {"namespaces": ["kube-system"]}},
                    }
                ]
            }
        }
    }
    right = {
        "cluster": {
            "apiServer": {
                "admissionControl": [
                    {
                        "name": "PodSecurity",
                        "configuration": {"exemptions": {"namespaces": ["storage"]}},
                    }
                ]
            }
        }
    }
    plugins = talos_merge(left, right)["cluster"]["apiServer"]["admissionControl"]
    assert plugins == [
        {
            "name": "PodSecurity",
            "configuration": {"exemptions": {"namespaces": ["kube-system", "storage"]}},
        }
    ]


def test_zero_values_do_not_overwrite_but_false_does() -> None:
    left = {"machine": {"install": {"disk": "/dev/vda", "wipe": True}, "kubelet": {"n": 5}}}
    right = {"machine": {"install": {"disk": "", "wipe": False}, "kubelet": {"n": 0}}}
    assert talos_merge(left, right) == {
        "machine": {"install": {"disk": "/dev/vda", "wipe": False}, "kubelet": {"n": 5}}
    }


def test_patch_delete_removes_a_section() -> None:
    left = {"cluster": {"proxy": {"image": "x"}, "coreDNS": {"disabled": False}}}
    right = {"cluster": {"proxy": {"$patch": "delete"}}}
    assert talos_merge(left, right) == {"cluster": {"coreDNS": {"disabled": False}}}


def test_a_shape_mismatch_names_the_path_and_the_patch() -> None:
    with pytest.raises(MergeError, match=r"machine\.certSANs: a list in the config"):
        talos_merge({"machine": {"certSANs": ["a"]}}, {"machine": {"certSANs": "b"}})
    bad = ConfigPatch(source="patches/bad.yaml", documents=({"machine": {"certSANs": "b"}},))
    with pytest.raises(TalConfigError, match=r"^patches/bad\.yaml: machine\.certSANs"):
        apply_patch([{"version": "v1alpha1", "machine": {"certSANs": ["a"]}}], bad)


def test_a_yaml_op_list_is_a_json6902_patch() -> None:
    loaded = load_patch("@./patches/controller/admission-controller-patch.yaml", TALOS, {})
    assert loaded.is_json6902
    assert loaded.operations == ({"op": "remove", "path": "/cluster/apiServer/admissionControl"},)
    doc = {"version": "v1alpha1", "cluster": {"apiServer": {"admissionControl": [], "x": 1}}}
    assert apply_patch([doc], loaded) == [
        {"version": "v1alpha1", "cluster": {"apiServer": {"x": 1}}}
    ]


def test_without_the_remove_talos_would_keep_its_default_and_append_namespaces(
    tmp_path: Path,
) -> None:
    """Why admission-controller-patch.yaml exists: the generator must not hide the effect."""
    root = copy_repo(tmp_path)
    path = root / "kubernetes/bootstrap/talos/talconfig.yaml"
    text = path.read_text()
    line = '    - "@./patches/controller/admission-controller-patch.yaml"\n'
    assert line in text
    path.write_text(text.replace(line, ""))
    generated = generate_configs(root, identities(), nodes=["talos-control-1"])
    config = load_yaml(generated.configs["talos-control-1"])["cluster"]["apiServer"]
    (plugin,) = config["admissionControl"]
    # the default's apiVersion is kept (the patch's differs, a scalar: it replaces) ...
    assert plugin["configuration"]["apiVersion"] == "pod-security.admission.config.k8s.io/v1"
    # ... but the namespace list is appended to Talos's default ["kube-system"]
    assert plugin["configuration"]["exemptions"]["namespaces"][:2] == [
        "kube-system",
        "kube-system",
    ]


def test_worker_patches_inline_patches_and_override_patches(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    path = root / "kubernetes/bootstrap/talos/talconfig.yaml"
    text = path.read_text()
    first = "  - hostname: talos-control-1\n"
    assert first in text
    text = text.replace(first, first + "    overridePatches: true\n")
    text += 'worker:\n  patches:\n    - |\n      machine:\n        nodeLabels:\n          t: "w"\n'
    path.write_text(text)
    generated = generate_configs(root, identities())
    docs = {name: load_yaml(data) for name, data in generated.configs.items()}
    for name, doc in docs.items():
        labels = doc["machine"].get("nodeLabels", {})
        assert (labels.get("t") == "w") is name.startswith("talos-node-"), name
    # overridePatches drops controlPlane.patches for that node only
    assert "coreDNS" not in docs["talos-control-1"]["cluster"]
    assert docs["talos-control-2"]["cluster"]["coreDNS"] == {"disabled": True}
    # the global patches still apply to it
    assert docs["talos-control-1"]["machine"]["time"]["servers"]
