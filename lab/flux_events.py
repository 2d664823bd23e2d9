"""Kubernetes Events about Flux objects, as the Flux controllers' event recorders write them.

kustomize-controller's `event()` names the Event after the Ready condition's reason when
there is one (else the severity), makes it a Warning for an error and Normal otherwise,
and annotates it with the revision (`kustomize.toolkit.fluxcd.io/revision`); the Event
comes from client-go's recorder: `source.component` and `reportingComponent` are the
controller. What it emits, and the twin with it:

- `ReconciliationSucceeded` "Reconciliation finished in 1s, next run in 10m0s" after each
  successful reconcile (with the `commit_status: update` annotation);
- the apply's change set ("Deployment/media/plex configured", one line per created or
  configured object), reason `Progressing`, only when something changed;
- a failed reconcile's error, as a Warning named after the failure's reason
  (`BuildFailed`, `ReconciliationFailed`, `HealthCheckFailed`, `ArtifactFailed`);
- "Dependencies do not meet ready condition, retrying in 30s", `DependencyNotReady`.

helm-controller (flux_helm) records each Helm action's outcome about the HelmRelease:
`InstallSucceeded`/`UpgradeSucceeded`, `UninstallSucceeded`/`RollbackSucceeded` (Normal),
`InstallFailed`/`UpgradeFailed` (Warning), annotated with the chart version, the config
digest (`token`) and the app version.

client-go's event logger folds a repeat (same object, type, reason and message) into the
existing Event (`count` + 1, new `lastTimestamp`) instead of writing another, and its
spam filter lets a controller send 25 Events about one object, then one every 5 minutes
(wall clock; the rest are dropped), so the number and churn of Events stay bounded
however fast the lab's Flux clock runs; the API server's TTL (the lab's EventHistory
sweep) removes old ones.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from dapper.lab.kinds import by_kind
from dapper.lab.kube_controllers import emit_event
from dapper.lab.store import NotFound, ObjectStore, now_rfc3339

log = logging.getLogger("dapper.lab.flux_events")

EVENT_RT = by_kind("", "Event")
KUSTOMIZE_CONTROLLER = "kustomize-controller"
HELM_CONTROLLER = "helm-controller"
_GROUPS = {
    KUSTOMIZE_CONTROLLER: "kustomize.toolkit.fluxcd.io",
    HELM_CONTROLLER: "helm.toolkit.fluxcd.io",
}
_REMEMBERED = 4096  # client-go's event logger cache size
SPAM_BURST = 25  # client-go's spam filter: Events per source and object at once...
SPAM_REFILL = 300.0  # ...then one more every 5 minutes


class FluxEvents:
    """Writes (or folds) the Flux controllers' Events into the lab's store."""

    def __init__(self, store: ObjectStore, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        # (component, kind, namespace, name, type, reason, message) -> Event (ns, name)
        self._last: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()
        # (component, kind, namespace, name) -> (tokens, when last counted)
        self._spam: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()

    def emit(
        self,
        involved: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        revision: str = "",
        component: str = KUSTOMIZE_CONTROLLER,
        extra: dict[str, str] | None = None,
    ) -> None:
        if not self.enabled:
            return
        meta = involved.get("metadata") or {}
        key = (
            component,
            str(involved.get("kind", "")),
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            type_,
            reason,
            message,
        )
        if not self._allowed(key[:4]):
            return
        try:
            if self._fold(key):
                return
            annotations = dict(extra or {})
            if revision:
                annotations[f"{_GROUPS.get(component, component)}/revision"] = revision
            event = emit_event(
                self.store,
                involved,
                reason,
                message,
                type_=type_,
                component=component,
                annotations=annotations,
            )
        except Exception:  # the store is closing; Events are never worth a failed pass
            log.debug("Flux event not written", exc_info=True)
            return
        self._last[key] = (event["metadata"]["namespace"], event["metadata"]["name"])
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)

    def _allowed(self, source: tuple[str, ...]) -> bool:
        """client-go's EventSourceObjectSpamFilter: a token bucket per source and object."""
        now = time.monotonic()
        tokens, then = self._spam.get(source, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - then) / SPAM_REFILL)
        allowed = tokens >= 1.0
        self._spam[source] = (tokens - 1.0 if allowed else tokens, now)
        self._spam.move_to_end(source)
        while len(self._spam) > _REMEMBERED:
            self._spam.popitem(last=False)
        return allowed

    def _fold(self, key: tuple[str, ...]) -> bool:
        """A repeat of a remembered Event bumps its count; False when there is none."""
        where = self._last.get(key)
        if where is None:
            return False
        self._last.move_to_end(key)

        def bump(ev: dict[str, Any]) -> None:
            ev["count"] = int(ev.get("count") or 1) + 1
            ev["lastTimestamp"] = now_rfc3339()

        try:
            self.store.mutate(EVENT_RT, *where, bump)
        except NotFound:  # expired meanwhile: write a new one
            del self._last[key]
            return False
        return True
