"""Health as Flux evaluates it: kstatus over what was applied, until the (scaled) timeout.

A Deployment asking for 99 GPUs cannot schedule, so it never becomes available; the
HelmRelease that runs it waits, fails with Helm's deadline, remediates as its spec says
and stalls; the Kustomization with `wait: true` around it ends HealthCheckFailed with
fluxcd/pkg's "timeout waiting for: [...]" after its own timeout, not before. The lab's
Flux clock runs DEFAULT_TIME_SCALE times faster (30s -> 0.3 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.lab.flux_health import DEFAULT_TIME_SCALE
from dapper.lab.flux_twin import HR_RT, KS_RT
from dapper.lab.kinds import by_kind

from tests.lab.test_flux_twin_tree import TREE, Lab, ready, started_lab
from tests.waiting import eventually

EXTRA_KS = "kubernetes/apps/media/extra/ks.yaml"
EXTRA_APP = "kubernetes/apps/media/extra/app/kustomization.yaml"
HOG = "kubernetes/apps/media/extra/app/hog.yaml"
DEPLOY_RT = by_kind("apps", "Deployment")


def hog_release(timeout: str = "1m", retries: int = 0, gpus: int = 99) -> str:
    return f"""\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: hog
spec:
  interval: 30m
  timeout: {timeout}
  chartRef:
    kind: OCIRepository
    name: app-template
  install:
    remediation:
      retries: {retries}
  values:
    controllers:
      hog:
        containers:
          app:
            image:
              repository: ghcr.io/lab/hog
              tag: 1.0.0
            resources:
              limits:
                nvidia.com/gpu: {gpus}
"""


def hr_conditions(lab: Lab, name: str) -> dict[str, dict]:
    """The HelmRelease's conditions by type ({} while it does not exist)."""
    hr = lab.world.store.find(HR_RT, "media", name) or {}
    return {c["type"]: c for c in (hr.get("status") or {}).get("conditions") or []}


def waiting_extra(timeout: str = "30s") -> str:
    return TREE[EXTRA_KS] + f"  wait: true\n  timeout: {timeout}\n"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with started_lab(tmp_path) as made:
        yield made


