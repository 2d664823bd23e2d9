"""Gather every registered source concurrently, each with a timeout, into snapshots.

The sources are the registry's (`registry.REGISTRY`; each one class, see sources.Source).
Each is fetched on its own (`refresh(name)`), never overlapping itself, so a slow or
failing API slows or degrades only its own part: the others keep their data, and a failed
source keeps its last good data with the time of its last success. The heavy client
libraries are imported by the sources on first use, never at console startup.

A watchable source (Kubernetes) can also be watched (`start_watches()`, which the console
calls and the one-shot `status` does not): while its watch is in sync, a refresh reads
its cache, `on_change` callbacks learn of every change, and the timer becomes a slow
safety net; when the watch fails, the list calls take over.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from dapper.backends.config import Config
from dapper.backends.errors import BackendError
from dapper.backends.model import ClusterSnapshot, Health, SourceHealth, SourceName
from dapper.backends.protocols import ClusterOperations
from dapper.backends.snapshot.engine import Engine
from dapper.backends.snapshot.join import JoinReuse, join
from dapper.backends.snapshot.registry import REGISTRY, SourceRegistry
from dapper.backends.snapshot.sources import (
    Source,
    SourceContext,
    WatchableSource,
    feed_all,
)
from dapper.backends.tls_posture import insecure_tls

if TYPE_CHECKING:
    from dapper.backends.clients.kube import KubeBackend
    from dapper.backends.clients.kube_watch import KubeWatcher
    from dapper.backends.clients.proxmox import ProxmoxBackend
    from dapper.backends.clients.talos import TalosClient
    from dapper.backends.operations import Operations
    from dapper.backends.snapshot.kubernetes_source import KubernetesSource
    from dapper.backends.snapshot.proxmox_source import ProxmoxSource
    from dapper.backends.snapshot.talos_source import TalosSource

log = logging.getLogger(__name__)

# The built-in sources' names, for callers not yet reading `collector.source_names`.
SOURCES: tuple[str, ...] = REGISTRY.names()
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

    def __init__(
        self,
        config: Config,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        talos_nodes: tuple[str, ...] | None = None,
        registry: SourceRegistry = REGISTRY,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.clock = clock
        self._data: dict[str, object] = {}
        context = SourceContext(config, timeout, self._data.get, talos_nodes)
        self._sources: dict[str, Source] = {
            str(name): factory(context) for name, factory in registry.factories().items()
        }
        self._health = {name: SourceHealth(source=name) for name in self._sources}
        self._locks = {name: asyncio.Lock() for name in self._sources}  # the engine's loop
        self._engine = Engine()
        self._watch_lock = threading.Lock()  # start_watches (a thread) against close()
        self._watched: set[str] = set()
        self._closed = False
        self._change_callbacks: list[Callable[[str], None]] = []
        self._insecure_tls = insecure_tls(config)
        self._reuse = JoinReuse()  # only _join touches it, on the engine's loop
        self.snapshot = self._join()
        self.operations: ClusterOperations | None = None  # the console's protocol
        if not config.read_only:
            from dapper.backends.operations import Operations

            self.operations = Operations(self)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    @property
    def SOURCES(self) -> tuple[str, ...]:
        """The console's old name for `source_names`, until tui/ reads that."""
        return self.source_names

    def source(self, name: str) -> Source:
        """The source registered as `name` (a KeyError names an unknown one)."""
        return self._sources[name]

    def interval(self, source: str) -> float:
        base = self._sources[source].interval
        return max(base, WATCHED_INTERVAL) if self.watching(source) else base

    # -- watches (the console's; a one-shot refresh never starts them) --------------------

    def start_watches(self, **options: Any) -> None:
        """Watch every watchable source from now on (idempotent). `options` go to each
        watch (tests shorten the Kubernetes watcher's backoff)."""
        for name, source in self._sources.items():
            if not isinstance(source, WatchableSource):
                continue
            with self._watch_lock:
                if name in self._watched or self._closed:
                    continue
                self._watched.add(name)
                source.start_watch(partial(self._changed, name), **options)

    def on_change(self, callback: Callable[[str], None]) -> None:
        """`callback(source)` runs on a watcher thread when a watched source's data or
        watch health changed; it should only schedule refresh(source), never block."""
        self._change_callbacks.append(callback)

    def watchable(self, source: str) -> bool:
        return isinstance(self._sources.get(source), WatchableSource)

    def watching(self, source: str) -> bool:
        """Whether `source` is served by healthy watches right now."""
        src = self._sources.get(source)
        return isinstance(src, WatchableSource) and src.watching

    def _changed(self, source: str) -> None:
        for callback in list(self._change_callbacks):
            try:
                callback(source)
            except Exception:  # one listener failing must not silence the others
                log.exception("change callback for %s failed", source)

    # -- the built-in sources' clients (operations and tests write through them) ----------

    def kube(self) -> KubeBackend:
        return cast("KubernetesSource", self._sources[SourceName.KUBERNETES]).client()

    def proxmox(self) -> ProxmoxBackend:
        return cast("ProxmoxSource", self._sources[SourceName.PROXMOX]).client()

    def talos(self) -> TalosClient:
        return cast("TalosSource", self._sources[SourceName.TALOS]).client()

    @property
    def watcher(self) -> KubeWatcher | None:
        """The Kubernetes watcher once start_watches() ran, else None."""
        return cast("KubernetesSource", self._sources[SourceName.KUBERNETES]).watcher

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self, source: str, *, fresh: bool = False) -> ClusterSnapshot:
        """Fetch one source and re-join; never raises (a failure degrades that source).
        `fresh` re-reads a watched source from the API (the watcher lists again), so what
        was written before the call shows; otherwise the watch cache serves it. The work
        runs on the collector's own loop (engine.py), never on the caller's."""
        return await self._engine.run(self._refresh(source, fresh))

    async def _refresh(self, source: str, fresh: bool) -> ClusterSnapshot:
        await self._fetch(source, fresh)
        self.snapshot = self._join()
        return self.snapshot

    async def _fetch(self, source: str, fresh: bool = False) -> None:
        """One source's data and health, kept for the next join."""
        async with self._locks[source]:
            now = self.clock()
            previous = self._health[source]
            try:
                fetch = self._sources[source].fetch(fresh=fresh)
                self._data[source] = await asyncio.wait_for(fetch, self.timeout * 2)
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

    async def refresh_all(self) -> ClusterSnapshot:
        """Every source at once, except that a source waits for those it reads
        (`refresh_after`, e.g. Talos for Kubernetes when no node list is configured);
        one join at the end (at 500 nodes a join per source was a third of the CPU)."""
        return await self._engine.run(self._refresh_all())

    async def _refresh_all(self) -> ClusterSnapshot:
        tasks: dict[str, asyncio.Task[None]] = {}

        async def after(name: str, needs: tuple[str, ...]) -> None:
            for need in needs:
                if need in tasks:
                    await asyncio.shield(tasks[need])
            await self._fetch(name)

        for name, source in self._sources.items():
            earlier = tuple(n for n in source.refresh_after() if n in tasks)  # no cycles
            tasks[name] = asyncio.ensure_future(after(name, earlier))
        await asyncio.gather(*tasks.values())
        self.snapshot = self._join()
        return self.snapshot

    def _join(self) -> ClusterSnapshot:
        parts = feed_all(self._sources, self._data)
        joined = join(
            cluster=self.config.cluster_name,
            mode=self.config.mode,
            read_only=self.config.read_only,
            taken_at=self.clock(),
            kube=parts.kube,
            proxmox=parts.proxmox,
            talos=parts.talos,
            git=parts.git,
            sources=tuple(self._health.values()),
            extra_faults=tuple(parts.faults),
            reuse=self._reuse,
        )
        return replace(joined, insecure_tls=self._insecure_tls)

    async def close(self) -> None:
        with self._watch_lock:
            self._closed = True
        await self._engine.run(self._close_sources())
        self._engine.stop()

    async def _close_sources(self) -> None:
        for name, source in self._sources.items():
            try:
                await source.close()
            except Exception:  # closing one source must not leave the others open
                log.exception("closing source %s failed", name)


if TYPE_CHECKING:
    from dapper.backends.protocols import SnapshotFeed

    def _satisfies_the_console_protocols(
        collector: Collector, operations: Operations
    ) -> tuple[SnapshotFeed, ClusterOperations]:
        """Never called: mypy proves here that the console's protocols fit these classes."""
        return collector, operations
