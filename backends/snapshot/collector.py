"""Gather every source concurrently, each with a timeout, and join them into snapshots.

Each source is fetched on its own (`refresh(source)`), never overlapping itself, so a
slow or failing API slows or degrades only its own part: the others keep their data,
and a failed source keeps its last good data with the time of its last success. The
heavy client libraries are imported here, on first use, never at console startup.

Kubernetes can also be watched (`start_watches()`, which the console calls and the
one-shot `status` does not): while the watch cache is in sync, refresh("kubernetes")
reads it without a single list call, `on_change` callbacks learn of every change, and
the timer becomes a slow safety net; when the watches fail, the list calls take over.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from dapper.backends.config import Config
from dapper.backends.errors import BackendError
from dapper.backends.model import ClusterSnapshot, Health, SourceHealth
from dapper.backends.snapshot.join import GitData, HostPci, KubeData, ProxmoxData, TalosData, join
from dapper.backends.tls_posture import insecure_tls

log = logging.getLogger(__name__)

SOURCES = ("kubernetes", "talos", "proxmox", "git")
# Client libraries are imported on first use, from worker threads; two threads importing
# requests/urllib3 at once can see a half-initialised module, so imports take turns.
_IMPORTS = threading.Lock()
INTERVALS = {"kubernetes": 2.0, "talos": 5.0, "proxmox": 5.0, "git": 10.0}
EVENTS_SHOWN = 200  # the newest events kept in a snapshot
WATCHED_INTERVAL = 30.0  # a source served by healthy watches is still re-read this often


def one_line(exc: BaseException) -> str:
    """The operator's line for an error; details stay in the log."""
    if isinstance(exc, BackendError):
        return exc.reason
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


