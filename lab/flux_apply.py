"""Applying a Kustomization's rendered objects to the lab's store, and pruning them.

This is the lab's server-side apply plus the controllers that would act on what was
applied: Secrets are stored as `data` (base64), chart sources report Ready, HelmReleases
report an install and run their workload (flux_workloads), DiskPools report Mayastor's
pool status, PVCs are Bound. Fields other managers own survive a re-apply, as with
server-side apply: annotations such as `reconcile.fluxcd.io/requestedAt` and a
`spec.suspend` set by `flux suspend`.

Every applied object is labelled with its Kustomization, and the Kustomization's
inventory (status.inventory) is what prune compares against on the next apply.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from typing import Any

from dapper.lab.flux_events import FluxEvents
from dapper.lab.flux_health import DEFAULT_TIME_SCALE
from dapper.lab.flux_helm import Releases
from dapper.lab.flux_status import (
    KS_NAME_LABEL,
    KS_NAMESPACE_LABEL,
    digest,
    inventory_id,
    parse_inventory_id,
    requested_at,
    set_condition,
)
from dapper.lab.flux_workloads import Workloads
from dapper.lab.kinds import ResourceType, by_kind, split_api_version
from dapper.lab.store import NotFound, StoreError, clone, now_rfc3339
from dapper.lab.world import MIB, SSD_BYTES, World
from dapper.lab.world.pools import pool_state

log = logging.getLogger("dapper.lab.flux_apply")

# Flux applies cluster definitions first, then namespaces, then the rest.
_FIRST = {"CustomResourceDefinition": 0, "Namespace": 1}
_MERGED_KINDS = frozenset({"Kustomization", "HelmRelease", "GitRepository", "OCIRepository"})
POOL_CLUSTER = 4 * MIB


class ApplyError(Exception):
    """An object the store refused; the message is Flux-like and one line."""


class Applier:
    def __init__(
        self,
        world: World,
        workloads: Workloads,
        time_scale: float = DEFAULT_TIME_SCALE,
        events: FluxEvents | None = None,
    ) -> None:
        self.world = world
        self.store = world.store
        self.workloads = workloads
        self.releases = Releases(self.store, workloads, self.chart_of, time_scale, events)
        # (group, kind, namespace, name) -> label and annotation keys last applied
        self.owned: dict[tuple[str, str, str, str], tuple[frozenset[str], frozenset[str]]] = {}
        # the last apply's change set: "Kind/namespace/name created|configured", as
        # fluxcd/pkg/ssa's ChangeSetEntry prints them (unchanged objects are not listed)
        self.changes: list[str] = []

    # -- apply ----------------------------------------------------------------------------

    def apply(self, ks: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Apply every object for Kustomization `ks`; returns the new inventory entries."""
        ks_ns, ks_name = ks["metadata"]["namespace"], ks["metadata"]["name"]
        default_ns = (ks.get("spec") or {}).get("targetNamespace") or "default"
        entries: list[dict[str, str]] = []
        self.changes = []
        ordered = sorted(objects, key=lambda o: _FIRST.get(str(o.get("kind")), 2))
        for raw in ordered:
            obj = clone(raw)
            meta = obj.setdefault("metadata", {})
            labels = meta.setdefault("labels", {})
            labels[KS_NAME_LABEL] = ks_name
            labels[KS_NAMESPACE_LABEL] = ks_ns
            group, _version = split_api_version(str(obj.get("apiVersion", "")))
            try:
                rt = by_kind(group, str(obj.get("kind", "")))
            except KeyError:
                rt = None  # a kind the lab does not serve (Ingress, ExternalSecret...)
            if rt is not None and rt.namespaced and not meta.get("namespace"):
                meta["namespace"] = default_ns
            if rt is not None and not rt.namespaced:
                meta.pop("namespace", None)
            entries.append(inventory_id(obj))
            if rt is None:
                continue
            try:
                self._apply_one(rt, obj)
            except StoreError as exc:
                raise ApplyError(f"{obj.get('kind')}/{meta.get('name')}: {exc.message}") from None
        return entries

    def _apply_one(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        kind = rt.kind
        if rt.namespaced:
            self.world.ensure_namespace(obj["metadata"]["namespace"])
        if kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif kind == "Secret":
            _secret_to_data(obj)
        self._keep_others_metadata(rt, obj)
        if kind in _MERGED_KINDS:
            self._merge_live(rt, obj)
        elif kind == "PersistentVolumeClaim":
            self._keep_binding(rt, obj)
        meta = obj["metadata"]
        before = self.store.find(rt, meta.get("namespace", ""), meta["name"], copy=False)
        was = (before or {}).get("metadata", {}).get("resourceVersion")
        live = self.store.upsert(obj, rt=rt)
        if before is None or live["metadata"].get("resourceVersion") != was:
            where = f"{meta['namespace']}/" if rt.namespaced else ""
            action = "created" if before is None else "configured"
            self.changes.append(f"{kind}/{where}{meta['name']} {action}")
        if kind in ("HelmRepository", "OCIRepository"):
            self.source_ready(rt, live)
        elif kind == "HelmRelease":
            self._helm_release(rt, live)
        elif kind == "DiskPool":
            self._disk_pool(rt, live)
        elif kind == "PersistentVolumeClaim":
            self._pvc_bound(rt, live)

    def _keep_others_metadata(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Server-side apply for labels and annotations: keys another manager set on the
        live object (`kubectl label`, `kubectl annotate`) survive; keys this Kustomization
        applied before and no longer renders are removed, as field ownership decides."""
        meta = obj["metadata"]
        ident = (rt.group, rt.kind, meta.get("namespace", ""), meta["name"])
        live = self.store.find(rt, ident[2], ident[3], copy=False)
        mine_before = self.owned.get(ident, (frozenset(), frozenset()))
        applied = (
            frozenset((meta.get("labels") or {}).keys()),
            frozenset((meta.get("annotations") or {}).keys()),
        )
        self.owned[ident] = applied
        if live is None:
            return
        for i, field_name in enumerate(("labels", "annotations")):
            theirs = {
                k: v
                for k, v in ((live.get("metadata") or {}).get(field_name) or {}).items()
                if k not in applied[i] and k not in mine_before[i]
            }
            if theirs:
                meta[field_name] = {**theirs, **(meta.get(field_name) or {})}

    def _keep_binding(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """The binder's spec.volumeName survives a re-apply (its field, not Flux's)."""
        meta = obj["metadata"]
        live = self.store.find(rt, meta.get("namespace", ""), meta["name"], copy=False)
        bound = ((live or {}).get("spec") or {}).get("volumeName")
        if bound and not (obj.get("spec") or {}).get("volumeName"):
            obj.setdefault("spec", {})["volumeName"] = bound

    def _merge_live(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Keep what other field managers set on the live object."""
        meta = obj["metadata"]
        live = self.store.find(rt, meta.get("namespace", ""), meta["name"])
        if live is None:
            return
        annotations = dict(live["metadata"].get("annotations") or {})
        annotations.update(meta.get("annotations") or {})
        if annotations:
            meta["annotations"] = annotations
        spec = obj.setdefault("spec", {})
        live_spec = live.get("spec") or {}
        if "suspend" not in spec and "suspend" in live_spec:
            spec["suspend"] = live_spec["suspend"]

    # -- what controllers would report ------------------------------------------------------

    def _status(self, rt: ResourceType, obj: dict[str, Any], fn: Any) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(NotFound):
            self.store.mutate(rt, meta.get("namespace", ""), meta["name"], fn, status_only=True)

    def source_ready(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        if rt.kind == "OCIRepository":
            tag = str((spec.get("ref") or {}).get("tag") or "latest")
            rev = f"{tag}@{digest(str(spec.get('url')) + tag)}"
            message = f"stored artifact for digest '{rev}'"
        else:
            rev = digest(str(spec.get("url")))
            message = f"stored artifact: revision '{rev}'"
        generation = obj["metadata"].get("generation", 1)

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            set_condition(st, "Ready", "True", "Succeeded", message, generation)
            set_condition(st, "ArtifactInStorage", "True", "Succeeded", message, generation)
            artifact = st.get("artifact") or {}
            if artifact.get("revision") != rev:
                st["artifact"] = {
                    "revision": rev,
                    "digest": digest(rev),
                    "lastUpdateTime": now_rfc3339(),
                    "path": f"{rt.plural}/{o['metadata'].get('namespace')}/{o['metadata']['name']}",
                }
            st["observedGeneration"] = generation
            if requested_at(o):
                st["lastHandledReconcileAt"] = requested_at(o)

        self._status(rt, obj, edit)

    def chart_of(self, hr: dict[str, Any]) -> tuple[str, str]:
        """(chart name, version) of a HelmRelease: chart.spec, or its chartRef source."""
        spec = hr.get("spec") or {}
        chart = ((spec.get("chart") or {}).get("spec")) or {}
        if chart.get("chart"):
            return str(chart["chart"]), str(chart.get("version") or "*")
        ref = spec.get("chartRef") or {}
        name = str(ref.get("name") or "")
        ns = str(ref.get("namespace") or hr["metadata"]["namespace"])
        version = "latest"
        if ref.get("kind") == "OCIRepository":
            src = self.store.find(by_kind("source.toolkit.fluxcd.io", "OCIRepository"), ns, name)
            tag = ((src or {}).get("spec") or {}).get("ref", {}).get("tag")
            version = str(tag or version)
        return name, version

    def _helm_release(self, rt: ResourceType, hr: dict[str, Any]) -> None:
        self.releases.apply(hr)

    def _disk_pool(self, rt: ResourceType, pool: dict[str, Any]) -> None:
        capacity = (SSD_BYTES // POOL_CLUSTER - 1) * POOL_CLUSTER
        # what the replicas on its disk hold: a new pool on a fresh disk starts empty
        used, _committed = self.world.mayastor.usage(pool)
        state, missing = pool_state(self.world, pool)

        def edit(o: dict[str, Any]) -> None:
            st = o.setdefault("status", {})
            st.update(
                {
                    "cr_state": "Creating" if missing else "Created",
                    "pool_status": state,
                    "encrypted": False,
                    "capacity": capacity,
                    "used": used,
                    "available": capacity - used,
                    "capacity_q": str(capacity),
                    "used_q": str(used),
                    "available_q": str(capacity - used),
                }
            )

        self._status(rt, pool, edit)

    def _pvc_bound(self, rt: ResourceType, pvc: dict[str, Any]) -> None:
        """A claim another provisioner serves is Bound at once; Mayastor's provisioner
        (`world.mayastor`) binds its claims itself once a pool can take the volume (asked
        here at once, so a claim with a pool to go to is Bound within the apply)."""
        if self.world.mayastor.is_mayastor(pvc):
            meta = pvc["metadata"]
            self.world.mayastor.provision(meta.get("namespace", ""), meta["name"])
            return
        spec = pvc.get("spec") or {}
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        modes = spec.get("accessModes") or ["ReadWriteOnce"]

        def edit(o: dict[str, Any]) -> None:
            o["status"] = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}

        self._status(rt, pvc, edit)

    # -- prune ------------------------------------------------------------------------------

    def prune(self, stale: list[dict[str, str]], owner: tuple[str, str] | None = None) -> None:
        """Delete objects a Kustomization applied before and no longer renders, as
        ssa.DeleteAll does for kustomize-controller: only objects still labelled as the
        owner's, never one marked `kustomize.toolkit.fluxcd.io/prune: disabled` (or
        `reconcile: disabled`) in its labels or annotations. A pruned child Kustomization
        deletes what it applied only when its own `prune` is on and it is not suspended
        (the finalizer's default deletionPolicy, MirrorPrune)."""
        for entry in stale:
            ns, name, group, kind = parse_inventory_id(entry)
            try:
                rt = by_kind(group, kind)
            except KeyError:
                continue
            live = self.store.find(rt, ns, name)
            if live is None:
                continue
            if _prune_disabled(live) or (owner is not None and not _owned_by(live, owner)):
                log.info("not pruning %s/%s/%s (prune disabled or owned elsewhere)", kind, ns, name)
                continue
            if kind == "HelmRelease":
                self.workloads.uninstall(ns, name)
                self.releases.forget(ns, name)
            if kind == "Kustomization":
                spec = live.get("spec") or {}
                inventory = (live.get("status") or {}).get("inventory") or {}
                if spec.get("prune") and not spec.get("suspend"):
                    self.prune(list(inventory.get("entries") or []), owner=(ns, name))
            with contextlib.suppress(NotFound):
                self.store.delete(rt, ns, name)
                log.info("pruned %s/%s/%s", kind, ns, name)


PRUNE_KEY = "kustomize.toolkit.fluxcd.io/prune"
RECONCILE_KEY = "kustomize.toolkit.fluxcd.io/reconcile"


def _prune_disabled(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    marks = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
    return marks.get(PRUNE_KEY) == "disabled" or marks.get(RECONCILE_KEY) == "disabled"


def _owned_by(obj: dict[str, Any], owner: tuple[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (labels.get(KS_NAMESPACE_LABEL), labels.get(KS_NAME_LABEL)) == owner


def _secret_to_data(obj: dict[str, Any]) -> None:
    """stringData folded into base64 `data`, as the API server stores a Secret."""
    data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.pop("stringData", None) or {}).items():
        data[str(k)] = base64.b64encode(("" if v is None else str(v)).encode()).decode()
    obj["data"] = data
    obj.setdefault("type", "Opaque")


def encrypted_secret(objects: list[dict[str, Any]]) -> str:
    """kustomize-controller's refusal of a v1 Secret that still carries its `sops` block
    (a Kustomization without spec.decryption), or ""."""
    for obj in objects:
        if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "sops" in obj:
            meta = obj.get("metadata") or {}
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            return (
                f"Secret/{where}{meta.get('name', '')} is SOPS encrypted, configuring "
                "decryption is required for this secret to be reconciled"
            )
    return ""