class Timeline:
    """(seconds since start, kind, name, Ready status, reason) as the store saw them."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.began = time.monotonic()
        self.rows: list[tuple[float, str, str, str, str]] = []
        lab.world.store.add_listener(self)

    def __call__(self, event) -> None:
        kind = {(KS_RT.group, KS_RT.plural): "ks", (HR_RT.group, HR_RT.plural): "hr"}.get(
            event.key[:2]
        )
        if kind is None or event.type == "DELETED":
            return
        conds = (event.obj.get("status") or {}).get("conditions") or []
        cond = next((c for c in conds if c["type"] == "Ready"), None)
        if cond is None:
            return
        row = (cond["status"], cond["reason"])
        mine = [r for r in self.rows if r[1:3] == (kind, event.key[3])]
        if not mine or mine[-1][3:] != row:
            self.rows.append((time.monotonic() - self.began, kind, event.key[3], *row))

    def of(self, kind: str, name: str) -> list[tuple[str, str]]:
        return [r[3:] for r in self.rows if r[1:3] == (kind, name)]

    def at(self, kind: str, name: str, reason: str) -> float:
        return next(r[0] for r in self.rows if r[1:3] == (kind, name) and r[4] == reason)

    def close(self) -> None:
        self.lab.world.store.remove_listener(self)


def test_unschedulable_release_fails_the_waiting_kustomization_after_its_timeout(
    lab: Lab,
) -> None:
    timeline = Timeline(lab)
    try:
        sha = lab.push(
            {
                EXTRA_KS: waiting_extra("30s"),
                EXTRA_APP: TREE[EXTRA_APP] + "  - ./hog.yaml\n",
                HOG: hog_release("1m"),
            },
            "extra: a release that cannot schedule",
        )
        rev = f"main@sha1:{sha}"
        lab.twin.request()
        eventually(
            lambda: "Stalled" in hr_conditions(lab, "hog"),
            timeout=20.0,
            message="the HelmRelease to stall",
        )
    finally:
        timeline.close()

    # the Deployment exists but none of its pods could be placed: not available
    deploy = lab.world.store.get(DEPLOY_RT, "media", "hog")
    assert deploy["status"]["availableReplicas"] == 0

    # the Kustomization: progressing, health checks running, then failed at its timeout
    ks = lab.ks("media", "extra")
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "HealthCheckFailed")
    assert cond["message"] == ("timeout waiting for: [HelmRelease/media/hog status: 'InProgress']")
    healthy = next(c for c in ks["status"]["conditions"] if c["type"] == "Healthy")
    assert (healthy["status"], healthy["message"]) == ("False", cond["message"])
    retry = next(c for c in ks["status"]["conditions"] if c["type"] == "Reconciling")
    assert retry["reason"] == "ProgressingWithRetry"
    assert retry["message"] == (f"Running health checks for revision {rev} with a timeout of 30s")
    assert ks["status"]["lastAttemptedRevision"] == rev
    assert ks["status"]["lastAppliedRevision"] != rev  # applied, but never healthy
    ks_states = timeline.of("ks", "extra")
    assert ks_states[0] == ("True", "ReconciliationSucceeded")  # the old revision's
    assert ks_states[1:] == [("Unknown", "Progressing"), ("False", "HealthCheckFailed")]
    began = timeline.at("ks", "extra", "Progressing")
    failed_after = timeline.at("ks", "extra", "HealthCheckFailed") - began
    assert failed_after >= 30 / DEFAULT_TIME_SCALE

    # the HelmRelease: install running, deadline exceeded, no retries left -> Stalled
    hr = lab.world.store.get(HR_RT, "media", "hog")
    conds = {c["type"]: c for c in hr["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["reason"] == "InstallFailed"
    assert conds["Ready"]["message"] == (
        "Helm install failed for release media/hog with chart app-template@4.3.0: "
        "context deadline exceeded"
    )
    assert conds["Released"]["reason"] == "InstallFailed"
    assert (conds["Stalled"]["reason"], conds["Stalled"]["message"]) == (
        "RetriesExceeded",
        "Failed to install after 1 attempt(s)",
    )
    assert "Reconciling" not in conds
    assert hr["status"]["installFailures"] == 1
    assert hr["status"]["history"][0]["status"] == "failed"
    hr_states = timeline.of("hr", "hog")
    assert hr_states == [("Unknown", "Progressing"), ("False", "InstallFailed")]
    # kustomize-controller's Warning about the Kustomization says the same
    warned = [
        e
        for e in lab.world.store.list(by_kind("", "Event"), "media")[0]
        if e["involvedObject"]["name"] == "extra" and e["type"] == "Warning"
    ]
    assert [(e["reason"], e["message"]) for e in warned] == [("HealthCheckFailed", cond["message"])]
    hr_began = timeline.at("hr", "hog", "Progressing")
    assert timeline.at("hr", "hog", "InstallFailed") - hr_began >= 60 / DEFAULT_TIME_SCALE

    # later reconciles of the stalled release change nothing until its spec does
    lab.twin.reconcile_now()
    assert lab.world.store.get(HR_RT, "media", "hog")["status"]["installFailures"] == 1

    # a spec that fits clears the stall: the failed release is upgraded, extra goes healthy
    fixed = lab.push({HOG: hog_release("1m", gpus=1)}, "hog: one GPU")
    lab.twin.request()
    eventually(
        lambda: (
            lab.ks("media", "extra")["status"].get("lastAppliedRevision") == f"main@sha1:{fixed}"
        ),
        timeout=15.0,
        message="extra to recover",
    )
    conds = hr_conditions(lab, "hog")
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "UpgradeSucceeded")
    assert conds["Ready"]["message"] == (
        "Helm upgrade succeeded for release media/hog.v2 with chart app-template@4.3.0"
    )
    assert "Stalled" not in conds
    healthy = next(
        c for c in lab.ks("media", "extra")["status"]["conditions"] if c["type"] == "Healthy"
    )
    assert healthy["status"] == "True"


def stalled_message_cause(hr: dict) -> str:
    return next(c for c in hr["status"]["conditions"] if c["type"] == "Ready")["message"]


def test_install_remediation_uninstalls_and_retries_before_stalling(lab: Lab) -> None:
    timeline = Timeline(lab)
    try:
        lab.push(
            {
                EXTRA_APP: TREE[EXTRA_APP] + "  - ./hog.yaml\n",
                HOG: hog_release("30s", retries=1),
            },
            "extra: a release with one retry",
        )
        lab.twin.request()
        eventually(
            lambda: "Stalled" in hr_conditions(lab, "hog"),
            timeout=20.0,
            message="the HelmRelease to stall",
        )
    finally:
        timeline.close()
    assert timeline.of("hr", "hog") == [
        ("Unknown", "Progressing"),
        ("False", "InstallFailed"),
        ("False", "UninstallSucceeded"),
        ("Unknown", "Progressing"),
        ("False", "InstallFailed"),
    ]
    hr = lab.world.store.get(HR_RT, "media", "hog")
    stalled = next(c for c in hr["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["message"] == "Failed to install after 2 attempt(s)"
    assert hr["status"]["installFailures"] == 2
    # helm-controller's Events: each outcome, about the HelmRelease, failures as Warnings
    events = [
        e
        for e in lab.world.store.list(by_kind("", "Event"), "media")[0]
        if e["involvedObject"]["kind"] == "HelmRelease" and e["involvedObject"]["name"] == "hog"
    ]
    assert sorted((e["type"], e["reason"], e["count"]) for e in events) == [
        ("Normal", "UninstallSucceeded", 1),
        ("Warning", "InstallFailed", 2),  # the same message twice: one Event, count 2
    ]
    failed = next(e for e in events if e["reason"] == "InstallFailed")
    assert failed["message"] == stalled_message_cause(hr)
    assert failed["reportingComponent"] == "helm-controller"
    assert failed["metadata"]["annotations"]["helm.toolkit.fluxcd.io/revision"] == "4.3.0"
    # without wait the Kustomization itself is done once applied, and has no Healthy
    ks = lab.ks("media", "extra")
    assert ready(ks)["status"] == "True"
    assert all(c["type"] != "Healthy" for c in ks["status"]["conditions"])


def test_healthy_release_passes_the_health_check(lab: Lab) -> None:
    sha = lab.push(
        {
            EXTRA_KS: waiting_extra("30s"),
            EXTRA_APP: TREE[EXTRA_APP] + "  - ./hog.yaml\n",
            HOG: hog_release("1m", gpus=1),
        },
        "extra: a release that fits",
    )
    lab.twin.request()
    eventually(
        lambda: lab.ks("media", "extra")["status"].get("lastAppliedRevision") == f"main@sha1:{sha}",
        timeout=15.0,
        message="extra to apply the new revision",
    )
    ks = lab.ks("media", "extra")
    assert ready(ks)["reason"] == "ReconciliationSucceeded"
    healthy = next(c for c in ks["status"]["conditions"] if c["type"] == "Healthy")
    assert healthy["status"] == "True"
    assert healthy["message"].startswith("Health check passed in ")
    hr = lab.world.store.get(HR_RT, "media", "hog")
    assert ready(hr)["message"] == (
        "Helm install succeeded for release media/hog.v1 with chart app-template@4.3.0"
    )


def test_a_dependent_waits_while_its_dependency_checks_health(lab: Lab) -> None:
    """plex's dependents see DependencyNotReady while plex's health check runs."""
    plex_ks = "kubernetes/apps/media/plex/ks.yaml"
    hr_file = "kubernetes/apps/media/plex/app/helmrelease.yaml"
    lab.push(
        {
            plex_ks: TREE[plex_ks] + "  wait: true\n  timeout: 30s\n",
            hr_file: TREE[hr_file].replace("nvidia.com/gpu: 2", "nvidia.com/gpu: 99"),
        },
        "plex: more GPUs than exist",
    )
    lab.twin.request()
    eventually(
        lambda: ready(lab.ks("media", "plex"))["reason"] == "HealthCheckFailed",
        timeout=15.0,
        message="plex to fail its health check",
    )
    extra = ready(lab.ks("media", "extra"))
    assert (extra["status"], extra["reason"]) == ("False", "DependencyNotReady")
    assert extra["message"] == "dependency 'media/plex' is not ready"
    # the upgrade stalls (no upgrade retries), the old release's pods stay replaced
    eventually(
        lambda: (
            hr_conditions(lab, "plex").get("Stalled", {}).get("message")
            == "Failed to upgrade after 1 attempt(s)"
        ),
        timeout=15.0,
        message="the plex upgrade to stall",
    )
