"""fluxtree on a small synthetic Flux tree shaped like the Dapper one (and on the real tree)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pygit2
import pytest
from dapper.backends.gitops.fluxtree import FluxTree
from dapper.backends.gitops.kustomize_build import content_hash
from dapper.backends.gitops.postbuild import substitute
from dapper.backends.gitops.treesource import GitTreeSource
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]


def edit_yaml(path: Path, change) -> None:
    y = YAML()
    docs = list(y.load_all(path.read_text()))
    change(docs)
    with path.open("w") as fh:
        y.dump_all(docs, fh)


def test_load_follows_flux_and_injects_root_patches(tree_dir: Path) -> None:
    tree = FluxTree.load(tree_dir)
    assert not tree.errors
    keys = [ks.key for ks in tree.kustomizations]
    assert keys[:3] == [
        ("flux-system", "flux-system"),
        ("flux-system", "cluster-meta"),
        ("flux-system", "cluster-apps"),
    ]
    podinfo = tree.get("default", "podinfo")  # namespace rewritten by apps/default
    assert podinfo is not None and podinfo.file.endswith("default/podinfo/ks.yaml")
    assert podinfo.line == 1 and podinfo.parent == ("flux-system", "cluster-apps")
    assert podinfo.decryption == ("sops", "sops-age")
    assert ("ConfigMap", "cluster-settings", False) in podinfo.substitute_from
    assert podinfo.components == ("kubernetes/components/gatus",)
    assert podinfo.depends_on == (("default", "echo"),)
    echo = tree.get("default", "echo")
    assert echo is not None and echo.decryption is None and echo.substitute_from == ()
    assert tree.settings["TIMEZONE"] == "Europe/Paris"
    assert tree.secret_keys == {"SECRET_DOMAIN"}
    order = [ks.name for ks in tree.dependency_order()]
    assert order.index("echo") < order.index("podinfo")
    assert order.index("cluster-apps") < order.index("echo")


def test_build_generators_substitution_and_ownership(tree_dir: Path) -> None:
    tree = FluxTree.load(tree_dir)
    podinfo = tree.get("default", "podinfo")
    objs = {(o["kind"], o["metadata"]["name"]): o for o in tree.build(podinfo)}
    values_cm = next(
        o for (k, n), o in objs.items() if k == "ConfigMap" and n.startswith("podinfo-v")
    )
    name = values_cm["metadata"]["name"]
    assert name == f"podinfo-values-{content_hash(values_cm)}"
    hr = objs[("HelmRelease", "podinfo")]
    assert hr["metadata"]["namespace"] == "default"
    assert hr["spec"]["valuesFrom"][0]["name"] == name  # name reference followed the hash
    assert hr["spec"]["values"]["replicaCount"] == 2  # re-typed like Flux re-parses
    assert hr["spec"]["values"]["tz"] == "Europe/Paris"
    assert hr["spec"]["values"]["ingress"]["host"] == "podinfo.${SECRET_DOMAIN}"  # never decrypted
    gatus = objs[("ConfigMap", "podinfo-gatus-ep")]
    assert "url: https://podinfo.${SECRET_DOMAIN}/" in gatus["data"]["config.yaml"]
    assert tree.undefined_variables(podinfo) == []
    info = tree.helm_releases
    assert {(h.namespace, h.name, h.owner[1]) for h in info} == {
        ("default", "podinfo", "podinfo"),
        ("default", "echo", "echo"),
    }
    assert tree.chart_source("OCIRepository", "default", "app-template") is not None
    owner = tree.owner_of("kubernetes/apps/default/podinfo/app/helm-values.yaml")
    assert owner is podinfo
    assert tree.owner_of("kubernetes/apps/default/podinfo/ks.yaml").name == "cluster-apps"
    assert "kubernetes/components/gatus/config.yaml" in tree.files_of(podinfo)
    sops = {s.path: s.owner for s in tree.sops_files}
    assert sops == {
        "kubernetes/components/common/cluster-secrets.sops.yaml": ("flux-system", "cluster-apps")
    }
    secrets = [
        o for o in tree.build(tree.get("flux-system", "cluster-apps")) if o["kind"] == "Secret"
    ]
    assert secrets and all("sops" in s for s in secrets)  # left encrypted for the lab
    ns = [
        o for o in tree.build(tree.get("flux-system", "cluster-apps")) if o["kind"] == "Namespace"
    ]
    assert [n["metadata"]["name"] for n in ns] == ["default"]


def test_secret_values_are_used_when_the_lab_supplies_them(tree_dir: Path) -> None:
    tree = FluxTree.load(tree_dir, secret_values=lambda ns, name: {"SECRET_DOMAIN": "lab.test"})
    hr = next(o for o in tree.build(tree.get("default", "podinfo")) if o["kind"] == "HelmRelease")
    assert hr["spec"]["values"]["ingress"]["host"] == "podinfo.lab.test"


def test_git_commit_source_reads_the_commit_not_the_worktree(tree_dir: Path) -> None:
    repo = pygit2.init_repository(str(tree_dir))
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("t", "t@example.invalid")
    repo.create_commit("HEAD", sig, sig, "tree", repo.index.write_tree(), [])
    shutil.rmtree(tree_dir / "kubernetes/apps/default/echo")  # only in the work tree
    tree = FluxTree.load(GitTreeSource(repo, "HEAD"))
    assert not tree.errors
    assert tree.get("default", "echo") is not None
    assert len(tree.kustomizations) == 5


def test_build_error_carries_file_and_line(tree_dir: Path) -> None:
    path = tree_dir / "kubernetes/apps/default/podinfo/app/helmrelease.yaml"
    path.write_text(path.read_text().replace("interval: 30m", "interval: [30m"))
    tree = FluxTree.load(tree_dir)
    err = tree.errors[("default", "podinfo")]
    assert err.file == "kubernetes/apps/default/podinfo/app/helmrelease.yaml"
    assert err.line >= 5 and "malformed YAML" in err.reason


def test_substitution_forms() -> None:
    vals = {"A": "a", "EMPTY": ""}
    # envsubst: `=` takes the default for an empty value too, unlike bash
    assert substitute("${A}-${B:=b}-${B:-c}-${EMPTY:=d}-${EMPTY=e}", vals).text == "a-b-c-d-e"
    assert substitute("${X:=${A}}", vals).text == "a"
    assert substitute("$${A}", vals).text == "${A}"
    res = substitute("x${MISSING}y${S}", vals, keep=lambda n: n == "S")
    assert res.text == "xy${S}" and res.undefined == {"MISSING"}


def test_disabled_objects_are_not_substituted(tree_dir: Path) -> None:
    path = tree_dir / "kubernetes/apps/default/podinfo/app/helmrelease.yaml"
    path.write_text(
        path.read_text().replace(
            "  name: podinfo\n",
            "  name: podinfo\n  annotations:\n"
            "    kustomize.toolkit.fluxcd.io/substitute: disabled\n",
            1,
        )
    )
    tree = FluxTree.load(tree_dir)
    hr = next(o for o in tree.build(tree.get("default", "podinfo")) if o["kind"] == "HelmRelease")
    assert hr["spec"]["values"]["tz"] == "${TIMEZONE}"


KUBECTL = shutil.which("kubectl")


def _ids(objs) -> set[tuple[str, str, str]]:
    return {
        (o["kind"], (o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"])
        for o in objs
    }


def _kubectl_build(path: Path) -> list[dict]:
    out = subprocess.run(
        [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [d for d in YAML(typ="safe").load_all(out.stdout) if d]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_renderer_matches_kubectl_kustomize_on_synthetic_tree(tree_dir: Path) -> None:
    tree = FluxTree.load(tree_dir)
    for rel in ("kubernetes/apps/default", "kubernetes/apps/default/podinfo/app"):
        ours = [d.obj for d in tree.renderer.build(rel)]
        assert _ids(ours) == _ids(_kubectl_build(tree_dir / rel)), rel


@pytest.mark.skipif(
    KUBECTL is None or not (REPO / "kubernetes/apps").is_dir(), reason="no kubectl or no tree"
)
def test_renderer_matches_kubectl_kustomize_on_real_tree() -> None:
    tree = FluxTree.load(REPO)
    paths = sorted(
        {ks.path for ks in tree.kustomizations if tree.renderer.kustomization_file(ks.path)}
    )
    assert paths
    for rel in paths:
        ours = [d.obj for d in tree.renderer.build(rel)]
        assert _ids(ours) == _ids(_kubectl_build(REPO / rel)), rel
