"""The lab's Flux: reconciles the Kustomizations of the lab's Git remote into the store.

Like the flux-operator plus source- and kustomize-controller, it owns the GitRepository
`flux-system/flux-system` (pointing at the lab's bare remote) and the root Kustomization
`flux-system`, and applies what each Kustomization builds, parents first and in dependsOn
order, so the child Kustomizations that cluster-apps applies are reconciled in the same
pass. Statuses follow Flux: revisions `main@sha1:<sha>`, Ready/Reconciling conditions with
Flux's reasons, lastApplied/lastAttempted revisions, `lastHandledReconcileAt` echoing the
`reconcile.fluxcd.io/requestedAt` annotation, and `spec.suspend` honoured.

Each Kustomization builds from what the cluster holds when it reconciles, as
kustomize-controller does: the live object's spec (path, targetNamespace, components,
patches, commonMetadata, namePrefix/nameSuffix, images, sourceRef, as `kubectl patch`
leaves them; the tree's own build when they are what Git declares), its own
`decryption.secretRef` (every `.agekey` entry of that Secret in its namespace) and its
`postBuild` variables from the live ConfigMaps and Secrets of `substituteFrom` (a
missing one fails the build unless `optional`), substituted over each resource's whole
YAML text (flux_substitute), so a changed ConfigMap changes the next build. The running
lab seeds what a bootstrap applies before Flux (cluster-settings and cluster-secrets in
flux-system) when it is missing.
Every reconcile leaves kustomize-controller's Kubernetes Events (flux_events).

A pass runs on the twin's own thread, never under the store lock: on start, on the
reconcile interval, when the GitRepository stores a new artifact (fetched at its interval
or on request, never while suspended), when a Flux object gets a new requestedAt
annotation or spec, while health checks or Helm actions are waiting or a failed
Kustomization's retry is due, and when a `ks-failing` fault toggles. Triggers are
debounced and passes never overlap. Flux durations (interval, retryInterval, timeout)
run on a clock `time_scale` times faster than the wall (flux_health.DEFAULT_TIME_SCALE);
a settled Kustomization is re-applied (drift reverted) at its own interval on that clock.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dapper.backends.gitops.fluxtree import DependencyCycle
from dapper.backends.sops.errors import SopsError
from dapper.backends.sops.keys import parse_identities
from dapper.lab import flux_scale
from dapper.lab.flux_apply import Applier, ApplyError, encrypted_secret
from dapper.lab.flux_events import FluxEvents
from dapper.lab.flux_health import (
    DEFAULT_TIME_SCALE,
    go_string,
    live_statuses,
    seconds,
    wait_verdict,
)
from dapper.lab.flux_source import Build, FluxSource, Inputs
from dapper.lab.flux_status import (
    ARTIFACT_FAILED,
    BUILD_FAILED,
    DEPENDENCY_NOT_READY,
    HEALTH_CHECK_FAILED,
    PROGRESSING,
    PROGRESSING_WITH_RETRY,
    RECONCILIATION_FAILED,
    SUCCEEDED,
    condition,
    digest,
    drop_condition,
    inventory_id,
    is_ready,
    requested_at,
    revision,
    set_condition,
)
from dapper.lab.flux_workloads import Workloads
from dapper.lab.git_remote import LabGitRemote
from dapper.lab.kinds import FLUX_HELM, FLUX_KS, FLUX_OPERATOR, FLUX_SOURCE, by_kind
from dapper.lab.store import WatchEvent, now_rfc3339
from dapper.lab.world import World

log = logging.getLogger("dapper.lab.flux_twin")

KS_RT = by_kind(FLUX_KS, "Kustomization")
GIT_RT = by_kind(FLUX_SOURCE, "GitRepository")
HR_RT = by_kind(FLUX_HELM, "HelmRelease")
INSTANCE_RT = by_kind(FLUX_OPERATOR, "FluxInstance")
INSTANCE = ("flux-system", "flux")  # the flux-instance chart's FluxInstance
ROOT = ("flux-system", "flux-system")
SECRET_RT = by_kind("", "Secret")
CONFIGMAP_RT = by_kind("", "ConfigMap")
SOPS_AGE = ("flux-system", "sops-age")  # decryption.secretRef of every Kustomization
SOPS_AGE_KEY = "age.agekey"
ROOT_PATH = "./kubernetes/flux/cluster"
_WATCHED = {(KS_RT.group, KS_RT.plural), (GIT_RT.group, GIT_RT.plural), (HR_RT.group, HR_RT.plural)}
REQUEUE_DEPENDENCY = 30.0  # kustomize-controller's --requeue-dependency default


def go_duration(text: str, default: str = "5m0s") -> str:
    """'5m' -> '5m0s', '1h' -> '1h0m0s' (how Flux prints spec.timeout)."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text or "")
    if not text or not m:
        return default
    h, mi, s = (int(g or 0) for g in m.groups())
    total = h * 3600 + mi * 60 + s
    h, rest = divmod(total, 3600)
    mi, s = divmod(rest, 60)
    return f"{h}h{mi}m{s}s" if h else f"{mi}m{s}s"


@dataclass
class HealthWait:
    """A Kustomization whose health check is running (the reconcile is not over)."""

    namespace: str
    name: str
    generation: int
    req: str
    rev: str
    entries: list[dict[str, str]]
    checks: list[dict[str, str]]
    began: float
    deadline: float


