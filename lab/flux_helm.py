"""The lab's helm-controller: install/upgrade, wait for the release's workload, remediate.

As helm-controller v1.3's atomic release does it: a new or changed HelmRelease runs an
`install` (or `upgrade`) action, marked Ready=Unknown/Reconciling `Progressing`
("Running 'install' action with timeout of 5m0s"); Helm then waits until what the chart
runs is ready (kstatus over the release's Deployments and DaemonSets, read from their
live status). Ready in time: `InstallSucceeded`/`UpgradeSucceeded`. Not ready by
`spec.timeout` (default 5m, on the twin's faster clock): the action fails with
"Helm install failed for release <ns>/<name> with chart <chart>@<ver>: context deadline
exceeded", the failure counts, and remediation follows the spec: with retries left an
install is uninstalled (`UninstallSucceeded`) and an upgrade rolled back
(`RollbackSucceeded`), then tried again; with none left (the default: 0 retries) the
release is `Stalled` with reason `RetriesExceeded` ("Failed to install after 1
attempt(s)") and stays so until its spec changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dapper.lab.flux_events import HELM_CONTROLLER, FluxEvents
from dapper.lab.flux_health import go_string, live_statuses, seconds, wait_verdict
from dapper.lab.flux_status import drop_condition, inventory_id, requested_at, set_condition
from dapper.lab.flux_workloads import Ref, Workloads
from dapper.lab.kinds import by_kind
from dapper.lab.store import NotFound, now_rfc3339

HR_RT = by_kind("helm.toolkit.fluxcd.io", "HelmRelease")
PROGRESSING = "Progressing"
RETRY = "ProgressingWithRetry"
DEADLINE = "context deadline exceeded"
Key = tuple[str, str]


@dataclass
class Release:
    """What Helm's storage holds for one HelmRelease, plus the action in flight."""

    config: str = ""
    number: int = 0  # latest release version in storage (0: none)
    deployed: bool = False  # the latest version is deployed (not failed)
    ever_deployed: int = 0  # last version that deployed (rollback target)
    in_storage: bool = False  # Helm holds a release (deployed or failed): next is upgrade
    failures: int = 0  # failures of the active remediation since the spec last changed
    action: str = ""  # "install" | "upgrade" while waiting
    started: float = 0.0
    deadline: float = 0.0
    refs: list[Ref] = field(default_factory=list)
    chart: str = ""
    version: str = ""
    stalled: bool = False


def _remediation(spec: dict[str, Any], action: str) -> tuple[int, str]:
    """(retries, strategy) of the install or upgrade remediation."""
    rem = ((spec.get(action) or {}).get("remediation")) or {}
    retries = int(rem.get("retries", 0) or 0)
    strategy = "uninstall" if action == "install" else str(rem.get("strategy") or "rollback")
    return retries, strategy


