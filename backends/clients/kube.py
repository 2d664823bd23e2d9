"""Kubernetes backend over the official `kubernetes` client: reads for the snapshot,
writes for the console and runbooks (cordon, drain, Flux reconcile/suspend/resume,
rollout restart, secret patch).

The client is imported inside functions: it costs ~200 ms and the console must start
without it. Reads ask for raw JSON (`_preload_content=False`) and parse it with
kube_parse, which is much cheaper than the client's model classes on big clusters.
A backend built read-only refuses every write with ReadOnlyError before any network I/O.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dapper.backends.clients import kube_parse as parse
from dapper.backends.clients.kube_errors import from_exception
from dapper.backends.clients.kube_models import (
    HelmReleaseInfo,
    PdbInfo,
    SecretInfo,
    SourceInfo,
    WorkloadInfo,
)
from dapper.backends.clients.kubeconfig import scratch_dir
from dapper.backends.errors import BackendError, ReadOnlyError
from dapper.backends.model import Event, Kustomization, Node, PodRef, StoragePool
from dapper.backends.safe_text import clean_json

T = TypeVar("T")
log = logging.getLogger("dapper.backends.clients.kube")

Progress = Callable[[str], None] | None

FLUX_KINDS: dict[str, tuple[str, str, str]] = {
    "Kustomization": ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
    "GitRepository": ("source.toolkit.fluxcd.io", "v1", "gitrepositories"),
    "OCIRepository": ("source.toolkit.fluxcd.io", "v1", "ocirepositories"),
    "HelmRepository": ("source.toolkit.fluxcd.io", "v1", "helmrepositories"),
    "Bucket": ("source.toolkit.fluxcd.io", "v1", "buckets"),
    "HelmRelease": ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
}
MAYASTOR_GROUP = "openebs.io"
DISKPOOL_VERSIONS = ("v1beta3", "v1beta2")
# the kinds the snapshot reads, by list_raw/watch_raw name
WATCH_KINDS = ("nodes", "pods", "kustomizations", "diskpools", "events")
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _load_tls_into_memory(cfg: Any) -> ssl.SSLContext | None:
    """Read the CA, client certificate and key that `cfg` names into memory, and clear the
    paths, so the files can go at once: the CA becomes `ca_cert_data`, the client pair an
    SSL context the connection pool uses instead of re-reading files per connection."""
    from urllib3.util.ssl_ import create_urllib3_context

    if cfg.ssl_ca_cert:
        cfg.ca_cert_data = Path(cfg.ssl_ca_cert).read_text()
        cfg.ssl_ca_cert = None
    if not cfg.cert_file:
        return None
    context = create_urllib3_context()
    context.load_cert_chain(cfg.cert_file, cfg.key_file)
    cfg.cert_file = cfg.key_file = None
    return context


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _refuse_writes(api_client: Any) -> None:
    """Guard the HTTP layer every request goes through: a read-only client can send only
    reads, whichever method of ours (or of the client library) asked."""
    rest = api_client.rest_client
    send = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in _READ_METHODS:
            raise ReadOnlyError(f"kubernetes {method.upper()} {url.split('?')[0]}")
        return send(method, url, *args, **kwargs)

    rest.request = request


def rfc3339_nano(t_ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds without trailing zeros."""
    t_ns = time.time_ns() if t_ns is None else t_ns
    secs, nanos = divmod(t_ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


CORE_PLURALS = {"Namespace": "namespaces", "Secret": "secrets", "ConfigMap": "configmaps"}


def claims_of(volumes: list[dict], driver: str) -> dict[str, str]:
    """CSI volume handle -> "namespace/claim" of the PersistentVolumes of `driver`."""
    out: dict[str, str] = {}
    for pv in volumes:
        spec = pv.get("spec") or {}
        csi = spec.get("csi") or {}
        ref = spec.get("claimRef") or {}
        if csi.get("driver") == driver and csi.get("volumeHandle"):
            out[str(csi["volumeHandle"])] = f"{ref.get('namespace', '')}/{ref.get('name', '')}"
    return out


class KubeBackend:
    """One cluster through one kubeconfig context; safe to call from several threads."""

    def __init__(
        self, api_client: Any, *, read_only: bool, timeout: float, server: str = ""
    ) -> None:
        self._api = api_client
        self.read_only = read_only
        if read_only:
            _refuse_writes(api_client)
        self.timeout = timeout
        self.server = server
        self._diskpool_version: str | None = None
        self.poll_interval = 0.5  # wait_reconciled / drain waits
        self.evict_retry = 5.0  # kubectl's EvictErrorRetryDelay

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        read_only: bool = False,
        timeout: float = 5.0,
    ) -> KubeBackend:
        from urllib3.util.retry import Retry

        from kubernetes import client, config

        if path and not os.path.exists(path):  # say so, not "Invalid kube-config file"
            raise BackendError(f"kubeconfig {path}: no such file", code="CONFIG")
        cfg = client.Configuration()
        scratch = scratch_dir()
        try:
            config.load_kube_config(
                config_file=os.fspath(path) if path else None,
                context=context,
                client_configuration=cfg,
                persist_config=False,
                temp_file_path=scratch,
            )
            client_tls = _load_tls_into_memory(cfg)
        except Exception as exc:  # ConfigException, OSError, YAML errors, ssl.SSLError
            log.debug("loading kubeconfig %s failed", path, exc_info=True)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendError(
                f"kubeconfig {path or '(default)'}: {first}", code="CONFIG"
            ) from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        # connect retries ride out a restarting server; reads and writes are not retried
        cfg.retries = Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0)
        api = client.ApiClient(cfg)
        if client_tls is not None:
            api.rest_client.pool_manager.connection_pool_kw["ssl_context"] = client_tls
        return cls(api, read_only=read_only, timeout=timeout, server=cfg.host)

    def close(self) -> None:
        self._api.close()

    # -- plumbing ------------------------------------------------------------------------

    def _core(self) -> Any:
        from kubernetes.client import CoreV1Api

        return CoreV1Api(self._api)

    def _custom(self) -> Any:
        from kubernetes.client import CustomObjectsApi

        return CustomObjectsApi(self._api)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=(self.timeout, self.timeout), **kwargs)
        except ReadOnlyError:
            raise
        except Exception as exc:
            raise from_exception(exc, what, self.server) from None

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        resp = self._call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(clean_json(resp.data))
        except ValueError:
            raise BackendError(f"{what}: the server did not answer JSON", code="PROTOCOL") from None

    def _writable(self, operation: str) -> None:
        if self.read_only:
            raise ReadOnlyError(operation)

    # -- reads ---------------------------------------------------------------------------

    def node_objects(self) -> list[dict]:
        return self._json("list nodes", self._core().list_node).get("items") or []

    def nodes(self, pods: list[PodRef] | tuple[PodRef, ...] | None = None) -> list[Node]:
        """Nodes; with `pods` (from pods()), each node carries its own."""
        by_node: dict[str, list[PodRef]] = {}
        for p in pods or ():
            by_node.setdefault(p.node, []).append(p)
        return [
            parse.node(o, tuple(by_node.get(o["metadata"]["name"], ())))
            for o in self.node_objects()
        ]

    def pod_objects(self, *, node: str | None = None, namespace: str | None = None) -> list[dict]:
        selector = f"spec.nodeName={node}" if node else None
        if namespace:
            doc = self._json(
                "list pods", self._core().list_namespaced_pod, namespace, field_selector=selector
            )
        else:
            doc = self._json(
                "list pods", self._core().list_pod_for_all_namespaces, field_selector=selector
            )
        return doc.get("items") or []

    def pods(self, node: str | None = None) -> list[PodRef]:
        """All pods in one list call (or one node's), with GPU requests and owners."""
        return [parse.pod_ref(o) for o in self.pod_objects(node=node)]

    def events(self, limit: int = 200, namespace: str | None = None) -> list[Event]:
        """The most recent events, newest first."""
        if namespace:
            doc = self._json("list events", self._core().list_namespaced_event, namespace)
        else:
            doc = self._json("list events", self._core().list_event_for_all_namespaces)
        out = sorted((parse.event(o) for o in doc.get("items") or []), key=lambda e: -e.time)
        return out[:limit]

    def pdbs(self, namespace: str | None = None) -> list[PdbInfo]:
        from kubernetes.client import PolicyV1Api

        api = PolicyV1Api(self._api)
        if namespace:
            doc = self._json("list pdbs", api.list_namespaced_pod_disruption_budget, namespace)
        else:
            doc = self._json("list pdbs", api.list_pod_disruption_budget_for_all_namespaces)
        return [parse.pdb(o) for o in doc.get("items") or []]

    def _list_custom(self, kind: str, namespace: str | None) -> list[dict]:
        group, version, plural = FLUX_KINDS[kind]
        return self._list_cr(group, version, plural, namespace)

    def _list_cr(self, group: str, version: str, plural: str, namespace: str | None) -> list[dict]:
        api = self._custom()
        what = f"list {plural}.{group}"
        if namespace:
            doc = self._call(
                what, api.list_namespaced_custom_object, group, version, namespace, plural
            )
        else:
            doc = self._call(what, api.list_cluster_custom_object, group, version, plural)
        return doc.get("items") or []

    def _get_custom(self, kind: str, namespace: str, name: str) -> dict:
        group, version, plural = FLUX_KINDS[kind]
        return self._call(
            f"get {kind} {namespace}/{name}",
            self._custom().get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )

    def kustomization_objects(self, namespace: str | None = None) -> list[dict]:
        return self._list_custom("Kustomization", namespace)

    def kustomizations(self, namespace: str | None = None) -> list[Kustomization]:
        return [parse.kustomization(o) for o in self.kustomization_objects(namespace)]

    def namespace_uid(self, name: str) -> str:
        """The uid of a Namespace; kube-system's names a cluster for as long as it lives."""
        doc = self._json(f"get namespace {name}", self._core().read_namespace, name)
        return str((doc.get("metadata") or {}).get("uid") or "")

    def kustomization(self, namespace: str, name: str) -> Kustomization:
        return parse.kustomization(self._get_custom("Kustomization", namespace, name))

    def git_repositories(self, namespace: str | None = None) -> list[SourceInfo]:
        return [parse.source(o) for o in self._list_custom("GitRepository", namespace)]

    def helm_releases(self, namespace: str | None = None) -> list[HelmReleaseInfo]:
        return [parse.helm_release(o) for o in self._list_custom("HelmRelease", namespace)]

    def diskpool_version(self) -> str | None:
        """The served DiskPool version (v1beta3, else v1beta2); None without Mayastor."""
        if self._diskpool_version is None:
            from kubernetes.client import ApisApi

            groups = self._call("discover API groups", ApisApi(self._api).get_api_versions)
            served = next((g for g in groups.groups or [] if g.name == MAYASTOR_GROUP), None)
            versions = {v.version for v in (served.versions if served else [])}
            self._diskpool_version = next((v for v in DISKPOOL_VERSIONS if v in versions), "")
        return self._diskpool_version or None

    def disk_pools(self, namespace: str | None = None) -> list[StoragePool]:
        version = self.diskpool_version()
        if version is None:
            return []
        items = self._list_cr(MAYASTOR_GROUP, version, "diskpools", namespace)
        return [parse.disk_pool(o) for o in items]

    def mayastor_volumes(self, namespace: str, service: str) -> list[dict]:
        """Mayastor's volumes (control plane REST v0: spec + state with replica_topology),
        read as `kubectl mayastor` does, through the API server's service proxy to the
        chart's api-rest Service (`service` as the proxy names it: scheme:name:port)."""
        path = f"/api/v1/namespaces/{namespace}/services/{service}/proxy/v0/volumes"

        def get(*, _request_timeout: Any = None, _preload_content: bool = True) -> Any:
            # the generated proxy method would quote the path's slashes and cannot send
            # the API's required max_entries; serialized as the generated methods do
            request = self._api.param_serialize(
                "GET",
                path,
                query_params=[("max_entries", 0)],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            return self._api._call_with_legacy_options(
                request, {}, None, _preload_content, _request_timeout, True
            )

        doc = self._json("list Mayastor volumes", get)
        return list(doc.get("entries") or [])

    def volume_claims(self, driver: str) -> dict[str, str]:
        """CSI volume handle -> "namespace/claim" of the PersistentVolumes of `driver`."""
        doc = self._json("list persistent volumes", self._core().list_persistent_volume)
        return claims_of(doc.get("items") or [], driver)

    # -- raw list and watch of the snapshot's kinds (kube_watch keeps a cache with them) ---

    def _kind_target(self, kind: str) -> tuple[str, Callable[..., Any], tuple] | None:
        """(what, list function, args) for a kind of WATCH_KINDS; None when not served."""
        if kind == "nodes":
            return "nodes", self._core().list_node, ()
        if kind == "pods":
            return "pods", self._core().list_pod_for_all_namespaces, ()
        if kind == "events":
            return "events", self._core().list_event_for_all_namespaces, ()
        if kind == "kustomizations":
            group, version, plural = FLUX_KINDS["Kustomization"]
            return (
                f"{plural}.{group}",
                self._custom().list_cluster_custom_object,
                (
                    group,
                    version,
                    plural,
                ),
            )
        if kind == "diskpools":
            pool_version = self.diskpool_version()
            if pool_version is None:
                return None
            fn = self._custom().list_cluster_custom_object
            return f"diskpools.{MAYASTOR_GROUP}", fn, (MAYASTOR_GROUP, pool_version, "diskpools")
        raise ValueError(f"not a watched kind: {kind}")

    def list_raw(self, kind: str) -> tuple[list[dict], str]:
        """Every object of a kind in WATCH_KINDS as the API returns it, and the list's
        resourceVersion (to watch from); ([], "") when the kind is not served."""
        return self.list_converted(kind, lambda obj: obj)

    def list_converted(self, kind: str, convert: Callable[[dict], T]) -> tuple[list[T], str]:
        """As list_raw, each object as `convert` makes it (see KubeReader.list_converted)."""
        target = self._kind_target(kind)
        if target is None:
            return [], ""
        what, fn, args = target
        doc = self._json(f"list {what}", fn, *args)
        rv = str((doc.get("metadata") or {}).get("resourceVersion") or "")
        return [convert(o) for o in doc.get("items") or []], rv

    def watch_raw(self, kind: str, resource_version: str, timeout_seconds: int) -> Any:
        """Open a watch of `kind` from `resource_version` (bookmarks on); the server ends it
        after `timeout_seconds`. Returns the streaming urllib3 response: the caller reads
        its JSON lines and closes it. None when the kind is not served."""
        target = self._kind_target(kind)
        if target is None:
            return None
        what, fn, args = target
        try:
            return fn(
                *args,
                watch=True,
                resource_version=resource_version,
                timeout_seconds=int(timeout_seconds),
                allow_watch_bookmarks=True,
                _preload_content=False,
                # the read timeout outlasts the server's own end of the stream
                _request_timeout=(self.timeout, timeout_seconds + max(self.timeout, 5.0)),
            )
        except Exception as exc:
            raise from_exception(exc, f"watch {what}", self.server) from None

    def secrets(self, namespace: str | None = None, *, reveal: bool = False) -> list[SecretInfo]:
        """Secrets' metadata and per-key sha256; the values only with reveal=True."""
        if namespace:
            doc = self._json("list secrets", self._core().list_namespaced_secret, namespace)
        else:
            doc = self._json("list secrets", self._core().list_secret_for_all_namespaces)
        return [parse.secret(o, reveal=reveal) for o in doc.get("items") or []]

    def secret(self, namespace: str, name: str, *, reveal: bool = False) -> SecretInfo:
        doc = self._json(
            f"get secret {namespace}/{name}", self._core().read_namespaced_secret, name, namespace
        )
        return parse.secret(doc, reveal=reveal)

    # -- node writes ---------------------------------------------------------------------

    def cordon(self, node: str) -> None:
        self._writable(f"cordon {node}")
        self._call(
            f"cordon {node}", self._core().patch_node, node, {"spec": {"unschedulable": True}}
        )

    def uncordon(self, node: str) -> None:
        self._writable(f"uncordon {node}")
        self._call(
            f"uncordon {node}", self._core().patch_node, node, {"spec": {"unschedulable": False}}
        )

    def delete_node(self, node: str) -> None:
        """Delete the Node object (what `kubectl delete node` does); its pods are left to
        the pod garbage collector, as on a real cluster."""
        self._writable(f"delete node {node}")
        self._call(f"delete node {node}", self._core().delete_node, node)

    def force_delete_pod(self, namespace: str, name: str, uid: str = "") -> None:
        """`kubectl delete pod --grace-period=0 --force`: the object goes without waiting
        for its kubelet (a dead node's Terminating pod). With `uid`, only that object (a
        StatefulSet's successor of the same name is refused with a 409)."""
        self._writable(f"force delete pod {namespace}/{name}")
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        body = V1DeleteOptions(
            grace_period_seconds=0, preconditions=V1Preconditions(uid=uid) if uid else None
        )
        self._call(
            f"force delete pod {namespace}/{name}",
            self._core().delete_namespaced_pod,
            name,
            namespace,
            body=body,
        )

    def drain(self, node: str, deadline: float, on_progress: Progress = None) -> Any:
        """Cordon, then evict every pod but DaemonSet and mirror pods, retrying those a
        PodDisruptionBudget protects until `deadline` (a time.monotonic() value).
        Returns a DrainReport; raises DrainBlocked (with .report) when pods remain."""
        self._writable(f"drain {node}")
        from dapper.backends.clients.kube_drain import drain

        return drain(self, node, deadline, on_progress)

    def evict(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        """One eviction (policy/v1); raises BackendError (code TOO_MANY_REQUESTS on a PDB)."""
        self._writable(f"evict {namespace}/{name}")
        from kubernetes.client import V1DeleteOptions, V1Eviction, V1ObjectMeta

        body = V1Eviction(
            metadata=V1ObjectMeta(name=name, namespace=namespace),
            delete_options=(
                V1DeleteOptions(grace_period_seconds=grace_seconds)
                if grace_seconds is not None
                else None
            ),
        )
        self._call(
            f"evict {namespace}/{name}",
            self._core().create_namespaced_pod_eviction,
            name,
            namespace,
            body,
        )

    # -- Flux writes ---------------------------------------------------------------------

    def _patch_custom(self, kind: str, namespace: str, name: str, patch: dict, what: str) -> dict:
        group, version, plural = FLUX_KINDS[kind]
        return self._call(
            what,
            self._custom().patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            patch,
        )

    def reconcile(
        self,
        namespace: str,
        name: str,
        *,
        kind: str = "Kustomization",
        with_source: bool = False,
        requested_at: str | None = None,
        source_timeout: float | None = None,
        on_progress: Progress = None,
    ) -> str:
        """What `flux reconcile` does: refuse a suspended object, then annotate
        reconcile.fluxcd.io/requestedAt, the source first with `with_source`. Given a
        `source_timeout`, the source is waited for (Ready with the request handled, so its
        new artifact is stored) before the object is asked, as `flux reconcile ks
        --with-source` does; a suspended or failing source raises. Without one both are
        annotated at once (a runbook then waits for the revision it pushed).
        Returns the timestamp to pass to wait_reconciled."""
        self._writable(f"reconcile {kind} {namespace}/{name}")
        if kind not in FLUX_KINDS:
            raise BackendError(f"cannot reconcile a {kind}", code="INVALID")
        obj = self._get_custom(kind, namespace, name)
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            raise BackendError(
                f"{kind} {namespace}/{name} is suspended; resume it first", code="SUSPENDED"
            )
        stamp = requested_at or rfc3339_nano()
        if with_source:
            ref = (
                spec.get("sourceRef")
                or ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef")
                or spec.get("chartRef")
                or {}
            )
            src_kind = ref.get("kind", "")
            if src_kind in FLUX_KINDS:
                src_ns, src_name = ref.get("namespace") or namespace, ref.get("name", "")
                self.reconcile(src_ns, src_name, kind=src_kind, requested_at=stamp)
                if source_timeout is not None:  # the source's new artifact first
                    self.wait_reconciled(
                        src_ns,
                        src_name,
                        stamp,
                        timeout=source_timeout,
                        on_progress=on_progress,
                        kind=src_kind,
                    )
        patch = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
        self._patch_custom(kind, namespace, name, patch, f"reconcile {kind} {namespace}/{name}")
        return stamp

    def wait_reconciled(
        self,
        namespace: str,
        name: str,
        requested_at: str,
        timeout: float = 120.0,
        on_progress: Progress = None,
        *,
        kind: str = "Kustomization",
    ) -> str:
        """Poll until status.lastHandledReconcileAt == requested_at and Ready=True; returns
        the applied revision. A handled request that ends not Ready raises its message."""
        deadline = time.monotonic() + timeout
        last_note = ""
        while True:
            obj = self._get_custom(kind, namespace, name)
            status = obj.get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
            )
            handled = status.get("lastHandledReconcileAt") == requested_at
            current = status.get("observedGeneration", 0) >= (obj.get("metadata") or {}).get(
                "generation", 0
            )
            note = f"{ready.get('reason', 'waiting')}: {ready.get('message', '')}".strip(": ")
            if handled and current and ready.get("status") == "True":
                return status.get("lastAppliedRevision") or (status.get("artifact") or {}).get(
                    "revision", ""
                )
            if handled and ready.get("status") == "False":
                raise BackendError(
                    f"{kind} {namespace}/{name} reconcile failed: {note}", code="FAILED"
                )
            if on_progress is not None and note != last_note:
                on_progress(
                    f"{namespace}/{name}: {note}"
                    if handled
                    else f"{namespace}/{name}: waiting for the controller to pick up the request"
                )
                last_note = note
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"timed out after {timeout:.0f}s waiting for {kind} {namespace}/{name} "
                    f"to reconcile ({note or 'no status'})",
                    code="TIMEOUT",
                )
            time.sleep(self.poll_interval)

    def suspend(self, namespace: str, name: str, *, kind: str = "Kustomization") -> None:
        self._writable(f"suspend {kind} {namespace}/{name}")
        self._patch_custom(
            kind, namespace, name, {"spec": {"suspend": True}}, f"suspend {namespace}/{name}"
        )

    def resume(self, namespace: str, name: str, *, kind: str = "Kustomization") -> None:
        self._writable(f"resume {kind} {namespace}/{name}")
        self._patch_custom(
            kind, namespace, name, {"spec": {"suspend": None}}, f"resume {namespace}/{name}"
        )

    # -- workloads and secrets -----------------------------------------------------------

    def workload(self, kind: str, namespace: str, name: str) -> WorkloadInfo:
        """A Deployment, StatefulSet or DaemonSet; BackendError NOT_FOUND when absent."""
        from kubernetes.client import AppsV1Api

        apps = AppsV1Api(self._api)
        fn = {
            "Deployment": apps.read_namespaced_deployment,
            "StatefulSet": apps.read_namespaced_stateful_set,
            "DaemonSet": apps.read_namespaced_daemon_set,
        }.get(kind)
        if fn is None:
            raise BackendError(f"{kind} is not a workload kind", code="INVALID")
        return workload_info(self._json(f"get {kind} {namespace}/{name}", fn, name, namespace))

    def rollout_restart(self, kind: str, namespace: str, name: str) -> str:
        """kubectl rollout restart: stamp the pod template; returns the timestamp."""
        self._writable(f"rollout restart {kind} {namespace}/{name}")
        from kubernetes.client import AppsV1Api

        apps = AppsV1Api(self._api)
        fn = {
            "Deployment": apps.patch_namespaced_deployment,
            "StatefulSet": apps.patch_namespaced_stateful_set,
            "DaemonSet": apps.patch_namespaced_daemon_set,
        }.get(kind)
        if fn is None:
            raise BackendError(f"cannot restart a {kind}", code="INVALID")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        self._call(f"restart {kind} {namespace}/{name}", fn, name, namespace, patch)
        return stamp

    def apply_core(self, obj: dict, *, manager: str = "dapper-tui") -> None:
        """Server-side apply (force) of a core/v1 Namespace, Secret or ConfigMap, as
        `kubectl apply --server-side` does; the object's values are never logged."""
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        plural = CORE_PLURALS.get(kind)
        if plural is None or not name or (kind != "Namespace" and not namespace):
            raise BackendError(f"cannot apply {kind or 'an object'} {name}", code="INVALID")
        what = f"apply {kind} {namespace + '/' if namespace else ''}{name}"
        self._writable(what)
        path = f"/api/v1/{plural}/{name}"
        if kind != "Namespace":
            path = f"/api/v1/namespaces/{namespace}/{plural}/{name}"
        self._raw(
            what,
            "PATCH",
            path,
            query=[("fieldManager", manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
            body=obj,
        )

    def core_names(self, kind: str, namespace: str = "") -> set[str]:
        """Names of the Namespaces, Secrets or ConfigMaps (in `namespace`) that exist."""
        plural = CORE_PLURALS[kind]
        path = f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"
        data = self._raw(f"list {plural}", "GET", path)
        try:
            doc = json.loads(clean_json(data))
        except ValueError:
            raise BackendError(f"list {plural}: the server did not answer JSON") from None
        return {str((i.get("metadata") or {}).get("name")) for i in doc.get("items") or []}

    def _raw(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "",
        body: Any = None,
    ) -> bytes:
        """One request by path (for calls the generated API has no method for)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            params = self._api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
        except Exception as exc:
            raise from_exception(exc, what, self.server) from None
        resp = self._call(what, self._api.call_api, *params)
        if not 200 <= int(resp.status) < 300:
            from kubernetes.client.exceptions import ApiException

            raise from_exception(ApiException(http_resp=resp), what, self.server)
        resp.read()
        return bytes(resp.data or b"")

    def patch_secret(
        self,
        namespace: str,
        name: str,
        values: dict[str, bytes | str],
        *,
        remove: tuple[str, ...] = (),
    ) -> SecretInfo:
        """Set (and remove) keys of a Secret with a merge patch; returns hashes only."""
        self._writable(f"patch secret {namespace}/{name}")
        data: dict[str, str | None] = {
            k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode()
            for k, v in values.items()
        }
        data.update({k: None for k in remove})
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(self._api)
        resp = self._call(
            f"patch secret {namespace}/{name}",
            api.patch_namespaced_secret,
            name,
            namespace,
            {"data": data},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
        return parse.secret(json.loads(clean_json(resp.data)))


def workload_info(obj: dict) -> WorkloadInfo:
    """WorkloadInfo from an apps/v1 object as the API returns it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    kind = str(obj.get("kind") or "")
    if kind == "DaemonSet":
        desired, ready = status.get("desiredNumberScheduled"), status.get("numberReady")
    else:
        desired, ready = spec.get("replicas", 1), status.get("readyReplicas")
    return WorkloadInfo(
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        restarted_at=str(template.get(RESTARTED_AT) or ""),
        reloader=tuple(
            sorted(
                (str(k), str(v))
                for k, v in (meta.get("annotations") or {}).items()
                if str(k).split("/", 1)[0].endswith("reloader.stakater.com")
            )
        ),
        desired=int(desired or 0),
        ready=int(ready or 0),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
    )
