"""Values come from live objects and Flux leaves Events (issue 17, points 10 and 15), seen
through the lab's Kubernetes API with kubectl and the kubernetes client.

kustomize-controller reads a Kustomization's `postBuild.substituteFrom` ConfigMaps and
Secrets from the cluster when it builds, in the Kustomization's namespace: editing the
live ConfigMap changes what the next reconcile applies, and a missing one fails the build
(fluxcd/pkg kustomize LoadVariables, wrapped by the controller's build()). Every
reconcile leaves core/v1 Events from `kustomize-controller` about the Kustomization.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from dapper.lab.flux_twin import KS_RT
from dapper.lab.runtime import RunningLab

from kubernetes import client, config
from tests.lab.flux_lab import KUBECTL, kubectl, settled_flux_lab
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")
NS, NAME = "system-upgrade", "system-upgrade-controller"
KS = "kustomizations.kustomize.toolkit.fluxcd.io"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with settled_flux_lab(tmp_path_factory, "values") as running:
        yield running


def core(lab: RunningLab) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(lab.config.kubeconfig)))


def request_reconcile(lab: RunningLab, stamp: str) -> dict:
    """`flux reconcile ks` without the CLI: the annotation, then the handled request."""
    kubectl(
        lab,
        "annotate",
        "-n",
        NS,
        KS,
        NAME,
        f"reconcile.fluxcd.io/requestedAt={stamp}",
        "--overwrite",
    )

    def handled() -> dict | None:
        ks = lab.world.store.get(KS_RT, NS, NAME)
        status = ks.get("status") or {}
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        if status.get("lastHandledReconcileAt") == stamp and ready["status"] != "Unknown":
            return ks
        return None

    return eventually(handled, timeout=60, message=f"{NS}/{NAME} to handle {stamp}")


def ready(ks: dict) -> dict:
    return next(c for c in ks["status"]["conditions"] if c["type"] == "Ready")


def kubectl_image(lab: RunningLab) -> str:
    hr = json.loads(kubectl(lab, "get", "helmrelease", "-n", NS, NAME, "-o", "json"))
    env = hr["spec"]["values"]["controllers"][NAME]["containers"]["app"]["env"]
    return str(env["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"])


def test_substitute_from_reads_the_live_configmap(lab: RunningLab) -> None:
    assert kubectl_image(lab) == "registry.k8s.io/kubectl:v1.33.4"  # versions.env in Git
    patch = json.dumps({"data": {"KUBERNETES_VERSION": "v1.34.1"}})
    kubectl(lab, "patch", "configmap", "versions", "-n", NS, "--type", "merge", "-p", patch)
    ks = request_reconcile(lab, "2026-12-02T00:00:01Z")
    assert ready(ks)["status"] == "True", ready(ks)
    assert kubectl_image(lab) == "registry.k8s.io/kubectl:v1.34.1"  # the live value, not Git's


def test_a_missing_substitute_from_fails_the_build_and_says_so_in_an_event(
    lab: RunningLab,
) -> None:
    kubectl(lab, "delete", "configmap", "versions", "-n", NS)
    ks = request_reconcile(lab, "2026-12-02T00:00:02Z")
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert re.fullmatch(
        r"post build failed for '[^']+': substitute from 'ConfigMap/versions' error: "
        r'configmaps "versions" not found',
        cond["message"],
    ), cond["message"]
    reconciling = next(c for c in ks["status"]["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "ProgressingWithRetry"

    def warning() -> client.CoreV1Event | None:
        for ev in core(lab).list_namespaced_event(NS).items:
            if ev.type == "Warning" and ev.involved_object.name == NAME:
                return ev
        return None

    ev = eventually(warning, timeout=10, message="the BuildFailed Warning")
    assert ev.reason == "BuildFailed" and ev.message == cond["message"]
    assert ev.involved_object.kind == "Kustomization"
    assert ev.involved_object.api_version == "kustomize.toolkit.fluxcd.io/v1"
    assert ev.reporting_component == "kustomize-controller"
    assert ev.source.component == "kustomize-controller"
    revision = lab.world.store.get(KS_RT, "flux-system", "flux-system")["status"][
        "lastAppliedRevision"
    ]
    assert ev.metadata.annotations["kustomize.toolkit.fluxcd.io/revision"] == revision
    out = kubectl(lab, "get", "events", "-n", NS)
    line = next(ln for ln in out.splitlines() if "BuildFailed" in ln)
    assert "Warning" in line and f"kustomization/{NAME}" in line


def test_successful_reconciles_and_applied_changes_are_events(lab: RunningLab) -> None:
    events = core(lab).list_namespaced_event("flux-system").items
    ours = [e for e in events if e.involved_object.name == "cluster-apps"]
    done = [e for e in ours if e.reason == "ReconciliationSucceeded"]
    assert done and all(e.type == "Normal" for e in done)
    assert re.fullmatch(r"Reconciliation finished in \S+, next run in 30m0s", done[0].message)
    assert done[0].metadata.annotations["kustomize.toolkit.fluxcd.io/commit_status"] == "update"
    assert all(e.reporting_component == "kustomize-controller" for e in ours)
    applied = [e for e in ours if e.reason == "Progressing"]
    assert applied and "Namespace/media created" in applied[0].message.splitlines()
    out = kubectl(lab, "get", "events", "-n", "flux-system")
    assert "ReconciliationSucceeded" in out and "kustomization/cluster-apps" in out
