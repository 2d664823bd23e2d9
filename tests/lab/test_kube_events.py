"""A fresh lab's Event history as kubectl shows it, and the API server's Event TTL
(issue 15 point 5)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dapper.lab.kinds import by_kind
from dapper.lab.kube_events import EVENT_TTL, HISTORY_LABEL, MAX_SEEDED_PODS

from tests.lab.kube_lab import Lab, running_lab
from tests.lab.test_kube_apply import KUBECTL, kubectl_as
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("events")) as lab:
        yield lab


def events(lab: Lab) -> list[dict]:
    return lab.world.store.list(by_kind("", "Event"))[0]


def test_fresh_lab_has_a_believable_bounded_history(lab: Lab) -> None:
    out = kubectl_as(lab, "get", "events", "-A", readonly=True)
    assert out.returncode == 0, out.stderr
    assert "No resources found" not in out.stdout + out.stderr
    reasons = {line.split()[3] for line in out.stdout.splitlines()[1:]}
    assert {"Scheduled", "Pulled", "Created", "Started", "Unhealthy"} <= reasons
    warnings = [e for e in events(lab) if e["type"] == "Warning"]
    assert len(warnings) == 1 and warnings[0]["source"]["component"] == "kubelet"
    seeded = [e for e in events(lab) if (e["metadata"].get("labels") or {}).get(HISTORY_LABEL)]
    assert 4 < len(seeded) <= 4 * MAX_SEEDED_PODS + 1 + 10
    scheduled = next(e for e in seeded if e["reason"] == "Scheduled")
    pod = lab.world.store.get(
        by_kind("", "Pod"),
        scheduled["involvedObject"]["namespace"],
        scheduled["involvedObject"]["name"],
    )
    assert scheduled["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert scheduled["source"]["component"] == "default-scheduler"
    assert pod["spec"]["nodeName"] in scheduled["message"]


def test_flux_reconciliations_are_recorded(lab: Lab) -> None:
    def reconciled() -> list[dict]:
        return [e for e in events(lab) if e["reason"] == "ReconciliationSucceeded"]

    eventually(lambda: len(reconciled()) >= 2, timeout=10)
    ev = reconciled()[0]
    assert ev["involvedObject"]["kind"] == "Kustomization"
    assert ev["source"]["component"] == "kustomize-controller"
    out = kubectl_as(lab, "get", "events", "-n", "flux-system", readonly=True).stdout
    assert "ReconciliationSucceeded" in out and "kustomization/cluster-apps" in out


def test_events_expire_after_the_ttl(lab: Lab) -> None:
    before = len(events(lab))
    assert lab.server.events.expire(now=time.time() + EVENT_TTL / 2) == 0
    gone = lab.server.events.expire(now=time.time() + EVENT_TTL + 5)
    assert gone == before and events(lab) == []
    out = kubectl_as(lab, "get", "events", "-A", readonly=True)
    assert "No resources found" in out.stdout + out.stderr
