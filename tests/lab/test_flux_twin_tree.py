"""The lab's Flux twin on a small Dapper-shaped tree, driven through Git like the real thing.

Every change reaches the twin as a commit made in the lab's scratch clone and pushed to
its bare remote (GitRepo.commit + push), and SOPS secrets are really encrypted to the
LAB-ONLY key, so the whole path (Git, fluxtree, sops, store) is exercised.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from dapper.backends.clients.gitrepo import GitRepo
from dapper.backends.sops.file import encrypt_documents
from dapper.backends.sops.keys import read_identity_file
from dapper.backends.sops.rules import find_creation_rule
from dapper.lab.flux_twin import GIT_RT, HR_RT, KS_RT, FluxTwin
from dapper.lab.git_remote import LabGitRemote
from dapper.lab.kinds import by_kind
from dapper.lab.world import Timings, World, pod_gpu_request

from tests.waiting import eventually

MAIN = Path(__file__).resolve().parents[2]
KEY_FILE = MAIN / "lab" / "keys" / "lab-only.agekey.txt"
SIG = pygit2.Signature("Lab Tester", "tester@lab.invalid")
SECRET_RT = by_kind("", "Secret")
CM_RT = by_kind("", "ConfigMap")
POD_RT = by_kind("", "Pod")

KS_HEAD = """apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: {ns}
spec:
  interval: 30m
  path: {path}
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
    namespace: flux-system
"""


def _ks(name: str, ns: str, path: str, extra: str = "") -> str:
    return KS_HEAD.format(name=name, ns=ns, path=path) + extra


TREE: dict[str, str] = {
    "kubernetes/flux/cluster/ks.yaml": _ks("cluster-meta", "flux-system", "./kubernetes/flux/meta")
    + "---\n"
    + _ks(
        "cluster-apps",
        "flux-system",
        "./kubernetes/apps",
        "  dependsOn:\n    - name: cluster-meta\n",
    ),
    "kubernetes/flux/meta/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\nresources:\n  - ./repos.yaml\n",
    "kubernetes/flux/meta/repos.yaml": """apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: nvidia-device-plugin
  namespace: flux-system
spec:
  interval: 1h
  url: https://nvidia.github.io/k8s-device-plugin
""",
    "kubernetes/apps/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\nresources:\n  - ./kube-system\n  - ./media\n",
    "kubernetes/apps/kube-system/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: kube-system\nresources:\n  - ./nvidia-device-plugin/ks.yaml\n"
    ),
    "kubernetes/apps/kube-system/nvidia-device-plugin/ks.yaml": _ks(
        "nvidia-device-plugin",
        "kube-system",
        "./kubernetes/apps/kube-system/nvidia-device-plugin/app",
        "  targetNamespace: kube-system\n",
    ),
    "kubernetes/apps/kube-system/nvidia-device-plugin/app/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ./helmrelease.yaml\n"
    ),
    "kubernetes/apps/kube-system/nvidia-device-plugin/app/helmrelease.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: nvidia-device-plugin
spec:
  interval: 30m
  chart:
    spec:
      chart: nvidia-device-plugin
      version: 0.17.4
      sourceRef:
        kind: HelmRepository
        name: nvidia-device-plugin
        namespace: flux-system
  values:
    runtimeClassName: nvidia
    nodeSelector:
      nvidia.feature.node.kubernetes.io/gpu: "true"
""",
    "kubernetes/apps/media/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\nnamespace: media\n"
    "resources:\n  - ./namespace.yaml\n  - ./plex/ks.yaml\n  - ./extra/ks.yaml\n",
    "kubernetes/apps/media/namespace.yaml": "apiVersion: v1\nkind: Namespace\n"
    "metadata:\n  name: media\n",
    "kubernetes/apps/media/plex/ks.yaml": _ks(
        "plex",
        "media",
        "./kubernetes/apps/media/plex/app",
        "  targetNamespace: media\n  dependsOn:\n    - name: nvidia-device-plugin\n"
        "      namespace: kube-system\n  postBuild:\n    substitute:\n      APP: plex\n"
        "  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n",
    ),
    "kubernetes/apps/media/plex/app/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        "  - ./ocirepository.yaml\n  - ./helmrelease.yaml\n  - ./secret.sops.yaml\n"
        "  - ./pvc.yaml\n"
    ),
    "kubernetes/apps/media/plex/app/ocirepository.yaml": """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: app-template
spec:
  interval: 1h
  ref:
    tag: 4.3.0
  url: oci://ghcr.io/bjw-s-labs/helm/app-template
""",
    "kubernetes/apps/media/plex/app/helmrelease.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: ${APP}
