"""Sources and prune as source-controller and kustomize-controller do them.

The GitRepository's artifact is what every Kustomization builds, and it moves only at the
source's interval (on the twin's Flux clock) or on a requestedAt, never while the source
is suspended, so reconciling with and without the source differ. Prune spares objects
marked `kustomize.toolkit.fluxcd.io/prune: disabled`, and a removed child Kustomization
deletes what it applied only when its own `prune` is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.gitrepo import GitRepo
from dapper.backends.clients.kube import KubeBackend
from dapper.lab.flux_twin import GIT_RT, KS_RT
from dapper.lab.kinds import by_kind
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

from tests.lab.test_flux_twin_tree import SIG, TREE, Lab, ready, started_lab
from tests.waiting import eventually

CM_RT = by_kind("", "ConfigMap")
NS_RT = by_kind("", "Namespace")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
CFILE = "kubernetes/apps/media/extra/app/configmap.yaml"
MEDIA = "kubernetes/apps/media/kustomization.yaml"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with started_lab(tmp_path) as made:
        yield made


def _git(lab: Lab) -> dict:
    return lab.world.store.get(GIT_RT, "flux-system", "flux-system")


def _edit_git(lab: Lab, fn) -> None:
    lab.world.store.mutate(GIT_RT, "flux-system", "flux-system", fn)


def _mode(lab: Lab) -> str:
    return lab.world.store.get(CM_RT, "media", "extra-settings")["data"]["MODE"]


def test_a_suspended_source_is_not_fetched(lab: Lab) -> None:
    old = _git(lab)["status"]["artifact"]["revision"]

    def suspend(o: dict) -> None:
        o["spec"]["suspend"] = True

    _edit_git(lab, suspend)
    sha = lab.push({CFILE: TREE[CFILE].replace("MODE: one", "MODE: two")}, "mode two")
    lab.twin.reconcile_now(with_source=True)  # even a forced fetch is refused
    assert _git(lab)["status"]["artifact"]["revision"] == old
    assert lab.ks("media", "extra")["status"]["lastAppliedRevision"] == old
    assert _mode(lab) == "one"

    def resume(o: dict) -> None:
        o["spec"].pop("suspend")

    _edit_git(lab, resume)
    eventually(lambda: _mode(lab) == "two", timeout=15.0, message="the resumed source")
    assert _git(lab)["status"]["artifact"]["revision"] == f"main@sha1:{sha}"


def test_the_artifact_moves_at_the_interval_or_on_request(lab: Lab) -> None:
    def hourly(o: dict) -> None:
        o["spec"]["interval"] = "1h"  # 36 lab seconds: longer than this test

    _edit_git(lab, hourly)
    lab.twin.reconcile_now(with_source=False)
    old = _git(lab)["status"]["artifact"]["revision"]
    sha = lab.push({CFILE: TREE[CFILE].replace("MODE: one", "MODE: two")}, "mode two")
    # reconciling the Kustomizations alone builds the artifact they already have
    lab.twin.reconcile_now(with_source=False)
    lab.twin.reconcile_now(with_source=False)
    assert _git(lab)["status"]["artifact"]["revision"] == old
    assert _mode(lab) == "one"

    stamp = "2026-01-01T00:00:00Z"

    def ask(o: dict) -> None:
        o["metadata"].setdefault("annotations", {})[REQUESTED_AT] = stamp

    _edit_git(lab, ask)  # what `flux reconcile source git flux-system` does
    eventually(lambda: _mode(lab) == "two", timeout=15.0, message="the requested fetch")
    git = _git(lab)
    assert git["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    assert git["status"]["lastHandledReconcileAt"] == stamp


def test_prune_disabled_objects_survive_their_removal(lab: Lab) -> None:
    ns_file = "kubernetes/apps/media/namespace.yaml"
    marked = TREE[ns_file] + ("  annotations:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n")
    second = "kubernetes/apps/media/extra/app/second.yaml"
    marked_cm = TREE[second].replace(
        "  name: extra-second\n",
        "  name: extra-second\n  labels:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n",
    )
    lab.push({ns_file: marked, second: marked_cm}, "mark namespace and a ConfigMap")
    lab.twin.reconcile_now()
    kfile = "kubernetes/apps/media/extra/app/kustomization.yaml"
    lab.push(
        {
            MEDIA: TREE[MEDIA].replace("  - ./namespace.yaml\n", ""),
            kfile: TREE[kfile].replace("  - ./second.yaml\n", ""),
        },
        "stop managing them",
    )
    lab.twin.reconcile_now()
    apps = lab.ks("flux-system", "cluster-apps")
    assert ready(apps)["status"] == "True"
    ids = {e["id"] for e in apps["status"]["inventory"]["entries"]}
    assert "_media__Namespace" not in ids  # out of the inventory...
    assert lab.world.store.find(NS_RT, "", "media") is not None  # ...but not deleted
    assert lab.world.store.find(CM_RT, "media", "extra-second") is not None


def test_a_removed_child_without_prune_keeps_its_objects(lab: Lab) -> None:
    ks_file = "kubernetes/apps/media/extra/ks.yaml"
    lab.push({ks_file: TREE[ks_file].replace("prune: true", "prune: false")}, "extra: no prune")
    lab.twin.reconcile_now()
    assert lab.ks("media", "extra")["spec"]["prune"] is False
    lab.push({MEDIA: TREE[MEDIA].replace("  - ./extra/ks.yaml\n", "")}, "drop extra")
    lab.twin.reconcile_now()
    assert lab.world.store.find(KS_RT, "media", "extra") is None
    assert lab.world.store.find(CM_RT, "media", "extra-settings") is not None
    assert lab.world.store.find(CM_RT, "media", "extra-second") is not None


def test_reconcile_with_source_waits_for_the_new_artifact(tmp_path: Path) -> None:
    """The console's `reconcile --with-source` returns only once the GitRepository has
    stored the pushed commit, so the Kustomization is asked about the new revision."""
    # a slow controller (1 s from request to reconcile): without the wait the
    # Kustomization would be asked while the source still holds the old artifact
    slow = Timings(reconcile_interval=600.0, reconcile_delay=1.0)
    running = start_lab(directory=tmp_path / "lab", timings=slow)
    kube = None
    try:
        assert running.flux is not None
        running.flux.reconcile_now(timeout=60)

        def hourly(o: dict) -> None:
            o["spec"]["interval"] = "1h"

        running.world.store.mutate(GIT_RT, "flux-system", "flux-system", hourly)
        running.flux.reconcile_now(timeout=60, with_source=False)
        scratch = GitRepo.open(running.config.repo_path)
        note = Path(running.config.repo_path) / "kubernetes" / "lab-note.txt"
        note.write_text("a change for the source\n")
        sha = scratch.commit(["kubernetes/lab-note.txt"], "a note", signature=SIG)
        scratch.push()
        kube = KubeBackend.from_kubeconfig(
            running.config.kubeconfig, context=running.config.kube_context
        )
        stamp = kube.reconcile("flux-system", "cluster-apps", with_source=True, source_timeout=30)
        git = running.world.store.get(GIT_RT, "flux-system", "flux-system")
        assert git["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
        assert git["status"]["lastHandledReconcileAt"] == stamp
        assert kube.wait_reconciled("flux-system", "cluster-apps", stamp, timeout=30) == (
            f"main@sha1:{sha}"
        )
    finally:
        if kube is not None:
            kube.close()
        running.stop()


def test_a_missing_decryption_secret_fails_the_build(lab: Lab) -> None:
    """Keys come from the Kustomization's own decryption.secretRef, read live."""
    secret_rt = by_kind("", "Secret")
    saved = lab.world.store.get(secret_rt, "flux-system", "sops-age")
    lab.world.store.delete(secret_rt, "flux-system", "sops-age")

    def ask(o: dict) -> None:  # noticed at the next reconcile: here, a requested one
        o["metadata"].setdefault("annotations", {})[REQUESTED_AT] = "2026-01-01T00:00:01Z"

    lab.world.store.mutate(KS_RT, "flux-system", "flux-system", ask)
    lab.twin.reconcile_now()
    root = lab.ks("flux-system", "flux-system")
    cond = ready(root)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert cond["message"] == (
        "cannot get sops decryption Secret 'flux-system/sops-age': secrets \"sops-age\" not found"
    )
    saved["metadata"] = {"namespace": "flux-system", "name": "sops-age"}
    lab.world.store.upsert(saved, rt=secret_rt)
    lab.twin.reconcile_now()  # a failed one waits for its retryInterval (10m: 6 s)...
    assert ready(lab.ks("flux-system", "flux-system"))["status"] == "False"

    def again(o: dict) -> None:  # ...or a new request
        o["metadata"]["annotations"][REQUESTED_AT] = "2026-01-01T00:00:02Z"

    lab.world.store.mutate(KS_RT, "flux-system", "flux-system", again)
    lab.twin.reconcile_now()
    assert ready(lab.ks("flux-system", "flux-system"))["status"] == "True"