class Collector:
    """The console's and `status`'s only way to the cluster (see module docstring)."""

    SOURCES = SOURCES

    def __init__(
        self,
        config: Config,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        talos_nodes: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.clock = clock
        self._talos_nodes = talos_nodes
        self._data: dict[str, Any] = {}
        self._health: dict[str, SourceHealth] = {s: SourceHealth(source=s) for s in SOURCES}
        self._locks = {s: asyncio.Lock() for s in SOURCES}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._kube: Any = None
        self._proxmox: Any = None
        self._talos: Any = None
        self._git_cache: tuple[str, GitData] | None = None
        self._pci_seen: dict[str, HostPci] = {}
        self._watcher: Any = None
        self._watch_lock = threading.Lock()  # start_watches (a thread) against close()
        self._closed = False
        self._change_callbacks: list[Callable[[str], None]] = []
        self._insecure_tls = insecure_tls(config)
        self.snapshot = self._join()
        self.operations: Any = None
        if not config.read_only:
            from dapper.backends.operations import Operations

            self.operations = Operations(self)

    @property
    def source_names(self) -> tuple[str, ...]:
        return SOURCES

    def interval(self, source: str) -> float:
        if self.watching(source):
            return max(INTERVALS[source], WATCHED_INTERVAL)
        return INTERVALS[source]

    # -- watches (the console's; a one-shot refresh never starts them) --------------------

    def start_watches(self, **options: Any) -> None:
        """Watch Kubernetes from now on (idempotent). `options` go to KubeWatcher (tests
        shorten its backoff). The client is built on a watcher thread, not here."""
        with self._watch_lock:
            if self._watcher is not None or self._closed:
                return
            with _IMPORTS:
                from dapper.backends.clients.kube_watch import KubeWatcher

            self._watcher = KubeWatcher(
                self.kube, on_change=lambda: self._changed("kubernetes"), **options
            )
            self._watcher.start()

    def on_change(self, callback: Callable[[str], None]) -> None:
        """`callback(source)` runs on a watcher thread when a watched source's data or
        watch health changed; it should only schedule refresh(source), never block."""
        self._change_callbacks.append(callback)

    def watching(self, source: str) -> bool:
        """Whether `source` is served by healthy watches right now."""
        return source == "kubernetes" and self._watcher is not None and self._watcher.healthy

    @property
    def watcher(self) -> Any:
        """The KubeWatcher once start_watches() ran, else None."""
        return self._watcher

    def _changed(self, source: str) -> None:
        for callback in list(self._change_callbacks):
            try:
                callback(source)
            except Exception:  # one listener failing must not silence the others
                log.exception("change callback for %s failed", source)

    # -- clients, built lazily (their imports are the expensive part) ---------------------

    def kube(self) -> Any:
        with _IMPORTS:
            return self._kube_client()

    def _kube_client(self) -> Any:
        if self._kube is None:
            from dapper.backends.clients.kube import KubeBackend

            self._kube = KubeBackend.from_kubeconfig(
                self.config.kubeconfig or None,
                context=self.config.kube_context or None,
                read_only=self.config.read_only,
                timeout=self.timeout,
            )
        return self._kube

    def proxmox(self) -> Any:
        with _IMPORTS:
            return self._proxmox_client()

    def _proxmox_client(self) -> Any:
        if self._proxmox is None:
            from dapper.backends.clients.proxmox import ProxmoxBackend

            self._proxmox = ProxmoxBackend.from_config(
                self.config.proxmox, read_only=self.config.read_only, timeout=self.timeout
            )
        return self._proxmox

    def talos(self) -> Any:
        with _IMPORTS:
            return self._talos_client()

    def _talos_client(self) -> Any:
        if self._talos is None:
            from dapper.backends.clients.talos import TalosClient

            self._talos = TalosClient.from_config(
                self.config.talosconfig or None,
                self.config.talos_context or None,
                read_only=self.config.read_only,
                timeout=self.timeout,
                maintenance_endpoint=self.config.talos_maintenance_endpoint or None,
            )
        return self._talos

    # -- fetching -------------------------------------------------------------------------

    def _fetch_kube(self, fresh: bool = False) -> KubeData:
        watcher = self._watcher
        cached = None
        if watcher is not None and watcher.healthy and (not fresh or watcher.sync(self.timeout)):
            cached = watcher.cache()
        if cached is not None:
            return _kube_data(cached)
        if watcher is not None and watcher.reason:
            log.info("kubernetes watches not in sync (%s): listing", watcher.reason)
        from concurrent.futures import ThreadPoolExecutor

        from dapper.backends.clients.kube import WATCH_KINDS

        k = self.kube()
        # Five independent list calls: in parallel, the snapshot waits for the slowest only.
        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="kube-list") as pool:
            lists = {kind: pool.submit(k.list_raw, kind) for kind in WATCH_KINDS}
            return _kube_data({kind: f.result()[0] for kind, f in lists.items()})

    def _fetch_proxmox(self) -> ProxmoxData:
        p = self.proxmox()
        vms = tuple(p.vms())
        pci: list[HostPci] = []
        for node in p.node_names():
            for d in p.pci_devices(node):
                pci.append(
                    HostPci(
                        node,
                        d.address,
                        d.vendor_id,
                        d.device_id,
                        d.vendor_name,
                        d.device_name,
                        d.class_id,
                    )
                )
        # A device that was on the bus and is now gone (a GPU fallen off) keeps its identity
        # from the last time it was seen, so the console can say which GPU is missing.
        present = {d.address for d in pci}
        wanted = {dev.address.split(",")[0] for vm in vms for dev in vm.devices}
        for address, known in self._pci_seen.items():
            if address not in present and address in wanted:
                pci.append(replace(known, present=False))
        self._pci_seen.update({d.address: d for d in pci if d.present})
        return ProxmoxData(vms=vms, pci=tuple(pci))

    async def _fetch_talos(self) -> TalosData:
        t = self.talos()
        nodes = self._talos_nodes
        kube = self._data.get("kubernetes")
        if nodes is None and kube is not None and kube.nodes:
            # Every node Kubernetes knows, plus any the talosconfig names (maintenance ones).
            known = [n.internal_ip or n.name for n in kube.nodes]
            nodes = tuple(dict.fromkeys([*known, *t.context.nodes]))
        machines = await t.machines(nodes, timeout=self.timeout)
        if machines and all(m.stage == "unreachable" for m in machines):
            raise BackendError(machines[0].error or "no Talos machine answered")
        return TalosData(machines=tuple(machines))

    def _fetch_git(self) -> GitData:
        with _IMPORTS:
            from dapper.backends.clients.gitdata import tree_view

        repo = self.config.repo_path or "."
        head, data = tree_view(repo, self._git_cache)
        self._git_cache = (head, data)
        return data

    async def _fetch(self, source: str, fresh: bool) -> Any:
        if source == "talos":
            return await asyncio.wait_for(self._fetch_talos(), self.timeout * 2)
        fn = {
            "kubernetes": partial(self._fetch_kube, fresh),
            "proxmox": self._fetch_proxmox,
            "git": self._fetch_git,
        }[source]
        # A thread cannot be cancelled: remember it, and do not start another while it runs.
        future = self._inflight.get(source)
        if future is None or future.done():
            future = asyncio.ensure_future(asyncio.to_thread(fn))
            self._inflight[source] = future
        return await asyncio.wait_for(asyncio.shield(future), self.timeout * 2)

    async def refresh(self, source: str, *, fresh: bool = False) -> ClusterSnapshot:
        """Fetch one source and re-join; never raises (a failure degrades that source).
        `fresh` re-reads a watched source from the API (the watcher lists again), so what
        was written before the call shows; otherwise the watch cache serves it."""
        async with self._locks[source]:
            now = self.clock()
            previous = self._health[source]
            try:
                self._data[source] = await self._fetch(source, fresh)
            except Exception as exc:  # one source failing must never take the console down
                reason = one_line(exc)
                log.warning("source %s degraded: %s", source, reason, exc_info=True)
                self._health[source] = replace(
                    previous, health=Health.DEGRADED, reason=reason, last_attempt=now
                )
            else:
                self._health[source] = SourceHealth(
                    source=source, health=Health.OK, last_success=now, last_attempt=now
                )
            self.snapshot = self._join()
            return self.snapshot

    async def refresh_all(self) -> ClusterSnapshot:
        """Every source at once; Talos waits for Kubernetes only when the talosconfig names
        no nodes (then it targets the nodes Kubernetes lists)."""
        talos_needs_kube = self._talos_nodes is None and not self._talosconfig_nodes()

        async def kube_then_talos() -> None:
            await self.refresh("kubernetes")
            await self.refresh("talos")

        first = (
            [kube_then_talos()]
            if talos_needs_kube
            else [self.refresh("kubernetes"), self.refresh("talos")]
        )
        await asyncio.gather(*first, self.refresh("proxmox"), self.refresh("git"))
        return self.snapshot

    def _talosconfig_nodes(self) -> tuple[str, ...]:
        try:
            return tuple(self.talos().context.nodes)
        except Exception:  # an unreadable talosconfig degrades the talos source on refresh
            return ()

    def _join(self) -> ClusterSnapshot:
        joined = join(
            cluster=self.config.cluster_name,
            mode=self.config.mode,
            read_only=self.config.read_only,
            taken_at=self.clock(),
            kube=self._data.get("kubernetes"),
            proxmox=self._data.get("proxmox"),
            talos=self._data.get("talos"),
            git=self._data.get("git"),
            sources=tuple(self._health[s] for s in SOURCES),
        )
        return replace(joined, insecure_tls=self._insecure_tls)

    async def close(self) -> None:
        with self._watch_lock:
            self._closed = True
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.close)
        for future in self._inflight.values():
            future.cancel()
        if self._talos is not None:
            await self._talos.aclose()
        for client in (self._kube, self._proxmox):
            closer = getattr(client, "close", None)
            if closer is not None:
                closer()


def _kube_data(raw: dict[str, list[dict]]) -> KubeData:
    """KubeData from each watched kind's raw objects (listed or from the watch cache),
    in the API's list order (namespace, name) whichever way they came."""
    from dapper.backends.clients import kube_parse

    def ordered(kind: str) -> list[dict]:
        return sorted(raw[kind], key=_list_order)

    pod_refs = [kube_parse.pod_ref(o) for o in ordered("pods")]
    by_node: dict[str, list] = {}
    for p in pod_refs:
        by_node.setdefault(p.node, []).append(p)
    nodes = [
        kube_parse.node(o, tuple(by_node.get(o["metadata"]["name"], ()))) for o in ordered("nodes")
    ]
    events = sorted((kube_parse.event(o) for o in raw["events"]), key=lambda e: -e.time)
    return KubeData(
        nodes=tuple(nodes),
        pods=tuple(pod_refs),
        kustomizations=tuple(kube_parse.kustomization(o) for o in ordered("kustomizations")),
        pools=tuple(kube_parse.disk_pool(o) for o in ordered("diskpools")),
        events=tuple(events[:EVENTS_SHOWN]),
    )


def _list_order(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
