"""The snapshot's Kubernetes reads over urllib3 alone: list and watch as raw JSON.

`status` and the console's first snapshot wait for these reads; through the official
client they first pay ~1.7 s of imports (the package, then CoreV1Api's module). This
reader speaks the same HTTPS to the same endpoints with only the kubeconfig's server,
CA and credentials (`kubeconfig.read_target`), and it can only send GET: it is
read-only by construction. Writes, and contexts it cannot serve, use `KubeBackend`.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

from dapper.backends.clients.kube import DISKPOOL_VERSIONS, MAYASTOR_GROUP, claims_of
from dapper.backends.clients.kube_errors import from_exception, from_status
from dapper.backends.clients.kubeconfig import KubeTarget, scratch_dir
from dapper.backends.errors import BackendError
from dapper.backends.safe_text import clean_json

log = logging.getLogger("dapper.backends.clients.kube")

LIST_PAGE = 500  # objects per list request
T = TypeVar("T")


def _same(obj: dict) -> dict:
    return obj


_PATHS = {
    "nodes": ("nodes", "/api/v1/nodes"),
    "pods": ("pods", "/api/v1/pods"),
    "events": ("events", "/api/v1/events"),
    "kustomizations": (
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations",
    ),
}


class RawKubeReader(Protocol):
    """What the snapshot and the watcher need: KubeReader or the full KubeBackend."""

    def list_raw(self, kind: str) -> tuple[list[dict], str]: ...

    def list_converted(self, kind: str, convert: Callable[[dict], T]) -> tuple[list[T], str]: ...

    def watch_raw(self, kind: str, resource_version: str, timeout_seconds: int) -> Any: ...


class VolumeReads(Protocol):
    """What the Mayastor source reads: KubeReader or the full KubeBackend."""

    def mayastor_volumes(self, namespace: str, service: str) -> list[dict]: ...

    def volume_claims(self, driver: str) -> dict[str, str]: ...

    def close(self) -> None: ...


def client_context(target: KubeTarget) -> ssl.SSLContext:
    """Verify the server with the kubeconfig's CA (or the system's), present the user's
    certificate; the key passes through a memory-backed scratch file that is removed
    before this returns."""
    context = ssl.create_default_context(cadata=target.ca_pem.decode() if target.ca_pem else None)
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if target.cert_pem:
        scratch = Path(scratch_dir())
        try:
            (scratch / "tls.crt").write_bytes(target.cert_pem)
            (scratch / "tls.key").write_bytes(target.key_pem)
            context.load_cert_chain(scratch / "tls.crt", scratch / "tls.key")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return context


class KubeReader:
    """GET-only access to one cluster; safe to call from several threads (urllib3 pools)."""

    def __init__(self, target: KubeTarget, *, timeout: float) -> None:
        import urllib3

        self.server = target.server
        self.timeout = timeout
        self._diskpool_version: str | None = None
        headers = {"Accept": "application/json", "User-Agent": "dapper-tui"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        pool_options: dict[str, Any] = {}
        if target.tls_server_name:
            pool_options["server_hostname"] = target.tls_server_name
        if target.insecure:
            pool_options["assert_hostname"] = False
            # named once by tls_posture (header, status, check), not on stderr per request
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=8,
            headers=headers,
            ssl_context=client_context(target),
            # connect retries ride out a restarting server; reads are not retried
            retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0),
            **pool_options,
        )

    def close(self) -> None:
        self._pool.clear()

    def _get(
        self, what: str, path: str, *, read_timeout: float | None = None, **params: Any
    ) -> Any:
        import urllib3

        url = self.server + path + (f"?{urlencode(params)}" if params else "")
        timeout = urllib3.Timeout(connect=self.timeout, read=read_timeout or self.timeout)
        try:
            resp = self._pool.request("GET", url, preload_content=False, timeout=timeout)
        except Exception as exc:  # transport: refused, TLS, DNS, timeouts
            raise from_exception(exc, what, self.server) from None
        if resp.status >= 400:
            try:
                body = resp.read()
            finally:
                resp.release_conn()
            raise from_status(resp.status, body, what, resp.reason or "")
        return resp

    def _json(self, what: str, path: str) -> dict:
        resp = self._get(what, path)
        try:
            data = resp.read()
        except Exception as exc:
            raise from_exception(exc, what, self.server) from None
        finally:
            resp.release_conn()
        try:
            doc = json.loads(clean_json(data))
        except ValueError:
            raise BackendError(f"{what}: the server did not answer JSON", code="PROTOCOL") from None
        return doc if isinstance(doc, dict) else {}

    def diskpool_version(self) -> str | None:
        """The served DiskPool version (v1beta3, else v1beta2); None without Mayastor."""
        if self._diskpool_version is None:
            groups = self._json("discover API groups", "/apis").get("groups") or []
            served: dict = next((g for g in groups if g.get("name") == MAYASTOR_GROUP), {})
            versions = {v.get("version") for v in served.get("versions") or []}
            self._diskpool_version = next((v for v in DISKPOOL_VERSIONS if v in versions), "")
        return self._diskpool_version or None

    def _target(self, kind: str) -> tuple[str, str] | None:
        if kind in _PATHS:
            return _PATHS[kind]
        if kind == "diskpools":
            version = self.diskpool_version()
            if version is None:
                return None
            return f"diskpools.{MAYASTOR_GROUP}", f"/apis/{MAYASTOR_GROUP}/{version}/diskpools"
        raise ValueError(f"not a watched kind: {kind}")

    def list_raw(self, kind: str) -> tuple[list[dict], str]:
        """As KubeBackend.list_raw: the kind's raw objects and the list's resourceVersion."""
        return self.list_converted(kind, _same)

    def list_converted(self, kind: str, convert: Callable[[dict], T]) -> tuple[list[T], str]:
        """Each object of the kind as `convert` makes it, and the list's resourceVersion,
        read in pages of LIST_PAGE (as kubectl and informers do). Each page is converted
        as it arrives: holding 20,000 raw pods until the last page came was most of the
        console's peak memory, which the allocator then never gave back."""
        target = self._target(kind)
        if target is None:
            return [], ""
        what, path = target
        items: list[T] = []
        rv, token = "", ""
        while True:
            query = f"?limit={LIST_PAGE}" + (f"&continue={quote(token)}" if token else "")
            doc = self._json(f"list {what}", path + query)
            meta = doc.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            items += [convert(o) for o in doc.get("items") or []]
            token = str(meta.get("continue") or "")
            del doc
            if not token:
                return items, rv

    def mayastor_volumes(self, namespace: str, service: str) -> list[dict]:
        """As KubeBackend.mayastor_volumes: api-rest's volumes through the service proxy."""
        path = f"/api/v1/namespaces/{namespace}/services/{service}/proxy/v0/volumes"
        doc = self._json("list Mayastor volumes", path + "?max_entries=0")
        return list(doc.get("entries") or [])

    def volume_claims(self, driver: str) -> dict[str, str]:
        """As KubeBackend.volume_claims: CSI volume handle -> "namespace/claim"."""
        doc = self._json("list persistent volumes", "/api/v1/persistentvolumes")
        return claims_of(doc.get("items") or [], driver)

    def watch_raw(self, kind: str, resource_version: str, timeout_seconds: int) -> Any:
        """As KubeBackend.watch_raw: the open streaming response; None when not served."""
        target = self._target(kind)
        if target is None:
            return None
        what, path = target
        return self._get(
            f"watch {what}",
            path,
            # the read timeout outlasts the server's own end of the stream
            read_timeout=timeout_seconds + max(self.timeout, 5.0),
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=int(timeout_seconds),
            allowWatchBookmarks="true",
        )


def open_reader(path: str | None, context: str | None, *, timeout: float) -> KubeReader | None:
    """A KubeReader for the kubeconfig's context, or None when only the full client can
    serve it (exec plugins, proxies, several merged files, an unreadable file)."""
    from dapper.backends.clients.kubeconfig import read_target

    target = read_target(path, context)
    if target is None:
        return None
    try:
        return KubeReader(target, timeout=timeout)
    except ssl.SSLError as exc:
        log.info("kubeconfig TLS material not usable by the lean reader: %s", exc)
        return None