def test_apply_keeps_what_other_managers_set(lab: Lab) -> None:
    """Server-side apply: a label kubectl added and a Deployment's restartedAt survive a
    re-apply; a label Flux applied and no longer renders goes."""

    def kubectl_label(o: dict) -> None:
        o["metadata"].setdefault("labels", {})["team"] = "media"

    lab.world.store.mutate(CM_RT, "media", "extra-settings", kubectl_label)
    deploy_rt = by_kind("apps", "Deployment")

    def restart(o: dict) -> None:
        meta = o["spec"]["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"

    lab.world.store.mutate(deploy_rt, "media", "plex", restart)
    labelled = TREE[CFILE].replace(
        "  name: extra-settings\n", "  name: extra-settings\n  labels:\n    tier: one\n"
    )
    lab.push({CFILE: labelled.replace("MODE: one", "MODE: two")}, "extra: mode two, tier")
    lab.twin.reconcile_now()
    cm = lab.world.store.get(CM_RT, "media", "extra-settings")
    assert cm["data"]["MODE"] == "two"
    assert cm["metadata"]["labels"]["team"] == "media"
    assert cm["metadata"]["labels"]["tier"] == "one"
    lab.push({CFILE: TREE[CFILE]}, "extra: back to one, no tier")
    lab.twin.reconcile_now()
    cm = lab.world.store.get(CM_RT, "media", "extra-settings")
    assert cm["data"]["MODE"] == "one"
    assert "tier" not in cm["metadata"]["labels"]  # Flux's own, now unrendered
    assert cm["metadata"]["labels"]["team"] == "media"  # kubectl's
    # plex is re-applied on request; its Deployment keeps the rollout restart
    stamp = "2026-01-01T00:00:03Z"

    def ask(o: dict) -> None:
        o["metadata"].setdefault("annotations", {})[REQUESTED_AT] = stamp

    lab.world.store.mutate(KS_RT, "media", "plex", ask)
    lab.twin.reconcile_now()
    assert lab.ks("media", "plex")["status"]["lastHandledReconcileAt"] == stamp
    template = lab.world.store.get(deploy_rt, "media", "plex")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "now"