spec:
  interval: 30m
  chartRef:
    kind: OCIRepository
    name: app-template
  values:
    controllers:
      plex:
        containers:
          app:
            image:
              repository: ghcr.io/home-operations/plex
              tag: 1.42.1
            resources:
              limits:
                nvidia.com/gpu: 2
""",
    "kubernetes/apps/media/plex/app/pvc.yaml": """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: plex-config
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 10Gi
""",
    "kubernetes/apps/media/extra/ks.yaml": _ks(
        "extra",
        "media",
        "./kubernetes/apps/media/extra/app",
        "  targetNamespace: media\n  dependsOn:\n    - name: plex\n",
    ),
    "kubernetes/apps/media/extra/app/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ./configmap.yaml\n  - ./second.yaml\n"
    ),
    "kubernetes/apps/media/extra/app/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\n"
    "metadata:\n  name: extra-settings\ndata:\n  MODE: one\n",
    "kubernetes/apps/media/extra/app/second.yaml": "apiVersion: v1\nkind: ConfigMap\n"
    "metadata:\n  name: extra-second\ndata:\n  X: '1'\n",
}
SECRET_PATH = "kubernetes/apps/media/plex/app/secret.sops.yaml"


def _secret_text(root: Path, claim: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "plex-secret"},
        "type": "Opaque",
        "stringData": {"PLEX_CLAIM": claim},
    }
    return encrypt_documents([doc], find_creation_rule(root, SECRET_PATH))


@dataclass
class Lab:
    world: World
    remote: LabGitRemote
    twin: FluxTwin
    scratch: GitRepo

    def push(self, changes: dict[str, str | None], message: str) -> str:
        """Commit file changes in the scratch clone and push them to the lab remote."""
        root = Path(self.remote.scratch_path)
        for rel, text in changes.items():
            path = root / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        sha = self.scratch.commit(list(changes), message, signature=SIG)
        self.scratch.push()
        return sha

    def ks(self, ns: str, name: str) -> dict:
        return self.world.store.get(KS_RT, ns, name)


def ready(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def make_lab(tmp_path: Path, **twin_kw) -> Lab:
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copy(MAIN / ".sops.yaml", seed / ".sops.yaml")
    for rel, text in TREE.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    (seed / SECRET_PATH).write_text(_secret_text(seed, "claim-one"))
    repo = pygit2.init_repository(str(seed), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    repo.create_commit("HEAD", SIG, SIG, "seed tree\n", repo.index.write_tree(), [])
    remote = LabGitRemote.create(seed, tmp_path / "lab")
    world = World(timings=Timings(reconcile_interval=300.0, reconcile_delay=0.01))
    twin = FluxTwin(world, remote, read_identity_file(KEY_FILE), poll_interval=0.05, **twin_kw)
    # plex decrypts with its own namespace's copy of the key (the real tree's common
    # component puts one in every namespace)
    world.ensure_namespace("media")
    world.store.upsert(media_sops_age(), rt=SECRET_RT)
    return Lab(world, remote, twin, GitRepo.open(remote.scratch_path))


def media_sops_age(text: str | None = None) -> dict:
    key = KEY_FILE.read_text() if text is None else text
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": "media", "name": "sops-age"},
        "data": {"age.agekey": base64.b64encode(key.encode()).decode()},
    }


@contextlib.contextmanager
def started_lab(tmp_path: Path) -> Iterator[Lab]:
    """A twin that has made its first pass; everything it holds goes at the end."""
    made = make_lab(tmp_path)
    try:
        made.twin.start()
        made.twin.reconcile_now()
        yield made
    finally:
        made.twin.stop()
        made.world.close()
        made.remote.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with started_lab(tmp_path) as made:
        yield made


ALL = [
    ("flux-system", "flux-system"),
    ("flux-system", "cluster-meta"),
    ("flux-system", "cluster-apps"),
    ("kube-system", "nvidia-device-plugin"),
    ("media", "plex"),
    ("media", "extra"),
]


def test_reconciles_in_dependency_order_with_flux_statuses(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    became_ready: list[tuple[str, str]] = []

    def listen(event) -> None:
        if event.key[:2] == (KS_RT.group, KS_RT.plural):
            conds = (event.obj.get("status") or {}).get("conditions") or []
            key = (event.key[2], event.key[3])
            ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            if ok and key not in became_ready:
                became_ready.append(key)

    lab.world.store.add_listener(listen)
    try:
        lab.twin.start()
        lab.twin.reconcile_now()
        _, sha = lab.remote.head()
        rev = f"main@sha1:{sha}"
        assert sorted(became_ready) == sorted(ALL)
        pos = {k: i for i, k in enumerate(became_ready)}
        assert pos[("flux-system", "cluster-meta")] < pos[("flux-system", "cluster-apps")]
        assert pos[("kube-system", "nvidia-device-plugin")] < pos[("media", "plex")]
        assert pos[("media", "plex")] < pos[("media", "extra")]
        for ns, name in ALL:
            ks = lab.ks(ns, name)
            cond = ready(ks)
            assert (cond["status"], cond["reason"]) == ("True", "ReconciliationSucceeded")
            assert cond["message"] == f"Applied revision: {rev}"
            assert ks["status"]["lastAppliedRevision"] == rev
            assert ks["status"]["lastAttemptedRevision"] == rev
            assert ks["status"]["observedGeneration"] == ks["metadata"]["generation"]
            assert all(c["type"] != "Reconciling" for c in ks["status"]["conditions"])
        git = lab.world.store.get(GIT_RT, "flux-system", "flux-system")
        assert git["status"]["artifact"]["revision"] == rev
        assert git["spec"]["url"] == lab.remote.url
        entries = {e["id"] for e in lab.ks("media", "plex")["status"]["inventory"]["entries"]}
        assert "media_plex_helm.toolkit.fluxcd.io_HelmRelease" in entries
        assert "media_plex-secret__Secret" in entries
        hr = lab.world.store.get(HR_RT, "media", "plex")
        assert ready(hr)["message"] == (
            "Helm install succeeded for release media/plex.v1 with chart app-template@4.3.0"
        )
        assert hr["status"]["lastAttemptedRevision"] == "4.3.0"
        pvc = lab.world.store.get(by_kind("", "PersistentVolumeClaim"), "media", "plex-config")
        assert pvc["status"]["phase"] == "Bound"
        # a pass with nothing new changes no condition's lastTransitionTime
        before = ready(lab.ks("media", "plex"))["lastTransitionTime"]
        lab.twin.reconcile_now()
        assert ready(lab.ks("media", "plex"))["lastTransitionTime"] == before
    finally:
        lab.world.store.remove_listener(listen)
        lab.twin.stop()
        lab.world.close()
        lab.remote.close()


def test_gpu_release_runs_on_the_gpu_node(lab: Lab) -> None:
    pods, _ = lab.world.store.list(POD_RT, "media")
    plex = [p for p in pods if p["metadata"]["name"].startswith("plex-")]
    assert len(plex) == 1
    pod = plex[0]
    assert pod_gpu_request(pod) == 2
    assert pod["spec"]["nodeName"] == "talos-node-gpu-1"
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    plugin = [
        p
        for p in lab.world.store.list(POD_RT, "kube-system")[0]
        if p["metadata"]["name"].startswith("nvidia-device-plugin-")
    ]
    assert [p["spec"]["nodeName"] for p in plugin] == ["talos-node-gpu-1"]
    # the API server's defaulting: a GPU limit without a request is requested at its limit
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]


def test_pushed_secret_rotation_reaches_the_live_secret(lab: Lab) -> None:
    live = lab.world.store.get(SECRET_RT, "media", "plex-secret")
    assert base64.b64decode(live["data"]["PLEX_CLAIM"]).decode() == "claim-one"
    assert "stringData" not in live and "sops" not in live
    root = Path(lab.remote.scratch_path)
    sha = lab.push({SECRET_PATH: _secret_text(root, "claim-two")}, "rotate plex claim")
    rev = f"main@sha1:{sha}"
    # no explicit reconcile: the twin notices the remote moved
    eventually(
        lambda: lab.ks("media", "plex")["status"].get("lastAppliedRevision") == rev,
        timeout=15.0,
        message="plex to apply the new revision",
    )
    live = lab.world.store.get(SECRET_RT, "media", "plex-secret")
    assert base64.b64decode(live["data"]["PLEX_CLAIM"]).decode() == "claim-two"
    git = lab.world.store.get(GIT_RT, "flux-system", "flux-system")
    assert git["status"]["artifact"]["revision"] == rev


def test_broken_path_keeps_the_old_revision(lab: Lab) -> None:
    old = lab.ks("media", "plex")["status"]["lastAppliedRevision"]
    kfile = "kubernetes/apps/media/plex/app/kustomization.yaml"
    broken = TREE[kfile] + "  - ./missing.yaml\n"
    sha = lab.push({kfile: broken}, "break plex")
    lab.twin.reconcile_now()
    ks = lab.ks("media", "plex")
    cond = ready(ks)
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert "missing.yaml" in cond["message"]
    assert ks["status"]["lastAppliedRevision"] == old
    assert ks["status"]["lastAttemptedRevision"] == f"main@sha1:{sha}"
    # what it applied before stays; its dependent waits
    assert lab.world.store.find(HR_RT, "media", "plex") is not None
    extra = ready(lab.ks("media", "extra"))
    assert (extra["reason"], extra["message"]) == (
        "DependencyNotReady",
        "dependency 'media/plex' is not ready",
    )
    # fixing it recovers
    lab.push({kfile: TREE[kfile]}, "fix plex")
    lab.twin.reconcile_now()
    assert ready(lab.ks("media", "plex"))["status"] == "True"
    assert ready(lab.ks("media", "extra"))["status"] == "True"


def test_tampered_sops_file_is_a_decryption_failure(lab: Lab) -> None:
    root = Path(lab.remote.scratch_path)
    good = (root / SECRET_PATH).read_text()
    other = _secret_text(root, "claim-evil")
    start = other.index("PLEX_CLAIM: ")
    evil_line = other[start : other.index("\n", start)]
    s = good.index("PLEX_CLAIM: ")
    tampered = good[:s] + evil_line + good[good.index("\n", s) :]
    lab.push({SECRET_PATH: tampered}, "tamper")
    lab.twin.reconcile_now()
    ks = lab.ks("media", "plex")
    cond = ready(ks)
    # kustomize-controller has no DecryptionFailed reason: a build that cannot decrypt
    # is BuildFailed, worded by its build() and decryptor
    assert (cond["status"], cond["reason"]) == ("False", "BuildFailed")
    assert cond["message"].startswith(
        "decryption failed for 'plex-secret': failed to decrypt and format "
        "'media/plex-secret' Secret data: "
    ), cond["message"]
    retry = next(c for c in ks["status"]["conditions"] if c["type"] == "Reconciling")
    assert (retry["status"], retry["reason"]) == ("True", "ProgressingWithRetry")
    live = lab.world.store.get(SECRET_RT, "media", "plex-secret")
    assert base64.b64decode(live["data"]["PLEX_CLAIM"]).decode() == "claim-one"


def test_ks_failing_fault_is_a_failed_health_check(lab: Lab) -> None:
    lab.world.inject("ks-failing:media/plex")
    eventually(
        lambda: ready(lab.ks("media", "plex"))["status"] == "False",
        timeout=15.0,
        message="plex to fail",
    )
    cond = ready(lab.ks("media", "plex"))
    assert cond["reason"] == "HealthCheckFailed"
    assert cond["message"].startswith("health check failed after 5m0s")
    lab.world.clear("ks-failing:media/plex")
    eventually(
        lambda: ready(lab.ks("media", "plex"))["status"] == "True",
        timeout=15.0,
        message="plex to recover",
    )
    assert ready(lab.ks("media", "plex"))["reason"] == "ReconciliationSucceeded"


def _annotate(lab: Lab, ns: str, name: str, value: str) -> None:
    def edit(obj: dict) -> None:
        obj["metadata"].setdefault("annotations", {})["reconcile.fluxcd.io/requestedAt"] = value

    lab.world.store.mutate(KS_RT, ns, name, edit)


def test_requested_at_triggers_a_reconcile(lab: Lab) -> None:
    passes = lab.twin.passes
    stamp = "2025-10-06T13:31:00.123456789Z"
    _annotate(lab, "media", "plex", stamp)
    eventually(
        lambda: lab.ks("media", "plex")["status"].get("lastHandledReconcileAt") == stamp,
        timeout=15.0,
        message="the requested reconcile to be handled",
    )
    # the status is written mid-pass; the pass is counted when it ends
    eventually(lambda: lab.twin.passes > passes, timeout=15.0, message="the pass to end")
    cond = ready(lab.ks("media", "plex"))
    assert cond["status"] == "True"


def test_suspend_is_honoured(lab: Lab) -> None:
    def suspend(obj: dict) -> None:
        obj["spec"]["suspend"] = True

    lab.world.store.mutate(KS_RT, "media", "extra", suspend)
    _annotate(lab, "media", "extra", "2025-10-06T14:00:00Z")
    cfile = "kubernetes/apps/media/extra/app/configmap.yaml"
    lab.push({cfile: TREE[cfile].replace("MODE: one", "MODE: two")}, "extra: mode two")
    lab.twin.reconcile_now()
    ks = lab.ks("media", "extra")
    assert ks["spec"]["suspend"] is True  # a parent re-apply keeps what flux suspend set
    # skipped, yet finalizeStatus records the request; nothing was attempted
    assert ks["status"]["lastHandledReconcileAt"] == "2025-10-06T14:00:00Z"
    assert ks["status"]["lastAttemptedRevision"] != f"main@sha1:{lab.remote.head()[1]}"
    assert lab.world.store.get(CM_RT, "media", "extra-settings")["data"]["MODE"] == "one"

    def resume(obj: dict) -> None:
        obj["spec"].pop("suspend")

    lab.world.store.mutate(KS_RT, "media", "extra", resume)
    lab.twin.reconcile_now()
    assert lab.world.store.get(CM_RT, "media", "extra-settings")["data"]["MODE"] == "two"
    assert lab.ks("media", "extra")["status"]["lastHandledReconcileAt"] == "2025-10-06T14:00:00Z"


def test_prune_removes_what_is_no_longer_rendered(lab: Lab) -> None:
    kfile = "kubernetes/apps/media/extra/app/kustomization.yaml"
    lab.push({kfile: TREE[kfile].replace("  - ./second.yaml\n", "")}, "drop second")
    lab.twin.reconcile_now()
    assert lab.world.store.find(CM_RT, "media", "extra-second") is None
    assert lab.world.store.find(CM_RT, "media", "extra-settings") is not None
    # removing the whole app removes its Kustomization and everything it applied
    mfile = "kubernetes/apps/media/kustomization.yaml"
    lab.push({mfile: TREE[mfile].replace("  - ./extra/ks.yaml\n", "")}, "drop extra")
    lab.twin.reconcile_now()
    assert lab.world.store.find(KS_RT, "media", "extra") is None
    assert lab.world.store.find(CM_RT, "media", "extra-settings") is None
    # and a removed HelmRelease takes its workload with it
    pfile = "kubernetes/apps/media/plex/app/kustomization.yaml"
    lab.push({pfile: TREE[pfile].replace("  - ./helmrelease.yaml\n", "")}, "drop plex release")
    lab.twin.reconcile_now()
    assert lab.world.store.find(HR_RT, "media", "plex") is None
    assert lab.world.store.find(by_kind("apps", "Deployment"), "media", "plex") is None
    pods = lab.world.store.list(POD_RT, "media")[0]
    assert not [p for p in pods if p["metadata"]["name"].startswith("plex-")]


def test_scale_apps_add_synthetic_kustomizations(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, scale_apps=120)
    try:
        lab.twin.start()
        lab.twin.reconcile_now()
        items, _ = lab.world.store.list(KS_RT)
        bench = [k for k in items if k["metadata"]["name"].startswith("bench-app-")]
        assert len(bench) == 120
        assert all(ready(k)["status"] == "True" for k in bench)
        pods = [
            p
            for p in lab.world.store.list(POD_RT)[0]
            if p["metadata"]["namespace"].startswith("bench-")
        ]
        assert len(pods) == 120
        assert all(p["spec"]["nodeName"] for p in pods)
    finally:
        lab.twin.stop()
        lab.world.close()
        lab.remote.close()


def test_a_reconcile_with_nothing_new_writes_nothing(lab: Lab) -> None:
    events: list[tuple[str, tuple]] = []

    def listen(event) -> None:
        events.append((event.type, event.key))

    stamp = "2025-10-06T15:00:00Z"
    _annotate(lab, "media", "plex", stamp)
    lab.twin.reconcile_now()  # a full pass (requested), everything already applied
    lab.world.store.add_listener(listen)
    try:
        lab.twin.reconcile_now()
    finally:
        lab.world.store.remove_listener(listen)
    assert events == []
    assert lab.ks("media", "plex")["status"]["lastHandledReconcileAt"] == stamp
