"""The live spec is what gets built (issue 17, point 15), through the lab's Kubernetes API
with the kubernetes client, on the real tree.

kustomize-controller builds what the Kustomization object in the cluster says, not what
Git said when its parent applied it: a `kubectl patch` of spec.path, spec.targetNamespace
or spec.patches changes what the next reconcile applies. A path that the artifact does
not hold is `ArtifactFailed` ("kustomization path not found: ..."), with the attempted
revision and observedGeneration left as they were; fixing it brings both forward.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from dapper.lab.runtime import RunningLab
from kubernetes.client.rest import ApiException

from kubernetes import client, config
from tests.lab.flux_lab import KUBECTL, kubectl, settled_flux_lab
from tests.waiting import eventually

NS, NAME = "default", "echo-server"
FLUX_KS = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
HR = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")
APP_PATH = "./kubernetes/apps/default/echo-server/app"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with settled_flux_lab(tmp_path_factory, "live-spec") as running:
        yield running


@pytest.fixture(scope="module")
def api(lab: RunningLab) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(lab.config.kubeconfig)))


def ks(api: client.CustomObjectsApi) -> dict[str, Any]:
    return api.get_namespaced_custom_object(*FLUX_KS[:2], NS, FLUX_KS[2], NAME)


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def patch_and_wait(api: client.CustomObjectsApi, spec: dict[str, Any]) -> dict[str, Any]:
    """`kubectl patch ks --type merge -p {"spec": ...}`, then the reconcile answering the
    new generation (Ready no longer Unknown, the request handled)."""
    before = ks(api)["metadata"]["generation"]
    out = api.patch_namespaced_custom_object(*FLUX_KS[:2], NS, FLUX_KS[2], NAME, {"spec": spec})
    assert out["metadata"]["generation"] == before + 1  # a spec change is a new generation

    def answered() -> dict[str, Any] | None:
        now = ks(api)
        cond = ready(now)
        if cond["status"] == "Unknown" or cond.get("observedGeneration") != before + 1:
            return None
        return now

    return eventually(answered, timeout=60, message=f"{NS}/{NAME} to answer its new spec")


def helm_release(api: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    try:
        return api.get_namespaced_custom_object(*HR[:2], ns, HR[2], NAME)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_patched_spec_changes_what_the_next_reconcile_applies(
    lab: RunningLab, api: client.CustomObjectsApi
) -> None:
    first = ks(api)
    gen, rev = first["metadata"]["generation"], first["status"]["lastAppliedRevision"]
    assert first["status"]["observedGeneration"] == gen
    assert helm_release(api, NS) is not None

    # spec.patches: a patch the Git tree never had lands on the HelmRelease
    patch = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "metadata:\n  name: echo-server\n  annotations:\n    lab.test/patched: live\n"
    )
    now = patch_and_wait(api, {"patches": [{"patch": patch, "target": {"kind": "HelmRelease"}}]})
    assert ready(now)["status"] == "True", ready(now)
    assert now["status"]["observedGeneration"] == gen + 1
    hr = helm_release(api, NS)
    assert hr is not None
    assert hr["metadata"]["annotations"]["lab.test/patched"] == "live"

    # spec.path to a directory the artifact does not have: ArtifactFailed, nothing moves
    now = patch_and_wait(api, {"path": "./kubernetes/apps/default/nope"})
    cond = ready(now)
    assert (cond["status"], cond["reason"]) == ("False", "ArtifactFailed")
    assert re.fullmatch(
        r"kustomization path not found: stat /tmp/kustomization-\d+/kubernetes/apps/default/"
        r"nope: no such file or directory",
        cond["message"],
    ), cond["message"]
    assert now["status"]["observedGeneration"] == gen + 1  # only a success moves it
    assert now["status"]["lastAttemptedRevision"] == rev
    reconciling = next(c for c in now["status"]["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "ProgressingWithRetry"
    assert helm_release(api, NS) is not None  # what it applied before stays

    # spec.path back and spec.targetNamespace moved: applied there, pruned here
    now = patch_and_wait(api, {"path": APP_PATH, "targetNamespace": "media"})
    assert ready(now)["status"] == "True", ready(now)
    assert now["status"]["observedGeneration"] == gen + 3
    moved = helm_release(api, "media")
    assert moved is not None
    assert moved["metadata"]["annotations"]["lab.test/patched"] == "live"
    assert helm_release(api, NS) is None
    ids = {e["id"] for e in now["status"]["inventory"]["entries"]}
    assert f"media_{NAME}_helm.toolkit.fluxcd.io_HelmRelease" in ids


def test_live_variables_substitute_over_the_whole_text(
    lab: RunningLab, api: client.CustomObjectsApi
) -> None:
    """A live patch and live postBuild variables, substituted as fluxcd/pkg does: the
    quoted `"${REPLICAS}"` becomes the integer 1, a variable in a key is substituted, a
    value that is YAML (`[a, b]`) is read as YAML, and an object marked
    `substitute: disabled` keeps its text."""
    patch = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "metadata:\n  name: echo-server\n  annotations:\n"
        "    lab.test/${ANNOTATION_KEY}: from-a-key\nspec:\n  values:\n    controllers:\n"
        '      echo-server:\n        replicas: "${REPLICAS}"\n'
        '        args: "${ARGS}"\n'
    )
    variables = {"REPLICAS": "1", "ANNOTATION_KEY": "key", "ARGS": "[a, b]"}
    now = patch_and_wait(
        api,
        {
            "patches": [{"patch": patch, "target": {"kind": "HelmRelease"}}],
            "postBuild": {"substitute": variables},
        },
    )
    assert ready(now)["status"] == "True", ready(now)
    target = now["spec"].get("targetNamespace") or NS
    hr = helm_release(api, target)
    assert hr is not None
    controller = hr["spec"]["values"]["controllers"][NAME]
    assert controller["replicas"] == 1
    assert controller["args"] == ["a", "b"]
    assert hr["metadata"]["annotations"].get("lab.test/key") == "from-a-key", hr["metadata"]
    assert controller["containers"]["app"]["image"]["tag"] == "37"  # strings stay strings

    # a value that is not YAML where it lands fails the build, and nothing is applied
    before = (hr["metadata"]["generation"], hr["spec"])
    now = patch_and_wait(api, {"postBuild": {"substitute": {"ARGS": "a: b"}}})
    cond = ready(now)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert re.fullmatch(
        r"post build failed for 'echo-server': envsubst error: YAMLToJSON: yaml: line \d+: "
        r"mapping values are not allowed in this context",
        cond["message"],
    ), cond["message"]
    after = helm_release(api, target)
    assert after is not None and (after["metadata"]["generation"], after["spec"]) == before

    # the disabled mark skips the object: its ${...} text is applied as written
    marked = patch.replace(
        "  annotations:\n", "  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\n"
    )
    now = patch_and_wait(
        api,
        {
            "patches": [{"patch": marked, "target": {"kind": "HelmRelease"}}],
            "postBuild": {"substitute": {"ARGS": "[a, b]"}},
        },
    )
    assert ready(now)["status"] == "True", ready(now)
    hr = helm_release(api, target)
    assert hr is not None
    assert hr["spec"]["values"]["controllers"][NAME]["replicas"] == "${REPLICAS}"
    assert hr["metadata"]["annotations"]["lab.test/${ANNOTATION_KEY}"] == "from-a-key"


@pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")
def test_what_kubectl_set_survives_a_reapply(lab: RunningLab, api: client.CustomObjectsApi) -> None:
    """Server-side apply (point 15): a label and an annotation kubectl added to an object
    Flux applies are still there after a requested reconcile re-applies it."""
    ns, name = "kube-system", "metrics-server"
    kubectl(lab, "label", "-n", ns, "helmrelease", name, "team=ops")
    kubectl(lab, "annotate", "-n", ns, "helmrelease", name, "lab.test/note=kept")
    stamp = "2026-12-03T05:00:00Z"
    kubectl(
        lab,
        "annotate",
        "-n",
        ns,
        "kustomization",
        name,
        f"reconcile.fluxcd.io/requestedAt={stamp}",
        "--overwrite",
    )

    def handled() -> dict[str, Any] | None:
        obj = api.get_namespaced_custom_object(*FLUX_KS[:2], ns, FLUX_KS[2], name)
        status = obj.get("status") or {}
        if status.get("lastHandledReconcileAt") == stamp and ready(obj)["status"] != "Unknown":
            return obj
        return None

    done = eventually(handled, timeout=60, message=f"{ns}/{name} to handle {stamp}")
    assert ready(done)["status"] == "True", ready(done)
    hr = api.get_namespaced_custom_object(*HR[:2], ns, HR[2], name)
    labels = hr["metadata"]["labels"]
    assert labels["team"] == "ops"  # kubectl's
    assert labels["kustomize.toolkit.fluxcd.io/name"] == name  # Flux's
    assert labels["app.kubernetes.io/name"] == name  # commonMetadata, from the live spec
    assert hr["metadata"]["annotations"]["lab.test/note"] == "kept"


def test_health_is_evaluated_for_a_live_wait(lab: RunningLab, api: client.CustomObjectsApi) -> None:
    """Health (point 9) through the kubernetes client: `wait: true` patched on, with a
    patch asking the HelmRelease for 99 GPUs. The Kustomization fails HealthCheckFailed
    after its timeout; the release fails its upgrade and, with no retries, stalls."""
    ns, name = "network", "cloudflared"
    hog = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "metadata:\n  name: cloudflared\nspec:\n  timeout: 1m\n"
        "  upgrade:\n    remediation:\n      retries: 0\n"
        "  values:\n    controllers:\n      cloudflared:\n        containers:\n"
        "          app:\n            resources:\n              limits:\n"
        "                nvidia.com/gpu: 99\n"
    )
    spec = {
        "wait": True,
        "timeout": "30s",
        "patches": [{"patch": hog, "target": {"kind": "HelmRelease"}}],
    }
    api.patch_namespaced_custom_object(*FLUX_KS[:2], ns, FLUX_KS[2], name, {"spec": spec})

    def failed() -> dict[str, Any] | None:
        obj = api.get_namespaced_custom_object(*FLUX_KS[:2], ns, FLUX_KS[2], name)
        return obj if ready(obj)["reason"] == "HealthCheckFailed" else None

    ks_obj = eventually(failed, timeout=60, message=f"{ns}/{name} to fail its health check")
    cond = ready(ks_obj)
    assert cond["status"] == "False"
    assert cond["message"].startswith("timeout waiting for: [")
    assert "HelmRelease/network/cloudflared status: 'InProgress'" in cond["message"]
    healthy = next(c for c in ks_obj["status"]["conditions"] if c["type"] == "Healthy")
    assert healthy["status"] == "False"

    def stalled() -> dict[str, Any] | None:
        hr = api.get_namespaced_custom_object(*HR[:2], ns, HR[2], name)
        conds = {c["type"]: c for c in (hr.get("status") or {}).get("conditions") or []}
        return conds if "Stalled" in conds else None

    conds = eventually(stalled, timeout=60, message="the cloudflared release to stall")
    assert conds["Stalled"]["reason"] == "RetriesExceeded"
    assert conds["Stalled"]["message"] == "Failed to upgrade after 1 attempt(s)"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "UpgradeFailed")
