"""A small synthetic Flux tree shaped like the Dapper one, for the tree parser and `check`.

`write_tree` writes it (with its cluster secrets encrypted by the real sops binary to
`recipient`); the `base_tree` and `tree_dir` fixtures in conftest.py build on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