class Releases:
    """HelmRelease reconciles for one twin; `apply` on each apply, `tick` while waiting."""

    def __init__(
        self,
        store: Any,
        workloads: Workloads,
        chart_of: Callable[[dict[str, Any]], tuple[str, str]],
        time_scale: float,
        events: FluxEvents | None = None,
    ) -> None:
        self.store = store
        self.events = events  # helm-controller's Events about each action's outcome
        self.workloads = workloads
        self.chart_of = chart_of
        self.time_scale = time_scale
        self.releases: dict[Key, Release] = {}

    def waiting(self) -> bool:
        return any(r.action for r in self.releases.values())

    def busy(self, key: Key) -> bool:
        rel = self.releases.get(key)
        return bool(rel and rel.action)

    def forget(self, ns: str, name: str) -> None:
        self.releases.pop((ns, name), None)

    # -- apply -------------------------------------------------------------------------

    def apply(self, hr: dict[str, Any]) -> None:
        meta, spec = hr["metadata"], hr.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        if spec.get("suspend"):
            return
        chart, version = self.chart_of(hr)
        config = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()
        rel = self.releases.setdefault(key, Release())
        if rel.action:
            return  # Helm is busy with this release; the request waits its turn
        if rel.config == config and rel.number and (rel.deployed or rel.stalled):
            if rel.deployed:  # in sync: what the chart runs is kept as it should be
                rel.refs = self.workloads.ensure(hr, rel.chart)
            self._handled(key)
            return
        if rel.config != config:
            rel.failures = 0  # the conditions of the last failure changed
            rel.stalled = False
        rel.config, rel.chart, rel.version = config, chart, version
        self._start(key, hr, "upgrade" if rel.in_storage else "install")

    def _start(self, key: Key, hr: dict[str, Any], action: str) -> None:
        rel = self.releases[key]
        spec = hr.get("spec") or {}
        timeout = seconds(spec.get("timeout"))
        rel.action = action
        rel.in_storage = True
        rel.number += 1
        rel.deployed = False
        rel.started = time.monotonic()
        rel.deadline = rel.started + timeout / self.time_scale
        message = f"Running '{action}' action with timeout of {go_string(timeout)}"

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            gen = o["metadata"].get("generation", 1)
            set_condition(st, "Reconciling", "True", PROGRESSING, message, gen)
            set_condition(st, "Ready", "Unknown", PROGRESSING, message, gen)
            st["lastAttemptedRevision"] = rel.version
            st["lastAttemptedConfigDigest"] = "sha256:" + rel.config
            st["lastAttemptedGeneration"] = gen
            st["lastAttemptedReleaseAction"] = action
            st["storageNamespace"] = key[0]
            st["helmChart"] = f"{key[0]}/{key[0]}-{key[1]}"
            if requested_at(o):
                st["lastHandledReconcileAt"] = requested_at(o)

        self._edit(key, edit)
        rel.refs = self.workloads.ensure(hr, rel.chart)
        self.check(key)

    # -- waiting -----------------------------------------------------------------------

    def tick(self) -> list[Key]:
        """Check every release in flight; returns those whose action ended."""
        ended = []
        for key, rel in list(self.releases.items()):
            if rel.action and self.check(key):
                ended.append(key)
        return ended

    def check(self, key: Key) -> bool:
        """Settle the action in flight if its workload is ready or its time is up."""
        rel = self.releases[key]
        entries = [
            inventory_id(
                {
                    "apiVersion": f"{g}/v1" if g else "v1",
                    "kind": k,
                    "metadata": {"namespace": ns, "name": n},
                }
            )
            for g, k, ns, n in rel.refs
            if k != "ReplicaSet"
        ]
        timed_out = time.monotonic() >= rel.deadline
        verdict, _message = wait_verdict(live_statuses(self.store, entries), timed_out)
        if verdict == "current":
            self._succeeded(key)
            return True
        if verdict == "failed":
            self._failed(key)
            return True
        return False

    def _succeeded(self, key: Key) -> None:
        rel = self.releases[key]
        action, number = rel.action, rel.number
        rel.action, rel.deployed, rel.ever_deployed = "", True, number
        rel.failures, rel.stalled = 0, False
        verb = "install" if action == "install" else "upgrade"
        reason = "InstallSucceeded" if action == "install" else "UpgradeSucceeded"
        message = (
            f"Helm {verb} succeeded for release {key[0]}/{self._name(key)}.v{number} "
            f"with chart {rel.chart}@{rel.version}"
        )

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            gen = o["metadata"].get("generation", 1)
            set_condition(st, "Ready", "True", reason, message, gen)
            set_condition(st, "Released", "True", reason, message, gen)
            drop_condition(st, "Reconciling")
            drop_condition(st, "Stalled")
            drop_condition(st, "Remediated")
            st["observedGeneration"] = gen
            for k in ("failures", "installFailures", "upgradeFailures"):
                st.pop(k, None)
            self._history(o, st, key, "deployed", action)

        self._edit(key, edit)
        self._event(key, "Normal", reason, message)

    def _failed(self, key: Key) -> None:
        rel = self.releases[key]
        action = rel.action
        rel.action, rel.deployed = "", False
        rel.failures += 1
        hr = self.store.find(HR_RT, *key) or {}
        spec = hr.get("spec") or {}
        retries, strategy = _remediation(spec, action)
        reason = "InstallFailed" if action == "install" else "UpgradeFailed"
        message = (
            f"Helm {action} failed for release {key[0]}/{self._name(key)} "
            f"with chart {rel.chart}@{rel.version}: {DEADLINE}"
        )
        exhausted = rel.failures > retries
        counter = "installFailures" if action == "install" else "upgradeFailures"

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            gen = o["metadata"].get("generation", 1)
            st["failures"] = int(st.get("failures") or 0) + 1
            st[counter] = rel.failures
            set_condition(st, "Released", "False", reason, message, gen)
            set_condition(st, "Ready", "False", reason, message, gen)
            st["observedGeneration"] = gen
            self._history(o, st, key, "failed", action)
            if exhausted:
                drop_condition(st, "Reconciling")
                stalled = f"Failed to {action} after {rel.failures} attempt(s)"
                set_condition(st, "Stalled", "True", "RetriesExceeded", stalled, gen)
            else:
                set_condition(st, "Reconciling", "True", RETRY, message, gen)

        self._edit(key, edit)
        self._event(key, "Warning", reason, message)
        if exhausted:
            rel.stalled = True
            return
        self._remediate(key, hr, action, strategy)

    def _remediate(self, key: Key, hr: dict[str, Any], action: str, strategy: str) -> None:
        """Uninstall a failed install / roll back a failed upgrade, then try again."""
        rel = self.releases[key]
        release = f"{key[0]}/{self._name(key)}.v{rel.number}"
        if strategy == "uninstall" or not rel.ever_deployed:
            self.workloads.uninstall(*key)
            rel.ever_deployed = 0
            rel.in_storage = False
            reason = "UninstallSucceeded"
            message = (
                f"Helm uninstall succeeded for release {release} "
                f"with chart {rel.chart}@{rel.version}"
            )
        else:
            reason = "RollbackSucceeded"
            message = (
                "Helm rollback to previous release "
                f"{key[0]}/{self._name(key)}.v{rel.ever_deployed} "
                f"with chart {rel.chart}@{rel.version} succeeded"
            )

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            gen = o["metadata"].get("generation", 1)
            set_condition(st, "Remediated", "True", reason, message, gen)
            set_condition(st, "Ready", "False", reason, message, gen)
            set_condition(st, "Reconciling", "True", RETRY, message, gen)

        self._edit(key, edit)
        self._event(key, "Normal", reason, message)
        if hr:
            self._start(key, hr, "upgrade" if rel.in_storage else "install")

    # -- status helpers ----------------------------------------------------------------

    def _event(self, key: Key, type_: str, reason: str, message: str) -> None:
        """helm-controller's event for an action's outcome, annotated as its eventMeta
        does (chart version, config digest, app version)."""
        hr = self.store.find(HR_RT, *key, copy=False)
        if self.events is None or hr is None:
            return
        rel = self.releases[key]
        group = "helm.toolkit.fluxcd.io"
        extra = {f"{group}/token": "sha256:" + rel.config, f"{group}/app-version": rel.version}
        self.events.emit(
            hr, type_, reason, message, revision=rel.version, component=HELM_CONTROLLER, extra=extra
        )

    def _name(self, key: Key) -> str:
        hr = self.store.find(HR_RT, *key, copy=False) or {}
        return str((hr.get("spec") or {}).get("releaseName") or key[1])

    def _history(
        self, o: dict[str, Any], st: dict[str, Any], key: Key, state: str, action: str
    ) -> None:
        rel = self.releases[key]
        history = [h for h in st.get("history") or [] if h.get("version") != rel.number]
        now = now_rfc3339()
        entry = {
            "name": self._name(key),
            "namespace": key[0],
            "version": rel.number,
            "status": state,
            "chartName": rel.chart,
            "chartVersion": rel.version,
            "appVersion": rel.version,
            "configDigest": "sha256:" + rel.config,
            "firstDeployed": history[-1]["firstDeployed"] if history else now,
            "lastDeployed": now,
            "action": action,
        }
        if state == "deployed":
            for h in history:
                if h.get("status") == "deployed":
                    h["status"] = "superseded"
        st["history"] = [entry, *history][:5]

    def _handled(self, key: Key) -> None:
        def edit(o: dict[str, Any]) -> None:
            if requested_at(o):
                o.setdefault("status", {})["lastHandledReconcileAt"] = requested_at(o)

        self._edit(key, edit)

    def _edit(self, key: Key, fn: Callable[[dict[str, Any]], None]) -> None:
        with contextlib.suppress(NotFound):
            self.store.mutate(HR_RT, key[0], key[1], fn, status_only=True)