def _same_source(spec: dict[str, Any], ns: str, other: dict[str, Any]) -> bool:
    mine, theirs = spec.get("sourceRef") or {}, (other.get("spec") or {}).get("sourceRef") or {}
    other_ns = other["metadata"]["namespace"]
    return (
        mine.get("kind") == theirs.get("kind")
        and mine.get("name") == theirs.get("name")
        and (mine.get("namespace") or ns) == (theirs.get("namespace") or other_ns)
    )


class FluxTwin:
    """See the module docstring. `start()` once, `stop()` once."""

    def __init__(
        self,
        world: World,
        remote: LabGitRemote,
        identities: Iterable[Any],
        *,
        scale_apps: int = 0,
        scale_replicas: list[int] | None = None,
        poll_interval: float = 0.2,
        time_scale: float = DEFAULT_TIME_SCALE,
        await_instance: bool = False,
        strict_substitutions: bool = False,
    ) -> None:
        self.world = world
        # a cluster being bootstrapped (stage bare): Flux is not installed until the
        # FluxInstance flux-system/flux exists; until then the twin does nothing
        self.await_instance = await_instance
        self._installed = False
        self.store = world.store
        self.remote = remote
        self._seed_keys = [str(i) for i in identities]  # the sops-age Secret's first content
        self.source = FluxSource(str(remote.bare_path), self.live_identities)
        self.workloads = Workloads(world)
        self.time_scale = time_scale
        self.events = FluxEvents(self.store, enabled=world.timings.flux_events)
        self.applier = Applier(world, self.workloads, time_scale, self.events)
        # kustomize-controller's StrictPostBuildSubstitutions feature gate (off by default)
        self.strict_substitutions = strict_substitutions
        self._seeded = False  # cluster-settings and cluster-secrets in flux-system
        self._keys: dict[tuple[tuple[str, str], ...], list[Any]] = {}  # parsed .agekey data
        self._began: dict[tuple[str, str], float] = {}  # the running reconcile's start
        self._health: dict[tuple[str, str], HealthWait] = {}
        # a failed Kustomization is tried again at its retryInterval (DependencyNotReady:
        # the controller's 30s requeue), or sooner on a new revision, spec or request
        self._retry: dict[tuple[str, str], tuple[float, tuple[str, int, str]]] = {}
        self._nudge = False
        self._applied_at: dict[tuple[str, str], float] = {}  # last reconcile's end
        self._due: list[tuple[float, str, str]] = []  # (interval up at, ns, name), a heap
        self._pass_began = 0.0
        # the GitRepository's artifact: what Kustomizations build, fetched from the remote
        # at the source's interval, on a requestedAt, or when a test forces it
        self.artifact: tuple[str, str] | None = None
        self._next_fetch = 0.0
        self._force_fetch = False
        self.scale_apps = scale_apps
        self.scale_replicas = scale_replicas or [1] * scale_apps  # per synthetic app
        self.poll_interval = poll_interval
        self.last_error = ""
        self.last_duration = 0.0
        self.revision = ""
        self._cv = threading.Condition()
        self._pending = False
        self._stopping = False
        self._started = 0  # passes begun
        self._finished = 0  # passes ended
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._synthetic: dict[tuple[str, str], Build] = {}
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Create the Flux source and root objects and begin reconciling (again, after a
        stop: a test stops Flux to hold a runbook in its wait, then lets it answer)."""
        with self._cv:
            self._stopping = False
        self.world.flux_events = self.world.timings.flux_events
        if not self.await_instance:
            self._install()
        self.store.add_listener(self._on_event)
        self.world.on_fault(self._on_fault)
        self._thread = threading.Thread(target=self._run, name="lab-flux-twin", daemon=True)
        self._thread.start()

    def _install(self) -> None:
        """What the flux-operator does for its FluxInstance: the source and the root
        Kustomization of the cluster's repository (the sops-age Secret too in the running
        lab; a bootstrap creates its own)."""
        self.world.ensure_namespace("flux-system")
        if not self.await_instance:
            self._seed_sops_age()
        self.store.upsert(self._git_repository(), rt=GIT_RT)
        self.store.upsert(self._root_kustomization(), rt=KS_RT)
        for ns in flux_scale.namespaces(self.scale_apps):
            self.world.ensure_namespace(ns)
        for obj in flux_scale.kustomizations(self.scale_apps):
            self.store.upsert(obj, rt=KS_RT)
        self._installed = True

    def _instance_present(self) -> bool:
        """Installed already, or the FluxInstance has just appeared (then install)."""
        if self._installed:
            return True
        if self.store.find(INSTANCE_RT, *INSTANCE, copy=False) is None:
            return False
        self._install()
        return True

    def _instance_status(self) -> None:
        """The FluxInstance reports Ready once the root Kustomization is (its first sync)."""
        live = self.store.find(INSTANCE_RT, *INSTANCE, copy=False)
        root = self.store.find(KS_RT, *ROOT, copy=False)
        if live is None or root is None:
            return
        ready = is_ready(root)
        want = ("True", "ReconciliationSucceeded") if ready else ("False", "Progressing")
        conds = (live.get("status") or {}).get("conditions") or []
        now = next((c for c in conds if c.get("type") == "Ready"), {})
        if (now.get("status"), now.get("reason")) == want:
            return
        message = (
            f"Reconciliation finished in 1s, revision {self.revision}"
            if ready
            else "Reconciliation in progress"
        )

        def edit(o: dict[str, Any]) -> None:
            status = o.setdefault("status", {})
            set_condition(status, "Ready", want[0], want[1], message)
            status["lastAppliedRevision"] = self.revision

        self.store.mutate(INSTANCE_RT, *INSTANCE, edit, status_only=True)

    # -- decryption keys: the live sops-age Secret, as kustomize-controller reads it -------

    def _seed_sops_age(self) -> None:
        """Create flux-system/sops-age from the seed keys unless it exists (lab start)."""
        if self.store.find(SECRET_RT, *SOPS_AGE) is not None or not self._seed_keys:
            return
        text = "".join(k + "\n" for k in self._seed_keys)
        self.store.upsert(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"namespace": SOPS_AGE[0], "name": SOPS_AGE[1]},
                "type": "Opaque",
                "data": {SOPS_AGE_KEY: base64.b64encode(text.encode()).decode()},
            },
            rt=SECRET_RT,
        )

    def live_identities(self) -> list[Any]:
        """The age identities in the live flux-system/sops-age Secret (what the tree's own
        parse decrypts with; each Kustomization builds with its own, `identities_in`)."""
        return self.identities_in(*SOPS_AGE)

    def identities_in(self, namespace: str, name: str) -> list[Any]:
        """The age identities of a live Secret, from every `.agekey` entry as
        kustomize-controller's ImportKeys takes them (none when it is missing)."""
        obj = self.store.find(SECRET_RT, namespace, name, copy=False) or {}
        data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
        for k, v in (obj.get("stringData") or {}).items():  # as the API server folds it
            data[str(k)] = base64.b64encode(str(v).encode()).decode()
        entries = tuple(sorted((k, v) for k, v in data.items() if k.endswith(".agekey") and v))
        hit = self._keys.get(entries)
        if hit is not None:
            return hit
        out: list[Any] = []
        for key, raw in entries:
            try:
                out += parse_identities(base64.b64decode(raw).decode(), f"secret {name} {key}")
            except (SopsError, ValueError):
                log.info("the live Secret %s/%s's %s holds no usable age key", namespace, name, key)
        if len(self._keys) > 64:
            self._keys.clear()
        self._keys[entries] = out
        return out

    def _inputs(self, obj: dict[str, Any]) -> Inputs:
        """What kustomize-controller reads from the cluster to build `obj` (the live
        Kustomization): its own decryption keys and its postBuild variables."""
        ns, spec = obj["metadata"]["namespace"], obj.get("spec") or {}
        identities = None
        decryption = spec.get("decryption")
        if isinstance(decryption, dict):
            ref = (decryption.get("secretRef") or {}).get("name")
            identities = tuple(self.identities_in(ns, str(ref))) if ref else ()
        return Inputs(identities, self._variables(ns, spec), self.strict_substitutions)

    def _variables(self, ns: str, spec: dict[str, Any]) -> dict[str, str] | str | None:
        """fluxcd/pkg kustomize's LoadVariables: the data of each substituteFrom
        ConfigMap and Secret (newlines dropped), read live from the Kustomization's
        namespace, then postBuild.substitute over them; a missing one that is not
        optional is the error text. None without spec.postBuild."""
        post = spec.get("postBuild")
        if not isinstance(post, dict):
            return None
        out: dict[str, str] = {}
        for ref in post.get("substituteFrom") or []:
            kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
            if kind not in ("ConfigMap", "Secret"):
                continue
            rt = CONFIGMAP_RT if kind == "ConfigMap" else SECRET_RT
            live = self.store.find(rt, ns, name, copy=False)
            if live is None:
                if ref.get("optional"):
                    continue
                return f"substitute from '{kind}/{name}' error: {rt.plural} \"{name}\" not found"
            for key, value in (live.get("data") or {}).items():
                text = str(value)
                if kind == "Secret":
                    with contextlib.suppress(ValueError, UnicodeDecodeError):
                        text = base64.b64decode(text).decode()
                out[str(key)] = text.replace("\n", "")
            if kind == "Secret":  # a real API server has folded it into data; the lab's
                for key, value in (live.get("stringData") or {}).items():  # API keeps it
                    out[str(key)] = str(value).replace("\n", "")
        for key, value in (post.get("substitute") or {}).items():
            out[str(key)] = str(value).replace("\n", "")
        return out

    def _seed_bootstrap_objects(self, snap: Any) -> None:
        """The running lab stands for a bootstrapped cluster: what the bootstrap applies
        into flux-system before Flux starts (cluster-settings, cluster-secrets) exists,
        from the tree, unless it does already. A bare lab's bootstrap applies its own."""
        self._seeded = True
        for obj in self.source.seed_objects(snap, ROOT[0]):
            rt = SECRET_RT if obj["kind"] == "Secret" else CONFIGMAP_RT
            if self.store.find(rt, ROOT[0], obj["metadata"]["name"], copy=False) is not None:
                continue
            if rt is SECRET_RT:
                data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
                for k, v in (obj.pop("stringData", None) or {}).items():
                    data[str(k)] = base64.b64encode(str(v).encode()).decode()
                obj["data"] = data
                obj.setdefault("type", "Opaque")
            self.store.upsert(obj, rt=rt)

    def _decryption_problem(self, ns: str, spec: dict[str, Any]) -> str:
        """kustomize-controller's ImportKeys: the Kustomization's own decryption Secret
        must exist in its namespace."""
        ref = ((spec.get("decryption") or {}).get("secretRef") or {}).get("name")
        if not ref or self.store.find(SECRET_RT, ns, str(ref), copy=False) is not None:
            return ""
        provider = (spec.get("decryption") or {}).get("provider") or "sops"
        return f"cannot get {provider} decryption Secret '{ns}/{ref}': secrets \"{ref}\" not found"

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self.store.remove_listener(self._on_event)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def request(self) -> None:
        """Ask for a pass soon (debounced)."""
        with self._cv:
            self._pending = True
            self._cv.notify_all()

    def reconcile_now(self, timeout: float = 30.0, *, with_source: bool = True) -> None:
        """Trigger a pass and wait until one that began after this call has finished;
        `with_source` fetches the remote's head first (unless the GitRepository is
        suspended), as `flux reconcile ks flux-system --with-source` would."""
        with self._cv:
            target = self._started + 1
            self._force_fetch = self._force_fetch or with_source
            self._pending = True
            self._cv.notify_all()
            ok = self._cv.wait_for(
                lambda: self._finished >= target or self._stopping, timeout=timeout
            )
        if not ok:
            raise TimeoutError(f"no Flux twin reconcile finished within {timeout}s")

    def settle(self, timeout: float = 60.0) -> bool:
        """Reconcile until Flux has settled: True once every Kustomization is Ready except
        one a `ks-failing` fault fails and those waiting on it; False at `timeout`, or once
        no health check or retry is pending and two passes left the same statuses. What a
        one-shot reader (`status`) and the console's pictures must see, not the cluster
        half way: on a loaded machine a first health check can time out (the Flux clock
        runs 30x) and pass on retry, as on a real cluster."""
        deadline = time.monotonic() + timeout
        failing = {f.split(":", 1)[1] for f in self.world.faults if f.startswith("ks-failing:")}
        last: tuple[tuple[str, str, str], ...] | None = None
        while True:
            try:
                self.reconcile_now(timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:  # a pass outlasted the deadline: not settled, as documented
                return False
            with self.world.lock:
                items = self.store.list(KS_RT)[0]
                busy = bool(self._health) or bool(self._retry)
            statuses = tuple(sorted(_ready_line(ks) for ks in items))
            if all(_settled(line, failing) for line in statuses):
                return True
            if (not busy and statuses == last) or time.monotonic() >= deadline:
                return False
            last = None if busy else statuses
            time.sleep(0.2)

    def unsettled(self) -> str:
        """The Kustomizations not Ready, with their messages: why `settle` said False."""
        with self.world.lock:
            lines = sorted(_ready_line(ks) for ks in self.store.list(KS_RT)[0])
        return "; ".join(f"{key}: {msg}" for key, status, msg in lines if status != "True")

    @property
    def passes(self) -> int:
        return self._finished

    # -- triggers -----------------------------------------------------------------------

    def _on_event(self, event: WatchEvent) -> None:
        """Store listener (under the store lock): note new requests and specs, no work."""
        if (event.key[0], event.key[1]) not in _WATCHED:
            return
        if event.type == "DELETED":
            self._seen.pop(event.key, None)
            self._retry.pop((event.key[2], event.key[3]), None)
            return
        meta = event.obj.get("metadata") or {}
        token = (requested_at(event.obj), int(meta.get("generation") or 0))
        old = self._seen.get(event.key)
        if old == token:
            return
        self._seen[event.key] = token
        if old is not None or token[0]:
            self.request()

    def _on_fault(self, fault: str, _active: bool) -> None:
        if fault.startswith(("ks-failing:", "pool-degraded:")) and not self._stopping:
            self._retry.clear()  # the lab's fault switch acts now, not at the retry interval
            self._applied_at.clear()  # nor at the drift interval
            self.request()

    def _interval_due(self, key: tuple[str, str], spec: dict[str, Any]) -> bool:
        every = seconds(spec.get("interval"), 600.0) / self.time_scale
        return time.monotonic() - self._applied_at.get(key, 0.0) >= every

    def _fetched_new(self) -> bool:
        """Fetch if the source's interval is up; True when the artifact moved."""
        if time.monotonic() < self._next_fetch:
            return False
        before = self.artifact
        try:
            self._fetch()
        except Exception:  # the store or remote is closing; the next pass reports it
            log.debug("fetching the lab remote failed", exc_info=True)
            return False
        return self.artifact != before

    def _interval_up(self) -> bool:
        """A settled Kustomization's interval has come (popped: once per due time). At
        most one such pass a second: at scale, due times spread over a pass's length
        would otherwise start a pass per poll."""
        now = time.monotonic()
        if not self._due or self._due[0][0] > now or now - self._pass_began < 1.0:
            return False
        while self._due and self._due[0][0] <= now:
            heapq.heappop(self._due)
        return True

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(at <= now for at, _token in list(self._retry.values()))

    def _run(self) -> None:
        interval = max(self.world.timings.reconcile_interval, 0.05)
        next_periodic = 0.0
        while True:
            with self._cv:
                if not self._pending and not self._stopping:
                    self._cv.wait(self.poll_interval)
                if self._stopping:
                    return
                triggered = self._pending
            periodic = time.monotonic() >= next_periodic
            waiting = (
                bool(self._health)
                or self._nudge
                or self.applier.releases.waiting()
                or self._retry_due()
                or self._interval_up()
            )
            if self.await_instance and not self._instance_present():
                continue
            if not (triggered or periodic or waiting or self._fetched_new()):
                continue
            if triggered:
                with self._cv:  # debounce: let a burst of annotations coalesce
                    self._cv.wait(self.world.timings.reconcile_delay)
                    if self._stopping:
                        return
            with self._cv:
                self._pending = False
                self._nudge = False
                self._started += 1
            began = self._pass_began = time.monotonic()
            try:
                self._pass()
                self.last_error = ""
            except Exception as exc:  # a broken pass must not stop the twin
                log.exception("Flux twin reconcile failed")
                self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.last_duration = time.monotonic() - began
            if triggered or periodic:  # a health tick leaves the interval alone
                next_periodic = time.monotonic() + interval
            if self.await_instance:
                try:
                    self._instance_status()
                except Exception:  # the store is closing
                    log.debug("FluxInstance status failed", exc_info=True)
            with self._cv:
                self._finished += 1
                self._cv.notify_all()

    # -- one pass -------------------------------------------------------------------------

    def _pass(self) -> None:
        self.workloads.begin_pass()
        self.applier.releases.tick()
        self._sources_handled()
        self._fetch()
        if self.artifact is None:
            return
        branch, sha = self.artifact
        rev = revision(branch, sha)
        self.revision = rev
        snap = self.source.snapshot(branch, sha)
        if self._stopping:
            return
        if not self._seeded and not self.await_instance:
            self._seed_bootstrap_objects(snap)
        try:
            order = snap.tree.dependency_order()
        except DependencyCycle:
            order = list(snap.tree.kustomizations)
        done: set[tuple[str, str]] = set()
        for fks in order:
            if self._stopping:  # stop() must not wait for a whole pass
                return
            done.add(fks.key)
            obj = self.store.find(KS_RT, fks.namespace, fks.name, copy=False)  # read-only
            if obj is not None:  # built from the live spec (the tree's build when the same)
                self._reconcile(
                    obj,
                    rev,
                    lambda live, fks=fks: self.source.build_live(
                        snap, live, fks, self._inputs(live)
                    ),
                )
        rest, _ = self.store.list(KS_RT, copy=False)  # read-only, as above
        for obj in rest:
            if self._stopping:
                return
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if key in done:
                continue
            self._reconcile(obj, rev, lambda live, key=key: self._other_build(live, key, snap))

    def _other_build(self, obj: dict[str, Any], key: tuple[str, str], snap: Any) -> Build:
        """Synthetic benchmark apps build from a generator; anything else (created by
        hand, or left behind by a parent that does not prune) from its live spec."""
        if (obj["metadata"].get("labels") or {}).get(flux_scale.SYNTHETIC_LABEL) == "true":
            hit = self._synthetic.get(key)
            if hit is None:
                replicas = self.scale_replicas[flux_scale.index_of(key[1])]
                hit = self._synthetic[key] = Build(flux_scale.objects(*key, replicas=replicas))
            return hit
        return self.source.build_live(snap, obj, None, self._inputs(obj))

    def _reconcile(
        self, obj: dict[str, Any], rev: str, build_fn: Callable[[dict[str, Any]], Build]
    ) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        status = obj.get("status") or {}
        ns, name = meta["namespace"], meta["name"]
        generation = int(meta.get("generation") or 1)
        req = requested_at(obj)
        if spec.get("suspend"):
            self._retry.pop((ns, name), None)
            # skipped, but finalizeStatus still runs: the request is handled and a Ready
            # object observes its new generation (`flux suspend` made one)
            asked = bool(req) and status.get("lastHandledReconcileAt") != req
            observe = is_ready(obj) and status.get("observedGeneration") != generation
            if asked or observe:
                self._finalize_suspended(ns, name, req, generation)
            return
        wait = self._health.get((ns, name))
        if wait is not None:  # the worker is busy with its health check until it ends
            self._check_health(wait)
            return
        gate = self._retry.get((ns, name))
        fresh = gate is not None and gate[1] == (rev, generation, req)
        if fresh and not is_ready(obj) and time.monotonic() < gate[0]:
            return  # requeued for later: nothing new to act on yet
        self._retry.pop((ns, name), None)
        failing = self.world.failing_kustomization(ns, name)
        settled = (
            status.get("lastAppliedRevision") == rev
            and status.get("lastAttemptedRevision") == rev
            and status.get("observedGeneration") == generation
            and (not req or status.get("lastHandledReconcileAt") == req)
            and is_ready(obj)
            and not failing
        )
        if settled and not self._interval_due((ns, name), spec):
            return  # drift is corrected at the Kustomization's own interval
        self._began[(ns, name)] = time.monotonic()
        unsourced = self._source_problem(ns, spec)
        if unsourced:  # before dependencies, as the controller resolves the source first
            self._finish(ns, name, generation, req, None, "False", ARTIFACT_FAILED, unsourced)
            return
        blocked = self._dependency_problem(ns, spec, rev)
        if blocked:
            self._finish(ns, name, generation, req, None, "False", DEPENDENCY_NOT_READY, blocked)
            return
        timeout = go_duration(str(spec.get("timeout") or ""))
        if not settled:
            message = f"Fetching manifests for revision {rev} with a timeout of {timeout}"

            def progress(o: dict[str, Any]) -> None:
                st = o.setdefault("status", {})
                set_condition(st, "Reconciling", "True", PROGRESSING, message, generation)
                set_condition(
                    st, "Ready", "Unknown", PROGRESSING, "Reconciliation in progress", generation
                )

            self.store.mutate(KS_RT, ns, name, progress, status_only=True)
        missing = self._decryption_problem(ns, spec)
        build = Build(reason=BUILD_FAILED, message=missing) if missing else build_fn(obj)
        if build.reason:
            attempted = None if build.reason == ARTIFACT_FAILED else rev
            self._finish(ns, name, generation, req, attempted, "False", build.reason, build.message)
            return
        encrypted = encrypted_secret(build.objects)
        if encrypted:  # kustomize-controller's apply() refuses before applying anything
            self._finish(ns, name, generation, req, rev, "False", RECONCILIATION_FAILED, encrypted)
            return
        try:
            entries = self.applier.apply(obj, build.objects)
        except ApplyError as exc:
            self._finish(ns, name, generation, req, rev, "False", RECONCILIATION_FAILED, str(exc))
            return
        if self.applier.changes:
            self.events.emit(
                obj, "Normal", PROGRESSING, "\n".join(self.applier.changes), revision=rev
            )
        if spec.get("prune"):
            old = ((status.get("inventory") or {}).get("entries")) or []
            keep = {e["id"] for e in entries}
            self.applier.prune([e for e in old if e["id"] not in keep], owner=(ns, name))
        if failing:
            waiting = [
                e["id"].split("_")
                for e in entries
                if e["id"].endswith(("_HelmRelease", "_DiskPool"))
            ] or [[ns, name, FLUX_KS, "Kustomization"]]
            what = ", ".join(f"{k}/{n}/{nm} status: 'InProgress'" for n, nm, _g, k in waiting[:3])
            message = f"health check failed after {timeout}: timeout waiting for: [{what}]"
            self._finish(
                ns,
                name,
                generation,
                req,
                rev,
                "False",
                HEALTH_CHECK_FAILED,
                message,
                entries,
                fault=True,
            )
            return
        checks = self._health_targets(obj, entries)
        if checks:
            self._start_health(obj, rev, req, entries, checks)
            return
        self._finish(
            ns,
            name,
            generation,
            req,
            rev,
            "True",
            SUCCEEDED,
            f"Applied revision: {rev}",
            entries,
            applied=True,
            healthy=None,
        )

    # -- health checks (wait: true / healthChecks), as kustomize-controller's checkHealth ---

    def _health_targets(
        self, obj: dict[str, Any], entries: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        """What the health check waits for: everything applied with `wait`, else the
        listed healthChecks; never the Kustomization itself."""
        spec, meta = obj.get("spec") or {}, obj["metadata"]
        if spec.get("wait"):
            targets = entries
        else:
            targets = []
            for ref in spec.get("healthChecks") or []:
                api = str(ref.get("apiVersion") or "")
                stub = {
                    "apiVersion": api,
                    "kind": ref.get("kind", ""),
                    "metadata": {
                        "namespace": ref.get("namespace") or meta["namespace"],
                        "name": ref.get("name", ""),
                    },
                }
                targets.append(inventory_id(stub))
        me = inventory_id(obj)["id"]
        return [e for e in targets if e["id"] != me]

    def _start_health(
        self,
        obj: dict[str, Any],
        rev: str,
        req: str,
        entries: list[dict[str, str]],
        checks: list[dict[str, str]],
    ) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        generation = int(meta.get("generation") or 1)
        timeout = seconds(spec.get("timeout"))
        message = f"Running health checks for revision {rev} with a timeout of {go_string(timeout)}"

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            st["lastAttemptedRevision"] = rev
            st["inventory"] = {"entries": entries}
            set_condition(st, "Reconciling", "True", PROGRESSING, message, generation)
            set_condition(st, "Healthy", "Unknown", PROGRESSING, message, generation)

        self.store.mutate(KS_RT, ns, name, edit, status_only=True)
        began = time.monotonic()
        deadline = began + timeout / self.time_scale
        wait = HealthWait(ns, name, generation, req, rev, entries, checks, began, deadline)
        self._health[(ns, name)] = wait
        self._check_health(wait)

    def _check_health(self, wait: HealthWait) -> None:
        """ssa.WaitForSet's verdict on the live objects; ends the wait when it has one."""
        timed_out = time.monotonic() >= wait.deadline
        verdict, problem = wait_verdict(live_statuses(self.store, wait.checks), timed_out)
        if verdict == "waiting":
            return
        self._health.pop((wait.namespace, wait.name), None)
        args = (wait.namespace, wait.name, wait.generation, wait.req, wait.rev)
        if verdict == "failed":
            self._finish(
                *args,
                "False",
                HEALTH_CHECK_FAILED,
                problem,
                wait.entries,
                healthy=("False", HEALTH_CHECK_FAILED, problem),
            )
        else:
            took = go_string((time.monotonic() - wait.began) * self.time_scale)
            self._finish(
                *args,
                "True",
                SUCCEEDED,
                f"Applied revision: {wait.rev}",
                wait.entries,
                applied=True,
                healthy=("True", "Succeeded", f"Health check passed in {took}"),
            )
        self._nudge = True  # a light pass soon: dependents may go on now

    def _finalize_suspended(self, ns: str, name: str, req: str, generation: int) -> None:
        """kustomize-controller's finalizeStatus after it skipped a suspended object."""

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            if req:
                st["lastHandledReconcileAt"] = req
            _end_reconciling(st, is_ready(o), generation)

        self.store.mutate(KS_RT, ns, name, edit, status_only=True)

    def _source_problem(self, ns: str, spec: dict[str, Any]) -> str:
        """kustomize-controller's getSource on the live spec.sourceRef: a source that does
        not exist, or one with no artifact (the lab serves only flux-system's)."""
        ref = spec.get("sourceRef") or {}
        kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        sns = str(ref.get("namespace") or ns)
        if (kind, sns, name) == ("GitRepository", *ROOT):
            return ""
        try:
            rt = by_kind(FLUX_SOURCE, kind)
        except (KeyError, ValueError):
            return f"unsupported source kind '{kind}'"
        if self.store.find(rt, sns, name, copy=False) is None:
            return (
                f"unable to get source '{sns}/{name}': "
                f'{rt.plural}.{FLUX_SOURCE} "{name}" not found'
            )
        return f"Source artifact not found, retrying in {go_string(REQUEUE_DEPENDENCY)}"

    def _dependency_problem(self, ns: str, spec: dict[str, Any], rev: str) -> str:
        """kustomize-controller's checkDependencies, message for message."""
        for dep in spec.get("dependsOn") or []:
            dns, dname = str(dep.get("namespace") or ns), str(dep.get("name", ""))
            other = self.store.find(KS_RT, dns, dname, copy=False)
            if other is None:
                return (
                    f"dependency '{dns}/{dname}' not found: "
                    f'kustomizations.kustomize.toolkit.fluxcd.io "{dname}" not found'
                )
            ost = other.get("status") or {}
            if not ost.get("conditions") or ost.get("observedGeneration") != (
                other["metadata"].get("generation") or 1
            ):
                return f"dependency '{dns}/{dname}' is not ready"
            if not is_ready(other):
                return f"dependency '{dns}/{dname}' is not ready"
            if _same_source(spec, ns, other) and ost.get("lastAppliedRevision") != rev:
                return f"dependency '{dns}/{dname}' revision is not up to date"
        return ""

    def _finish(
        self,
        ns: str,
        name: str,
        generation: int,
        req: str,
        rev: str | None,
        ready: str,
        reason: str,
        message: str,
        entries: list[dict[str, str]] | None = None,
        *,
        applied: bool = False,
        healthy: tuple[str, str, str] | bool | None = False,
        fault: bool = False,
    ) -> None:
        """Flux's finalizeStatus: Ready, the request handled, and observedGeneration and
        the Reconciling condition's removal only on success (ProgressingWithRetry else).
        `healthy`: a Healthy condition to set, None to drop it (no wait), False: leave.
        `fault`: the ks-failing fault keeps the shape the console's pictures were drawn
        from (no Reconciling condition, observedGeneration set); real failures do not."""

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            if req:
                st["lastHandledReconcileAt"] = req
            if rev is not None:
                st["lastAttemptedRevision"] = rev
            if applied and rev is not None:
                st["lastAppliedRevision"] = rev
            if entries is not None:
                st["inventory"] = {"entries": entries}
            set_condition(st, "Ready", ready, reason, message, generation)
            if healthy is None:
                drop_condition(st, "Healthy")
            elif isinstance(healthy, tuple):
                set_condition(st, "Healthy", *healthy, generation)
            elif reason == HEALTH_CHECK_FAILED:  # the ks-failing fault
                set_condition(st, "Healthy", "False", reason, message, generation)
            _end_reconciling(st, ready == "True" or fault, generation)

        self.store.mutate(KS_RT, ns, name, edit, status_only=True)
        self._applied_at[(ns, name)] = time.monotonic()
        self._event(ns, name, ready, reason, message, rev)
        obj = self.store.find(KS_RT, ns, name, copy=False) or {}
        spec = obj.get("spec") or {}
        if ready == "True":
            self._retry.pop((ns, name), None)
            # requeued at its interval (drift is reverted then), as the controller does
            every = seconds(spec.get("interval"), 600.0) / self.time_scale
            heapq.heappush(self._due, (self._applied_at[(ns, name)] + every, ns, name))
            return
        after = (
            REQUEUE_DEPENDENCY
            if reason == DEPENDENCY_NOT_READY
            else seconds(spec.get("retryInterval") or spec.get("interval"), 600.0)
        )
        token = (self.revision, generation, req)
        self._retry[(ns, name)] = (time.monotonic() + after / self.time_scale, token)

    def _event(
        self, ns: str, name: str, ready: str, reason: str, message: str, rev: str | None
    ) -> None:
        """The Event kustomize-controller records for the reconcile just finished."""
        obj = self.store.find(KS_RT, ns, name, copy=False)
        if obj is None:
            return
        began = self._began.pop((ns, name), None)
        revision = rev or self.revision
        if ready == "True":
            took = (time.monotonic() - began) * self.time_scale if began else 1.0
            every = go_duration(str((obj.get("spec") or {}).get("interval") or ""), "10m0s")
            self.events.emit(
                obj,
                "Normal",
                SUCCEEDED,  # whole seconds on the Flux clock, so repeats fold
                f"Reconciliation finished in {go_string(max(1, round(took)))}, next run in {every}",
                revision=revision,
                extra={f"{FLUX_KS}/commit_status": "update"},
            )
        elif reason == DEPENDENCY_NOT_READY:
            wait = go_string(REQUEUE_DEPENDENCY)
            message = f"Dependencies do not meet ready condition, retrying in {wait}"
            self.events.emit(obj, "Normal", reason, message, revision=revision)
        else:
            self.events.emit(obj, "Warning", reason, message, revision=revision)

    # -- the source ---------------------------------------------------------------------

    def _git_repository(self) -> dict[str, Any]:
        return {
            "apiVersion": GIT_RT.api_version,
            "kind": "GitRepository",
            "metadata": {"name": ROOT[1], "namespace": ROOT[0]},
            "spec": {
                "interval": "1m",
                "url": self.remote.url,
                "ref": {"branch": "main"},
                "timeout": "60s",
            },
        }

    def _root_kustomization(self) -> dict[str, Any]:
        return {
            "apiVersion": KS_RT.api_version,
            "kind": "Kustomization",
            "metadata": {"name": ROOT[1], "namespace": ROOT[0]},
            "spec": {
                "interval": "10m",
                "path": ROOT_PATH,
                "prune": True,
                "timeout": "3m",
                "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}},
                "sourceRef": {"kind": "GitRepository", "name": ROOT[1]},
            },
        }

    def _fetch(self) -> None:
        """source-controller's GitRepository reconcile: a suspended source is not
        fetched; otherwise the artifact moves at spec.interval (on the Flux clock), on a
        new requestedAt or spec, or when forced."""
        with self._cv:
            forced, self._force_fetch = self._force_fetch, False
        git = self.store.find(GIT_RT, *ROOT, copy=False)
        if git is None:  # deleted by hand: recreated, as the operator would
            self.store.upsert(self._git_repository(), rt=GIT_RT)
            git = self.store.find(GIT_RT, *ROOT, copy=False) or {}
        spec, status = git.get("spec") or {}, git.get("status") or {}
        if spec.get("suspend"):
            return
        req = requested_at(git)
        asked = bool(req) and status.get("lastHandledReconcileAt") != req
        generation = int(git["metadata"].get("generation") or 1)
        changed = status.get("observedGeneration") != generation
        due = time.monotonic() >= self._next_fetch
        if not (forced or asked or changed or due or self.artifact is None):
            return
        try:
            branch, sha = self.remote.head()
        except Exception:  # the remote vanished (lab closing)
            log.debug("reading the lab remote failed", exc_info=True)
            return
        if not sha:
            return
        every = seconds(spec.get("interval"), 60.0) / self.time_scale
        self._next_fetch = time.monotonic() + every
        self.artifact = (branch, sha)
        self._git_status(branch, sha)

    def _sources_handled(self) -> None:
        """Chart sources answer a requestedAt (their artifacts do not move in the lab)."""
        for kind in ("OCIRepository", "HelmRepository"):
            rt = by_kind(FLUX_SOURCE, kind)
            for obj in self.store.list(rt, copy=False)[0]:
                req = requested_at(obj)
                if req and (obj.get("status") or {}).get("lastHandledReconcileAt") != req:
                    self.applier.source_ready(rt, obj)

    def _git_status(self, branch: str, sha: str) -> None:
        rev = revision(branch, sha)
        message = f"stored artifact for revision '{rev}'"
        path = f"gitrepository/{ROOT[0]}/{ROOT[1]}/{sha}.tar.gz"

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            generation = int(o["metadata"].get("generation") or 1)
            set_condition(st, "Ready", "True", "Succeeded", message, generation)
            set_condition(st, "ArtifactInStorage", "True", "Succeeded", message, generation)
            if (st.get("artifact") or {}).get("revision") != rev:
                st["artifact"] = {
                    "revision": rev,
                    "digest": digest(sha),
                    "lastUpdateTime": now_rfc3339(),
                    "path": path,
                    "url": f"http://source-controller.flux-system.svc.cluster.local./{path}",
                }
            st["observedGeneration"] = generation
            if requested_at(o):
                st["lastHandledReconcileAt"] = requested_at(o)

        try:
            self.store.mutate(GIT_RT, ROOT[0], ROOT[1], edit, status_only=True)
        except Exception:  # deleted by hand: recreate it, as the operator would
            self.store.upsert(self._git_repository(), rt=GIT_RT)
            self.store.mutate(GIT_RT, ROOT[0], ROOT[1], edit, status_only=True)


__all__ = ["FluxTwin", "go_duration"]


def _ready_line(ks: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace/name, Ready status, Ready message) of a Kustomization."""
    meta = ks.get("metadata") or {}
    ready = next(
        (c for c in (ks.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        {},
    )
    key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    return key, str(ready.get("status", "Unknown")), str(ready.get("message", ""))


def _settled(line: tuple[str, str, str], failing: set[str]) -> bool:
    """Ready, failed by a fault, or waiting on one that a fault fails."""
    key, status, message = line
    if status == "True" or key in failing:
        return True
    return status == "False" and any(f"'{name}'" in message for name in failing)


def _end_reconciling(st: dict[str, Any], done: bool, generation: int) -> None:
    """A reconcile's end: done, the generation is observed and Reconciling goes; else
    Reconciling stays, as ProgressingWithRetry."""
    if done:
        st["observedGeneration"] = generation
        drop_condition(st, "Reconciling")
        return
    retry = condition(st, "Reconciling")
    if retry is not None:
        retry["reason"] = PROGRESSING_WITH_RETRY
