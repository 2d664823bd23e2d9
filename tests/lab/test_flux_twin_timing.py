"""Timing, dependencies and status shape (issue 17, points 13 and 14) on the small tree.

- A suspended dependency that is Ready observes its new generation (finalizeStatus runs
  for a skipped object) and stays at its old revision, so a dependent on the same source
  reads "revision is not up to date" and is requeued (the 30 s dependency requeue);
  resuming it lets the dependent go on.
- Drift (a change made by hand to an applied object) is reverted at the
  Kustomization's interval, not by the next pass.
- Turning `wait` off removes the Healthy condition.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapper.lab.flux_twin import KS_RT
from dapper.lab.kinds import by_kind

from tests.lab.test_flux_twin_tree import TREE, Lab, make_lab, ready
from tests.waiting import eventually

CM_RT = by_kind("", "ConfigMap")
EVENT_RT = by_kind("", "Event")
PVC = "kubernetes/apps/media/plex/app/pvc.yaml"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    # 30m (extra's interval) is 15 s on this clock: long enough that a pass right after a
    # change never reaches it, short enough to wait for
    made = make_lab(tmp_path, time_scale=120.0)
    try:
        made.twin.start()
        made.twin.reconcile_now()
        yield made
    finally:
        made.twin.stop()
        made.world.close()
        made.remote.close()


def set_spec(lab: Lab, ns: str, name: str, **fields: Any) -> None:
    def edit(o: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                o["spec"].pop(key, None)
            else:
                o["spec"][key] = value

    lab.world.store.mutate(KS_RT, ns, name, edit)


def test_a_suspended_dependency_behind_the_revision_holds_its_dependents(lab: Lab) -> None:
    dep = ("kube-system", "nvidia-device-plugin")
    old = lab.ks(*dep)["status"]["lastAppliedRevision"]
    set_spec(lab, *dep, suspend=True)  # `flux suspend ks`: a new generation
    lab.twin.reconcile_now()
    suspended = lab.ks(*dep)
    assert suspended["status"]["observedGeneration"] == suspended["metadata"]["generation"]
    assert ready(suspended)["status"] == "True"

    sha = lab.push({PVC: TREE[PVC].replace("10Gi", "20Gi")}, "plex: a bigger claim")
    lab.twin.reconcile_now()
    plex = lab.ks("media", "plex")
    cond = ready(plex)
    assert (cond["status"], cond["reason"]) == ("False", "DependencyNotReady")
    assert cond["message"] == (
        "dependency 'kube-system/nvidia-device-plugin' revision is not up to date"
    )
    assert plex["status"]["lastAttemptedRevision"] == old  # never attempted the new one
    assert lab.ks(*dep)["status"]["lastAppliedRevision"] == old
    events = [
        e
        for e in lab.world.store.list(EVENT_RT, "media")[0]
        if e["involvedObject"]["name"] == "plex" and e["reason"] == "DependencyNotReady"
    ]
    assert [e["message"] for e in events] == [
        "Dependencies do not meet ready condition, retrying in 30s"
    ]

    set_spec(lab, *dep, suspend=None)  # `flux resume ks`
    lab.twin.request()
    new = f"main@sha1:{sha}"
    eventually(
        lambda: lab.ks("media", "plex")["status"].get("lastAppliedRevision") == new,
        timeout=30,
        message="plex to apply the new revision once its dependency has",
    )
    assert lab.ks(*dep)["status"]["lastAppliedRevision"] == new


def test_drift_is_reverted_at_the_interval_not_by_the_next_pass(lab: Lab) -> None:
    def by_hand(o: dict[str, Any]) -> None:
        o["data"]["MODE"] = "drifted"

    lab.world.store.mutate(CM_RT, "media", "extra-settings", by_hand)
    lab.twin.reconcile_now()  # a pass: extra is settled and its interval is not up
    assert lab.world.store.get(CM_RT, "media", "extra-settings")["data"]["MODE"] == "drifted"
    eventually(
        lambda: lab.world.store.get(CM_RT, "media", "extra-settings")["data"]["MODE"] == "one",
        timeout=60,
        message="extra to revert the drift at its interval",
    )


def test_turning_wait_off_removes_the_healthy_condition(lab: Lab) -> None:
    set_spec(lab, "media", "extra", wait=True, timeout="1m")
    eventually(
        lambda: any(
            c["type"] == "Healthy" and c["status"] == "True"
            for c in lab.ks("media", "extra")["status"]["conditions"]
        ),
        timeout=30,
        message="extra's health check to pass",
    )
    set_spec(lab, "media", "extra", wait=None, timeout=None)
    lab.twin.reconcile_now()
    ks = lab.ks("media", "extra")
    assert ready(ks)["status"] == "True"
    assert ks["status"]["observedGeneration"] == ks["metadata"]["generation"]
    assert all(c["type"] != "Healthy" for c in ks["status"]["conditions"])
