"""The live spec is what gets built (issue 17, point 15), on the small Dapper-shaped tree:
the spec fields kustomize-controller's generator writes into the build (namePrefix,
nameSuffix, images, components, commonMetadata), a Kustomization created by hand, and a
source that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapper.lab.flux_source import rename_and_retag
from dapper.lab.flux_twin import KS_RT
from dapper.lab.kinds import by_kind

from tests.lab.test_flux_twin_tree import Lab, ready, started_lab

CM_RT = by_kind("", "ConfigMap")
REV_PREFIX = "main@sha1:"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with started_lab(tmp_path) as made:
        yield made


def edit_spec(lab: Lab, ns: str, name: str, **fields: Any) -> dict[str, Any]:
    """What `kubectl patch --type merge` leaves (None deletes), then the pass after it."""

    def edit(o: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                o["spec"].pop(key, None)
            else:
                o["spec"][key] = value

    lab.world.store.mutate(KS_RT, ns, name, edit)
    lab.twin.reconcile_now()
    return lab.ks(ns, name)


def test_name_prefix_suffix_and_common_metadata_come_from_the_live_spec(lab: Lab) -> None:
    ks = edit_spec(
        lab,
        "media",
        "extra",
        namePrefix="p-",
        nameSuffix="-s",
        commonMetadata={"labels": {"tier": "live"}},
    )
    assert ready(ks)["status"] == "True", ready(ks)
    assert ks["status"]["observedGeneration"] == ks["metadata"]["generation"]
    renamed = lab.world.store.get(CM_RT, "media", "p-extra-settings-s")
    assert renamed["metadata"]["labels"]["tier"] == "live"
    assert lab.world.store.find(CM_RT, "media", "extra-settings") is None  # pruned
    ks = edit_spec(lab, "media", "extra", namePrefix=None, nameSuffix=None, commonMetadata=None)
    assert ready(ks)["status"] == "True"
    assert lab.world.store.find(CM_RT, "media", "extra-settings") is not None
    assert lab.world.store.find(CM_RT, "media", "p-extra-settings-s") is None


def test_images_retag_containers_as_kustomize_does() -> None:
    objs: list[dict[str, Any]] = [
        {
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "template": {
                    "spec": {
                        "initContainers": [{"name": "i", "image": "busybox"}],
                        "containers": [
                            {"name": "a", "image": "ghcr.io/x/web:1.0"},
                            {"name": "b", "image": "localhost:5000/tool@sha256:aaa"},
                            {"name": "c", "image": "other:2"},
                        ],
                    }
                }
            },
        },
        {"kind": "Namespace", "metadata": {"name": "media"}},
    ]
    spec = {
        "namePrefix": "p-",
        "images": [
            {"name": "ghcr.io/x/web", "newTag": "2.0"},
            {"name": "localhost:5000/tool", "newName": "registry/tool", "digest": "sha256:bbb"},
            {"name": "busybox", "newName": "docker.io/library/busybox"},
        ],
    }
    rename_and_retag(objs, spec)
    pod = objs[0]["spec"]["template"]["spec"]
    assert [c["image"] for c in pod["containers"]] == [
        "ghcr.io/x/web:2.0",
        "registry/tool@sha256:bbb",
        "other:2",
    ]
    assert pod["initContainers"][0]["image"] == "docker.io/library/busybox"
    assert objs[0]["metadata"]["name"] == "p-web"
    assert objs[1]["metadata"]["name"] == "media"  # kustomize never prefixes a Namespace


def test_a_kustomization_made_by_hand_builds_its_path(lab: Lab) -> None:
    """Not declared anywhere in Git: kustomize-controller builds it all the same."""
    lab.world.store.upsert(
        {
            "apiVersion": KS_RT.api_version,
            "kind": "Kustomization",
            "metadata": {"namespace": "flux-system", "name": "by-hand"},
            "spec": {
                "interval": "10m",
                "path": "./kubernetes/apps/media/extra/app",
                "prune": True,
                "targetNamespace": "kube-system",
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        },
        rt=KS_RT,
    )
    lab.twin.reconcile_now()
    ks = lab.ks("flux-system", "by-hand")
    assert ready(ks)["status"] == "True", ready(ks)
    assert ks["status"]["lastAppliedRevision"].startswith(REV_PREFIX)
    assert lab.world.store.find(CM_RT, "kube-system", "extra-settings") is not None


def test_a_source_that_does_not_exist_is_an_artifact_failure(lab: Lab) -> None:
    before = lab.ks("media", "extra")
    ks = edit_spec(lab, "media", "extra", sourceRef={"kind": "GitRepository", "name": "gone"})
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "ArtifactFailed")
    assert cond["message"] == (
        "unable to get source 'media/gone': "
        'gitrepositories.source.toolkit.fluxcd.io "gone" not found'
    )
    assert ks["status"]["lastAttemptedRevision"] == before["status"]["lastAttemptedRevision"]
    assert ks["status"]["observedGeneration"] == before["metadata"]["generation"]


def test_a_missing_live_component_fails_the_build(lab: Lab) -> None:
    ks = edit_spec(lab, "media", "extra", components=["../nowhere"])
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert "nowhere" in cond["message"]
    ks = edit_spec(lab, "media", "extra", ignoreMissingComponents=True)
    assert ready(ks)["status"] == "True", ready(ks)
