"""What a Kustomization's build takes from the cluster (issue 17, points 10 and 15), on the
small Dapper-shaped tree: its own decryption keys, its live postBuild variables, and
envsubst as fluxcd/pkg runs it; and kustomize-controller's Events folding like client-go's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
from dapper.lab.flux_events import FluxEvents
from dapper.lab.flux_twin import KS_RT
from dapper.lab.kinds import by_kind

from tests.lab.test_flux_twin_tree import (
    KEY_FILE,
    SECRET_RT,
    TREE,
    Lab,
    make_lab,
    media_sops_age,
    ready,
    started_lab,
)

CM_RT = by_kind("", "ConfigMap")
EVENT_RT = by_kind("", "Event")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
PLEX_KS = "kubernetes/apps/media/plex/ks.yaml"
EXTRA_KS = "kubernetes/apps/media/extra/ks.yaml"
EXTRA_CM = "kubernetes/apps/media/extra/app/configmap.yaml"
PVC = "kubernetes/apps/media/plex/app/pvc.yaml"
DISABLED = "kustomize.toolkit.fluxcd.io/substitute: disabled"
DECRYPTION = "  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with started_lab(tmp_path) as made:
        yield made


def ask(lab: Lab, ns: str, name: str, stamp: str) -> dict:
    """A reconcile request (as `flux reconcile ks` writes it), and the pass answering it."""

    def edit(o: dict) -> None:
        o["metadata"].setdefault("annotations", {})[REQUESTED_AT] = stamp

    lab.world.store.mutate(KS_RT, ns, name, edit)
    lab.twin.reconcile_now()
    return lab.ks(ns, name)


def test_optional_substitute_from_and_live_values(lab: Lab) -> None:
    vars_ks = TREE[EXTRA_KS] + (
        "  postBuild:\n    substitute:\n      TIER: gold\n    substituteFrom:\n"
        "      - kind: ConfigMap\n        name: extra-vars\n        optional: true\n"
        "      - kind: Secret\n        name: extra-secret-vars\n        optional: true\n"
    )
    cm = TREE[EXTRA_CM].replace("MODE: one", 'MODE: "${MODE:=fallback}-${TIER}-${TOKEN:-none}"')
    lab.push({EXTRA_KS: vars_ks, EXTRA_CM: cm}, "extra: variables")
    lab.twin.reconcile_now()
    assert ready(lab.ks("media", "extra"))["status"] == "True"
    live = lab.world.store.get(CM_RT, "media", "extra-settings")
    assert live["data"]["MODE"] == "fallback-gold-none"  # neither optional source exists
    lab.world.store.upsert(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"namespace": "media", "name": "extra-vars"},
            "data": {"MODE": "live\n", "TIER": "ignored"},  # substitute wins; newlines go
        },
        rt=CM_RT,
    )
    token = base64.b64encode(b"s3cret").decode()
    lab.world.store.upsert(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"namespace": "media", "name": "extra-secret-vars"},
            "data": {"TOKEN": token},
        },
        rt=SECRET_RT,
    )
    ask(lab, "media", "extra", "2026-12-02T01:00:00Z")
    live = lab.world.store.get(CM_RT, "media", "extra-settings")
    assert live["data"]["MODE"] == "live-gold-s3cret"


def test_a_missing_required_secret_source_fails_the_build(lab: Lab) -> None:
    vars_ks = TREE[EXTRA_KS] + (
        "  postBuild:\n    substituteFrom:\n      - kind: Secret\n        name: gone\n"
    )
    sha = lab.push({EXTRA_KS: vars_ks}, "extra: a Secret that does not exist")
    lab.twin.reconcile_now()
    ks = lab.ks("media", "extra")
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert cond["message"] == (
        "post build failed for 'extra-settings': substitute from 'Secret/gone' error: "
        'secrets "gone" not found'
    )
    assert ks["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"


def test_an_encrypted_secret_needs_spec_decryption(lab: Lab) -> None:
    before = lab.world.store.get(SECRET_RT, "media", "plex-secret")["metadata"]
    lab.push({PLEX_KS: TREE[PLEX_KS].replace(DECRYPTION, "")}, "plex: no decryption")
    lab.twin.reconcile_now()
    cond = ready(lab.ks("media", "plex"))
    assert (cond["status"], cond["reason"]) == ("False", "ReconciliationFailed")
    assert cond["message"] == (
        "Secret/media/plex-secret is SOPS encrypted, configuring decryption is required "
        "for this secret to be reconciled"
    )
    after = lab.world.store.get(SECRET_RT, "media", "plex-secret")["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"]  # nothing was applied


def test_each_kustomization_decrypts_with_its_own_keys(lab: Lab) -> None:
    stranger = str(pyrage.x25519.Identity.generate())
    lab.world.store.upsert(media_sops_age(stranger + "\n"), rt=SECRET_RT)
    cond = ready(ask(lab, "media", "plex", "2026-12-02T01:00:01Z"))
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert cond["message"].startswith(
        "decryption failed for 'plex-secret': failed to decrypt and format "
        "'media/plex-secret' Secret data: "
    )
    assert ready(lab.ks("flux-system", "flux-system"))["status"] == "True"  # its own key
    # every .agekey entry counts; other entries do not
    secret = media_sops_age(stranger + "\n")
    secret["data"]["lab.agekey"] = base64.b64encode(KEY_FILE.read_bytes()).decode()
    secret["data"]["notes.txt"] = base64.b64encode(b"not a key").decode()
    lab.world.store.upsert(secret, rt=SECRET_RT)
    assert ready(ask(lab, "media", "plex", "2026-12-02T01:00:02Z"))["status"] == "True"


def test_strict_substitutions_refuse_an_unset_variable(tmp_path: Path) -> None:
    pvc = TREE[PVC].replace("storage: 10Gi", "storage: ${PLEX_SIZE}")
    for strict in (False, True):
        (tmp_path / str(strict)).mkdir()
        lab = make_lab(tmp_path / str(strict), strict_substitutions=strict)
        lab.push({PVC: pvc}, "plex: a size nobody sets")
        try:
            lab.twin.start()
            lab.twin.reconcile_now()
            cond = ready(lab.ks("media", "plex"))
            if not strict:  # the default: the empty string
                assert cond["status"] == "True"
                pvc_rt = by_kind("", "PersistentVolumeClaim")
                claim = lab.world.store.get(pvc_rt, "media", "plex-config")
                assert claim["spec"]["resources"]["requests"]["storage"] is None
                continue
            assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
            assert cond["message"] == (
                "post build failed for 'plex-config': envsubst error: variable substitution "
                'failed: variable not set (strict mode): "PLEX_SIZE"'
            )
        finally:
            lab.twin.stop()
            lab.world.close()
            lab.remote.close()


def test_substitution_follows_envsubst_and_the_disabled_marks(lab: Lab) -> None:
    vars_ks = TREE[EXTRA_KS] + "  postBuild:\n    substitute:\n      NAME: Plex\n"
    cm = TREE[EXTRA_CM].replace(
        "MODE: one",
        'MODE: "${NAME^^}|${NAME:+set}|${EMPTY=dflt}|$${NAME}|$$HOME"',
    )
    second = "kubernetes/apps/media/extra/app/second.yaml"
    kept = (
        TREE[second]
        .replace(
            "  name: extra-second\n",
            f"  name: extra-second\n  labels:\n    {DISABLED}\n",
        )
        .replace("X: '1'", "X: ${NAME}")
    )
    lab.push({EXTRA_KS: vars_ks, EXTRA_CM: cm, second: kept}, "extra: envsubst forms")
    lab.twin.reconcile_now()
    assert ready(lab.ks("media", "extra"))["status"] == "True"
    live = lab.world.store.get(CM_RT, "media", "extra-settings")
    # `:+` gives the value itself when set, `=` takes the default for an unset one
    assert live["data"]["MODE"] == "PLEX|Plex|dflt|${NAME}|$HOME"
    assert lab.world.store.get(CM_RT, "media", "extra-second")["data"]["X"] == "${NAME}"
    broken = TREE[EXTRA_CM].replace("MODE: one", 'MODE: "${NAME-d}"')
    lab.push({EXTRA_CM: broken}, "extra: a form envsubst does not know")
    lab.twin.reconcile_now()
    cond = ready(lab.ks("media", "extra"))
    assert (cond["reason"], cond["message"]) == (
        "BuildFailed",
        "post build failed for 'extra-settings': envsubst error: variable substitution "
        "failed: missing closing brace",
    )


def test_events_fold_repeats_like_client_go(lab: Lab) -> None:
    events = FluxEvents(lab.world.store)
    ks = lab.ks("media", "extra")
    for _ in range(3):
        events.emit(ks, "Normal", "DependencyNotReady", "retrying in 30s", revision="main@x")
    events.emit(ks, "Warning", "BuildFailed", "boom")
    mine = [
        e
        for e in lab.world.store.list(EVENT_RT, "media")[0]
        if e["message"] in ("retrying in 30s", "boom")
    ]
    assert sorted((e["reason"], e["count"]) for e in mine) == [
        ("BuildFailed", 1),
        ("DependencyNotReady", 3),
    ]
    # the spam filter: 25 Events about one object at once, the rest dropped
    plex_ks = lab.ks("media", "plex")
    for i in range(30):
        events.emit(plex_ks, "Normal", "Chatty", f"message {i}")
    chatty = [e for e in lab.world.store.list(EVENT_RT, "media")[0] if e["reason"] == "Chatty"]
    assert len(chatty) == 25
    folded = next(e for e in mine if e["reason"] == "DependencyNotReady")
    assert folded["metadata"]["annotations"] == {"kustomize.toolkit.fluxcd.io/revision": "main@x"}
    assert folded["involvedObject"]["kind"] == "Kustomization"
    # the twin's own: the first pass applied the tree, so plex has its change set
    plex = [
        e
        for e in lab.world.store.list(EVENT_RT, "media")[0]
        if e["involvedObject"]["name"] == "plex" and e["involvedObject"]["kind"] == "Kustomization"
    ]
    assert {"Progressing", "ReconciliationSucceeded"} <= {e["reason"] for e in plex}
    assert all(e["reportingComponent"] == "kustomize-controller" for e in plex)
    release = [  # and helm-controller's, about the HelmRelease it installed
        e
        for e in lab.world.store.list(EVENT_RT, "media")[0]
        if e["involvedObject"]["kind"] == "HelmRelease"
    ]
    assert [(e["type"], e["reason"], e["reportingComponent"]) for e in release] == [
        ("Normal", "InstallSucceeded", "helm-controller")
    ]
    assert release[0]["message"] == (
        "Helm install succeeded for release media/plex.v1 with chart app-template@4.3.0"
    )
