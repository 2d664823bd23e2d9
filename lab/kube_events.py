"""The recent Event history a real cluster shows, and the API server's Event TTL.

A fresh lab is a cluster whose workloads just rolled out: the pods of that rollout (those
bound at start or within ROLLOUT_SECONDS, at most MAX_SEEDED_PODS) get the scheduler's and
kubelet's events (Scheduled, Pulled, Created, Started, timed from their creation), one
kube-system pod a start-up readiness-probe Warning, and, when no Flux twin writes
kustomize-controller's own Events (lab.flux_events), every Flux Kustomization that
becomes Ready, or applies a new revision, a ReconciliationSucceeded. Each history event
carries the HISTORY_LABEL so tests and tools can tell it from events the operator's
actions cause.

Events live EVENT_TTL seconds after their last occurrence, as with kube-apiserver's
default --event-ttl=1h (the lab's time scale is real time); a sweep every SWEEP_SECONDS
deletes the expired ones, so the window stays bounded however long the lab runs.
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from dapper.lab.kinds import by_kind
from dapper.lab.kube_controllers import emit_event
from dapper.lab.store import NotFound, ObjectStore, WatchEvent

log = logging.getLogger(__name__)

EVENT_TTL = 3600.0
SWEEP_SECONDS = 60.0
MAX_SEEDED_PODS = 40  # the start-up history stays small however big the lab is
ROLLOUT_SECONDS = 120.0  # pods bound this soon after start belong to the initial rollout
HISTORY_LABEL = "lab.dapper.dev/history"
KS_GROUP = "kustomize.toolkit.fluxcd.io"


def _parse(ts: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return 0.0


def history_event(
    store: ObjectStore,
    involved: dict,
    reason: str,
    message: str,
    *,
    at: float,
    component: str,
    type_: str = "Normal",
    host: str = "",
) -> None:
    """One past Event about `involved`, timed `at`, marked as lab history."""
    emit_event(
        store,
        involved,
        reason,
        message,
        type_=type_,
        component=component,
        at=at,
        host=host,
        labels={HISTORY_LABEL: "true"},
    )


def pod_rollout(store: ObjectStore, pod: dict, *, warn: bool) -> None:
    """The scheduler's and kubelet's events of one pod's start, timed from its creation;
    with `warn`, the start-up readiness-probe failure too."""
    meta = pod["metadata"]
    node = pod["spec"]["nodeName"]
    born = _parse(meta.get("creationTimestamp", "")) or time.time()
    first = (pod["spec"].get("containers") or [{}])[0]
    image, container = first.get("image", ""), first.get("name", "app")
    steps = [
        ("Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}"),
        ("Pulled", f'Container image "{image}" already present on machine'),
        ("Created", f"Created container: {container}"),
        ("Started", f"Started container {container}"),
    ]
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        steps = steps[1:]  # static pods are not scheduled
    for step, (reason, message) in enumerate(steps):
        scheduler = reason == "Scheduled"
        history_event(
            store,
            pod,
            reason,
            message,
            at=born + step * 0.5,
            component="default-scheduler" if scheduler else "kubelet",
            host="" if scheduler else node,
        )
    if warn:
        history_event(
            store,
            pod,
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            at=born + 3,
            component="kubelet",
            type_="Warning",
            host=node,
        )


def _ready_revision(obj: dict) -> tuple[bool, str]:
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return ready, status.get("lastAppliedRevision", "")


class EventHistory:
    """Seeds the start-up history, follows Flux reconciliations, expires old Events."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        seed: bool = True,
        ttl: float = EVENT_TTL,
        live_flux: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.live_flux = live_flux  # True: the Flux twin records its own Events
        self.seed = seed
        self.ttl = ttl
        self._seen: dict[tuple[str, str], tuple[bool, str]] = {}
        self._pending: list[dict] = []
        self._pods: list[dict] = []
        self._rolled_out = 0
        self._warned = False  # one start-up warning is the believable number
        self._started = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        if self.seed:
            self.store.add_listener(self._on_change)
            with self._lock:
                self._pods = [
                    p
                    for p in self.store.list(by_kind("", "Pod"))[0]
                    if p.get("spec", {}).get("nodeName")
                ][:MAX_SEEDED_PODS]
                self._rolled_out = len(self._pods)
            self._record_rollouts()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-event-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.store.remove_listener(self._on_change)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _on_change(self, event: WatchEvent) -> None:
        """Under the store lock: only note what happened; the thread writes the Events."""
        if event.key[:2] == ("", "pods"):
            self._pod_changed(event)
            return
        if event.key[:2] != (KS_GROUP, "kustomizations") or event.type == "DELETED":
            return
        if self.live_flux():
            return  # the twin writes kustomize-controller's Events as it reconciles
        key = (event.key[2], event.key[3])
        state = _ready_revision(event.obj)
        before = self._seen.get(key, (False, ""))
        self._seen[key] = state
        if state[0] and (not before[0] or state[1] != before[1]):
            with self._lock:
                self._pending.append(event.obj)
            self._wake.set()

    def _pod_changed(self, event: WatchEvent) -> None:
        """A pod of the initial rollout (bound within ROLLOUT_SECONDS of start, up to
        MAX_SEEDED_PODS in all) gets its start-up events."""
        if event.type != "ADDED" or not event.obj.get("spec", {}).get("nodeName"):
            return
        if time.monotonic() - self._started > ROLLOUT_SECONDS:
            return
        with self._lock:
            if self._rolled_out >= MAX_SEEDED_PODS:
                return
            self._rolled_out += 1
            self._pods.append(event.obj)
        self._wake.set()

    def _record_rollouts(self) -> None:
        with self._lock:
            pods, self._pods = self._pods, []
        for pod in pods:
            warn = not self._warned and pod["metadata"]["namespace"] == "kube-system"
            self._warned = self._warned or warn
            pod_rollout(self.store, pod, warn=warn)

    def _run(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=SWEEP_SECONDS)
            self._wake.clear()
            try:
                self._record_rollouts()
                self._record_reconciliations()
                if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    self.expire()
            except Exception:  # history is scenery: never let it stop the lab
                log.exception("lab event history failed")

    def _record_reconciliations(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for ks in pending:
            interval = ks.get("spec", {}).get("interval", "10m")
            revision = _ready_revision(ks)[1]
            history_event(
                self.store,
                ks,
                "ReconciliationSucceeded",
                f"Reconciliation finished in 1.2s, next run in {interval}"
                + (f"\nRevision: {revision}" if revision else ""),
                at=time.time(),
                component="kustomize-controller",
            )

    def expire(self, now: float | None = None) -> int:
        """Delete Events last seen more than ttl seconds ago; how many went."""
        now = time.time() if now is None else now
        rt = by_kind("", "Event")
        events, _ = self.store.list(rt, copy=False)
        gone = 0
        for ev in events:
            last = _parse(ev.get("lastTimestamp") or ev["metadata"].get("creationTimestamp", ""))
            if last and now - last > self.ttl:
                with contextlib.suppress(NotFound):
                    self.store.delete(rt, ev["metadata"]["namespace"], ev["metadata"]["name"])
                    gone += 1
        return gone
