"""fluxtree on a small synthetic Flux tree shaped like the Dapper one (and on the real tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pygit2
import pyrage
import pytest
from dapper.backends.gitops.fluxtree import FluxTree
from dapper.backends.gitops.kustomize_build import content_hash
from dapper.backends.gitops.postbuild import substitute
from dapper.backends.gitops.treesource import GitTreeSource
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
SOPS = Path(sys.executable).parent / "sops"

FILES = {
    ".sops.yaml": """\
        creation_rules:
          - path_regex: kubernetes/.*\\.sops\\.ya?ml
            encrypted_regex: ^(data|stringData)$
            mac_only_encrypted: true
            key_groups:
              - age:
                  - {recipient}
        """,
    "kubernetes/flux/cluster/ks.yaml": """\
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: cluster-meta
          namespace: flux-system
        spec:
          interval: 1h
          path: ./kubernetes/flux/meta
          prune: true
          sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
          targetNamespace: flux-system
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: cluster-apps
          namespace: flux-system
        spec:
          interval: 30m
          path: ./kubernetes/apps
          prune: true
          dependsOn:
            - name: cluster-meta
          sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
          decryption: {provider: sops, secretRef: {name: sops-age}}
          postBuild:
            substituteFrom:
              - {kind: ConfigMap, name: cluster-settings}
              - {kind: Secret, name: cluster-secrets}
          patches:
            - patch: |-
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: not-used
                spec:
                  decryption: {provider: sops, secretRef: {name: sops-age}}
                  postBuild:
                    substituteFrom:
                      - {kind: ConfigMap, name: cluster-settings}
                      - {kind: Secret, name: cluster-secrets}
              target:
                group: kustomize.toolkit.fluxcd.io
                kind: Kustomization
                labelSelector: substitution.flux.home.arpa/disabled notin (true)
        """,
    "kubernetes/flux/meta/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - ./podinfo.yaml
        """,
    "kubernetes/flux/meta/podinfo.yaml": """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: HelmRepository
        metadata:
          name: podinfo
          namespace: flux-system
        spec:
          interval: 1h
          url: https://stefanprodan.github.io/podinfo
        """,
    "kubernetes/components/common/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        resources:
          - ./namespace.yaml
          - ./cluster-settings.yaml
          - ./cluster-secrets.sops.yaml
          - ./app-template.yaml
        """,
    "kubernetes/components/common/namespace.yaml": """\
        apiVersion: v1
        kind: Namespace
        metadata:
          name: not-used
          annotations:
            kustomize.toolkit.fluxcd.io/prune: disabled
        """,
    "kubernetes/components/common/cluster-settings.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: cluster-settings
          namespace: flux-system
        data:
          TIMEZONE: Europe/Paris
          REPLICAS: "2"
        """,
    "kubernetes/components/common/cluster-secrets.sops.yaml": """\
        apiVersion: v1
        kind: Secret
        metadata:
          name: cluster-secrets
          namespace: flux-system
        stringData:
          SECRET_DOMAIN: example.org
        """,
    "kubernetes/components/common/app-template.yaml": """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: OCIRepository
        metadata:
          name: app-template
        spec:
          interval: 5m
          url: oci://ghcr.io/bjw-s-labs/helm/app-template
          ref: {tag: 4.3.0}
        """,
    "kubernetes/components/gatus/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        configMapGenerator:
          - name: ${APP}-gatus-ep
            options: {disableNameSuffixHash: true, labels: {gatus.io/enabled: "true"}}
            files:
              - config.yaml=./config.yaml
        """,
    "kubernetes/components/gatus/config.yaml": """\
        endpoints:
          - name: ${APP}
            url: https://${GATUS_SUBDOMAIN:=${APP}}.${SECRET_DOMAIN}/
        """,
    "kubernetes/apps/default/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: default
        components:
          - ../../components/common
        resources:
          - ./podinfo/ks.yaml
          - ./echo/ks.yaml
        """,
    "kubernetes/apps/default/podinfo/ks.yaml": """\
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: &app podinfo
          namespace: flux-system
          labels:
            app.kubernetes.io/name: *app
        spec:
          targetNamespace: default
          path: ./kubernetes/apps/default/podinfo/app
          components:
            - ../../../../components/gatus
          prune: true
          wait: false
          interval: 30m
          timeout: 5m
          dependsOn:
            - name: echo
              namespace: default
          sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
          postBuild:
            substitute:
              APP: *app
        """,
    "kubernetes/apps/default/podinfo/app/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - ./helmrelease.yaml
        configMapGenerator:
          - name: podinfo-values
            files:
              - values.yaml=./helm-values.yaml
        configurations:
          - ./kustomizeconfig.yaml
        """,
    "kubernetes/apps/default/podinfo/app/kustomizeconfig.yaml": """\
        nameReference:
          - kind: ConfigMap
            version: v1
            fieldSpecs:
              - path: spec/valuesFrom/name
                kind: HelmRelease
        """,
    "kubernetes/apps/default/podinfo/app/helm-values.yaml": """\
        replicaCount: 1
        """,
    "kubernetes/apps/default/podinfo/app/helmrelease.yaml": """\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: podinfo
        spec:
          interval: 30m
          chart:
            spec:
              chart: podinfo
              version: 6.5.4
              sourceRef:
                kind: HelmRepository
                name: podinfo
                namespace: flux-system
          valuesFrom:
            - kind: ConfigMap
              name: podinfo-values
          values:
            replicaCount: ${REPLICAS}
            tz: ${TIMEZONE}
            ingress:
              host: podinfo.${SECRET_DOMAIN}
        """,
    "kubernetes/apps/default/echo/ks.yaml": """\
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: echo
          namespace: flux-system
          labels:
            substitution.flux.home.arpa/disabled: "true"
        spec:
          targetNamespace: default
          path: ./kubernetes/apps/default/echo/app
          prune: true
          interval: 30m
          sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
        """,
    "kubernetes/apps/default/echo/app/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - ./helmrelease.yaml
        """,
    "kubernetes/apps/default/echo/app/helmrelease.yaml": """\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata:
          name: echo
        spec:
          interval: 30m
          chartRef:
            kind: OCIRepository
            name: app-template
          values:
            controllers:
              echo:
                containers:
                  app:
                    image: {repository: ghcr.io/mendhak/http-https-echo, tag: "37"}
        """,
}


def write_tree(root: Path, recipient: str) -> None:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("{recipient}", recipient))
    subprocess.run(
        [
            str(SOPS),
            "--encrypt",
            "--in-place",
            "kubernetes/components/common/cluster-secrets.sops.yaml",
        ],
        cwd=root,
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SOPS_")},
    )


@pytest.fixture(scope="session")
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux-base")
    write_tree(root, str(pyrage.x25519.Identity.generate().to_public()))
    return root


@pytest.fixture
def tree_dir(base_tree: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic tree that a test may break."""
    dest = tmp_path / "repo"
    shutil.copytree(base_tree, dest)
    return dest


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
    assert substitute("${A}-${B:=b}-${B:-c}-${EMPTY:=d}-${EMPTY=e}", vals).text == "a-b-c-d-"
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
